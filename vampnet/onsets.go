package vampnet

// Onset detection, librosa's method (librosa 0.10.1,
// librosa.onset.onset_strength and onset_detect with their defaults), for
// the onset prompt (OnsetMaskFromAudio). The official VampNet detects
// onsets with madmom's RNN; neither madmom nor librosa is available here,
// and the spectral-flux novelty curve needs only an STFT and a mel
// filterbank: the STFT is here, in float64 on []float32 audio (package
// audio's STFT is libtorch's, with reflect padding, where librosa 0.10's
// onset_strength pads with zeros), the filterbank is package audio's
// (audio.MelFilters, librosa's):
//
//	S      = |STFT|^2, Hann window (periodic), n_fft 2048, hop 512,
//	         centred frames (the signal zero-padded by n_fft/2 each side,
//	         librosa 0.10's pad_mode "constant")
//	M      = Slaney mel filterbank (htk=False, norm="slaney"), 128 bands,
//	         0 Hz to sr/2, applied to S
//	D      = power_to_db(M): 10 log10(max(1e-10, M)), floored at max - 80 dB
//	         (ref 1.0, librosa's default here; ref = max would shift every
//	         value by one constant and change no difference)
//	env[t] = mean over bands of max(0, D[t] - D[t-1])  (lag 1, max_size 1)
//	         shifted right by lag + n_fft/(2 hop) = 3 frames with zeros and
//	         cut to the frame count, as librosa does with center=True
//
// then onset_detect's normalisation to [0, 1] and util.peak_pick with the
// defaults pre_max 0.03 sr//hop, post_max 0.00 sr//hop + 1, pre_avg 0.10
// sr//hop, post_avg 0.10 sr//hop + 1, wait 0.03 sr//hop, delta 0.07.
//
// The 3-frame shift puts the reported onset of an impulse after silence
// within about a hop of it: the impulse first shows (as a jump from the
// -80 dB floor) in the frame whose window's leading edge reaches it, up
// to 2 frames before the frame centred on it.

import (
	"fmt"
	"math"
	"math/cmplx"

	"github.com/reprolab/repro/audio"
)

// OnsetOptions are onset_strength's and onset_detect's parameters, with
// librosa's names. DefaultOnsetOptions fills in librosa's defaults for a
// sample rate; the peak-picking windows are in frames.
type OnsetOptions struct {
	SampleRate int     // sr
	NFFT       int     // n_fft
	HopLength  int     // hop_length
	NMels      int     // n_mels
	Fmin, Fmax float64 // fmin, fmax of the mel filterbank (Fmax <= 0: sr/2)
	Lag        int     // lag, in frames
	TopDB      float64 // power_to_db's top_db (<= 0: no floor)
	Center     bool    // centred frames and the matching envelope shift

	PreMax, PostMax, PreAvg, PostAvg, Wait, Delta float64
}

// DefaultOnsetOptions are librosa's defaults at sampleRate (librosa's own
// default rate is 22050): n_fft 2048, hop 512, 128 mels up to sr/2, lag 1,
// top_db 80, centred, and onset_detect's peak-picking defaults computed
// with Python's float floor division as it does.
func DefaultOnsetOptions(sampleRate int) OnsetOptions {
	sr, hop := float64(sampleRate), 512.0
	fd := func(v float64) float64 { return math.Floor(v / hop) }
	return OnsetOptions{
		SampleRate: sampleRate, NFFT: 2048, HopLength: 512, NMels: 128,
		Fmin: 0, Fmax: sr / 2, Lag: 1, TopDB: 80, Center: true,
		PreMax: fd(0.03 * sr), PostMax: fd(0.00*sr) + 1,
		PreAvg: fd(0.10 * sr), PostAvg: fd(0.10*sr) + 1,
		Wait: fd(0.03 * sr), Delta: 0.07,
	}
}

// HannWindow is scipy's get_window("hann", n) as librosa asks for it
// (fftbins=True): the periodic Hann window 0.5 - 0.5 cos(2 pi i / n).
func HannWindow(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n))
	}
	return w
}

// PowerSpectrogram is |librosa.stft(y, n_fft, hop, window="hann")|^2 as
// [frames][n_fft/2+1]. With center the signal is zero-padded by n_fft/2
// on both sides (librosa 0.10's default pad_mode "constant"), giving
// 1 + len(y)/hop frames, frame t centred on sample t*hop; without, frames
// start at t*hop and only whole frames are taken.
func PowerSpectrogram(y []float32, nFFT, hopLength int, center bool) ([][]float64, error) {
	if nFFT <= 0 || hopLength <= 0 {
		return nil, fmt.Errorf("vampnet: PowerSpectrogram: n_fft %d and hop %d must be positive", nFFT, hopLength)
	}
	x := make([]float64, 0, len(y)+nFFT)
	if center {
		x = append(x, make([]float64, nFFT/2)...)
	}
	for _, v := range y {
		x = append(x, float64(v))
	}
	if center {
		x = append(x, make([]float64, nFFT/2)...)
	}
	if len(x) < nFFT {
		return nil, fmt.Errorf("vampnet: PowerSpectrogram: %d samples are too short for n_fft %d", len(y), nFFT)
	}
	nFrames := 1 + (len(x)-nFFT)/hopLength
	win := HannWindow(nFFT)
	buf := make([]complex128, nFFT)
	out := make([][]float64, nFrames)
	for t := range out {
		frame := x[t*hopLength : t*hopLength+nFFT]
		for i, v := range frame {
			buf[i] = complex(v*win[i], 0)
		}
		spec := fft(buf)
		out[t] = make([]float64, nFFT/2+1)
		for k := range out[t] {
			a := cmplx.Abs(spec[k])
			out[t][k] = a * a
		}
	}
	return out, nil
}

// MelSpectrogram is librosa.feature.melspectrogram (power 2) as
// [n_mels][frames]: librosa's mel filterbank (audio.MelFilters, float32
// as librosa returns it) applied to PowerSpectrogram, summed in float64.
func MelSpectrogram(y []float32, opts OnsetOptions) ([][]float64, error) {
	S, err := PowerSpectrogram(y, opts.NFFT, opts.HopLength, opts.Center)
	if err != nil {
		return nil, err
	}
	fb := audio.MelFilters(opts.SampleRate, opts.NFFT, opts.NMels, opts.Fmin, opts.Fmax)
	nf := opts.NFFT/2 + 1
	out := make([][]float64, opts.NMels)
	for m := range out {
		filt := fb[m*nf : (m+1)*nf]
		out[m] = make([]float64, len(S))
		for t, frame := range S {
			var acc float64
			for k, w := range filt {
				if w != 0 {
					acc += float64(w) * frame[k]
				}
			}
			out[m][t] = acc
		}
	}
	return out, nil
}

// PowerToDB is librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db) in
// place: 10 log10(max(amin, S)), then floored at the maximum minus topDB
// when topDB > 0.
func PowerToDB(S [][]float64, topDB float64) {
	const amin = 1e-10
	peak := math.Inf(-1)
	for _, row := range S {
		for i, v := range row {
			row[i] = 10 * math.Log10(math.Max(amin, v))
			peak = math.Max(peak, row[i])
		}
	}
	if topDB <= 0 {
		return
	}
	for _, row := range S {
		for i, v := range row {
			row[i] = math.Max(v, peak-topDB)
		}
	}
}

// OnsetStrength is librosa.onset.onset_strength(y, sr) for the options'
// parameters: the spectral-flux novelty curve, one value per STFT frame
// (see the file comment).
func OnsetStrength(y []float32, opts OnsetOptions) ([]float64, error) {
	if opts.Lag < 1 {
		return nil, fmt.Errorf("vampnet: OnsetStrength: lag=%d must be a positive integer", opts.Lag)
	}
	if opts.SampleRate <= 0 || opts.NMels <= 0 {
		return nil, fmt.Errorf("vampnet: OnsetStrength: sample rate %d and n_mels %d must be positive", opts.SampleRate, opts.NMels)
	}
	D, err := MelSpectrogram(y, opts)
	if err != nil {
		return nil, err
	}
	PowerToDB(D, opts.TopDB)
	nFrames := len(D[0])
	diff := make([]float64, max(nFrames-opts.Lag, 0))
	for _, row := range D {
		for t := range diff {
			diff[t] += math.Max(0, row[t+opts.Lag]-row[t])
		}
	}
	for t := range diff {
		diff[t] /= float64(len(D))
	}
	pad := opts.Lag
	if opts.Center {
		pad += opts.NFFT / (2 * opts.HopLength)
	}
	env := append(make([]float64, pad), diff...)
	if opts.Center {
		env = env[:nFrames]
	}
	return env, nil
}

// OnsetDetect is librosa.onset.onset_detect(y, sr, units="frames"): the
// onset strength normalised to [0, 1] (minus its minimum, over its
// maximum), then PeakPick. It returns no onsets for a flat (or
// non-finite) envelope, as librosa does.
func OnsetDetect(y []float32, opts OnsetOptions) ([]int, error) {
	env, err := OnsetStrength(y, opts)
	if err != nil {
		return nil, err
	}
	if len(env) == 0 {
		return nil, nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range env {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	any := false
	for i := range env {
		env[i] -= lo
		env[i] /= (hi - lo) + 0x1p-1022 // + util.tiny: the smallest normal float64
		if math.IsNaN(env[i]) || math.IsInf(env[i], 0) {
			return nil, nil
		}
		any = any || env[i] != 0
	}
	if !any {
		return nil, nil
	}
	return PeakPick(env, opts.PreMax, opts.PostMax, opts.PreAvg, opts.PostAvg, opts.Delta, opts.Wait)
}

// FramesToTime is librosa.frames_to_time: frame * hop / sr seconds.
func FramesToTime(frames []int, sampleRate, hopLength int) []float64 {
	out := make([]float64, len(frames))
	for i, f := range frames {
		out[i] = float64(f*hopLength) / float64(sampleRate)
	}
	return out
}

// PeakPick is librosa.util.peak_pick: x[n] is a peak when
//
//	x[n] == max(x[n - pre_max : n + post_max])
//	x[n] >= mean(x[n - pre_avg : n + post_avg]) + delta
//	n - last peak > wait
//
// with the windows truncated at the ends (librosa's moving maximum pads
// with min(x); its moving average is corrected to the truncated mean at
// both ends, and in the middle is the same window), and a peak must be
// nonzero (librosa keeps the nonzero entries of x * (x == max)). The
// window sizes are rounded up to integers as librosa does.
func PeakPick(x []float64, preMax, postMax, preAvg, postAvg, delta, wait float64) ([]int, error) {
	switch {
	case preMax < 0:
		return nil, fmt.Errorf("vampnet: PeakPick: pre_max must be non-negative")
	case preAvg < 0:
		return nil, fmt.Errorf("vampnet: PeakPick: pre_avg must be non-negative")
	case delta < 0:
		return nil, fmt.Errorf("vampnet: PeakPick: delta must be non-negative")
	case wait < 0:
		return nil, fmt.Errorf("vampnet: PeakPick: wait must be non-negative")
	case postMax <= 0:
		return nil, fmt.Errorf("vampnet: PeakPick: post_max must be positive")
	case postAvg <= 0:
		return nil, fmt.Errorf("vampnet: PeakPick: post_avg must be positive")
	}
	pMax, qMax := int(math.Ceil(preMax)), int(math.Ceil(postMax))
	pAvg, qAvg := int(math.Ceil(preAvg)), int(math.Ceil(postAvg))
	w := int(math.Ceil(wait))
	n := len(x)
	var peaks []int
	last := math.Inf(-1)
	for i := range n {
		if x[i] == 0 {
			continue
		}
		// scipy's maximum_filter1d(size pre+post, origin ceil((pre-post)/2))
		// covers x[i-pre : i+post], whatever the parities.
		m := math.Inf(-1)
		for j := max(0, i-pMax); j < min(n, i+qMax); j++ {
			m = math.Max(m, x[j])
		}
		if x[i] != m {
			continue
		}
		var sum float64
		lo, hi := max(0, i-pAvg), min(n, i+qAvg)
		for j := lo; j < hi; j++ {
			sum += x[j]
		}
		if x[i] < sum/float64(hi-lo)+delta {
			continue
		}
		if float64(i) > last+float64(w) {
			peaks = append(peaks, i)
			last = float64(i)
		}
	}
	return peaks, nil
}

// fft is the discrete Fourier transform of a: iterative radix-2
// Cooley-Tukey for a power-of-two length, the direct O(n^2) sum otherwise.
func fft(a []complex128) []complex128 {
	n := len(a)
	out := make([]complex128, n)
	if n&(n-1) != 0 {
		for k := range n {
			var s complex128
			for j, v := range a {
				s += v * cmplx.Exp(complex(0, -2*math.Pi*float64(k*j%n)/float64(n)))
			}
			out[k] = s
		}
		return out
	}
	bits := 0
	for 1<<bits < n {
		bits++
	}
	for i, v := range a { // bit-reversed order
		r := 0
		for b := range bits {
			r |= (i >> b & 1) << (bits - 1 - b)
		}
		out[r] = v
	}
	tw := make([]complex128, n/2) // exp(-2 pi i k / n), each computed directly
	for k := range tw {
		s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(n))
		tw[k] = complex(c, s)
	}
	for size := 2; size <= n; size <<= 1 {
		stride := n / size
		for start := 0; start < n; start += size {
			for k := range size / 2 {
				u, v := out[start+k], out[start+k+size/2]*tw[k*stride]
				out[start+k], out[start+k+size/2] = u+v, u-v
			}
		}
	}
	return out
}
