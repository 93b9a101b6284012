// Package audio holds the signal handling that VampNet (Garcia et al.,
// ISMIR 2023) and its codec's training need, written to match
// descript-audiotools, which the official code uses for AudioSignal:
//
//   - wav.go: WAV files read (PCM 8/16/24/32, float 32/64, extensible) and
//     written (16-bit PCM, 32-bit float) by hand, since repro takes no audio
//     module dependency.
//   - resample.go: julius.resample_frac (windowed-sinc, 24 zeros, rolloff
//     0.945), which AudioSignal.resample calls, and the mono downmix of
//     AudioSignal.to_mono.
//   - loudness.go: ITU-R BS.1770-4 integrated loudness as audiotools' Meter
//     (a torch port of pyloudnorm) computes it, and AudioSignal.normalize.
//   - mel.go: log-mel spectrograms with libtorch ops, DAC's multi-scale
//     MelSpectrogramLoss (differentiable) and an L1 mel distance metric.
//   - ogg.go, tracks.go: the Ogg Vorbis music of Debian's game-music
//     packages, decoded by oggdec into a WAV cache and split by track.
//   - excerpt.go: random excerpts as audiotools' AudioDataset/AudioLoader
//     draw them (salient_excerpt's loudness cutoff and retries).
//
// Samples are float32 in [-1, 1) as audiotools holds them. Everything that
// touches files returns an error naming the file and the problem; only
// mel.go runs tensor code, and it follows torchmods' rules (it panics, the
// caller's scope owns what it creates).
package audio
