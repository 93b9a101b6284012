package audio

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/reprolab/repro/torchmods"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// directSTFT is the STFT magnitude by definition, in float64: reflect-pad
// n/2 on each side, frame t starts at t·hop, periodic Hann window,
// |Σ_m x[m]·w[m]·e^{-2πikm/n}| for k = 0..n/2.
func directSTFT(x []float64, n, hop int) [][]float64 {
	p := n / 2
	pad := make([]float64, len(x)+2*p)
	for i := range pad {
		j := i - p
		if j < 0 {
			j = -j
		}
		if j >= len(x) {
			j = 2*(len(x)-1) - j
		}
		pad[i] = x[j]
	}
	frames := 1 + (len(pad)-n)/hop
	out := make([][]float64, n/2+1)
	for k := range out {
		out[k] = make([]float64, frames)
		for t := range frames {
			var re, im float64
			for m := range n {
				w := 0.5 - 0.5*math.Cos(2*math.Pi*float64(m)/float64(n))
				a := -2 * math.Pi * float64(k*m) / float64(n)
				v := pad[t*hop+m] * w
				re += v * math.Cos(a)
				im += v * math.Sin(a)
			}
			out[k][t] = math.Hypot(re, im)
		}
	}
	return out
}

func TestSTFTMatchesDirectDFT(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	const T = 200
	x := make([]float32, 2*T)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	xt := ts.MustOfSlice(x).MustView([]int64{2, 1, T}, true)
	for _, c := range []struct{ n, hop int }{{32, 8}, {64, 16}, {50, 7}} {
		mag := STFT(xt, c.n, c.hop)
		frames := 1 + T/c.hop
		require.Equal(t, []int64{2, 1, int64(c.n/2 + 1), int64(frames)}, mag.MustSize())
		got := mag.Float64Values()
		worst := 0.0
		for b := range 2 {
			xb := make([]float64, T)
			for i := range xb {
				xb[i] = float64(x[b*T+i])
			}
			want := directSTFT(xb, c.n, c.hop)
			for k := range want {
				for f := range want[k] {
					g := got[(b*(c.n/2+1)+k)*frames+f]
					worst = math.Max(worst, math.Abs(g-want[k][f]))
				}
			}
		}
		assert.Less(t, worst, 1e-4, "window %d hop %d: max |STFT - DFT|", c.n, c.hop)
	}
}

// TestSTFTMatchesTorch compares with torch.stft as audiotools calls it
// (testdata/gen_stft_ref.py, torch 1.13).
func TestSTFTMatchesTorch(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	b, err := os.ReadFile("testdata/stft_ref.json")
	require.NoError(t, err)
	var ref struct {
		X     []float32 `json:"x"`
		Shape []int64   `json:"shape"`
		Cases []struct {
			Window, Hop int
			Shape       []int64
			Mag         []float64
		}
	}
	require.NoError(t, json.Unmarshal(b, &ref))
	x := ts.MustOfSlice(ref.X).MustView(ref.Shape, true)
	for _, c := range ref.Cases {
		mag := STFT(x, c.Window, c.Hop)
		assert.Equal(t, append([]int64{ref.Shape[0], 1}, c.Shape[1:]...), mag.MustSize())
		got := mag.Float64Values()
		require.Len(t, got, len(c.Mag))
		for i := range got {
			if !assert.InDelta(t, c.Mag[i], got[i], 1e-4, "window %d, value %d", c.Window, i) {
				break
			}
		}
	}
}

func TestSlaneyMelScale(t *testing.T) {
	assert.InDelta(t, 15, HzToMel(1000), 1e-12, "1 kHz is 15 Slaney mels")
	assert.InDelta(t, 3, HzToMel(200), 1e-12, "linear below 1 kHz: 200/3 Hz per mel")
	assert.InDelta(t, 42, HzToMel(6400), 1e-9, "27 mels per factor 6.4 above 1 kHz")
	assert.InDelta(t, 15+27*math.Log(2)/math.Log(6.4), HzToMel(2000), 1e-9)
	for _, f := range []float64{0, 55, 999, 1000, 1001, 8000, 22050} {
		assert.InDelta(t, f, MelToHz(HzToMel(f)), 1e-9*math.Max(1, f))
	}
}

func TestMelFilters(t *testing.T) {
	const sr, nfft, nm = 44100, 4096, 80
	w := MelFilters(sr, nfft, nm, 0, 0)
	nf := nfft/2 + 1
	require.Len(t, w, nm*nf)
	binHz := float64(sr) / float64(nfft)
	edges := make([]float64, nm+2)
	for i := range edges {
		edges[i] = MelToHz(HzToMel(float64(sr)/2) * float64(i) / float64(nm+1))
	}
	for i := range nm {
		row := w[i*nf : (i+1)*nf]
		area, peak := 0.0, 0.0
		for k, v := range row {
			require.GreaterOrEqual(t, v, float32(0))
			f := float64(k) * binHz
			if v > 0 {
				assert.True(t, f > edges[i] && f < edges[i+2], "filter %d is zero outside its corners", i)
			}
			area += float64(v) * binHz
			peak = math.Max(peak, float64(v))
		}
		// Slaney norm: height 2/(f[i+2]-f[i]), so unit area in Hz. The
		// sampled area is exact to a fraction of a bin's share.
		height := 2 / (edges[i+2] - edges[i])
		assert.LessOrEqual(t, peak, height*(1+1e-6), "filter %d peak", i)
		if edges[i+2]-edges[i] > 20*binHz {
			assert.InDelta(t, 1, area, 0.02, "filter %d area", i)
			assert.InDelta(t, height, peak, height*0.05, "filter %d peak", i)
		}
	}
	// fmin/fmax move the corners; a band-limited bank is zero above fmax.
	w = MelFilters(16000, 512, 20, 300, 4000)
	nf = 257
	for k := range nf {
		f := float64(k) * 16000 / 512
		for i := range 20 {
			if f <= 300 || f >= 4000 {
				assert.Zero(t, w[i*nf+k])
			}
		}
	}
}

func TestMelLossGradient(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const sr, T = 44100, 4410
	rng := rand.New(rand.NewPCG(3, 4))
	xv := make([]float32, 2*T)
	yv := make([]float32, 2*T)
	for i := range xv {
		xv[i] = float32(0.3 * math.Sin(2*math.Pi*440*float64(i%T)/sr))
		yv[i] = xv[i] + float32(0.05*rng.NormFloat64())
	}
	for name, l := range map[string]MelLoss{"dac": DACMelLoss(sr), "default": DefaultMelLoss(sr)} {
		x := ts.MustOfSlice(xv).MustView([]int64{2, 1, T}, true)
		x.MustRequiresGrad_(true)
		y := ts.MustOfSlice(yv).MustView([]int64{2, 1, T}, true)
		loss := l.Forward(x, y)
		assert.Empty(t, loss.MustSize(), "%s: a scalar", name)
		v := loss.Float64Values()[0]
		assert.Greater(t, v, 0.0, name)
		require.NoError(t, loss.Backward())
		g := x.MustGrad(false).MustAbs(true).MustSum(gotch.Double, true).Float64Values()[0]
		assert.Greater(t, g, 0.0, "%s: the gradient reaches the estimate", name)
		assert.False(t, math.IsNaN(g), name)

		// Identical inputs: zero loss and a zero gradient (the L1's
		// subgradient at 0 is 0 in torch).
		x2 := ts.MustOfSlice(xv).MustView([]int64{2, 1, T}, true)
		x2.MustRequiresGrad_(true)
		same := l.Forward(x2, x2.MustDetach(false))
		assert.Equal(t, 0.0, same.Float64Values()[0], name)
		require.NoError(t, same.Backward())
		assert.Equal(t, 0.0, x2.MustGrad(false).MustAbs(true).MustSum(gotch.Double, true).Float64Values()[0], name)
	}
}

// TestMelLossByHand recomputes one scale's terms from MelSpectrogram.
func TestMelLossByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const sr, T = 16000, 1000
	rng := rand.New(rand.NewPCG(5, 6))
	xv, yv := make([]float32, T), make([]float32, T)
	for i := range xv {
		xv[i], yv[i] = float32(rng.NormFloat64()*0.1), float32(rng.NormFloat64()*0.01)
	}
	x := ts.MustOfSlice(xv).MustView([]int64{1, 1, T}, true)
	y := ts.MustOfSlice(yv).MustView([]int64{1, 1, T}, true)
	l := MelLoss{SampleRate: sr, NMels: []int{20}, WindowLengths: []int{256}, ClampEps: 1e-5, MagWeight: 0.5, LogWeight: 2, Pow: 2}
	got := l.Forward(x, y).Float64Values()[0]
	xm := MelSpectrogram(x, sr, 20, 256, 64, 0, 0).Float64Values()
	ym := MelSpectrogram(y, sr, 20, 256, 64, 0, 0).Float64Values()
	var logL1, magL1 float64
	for i := range xm {
		lx := 2 * math.Log10(math.Max(xm[i], 1e-5))
		ly := 2 * math.Log10(math.Max(ym[i], 1e-5))
		logL1 += math.Abs(lx - ly)
		magL1 += math.Abs(xm[i] - ym[i])
	}
	n := float64(len(xm))
	assert.InDelta(t, 2*logL1/n+0.5*magL1/n, got, 1e-4*got)
}

func TestMelErrors(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := ts.MustZeros([]int64{1, 1, 100}, gotch.Float, gotch.CPU)
	assert.ErrorContains(t, torchmods.Try(func() { STFT(x, 512, 128) }), "reflect padding")
	assert.ErrorContains(t, torchmods.Try(func() { STFT(ts.MustZeros([]int64{100}, gotch.Float, gotch.CPU), 16, 4) }), "want [B, C, T]")
	y := ts.MustZeros([]int64{1, 1, 101}, gotch.Float, gotch.CPU)
	assert.ErrorContains(t, torchmods.Try(func() { DACMelLoss(16000).Forward(x, y) }), "differ in shape")
	assert.ErrorContains(t, torchmods.Try(func() { (MelLoss{SampleRate: 1, NMels: []int{5}}).Forward(x, x) }), "one of each per scale")
}

func TestMelDistance(t *testing.T) {
	const sr = 22050
	a := &Audio{SampleRate: sr, Channels: [][]float32{sine(440, 0.5, sr, sr)}}
	d, err := MelDistance(a, a.Clone())
	require.NoError(t, err)
	assert.Equal(t, 0.0, d)
	b := &Audio{SampleRate: sr, Channels: [][]float32{sine(880, 0.5, sr, sr)}}
	d, err = MelDistance(a, b)
	require.NoError(t, err)
	assert.Greater(t, d, 1.0)
	_, err = MelDistance(a, &Audio{SampleRate: sr, Channels: [][]float32{sine(880, 0.5, sr, sr-1)}})
	assert.ErrorContains(t, err, "mel distance: estimate is 22050 Hz, 1 channels, 22050 samples; reference 22050 Hz, 1 channels, 22049 samples")
	_, err = MelDistance(&Audio{SampleRate: sr, Channels: [][]float32{make([]float32, 1000)}}, &Audio{SampleRate: sr, Channels: [][]float32{make([]float32, 1000)}})
	assert.ErrorContains(t, err, "needs more than 1024")

	// A plain log-mel L1 is the log term alone; DAC's loss is another
	// configuration of the same.
	plain := MelLoss{NMels: []int{80}, WindowLengths: []int{512}, ClampEps: 1e-5, LogWeight: 1, Pow: 1}
	dp, err := MelDistanceWith(plain, a, b)
	require.NoError(t, err)
	assert.Greater(t, dp, 0.1)
	dd, err := MelDistanceWith(DACMelLoss(0), a, b)
	require.NoError(t, err)
	assert.Greater(t, dd, dp, "seven scales add up")
}
