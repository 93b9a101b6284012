package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func TestCountCorrectAndTopK(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	logits := FromSlice([]float32{
		1, 3, 2, // label 1: top-1
		5, 0, 1, // label 0: top-1
		0, 1, 9, // label 0: third
		2, 2, 1, // label 1: tied with class 0, which argmax takes: top-2
	}, []int64{4, 3}, gotch.CPU)
	labels := FromSlice([]int64{1, 0, 0, 1}, []int64{4}, gotch.CPU)
	assert.Equal(t, int64(2), CountCorrect(logits, labels))
	assert.Equal(t, int64(2), CountTopK(logits, labels, 1))
	assert.Equal(t, int64(3), CountTopK(logits, labels, 2))
	assert.Equal(t, int64(4), CountTopK(logits, labels, 3))
	// Any leading shape: [2, 2, 3] with labels [2, 2].
	assert.Equal(t, int64(2), CountCorrect(logits.MustView([]int64{2, 2, 3}, false), labels.MustView([]int64{2, 2}, false)))

	assert.ErrorContains(t, Try(func() { CountCorrect(logits, labels.MustNarrow(0, 0, 3, false)) }), "logits [4 3] and labels [3]")
	assert.ErrorContains(t, Try(func() { CountCorrect(logits, logits.MustSelect(1, 0, false)) }), "labels must be int64")
	assert.ErrorContains(t, Try(func() { CountTopK(logits, labels, 4) }), "k = 4 with 3 classes")
}

// TestCountCorrectAsMAE: the same count as mae's inline argmax-eq-sum.
func TestCountCorrectAsMAE(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(11)
	logits := ts.MustRandn([]int64{500, 10}, gotch.Float, gotch.CPU)
	y := ts.MustRandint(10, []int64{500}, gotch.Int64, gotch.CPU)
	inline := logits.MustArgmax([]int64{1}, false, false).MustEqTensor(y, true).MustSum(gotch.Float, true).Float64Values()[0]
	assert.Equal(t, int64(inline), CountCorrect(logits, y))
}
