package audio

import (
	"math"
)

// MinLoudness is the floor audiotools puts under AudioSignal.loudness (its
// MIN_LOUDNESS): silence, which BS.1770 leaves at -inf, measures -70 LUFS,
// the absolute gate, so that normalising it gives a finite gain.
const MinLoudness = -70.0

// Biquad is one second-order IIR section, coefficients normalised so that
// a0 = 1: y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2].
type Biquad struct {
	B [3]float64
	A [3]float64
}

// KWeighting is BS.1770's K-weighting at rate Hz: a high shelf (+4 dB above
// about 1.5 kHz, modelling the head) then a high pass (38 Hz, the RLB
// curve). BS.1770-4 tabulates the two biquads for 48 kHz only; like
// pyloudnorm, whose Meter audiotools ports, they are derived here at any
// rate from the RBJ cookbook with pyloudnorm's parameters (shelf: gain 4
// dB, Q 1/√2, fc 1500 Hz; high pass: Q 0.5, fc 38 Hz), so that loudness
// cutoffs mean what they mean in VampNet's data loading. At 48 kHz the
// shelf and the denominators match the tabulated coefficients to 3e-3,
// but the high pass is normalised to unity passband gain where the
// standard's numerator [1, -2, 1] gives +0.043 dB: a level reads 0.04 dB
// below the standard at 44.1 and 48 kHz (0.07 dB at 16 kHz, where the
// bilinear transform warps more), inside EBU Tech 3341's ±0.1 LU.
func KWeighting(rate int) [2]Biquad {
	fs := float64(rate)
	// High shelf.
	G, Q, fc := 4.0, 1/math.Sqrt2, 1500.0
	A := math.Pow(10, G/40)
	w0 := 2 * math.Pi * fc / fs
	alpha := math.Sin(w0) / (2 * Q)
	cw, sA := math.Cos(w0), math.Sqrt(A)
	b0 := A * ((A + 1) + (A-1)*cw + 2*sA*alpha)
	b1 := -2 * A * ((A - 1) + (A+1)*cw)
	b2 := A * ((A + 1) + (A-1)*cw - 2*sA*alpha)
	a0 := (A + 1) - (A-1)*cw + 2*sA*alpha
	a1 := 2 * ((A - 1) - (A+1)*cw)
	a2 := (A + 1) - (A-1)*cw - 2*sA*alpha
	shelf := Biquad{B: [3]float64{b0 / a0, b1 / a0, b2 / a0}, A: [3]float64{1, a1 / a0, a2 / a0}}
	// High pass.
	Q, fc = 0.5, 38.0
	w0 = 2 * math.Pi * fc / fs
	alpha = math.Sin(w0) / (2 * Q)
	cw = math.Cos(w0)
	b0, b1, b2 = (1+cw)/2, -(1 + cw), (1+cw)/2
	a0, a1, a2 = 1+alpha, -2*cw, 1-alpha
	hp := Biquad{B: [3]float64{b0 / a0, b1 / a0, b2 / a0}, A: [3]float64{1, a1 / a0, a2 / a0}}
	return [2]Biquad{shelf, hp}
}

// Filter runs the biquad over x from rest (zero initial state), as
// scipy's lfilter and torchaudio's lfilter do.
func (q Biquad) Filter(x []float64) []float64 {
	y := make([]float64, len(x))
	var x1, x2, y1, y2 float64
	for i, v := range x {
		o := q.B[0]*v + q.B[1]*x1 + q.B[2]*x2 - q.A[1]*y1 - q.A[2]*y2
		x2, x1 = x1, v
		y2, y1 = y1, o
		y[i] = o
	}
	return y
}

// Response is the filter's gain in dB at freq Hz for sample rate rate.
func (q Biquad) Response(freq float64, rate int) float64 {
	w := 2 * math.Pi * freq / float64(rate)
	z1 := complexExp(-w)
	z2 := complexExp(-2 * w)
	num := complex(q.B[0], 0) + complex(q.B[1], 0)*z1 + complex(q.B[2], 0)*z2
	den := complex(q.A[0], 0) + complex(q.A[1], 0)*z1 + complex(q.A[2], 0)*z2
	r := num / den
	return 20 * math.Log10(math.Hypot(real(r), imag(r)))
}

func complexExp(w float64) complex128 { return complex(math.Cos(w), math.Sin(w)) }

// channelWeight is BS.1770's G_i: 1 for left, right and centre, 1.41 for
// the two surround channels (channels 3 and 4 in the 5-channel order that
// pyloudnorm and audiotools assume); other channels get 1.
func channelWeight(c int) float64 {
	if c == 3 || c == 4 {
		return 1.41
	}
	return 1
}

// IntegratedLoudness is BS.1770-4 integrated loudness in LUFS, computed as
// audiotools' Meter.integrated_loudness does:
//
//   - each channel is K-weighted (KWeighting), in float64;
//   - blocks of int(0.4·rate) samples step by int(0.1·rate) (75% overlap);
//     as julius.core.unfold there, the last block is zero-padded so that
//     the blocks cover the whole signal, and a signal shorter than one
//     block is one zero-padded block (pyloudnorm instead drops a partial
//     block; the two differ only in the last block);
//   - a block's mean square z is its sum of squares over 0.4·rate, its
//     loudness -0.691 + 10·log10(Σ_c G_c·z_c);
//   - blocks above the absolute gate (-70 LUFS, strictly) are averaged per
//     channel; the relative gate is that average's loudness - 10 LU; the
//     result is the loudness of the per-channel mean of the blocks above
//     both gates.
//
// When no block passes (silence) the result is -inf, as in BS.1770 and
// pyloudnorm; Loudness floors it at MinLoudness as audiotools does. A
// signal with no samples or no channels is -inf too.
func IntegratedLoudness(a *Audio) float64 {
	if a.Len() == 0 || a.SampleRate <= 0 {
		return math.Inf(-1)
	}
	rate := a.SampleRate
	const blockSec, overlap = 0.4, 0.75
	kernel := int(blockSec * float64(rate))
	stride := int(blockSec * float64(rate) * (1 - overlap))
	n := a.Len()
	nBlocks := int(math.Ceil(float64(max(n, kernel)-kernel)/float64(stride))) + 1
	norm := 1 / (blockSec * float64(rate))
	k := KWeighting(rate)
	nch := a.NumChannels()
	z := make([][]float64, nch) // z[c][j]: block j's mean square in channel c
	for c, ch := range a.Channels {
		x := make([]float64, n)
		for i, v := range ch {
			x[i] = float64(v)
		}
		y := k[1].Filter(k[0].Filter(x))
		// Prefix sums of squares make each block O(1).
		cum := make([]float64, n+1)
		for i, v := range y {
			cum[i+1] = cum[i] + v*v
		}
		z[c] = make([]float64, nBlocks)
		for j := range nBlocks {
			lo := j * stride
			hi := min(lo+kernel, n)
			if lo < hi {
				z[c][j] = (cum[hi] - cum[lo]) * norm
			}
		}
	}
	blockLoudness := func(j int) float64 {
		s := 0.0
		for c := range nch {
			s += channelWeight(c) * z[c][j]
		}
		return -0.691 + 10*math.Log10(s)
	}
	l := make([]float64, nBlocks)
	for j := range l {
		l[j] = blockLoudness(j)
	}
	gatedLoudness := func(gate float64) float64 {
		count := 0
		mean := make([]float64, nch)
		for j, lj := range l {
			if lj > MinLoudness && lj > gate {
				count++
				for c := range nch {
					mean[c] += z[c][j]
				}
			}
		}
		if count == 0 {
			return math.Inf(-1)
		}
		s := 0.0
		for c := range nch {
			s += channelWeight(c) * mean[c] / float64(count)
		}
		return -0.691 + 10*math.Log10(s)
	}
	relGate := gatedLoudness(math.Inf(-1)) - 10
	return gatedLoudness(relGate)
}

// Loudness is AudioSignal.loudness: IntegratedLoudness of the signal
// zero-padded to 0.5 s when shorter (audiotools pads so that a short clip
// has a block), floored at MinLoudness.
func Loudness(a *Audio) float64 {
	if a.SampleRate > 0 && a.Duration() < 0.5 {
		pad := int((0.5 - a.Duration()) * float64(a.SampleRate))
		b := &Audio{SampleRate: a.SampleRate, Channels: make([][]float32, len(a.Channels))}
		for c, ch := range a.Channels {
			b.Channels[c] = append(append([]float32(nil), ch...), make([]float32, pad)...)
		}
		a = b
	}
	return max(IntegratedLoudness(a), MinLoudness)
}

// Normalize is AudioSignal.normalize(db): it multiplies every sample by
// the gain 10^((db - Loudness(a))/20) that brings the measured loudness to
// db LUFS, and returns the new signal and that gain. Like audiotools it
// neither clips nor limits peaks (a quiet track pushed up may exceed 1),
// and because Loudness floors at -70 LUFS, silence gets a finite gain and
// stays silent.
func Normalize(a *Audio, db float64) (*Audio, float64) {
	gain := math.Pow(10, (db-Loudness(a))/20)
	b := &Audio{SampleRate: a.SampleRate, Channels: make([][]float32, len(a.Channels))}
	for c, ch := range a.Channels {
		b.Channels[c] = make([]float32, len(ch))
		for i, v := range ch {
			b.Channels[c][i] = float32(float64(v) * gain)
		}
	}
	return b, gain
}
