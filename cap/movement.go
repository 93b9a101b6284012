package cap

import (
	"fmt"
	"math"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Unstructured pruning (CAP-m, CAP-soft and the magnitude baseline) masks
// single weights of the encoder's linear layers, as the official code's
// emmental MaskedLinear: the layer computes with mask ⊙ W, where the mask
// comes from learned scores (movement pruning, Sanh et al. 2020) or from
// |W| (magnitude). The binarisation has a straight-through gradient.

// Method is an unstructured pruning method, by the official
// pruning_method's name.
type Method string

// The methods.
const (
	TopK      Method = "topK"               // movement pruning: the top share of scores kept (CAP-m)
	Sigmoid   Method = "sigmoied_threshold" // soft movement: sigmoid(score) > threshold, with an L1 penalty (CAP-soft)
	Magnitude Method = "magnitude"          // the top share of |W| kept
)

// TopKMask is TopKBinarizer.forward: of x's elements, the int(share *
// numel) largest are 1, the rest 0.
func TopKMask(x *ts.Tensor, share float64) *ts.Tensor {
	return topShare(x, share)
}

func topShare(x *ts.Tensor, share float64) *ts.Tensor {
	n := int64(x.Numel())
	j := int64(share * float64(n))
	flat := x.MustFlatten(0, -1, false)
	_, idx := flat.MustSort(0, true, false)
	out := ts.MustZeros([]int64{n}, x.DType(), x.MustDevice())
	if j > 0 {
		out = out.MustIndexFill(0, idx.MustNarrow(0, 0, j, false), ts.FloatScalar(1), true)
	}
	return out.MustView(x.MustSize(), true)
}

// MagnitudeMask is MagnitudeBinarizer.forward: the int(share * numel)
// weights of largest |w| are 1.
func MagnitudeMask(w *ts.Tensor, share float64) *ts.Tensor {
	return topShare(w.MustAbs(false), share)
}

// SigmoidMask is ThresholdBinarizer.forward with sigmoid: sigmoid(x) >
// threshold, except that at least int(0.005 numel) + 1 elements stay: when
// fewer pass, the mask is x > the (numel - that)-th smallest value instead.
func SigmoidMask(x *ts.Tensor, threshold float64) *ts.Tensor {
	n := int64(x.Numel())
	nbMin := int64(0.005*float64(n)) + 1
	mask := x.MustSigmoid(false).MustGt(ts.FloatScalar(threshold), true).MustTotype(x.DType(), true)
	if int64(mask.MustSum(gotch.Double, false).Float64Values()[0]) < nbMin {
		kth, _ := x.MustFlatten(0, -1, false).MustKthvalue(max(n-nbMin, 1), 0, false, true)
		mask = x.MustGtTensor(kth, false).MustTotype(x.DType(), true)
	}
	return mask
}

// straightThrough returns a tensor with mask's values and the gradient of
// from: the binarizers' backward, which passes the gradient on unchanged.
func straightThrough(mask, from *ts.Tensor) *ts.Tensor {
	return from.MustAdd(mask.MustSub(from, false).MustDetach(true), false)
}

// Masked is the encoder's masked linear layers: their weights and, for the
// score-based methods, their scores (the mask_scores parameters, named
// beside each weight).
type Masked struct {
	Method  Method
	Names   []string     // the weights' parameter names
	Weights []*ts.Tensor // the store's weight tensors
	Scores  []*ts.Tensor // mask_scores, one per weight (nil for magnitude)
}

// ScoreName is the mask scores' parameter name beside a weight:
// "...query.weight" -> "...query.mask_scores", emmental's name.
func ScoreName(weight string) string { return strings.TrimSuffix(weight, "weight") + "mask_scores" }

// NewMasked registers mask scores (constant init, emmental's mask_init
// "constant" with mask_scale: the official scripts use 0) for every
// encoder linear of b, under the store that holds b, and lists them: the
// query, key, value and attention output projections, the intermediate
// and output layers of every layer (MaskedBertModel's MaskedLinear
// modules; embeddings, pooler and classifier stay dense). The scores are
// registered without weight decay, as the official optimiser groups
// them. Call it before making the optimizer.
func NewMasked(store *torchmods.Store, b *torchmods.Bert, method Method, scale float64) (*Masked, error) {
	switch method {
	case TopK, Sigmoid, Magnitude:
	default:
		return nil, fmt.Errorf("cap: prune.method %q: one of topK, sigmoied_threshold, magnitude (structured is prune.method \"structured\")", method)
	}
	m := &Masked{Method: method}
	byTensor := map[*ts.Tensor]string{}
	for _, p := range store.Params() {
		byTensor[p.Tensor] = p.Name
	}
	err := torchmods.Try(func() {
		for _, l := range b.Layers {
			if l.Intermediate == nil || l.Attn == nil {
				panic(fmt.Errorf("cap: unstructured pruning of a model with pruned shapes"))
			}
			for _, lin := range []*torchmods.Linear{l.Attn.Q, l.Attn.K, l.Attn.V, l.Attn.Out, l.Intermediate, l.Output} {
				name, ok := byTensor[lin.Weight]
				if !ok {
					panic(fmt.Errorf("cap: a linear weight of the model is not in the store"))
				}
				m.Names, m.Weights = append(m.Names, name), append(m.Weights, lin.Weight)
				if method != Magnitude {
					m.Scores = append(m.Scores, registerScores(store, ScoreName(name), lin.Weight.MustSize(), scale))
				}
			}
		}
	})
	return m, err
}

func registerScores(store *torchmods.Store, name string, shape []int64, scale float64) *ts.Tensor {
	dot := strings.LastIndex(name, ".")
	return store.Root().Sub(name[:dot]).New(name[dot+1:], shape, torchmods.Const(scale), true)
}

// Masks are the binary masks at threshold (no gradient), one per weight.
func (m *Masked) Masks(threshold float64) []*ts.Tensor {
	out := make([]*ts.Tensor, len(m.Weights))
	ts.NoGrad(func() {
		for i, w := range m.Weights {
			switch m.Method {
			case TopK:
				out[i] = TopKMask(m.Scores[i], threshold)
			case Sigmoid:
				out[i] = SigmoidMask(m.Scores[i], threshold)
			case Magnitude:
				out[i] = MagnitudeMask(w, threshold)
			}
		}
	})
	return out
}

// Fast is the masked weights mask ⊙ W by parameter name, for
// Store.WithParams: gradients reach W through the product and the scores
// through the straight-through mask. The magnitude mask passes no
// gradient (MagnitudeBinarizer is no autograd function: its mask is a
// clone of W overwritten everywhere, so W gets mask ⊙ dL/dW' only).
func (m *Masked) Fast(threshold float64) map[string]*ts.Tensor {
	masks := m.Masks(threshold)
	fast := make(map[string]*ts.Tensor, len(m.Weights))
	for i, w := range m.Weights {
		mk := masks[i]
		if m.Method != Magnitude {
			mk = straightThrough(mk, m.Scores[i])
		}
		fast[m.Names[i]] = mk.MustMul(w, true)
	}
	return fast
}

// Remaining is the share of the masked weights kept at threshold.
func (m *Masked) Remaining(threshold float64) float64 {
	var kept, total float64
	for _, mk := range m.Masks(threshold) {
		kept += mk.MustSum(gotch.Double, false).Float64Values()[0]
		total += float64(mk.Numel())
	}
	return kept / total
}

// Regularization is masked_run_glue.py's regularization(mode="l1"): the
// mean over the masked layers of ||sigmoid(scores)||_1 / numel.
func (m *Masked) Regularization() *ts.Tensor {
	var total *ts.Tensor
	for _, s := range m.Scores {
		r := s.MustSigmoid(false).MustAbs(true).MustSum(s.DType(), true).MustDivScalar(ts.FloatScalar(float64(s.Numel())), true)
		if total == nil {
			total = r
		} else {
			total = total.MustAdd(r, true)
		}
	}
	return total.MustDivScalar(ts.FloatScalar(float64(len(m.Scores))), true)
}

// ThresholdSchedule is masked_run_glue.py's schedule_threshold: the
// threshold (the share kept for topK and magnitude, the sigmoid cut for
// soft movement) and the L1 weight at step. It holds initial for
// initialWarmup*warmup steps, then moves cubically to final, which it
// holds for the last finalWarmup*warmup steps; lambda is always
// finalLambda * threshold / final (so it falls with the threshold for
// topK, whose threshold falls, and rises from 0 for soft movement, whose
// threshold rises from 0).
type ThresholdSchedule struct {
	Total, Warmup              int64
	Initial, Final             float64
	InitialWarmup, FinalWarmup int64
	FinalLambda                float64
}

// At is the threshold and the regularisation weight at step.
func (s ThresholdSchedule) At(step int64) (threshold, lambda float64) {
	switch {
	case step <= s.InitialWarmup*s.Warmup:
		threshold = s.Initial
	case step > s.Total-s.FinalWarmup*s.Warmup:
		threshold = s.Final
	default:
		sparsWarmup := s.InitialWarmup * s.Warmup
		sparsSchedu := (s.FinalWarmup + s.InitialWarmup) * s.Warmup
		mul := 1 - float64(step-sparsWarmup)/float64(s.Total-sparsSchedu)
		threshold = s.Final + (s.Initial-s.Final)*math.Pow(mul, 3)
	}
	return threshold, s.FinalLambda * threshold / s.Final
}
