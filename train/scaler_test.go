package train

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// The defaults are torch.cuda.amp.GradScaler()'s, and the scale doubles
// after exactly growth_interval finite steps in a row.
func TestGradScalerGrowsAfterTheInterval(t *testing.T) {
	g := NewGradScaler()
	require.Equal(t, 65536.0, g.Scale())
	require.Equal(t, 2.0, g.GrowthFactor)
	require.Equal(t, 0.5, g.BackoffFactor)
	require.Equal(t, int64(2000), g.GrowthInterval)
	for range 1999 {
		g.Update(true)
	}
	require.Equal(t, 65536.0, g.Scale(), "no growth before the 2000th finite step")
	g.Update(true)
	require.Equal(t, 131072.0, g.Scale())
	require.Equal(t, int64(0), g.tracker)

	g = NewGradScaler()
	g.GrowthInterval = 3
	for i, want := range []float64{65536, 65536, 131072, 131072, 131072, 262144} {
		g.Update(true)
		require.Equal(t, want, g.Scale(), "after finite step %d", i+1)
	}
	require.Equal(t, int64(0), g.Skipped())
}

// A non-finite step halves the scale, counts as skipped and restarts the
// run of finite steps the growth waits for.
func TestGradScalerBacksOff(t *testing.T) {
	g := NewGradScaler()
	g.GrowthInterval = 3
	g.Update(true)
	g.Update(true)
	g.Update(false)
	require.Equal(t, 32768.0, g.Scale())
	require.Equal(t, int64(0), g.tracker)
	require.Equal(t, int64(1), g.Skipped())
	g.Update(true)
	g.Update(true)
	require.Equal(t, 32768.0, g.Scale(), "the inf step reset the count")
	g.Update(true)
	require.Equal(t, 65536.0, g.Scale())
	for range 200 { // the scale may shrink far, never to a non-power of two
		g.Update(false)
	}
	require.Equal(t, int64(201), g.Skipped())
	require.GreaterOrEqual(t, g.Scale(), 0.0)
}

// The checkpointed state brings back scale, tracker, factors and the
// skipped count exactly; a broken one is refused.
func TestGradScalerStateRoundTrips(t *testing.T) {
	g := NewGradScaler()
	g.GrowthInterval = 5
	for _, f := range []bool{true, false, false, true, true} {
		g.Update(f)
	}
	v, tensors, err := g.SaveState()
	require.NoError(t, err)
	require.Nil(t, tensors)
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	h := NewGradScaler()
	require.NoError(t, h.LoadState(raw, nil))
	require.Equal(t, *g, *h)
	require.Equal(t, 16384.0, h.Scale())
	require.Equal(t, int64(2), h.tracker)
	require.Equal(t, int64(2), h.Skipped())

	require.Error(t, h.LoadState(json.RawMessage(`{"scale":0,"growth_interval":2000}`), nil))
	require.Error(t, h.LoadState(json.RawMessage(`{"scale":"x"}`), nil))
}

// ScaleLoss multiplies by the scale and promotes a float16 loss to float32,
// so the scaled loss itself does not overflow float16.
func TestGradScalerScaleLoss(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	g := NewGradScaler()
	l := ts.MustOfSlice([]float32{3}).MustSum(gotch.Float, true) // a 0-dim loss
	require.Equal(t, []float64{3 * 65536}, g.ScaleLoss(l).Float64Values())
	half := l.MustTotype(gotch.Half, false)
	scaled := g.ScaleLoss(half)
	require.Equal(t, gotch.Float, scaled.DType())
	require.Equal(t, []float64{3 * 65536}, scaled.Float64Values(), "3*2^16 is past float16's 65504")
}

// Unscale divides every gradient by the scale and finds a single NaN or
// inf element in any of them.
func TestGradScalerUnscaleFindsOneNonFiniteElement(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	lin := torchmods.NewLinear(store.Root().Sub("fc"), torchmods.LinearOptions{In: 3, Out: 2})
	x := ts.MustOnes([]int64{4, 3}, gotch.Float, gotch.CPU)
	g := NewGradScaler()
	backward := func() {
		require.NoError(t, g.ScaleLoss(lin.Forward(x).MustSum(gotch.Float, true)).Backward())
	}
	backward()
	finite, err := g.Unscale(store)
	require.NoError(t, err)
	require.True(t, finite)
	require.Equal(t, []float64{4, 4, 4, 4, 4, 4}, lin.Weight.MustGrad(false).Float64Values(), "d sum / dW = 4 for ones, unscaled")
	require.Equal(t, []float64{4, 4}, lin.Bias.MustGrad(false).Float64Values())

	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		lin.Weight.ZeroGrad()
		lin.Bias.ZeroGrad()
		backward()
		ts.NoGrad(func() {
			lin.Bias.MustGrad(false).MustNarrow(0, 1, 1, false).MustFill_(ts.FloatScalar(bad))
		})
		finite, err = g.Unscale(store)
		require.NoError(t, err)
		require.False(t, finite, "%v", bad)
	}
}
