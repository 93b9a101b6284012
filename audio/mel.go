package audio

import (
	"fmt"
	"math"
	"sync"

	"github.com/reprolab/repro/torchmods"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Tensor code in this file follows torchmods' rules: it panics on a bad
// shape, dtype or option, and every tensor it makes belongs to the
// caller's scope (intermediates are dropped as soon as they are used).

// STFT is the magnitude of AudioSignal.stft with audiotools' defaults
// (match_stride False): torch.stft with n_fft = window length, a periodic
// Hann window (scipy.signal.get_window("hann", n), which audiotools uses,
// is periodic), centre padding of n_fft/2 on each side in reflect mode,
// onesided, unnormalised, then |·|. x is [B, C, T] (or [B, T], read as
// C = 1); the result is [B, C, n_fft/2+1, frames], frames = 1 + T/hop.
// libtorch's stft is differentiable, so is the magnitude (its gradient at
// a zero bin is 0, from torch's sgn). T must exceed n_fft/2 (reflect
// padding needs it).
func STFT(x *ts.Tensor, windowLength, hopLength int) *ts.Tensor {
	if windowLength < 2 || hopLength < 1 {
		panic(fmt.Errorf("audio.STFT: window length %d and hop %d, want >= 2 and >= 1", windowLength, hopLength))
	}
	shape := x.MustSize()
	var b, c, t int64
	switch len(shape) {
	case 2:
		b, c, t = shape[0], 1, shape[1]
	case 3:
		b, c, t = shape[0], shape[1], shape[2]
	default:
		panic(fmt.Errorf("audio.STFT: input of shape %v, want [B, C, T] or [B, T]", shape))
	}
	if t <= int64(windowLength/2) {
		panic(fmt.Errorf("audio.STFT: %d samples, but reflect padding of a %d-sample window needs more than %d", t, windowLength, windowLength/2))
	}
	flat := x.MustReshape([]int64{b * c, t}, false)
	win := ts.MustHannWindowPeriodic(int64(windowLength), true, x.DType(), x.MustDevice())
	spec := flat.MustStftCenter(int64(windowLength), []int64{int64(hopLength)}, []int64{int64(windowLength)}, win, true, "reflect", false, true, true, true)
	win.MustDrop()
	mag := spec.MustAbs(true)
	s := mag.MustSize()
	return mag.MustReshape([]int64{b, c, s[1], s[2]}, true)
}

// HzToMel is librosa.hz_to_mel with htk=False (the Slaney scale, which
// librosa, and so audiotools, uses by default): linear below 1 kHz at 3
// mels per 200 Hz (1 kHz = 15 mels), logarithmic above, 27 mels per factor
// 6.4.
func HzToMel(f float64) float64 {
	const fSp, minLogHz, minLogMel = 200.0 / 3, 1000.0, 15.0
	logstep := math.Log(6.4) / 27
	if f >= minLogHz {
		return minLogMel + math.Log(f/minLogHz)/logstep
	}
	return f / fSp
}

// MelToHz is librosa.mel_to_hz with htk=False, HzToMel's inverse.
func MelToHz(m float64) float64 {
	const fSp, minLogHz, minLogMel = 200.0 / 3, 1000.0, 15.0
	logstep := math.Log(6.4) / 27
	if m >= minLogMel {
		return minLogHz * math.Exp(logstep*(m-minLogMel))
	}
	return fSp * m
}

type melKey struct {
	sr, nFFT, nMels int
	fmin, fmax      float64
}

var melCache sync.Map // melKey -> []float32

// MelFilters is librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) with
// its defaults (htk False, norm "slaney"), which audiotools'
// get_mel_filters calls: nMels triangles on the FFT bins' frequencies
// (k·sr/n_fft, k = 0..n_fft/2), their corners nMels+2 points equally
// spaced in Slaney mels from fmin to fmax (fmax <= 0: sr/2), each scaled by
// 2/(its width in Hz) so that every triangle has unit area in Hz. Row-major
// [nMels][n_fft/2+1], float32 as librosa returns. A triangle narrower than
// the bin spacing may be all zeros, as librosa (which warns) leaves it.
func MelFilters(sr, nFFT, nMels int, fmin, fmax float64) []float32 {
	if fmax <= 0 {
		fmax = float64(sr) / 2
	}
	key := melKey{sr, nFFT, nMels, fmin, fmax}
	if w, ok := melCache.Load(key); ok {
		return w.([]float32)
	}
	nf := nFFT/2 + 1
	fft := make([]float64, nf)
	for k := range fft {
		fft[k] = float64(k) * float64(sr) / float64(nFFT) // np.fft.rfftfreq(n_fft, 1/sr)
	}
	lo, hi := HzToMel(fmin), HzToMel(fmax)
	melF := make([]float64, nMels+2)
	for i := range melF {
		melF[i] = MelToHz(lo + (hi-lo)*float64(i)/float64(nMels+1))
	}
	w := make([]float32, nMels*nf)
	for i := range nMels {
		d0, d1 := melF[i+1]-melF[i], melF[i+2]-melF[i+1]
		enorm := 2 / (melF[i+2] - melF[i])
		for k, f := range fft {
			lower := (f - melF[i]) / d0
			upper := (melF[i+2] - f) / d1
			w[i*nf+k] = float32(math.Max(0, math.Min(lower, upper)) * enorm)
		}
	}
	melCache.Store(key, w)
	return w
}

// MelSpectrogram is AudioSignal.mel_spectrogram(nMels, fmin, fmax,
// window_length, hop_length): MelFilters applied to the STFT magnitude
// (not the power: audiotools raises to MelLoss.Pow afterwards). x is
// [B, C, T]; the result is [B, C, nMels, frames]. fmax <= 0 means sr/2.
func MelSpectrogram(x *ts.Tensor, sampleRate, nMels, windowLength, hopLength int, fmin, fmax float64) *ts.Tensor {
	mag := STFT(x, windowLength, hopLength)
	nf := int64(windowLength/2 + 1)
	// audiotools passes n_fft = 2·(bins-1), the window length rounded
	// down to even.
	fb := ts.MustOfSlice(MelFilters(sampleRate, 2*(windowLength/2), nMels, fmin, fmax)).MustView([]int64{int64(nMels), nf}, true)
	if x.DType() != gotch.Float || x.MustDevice() != gotch.CPU {
		fb = fb.MustTo(x.MustDevice(), true).MustTotype(x.DType(), true)
	}
	out := fb.MustMatmul(mag, false) // [M, F] @ [B, C, F, N]
	fb.MustDrop()
	mag.MustDrop()
	return out
}

// MelLoss is audiotools' (and DAC's) MelSpectrogramLoss: for each scale i,
// mel spectrograms with NMels[i] bands of windows WindowLengths[i], hop a
// quarter window, then
//
//	LogWeight·L1(log10(clamp(Xm, ClampEps)^Pow), log10(clamp(Ym, ClampEps)^Pow)) + MagWeight·L1(Xm, Ym)
//
// summed over scales, L1 being the mean absolute difference. The clamp
// keeps log10 and its gradient finite in silence.
type MelLoss struct {
	SampleRate    int
	NMels         []int
	WindowLengths []int
	// Fmin and Fmax per scale; nil for 0 and sr/2 (what every config uses).
	Fmin, Fmax []float64
	ClampEps   float64
	MagWeight  float64
	LogWeight  float64
	Pow        float64
}

// DACMelLoss is the codec training loss of DAC's conf/base.yml (and lac's,
// the codec VampNet uses): seven scales, n_mels 5..320 with windows
// 32..2048, clamp_eps 1e-5, pow 1, mag_weight 0, log_weight 1 (weighted by
// 15 among the losses, lambdas mel/loss, which is the trainer's business).
func DACMelLoss(sampleRate int) MelLoss {
	return MelLoss{
		SampleRate:    sampleRate,
		NMels:         []int{5, 10, 20, 40, 80, 160, 320},
		WindowLengths: []int{32, 64, 128, 256, 512, 1024, 2048},
		ClampEps:      1e-5, MagWeight: 0, LogWeight: 1, Pow: 1,
	}
}

// DefaultMelLoss is MelSpectrogramLoss() with its class defaults: n_mels
// [150, 80], windows [2048, 512], clamp_eps 1e-5, mag_weight 1, log_weight
// 1, pow 2. VampNet's scripts/exp/eval.py reports this as its "mel" metric.
func DefaultMelLoss(sampleRate int) MelLoss {
	return MelLoss{
		SampleRate:    sampleRate,
		NMels:         []int{150, 80},
		WindowLengths: []int{2048, 512},
		ClampEps:      1e-5, MagWeight: 1, LogWeight: 1, Pow: 2,
	}
}

func (l MelLoss) check() {
	if l.SampleRate <= 0 || len(l.NMels) == 0 || len(l.NMels) != len(l.WindowLengths) ||
		(l.Fmin != nil && len(l.Fmin) != len(l.NMels)) || (l.Fmax != nil && len(l.Fmax) != len(l.NMels)) {
		panic(fmt.Errorf("audio.MelLoss: sample rate %d, %d n_mels, %d window lengths, %d fmin, %d fmax: want a positive rate and one of each per scale",
			l.SampleRate, len(l.NMels), len(l.WindowLengths), len(l.Fmin), len(l.Fmax)))
	}
	if l.ClampEps <= 0 {
		panic(fmt.Errorf("audio.MelLoss: clamp_eps %v, want > 0", l.ClampEps))
	}
}

// Forward is the loss between an estimate x and a reference y, both
// [B, C, T] (or [B, T]) of one shape; a 0-d tensor, differentiable in x
// (and y). Each log-mel is computed once per scale and dropped after use.
func (l MelLoss) Forward(x, y *ts.Tensor) *ts.Tensor {
	l.check()
	xs, ys := x.MustSize(), y.MustSize()
	if fmt.Sprint(xs) != fmt.Sprint(ys) {
		panic(fmt.Errorf("audio.MelLoss: estimate %v and reference %v differ in shape", xs, ys))
	}
	var loss *ts.Tensor
	add := func(term *ts.Tensor, w float64) {
		term = term.MustMulScalar(ts.FloatScalar(w), true)
		if loss == nil {
			loss = term
			return
		}
		loss = loss.MustAdd(term, true)
		term.MustDrop()
	}
	for i, nm := range l.NMels {
		w := l.WindowLengths[i]
		var fmin, fmax float64
		if l.Fmin != nil {
			fmin = l.Fmin[i]
		}
		if l.Fmax != nil {
			fmax = l.Fmax[i]
		}
		xm := MelSpectrogram(x, l.SampleRate, nm, w, w/4, fmin, fmax)
		ym := MelSpectrogram(y, l.SampleRate, nm, w, w/4, fmin, fmax)
		if l.LogWeight != 0 {
			xl, yl := l.logMel(xm), l.logMel(ym)
			add(xl.MustL1Loss(yl, 1, false), l.LogWeight)
			xl.MustDrop()
			yl.MustDrop()
		}
		if l.MagWeight != 0 {
			add(xm.MustL1Loss(ym, 1, false), l.MagWeight)
		}
		xm.MustDrop()
		ym.MustDrop()
	}
	if loss == nil { // both weights zero
		loss = ts.MustZeros([]int64{}, x.DType(), x.MustDevice())
	}
	return loss
}

// logMel is log10(clamp(m, eps)^pow).
func (l MelLoss) logMel(m *ts.Tensor) *ts.Tensor {
	c := m.MustClampMin(ts.FloatScalar(l.ClampEps), false)
	if l.Pow != 1 {
		c = c.MustPowTensorScalar(ts.FloatScalar(l.Pow), true)
	}
	return c.MustLog10(true)
}

// MelDistance is the evaluation metric of VampNet's scripts/exp/eval.py,
// audiotools' MelSpectrogramLoss() with its defaults (DefaultMelLoss)
// between an estimate and a reference of one rate and length, without
// gradients. Signals are mono-mixed by the caller or compared channel by
// channel (equal channel counts). Unlike the loss it returns an error on
// mismatched inputs, since it meets the caller's data rather than a model.
func MelDistance(x, y *Audio) (float64, error) {
	return MelDistanceWith(DefaultMelLoss(0), x, y)
}

// MelDistanceWith is MelDistance with another configuration, such as a
// plain log-mel L1 (MagWeight 0, LogWeight 1, Pow 1) or DACMelLoss. l's
// SampleRate is replaced by the signals'.
func MelDistanceWith(l MelLoss, x, y *Audio) (float64, error) {
	if err := x.check(); err != nil {
		return 0, fmt.Errorf("mel distance: estimate: %w", err)
	}
	if err := y.check(); err != nil {
		return 0, fmt.Errorf("mel distance: reference: %w", err)
	}
	if x.SampleRate != y.SampleRate || x.Len() != y.Len() || x.NumChannels() != y.NumChannels() {
		return 0, fmt.Errorf("mel distance: estimate is %d Hz, %d channels, %d samples; reference %d Hz, %d channels, %d samples",
			x.SampleRate, x.NumChannels(), x.Len(), y.SampleRate, y.NumChannels(), y.Len())
	}
	for _, w := range l.WindowLengths {
		if x.Len() <= w/2 {
			return 0, fmt.Errorf("mel distance: %d samples, the %d-sample window needs more than %d", x.Len(), w, w/2)
		}
	}
	l.SampleRate = x.SampleRate
	var d float64
	err := torchmods.Try(func() {
		s := ts.NewScope()
		defer s.Close()
		ts.NoGrad(func() {
			d = l.Forward(AudioTensor(x), AudioTensor(y)).Float64Values()[0]
		})
	})
	if err != nil {
		return 0, fmt.Errorf("mel distance: %w", err)
	}
	return d, nil
}

// AudioTensor is a as a float32 [1, C, T] tensor on the CPU, in the
// caller's scope.
func AudioTensor(a *Audio) *ts.Tensor {
	n := a.Len()
	flat := make([]float32, 0, a.NumChannels()*n)
	for _, ch := range a.Channels {
		flat = append(flat, ch...)
	}
	return ts.MustOfSlice(flat).MustView([]int64{1, int64(a.NumChannels()), int64(n)}, true)
}
