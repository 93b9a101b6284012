package torchmods

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// ceCases are the options of testdata/gen_loss_parity.py's F.cross_entropy cases.
var ceCases = map[string]CEOptions{
	"mean":                {},
	"sum":                 {Reduction: ReduceSum},
	"none":                {Reduction: ReduceNone},
	"smooth_mean":         {LabelSmoothing: 0.1},
	"smooth_sum":          {Reduction: ReduceSum, LabelSmoothing: 0.25},
	"smooth_none":         {Reduction: ReduceNone, LabelSmoothing: 0.1},
	"ignore0_smooth_mean": {Ignore: IgnoreIndex(0), LabelSmoothing: 0.2},
	"nd":                  {LabelSmoothing: 0.1},
}

// TestCrossEntropyParity compares the loss and the gradient of the logits
// with torch.nn.functional.cross_entropy for every reduction, label
// smoothing with ignored targets (-100 and 0), and [N, C, d] logits.
func TestCrossEntropyParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "loss_parity.safetensors")
	for c, o := range ceCases {
		r := testutil.Sub(ref, "ce."+c+".")
		x := r["logits"].MustDetach(false)
		x.MustRequiresGrad_(true)
		var y *ts.Tensor
		require.NoError(t, Try(func() { y = CrossEntropy(x, r["targets"], o) }), c)
		testutil.Close(t, y, r["y"], 1e-6, "%s loss", c)
		require.NoError(t, y.MustMul(r["g"], false).MustSum(gotch.Float, true).Backward())
		testutil.Close(t, x.MustGrad(false), r["grad.logits"], 1e-5, "%s grad of the logits", c)
	}
}

// TestCrossEntropyByHand recomputes PyTorch's documented formula in
// float64: per target not ignored, (1-ε)·(lse - z_y) + ε/C·Σ_c (lse - z_c);
// the mean divides by the number of targets not ignored.
func TestCrossEntropyByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "loss_parity.safetensors")
	for _, c := range []string{"mean", "sum", "none", "smooth_mean", "smooth_sum", "smooth_none", "ignore0_smooth_mean"} {
		o := ceCases[c]
		z := ref["ce."+c+".logits"].Float64Values()
		tg := ref["ce."+c+".targets"].Int64Values()
		const C = 5
		eps := o.LabelSmoothing
		var per []float64
		sum, count := 0.0, 0
		for i, y := range tg {
			if y == o.Ignore.Index() {
				per = append(per, 0)
				continue
			}
			row := z[i*C : (i+1)*C]
			lse := 0.0
			for _, v := range row {
				lse += math.Exp(v)
			}
			lse = math.Log(lse)
			smooth := 0.0
			for _, v := range row {
				smooth += lse - v
			}
			l := (1-eps)*(lse-row[y]) + eps/C*smooth
			per = append(per, l)
			sum += l
			count++
		}
		got := CrossEntropy(ref["ce."+c+".logits"], ref["ce."+c+".targets"], o).Float64Values()
		switch o.Reduction {
		case ReduceMean:
			assert.InDelta(t, sum/float64(count), got[0], 1e-5, c)
		case ReduceSum:
			assert.InDelta(t, sum, got[0], 1e-5, c)
		case ReduceNone:
			assert.InDeltaSlice(t, per, got, 1e-5, c)
		}
	}
}

func TestCEOptionsZeroValueIsPyTorchDefaults(t *testing.T) {
	var o CEOptions
	assert.Equal(t, int64(-100), o.Ignore.Index())
	assert.Equal(t, ReduceMean, o.Reduction)
	assert.Equal(t, int64(0), IgnoreIndex(0).Index())
	assert.Equal(t, int64(7), IgnoreIndex(7).Index())

	s := ts.NewScope()
	defer s.Close()
	logits := ts.MustOfSlice([]float32{0, 0, 0, 0}).MustView([]int64{2, 2}, true)
	all := ts.MustOfSlice([]int64{-100, -100})
	assert.True(t, math.IsNaN(CrossEntropy(logits, all, CEOptions{}).Float64Values()[0]), "the mean over no target is NaN, as in PyTorch")
	assert.Equal(t, []float64{0}, CrossEntropy(logits, all, CEOptions{Reduction: ReduceSum}).Float64Values())
	assert.ErrorContains(t, Try(func() { CrossEntropy(logits, all, CEOptions{LabelSmoothing: 1.5}) }), "label smoothing 1.5")
	assert.Error(t, Try(func() { CrossEntropy(logits, ts.MustOfSlice([]int64{0, 2}), CEOptions{}) }), "a target out of range is libtorch's error")
}

// TestSoftTargetCrossEntropy compares with timm's formula in PyTorch and
// checks it gives bit for bit what mae's fine-tuning computed inline.
func TestSoftTargetCrossEntropy(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "loss_parity.safetensors")
	x := ref["soft.logits"].MustDetach(false)
	x.MustRequiresGrad_(true)
	y := SoftTargetCrossEntropy(x, ref["soft.target"])
	testutil.Close(t, y, ref["soft.y"], 1e-6, "loss")
	require.NoError(t, y.Backward())
	testutil.Close(t, x.MustGrad(false), ref["soft.grad.logits"], 1e-5, "grad of the logits")

	// mae/finetune.go's inline version, on a fresh copy of the target.
	logits := ts.MustRandn([]int64{16, 10}, gotch.Float, gotch.CPU)
	target := ts.MustRand([]int64{16, 10}, gotch.Float, gotch.CPU).MustSoftmax(-1, gotch.Float, true)
	tcopy := target.MustShallowClone()
	inline := tcopy.MustMul(logits.MustLogSoftmax(-1, gotch.Float, false), true).MustSumDimIntlist([]int64{-1}, false, gotch.Float, true).MustMean(gotch.Float, true).MustNeg(true)
	assert.Equal(t, inline.Float64Values(), SoftTargetCrossEntropy(logits, target).Float64Values())

	err := Try(func() { SoftTargetCrossEntropy(logits, ts.MustOnes([]int64{16, 9}, gotch.Float, gotch.CPU)) })
	assert.ErrorContains(t, err, "logits [16 10] and target [16 9]")
}
