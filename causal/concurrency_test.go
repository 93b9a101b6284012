package causal

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestFitConcurrently calls Fit (and ExactFit) from several goroutines at
// once: each gets the answer it gets alone. Run it under -race.
func TestFitConcurrently(t *testing.T) {
	const workers = 4
	rng := rand.New(rand.NewPCG(3, 4))
	var probs []*Problem
	for range workers {
		pr, err := Generate(GenOptions{P: 4, S: 4, S0: 3, D: 2, K: 2, N: 30}, rng)
		require.NoError(t, err)
		probs = append(probs, pr)
	}
	opts := func(w int) SolverOptions {
		o := DefaultSolver()
		o.Iters, o.Seed, o.DualStart = 120, int64(w), 40
		return o
	}
	alone := make([]*Estimate, workers)
	for w := range workers {
		est, err := Fit(probs[w].X, opts(w), gotch.CPU)
		require.NoError(t, err)
		alone[w] = est
	}

	var wg sync.WaitGroup
	together := make([]*Estimate, workers)
	exact := make([]*ExactResult, workers)
	errs := make([]error, 2*workers)
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			together[w], errs[w] = Fit(probs[w].X, opts(w), gotch.CPU)
		}()
		go func() {
			defer wg.Done()
			exact[w], errs[workers+w] = ExactFit(probs[w].X, 1)
		}()
	}
	wg.Wait()
	for w := range workers {
		require.NoError(t, errs[w], "Fit %d", w)
		require.NoError(t, errs[workers+w], "ExactFit %d", w)
		for k := range alone[w].W {
			for i := range alone[w].W[k] {
				assert.InDeltaSlice(t, alone[w].W[k][i], together[w].W[k][i], 1e-9, "fit %d task %d row %d", w, k, i)
			}
		}
		assert.InDelta(t, alone[w].SE, together[w].SE, 1e-9)
		assert.Len(t, exact[w].Order, 4)
	}
	assert.Equal(t, 0, ts.ScopeDepth())
}

// TestPanicInStepSurfaces: a panic inside a solver iteration (here from
// the Progress callback) reaches the caller with its own value: an error
// panic as Fit's error, a runtime error as a panic; the scopes close.
func TestPanicInStepSurfaces(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pr, err := Generate(GenOptions{P: 3, S: 2, S0: 2, D: 2, K: 1, N: 20}, rng)
	require.NoError(t, err)
	o := DefaultSolver()
	o.Iters, o.ProgressEvery = 10, 3
	boom := errors.New("boom in step")
	o.Progress = func(int, float64, float64) { panic(boom) }
	_, err = Fit(pr.X, o, gotch.CPU)
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 0, ts.ScopeDepth())

	o.Progress = func(int, float64, float64) {
		var m map[string]int
		m["x"] = 1 // a bug: assignment to a nil map
	}
	var r any
	func() {
		defer func() { r = recover() }()
		_, _ = Fit(pr.X, o, gotch.CPU)
	}()
	require.Implements(t, (*runtime.Error)(nil), r, "a runtime error is not turned into an error")
	assert.Contains(t, r.(error).Error(), "nil map")
	assert.Equal(t, 0, ts.ScopeDepth())
}
