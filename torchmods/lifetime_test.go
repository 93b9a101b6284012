package torchmods

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/memstat"
)

func ones(t *testing.T, shape ...int64) *ts.Tensor {
	t.Helper()
	x, err := ts.Ones(shape, gotch.Float, gotch.CPU)
	require.NoError(t, err)
	return x
}

func TestScopeFreesAllButKept(t *testing.T) {
	before := ts.LiveTensors()
	s := ts.NewScope()
	a := ones(t, 4)
	b, err := a.Add(a, false)
	require.NoError(t, err)
	c, err := b.MulScalar(ts.FloatScalar(3), false)
	require.NoError(t, err)
	s.Keep(c)
	assert.Equal(t, 3, s.Len())
	assert.Equal(t, before+3, ts.LiveTensors())
	s.Close()
	s.Close() // a second close does nothing

	assert.Equal(t, before+1, ts.LiveTensors(), "only the kept tensor survives")
	assert.Equal(t, []float64{6, 6, 6, 6}, c.Float64Values())
	require.NoError(t, c.Drop())
	require.NoError(t, c.Drop(), "dropping twice is harmless")
	assert.Equal(t, before, ts.LiveTensors())
}

func TestScopesNest(t *testing.T) {
	before := ts.LiveTensors()
	outer := ts.NewScope()
	x := ones(t, 2)
	inner := ts.NewScope()
	y, err := x.AddScalar(ts.FloatScalar(1), false)
	require.NoError(t, err)
	tmp := ones(t, 2)
	_ = tmp
	inner.Keep(y)
	inner.Close()
	assert.Equal(t, before+2, ts.LiveTensors(), "inner temporaries freed, the kept one moved out")
	assert.Equal(t, []float64{2, 2}, y.Float64Values())
	outer.Close()
	assert.Equal(t, before, ts.LiveTensors(), "the outer scope frees what the inner one kept")
}

func TestKeepIgnoresTensorsTheScopeDoesNotOwn(t *testing.T) {
	before := ts.LiveTensors()
	outer := ts.NewScope()
	x := ones(t, 2)
	inner := ts.NewScope()
	inner.Keep(x) // x belongs to outer: keeping it here must not let it escape outer
	inner.Close()
	outer.Close()
	assert.Equal(t, before, ts.LiveTensors(), "outer still frees x")

	free := ones(t, 2) // no scope: the finalizer owns it
	s := ts.NewScope()
	s.Keep(free, nil)
	s.Close()
	assert.Equal(t, []float64{1, 1}, free.Float64Values())
	require.NoError(t, free.Drop())
	assert.Equal(t, before, ts.LiveTensors())
}

func TestScopeLeavesOtherGoroutinesTensorsAlone(t *testing.T) {
	before := ts.LiveTensors()
	s := ts.NewScope()
	done := make(chan *ts.Tensor)
	go func() { // a data loader, say, working while a training step runs
		x, _ := ts.Ones([]int64{3}, gotch.Float, gotch.CPU)
		done <- x
	}()
	loaded := <-done
	mine := ones(t, 3)
	_ = mine
	s.Close()
	assert.Equal(t, before+1, ts.LiveTensors())
	assert.Equal(t, []float64{1, 1, 1}, loaded.Float64Values(), "the other goroutine's tensor is intact")
	require.NoError(t, loaded.Drop())
}

func TestDroppedInsideScopeIsNotFreedTwice(t *testing.T) {
	before := ts.LiveTensors()
	s := ts.NewScope()
	x := ones(t, 2)
	require.NoError(t, x.Drop())
	s.Close()
	assert.Equal(t, before, ts.LiveTensors())
}

// TestOpWithFourOutputs covers the "op-handles" patch: stock gotch gave
// every op a malloc(0) block for its output handles, which holds three.
func TestOpWithFourOutputs(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	weight, err := ts.Arange(ts.IntScalar(12), gotch.Float, gotch.CPU)
	require.NoError(t, err)
	weight, err = weight.View([]int64{4, 3}, false)
	require.NoError(t, err)
	indices, err := ts.OfSlice([]int64{0, 1, 2, 3})
	require.NoError(t, err)
	offsets, err := ts.OfSlice([]int64{0, 2})
	require.NoError(t, err)
	out, o1, o2, o3, err := ts.EmbeddingBag(weight, indices, offsets, false, 0, false, ts.None, false) // gotch wants ts.None, not nil, for an absent optional tensor
	require.NoError(t, err)
	for _, o := range []*ts.Tensor{o1, o2, o3} {
		require.NotNil(t, o)
	}
	// mode 0 is sum: bag 0 = rows 0+1, bag 1 = rows 2+3.
	assert.Equal(t, []float64{3, 5, 7, 15, 17, 19}, out.Float64Values())
}

// TestTrainingStepsKeepMemoryFlat runs 2,000 training steps, each in a
// scope, of a small MLP with in-place SGD and of a transformer encoder layer
// (torchmods.EncoderLayer, with its own SGD): the live-tensor count must
// return to the same value after every step, and RSS must stay within 5% of
// its value after warm-up.
func TestTrainingStepsKeepMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 training steps")
	}
	ts.ManualSeed(1)
	lr := ts.FloatScalar(1e-3)
	sgd := func(params []*ts.Tensor) {
		ts.NoGrad(func() {
			for _, p := range params {
				g := p.MustGrad(false)
				p.MustSub_(g.MustMulScalar(lr, false))
				p.ZeroGrad()
			}
		})
	}

	t.Run("mlp", func(t *testing.T) {
		w1, w2 := param(t, 64, 128), param(t, 128, 8)
		defer w1.MustDrop()
		defer w2.MustDrop()
		checkFlat(t, func() {
			x := ts.MustRandn([]int64{32, 64}, gotch.Float, gotch.CPU)
			h := x.MustMm(w1, false).MustRelu(false)
			loss := h.MustMm(w2, false).MustSquare(false).MustMean(gotch.Float, false)
			require.NoError(t, loss.Backward())
			sgd([]*ts.Tensor{w1, w2})
		})
	})

	t.Run("encoder_layer", func(t *testing.T) {
		store := NewStore(gotch.CPU)
		defer store.Drop()
		layer := NewEncoderLayer(store.Root(), EncoderLayerOptions{Dim: 32, Heads: 4, FF: 64, Dropout: 0.1, Activation: GELU})
		var params []*ts.Tensor
		for _, p := range store.Params() {
			params = append(params, p.Tensor)
		}
		mask := ts.MustOnes([]int64{16, 16}, gotch.Bool, gotch.CPU).MustTriu(1, true)
		defer mask.MustDrop()
		checkFlat(t, func() {
			x := ts.MustRandn([]int64{8, 16, 32}, gotch.Float, gotch.CPU)
			loss := layer.Forward(x, mask, true).MustSquare(false).MustMean(gotch.Float, false)
			require.NoError(t, loss.Backward())
			sgd(params)
		})
	})
}

func checkFlat(t *testing.T, step func()) {
	baseLive := ts.LiveTensors()
	var warm int64
	for i := 0; i < 2000; i++ {
		s := ts.NewScope()
		step()
		s.Close()
		require.Equal(t, baseLive, ts.LiveTensors(), "step %d left tensors behind", i)
		if i == 200 {
			runtime.GC()
			var err error
			warm, err = memstat.RSS()
			require.NoError(t, err)
		}
	}
	runtime.GC()
	end, err := memstat.RSS()
	require.NoError(t, err)
	t.Logf("RSS after warm-up %.1f MiB, after 2,000 steps %.1f MiB", float64(warm)/(1<<20), float64(end)/(1<<20))
	assert.LessOrEqual(t, float64(end), 1.05*float64(warm), "RSS grew more than 5%% after warm-up")
}

func param(t *testing.T, shape ...int64) *ts.Tensor {
	t.Helper()
	p := ts.MustRandn(shape, gotch.Float, gotch.CPU)
	p.MustMulScalar_(ts.FloatScalar(0.05))
	p.MustRequiresGrad_(true)
	return p
}

// TestNoGradRestoresGradModeOnItsThread: libtorch's grad mode is per OS
// thread. NoGrad must restore it on the thread it changed it on, even when
// the function panics, or a later training step that lands on that thread
// silently loses its graph.
func TestNoGradRestoresGradModeOnItsThread(t *testing.T) {
	for i := 0; i < 200; i++ {
		func() {
			defer func() { recover() }()
			ts.NoGrad(func() {
				runtime.Gosched() // invite a move to another thread
				panic("boom")
			})
		}()
	}
	// Every thread the runtime may use must still track gradients.
	done := make(chan bool)
	for g := 0; g < 8; g++ {
		go func() {
			ok := true
			for i := 0; i < 50; i++ {
				runtime.Gosched()
				s := ts.NewScope()
				x := ts.MustOnes([]int64{2}, gotch.Float, gotch.CPU)
				x.MustRequiresGrad_(true)
				ok = ok && x.MustMulScalar(ts.FloatScalar(2), false).MustRequiresGrad()
				s.Close()
			}
			done <- ok
		}()
	}
	for g := 0; g < 8; g++ {
		assert.True(t, <-done, "a thread was left with gradient tracking off")
	}
}
