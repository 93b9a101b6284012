package torchmods

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// CountCorrect is how many rows of logits [..., C] have their largest
// score at their label (int64 labels [...]): the numerator of accuracy.
// Ties go to the first largest class, as torch.argmax. It exists so that
// paper code need not chain argmax, eq and sum and read the value back.
func CountCorrect(logits, labels *ts.Tensor) int64 {
	mustLabels("CountCorrect", logits, labels)
	var n int64
	ts.NoGrad(func() {
		n = logits.MustArgmax([]int64{-1}, false, false).MustEqTensor(labels, true).MustSum(gotch.Int64, true).Int64Values()[0]
	})
	return n
}

// CountTopK is how many rows of logits [..., C] have their label among
// their k largest scores: the numerator of top-k accuracy (timm's
// accuracy(output, target, topk=(k,))). CountTopK(logits, labels, 1) is
// CountCorrect up to ties.
func CountTopK(logits, labels *ts.Tensor, k int64) int64 {
	mustLabels("CountTopK", logits, labels)
	s := logits.MustSize()
	if k < 1 || k > s[len(s)-1] {
		panic(fmt.Errorf("CountTopK: k = %d with %d classes", k, s[len(s)-1]))
	}
	var n int64
	ts.NoGrad(func() {
		_, idx := logits.MustTopk(k, -1, true, false, false)
		hit := idx.MustEqTensor(labels.MustUnsqueeze(-1, false), true).MustAnyDim(-1, false, true)
		n = hit.MustSum(gotch.Int64, true).Int64Values()[0]
	})
	return n
}

func mustLabels(fn string, logits, labels *ts.Tensor) {
	ls, ys := logits.MustSize(), labels.MustSize()
	if len(ls) == 0 || !equalShape(ls[:len(ls)-1], ys) {
		panic(fmt.Errorf("%s: logits %v and labels %v, want labels shaped as the logits without their last dimension", fn, ls, ys))
	}
	if labels.DType() != gotch.Int64 {
		panic(fmt.Errorf("%s: labels must be int64, got %v", fn, labels.DType()))
	}
}
