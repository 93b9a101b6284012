package torchmods

import (
	"errors"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

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
	before := frozenLive(t)
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
	before := frozenLive(t)
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
	before := frozenLive(t)
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
	before := frozenLive(t)
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
	before := frozenLive(t)
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
	// Other tests of the package may leave unscoped tensors to the
	// finalizer; collect them first, or the GC below would free them
	// mid-loop and the count would drop under the baseline. The collector
	// stays on (settledLive, not frozenLive): the RSS check needs it.
	baseLive := settledLive()
	var warm int64
	for i := 0; i < 2000; i++ {
		func() {
			s := ts.NewScope()
			defer s.Close()
			step()
		}()
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
				func() {
					s := ts.NewScope()
					defer s.Close()
					x := ts.MustOnes([]int64{2}, gotch.Float, gotch.CPU)
					x.MustRequiresGrad_(true)
					ok = ok && x.MustMulScalar(ts.FloatScalar(2), false).MustRequiresGrad()
				}()
			}
			done <- ok
		}()
	}
	for g := 0; g < 8; g++ {
		assert.True(t, <-done, "a thread was left with gradient tracking off")
	}
}

// panicOf runs f and returns what it panicked with and the stack at the
// recovery, which still holds the frames of the original panic.
func panicOf(f func()) (r any, stack string) {
	defer func() {
		r = recover()
		stack = string(debug.Stack())
	}()
	f()
	return nil, ""
}

//go:noinline
func derefNil(s *Store) int { return len(s.params) }

//go:noinline
func indexOutOfRange(i int) int { return []int{1, 2}[i] }

// TestTryConvertsErrorPanicsOnly: Try is where the error panics of tensor
// code become errors; a runtime error or any panic that is not an error is
// a bug and must go on up with the stack of where it was raised.
func TestTryConvertsErrorPanicsOnly(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()

	err := Try(func() { ones(t, 2, 3).MustMm(ones(t, 4, 5), false) })
	require.Error(t, err, "a Must op's shape mistake is an error")
	assert.Contains(t, err.Error(), "Mm")
	sentinel := errors.New("sentinel")
	assert.Same(t, sentinel, Try(func() { panic(sentinel) }), "the error itself, not a copy")
	assert.NoError(t, Try(func() {}))

	r, stack := panicOf(func() { _ = Try(func() { derefNil(nil) }) })
	require.Implements(t, (*runtime.Error)(nil), r, "a nil dereference panics on")
	assert.Contains(t, r.(error).Error(), "nil pointer dereference")
	assert.Contains(t, stack, "torchmods.derefNil(", "the stack still shows where it happened")

	r, stack = panicOf(func() { _ = Try(func() { indexOutOfRange(5) }) })
	require.Implements(t, (*runtime.Error)(nil), r)
	assert.Contains(t, r.(error).Error(), "index out of range")
	assert.Contains(t, stack, "torchmods.indexOutOfRange(")

	r, _ = panicOf(func() { _ = Try(func() { panic("a bug") }) })
	assert.Equal(t, "a bug", r, "a string panic is not converted")
	r, _ = panicOf(func() { _ = Try(func() { panic(42) }) })
	assert.Equal(t, 42, r)
	r, _ = panicOf(func() { _ = Try(func() { panic(nil) }) })
	assert.Implements(t, (*runtime.Error)(nil), r, "panic(nil) is a *runtime.PanicNilError")

	reached := make(chan bool, 1)
	go func() { // runtime.Goexit (t.FailNow) is no panic: Try lets it go on
		defer close(reached)
		_ = Try(runtime.Goexit)
		reached <- true
	}()
	assert.False(t, <-reached)
}

// TestPanicInInnerScopeSurfaces: a panic inside a scope whose Close is
// skipped (not deferred) reaches the user with its own message, not as
// "inner scope still open", and every tensor and scope is released.
func TestPanicInInnerScopeSurfaces(t *testing.T) {
	before := frozenLive(t)
	err := Try(func() {
		outer := ts.NewScope()
		defer outer.Close()
		_ = ones(t, 3)
		inner := ts.NewScope()
		ones(t, 2, 3).MustMm(ones(t, 4, 5), false) // a shape mistake
		inner.Close()
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Mm", "the shape mistake's own message")
	assert.NotContains(t, err.Error(), "scope")
	assert.Equal(t, 0, ts.ScopeDepth(), "both scopes closed")
	assert.Equal(t, before, ts.LiveTensors(), "and their tensors freed")

	// A runtime error through two scopes keeps its value and stack.
	r, stack := panicOf(func() {
		outer := ts.NewScope()
		defer outer.Close()
		inner := ts.NewScope()
		_ = ones(t, 2)
		derefNil(nil)
		inner.Close()
	})
	require.Implements(t, (*runtime.Error)(nil), r)
	assert.Contains(t, stack, "torchmods.derefNil(")
	assert.Equal(t, 0, ts.ScopeDepth())
	assert.Equal(t, before, ts.LiveTensors())

	// runtime.Goexit (a failed require in a test) with an inner scope open:
	// the outer Close does not turn it into a panic.
	got := make(chan any, 1)
	go func() {
		defer func() { got <- recover() }()
		outer := ts.NewScope()
		defer outer.Close()
		ts.NewScope()
		_ = ones(t, 2)
		runtime.Goexit()
	}()
	assert.Nil(t, <-got)
	assert.Equal(t, before, ts.LiveTensors())
}

// TestCloseWithInnerScopeOpen: without a panic under way, a missing inner
// Close is a bug the outer Close reports, after closing the inner scope as
// its own Close would have (its kept tensor moves out, the rest is freed).
func TestCloseWithInnerScopeOpen(t *testing.T) {
	before := frozenLive(t)
	outer := ts.NewScope()
	x := ones(t, 2)
	inner := ts.NewScope()
	y := ones(t, 2)
	_ = ones(t, 2)
	inner.Keep(y)
	outer.Keep(x)
	assert.Equal(t, 2, ts.ScopeDepth())
	r, _ := panicOf(outer.Close)
	assert.Contains(t, r, "inner scope(s) were still open")
	assert.Equal(t, 0, ts.ScopeDepth())
	assert.Equal(t, before+1, ts.LiveTensors(), "only x, kept by the outer scope, survives")
	assert.Equal(t, []float64{1, 1}, x.Float64Values())
	inner.Close() // closed already: nothing happens
	require.NoError(t, x.Drop())

	// A scope is its goroutine's: another one may not close it.
	s := ts.NewScope()
	done := make(chan any)
	go func() {
		r, _ := panicOf(s.Close)
		done <- r
	}()
	assert.Contains(t, <-done, "did not open it")
	assert.Equal(t, 1, ts.ScopeDepth(), "the scope is still open")
	s.Close()
	assert.Equal(t, 0, ts.ScopeDepth())
}

// TestConcurrentForwardPasses runs a torchmods layer's forward pass from
// several goroutines at once, each in its own (nested) scopes, while a
// loader goroutine makes tensors with no scope open. Every scope must hold
// exactly the tensors of its own goroutine's forward pass, every output
// must match the one computed alone, and tensors handed between goroutines
// with Persist must survive their scope. Run it under -race.
func TestConcurrentForwardPasses(t *testing.T) {
	ts.ManualSeed(3)
	store := NewStore(gotch.CPU)
	defer store.Drop()
	layer := NewEncoderLayer(store.Root(), EncoderLayerOptions{Dim: 16, Heads: 4, FF: 32, Activation: GELU})
	before := frozenLive(t)

	const workers, iters = 4, 25
	inputs := make([]*ts.Tensor, workers)
	want := make([][]float64, workers)
	var perPass int // tensors one forward pass leaves in its scope
	for w := range workers {
		inputs[w] = ts.MustRandn([]int64{2, 5, 16}, gotch.Float, gotch.CPU)
		func() {
			s := ts.NewScope()
			defer s.Close()
			y := layer.Forward(inputs[w], nil, false)
			perPass = s.Len()
			want[w] = y.Float64Values()
		}()
	}
	require.Positive(t, perPass)

	stop := make(chan struct{})
	loaderDone := make(chan bool)
	go func() { // a data loader: no scope, its tensors are its own
		ok := true
		for {
			select {
			case <-stop:
				loaderDone <- ok
				return
			default:
			}
			x := ts.MustOnes([]int64{8}, gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(2), true)
			runtime.Gosched()
			v := x.Float64Values()
			ok = ok && v[0] == 2 && v[7] == 2
			x.MustDrop()
		}
	}()

	var wg sync.WaitGroup
	handed := make(chan *ts.Tensor, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				func() {
					outer := ts.NewScope()
					defer outer.Close()
					var y *ts.Tensor
					func() {
						s := ts.NewScope()
						defer s.Close()
						y = layer.Forward(inputs[w], nil, false)
						assert.Equal(t, 2, ts.ScopeDepth())
						assert.Equal(t, perPass, s.Len(), "worker %d: the scope holds its own forward pass, no one else's tensors", w)
						s.Keep(y)
					}()
					assert.Equal(t, 1, outer.Len(), "the kept output moved to the outer scope")
					assert.InDeltaSlice(t, want[w], y.Float64Values(), 1e-5, "worker %d iteration %d", w, i)
					if i == iters-1 {
						ts.Persist(y)
						handed <- y
					}
				}()
				assert.Equal(t, 0, ts.ScopeDepth())
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	close(stop)
	assert.True(t, <-loaderDone, "the loader's tensors were never freed under it")
	close(handed)
	n := 0
	for y := range handed { // handed over with Persist: alive after the sender's scopes closed
		assert.Equal(t, len(want[0]), len(y.Float64Values()))
		require.NoError(t, y.Drop())
		n++
	}
	assert.Equal(t, workers, n)
	for _, x := range inputs {
		require.NoError(t, x.Drop())
	}
	assert.Equal(t, before, ts.LiveTensors())
}

// frozenLive is the settled live-tensor count with the collector then
// switched off until the test ends, so that no finalizer of other tests'
// garbage can run between this count and the test's later ones: a count
// that moves is then a tensor this test allocated or freed.
func frozenLive(t *testing.T) int64 {
	n := settledLive()
	old := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	return n
}

// settledLive collects garbage until the live-tensor count stops moving:
// finalizers run on their own goroutine after a GC, so one GC is not enough.
// Every test that compares live counts starts from it, so that other
// tests' unscoped tensors are not finalized in the middle of its count.
func settledLive() int64 {
	prev := int64(-1)
	for i := 0; i < 100; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		n := ts.LiveTensors()
		if n == prev {
			return n
		}
		prev = n
	}
	return prev
}
