package cocoop

import (
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// This file is CoOp's interpret_prompt.py: the words of the CLIP's
// vocabulary nearest to each learned context vector, by Euclidean
// distance to the rows of the token embedding (torch.cdist, then
// argsort), which is how the CoOp paper reads its learned prompts.

// Neighbour is one vocabulary entry near a context vector.
type Neighbour struct {
	ID       int64
	Distance float64
}

// NearestTokens returns, for each row of ctx [n_ctx, width], the k rows
// of embedding [vocab, width] nearest to it, nearest first (ties by the
// lower id, as a stable argsort gives them), computed in float64 on the
// embedding's device. It returns Go values, so its tensors live in a
// scope of its own. Tensor code: it panics on shapes that do not fit.
func NearestTokens(ctx, embedding *ts.Tensor, k int) [][]Neighbour {
	cs, es := ctx.MustSize(), embedding.MustSize()
	if len(cs) != 2 || len(es) != 2 || cs[1] != es[1] {
		panic(fmt.Errorf("cocoop: nearest tokens: context %v against a token embedding %v: want [n_ctx, width] and [vocab, width]", cs, es))
	}
	if k < 1 || int64(k) > es[0] {
		panic(fmt.Errorf("cocoop: nearest tokens: k %d for a vocabulary of %d", k, es[0]))
	}
	sc := ts.NewScope()
	defer sc.Close()
	var out [][]Neighbour
	ts.NoGrad(func() {
		e := embedding.MustTotype(gotch.Double, false)
		c := ctx.MustTo(e.MustDevice(), false).MustTotype(gotch.Double, true)
		// ||c - e||² = ||c||² - 2 c·e + ||e||², clamped at 0 before the root.
		d2 := c.MustPowTensorScalar(ts.IntScalar(2), false).MustSumDimIntlist([]int64{1}, true, gotch.Double, true).
			MustSub(c.MustMatmul(e.MustT(false), false).MustMulScalar(ts.FloatScalar(2), true), true).
			MustAdd(e.MustPowTensorScalar(ts.IntScalar(2), false).MustSumDimIntlist([]int64{1}, false, gotch.Double, true).MustUnsqueeze(0, true), true).
			MustClampMin(ts.FloatScalar(0), true)
		d := d2.MustSqrt(true)
		vals := d.Float64Values()
		vocab := int(es[0])
		for m := range int(cs[0]) {
			row := vals[m*vocab : (m+1)*vocab]
			out = append(out, smallestK(row, k))
		}
	})
	return out
}

// smallestK is the k smallest entries of row with their indices, smallest
// first, ties by the lower index.
func smallestK(row []float64, k int) []Neighbour {
	best := make([]Neighbour, 0, k+1)
	for i, v := range row {
		if len(best) == k && v >= best[k-1].Distance {
			continue
		}
		j := len(best)
		best = append(best, Neighbour{})
		for j > 0 && best[j-1].Distance > v {
			best[j] = best[j-1]
			j--
		}
		best[j] = Neighbour{ID: int64(i), Distance: v}
		if len(best) > k {
			best = best[:k]
		}
	}
	return best
}

// ReadContext reads the learned context of a prompt learner: the "ctx"
// of an official CoOp or CoCoOp checkpoint (a prompt_learner file or an
// output folder, as LoadPromptLearner finds it) or of a repro run or
// checkpoint, as float32 on the CPU. A class-specific context ([n_cls,
// n_ctx, width]) is refused, as interpret_prompt.py refuses it.
func ReadContext(path string) (*ts.Tensor, error) {
	src, err := torchmods.Resolve(officialCheckpoint(path))
	if err != nil {
		return nil, err
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range wf.Tensors {
		name := strings.TrimPrefix(strings.TrimPrefix(t.Name, "state_dict."), "module.")
		names = append(names, t.Name)
		if name != "ctx" && name != "prompt_learner.ctx" {
			continue
		}
		x, err := torchmods.FromSafetensors(t, gotch.CPU)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.File, err)
		}
		if x.Dim() != 2 {
			sz := x.MustSize()
			x.MustDrop()
			return nil, fmt.Errorf("%s: %s is %v: a class-specific context, which interpret_prompt.py does not interpret either", src.File, t.Name, sz)
		}
		return x.MustTotype(gotch.Float, true), nil
	}
	if len(names) > 8 {
		names = append(names[:8], "...")
	}
	return nil, fmt.Errorf("%s: no learned context (ctx or prompt_learner.ctx) among %v", src.File, names)
}
