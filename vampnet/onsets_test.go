package vampnet

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/audio"
)

// The filterbank MelSpectrogram uses (audio.MelFilters) at a size small
// enough to write out: sr 2000, n_fft 20 (bins every 100 Hz), 4 mels over
// 0..1000 Hz, whose mel points are 0, 200, ..., 1000 Hz. Filter i is the
// triangle 200i -> 200(i+1) -> 200(i+2) Hz sampled at the bins, times the
// Slaney norm 2/(400 Hz), in float32 as librosa returns it: the float32
// nearest each value.
func TestOnsetMelFilterbankByHand(t *testing.T) {
	fb := audio.MelFilters(2000, 20, 4, 0, 1000)
	want := [][]float64{
		{0, .0025, .005, .0025, 0, 0, 0, 0, 0, 0, 0},
		{0, 0, 0, .0025, .005, .0025, 0, 0, 0, 0, 0},
		{0, 0, 0, 0, 0, .0025, .005, .0025, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, .0025, .005, .0025, 0},
	}
	require.Len(t, fb, 4*11)
	for i := range want {
		for k := range want[i] {
			assert.Equal(t, float32(want[i][k]), fb[i*11+k], "filter %d bin %d", i, k)
		}
	}
}

func TestOnsetHannWindow(t *testing.T) {
	w := HannWindow(16)
	sum := 0.0
	for _, v := range w {
		sum += v
	}
	assert.InDelta(t, 8, sum, 1e-12) // periodic Hann: N/2
	assert.Equal(t, 0.0, w[0])
	assert.InDelta(t, 1, w[8], 1e-15)
	assert.InDelta(t, w[3], w[13], 1e-15)
}

func TestOnsetFFTMatchesDFT(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 8, 64, 12} {
		a := make([]complex128, n)
		for i := range a {
			a[i] = complex(rng.NormFloat64(), rng.NormFloat64())
		}
		got := fft(a)
		for k := range n {
			var want complex128
			for j, v := range a {
				want += v * cmplx.Exp(complex(0, -2*math.Pi*float64(j*k)/float64(n)))
			}
			assert.InDelta(t, 0, cmplx.Abs(got[k]-want), 1e-9, "n %d bin %d", n, k)
		}
	}
}

// A cosine on bin 5 of a 64-point Hann-windowed frame: |X[5]| = N/4 and
// |X[4]| = |X[6]| = N/8 (the periodic Hann's spectrum is N/2 at 0 and -N/4
// at +-1), the rest 0, in every frame that the zero padding leaves whole.
// Centred framing gives 1 + len/hop frames.
func TestOnsetPowerSpectrogramCosine(t *testing.T) {
	const n, hop, k0 = 64, 16, 5
	y := make([]float32, 640)
	for i := range y {
		y[i] = float32(math.Cos(2 * math.Pi * k0 * float64(i) / n))
	}
	S, err := PowerSpectrogram(y, n, hop, true)
	require.NoError(t, err)
	require.Len(t, S, 1+len(y)/hop)
	for f := n / hop / 2; f < len(S)-n/hop/2; f++ {
		for k, v := range S[f] {
			want := 0.0
			switch k {
			case k0:
				want = (n / 4) * (n / 4)
			case k0 - 1, k0 + 1:
				want = (n / 8) * (n / 8)
			}
			assert.InDelta(t, want, v, 2e-3, "frame %d bin %d", f, k)
		}
	}
	_, err = PowerSpectrogram(y[:10], n, hop, false)
	assert.Error(t, err)
}

// PeakPick on a hand-made curve with pre_max 1, post_max 1 (the max over
// x[i-1:i+1]), pre_avg 2, post_avg 3 (the mean over x[i-2:i+3]), delta
// 0.1, wait 2. Local maxima: 1, 2, 4, 5, 7. 1 (0.1) and 4 (0.3) are under
// their means + delta (0.3 + 0.1, 0.58 + 0.1); 2 (0.9 >= 0.3 + 0.1) and 5
// (0.8 >= 0.56 + 0.1) are peaks; 7 (0.8 >= 0.46 + 0.1) is one too, but not
// more than wait after 5.
func TestOnsetPeakPickByHand(t *testing.T) {
	x := []float64{0, 0.1, 0.9, 0.2, 0.3, 0.8, 0.7, 0.8, 0, 0, 0}
	got, err := PeakPick(x, 1, 1, 2, 3, 0.1, 2)
	require.NoError(t, err)
	assert.Equal(t, []int{2, 5}, got)
	// without wait 7 comes back; delta 0.5 keeps only 2
	got, _ = PeakPick(x, 1, 1, 2, 3, 0.1, 0)
	assert.Equal(t, []int{2, 5, 7}, got)
	got, _ = PeakPick(x, 1, 1, 2, 3, 0.5, 0)
	assert.Equal(t, []int{2}, got)
	_, err = PeakPick(x, 1, 0, 2, 3, 0.1, 0)
	assert.Error(t, err)
}

// librosa's defaults at 22050 Hz: pre_max 1, post_max 1, pre_avg 4,
// post_avg 5, wait 1 frame; at 44100 Hz: 2, 1, 8, 9, 2.
func TestOnsetDefaults(t *testing.T) {
	o := DefaultOnsetOptions(22050)
	assert.Equal(t, []float64{1, 1, 4, 5, 1, 0.07}, []float64{o.PreMax, o.PostMax, o.PreAvg, o.PostAvg, o.Wait, o.Delta})
	assert.Equal(t, 11025.0, o.Fmax)
	o = DefaultOnsetOptions(44100)
	assert.Equal(t, []float64{2, 1, 8, 9, 2}, []float64{o.PreMax, o.PostMax, o.PreAvg, o.PostAvg, o.Wait})
}

// clickTrack is librosa.clicks' click (a 1 kHz sine under a 100 ms
// exponential decay to 2^-10) at the given times, in silence.
func clickTrack(times []float64, sr int, seconds float64) ([]float32, []int) {
	y := make([]float32, int(seconds*float64(sr)))
	n := int(0.1 * float64(sr))
	var at []int
	for _, tm := range times {
		s := int(tm * float64(sr))
		at = append(at, s)
		for i := 0; i < n && s+i < len(y); i++ {
			env := math.Pow(2, -10*float64(i)/float64(n-1))
			y[s+i] += float32(env * math.Sin(2*math.Pi*1000*float64(i)/float64(sr)))
		}
	}
	return y, at
}

// Clicks at known times are found, each within one hop, and nothing else.
func TestOnsetDetectClicks(t *testing.T) {
	times := []float64{0.5, 1.0, 1.5, 2.03, 2.5, 3.1}
	for _, sr := range []int{22050, 44100} {
		y, at := clickTrack(times, sr, 4)
		opts := DefaultOnsetOptions(sr)
		env, err := OnsetStrength(y, opts)
		require.NoError(t, err)
		require.Len(t, env, 1+len(y)/opts.HopLength)
		for i := range 3 { // lag + n_fft/(2 hop) leading zeros
			assert.Equal(t, 0.0, env[i])
		}
		frames, err := OnsetDetect(y, opts)
		require.NoError(t, err)
		require.Len(t, frames, len(at), "sr %d: onsets at frames %v", sr, frames)
		for i, f := range frames {
			assert.LessOrEqual(t, math.Abs(float64(f*opts.HopLength-at[i])), float64(opts.HopLength),
				"sr %d: click at sample %d found at frame %d (sample %d)", sr, at[i], f, f*opts.HopLength)
		}
		got := FramesToTime(frames, sr, opts.HopLength)
		for i := range got {
			assert.InDelta(t, times[i], got[i], float64(opts.HopLength)/float64(sr))
		}
	}
}

// Silence and a constant have a flat envelope: no onsets, as librosa.
func TestOnsetDetectNone(t *testing.T) {
	y := make([]float32, 22050)
	frames, err := OnsetDetect(y, DefaultOnsetOptions(22050))
	require.NoError(t, err)
	assert.Empty(t, frames)
}
