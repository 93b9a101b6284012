package vampnet

// The masks of the official vampnet/mask.py (ismir-2023), with the same
// semantics on gotch tensors, and the mask recipes of interface.py
// (make_beat_mask) and app.py (_vamp's mask section, BuildMask here).
//
// Conventions, as the official code has them:
//   - codes are int64 [batch, n_codebooks, seq];
//   - a mask has the codes' shape and holds int64 0/1, 1 = masked (the
//     model predicts it), 0 = kept (a prompt);
//   - a new mask lives on the device of the tensor it was built from.
//
// Errors. Every builder checks its caller's data (shapes, dtypes, binary
// values, option ranges) and returns an error naming what it got, where
// the official code asserts or would crash in torch (torchmods/doc.go:
// checking a caller's data returns an error). Inside, the tensor ops are
// on checked inputs; one that panics all the same is a bug.
//
// Masks given to a builder must be int64 (torch.long). The official code
// asserts that only in apply_mask; the others would run on any dtype, but
// every mask it makes is long, so the stricter check here only turns a
// mix-up into an error.
//
// Randomness. The random masks draw from the caller's *rand.Rand
// (math/rand/v2), one uniform per Bernoulli trial in row-major order of
// the mask (batch, codebook, time), so a seeded source makes them
// reproducible and independent of libtorch's global generator (which a
// training loop's dropout also draws from). They match the official masks
// in distribution, not draw for draw: torch.bernoulli's stream is not
// reproduced. A trial whose probability is 0 or 1 draws nothing.
//
// Tensor lifetime. Each builder runs in its own ts.Scope and keeps only
// its result, which goes to the caller's innermost scope (or to the
// garbage collector when none is open), as torchmods/doc.go has it.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Gamma is mask.py's _gamma on one float64, the masking schedule
// cos(pi r/2) clamped to [1e-10, 1]: the fraction of tokens masked at
// r in [0, 1] (training: per sample; sampling: the fraction left masked
// after step r).
func Gamma(r float64) float64 { return math.Min(1, math.Max(1e-10, math.Cos(r*math.Pi/2))) }

// InvGamma is mask.py's _invgamma on one float64, 2 acos(y)/pi.
func InvGamma(y float64) float64 { return 2 * math.Acos(y) / math.Pi }

// GammaTensor is the masking schedule, mask.py's _gamma, on a tensor:
// cos(pi r/2) clamped to [1e-10, 1], elementwise, in r's floating dtype
// (float32 for an int r, as torch promotes), computed as (r*pi)/2 in that
// order like the official. The floor keeps a mask ratio of 0 from ever
// being exactly 0, so Random at r = 1 may still mask a token.
func GammaTensor(r *ts.Tensor) *ts.Tensor {
	s := ts.NewScope()
	defer s.Close()
	out := r.MustMulScalar(ts.FloatScalar(math.Pi), false).
		MustDivScalar(ts.FloatScalar(2), true).
		MustCos(true).
		MustClamp(ts.FloatScalar(1e-10), ts.FloatScalar(1.0), true)
	s.Keep(out)
	return out
}

// InvGammaTensor is mask.py's _invgamma, 2 acos(y)/pi: the r at which the
// schedule reaches the mask ratio y (for y in [0, 1]; below 1e-10 the
// clamp loses it). The official also accepts a Python number and returns
// a one-element tensor: pass a one-element tensor.
func InvGammaTensor(y *ts.Tensor) *ts.Tensor {
	s := ts.NewScope()
	defer s.Close()
	out := y.MustAcos(false).MustMulScalar(ts.FloatScalar(2), true).MustDivScalar(ts.FloatScalar(math.Pi), true)
	s.Keep(out)
	return out
}

// BatchScalar is util.py's scalar_to_batch_tensor for a float: v repeated
// batch times, float32 (torch.tensor of a Python float). It is how the
// official functions turn a scalar r into a per-sample r.
func BatchScalar(v float64, batch int64) *ts.Tensor {
	vals := make([]float32, batch)
	for i := range vals {
		vals[i] = float32(v)
	}
	return ts.MustOfSlice(vals)
}

// S2T is interface.py's s2t, seconds to codec frames:
// ceil(seconds*sampleRate/hopLength), evaluated in that order as Python
// does, so that the rounding matches.
func S2T(seconds float64, sampleRate, hopLength int) int64 {
	return int64(math.Ceil(seconds * float64(sampleRate) / float64(hopLength)))
}

// FullMask is mask.py's full_mask: ones (everything masked), int64, x's
// shape and device. x must be [batch, n_codebooks, seq].
func FullMask(x *ts.Tensor) (*ts.Tensor, error) {
	shape, err := shape3(x, "x")
	if err != nil {
		return nil, err
	}
	return constMask(shape, 1, x.MustDevice()), nil
}

// EmptyMask is mask.py's empty_mask: zeros (nothing masked).
func EmptyMask(x *ts.Tensor) (*ts.Tensor, error) {
	shape, err := shape3(x, "x")
	if err != nil {
		return nil, err
	}
	return constMask(shape, 0, x.MustDevice()), nil
}

// ApplyMask is mask.py's apply_mask: x*(1-mask) + maskToken*mask, the
// codes with every masked position replaced by the mask token, in the
// dtype torch promotes x and the int64 mask to. It refuses, as the
// official asserts do, a mask that is not 3-D, not x's shape, not int64
// or not binary. The official also returns the mask unchanged; the caller
// has it already.
func ApplyMask(x, mask *ts.Tensor, maskToken int64) (*ts.Tensor, error) {
	s := ts.NewScope()
	defer s.Close()
	if x == nil || mask == nil {
		return nil, fmt.Errorf("vampnet: ApplyMask: nil tensor")
	}
	ms, xs := mask.MustSize(), x.MustSize()
	if len(ms) != 3 {
		return nil, fmt.Errorf("vampnet: ApplyMask: mask must be (batch, n_codebooks, seq), got shape %v", ms)
	}
	if !slices.Equal(ms, xs) {
		return nil, fmt.Errorf("vampnet: ApplyMask: mask must be the same shape as x, got mask %v and x %v", ms, xs)
	}
	if dt := mask.DType(); dt != gotch.Int64 {
		return nil, fmt.Errorf("vampnet: ApplyMask: mask must be int64 (torch.long), got %v", dt)
	}
	if err := checkBinary(readInt64(mask), "ApplyMask: mask", ms); err != nil {
		return nil, err
	}
	fill := x.MustFullLike(ts.IntScalar(maskToken), false)
	keep := mask.MustOnesLike(false).MustSub(mask, true)
	out := x.MustMul(keep, false).MustAdd(fill.MustMul(mask, true), true)
	s.Keep(out)
	return out, nil
}

// Random is mask.py's random, the training mask: every token of sample b
// is masked with probability GammaTensor(r[b]). r is a per-sample tensor of
// shape [batch] (or [1], which torch broadcasts to every sample); use
// BatchScalar for one r for all. At r = 0 everything is masked; at r = 1
// the probability is Gamma's floor, 1e-10.
func Random(x, r *ts.Tensor, rng *rand.Rand) (*ts.Tensor, error) {
	s := ts.NewScope()
	defer s.Close()
	shape, err := shape3(x, "x")
	if err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("vampnet: Random: nil rng")
	}
	if r == nil || len(r.MustSize()) != 1 {
		return nil, fmt.Errorf("vampnet: Random: r must be a per-sample vector [batch], got %v", sizeOf(r))
	}
	// _gamma(r)[:, None, None] * ones_like(x) broadcasts r over the batch:
	// [n] must be [B] or [1]. (With B = 1 and n > 1 torch would return an
	// [n, C, T] mask of the wrong shape; that is refused too.)
	p := readFloat64(GammaTensor(r))
	if n := int64(len(p)); n != shape[0] && n != 1 {
		return nil, fmt.Errorf("vampnet: Random: r has %d values for a batch of %d (x %v)", n, shape[0], shape)
	}
	per := shape[1] * shape[2]
	out := bernoulliMask(shape, p, rng, x.MustDevice(), func(i int64) int64 { return i / per }) // sample b's probability
	s.Keep(out)
	return out, nil
}

// LinearRandom is mask.py's linear_random: every token masked with
// probability r itself (no schedule), as the app uses it with
// rand_mask_intensity.
//
// Quirk kept: the official multiplies probs [B, C, T] by r [B], which
// torch broadcasts along TIME, not batch. So r must have 1 value (one
// probability for all), or T values (then r[t] is the probability at
// time t, whatever the batch); a scalar r for a batch of B > 1 becomes
// [B] there and fails unless T == B. Anything else, where torch would
// raise (or, for T = 1, return a mask of the wrong shape), is an error.
func LinearRandom(x, r *ts.Tensor, rng *rand.Rand) (*ts.Tensor, error) {
	s := ts.NewScope()
	defer s.Close()
	shape, err := shape3(x, "x")
	if err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("vampnet: LinearRandom: nil rng")
	}
	if r == nil || len(r.MustSize()) != 1 {
		return nil, fmt.Errorf("vampnet: LinearRandom: r must be a vector, got %v", sizeOf(r))
	}
	// probs are float32 (ones.float() * r), so the probability is r's value
	// rounded to float32.
	p := readFloat64(r.MustTotype(gotch.Float, false))
	T := shape[2]
	if n := int64(len(p)); n != 1 && n != T {
		return nil, fmt.Errorf("vampnet: LinearRandom: r with %d values does not broadcast against x %v (the official multiplies along time: r needs 1 or %d values)", n, shape, T)
	}
	out := bernoulliMask(shape, p, rng, x.MustDevice(), func(i int64) int64 { return i % T }) // time t's probability
	s.Keep(out)
	return out, nil
}

// Inpaint is mask.py's inpaint: a full mask but for the first nPrefix and
// the last nSuffix time steps of each sample (the prompt kept for
// continuation/inpainting). A count of one value applies to every sample
// (the official's Python int, how every official caller calls it); B
// values give each sample its own.
//
// Kept: a count <= 0 keeps nothing; a count over T keeps every step. The
// official takes per-row counts as a tensor but its `if n_prefix > 0`
// raises for a tensor of more than one value (and a one-value tensor
// touches row 0 only); per-row counts here do what its loop does per
// row. Counts of another length are an error (the loop would index past
// the batch, or leave rows untouched).
func Inpaint(x *ts.Tensor, nPrefix, nSuffix []int64) (*ts.Tensor, error) {
	shape, err := shape3(x, "x")
	if err != nil {
		return nil, err
	}
	B, C, T := shape[0], shape[1], shape[2]
	pre, err := perRow(nPrefix, B, "nPrefix")
	if err != nil {
		return nil, err
	}
	suf, err := perRow(nSuffix, B, "nSuffix")
	if err != nil {
		return nil, err
	}
	vals := ones(B * C * T)
	for b := range B {
		for c := range C {
			row := vals[(b*C+c)*T : (b*C+c+1)*T]
			if n := pre[b]; n > 0 { // mask[i, :, :n] = 0
				clear(row[:min(n, T)])
			}
			if n := suf[b]; n > 0 { // mask[i, :, -n:] = 0
				clear(row[max(T-n, 0):])
			}
		}
	}
	return newMask(vals, shape, x.MustDevice()), nil
}

// PeriodicMask is mask.py's periodic_mask, the periodic prompt: a full
// mask but for the steps j with j % period == 0 and their neighbours,
// every sample and codebook alike. With randomRoll the whole mask is then
// rolled along time by an offset drawn uniformly from [0, period) (one
// offset for the batch, as the official draws one); rng is needed only
// then.
//
// The official loop's semantics, kept:
//   - period 0 returns a full mask (no prompt at all), before any roll;
//   - the kept span around j is [max(0, j - width//2), min(T-1, j + width//2) + 1):
//     width 0 and width 1 both keep the single step j, and an even width w
//     keeps w+1 steps (2 keeps 3);
//   - a negative period acts as its absolute value in the loop (Python's
//     j % -p is 0 exactly when j % p is), but with randomRoll
//     torch.randint(0, period) raises: an error here;
//   - a negative width makes torch.ones(j_end - j_start) negative-sized
//     and raise: an error here.
func PeriodicMask(x *ts.Tensor, period, width int64, randomRoll bool, rng *rand.Rand) (*ts.Tensor, error) {
	shape, err := shape3(x, "x")
	if err != nil {
		return nil, err
	}
	B, C, T := shape[0], shape[1], shape[2]
	vals := ones(B * C * T)
	if period == 0 {
		return newMask(vals, shape, x.MustDevice()), nil
	}
	if width < 0 {
		return nil, fmt.Errorf("vampnet: PeriodicMask: width %d is negative (the official raises on a negative-sized fill)", width)
	}
	if randomRoll && period < 0 {
		return nil, fmt.Errorf("vampnet: PeriodicMask: random roll needs a positive period, got %d (torch.randint(0, %d) raises)", period, period)
	}
	if randomRoll && rng == nil {
		return nil, fmt.Errorf("vampnet: PeriodicMask: random roll needs an rng")
	}
	p := period
	if p < 0 {
		p = -p
	}
	half := width / 2 // width >= 0: Python's floor division
	for b := range B {
		for j := int64(0); j < T; j++ {
			if j%p != 0 {
				continue
			}
			lo, hi := max(0, j-half), min(T-1, j+half)+1
			for c := range C {
				row := vals[(b*C+c)*T : (b*C+c+1)*T]
				clear(row[lo:hi])
			}
		}
	}
	if randomRoll {
		if off := rng.Int64N(period); off != 0 && T > 0 {
			rolled := make([]int64, len(vals))
			for r := int64(0); r < B*C; r++ { // torch.roll: out[(t+off) % T] = in[t]
				for t := range T {
					rolled[r*T+(t+off)%T] = vals[r*T+t]
				}
			}
			vals = rolled
		}
	}
	return newMask(vals, shape, x.MustDevice()), nil
}

// CodebookUnmask is mask.py's codebook_unmask: a copy of mask with the
// first n codebooks unmasked (mask[:, :n, :] = 0), the conditioning
// codebooks of coarse-to-fine, which the model is never asked for. n
// follows Python's slice: 0 unmasks nothing, n over the codebook count
// unmasks all, a negative n unmasks all but the last -n. (The official's
// n = None, which returns the mask itself, is not calling this.)
func CodebookUnmask(mask *ts.Tensor, n int64) (*ts.Tensor, error) {
	shape, vals, err := readMask(mask, "CodebookUnmask: mask")
	if err != nil {
		return nil, err
	}
	lo, hi := pySlice(0, n, shape[1])
	setCodebooks(vals, shape, lo, hi, 0)
	return newMask(vals, shape, mask.MustDevice()), nil
}

// CodebookMask is mask.py's codebook_mask: a copy of mask with every
// codebook from start on masked (mask[:, start:, :] = 1), the app's "first
// upper codebook level to mask". start follows Python's slice (negative:
// counted from the end; over the count: nothing).
func CodebookMask(mask *ts.Tensor, start int64) (*ts.Tensor, error) {
	shape, vals, err := readMask(mask, "CodebookMask: mask")
	if err != nil {
		return nil, err
	}
	lo, hi := pySlice(start, shape[1], shape[1])
	setCodebooks(vals, shape, lo, hi, 1)
	return newMask(vals, shape, mask.MustDevice()), nil
}

// MaskAnd is mask.py's mask_and, torch.min(mask1, mask2): masked where
// both are, so a prompt of either survives. Like the official it checks
// shapes only, not that the masks are binary.
func MaskAnd(mask1, mask2 *ts.Tensor) (*ts.Tensor, error) {
	s := ts.NewScope()
	defer s.Close()
	if err := checkPair(mask1, mask2, "MaskAnd", false); err != nil {
		return nil, err
	}
	out := mask1.MustMinimum(mask2, false)
	s.Keep(out)
	return out, nil
}

// MaskOr is mask.py's mask_or, (mask1 + mask2).clamp(0, 1): masked where
// either is, so only prompts common to both survive. Both must be binary.
func MaskOr(mask1, mask2 *ts.Tensor) (*ts.Tensor, error) {
	s := ts.NewScope()
	defer s.Close()
	if err := checkPair(mask1, mask2, "MaskOr", true); err != nil {
		return nil, err
	}
	out := mask1.MustAdd(mask2, false).MustClamp(ts.IntScalar(0), ts.IntScalar(1), true)
	s.Keep(out)
	return out, nil
}

// Dropout is mask.py's dropout: every kept (0) position is masked with
// probability p, so a fraction p of the prompt is dropped; masked
// positions stay masked. p must be in [0, 1] and the mask binary. The keep
// probability is float32(1 - p), as the official multiplies a float32
// mask by it.
func Dropout(mask *ts.Tensor, p float64, rng *rand.Rand) (*ts.Tensor, error) {
	if !(p >= 0 && p <= 1) {
		return nil, fmt.Errorf("vampnet: Dropout: p must be between 0 and 1, got %v", p)
	}
	if rng == nil {
		return nil, fmt.Errorf("vampnet: Dropout: nil rng")
	}
	shape, vals, err := readMask(mask, "Dropout: mask")
	if err != nil {
		return nil, err
	}
	if err := checkBinary(vals, "Dropout: mask", shape); err != nil {
		return nil, err
	}
	keep := float64(float32(1 - p))
	for i, v := range vals {
		if v == 0 {
			vals[i] = 1 - bernoulli(rng, keep)
		}
	}
	return newMask(vals, shape, mask.MustDevice()), nil
}

// TimeStretchMask is mask.py's time_stretch_mask. The official repeats x
// stretchFactor times along time and then trims it back to its length, so
// the shape never changes and the result is PeriodicMask(x,
// stretchFactor, 1) on x itself; that is what this computes. stretchFactor
// must be >= 1, as the official asserts.
func TimeStretchMask(x *ts.Tensor, stretchFactor int64) (*ts.Tensor, error) {
	if stretchFactor < 1 {
		return nil, fmt.Errorf("vampnet: TimeStretchMask: stretch factor must be >= 1, got %d", stretchFactor)
	}
	return PeriodicMask(x, stretchFactor, 1, false, nil)
}

// TimeToFrames is librosa.time_to_frames with n_fft None:
// floor(int(t*sampleRate) / hopLength), the sample index truncated toward
// zero first (numpy's astype(int)), then floor-divided.
func TimeToFrames(times []float64, sampleRate, hopLength int) []int64 {
	out := make([]int64, len(times))
	for i, t := range times {
		out[i] = floorDiv(int64(t*float64(sampleRate)), int64(hopLength))
	}
	return out
}

// OnsetMask is mask.py's onset_mask given the onset times (seconds): a
// full mask with the span [i - width, i + width) unmasked around each
// onset's frame i (TimeToFrames with the signal's sample rate and the
// codec's hop, clamped to [0, T-1]), every sample and codebook alike. The
// official finds the onsets with madmom's RNN onset detector;
// OnsetMaskFromAudio finds them with librosa's spectral-flux detector.
//
// Quirks kept:
//   - no onsets gives an EMPTY mask (nothing masked), not a full one; the
//     app ORs it in, where it then changes nothing;
//   - the span is asymmetric, 2*width steps from i - width;
//   - the span is a Python slice: for an onset with i < width its start
//     is negative and counts from the end, so the slice is empty unless T
//     is small, and such an onset unmasks nothing.
func OnsetMask(z *ts.Tensor, onsetTimes []float64, sampleRate, hopLength int, width int64) (*ts.Tensor, error) {
	shape, err := shape3(z, "z")
	if err != nil {
		return nil, err
	}
	if len(onsetTimes) == 0 {
		return constMask(shape, 0, z.MustDevice()), nil
	}
	B, C, T := shape[0], shape[1], shape[2]
	vals := ones(B * C * T)
	for _, i := range TimeToFrames(onsetTimes, sampleRate, hopLength) {
		i = max(min(i, T-1), 0)
		lo, hi := pySlice(i-width, i+width, T)
		for r := range B * C {
			clear(vals[r*T+lo : r*T+hi])
		}
	}
	return newMask(vals, shape, z.MustDevice()), nil
}

// OnsetMaskFromAudio detects the onsets of samples (mono, at sampleRate:
// the preprocessed signal, as the official passes sig) with OnsetDetect
// and librosa's defaults at that rate, and makes their OnsetMask with the
// codec's hopLength. It stands in for the official's madmom RNN detector
// (threshold 0.3), which is not available here.
func OnsetMaskFromAudio(z *ts.Tensor, samples []float32, sampleRate, hopLength int, width int64) (*ts.Tensor, error) {
	opts := DefaultOnsetOptions(sampleRate)
	frames, err := OnsetDetect(samples, opts)
	if err != nil {
		return nil, err
	}
	return OnsetMask(z, FramesToTime(frames, sampleRate, opts.HopLength), sampleRate, hopLength, width)
}

// BeatMaskOptions are the options of interface.py's make_beat_mask, with
// its names.
type BeatMaskOptions struct {
	BeforeBeatS float64 // before_beat_s: seconds kept before each beat
	AfterBeatS  float64 // after_beat_s: seconds kept after each beat
	// MaskDownbeats and MaskUpbeats choose which beats get a prompt
	// (mask_downbeats, mask_upbeats; "upbeats" are the beats that are not
	// downbeats).
	MaskDownbeats, MaskUpbeats bool
	// DownbeatDownsampleFactor and BeatDownsampleFactor keep every k-th
	// downbeat / beat (downbeat_downsample_factor,
	// beat_downsample_factor); 0 stands for the official None (k = 1),
	// and a negative k is the official's ValueError (k < 1).
	DownbeatDownsampleFactor, BeatDownsampleFactor int
	Dropout                                        float64 // dropout: chance that a step of a beat's span is not kept
	Invert                                         bool    // invert: 1 - mask, so that the beat spans are the kept ones
}

// DefaultBeatMaskOptions are make_beat_mask's defaults.
func DefaultBeatMaskOptions() BeatMaskOptions {
	return BeatMaskOptions{AfterBeatS: 0.02, MaskDownbeats: true, MaskUpbeats: true, Invert: true}
}

// MakeBeatMask is interface.py's make_beat_mask given the beat tracker's
// beat and downbeat times (seconds; the official runs WaveBeat): a mask
// [1, nCodebooks, S2T(durationS)] (CPU) whose spans
// [beat - S2T(BeforeBeatS), beat + S2T(AfterBeatS)) around each beat frame
// S2T(beat) are the prompt (with Invert).
//
// Quirks kept: beats that are also downbeats are dropped from the beats;
// with Dropout each span is written as a fresh Bernoulli draw, so a later
// span overwrites an earlier one where they overlap (it does not OR);
// spans are Python slices, so a span starting before 0 (a beat earlier
// than BeforeBeatS) counts from the end and is usually empty.
func MakeBeatMask(beats, downbeats []float64, durationS float64, nCodebooks int64, sampleRate, hopLength int, opts BeatMaskOptions, rng *rand.Rand) (*ts.Tensor, error) {
	beatK, err := downsampleFactor(opts.BeatDownsampleFactor)
	if err != nil {
		return nil, err
	}
	downK, err := downsampleFactor(opts.DownbeatDownsampleFactor)
	if err != nil {
		return nil, err
	}
	if opts.Dropout > 0 && rng == nil {
		return nil, fmt.Errorf("vampnet: MakeBeatMask: dropout needs an rng")
	}
	s2t := func(v float64) float64 { return math.Ceil(v * float64(sampleRate) / float64(hopLength)) }
	downZ := make([]float64, len(downbeats))
	isDown := map[float64]bool{}
	for i, d := range downbeats {
		downZ[i] = s2t(d)
		isDown[downZ[i]] = true
	}
	var beatsZ []float64
	for _, b := range beats {
		if z := s2t(b); !isDown[z] {
			beatsZ = append(beatsZ, z)
		}
	}
	seqLen := S2T(durationS, sampleRate, hopLength)
	if seqLen < 0 {
		return nil, fmt.Errorf("vampnet: MakeBeatMask: negative duration %v", durationS)
	}
	mask := make([]float64, seqLen)
	b4, after := s2t(opts.BeforeBeatS), s2t(opts.AfterBeatS)
	keep := float64(float32(1 - opts.Dropout))
	span := func(idx float64) {
		lo, hi := pySlice(int64(idx-b4), int64(idx+after), seqLen)
		for t := lo; t < hi; t++ {
			mask[t] = float64(bernoulli(rng, keep))
		}
	}
	if opts.MaskUpbeats {
		for i := 0; i < len(beatsZ); i += beatK {
			span(beatsZ[i])
		}
	}
	if opts.MaskDownbeats {
		for i := 0; i < len(downZ); i += downK {
			span(downZ[i])
		}
	}
	vals := make([]int64, nCodebooks*seqLen)
	for c := range nCodebooks {
		for t := range seqLen {
			m := min(max(mask[t], 0), 1)
			if opts.Invert {
				m = 1 - m
			}
			if m != 0 { // .bool().long()
				vals[c*seqLen+t] = 1
			}
		}
	}
	return newMask(vals, []int64{1, nCodebooks, seqLen}, gotch.CPU), nil
}

// BuildMaskOptions are the mask controls of the official app (app.py's
// _vamp, ismir-2023), with its names; DefaultBuildMaskOptions has the
// app's defaults.
type BuildMaskOptions struct {
	RandMaskIntensity float64 // rand_mask_intensity: LinearRandom's probability
	PrefixS           float64 // prefix_s: seconds kept at the start
	SuffixS           float64 // suffix_s: seconds kept at the end
	PeriodicP         int64   // periodic_p: periodic prompt period (0: none)
	PeriodicW         int64   // periodic_w: periodic prompt width
	OnsetMaskWidth    int64   // onset_mask_width: steps kept around onsets (0: none)
	BeatMaskWidth     float64 // beat_mask_width: milliseconds kept after each beat (0: none)
	BeatMaskDownbeats bool    // beat_mask_downbeats: downbeats only
	Dropout           float64 // dropout: prompt dropout probability
	// NConditioningCodebooks (n_conditioning_codebooks) are unmasked, and
	// every codebook from NMaskCodebooks (n_mask_codebooks) on is masked.
	NConditioningCodebooks, NMaskCodebooks int64
	// SampleRate and HopLength are the codec's, for seconds to frames.
	SampleRate, HopLength int
}

// DefaultBuildMaskOptions are the app's defaults (periodic prompt 3, onset
// width 5, codebooks from 9 masked) for a codec at sampleRate with
// hopLength.
func DefaultBuildMaskOptions(sampleRate, hopLength int) BuildMaskOptions {
	return BuildMaskOptions{RandMaskIntensity: 1, PeriodicP: 3, PeriodicW: 1, OnsetMaskWidth: 5, NMaskCodebooks: 9,
		SampleRate: sampleRate, HopLength: hopLength}
}

// MaskPrompt is what BuildMask reads besides the codes: the (preprocessed,
// mono) signal, for the onset mask and the beat mask's duration, and the
// beat tracker's output for the beat mask.
type MaskPrompt struct {
	Samples          []float32
	SampleRate       int
	Beats, Downbeats []float64 // seconds
}

// BuildMask builds the app's mask for codes z [B, C, T], in _vamp's order:
//
//	LinearRandom(rand_mask_intensity)
//	AND Inpaint(S2T(prefix_s), S2T(suffix_s))
//	AND PeriodicMask(periodic_p, periodic_w, random roll)
//	OR  OnsetMaskFromAudio(onset_mask_width)        if onset_mask_width > 0
//	AND MakeBeatMask(after_beat_s = width/1000,
//	                 mask_upbeats = !beat_mask_downbeats) if beat_mask_width > 0
//	then Dropout(dropout), CodebookUnmask(n_conditioning_codebooks),
//	CodebookMask(n_mask_codebooks).
//
// (On later branches build_mask ANDs the onset mask instead; this is the
// ismir-2023 app.) The official passes rand_mask_intensity as a Python
// float, which LinearRandom turns into a [B] tensor that broadcasts along
// time (see there); the app runs B = 1 only. Here it is a one-value
// tensor, the same for B = 1 and a uniform rate for any B. The beat mask
// has batch 1, so with beats B must be 1, as in the official.
func BuildMask(z *ts.Tensor, opts BuildMaskOptions, prompt MaskPrompt, rng *rand.Rand) (*ts.Tensor, error) {
	s := ts.NewScope()
	defer s.Close()
	shape, err := shape3(z, "z")
	if err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("vampnet: BuildMask: nil rng")
	}
	if opts.SampleRate <= 0 || opts.HopLength <= 0 {
		return nil, fmt.Errorf("vampnet: BuildMask: codec sample rate %d and hop length %d must be positive", opts.SampleRate, opts.HopLength)
	}
	// torch.bernoulli raises outside [0, 1]; rounding would hide the mistake
	if !(opts.RandMaskIntensity >= 0 && opts.RandMaskIntensity <= 1) || !(opts.Dropout >= 0 && opts.Dropout <= 1) {
		return nil, fmt.Errorf("vampnet: BuildMask: rand_mask_intensity %v and dropout %v must be in [0, 1]", opts.RandMaskIntensity, opts.Dropout)
	}
	mask, err := LinearRandom(z, BatchScalar(opts.RandMaskIntensity, 1), rng)
	if err != nil {
		return nil, err
	}
	steps := []func(*ts.Tensor) (*ts.Tensor, error){
		func(m *ts.Tensor) (*ts.Tensor, error) {
			in, err := Inpaint(z, []int64{S2T(opts.PrefixS, opts.SampleRate, opts.HopLength)}, []int64{S2T(opts.SuffixS, opts.SampleRate, opts.HopLength)})
			if err != nil {
				return nil, err
			}
			return MaskAnd(m, in)
		},
		func(m *ts.Tensor) (*ts.Tensor, error) {
			p, err := PeriodicMask(z, opts.PeriodicP, opts.PeriodicW, true, rng)
			if err != nil {
				return nil, err
			}
			return MaskAnd(m, p)
		},
		func(m *ts.Tensor) (*ts.Tensor, error) {
			if opts.OnsetMaskWidth <= 0 {
				return m, nil
			}
			if prompt.Samples == nil || prompt.SampleRate <= 0 {
				return nil, fmt.Errorf("vampnet: BuildMask: the onset mask needs the signal (MaskPrompt.Samples, SampleRate)")
			}
			o, err := OnsetMaskFromAudio(z, prompt.Samples, prompt.SampleRate, opts.HopLength, opts.OnsetMaskWidth)
			if err != nil {
				return nil, err
			}
			return MaskOr(m, o)
		},
		func(m *ts.Tensor) (*ts.Tensor, error) {
			if opts.BeatMaskWidth <= 0 {
				return m, nil
			}
			if prompt.Beats == nil && prompt.Downbeats == nil {
				return nil, fmt.Errorf("vampnet: BuildMask: the beat mask needs beat times (MaskPrompt.Beats, Downbeats); there is no beat tracker")
			}
			if prompt.SampleRate <= 0 {
				return nil, fmt.Errorf("vampnet: BuildMask: the beat mask needs the signal's duration (MaskPrompt.Samples, SampleRate)")
			}
			bo := DefaultBeatMaskOptions()
			bo.AfterBeatS = opts.BeatMaskWidth / 1000
			bo.MaskUpbeats = !opts.BeatMaskDownbeats
			dur := float64(len(prompt.Samples)) / float64(prompt.SampleRate)
			bm, err := MakeBeatMask(prompt.Beats, prompt.Downbeats, dur, shape[1], opts.SampleRate, opts.HopLength, bo, rng)
			if err != nil {
				return nil, err
			}
			return MaskAnd(m, bm.MustTo(z.MustDevice(), true))
		},
		func(m *ts.Tensor) (*ts.Tensor, error) { return Dropout(m, opts.Dropout, rng) },
		func(m *ts.Tensor) (*ts.Tensor, error) { return CodebookUnmask(m, opts.NConditioningCodebooks) },
		func(m *ts.Tensor) (*ts.Tensor, error) { return CodebookMask(m, opts.NMaskCodebooks) },
	}
	for _, step := range steps {
		if mask, err = step(mask); err != nil {
			return nil, err
		}
	}
	s.Keep(mask)
	return mask, nil
}

// shape3 is x's shape, which must be [batch, n_codebooks, seq].
func shape3(x *ts.Tensor, name string) ([]int64, error) {
	if x == nil {
		return nil, fmt.Errorf("vampnet: %s is nil", name)
	}
	s := x.MustSize()
	if len(s) != 3 {
		return nil, fmt.Errorf("vampnet: %s must be (batch, n_codebooks, seq), got shape %v", name, s)
	}
	return s, nil
}

// readMask is an int64 [B, C, T] mask's shape and values.
func readMask(m *ts.Tensor, name string) ([]int64, []int64, error) {
	shape, err := shape3(m, name)
	if err != nil {
		return nil, nil, err
	}
	if dt := m.DType(); dt != gotch.Int64 {
		return nil, nil, fmt.Errorf("vampnet: %s must be int64 (torch.long), got %v", name, dt)
	}
	s := ts.NewScope()
	defer s.Close()
	return shape, readInt64(m), nil
}

// checkPair checks two masks for MaskAnd / MaskOr: int64, the same 3-D
// shape, and binary when asked.
func checkPair(m1, m2 *ts.Tensor, op string, binary bool) error {
	s1, v1, err := readMask(m1, op+": mask1")
	if err != nil {
		return err
	}
	s2, v2, err := readMask(m2, op+": mask2")
	if err != nil {
		return err
	}
	if !slices.Equal(s1, s2) {
		return fmt.Errorf("vampnet: %s: masks must be the same shape, got %v and %v", op, s1, s2)
	}
	if binary {
		if err := checkBinary(v1, op+": mask1", s1); err != nil {
			return err
		}
		return checkBinary(v2, op+": mask2", s2)
	}
	return nil
}

func checkBinary(vals []int64, name string, shape []int64) error {
	for i, v := range vals {
		if v != 0 && v != 1 {
			return fmt.Errorf("vampnet: %s %v must be binary, found %d at flat index %d", name, shape, v, i)
		}
	}
	return nil
}

func sizeOf(t *ts.Tensor) any {
	if t == nil {
		return "nil"
	}
	return t.MustSize()
}

// perRow expands counts of one value (all samples) or B values.
func perRow(n []int64, B int64, name string) ([]int64, error) {
	switch int64(len(n)) {
	case 1:
		out := make([]int64, B)
		for i := range out {
			out[i] = n[0]
		}
		return out, nil
	case B:
		return n, nil
	}
	return nil, fmt.Errorf("vampnet: Inpaint: %s needs 1 or %d (batch) counts, got %d", name, B, len(n))
}

func downsampleFactor(k int) (int, error) {
	switch {
	case k == 0:
		return 1, nil
	case k < 0:
		return 0, fmt.Errorf("vampnet: MakeBeatMask: downsample factor must be >= 1 or 0 (None), got %d", k)
	}
	return k, nil
}

// pySlice is Python's [start:stop] on a length n axis as [lo, hi), empty
// when hi <= lo.
func pySlice(start, stop, n int64) (int64, int64) {
	norm := func(i int64) int64 {
		if i < 0 {
			i += n
		}
		return min(max(i, 0), n)
	}
	lo, hi := norm(start), norm(stop)
	return lo, max(hi, lo)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// setCodebooks sets codebooks [lo, hi) of every sample to v.
func setCodebooks(vals, shape []int64, lo, hi, v int64) {
	C, T := shape[1], shape[2]
	for b := range shape[0] {
		for c := lo; c < hi; c++ {
			row := vals[(b*C+c)*T : (b*C+c+1)*T]
			for t := range row {
				row[t] = v
			}
		}
	}
}

// bernoulli is one trial with probability p; p <= 0 and p >= 1 draw
// nothing.
// bernoulliMask draws a [B, C, T] mask, element i (in batch, codebook,
// time order) masked with probability p[which(i)], or p[0] when p has one
// value (torch's broadcasting of a one-element r).
func bernoulliMask(shape []int64, p []float64, rng *rand.Rand, dev gotch.Device, which func(i int64) int64) *ts.Tensor {
	vals := make([]int64, shape[0]*shape[1]*shape[2])
	for i := range vals {
		k := int64(0)
		if len(p) > 1 {
			k = which(int64(i))
		}
		vals[i] = bernoulli(rng, p[k])
	}
	return newMask(vals, shape, dev)
}

func bernoulli(rng *rand.Rand, p float64) int64 {
	switch {
	case p >= 1:
		return 1
	case p <= 0:
		return 0
	case rng.Float64() < p:
		return 1
	}
	return 0
}

func ones(n int64) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// constMask is a mask of v everywhere.
func constMask(shape []int64, v int64, dev gotch.Device) *ts.Tensor {
	vals := make([]int64, shape[0]*shape[1]*shape[2])
	if v != 0 {
		for i := range vals {
			vals[i] = v
		}
	}
	return newMask(vals, shape, dev)
}

// newMask is an int64 tensor of vals with shape on dev.
func newMask(vals, shape []int64, dev gotch.Device) *ts.Tensor {
	t := ts.MustOfSlice(vals).MustReshape(shape, true)
	if dev != gotch.CPU {
		t = t.MustTo(dev, true)
	}
	return t
}

// readInt64 and readFloat64 copy a tensor's values to Go (through the
// CPU); the temporaries go to the caller's scope.
func readInt64(t *ts.Tensor) []int64 {
	return t.MustTo(gotch.CPU, false).MustContiguous(true).Int64Values()
}

func readFloat64(t *ts.Tensor) []float64 {
	return t.MustTo(gotch.CPU, false).MustContiguous(true).Float64Values()
}
