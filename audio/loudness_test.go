package audio

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// bs1770 are the K-weighting biquads BS.1770-4 (Tables 1 and 2) tabulates
// for 48 kHz: the reference the re-derived filters are checked against.
var bs1770 = [2]Biquad{
	{B: [3]float64{1.53512485958697, -2.69169618940638, 1.19839281085285}, A: [3]float64{1, -1.69065929318241, 0.73248077421585}},
	{B: [3]float64{1, -2, 1}, A: [3]float64{1, -1.99004745483398, 0.99007225036621}},
}

func TestKWeightingMatchesBS1770At48k(t *testing.T) {
	k := KWeighting(48000)
	for i := range 3 {
		assert.InDelta(t, bs1770[0].B[i], k[0].B[i], 3e-3, "shelf b%d", i)
		assert.InDelta(t, bs1770[0].A[i], k[0].A[i], 3e-3, "shelf a%d", i)
		assert.InDelta(t, bs1770[1].A[i], k[1].A[i], 1e-4, "high pass a%d", i)
		// pyloudnorm's high pass has unity gain at Nyquist; the standard's
		// numerator [1, -2, 1] is not normalised, +0.043 dB over the band.
		assert.InDelta(t, bs1770[1].B[i], k[1].B[i]/k[1].B[0], 1e-12, "high pass b%d/b0", i)
	}
	assert.InDelta(t, 0.043, 20*math.Log10(1/k[1].B[0]), 1e-3)
	// Less that offset, the responses agree to 0.02 dB over the band.
	for _, f := range []float64{50, 100, 500, 997, 2000, 5000, 10000, 16000} {
		want := bs1770[0].Response(f, 48000) + bs1770[1].Response(f, 48000)
		got := k[0].Response(f, 48000) + k[1].Response(f, 48000)
		assert.InDelta(t, want-0.043, got, 0.02, "%v Hz", f)
	}
}

// k997 is the gain of the standard's K-weighting at 997 Hz, about +0.69 dB:
// the 0.691 in BS.1770's formula cancels it, so that a full-scale 997 Hz
// sine in one channel reads -3.01 LUFS.
func k997() float64 { return bs1770[0].Response(997, 48000) + bs1770[1].Response(997, 48000) }

// TestLoudnessOfSine checks a 997 Hz sine of amplitude A against
// 20·log10(A) - 3.01 + K(997 Hz) - 0.691: exactly (to the blocks' edge
// effects) with this package's K-weighting at the signal's rate, and
// within EBU Tech 3341's ±0.1 LU with the standard's 48 kHz filter: the
// pyloudnorm filters (and so audiotools') read 0.04 dB low at 44.1 and 48
// kHz and 0.07 dB low at 16 kHz.
func TestLoudnessOfSine(t *testing.T) {
	assert.InDelta(t, 0.69, k997(), 0.01)
	for _, rate := range []int{48000, 44100, 16000} {
		k := KWeighting(rate)
		kw := k[0].Response(997, rate) + k[1].Response(997, rate)
		for _, amp := range []float64{1, 0.1, 0.01} {
			a := &Audio{SampleRate: rate, Channels: [][]float32{sine(997, amp, rate, 10*rate)}}
			got := IntegratedLoudness(a)
			want := 20*math.Log10(amp) - 10*math.Log10(2) - 0.691
			assert.InDelta(t, want+kw, got, 2e-3, "%d Hz, amplitude %v, own filter", rate, amp)
			assert.InDelta(t, want+k997(), got, 0.1, "%d Hz, amplitude %v, BS.1770's filter", rate, amp)
		}
	}
	// -20 dBFS: about -23 LUFS (-23.05 here).
	a := &Audio{SampleRate: 48000, Channels: [][]float32{sine(997, 0.1, 48000, 480000)}}
	assert.InDelta(t, -23.05, Loudness(a), 0.01)

	// Two equal channels have twice the power: +3.01 dB. A surround
	// channel (index 3) weighs 1.41.
	l1 := IntegratedLoudness(a)
	s := a.Channels[0]
	assert.InDelta(t, l1+10*math.Log10(2), IntegratedLoudness(&Audio{SampleRate: 48000, Channels: [][]float32{s, s}}), 1e-9)
	z := make([]float32, len(s))
	assert.InDelta(t, l1+10*math.Log10(1.41), IntegratedLoudness(&Audio{SampleRate: 48000, Channels: [][]float32{z, z, z, s}}), 1e-9)
}

func TestLoudnessSilenceAndAbsoluteGate(t *testing.T) {
	silent := NewAudio(44100, 2, 44100)
	assert.True(t, math.IsInf(IntegratedLoudness(silent), -1), "silence is -inf as in BS.1770")
	assert.Equal(t, MinLoudness, Loudness(silent), "audiotools floors it at -70")
	assert.True(t, math.IsInf(IntegratedLoudness(&Audio{SampleRate: 44100, Channels: [][]float32{{}}}), -1))

	// A sine at about -75 LUFS is wholly below the absolute gate; at -65
	// LUFS it is measured.
	amp := func(lufs float64) float64 { return math.Pow(10, (lufs+10*math.Log10(2)-k997()+0.043+0.691)/20) }
	quiet := &Audio{SampleRate: 48000, Channels: [][]float32{sine(997, amp(-75), 48000, 240000)}}
	assert.True(t, math.IsInf(IntegratedLoudness(quiet), -1))
	assert.Equal(t, MinLoudness, Loudness(quiet))
	soft := &Audio{SampleRate: 48000, Channels: [][]float32{sine(997, amp(-65), 48000, 240000)}}
	assert.InDelta(t, -65, IntegratedLoudness(soft), 0.05)
}

func TestLoudnessRelativeGate(t *testing.T) {
	const rate = 48000
	loud := sine(997, 0.1, rate, 20*rate)   // about -23 LUFS
	quiet := sine(997, 0.01, rate, 20*rate) // about -43 LUFS: under -23-3-10
	l := IntegratedLoudness(&Audio{SampleRate: rate, Channels: [][]float32{loud}})
	both := IntegratedLoudness(&Audio{SampleRate: rate, Channels: [][]float32{append(append([]float32(nil), loud...), quiet...)}})
	// Ungated, the mean power of the two halves would be about 3 dB below
	// the loud half; gated, only the few blocks across the join (3 of
	// about 200) pull it down, by under 0.1 dB.
	assert.InDelta(t, l, both, 0.1)
	assert.Less(t, both, l)

	// Silence after the music is gated out as well.
	withSilence := IntegratedLoudness(&Audio{SampleRate: rate, Channels: [][]float32{append(append([]float32(nil), loud...), make([]float32, 20*rate)...)}})
	assert.InDelta(t, l, withSilence, 0.1)

	// A quieter second half within 10 LU is kept: about the energy mean.
	mid := sine(997, 0.05, rate, 20*rate) // -6 dB
	mixed := IntegratedLoudness(&Audio{SampleRate: rate, Channels: [][]float32{append(append([]float32(nil), loud...), mid...)}})
	assert.InDelta(t, l+10*math.Log10((1+0.25)/2), mixed, 0.05)
}

func TestLoudnessShortClip(t *testing.T) {
	// 0.1 s is padded to 0.5 s (audiotools), so one 0.4 s block holds all
	// of it and a second the rest: measurable, and quieter than the sine.
	a := &Audio{SampleRate: 44100, Channels: [][]float32{sine(997, 0.1, 44100, 4410)}}
	l := Loudness(a)
	assert.False(t, math.IsInf(l, 0))
	assert.Less(t, l, -23.0)
	assert.Equal(t, 4410, a.Len(), "the caller's signal is not padded")
}

func TestNormalize(t *testing.T) {
	a := &Audio{SampleRate: 44100, Channels: [][]float32{sine(997, 0.3, 44100, 5*44100), sine(440, 0.2, 44100, 5*44100)}}
	before := Loudness(a)
	b, gain := Normalize(a, -24)
	assert.InDelta(t, math.Pow(10, (-24-before)/20), gain, 1e-12)
	assert.InDelta(t, -24, Loudness(b), 1e-3)
	assert.InDelta(t, 0.3, maxAbs(a.Channels[0]), 1e-4, "the input is untouched")

	// Silence: gain from the -70 floor, and still silence.
	s, gain := Normalize(NewAudio(44100, 1, 44100), -16)
	assert.InDelta(t, math.Pow(10, 54.0/20), gain, 1e-9)
	assert.Equal(t, float64(0), maxAbs(s.Channels[0]))

	// No clipping: a quiet sine pushed to 0 LUFS goes over 1.
	q, _ := Normalize(&Audio{SampleRate: 44100, Channels: [][]float32{sine(997, 0.01, 44100, 44100)}}, 0)
	assert.Greater(t, maxAbs(q.Channels[0]), 1.0)
}

func maxAbs(x []float32) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}
