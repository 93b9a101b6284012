package torchmods

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

func TestRMSNormParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	var rms *RMSNorm
	parity(t, ref, "rmsnorm", func(p Path) { rms = NewRMSNorm(p, NormOptions{Dim: 8, Eps: 1e-6}) }, func(x *ts.Tensor) *ts.Tensor { return rms.Forward(x) })
}

// TestBatchNorm1dParity loads the state dicts of two torch.nn.BatchNorm1d
// (testdata/gen_loss_parity.py: affine with eps 1e-3 and momentum 0.3, and
// MAE's probe, affine=False with eps 1e-6) strictly by PyTorch's names, then
// compares two training steps ([N, C] then [N, C, L]: outputs, the
// gradients of the input, weight and bias, the running statistics and the
// batch count after each) and an evaluation.
func TestBatchNorm1dParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "loss_parity.safetensors")
	for c, o := range map[string]BatchNormOptions{
		"affine": {Dim: 6, Eps: 1e-3, Momentum: 0.3},
		"probe":  {Dim: 6, Eps: 1e-6, NoAffine: true},
	} {
		store := NewStore(gotch.CPU)
		bn := NewBatchNorm1d(store.Root(), o)
		sd := testutil.Sub(ref, "bn."+c+".sd.")
		var names []string
		for _, p := range store.Params() {
			names = append(names, p.Name)
		}
		want := []string{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
		if o.NoAffine {
			want = want[2:]
		}
		assert.Equal(t, want, names, "%s: PyTorch's state_dict names, in its order", c)
		r, err := store.Load(sd, true)
		require.NoError(t, err, c)
		assert.Len(t, r.Loaded, len(sd))
		assert.Equal(t, gotch.Int64, bn.NumBatchesTracked.DType())
		assert.Empty(t, bn.NumBatchesTracked.MustSize(), "num_batches_tracked is a scalar")

		for i := 1; i <= 2; i++ {
			p := fmt.Sprintf("bn.%s.", c)
			x := ref[fmt.Sprintf("%sx%d", p, i)].MustDetach(false)
			x.MustRequiresGrad_(true)
			y := bn.Forward(x, true)
			testutil.Close(t, y, ref[fmt.Sprintf("%sy%d", p, i)], 1e-5, "%s step %d output", c, i)
			for _, q := range store.Params() {
				q.Tensor.ZeroGrad()
			}
			require.NoError(t, y.MustMul(ref[fmt.Sprintf("%sg%d", p, i)], false).MustSum(gotch.Float, true).Backward())
			got := grads(store)
			got["x"] = x.MustGrad(false)
			n := testutil.Parity(t, got, testutil.Sub(ref, fmt.Sprintf("%sgrad%d.", p, i)), 1e-5, "%s step %d grad", c, i)
			assert.Equal(t, len(want)-2, n, "%s: the gradients of the input and of the affine parameters", c)
			after := testutil.Sub(ref, fmt.Sprintf("%safter%d.", p, i))
			testutil.Close(t, bn.RunningMean, after["running_mean"], 1e-6, "%s step %d running_mean", c, i)
			testutil.Close(t, bn.RunningVar, after["running_var"], 1e-6, "%s step %d running_var", c, i)
			assert.Equal(t, after["num_batches_tracked"].Int64Values(), bn.NumBatchesTracked.Int64Values(), "%s step %d", c, i)
		}
		var y *ts.Tensor
		ts.NoGrad(func() { y = bn.Forward(ref["bn."+c+".x3"], false) })
		testutil.Close(t, y, ref["bn."+c+".y3"], 1e-5, "%s evaluation", c)
		assert.Equal(t, []int64{2}, bn.NumBatchesTracked.Int64Values(), "evaluation counts no batch")
		store.Drop()
	}
}

// TestBatchNorm1dReplacesMAEProbe: with NoAffine and NoBatchCount,
// BatchNorm1d has the names and gives bit for bit the numbers of the
// BatchNorm that mae's linear probe writes inline (buffers head.0.running_*
// and ts.MustBatchNorm without weight and bias, momentum 0.1, eps 1e-6).
func TestBatchNorm1dReplacesMAEProbe(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(7)
	a, b := NewStore(gotch.CPU), NewStore(gotch.CPU)
	defer a.Drop()
	defer b.Drop()
	mean := a.Root().Sub("head").Sub("0").NewBuffer("running_mean", []int64{8}, Const(0))
	vari := a.Root().Sub("head").Sub("0").NewBuffer("running_var", []int64{8}, Const(1))
	inline := func(f *ts.Tensor, train bool) *ts.Tensor {
		return ts.MustBatchNorm(f, ts.None, ts.None, mean, vari, train, 0.1, 1e-6, true)
	}
	bn := NewBatchNorm1d(b.Root().Sub("head").Sub("0"), BatchNormOptions{Dim: 8, Eps: 1e-6, NoAffine: true, NoBatchCount: true})
	var an, bnames []string
	for _, p := range a.Params() {
		an = append(an, p.Name)
	}
	for _, p := range b.Params() {
		bnames = append(bnames, p.Name)
	}
	assert.Equal(t, an, bnames)
	for step := range 3 {
		f := ts.MustRandn([]int64{16, 8}, gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(float64(step+1)), true)
		assert.Equal(t, inline(f, true).Float64Values(), bn.Forward(f, true).Float64Values(), "step %d", step)
		assert.Equal(t, mean.Float64Values(), bn.RunningMean.Float64Values())
		assert.Equal(t, vari.Float64Values(), bn.RunningVar.Float64Values())
	}
	f := ts.MustRandn([]int64{5, 8}, gotch.Float, gotch.CPU)
	assert.Equal(t, inline(f, false).Float64Values(), bn.Forward(f, false).Float64Values(), "evaluation")
}

// TestBatchNorm1dSavesAndLoads: the int64 scalar num_batches_tracked goes
// through a safetensors file and back with the float buffers.
func TestBatchNorm1dSavesAndLoads(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	a, b := NewStore(gotch.CPU), NewStore(gotch.CPU)
	defer a.Drop()
	defer b.Drop()
	bn := NewBatchNorm1d(a.Root().Sub("bn"), BatchNormOptions{Dim: 3})
	for range 3 {
		bn.Forward(ts.MustRandn([]int64{4, 3}, gotch.Float, gotch.CPU), true)
	}
	path := filepath.Join(t.TempDir(), "bn.safetensors")
	require.NoError(t, a.Save(path, "", nil))
	w, err := LoadWeights(path, gotch.CPU)
	require.NoError(t, err)
	back := NewBatchNorm1d(b.Root().Sub("bn"), BatchNormOptions{Dim: 3})
	_, err = b.Load(w, true)
	require.NoError(t, err)
	assert.Equal(t, []int64{3}, back.NumBatchesTracked.Int64Values())
	assert.Equal(t, bn.RunningVar.Float64Values(), back.RunningVar.Float64Values())
	decay, noDecay := b.Groups()
	assert.Empty(t, decay)
	assert.Len(t, noDecay, 2, "weight and bias train; the buffers do not")
}

func TestBatchNorm1dRefusesBadInput(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	bn := NewBatchNorm1d(store.Root(), BatchNormOptions{Dim: 4})
	err := Try(func() { bn.Forward(ts.MustOnes([]int64{2, 5}, gotch.Float, gotch.CPU), true) })
	assert.ErrorContains(t, err, "BatchNorm1d: input shape [2 5], want [N, 4] or [N, 4, L]")
	err = Try(func() { bn.Forward(ts.MustOnes([]int64{1, 4}, gotch.Float, gotch.CPU), true) })
	assert.ErrorContains(t, err, "more than 1 value per channel")
	assert.NoError(t, Try(func() { bn.Forward(ts.MustOnes([]int64{1, 4}, gotch.Float, gotch.CPU), false) }), "one sample is fine in evaluation")
	assert.Equal(t, []int64{0}, bn.NumBatchesTracked.Int64Values(), "a refused batch is not counted")
}
