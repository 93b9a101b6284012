package audio

import (
	"fmt"
	"math"
	"sync"
)

// ResampleOptions are julius.resample_frac's parameters. The zero value
// means julius' defaults, which audiotools' AudioSignal.resample uses.
type ResampleOptions struct {
	// Zeros is how many zero crossings of the sinc the filter keeps on
	// each side (julius: 24). More zeros, a sharper transition band.
	Zeros int
	// Rolloff is the cutoff as a fraction of the lower of the two Nyquist
	// frequencies (julius: 0.945), leaving room for the transition band
	// below Nyquist so that it does not alias; it applies to upsampling as
	// well, where the padded edges would otherwise add high frequencies.
	Rolloff float64
	// Full returns ceil(len*new/old) samples instead of floor.
	Full bool
}

func (o ResampleOptions) withDefaults() ResampleOptions {
	if o.Zeros == 0 {
		o.Zeros = 24
	}
	if o.Rolloff == 0 {
		o.Rolloff = 0.945
	}
	return o
}

// resampler holds julius.ResampleFrac's kernels for one (old, new) pair,
// the rates divided by their gcd: new kernels, one per output phase, each
// 2*width+old taps.
type resampler struct {
	old, new, width int
	kernels         [][]float64
}

var resamplers sync.Map // resamplerKey -> *resampler

type resamplerKey struct {
	old, new, zeros int
	rolloff         float64
}

// newResampler builds julius' filter. Output sample j of each period of new
// samples lies at time j/new (in units of the reduced input period) and is
// sum_i x[i] * sinc(pi*sr*(i/old - j/new)) * hann, with sr = min(old,
// new)*rolloff and the sinc's argument clamped to ±zeros·pi, where the
// window cos²(t/(2·zeros)) reaches 0. Each kernel is renormalised to sum 1
// so that a constant signal is kept exactly.
func newResampler(old, new int, o ResampleOptions) *resampler {
	g := gcd(old, new)
	old, new = old/g, new/g
	key := resamplerKey{old, new, o.Zeros, o.Rolloff}
	if r, ok := resamplers.Load(key); ok {
		return r.(*resampler)
	}
	sr := float64(min(old, new)) * o.Rolloff
	width := int(math.Ceil(float64(o.Zeros) * float64(old) / sr))
	r := &resampler{old: old, new: new, width: width, kernels: make([][]float64, new)}
	zeros := float64(o.Zeros)
	for j := range new {
		k := make([]float64, 2*width+old)
		sum := 0.0
		for m := range k {
			idx := float64(m - width)
			t := (-float64(j)/float64(new) + idx/float64(old)) * sr
			t = math.Max(-zeros, math.Min(zeros, t)) * math.Pi
			w := math.Cos(t / zeros / 2)
			v := w * w
			if t != 0 {
				v *= math.Sin(t) / t
			}
			k[m] = v
			sum += v
		}
		for m := range k {
			k[m] /= sum
		}
		r.kernels[j] = k
	}
	resamplers.Store(key, r)
	return r
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Resample is julius.resample_frac(x, oldRate, newRate) with o's filter
// (zero o: 24 zeros, rolloff 0.945): a band-limited windowed-sinc
// interpolation whose cutoff is rolloff times the lower Nyquist frequency.
// The signal is extended by repeating its edge samples (julius pads in
// 'replicate' mode) and the output has floor(len*new/old) samples
// (ceil with o.Full), as julius. Equal rates return a copy of x.
// Arithmetic is float64 where julius' is float32.
func Resample(x []float32, oldRate, newRate int, o ResampleOptions) ([]float32, error) {
	if oldRate <= 0 || newRate <= 0 {
		return nil, fmt.Errorf("resample from %d Hz to %d Hz: rates must be positive", oldRate, newRate)
	}
	o = o.withDefaults()
	if o.Zeros < 1 || o.Rolloff <= 0 || o.Rolloff > 1 {
		return nil, fmt.Errorf("resample: %d zeros and rolloff %v; want zeros >= 1 and rolloff in (0, 1]", o.Zeros, o.Rolloff)
	}
	if oldRate == newRate {
		return append([]float32(nil), x...), nil
	}
	r := newResampler(oldRate, newRate, o)
	n := len(x)
	num := int64(r.new) * int64(n)
	outLen := int(num / int64(r.old))
	if o.Full && num%int64(r.old) != 0 {
		outLen++
	}
	y := make([]float32, outLen)
	if n == 0 {
		return y, nil
	}
	at := func(p int) float64 { // x extended by its edge samples
		return float64(x[max(0, min(n-1, p))])
	}
	for out := range outLen {
		k, j := out/r.new, out%r.new
		base := k*r.old - r.width
		ker := r.kernels[j]
		s := 0.0
		if base >= 0 && base+len(ker) <= n {
			for m, w := range ker {
				s += w * float64(x[base+m])
			}
		} else {
			for m, w := range ker {
				s += w * at(base+m)
			}
		}
		y[out] = float32(s)
	}
	return y, nil
}

// Resample is AudioSignal.resample: every channel through Resample with
// julius' defaults; the same rate returns a copy.
func (a *Audio) Resample(rate int) (*Audio, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	b := &Audio{SampleRate: rate, Channels: make([][]float32, len(a.Channels))}
	for c, ch := range a.Channels {
		y, err := Resample(ch, a.SampleRate, rate, ResampleOptions{})
		if err != nil {
			return nil, err
		}
		b.Channels[c] = y
	}
	return b, nil
}

// Mono is AudioSignal.to_mono: the mean of the channels (not their sum, so
// a mono file read as two equal channels keeps its level).
func (a *Audio) Mono() *Audio {
	n := a.Len()
	m := make([]float32, n)
	if len(a.Channels) == 1 {
		copy(m, a.Channels[0])
	} else if len(a.Channels) > 1 {
		for i := range n {
			s := 0.0
			for _, ch := range a.Channels {
				s += float64(ch[i])
			}
			m[i] = float32(s / float64(len(a.Channels)))
		}
	}
	return &Audio{SampleRate: a.SampleRate, Channels: [][]float32{m}}
}
