package causal

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// SolverOptions are the continuous solver's hyperparameters, with the
// defaults of the official cmd_args.py.
type SolverOptions struct {
	Iters        int     `toml:"-"`             // full-batch iterations: the config's trainer.max_steps (20000; run_multidag.sh uses 6000 for p = 32)
	LR           float64 `toml:"lr"`            // Adam's learning rate (1e-3)
	Rho          float64 `toml:"rho"`           // group-lasso weight, fixed (1); the loss scales it by 1/K/(n/10)
	Lambda       float64 `toml:"lambda"`        // initial Lagrange multiplier of h(T) (1)
	C            float64 `toml:"c"`             // initial quadratic penalty of h(T) (1)
	Eta          float64 `toml:"eta"`           // c grows by (1+eta) at each dual step (0.125)
	Mu           float64 `toml:"mu"`            // weight of mean|T - 1| (1)
	Gamma        float64 `toml:"gamma"`         // proximal step (1e-5)
	DualInterval int     `toml:"dual_interval"` // iterations between dual steps (50)
	DualStart    int     `toml:"dual_start"`    // no dual step before this iteration (2000)
	Threshold    float64 `toml:"threshold"`     // |W| above this is an edge (0.3)
	Seed         int64   `toml:"-"`             // initialisation: the config's trainer.seed
	// Progress, if set, is called every ProgressEvery iterations and at the end.
	Progress      func(iter int, se, h float64) `toml:"-"`
	ProgressEvery int                           `toml:"-"`
}

// DefaultSolver is the official configuration.
func DefaultSolver() SolverOptions {
	return SolverOptions{Iters: 20000, LR: 1e-3, Rho: 1, Lambda: 1, C: 1, Eta: 0.125, Mu: 1, Gamma: 1e-5,
		DualInterval: 50, DualStart: 2000, Threshold: 0.3}
}

// Validate checks the ranges.
func (o SolverOptions) Validate() error {
	switch {
	case o.Iters < 1:
		return fmt.Errorf("iters must be positive, got %d", o.Iters)
	case o.LR <= 0:
		return fmt.Errorf("lr must be positive, got %v", o.LR)
	case o.Rho < 0 || o.Lambda < 0 || o.C < 0 || o.Eta < 0 || o.Mu < 0 || o.Gamma < 0:
		return fmt.Errorf("rho, lambda, c, eta, mu and gamma must not be negative")
	case o.DualInterval < 1:
		return fmt.Errorf("dual_interval must be positive, got %d", o.DualInterval)
	case o.Threshold < 0:
		return fmt.Errorf("threshold must not be negative, got %v", o.Threshold)
	}
	return nil
}

// Estimate is a fitted joint model.
type Estimate struct {
	W     [][][]float64 // [K][p][p] task graphs G_k ∘ T
	T     [][]float64   // the shared [p][p] T
	Order []int         // a causal order read from the thresholded graphs (UnionOrder)
	SE    float64       // final squared-error term
	H     float64       // final h(T)
}

// H is NOTEARS' acyclicity function h(A) = tr(exp(A∘A)) - p over the last
// two dimensions of a [..., p, p] tensor (libtorch's matrix_exp, so
// autograd gives the gradient exp(A∘A)ᵀ ∘ 2A).
func H(a *ts.Tensor) *ts.Tensor {
	s := a.MustSize()
	p := s[len(s)-1]
	e := a.MustMul(a, false).MustMatrixExp(true)
	return e.MustDiagonal(0, -2, -1, true).MustSumDimIntlist([]int64{-1}, false, a.DType(), true).MustSubScalar(ts.FloatScalar(float64(p)), true)
}

// Prox is G_DAG.proximal_update: with the group norms N_ij = ||G_{·ij}||
// over tasks, G <- G * max(N - gamma|T|, 0) / N and
// T <- sign(T) * max(|T| - gamma N, 0). It returns the new G and T.
func Prox(g, t *ts.Tensor, gamma float64) (*ts.Tensor, *ts.Tensor) {
	n := g.MustNormScalaroptDim(ts.FloatScalar(2), []int64{0}, true, false).MustAddScalar(ts.FloatScalar(1e-20), true)
	shrink := n.MustSub(t.MustAbs(false).MustMulScalar(ts.FloatScalar(gamma), true), false).MustClampMin(ts.FloatScalar(0), true)
	g2 := g.MustMul(shrink, false).MustDiv(n, true)
	t2 := t.MustSign(false).MustMul(t.MustAbs(false).MustSub(n.MustMulScalar(ts.FloatScalar(gamma), false), true).MustClampMin(ts.FloatScalar(0), true), true)
	return g2, t2
}

// Fit estimates K order-consistent graphs from X ([K][n][p], one sample
// matrix per task) as the official trainer does: W_k = G_k ∘ T with a
// zero diagonal, glorot-initialised G [K,p,p] and T [1,p,p]; the loss
//
//	SE + lambda h(T) + c/2 h(T)² + mu mean|T - 1| + rho ||G∘T||_{2,1} / K / (n/10)
//
// with SE the mean over tasks and samples of the summed squared residuals;
// a full-batch Adam step and a proximal step per iteration; and every
// dual_interval iterations after dual_start: gamma and lr times 0.99,
// lambda += c min(h, 1e3), c *= 1 + eta. rho stays fixed: the official
// script adapts it from the true graphs' error and norm, which a user does
// not have, and initialises T from the true order when lambda and c exceed
// 1; neither is done here. K = 1 is separate estimation.
//
// Each iteration runs in its own scope; a panic inside one (a libtorch
// error, or an error panic from Progress) becomes Fit's error, while a
// runtime error panics on (see torchmods' package doc). Goroutines may call
// Fit at the same time: each fit has its own model, optimizer and scopes.
func Fit(x [][][]float64, o SolverOptions, dev gotch.Device) (*Estimate, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	k, n, p, err := dims(x)
	if err != nil {
		return nil, err
	}
	var est *Estimate
	err = torchmods.Try(func() { est = fit(x, k, n, p, o, dev) })
	return est, err
}

// dims checks the tasks share their variables and returns K, the largest
// n and p.
func dims(x [][][]float64) (k, n, p int, err error) {
	if len(x) == 0 || len(x[0]) == 0 || len(x[0][0]) < 2 {
		return 0, 0, 0, fmt.Errorf("causal: need at least one task with samples of at least 2 variables")
	}
	k, p = len(x), len(x[0][0])
	for t := range x {
		if len(x[t]) == 0 {
			return 0, 0, 0, fmt.Errorf("causal: task %d has no samples", t)
		}
		n = max(n, len(x[t]))
		for s := range x[t] {
			if len(x[t][s]) != p {
				return 0, 0, 0, fmt.Errorf("causal: task %d sample %d has %d variables, want %d", t, s, len(x[t][s]), p)
			}
		}
	}
	return k, n, p, nil
}

func glorot(shape []int64, fanIn, fanOut int64, rng *rand.Rand) []float64 {
	lim := math.Sqrt(6 / float64(fanIn+fanOut))
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = (2*rng.Float64() - 1) * lim
	}
	return v
}

func fit(x [][][]float64, k, n, p int, o SolverOptions, dev gotch.Device) *Estimate {
	scope := ts.NewScope()
	defer scope.Close()
	K, N, P := int64(k), int64(n), int64(p)
	// Tasks with fewer samples are padded with zero rows, whose residuals
	// are zero; each task's squared error is divided by its own count, so
	// with equal counts this is the official mean over tasks and samples.
	flat := make([]float64, 0, k*n*p)
	counts := make([]float64, k)
	meanN := 0.0
	for t, xt := range x {
		for _, row := range xt {
			flat = append(flat, row...)
		}
		flat = append(flat, make([]float64, (n-len(xt))*p)...)
		counts[t] = float64(len(xt))
		meanN += counts[t] / float64(k)
	}
	X := ts.MustOfSlice(flat).MustView([]int64{K, N, P}, true).MustTo(dev, true)
	perTask := ts.MustOfSlice(counts).MustTo(dev, true)
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0xda6))
	store := torchmods.NewStore(dev)
	defer store.Drop()
	mk := func(name string, shape []int64, fanIn, fanOut int64) *ts.Tensor {
		return store.Root().New(name, shape, func(s []int64, d gotch.Device) *ts.Tensor {
			return ts.MustOfSlice(glorot(s, fanIn, fanOut, rng)).MustView(s, true).MustTo(d, true)
		}, true)
	}
	// glorot_uniform on 3-D tensors uses fan_in = dims[1]*dims[2], fan_out = dims[0]*dims[2].
	G0 := mk("G", []int64{K, P, P}, P*P, K*P)
	T := mk("T", []int64{1, P, P}, P*P, P)
	offDiag := ts.MustEye(P, gotch.Double, dev).MustRsubScalar(ts.FloatScalar(1), true).MustUnsqueeze(0, true)
	ts.Persist(offDiag)
	defer offDiag.MustDrop()
	opt := train.NewAdamW(store, 0.9, 0.999, 1e-8, 0)
	lr, gamma, lambda, c := o.LR, o.Gamma, o.Lambda, o.C
	rhoScale := o.Rho / float64(k) / (meanN / 10)
	var lastSE, lastH float64
	step := func(it int) {
		s := ts.NewScope()
		defer s.Close()
		G := G0.MustMul(offDiag, false)
		W := G.MustMul(T, false)
		resid := X.MustSub(X.MustMatmul(W, false), false)
		se := resid.MustMul(resid, true).MustSumDimIntlist([]int64{1, 2}, false, gotch.Double, true).MustDiv(perTask, true).MustMean(gotch.Double, true)
		h := H(T).MustSum(gotch.Double, true)
		one := T.MustSubScalar(ts.FloatScalar(1), false).MustAbs(true).MustMean(gotch.Double, true)
		group := W.MustNormScalaroptDim(ts.FloatScalar(2), []int64{0}, false, false).MustSum(gotch.Double, true)
		hv := h.Float64Values()[0]
		loss := se.MustAdd(h.MustMulScalar(ts.FloatScalar(lambda), false), false).
			MustAdd(h.MustMul(h, false).MustMulScalar(ts.FloatScalar(c/2), true), true).
			MustAdd(one.MustMulScalar(ts.FloatScalar(o.Mu), false), true).
			MustAdd(group.MustMulScalar(ts.FloatScalar(rhoScale), false), true)
		if err := loss.Backward(); err != nil {
			panic(err)
		}
		if err := opt.Step(lr); err != nil {
			panic(err)
		}
		ts.NoGrad(func() {
			g2, t2 := Prox(G0.MustMul(offDiag, false), T, gamma)
			G0.Copy_(g2)
			T.Copy_(t2)
		})
		lastSE, lastH = se.Float64Values()[0], hv
		if math.IsNaN(lastSE) || math.IsInf(lastSE, 0) || math.IsNaN(hv) || math.IsInf(hv, 0) {
			// Never a result from a diverged objective: the estimate
			// would be garbage printed as if it were one.
			panic(fmt.Errorf("iteration %d: the objective is not finite (squared error %v, h(T) %v); the data's scale is too large or the solver diverged: standardise the columns or lower solver.lr", it+1, lastSE, hv))
		}
		if o.Progress != nil && ((o.ProgressEvery > 0 && (it+1)%o.ProgressEvery == 0) || it == o.Iters-1) {
			o.Progress(it+1, lastSE, lastH)
		}
		if it > o.DualStart && (it+1)%o.DualInterval == 0 {
			gamma *= 0.99
			lr *= 0.99
			lambda = math.Min(lambda+c*math.Min(hv, 1e3), 1e12)
			c = math.Min(c*(1+o.Eta), 1e15)
		}
	}
	for it := range o.Iters {
		step(it)
	}
	var Wv, Tv []float64
	ts.NoGrad(func() {
		Wv = G0.MustMul(offDiag, false).MustMul(T, true).Float64Values()
		Tv = T.Float64Values()
	})
	est := &Estimate{SE: lastSE, H: lastH, T: newFloat(p)}
	for t := range k {
		w := newFloat(p)
		for i := range p {
			copy(w[i], Wv[(t*p+i)*p:(t*p+i+1)*p])
		}
		est.W = append(est.W, w)
	}
	for i := range p {
		copy(est.T[i], Tv[i*p:(i+1)*p])
	}
	est.Order = UnionOrder(est.W, o.Threshold)
	return est
}
