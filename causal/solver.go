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
	Rho          float64 `toml:"rho"`           // group-lasso weight (1), its start under rho_mode "official"; the loss scales it by 1/K/(n/10)
	RhoMode      string  `toml:"rho_mode"`      // "fixed" (default): rho stays at Rho; "official": AdaptRho at every dual step, which needs Truth
	Lambda       float64 `toml:"lambda"`        // initial Lagrange multiplier of h(T) (1)
	C            float64 `toml:"c"`             // initial quadratic penalty of h(T) (1)
	Eta          float64 `toml:"eta"`           // c grows by (1+eta) at each dual step (0.125)
	Mu           float64 `toml:"mu"`            // weight of mean|T - 1| (1)
	Gamma        float64 `toml:"gamma"`         // proximal step (1e-5)
	DualInterval int     `toml:"dual_interval"` // iterations between dual steps (50)
	DualStart    int     `toml:"dual_start"`    // no dual step before this iteration (2000)
	Threshold    float64 `toml:"threshold"`     // |W| at or above this is an edge (0.3)
	Seed         int64   `toml:"-"`             // initialisation: the config's trainer.seed
	// Truth holds the fitted tasks' true weighted graphs [K][p][p] (edge
	// i -> j at [i][j]), which rho_mode "official" compares the fit with.
	// Only generated data has them: the sweep sets it, a fit of CSVs cannot.
	Truth [][][]float64 `toml:"-"`
	// Progress, if set, is called every ProgressEvery iterations and at the end.
	Progress      func(iter int, se, h float64) `toml:"-"`
	ProgressEvery int                           `toml:"-"`
}

// DefaultSolver is the official configuration.
func DefaultSolver() SolverOptions {
	return SolverOptions{Iters: 20000, LR: 1e-3, Rho: 1, RhoMode: RhoFixed, Lambda: 1, C: 1, Eta: 0.125, Mu: 1, Gamma: 1e-5,
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
	case o.RhoMode != "" && o.RhoMode != RhoFixed && o.RhoMode != RhoOfficial:
		return fmt.Errorf("rho_mode must be %q or %q, got %q", RhoFixed, RhoOfficial, o.RhoMode)
	}
	return nil
}

// The values of SolverOptions.RhoMode ("" means RhoFixed).
const (
	RhoFixed    = "fixed"
	RhoOfficial = "official"
)

// AdaptRho is the official trainer's rho rule (xinshi-chen/MultiDAG at
// 0b041ea, multidag/trainer.py:109-113, inside the dual step of lines
// 105-115, so every dual_interval iterations after dual_start, not every
// iteration). se and gn are this iteration's squared error and group norm
// ||G∘T||_{2,1} (the 'SE' and 'l1/l2' of trainer.py:146,151-152), trueSE
// and trueGN the true graphs' on the same data (real_se and real_gn,
// experiments/main_linear.py:112-115; TrueScores):
//
//	if se/trueSE > gn/trueGN + 0.05: rho *= 0.98   (error too large for the norm: penalise less)
//	elif se/trueSE < gn/trueGN - 0.05: rho *= 1.02 (error too small: penalise more)
//
// and rho is unchanged within the 0.05 band. The official trainer turns
// the rule off for the SERGIO data (trainer.py:45).
func AdaptRho(rho, se, gn, trueSE, trueGN float64) float64 {
	switch {
	case se/trueSE > gn/trueGN+0.05:
		return rho * 0.98
	case se/trueSE < gn/trueGN-0.05:
		return rho * 1.02
	}
	return rho
}

// TrueScores are the squared error and group norm of the true graphs w
// ([K][p][p]) on the samples x ([K][n][p]), as main_linear.py:114-115
// computes them: se is the mean over tasks of each task's mean over its
// samples of ||x - x W_k||² (with equal counts, the official mean over
// tasks and samples), gn = sum_ij sqrt(sum_k W_kij²).
func TrueScores(x, w [][][]float64) (se, gn float64, err error) {
	if len(w) != len(x) {
		return 0, 0, fmt.Errorf("causal: %d true graphs for %d tasks", len(w), len(x))
	}
	for t, xt := range x {
		p := len(w[t])
		for _, r := range w[t] {
			if len(r) != p {
				return 0, 0, fmt.Errorf("causal: true graph %d is not square", t)
			}
		}
		task := 0.0
		for _, row := range xt {
			if len(row) != p {
				return 0, 0, fmt.Errorf("causal: true graph %d is %dx%d, the task has %d variables", t, p, p, len(row))
			}
			for j := range p {
				r := row[j]
				for i := range p {
					r -= row[i] * w[t][i][j]
				}
				task += r * r
			}
		}
		se += task / float64(len(xt)) / float64(len(x))
	}
	p := len(w[0])
	for i := range p {
		for j := range p {
			s := 0.0
			for t := range w {
				s += w[t][i][j] * w[t][i][j]
			}
			gn += math.Sqrt(s)
		}
	}
	return se, gn, nil
}

// Estimate is a fitted joint model.
type Estimate struct {
	W     [][][]float64 // [K][p][p] task graphs G_k ∘ T
	T     [][]float64   // the shared [p][p] T
	Order []int         // a causal order read from the thresholded graphs (UnionOrder)
	SE    float64       // final squared-error term
	H     float64       // final h(T)
	Rho   float64       // final rho (SolverOptions.Rho unless rho_mode is "official")
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
// lambda += c min(h, 1e3), c *= 1 + eta. By default rho stays fixed; with
// rho_mode "official" the dual step also applies AdaptRho, the official
// trainer's rule, which compares the fit with o.Truth, the true graphs: a
// user's data has none, so Fit refuses that mode without them. The
// official script initialises T from the true order only when lambda and
// c exceed 1 (not its defaults); that is not done here. K = 1 is separate
// estimation.
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
	var trueSE, trueGN float64
	if o.RhoMode == RhoOfficial {
		if o.Truth == nil {
			return nil, fmt.Errorf("causal: rho_mode %q adapts rho from the true graphs' squared error and group norm, and these tasks have no true graphs (only the sweep's generated data has them): use rho_mode %q", RhoOfficial, RhoFixed)
		}
		if trueSE, trueGN, err = TrueScores(x, o.Truth); err != nil {
			return nil, err
		}
		if !(trueSE > 0 && trueGN > 0) || math.IsInf(trueSE, 0) || math.IsInf(trueGN, 0) {
			return nil, fmt.Errorf("causal: rho_mode %q needs a positive, finite true squared error and group norm, got %v and %v", RhoOfficial, trueSE, trueGN)
		}
	}
	var est *Estimate
	err = torchmods.Try(func() { est = fit(x, k, n, p, o, trueSE, trueGN, dev) })
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

func fit(x [][][]float64, k, n, p int, o SolverOptions, trueSE, trueGN float64, dev gotch.Device) *Estimate {
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
	rho := o.Rho
	rhoScale := rho / float64(k) / (meanN / 10)
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
			if o.RhoMode == RhoOfficial {
				rho = AdaptRho(rho, lastSE, group.Float64Values()[0], trueSE, trueGN)
				rhoScale = rho / float64(k) / (meanN / 10)
			}
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
	est := &Estimate{SE: lastSE, H: lastH, Rho: rho, T: newFloat(p)}
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
