package metapt

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Order is how the meta-gradient treats the inner steps.
type Order int

const (
	// FirstOrder treats the inner gradients as constants: θ_k = θ - α Σ_j
	// stop_grad(∇L_j(θ_{j-1})), so that d L(θ_k)/dθ = ∇L(θ_k), the
	// gradient at the adapted weights (first-order MAML). Each inner
	// step's graph is freed as soon as its gradient is taken.
	FirstOrder Order = 1
	// SecondOrder differentiates through the inner steps: their gradients
	// are taken with create_graph, so d L(θ_k)/dθ carries the Hessian-
	// vector products (I - α H_j) of every inner step (MAML). Every inner
	// step's graph stays alive until the outer backward pass.
	SecondOrder Order = 2
)

// ParseOrder reads "first" or "second".
func ParseOrder(s string) (Order, error) {
	switch s {
	case "first":
		return FirstOrder, nil
	case "second":
		return SecondOrder, nil
	}
	return 0, fmt.Errorf(`order must be "first" or "second", got %q`, s)
}

func (o Order) String() string {
	if o == SecondOrder {
		return "second"
	}
	return "first"
}

// LossFn computes one loss with the parameters the store holds when it
// runs (the model reads its weights through the store, so under
// Store.WithParams it computes with fast weights).
type LossFn func() (*ts.Tensor, error)

// MetaLoss is one meta step's loss. With θ_0 = θ (the store's trainable
// parameters), inner step j computes L_j = inner[j]() at θ_{j-1} and sets
// θ_j = θ_{j-1} - lr ∇L_j(θ_{j-1}) (plain SGD, no clipping or decay); the
// meta-test loss test() is computed at θ_k and returned. Its gradient with
// respect to θ is the meta-gradient of order: backward on it, then an
// optimizer step on θ, is the outer update. With no inner steps it is
// test() at θ itself, nothing else: multi-task pre-training's step.
//
// A parameter that an inner loss does not reach (another task's head)
// keeps its value in that step. It also returns the inner losses' values.
// Call it inside a scope (a training step's); every inner step runs in
// its own, so first order holds one inner graph at a time.
func MetaLoss(store *torchmods.Store, inner []LossFn, test LossFn, lr float64, order Order) (*ts.Tensor, []float64, error) {
	var names []string
	var theta []*ts.Tensor
	for _, p := range store.Params() {
		if p.Tensor.MustRequiresGrad() {
			names, theta = append(names, p.Name), append(theta, p.Tensor)
		}
	}
	cur := append([]*ts.Tensor(nil), theta...) // θ_{j-1}; θ_0 = θ
	// fast maps the names whose weights differ from θ to θ_{j-1}.
	fast := func(ws []*ts.Tensor) map[string]*ts.Tensor {
		m := map[string]*ts.Tensor{}
		for i, w := range ws {
			if w != theta[i] {
				m[names[i]] = w
			}
		}
		return m
	}
	run := func(ws []*ts.Tensor, fn LossFn) (*ts.Tensor, error) {
		var l *ts.Tensor
		err := store.WithParams(fast(ws), func() {
			var err error
			if l, err = fn(); err != nil {
				panic(err)
			}
		})
		return l, err
	}
	losses := make([]float64, len(inner))
	for j, fn := range inner {
		next, l, err := innerStep(cur, theta, fn, run, lr, order)
		if err != nil {
			return nil, nil, fmt.Errorf("inner step %d: %w", j+1, err)
		}
		cur, losses[j] = next, l
	}
	l, err := run(cur, test)
	if err != nil {
		return nil, nil, fmt.Errorf("meta-test: %w", err)
	}
	return l, losses, nil
}

// innerStep computes θ_j from θ_{j-1} (cur) in a scope of its own that
// keeps only θ_j: first order on detached copies whose graph is freed,
// second order on cur itself with create_graph.
func innerStep(cur, theta []*ts.Tensor, fn LossFn, run func([]*ts.Tensor, LossFn) (*ts.Tensor, error), lr float64, order Order) (next []*ts.Tensor, loss float64, err error) {
	sc := ts.NewScope()
	defer sc.Close()
	err = torchmods.Try(func() {
		at := cur // the tensors the gradient is taken with respect to
		if order == FirstOrder {
			at = make([]*ts.Tensor, len(cur))
			for i, w := range cur {
				at[i] = w.MustDetach(false)
				at[i].MustRequiresGrad_(true)
			}
		}
		var l *ts.Tensor
		forward := func() { l, err = run(at, fn) }
		if order == SecondOrder {
			// the meta-gradient differentiates this step's gradient, so its
			// attention must be twice differentiable: the matmul path
			torchmods.MathAttention(forward)
		} else {
			forward()
		}
		if err != nil {
			panic(err)
		}
		loss = l.Float64Values()[0]
		g, err := ts.Grad([]*ts.Tensor{l}, at, order == SecondOrder)
		if err != nil {
			panic(err)
		}
		next = make([]*ts.Tensor, len(cur))
		for i, w := range cur {
			if !g[i].MustDefined() { // not reached by this task's loss
				next[i] = w
				continue
			}
			next[i] = w.MustSub(g[i].MustMulScalar(ts.FloatScalar(lr), false), false)
			sc.Keep(next[i])
		}
	})
	return next, loss, err
}

// Sampler draws the tasks of meta steps.
type Sampler struct {
	Weights []float64 // per task, not necessarily normalised
	Seed    int64
}

// Rand is the generator of one meta step's draws: it depends only on the
// seed and the step's index (step x accumulate + micro-batch), so a
// resumed run draws the same tasks.
func (s Sampler) Rand(index int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(s.Seed)^0x6d657461, uint64(index)))
}

// Draw is n task indices, each drawn independently with probability
// proportional to its weight: one Float64 u per draw, and the first task
// whose cumulative share exceeds u.
func (s Sampler) Draw(n int, rng Rand) []int {
	var total float64
	for _, w := range s.Weights {
		total += w
	}
	out := make([]int, n)
	for i := range out {
		u := rng.Float64() * total
		k, cum := len(s.Weights)-1, 0.0
		for t, w := range s.Weights {
			cum += w
			if u < cum {
				k = t
				break
			}
		}
		for k > 0 && s.Weights[k] == 0 { // rounding at the top: never a zero-weight task
			k--
		}
		out[i] = k
	}
	return out
}
