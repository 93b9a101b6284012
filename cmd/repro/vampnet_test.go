package main

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/vampnet"
)

// repro vampnet encode, decode and vamp on a codec and a coarse model
// trained for a step on generated tones: encode resamples a 16 kHz
// stereo file for the 8 kHz codec and says so; decode gives back as many
// seconds; vamp writes the WAV and its spectrogram; codes from another
// codec rate are refused.
func TestVampNetCommands(t *testing.T) {
	dir := t.TempDir()
	music := filepath.Join(dir, "music")
	require.NoError(t, os.MkdirAll(music, 0o755))
	for k, f := range []float64{220, 330, 440, 550, 660, 880} {
		a := audio.NewAudio(8000, 1, 8000)
		for i := range a.Channels[0] {
			a.Channels[0][i] = float32(0.3 * math.Sin(2*math.Pi*f*float64(i)/8000) * math.Exp(-float64(i%2000)/800))
		}
		require.NoError(t, audio.WriteWAV(filepath.Join(music, string(rune('a'+k))+".wav"), a, audio.PCM16))
	}
	data := vampnet.DataConfig{Source: "folder", Folder: music, Duration: 0.38, LoudnessCutoff: -200, TestFraction: 0.3, Batch: 2, Workers: 1, EvalExcerpts: 2}
	cc := vampnet.CodecTask.Default()
	cc.Codec = vampnet.CodecConfig{SampleRate: 8000, EncoderDim: 4, EncoderRates: []int64{2, 4}, DecoderDim: 16, DecoderRates: []int64{4, 2},
		NCodebooks: 3, CodebookSize: 16, CodebookDim: 4, QuantizerDropout: true}
	cc.Data, cc.Samples, cc.Trainer.MaxSteps = data, 0, 1
	_, err := vampnet.CodecTask.Start(cc, filepath.Join(dir, "codec"), false, io.Discard)
	require.NoError(t, err)
	tc := vampnet.TrainTask.Default()
	tc.Codec, tc.Data, tc.Trainer.MaxSteps, tc.EvalR = filepath.Join(dir, "codec"), data, 1, []float64{0.5}
	tc.Model = vampnet.Config{NHeads: 2, NLayers: 1, NCodebooks: 3, LatentDim: 4, EmbeddingDim: 16, VocabSize: 16, LoRARank: 8, Buckets: 32, MaxDistance: 128}
	_, err = vampnet.TrainTask.Start(tc, filepath.Join(dir, "coarse"), false, io.Discard)
	require.NoError(t, err)

	in := audio.NewAudio(16000, 2, 8000) // 0.5 s, stereo, 16 kHz
	for c := range in.Channels {
		for i := range in.Channels[c] {
			in.Channels[c][i] = float32(0.2 * math.Sin(2*math.Pi*300*float64(i)/16000))
		}
	}
	wav := filepath.Join(dir, "in.wav")
	require.NoError(t, audio.WriteWAV(wav, in, audio.PCM16))
	codec := filepath.Join(dir, "codec")
	codes := filepath.Join(dir, "in.codes.safetensors")
	out, stderr, code := runRepro(t, "vampnet", "encode", "-codec", codec, wav, codes)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "mixing 2 channels down to mono")
	assert.Contains(t, stderr, "resampling 16000 Hz to the codec's 8000 Hz")
	assert.Contains(t, out, "3 codebooks x 500 frames")

	back := filepath.Join(dir, "back.wav")
	_, stderr, code = runRepro(t, "vampnet", "decode", "-codec", codec, codes, back)
	require.Equal(t, 0, code, stderr)
	b, err := audio.ReadWAV(back)
	require.NoError(t, err)
	assert.Equal(t, 8000, b.SampleRate)
	assert.Equal(t, 4000, b.Len())

	// the coarse model was trained on 0.38 s excerpts: 0.5 s is refused,
	// as the official coarse_vamp asserts; 0.3 s is vamped
	vamped := filepath.Join(dir, "vamped.wav")
	coarse := filepath.Join(dir, "coarse")
	_, stderr, code = runRepro(t, "vampnet", "vamp", "-codec", codec, "-coarse", coarse, wav, vamped)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "500 frames for a coarse model whose chunk is 380 frames")
	short := filepath.Join(dir, "short.wav")
	in.Channels = [][]float32{in.Channels[0][:4800]}
	require.NoError(t, audio.WriteWAV(short, in, audio.PCM16))
	out, stderr, code = runRepro(t, "vampnet", "vamp", "-codec", codec, "-coarse", coarse, "-periodic", "4", "-onsets", "0", "-steps", "3", short, vamped)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "the prompt kept")
	assert.FileExists(t, filepath.Join(dir, "vamped.png"))
	v, err := audio.ReadWAV(vamped)
	require.NoError(t, err)
	assert.Equal(t, 2400, v.Len())

	// codes written for another codec are refused, naming both rates; a
	// file that is not safetensors names the file
	other := filepath.Join(dir, "other.safetensors")
	require.NoError(t, safetensors.Write(other, []safetensors.Tensor{{Name: "codes", DType: "I64", Shape: []int64{1, 3, 1}, Data: make([]byte, 24)}},
		map[string]string{"sample_rate": "16000", "hop_length": "8"}))
	_, stderr, code = runRepro(t, "vampnet", "decode", "-codec", codec, other, back)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `codes of a codec at "16000" Hz with hop "8"; this codec is 8000 Hz with hop 8`)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.safetensors"), []byte("not safetensors"), 0o644))
	_, stderr, code = runRepro(t, "vampnet", "decode", "-codec", codec, filepath.Join(dir, "bad.safetensors"), back)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "bad.safetensors")
	_, stderr, code = runRepro(t, "vampnet", "vamp", "-codec", codec, wav, vamped)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "want -coarse RUN")
}
