package train

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

func newTestSession(t *testing.T, accumulate int64, precision string) *Session {
	t.Helper()
	cfg := DefaultTrainer()
	cfg.Accumulate, cfg.Precision = accumulate, precision
	s, err := NewSession(cfg, t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// gradsOf returns a copy of every parameter's gradient and zeroes them.
func gradsOf(s *Session) [][]float64 {
	var out [][]float64
	for _, p := range s.Store.Params() {
		g := p.Tensor.MustGrad(false)
		out = append(out, g.Float64Values())
		g.MustDrop()
		p.Tensor.ZeroGrad()
	}
	return out
}

// Accumulating two half batches gives the gradient of the whole batch's mean
// loss, and the mean of the two losses.
func TestBackwardAccumulatesTheMeanGradient(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := ts.MustRandn([]int64{8, 6}, gotch.Float, gotch.CPU)
	y := ts.MustOfSlice([]int64{0, 1, 2, 0, 1, 2, 2, 1})
	lossOf := func(lin *torchmods.Linear, lo, hi int64) *ts.Tensor {
		return torchmods.CrossEntropy(lin.Forward(x.MustNarrow(0, lo, hi-lo, false)), y.MustNarrow(0, lo, hi-lo, false), torchmods.CEOptions{})
	}
	var grads [2][][]float64
	var losses [2]float64
	for i, acc := range []int64{1, 2} {
		ts.ManualSeed(0)
		s := newTestSession(t, acc, "fp32")
		lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: 6, Out: 3})
		size := 8 / acc
		l, err := s.Backward(func(micro int) (*ts.Tensor, error) { return lossOf(lin, int64(micro)*size, int64(micro+1)*size), nil })
		require.NoError(t, err)
		losses[i], grads[i] = l, gradsOf(s)
	}
	require.InDelta(t, losses[0], losses[1], 1e-6)
	for k := range grads[0] {
		require.InDeltaSlice(t, grads[0][k], grads[1][k], 1e-6)
	}
}

// Under bf16 the matmul runs in bfloat16 while the parameters and their
// gradients stay float32, and the loss stays close to the fp32 one.
func TestBF16Autocast(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	var losses [2]float64
	for i, prec := range []string{"fp32", "bf16"} {
		ts.ManualSeed(1)
		s := newTestSession(t, 1, prec)
		lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: 16, Out: 4})
		x := ts.MustRandn([]int64{32, 16}, gotch.Float, gotch.CPU)
		var outKind gotch.DType
		l, err := s.Backward(func(int) (*ts.Tensor, error) {
			out := lin.Forward(x)
			outKind = out.DType()
			return out.MustMul(out, false).MustMean(gotch.Float, false), nil
		})
		require.NoError(t, err)
		losses[i] = l
		want := map[string]gotch.DType{"fp32": gotch.Float, "bf16": gotch.BFloat16}[prec]
		require.Equal(t, want, outKind, prec)
		g := lin.Weight.MustGrad(false)
		require.Equal(t, gotch.Float, g.DType(), "gradients of float32 parameters stay float32")
		require.Equal(t, gotch.Float, lin.Weight.DType())
	}
	require.InEpsilon(t, losses[0], losses[1], 2e-2)
	require.NotEqual(t, losses[0], losses[1], "bf16 rounding must show")
}

func TestTrainerValidatesAccumulateAndPrecision(t *testing.T) {
	cfg := DefaultTrainer()
	cfg.Accumulate = 0
	require.ErrorContains(t, cfg.Validate(), "trainer.accumulate")
	cfg = DefaultTrainer()
	cfg.Precision = "fp8"
	require.ErrorContains(t, cfg.Validate(), "trainer.precision")
}
