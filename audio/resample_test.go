package audio

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sine(freq, amp float64, rate, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return x
}

// fitSine fits a·sin + b·cos at freq to x[lo:hi] by least squares and
// returns the amplitude and the residual's RMS: a right amplitude with a
// tiny residual means the right amplitude at the right frequency.
func fitSine(x []float32, freq float64, rate, lo, hi int) (amp, resid float64) {
	var ss, cc, sc, xs, xc float64
	for i := lo; i < hi; i++ {
		w := 2 * math.Pi * freq * float64(i) / float64(rate)
		s, c := math.Sin(w), math.Cos(w)
		ss += s * s
		cc += c * c
		sc += s * c
		xs += float64(x[i]) * s
		xc += float64(x[i]) * c
	}
	det := ss*cc - sc*sc
	a := (xs*cc - xc*sc) / det
	b := (xc*ss - xs*sc) / det
	r := 0.0
	for i := lo; i < hi; i++ {
		w := 2 * math.Pi * freq * float64(i) / float64(rate)
		d := float64(x[i]) - a*math.Sin(w) - b*math.Cos(w)
		r += d * d
	}
	return math.Hypot(a, b), math.Sqrt(r / float64(hi-lo))
}

func rms(x []float32) float64 {
	s := 0.0
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}

func TestResampleKeepsSinesBelowNyquist(t *testing.T) {
	cases := []struct {
		from, to int
		freqs    []float64
	}{
		{44100, 22050, []float64{440, 1000, 9000}},
		{22050, 16000, []float64{440, 1000, 7000}},
		{44100, 16000, []float64{100, 1000, 7000}},
		{16000, 44100, []float64{1000, 7000}},
		{48000, 44100, []float64{1000, 15000}},
	}
	for _, c := range cases {
		for _, f := range c.freqs {
			x := sine(f, 0.5, c.from, c.from/2)
			y, err := Resample(x, c.from, c.to, ResampleOptions{})
			require.NoError(t, err)
			edge := c.to / 50 // 20 ms away from the padded edges
			amp, resid := fitSine(y, f, c.to, edge, len(y)-edge)
			assert.InDelta(t, 0.5, amp, 0.005, "%d -> %d Hz, %v Hz sine: amplitude within 1%%", c.from, c.to, f)
			assert.Less(t, resid, 0.005, "%d -> %d Hz, %v Hz sine: residual", c.from, c.to, f)
		}
	}
}

func TestResampleAttenuatesAboveNyquist(t *testing.T) {
	for _, c := range []struct {
		from, to int
		freq     float64
	}{{44100, 16000, 12000}, {44100, 22050, 15000}, {22050, 16000, 9500}} {
		x := sine(c.freq, 0.5, c.from, c.from/2)
		y, err := Resample(x, c.from, c.to, ResampleOptions{})
		require.NoError(t, err)
		edge := c.to / 50
		r := rms(y[edge : len(y)-edge])
		assert.Less(t, r, 0.5/math.Sqrt2*1e-3, "%v Hz into %d Hz is attenuated by over 60 dB (rms %v)", c.freq, c.to, r)
	}
}

func TestResampleLengthAndEdges(t *testing.T) {
	x := make([]float32, 1001)
	for i := range x {
		x[i] = 0.25
	}
	y, err := Resample(x, 44100, 16000, ResampleOptions{})
	require.NoError(t, err)
	assert.Len(t, y, 363, "floor(1001*160/441) as julius")
	for i, v := range y {
		require.InDelta(t, 0.25, v, 1e-6, "a constant is kept, edges included (replicate padding, kernels sum to 1): sample %d", i)
	}
	y, err = Resample(x, 44100, 16000, ResampleOptions{Full: true})
	require.NoError(t, err)
	assert.Len(t, y, 364, "ceil with full=True")
	y, err = Resample(x[:1000], 22050, 44100, ResampleOptions{Full: true})
	require.NoError(t, err)
	assert.Len(t, y, 2000, "an exact ratio is the same either way")

	// Equal rates: a copy, not the same slice.
	y, err = Resample(x, 16000, 16000, ResampleOptions{})
	require.NoError(t, err)
	assert.Equal(t, x, y)
	y[0] = 9
	assert.Equal(t, float32(0.25), x[0])

	y, err = Resample(nil, 44100, 16000, ResampleOptions{})
	require.NoError(t, err)
	assert.Empty(t, y)

	_, err = Resample(x, 0, 16000, ResampleOptions{})
	assert.ErrorContains(t, err, "rates must be positive")
	_, err = Resample(x, 44100, 16000, ResampleOptions{Rolloff: 1.5})
	assert.ErrorContains(t, err, "rolloff")
}

// The filter's support: julius' width is ceil(zeros*old/(min(old,new)*rolloff)).
func TestResampleKernels(t *testing.T) {
	r := newResampler(44100, 16000, ResampleOptions{}.withDefaults())
	assert.Equal(t, 441, r.old)
	assert.Equal(t, 160, r.new)
	assert.Equal(t, int(math.Ceil(24*441/(160*0.945))), r.width)
	assert.Len(t, r.kernels, 160)
	assert.Len(t, r.kernels[0], 2*r.width+441)
	// Phase 0 is centred on an input sample: symmetric about it.
	k := r.kernels[0]
	for m := 1; m <= r.width; m++ {
		assert.InDelta(t, k[r.width+m], k[r.width-m], 1e-12)
	}
}

func TestAudioResampleAndMono(t *testing.T) {
	a := &Audio{SampleRate: 44100, Channels: [][]float32{sine(1000, 0.5, 44100, 4410), make([]float32, 4410)}}
	b, err := a.Resample(22050)
	require.NoError(t, err)
	assert.Equal(t, 22050, b.SampleRate)
	assert.Equal(t, 2205, b.Len())
	assert.Equal(t, 2, b.NumChannels())

	m := (&Audio{SampleRate: 8000, Channels: [][]float32{{1, 0.5, -1}, {0, 0.5, 0}, {0.5, -1, 1}}}).Mono()
	assert.Equal(t, [][]float32{{0.5, 0, 0}}, m.Channels)
	assert.Equal(t, 8000, m.SampleRate)

	_, err = (&Audio{SampleRate: 8000}).Resample(16000)
	assert.ErrorContains(t, err, "zero channels")
}
