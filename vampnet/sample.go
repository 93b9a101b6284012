package vampnet

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// SampleOptions are VampNet.generate's sampling arguments, with its
// defaults (DefaultSampleOptions).
type SampleOptions struct {
	Steps           int     `toml:"sampling_steps"`       // 36
	Temperature     float64 `toml:"sampling_temperature"` // 1.0; 0 samples from softmax(logits) unscaled, as the official code does
	MaskTemperature float64 `toml:"mask_temperature"`     // 10.5: the Gumbel noise's scale at r = 0, falling linearly to 0 at r = 1
	TopP            float64 `toml:"top_p"`                // 0 (or >= 1) turns nucleus filtering off
	// SampleCutoff switches from sampling to argmax once step/steps passes
	// it: step i samples while i/steps <= SampleCutoff. 1 (generate's
	// default) samples at every step; the app uses 0.5.
	//
	// generate's typical_filtering, typical_mass and typical_min_tokens are
	// left out: sample_from_logits calls typical_filter and discards its
	// result, so in the official code they change nothing.
	SampleCutoff float64 `toml:"sample_cutoff"`
	// Seed, when not 0, seeds libtorch's generator as generate(seed=...)
	// does at the start of every call (the app passes its seed to the
	// coarse call and to every coarse-to-fine chunk); 0 leaves it alone.
	Seed int64 `toml:"seed"`
}

// DefaultSampleOptions are VampNet.generate's defaults.
func DefaultSampleOptions() SampleOptions {
	return SampleOptions{Steps: 36, Temperature: 1, MaskTemperature: 10.5, SampleCutoff: 1}
}

// AppSampleOptions are the app's defaults (app.py's sliders): mask
// temperature 1.5 x 10 = 15 and argmax after half the steps; no top-p.
func AppSampleOptions() SampleOptions {
	return SampleOptions{Steps: 36, Temperature: 1, MaskTemperature: 15, SampleCutoff: 0.5}
}

// Validate names the first option out of range.
func (o SampleOptions) Validate() error {
	switch {
	case o.Steps < 1:
		return fmt.Errorf("vampnet: sampling_steps %d must be at least 1", o.Steps)
	case o.Temperature < 0 || o.MaskTemperature < 0:
		return fmt.Errorf("vampnet: sampling_temperature %g and mask_temperature %g must not be negative", o.Temperature, o.MaskTemperature)
	case o.TopP < 0:
		return fmt.Errorf("vampnet: top_p %g must not be negative (0 turns it off)", o.TopP)
	}
	return nil
}

// gamma32 is _gamma as PyTorch computes it on a float32 r: the same
// libtorch ops, so that floor(gamma(r) n0) lands on the same integer
// where gamma(r) n0 is within an ulp of one (r = 2/3 gives cos(pi/3)).
func gamma32(r float32) float32 {
	var g float32
	ts.NoGrad(func() {
		t := ts.MustOfSlice([]float32{r})
		out := GammaTensor(t)
		g = float32(out.Float64Values()[0])
		out.MustDrop()
		t.MustDrop()
	})
	return g
}

// Generate is VampNet.generate: MaskGIT-style iterative decoding of the
// positions that mask marks (mask [B, n_codebooks, T], 1 = to generate;
// the conditioning codebooks are kept whatever it says of them) in codes
// [B, n_codebooks, T]. At step i (r = (i+1)/steps) the model predicts
// every position, a token is sampled at each masked one (top-p, then
// softmax(logits/temperature), multinomial; argmax after sample_cutoff),
// and the floor(gamma(r) * n0) least confident of the masked positions
// are masked again, n0 being the count masked at the start, at least one
// and at most all but one of those still masked before the last step.
// Confidence is log p(sampled token) + mask_temperature (1 - r) Gumbel
// noise. It returns the codes with every masked position filled.
//
// Randomness comes from libtorch's global generator (ts.ManualSeed), in
// the official code's order (a multinomial then a uniform_ per step), so
// that a seed gives PyTorch's samples on the same libtorch. The official
// code scales the noise by a [B] tensor against [B, N] confidences, which
// broadcasts only for batch 1; here each row gets its own scale, the
// same thing at batch 1 and what was meant above it.
func (m *VampNet) Generate(codes, mask *ts.Tensor, codebooks []*ts.Tensor, o SampleOptions) (out *ts.Tensor) {
	if err := o.Validate(); err != nil {
		panic(err)
	}
	c := m.Cfg
	shape := codes.MustSize()
	if len(shape) != 3 || shape[1] != c.NCodebooks {
		panic(fmt.Errorf("vampnet: codes of shape %v, want [batch, %d codebooks, frames]", shape, c.NCodebooks))
	}
	if ms := mask.MustSize(); len(ms) != 3 || ms[0] != shape[0] || ms[1] != shape[1] || ms[2] != shape[2] {
		panic(fmt.Errorf("vampnet: mask of shape %v for codes of shape %v", ms, shape))
	}
	nc, n := c.NConditioningCodebooks, c.NPredict()
	tok := ts.IntScalar(c.MaskToken())
	if o.Seed != 0 {
		ts.ManualSeed(o.Seed) // generate(seed=...): at.util.seed before the first draw
	}
	ts.NoGrad(func() {
		s := ts.NewScope()
		defer s.Close()
		cond := codes.MustNarrow(1, 0, nc, false)
		zMasked := codes.MustMaskedFill(mask.MustTotype(gotch.Bool, false), tok, false)
		n0 := zMasked.MustEq(tok, false).MustSum(gotch.Int64, true).Int64Values()[0]
		var sampled *ts.Tensor
		for i := 0; i < o.Steps; i++ {
			// each step in a scope of its own: only the next step's input and
			// the samples leave it
			func() {
				st := ts.NewScope()
				defer st.Close()
				logits := m.Forward(m.FromCodes(zMasked, codebooks), false).MustPermute([]int64{0, 2, 1}, true) // [B, T*n, V]
				var probs *ts.Tensor
				sampled, probs = sampleFromLogits(logits, float64(i)/float64(o.Steps) <= o.SampleCutoff, o)
				flat := CodebookFlatten(zMasked.MustNarrow(1, nc, n, false))
				still := flat.MustEq(tok, false) // masked before this step
				sampled = sampled.MustWhereSelf(still, flat, true)
				probs = probs.MustMaskedFill(still.MustLogicalNot(false), ts.FloatScalar(math.Inf(1)), true)
				left := still.MustSumDimIntlist([]int64{-1}, false, gotch.Int64, false).Int64Values()
				r32 := float32(float64(i+1) / float64(o.Steps)) // torch.tensor((i+1)/steps)
				again := maskByRandomTopK(RemaskCounts(i, o.Steps, n0, left), probs, float64(float32(o.MaskTemperature)*(1-r32)))
				zMasked = sampled.MustMaskedFill(again, tok, false)
				zMasked = ts.MustCat([]*ts.Tensor{cond, CodebookUnflatten(zMasked, n)}, 1)
				st.Keep(sampled)
				st.Keep(zMasked)
			}()
		}
		out = ts.MustCat([]*ts.Tensor{cond, CodebookUnflatten(sampled, n)}, 1)
		s.Keep(out)
	})
	return out
}

// RemaskCounts is generate's schedule: how many of each row's positions
// are masked again after step i of steps, given n0 masked at the start
// (over the whole batch, as the official code counts them) and left[b]
// still masked in row b before the step. It is floor(gamma(r) n0) at r =
// (i+1)/steps, computed in float32 as _gamma(r) * n0 is, and, before the
// last step, at least 1 and at most left[b] - 1.
func RemaskCounts(i, steps int, n0 int64, left []int64) []int64 {
	r32 := float32(float64(i+1) / float64(steps))
	k := int64(math.Floor(float64(gamma32(r32) * float32(n0))))
	out := make([]int64, len(left))
	for b := range out {
		out[b] = k
		if i != steps-1 {
			out[b] = max(1, min(left[b]-1, k))
		}
	}
	return out
}

// sampleFromLogits is transformer.py's sample_from_logits for logits
// [B, N, V]: top-p on the logits (-inf outside the
// kept set), then probs = softmax(logits/temperature) (unscaled when the
// temperature is 0), a multinomial draw (or the argmax of the filtered
// logits when sample is false), and the drawn token's probability.
func sampleFromLogits(logits *ts.Tensor, sample bool, o SampleOptions) (token, prob *ts.Tensor) {
	s := logits.MustSize()
	if o.TopP > 0 && o.TopP < 1 {
		v, idx := logits.MustSort(-1, true, false)
		cum := v.MustSoftmax(-1, gotch.Float, true).MustCumsum(-1, gotch.Float, true)
		remove := cum.MustGt(ts.FloatScalar(o.TopP), true)
		// shift right by one: the first token past the threshold is kept
		remove = ts.MustCat([]*ts.Tensor{remove.MustNarrow(-1, 0, 1, false).MustZerosLike(true), remove.MustNarrow(-1, 0, s[2]-1, false)}, -1)
		unsorted := remove.MustScatter(-1, idx, remove, false)
		logits = logits.MustMaskedFill(unsorted, ts.FloatScalar(math.Inf(-1)), false)
	}
	var probs *ts.Tensor
	if o.Temperature > 0 {
		probs = logits.MustDivScalar(ts.FloatScalar(o.Temperature), false).MustSoftmax(-1, gotch.Float, true)
	} else {
		probs = logits.MustSoftmax(-1, gotch.Float, false)
	}
	if sample {
		// reshape is the official view at batch 1 (the same non-contiguous
		// [N, V] layout, so the same random draws); the view fails above it
		token = probs.MustReshape([]int64{-1, s[2]}, false).MustMultinomial(1, false, true).MustSqueezeDim(1, true).MustView([]int64{s[0], s[1]}, true)
	} else {
		token = logits.MustArgmax([]int64{-1}, false, false)
	}
	prob = probs.MustGather(-1, token.MustUnsqueeze(-1, false), false, false).MustSqueezeDim(-1, true)
	return token, prob
}

// maskByRandomTopK is transformer.py's mask_by_random_topk: confidence =
// log(probs) + temperature Gumbel noise (uniform_(1e-20, 1), then
// -log(-log u)); in each row the positions below the toMask[b]-th
// smallest confidence are masked. Unmasked positions carry probability
// +Inf, so they are never chosen.
func maskByRandomTopK(toMask []int64, probs *ts.Tensor, temperature float64) *ts.Tensor {
	u := probs.MustZerosLike(false)
	u.MustUniform_(1e-20, 1)
	noise := u.MustLog(true).MustNeg(true).MustLog(true).MustNeg(true)
	conf := probs.MustLog(false).MustAdd(noise.MustMulScalar(ts.FloatScalar(temperature), true), true)
	sorted, _ := conf.MustSort(-1, false, false)
	idx := ts.MustOfSlice(toMask).MustView([]int64{-1, 1}, true).MustTo(probs.MustDevice(), true)
	cut := sorted.MustGather(-1, idx, false, true)
	return conf.MustLtTensor(cut, true)
}
