package causal

import (
	"fmt"
	"math"
)

// ExactResult is the exact solver's answer.
type ExactResult struct {
	Order     []int         // an optimal causal order
	W         [][][]float64 // [K][p][p] the group-lasso fit for that order
	Objective float64       // the minimised objective
}

// Objective is the score both solvers minimise, without the continuous
// solver's acyclicity terms (the official loss multiplied by K):
//
//	sum_k (1/n) ||X_k - X_k W_k||_F² + (10 rho / n) sum_{i,j} ||(W_1ij, ..., W_Kij)||_2
func Objective(x [][][]float64, w [][][]float64, rho float64) float64 {
	k, n, p := len(x), len(x[0]), len(x[0][0])
	var obj float64
	for t := range k {
		for s := range n {
			for j := range p {
				r := x[t][s][j]
				for i := range p {
					r -= x[t][s][i] * w[t][i][j]
				}
				obj += r * r / float64(n)
			}
		}
	}
	lam := 10 * rho / float64(n)
	for i := range p {
		for j := range p {
			var g float64
			for t := range k {
				g += w[t][i][j] * w[t][i][j]
			}
			obj += lam * math.Sqrt(g)
		}
	}
	return obj
}

// MaxExactP is the largest graph ExactFit takes: it solves p·2^(p-1)
// group-lasso problems.
const MaxExactP = 10

// ExactFit minimises Objective over every DAG exactly, for small p. For a
// fixed order the problem splits into one group lasso per node over the
// nodes before it; the best order is found by dynamic programming over
// node subsets (the best order of a set ends with some node whose parents
// may be the rest), which visits every order implicitly. It checks the
// continuous solver and the paper's statistical claim without the
// relaxation. It uses no tensors and shares no state, so goroutines may
// call it at the same time.
func ExactFit(x [][][]float64, rho float64) (*ExactResult, error) {
	k, n, p, err := dims(x)
	if err != nil {
		return nil, err
	}
	for t := range x {
		if len(x[t]) != n {
			return nil, fmt.Errorf("causal: the exact solver needs equal sample counts; task %d has %d, the largest %d", t, len(x[t]), n)
		}
	}
	if p > MaxExactP {
		return nil, fmt.Errorf("causal: the exact solver takes p <= %d, got %d", MaxExactP, p)
	}
	lam := 10 * rho / float64(n)
	type sol struct {
		obj float64
		w   [][]float64 // [K][p] coefficients of the parents
	}
	memo := make(map[[2]int]sol)
	node := func(j, mask int) sol {
		key := [2]int{j, mask}
		if s, ok := memo[key]; ok {
			return s
		}
		var parents []int
		for i := range p {
			if mask&(1<<i) != 0 {
				parents = append(parents, i)
			}
		}
		w, obj := groupLasso(x, j, parents, lam)
		full := make([][]float64, k)
		for t := range k {
			full[t] = make([]float64, p)
			for a, i := range parents {
				full[t][i] = w[t][a]
			}
		}
		s := sol{obj, full}
		memo[key] = s
		return s
	}
	best := make([]float64, 1<<p)
	last := make([]int, 1<<p)
	for set := 1; set < 1<<p; set++ {
		best[set] = math.Inf(1)
		for j := range p {
			if set&(1<<j) == 0 {
				continue
			}
			rest := set &^ (1 << j)
			if v := best[rest] + node(j, rest).obj; v < best[set] {
				best[set], last[set] = v, j
			}
		}
	}
	res := &ExactResult{Objective: best[1<<p-1]}
	order := make([]int, p)
	for set, pos := 1<<p-1, p-1; set != 0; pos-- {
		j := last[set]
		order[pos] = j
		set &^= 1 << j
	}
	res.Order = order
	for range k {
		res.W = append(res.W, newFloat(p))
	}
	mask := 0
	for _, j := range order {
		s := node(j, mask)
		for t := range k {
			for i := range p {
				res.W[t][i][j] = s.w[t][i]
			}
		}
		mask |= 1 << j
	}
	return res, nil
}

// groupLasso minimises sum_k (1/n)||x_j - X_A w_k||² + lam sum_i ||w_{·i}||
// over the parents A by FISTA with the group soft-threshold, and returns
// the coefficients [K][|A|] and the objective.
func groupLasso(x [][][]float64, j int, parents []int, lam float64) ([][]float64, float64) {
	k, n := len(x), len(x[0])
	m := len(parents)
	w := make([][]float64, k)
	for t := range w {
		w[t] = make([]float64, m)
	}
	loss := func(w [][]float64) float64 {
		var l float64
		for t := range k {
			for s := range n {
				r := x[t][s][j]
				for a, i := range parents {
					r -= x[t][s][i] * w[t][a]
				}
				l += r * r / float64(n)
			}
		}
		for a := range m {
			var g float64
			for t := range k {
				g += w[t][a] * w[t][a]
			}
			l += lam * math.Sqrt(g)
		}
		return l
	}
	if m == 0 {
		return w, loss(w)
	}
	// Gram matrices (2/n) X_Aᵀ X_A and (2/n) X_Aᵀ x_j per task.
	gram := make([][][]float64, k)
	xy := make([][]float64, k)
	var lip float64
	for t := range k {
		gram[t] = make([][]float64, m)
		xy[t] = make([]float64, m)
		for a, ia := range parents {
			gram[t][a] = make([]float64, m)
			for b, ib := range parents {
				var v float64
				for s := range n {
					v += x[t][s][ia] * x[t][s][ib]
				}
				gram[t][a][b] = 2 * v / float64(n)
			}
			var v float64
			for s := range n {
				v += x[t][s][ia] * x[t][s][j]
			}
			xy[t][a] = 2 * v / float64(n)
		}
		lip = math.Max(lip, maxEigen(gram[t]))
	}
	if lip == 0 {
		return w, loss(w)
	}
	step := 1 / lip
	y := clone2(w)
	prev := clone2(w)
	tk := 1.0
	grad := make([]float64, m)
	for iter := 0; iter < 20000; iter++ {
		for t := range k {
			for a := range m {
				g := -xy[t][a]
				for b := range m {
					g += gram[t][a][b] * y[t][b]
				}
				grad[a] = g
			}
			for a := range m {
				w[t][a] = y[t][a] - step*grad[a]
			}
		}
		for a := range m { // group soft-threshold across tasks
			var g float64
			for t := range k {
				g += w[t][a] * w[t][a]
			}
			g = math.Sqrt(g)
			f := 0.0
			if g > step*lam {
				f = 1 - step*lam/g
			}
			for t := range k {
				w[t][a] *= f
			}
		}
		tn := (1 + math.Sqrt(1+4*tk*tk)) / 2
		var diff float64
		for t := range k {
			for a := range m {
				d := w[t][a] - prev[t][a]
				diff = math.Max(diff, math.Abs(d))
				y[t][a] = w[t][a] + (tk-1)/tn*d
				prev[t][a] = w[t][a]
			}
		}
		tk = tn
		if diff < 1e-12 {
			break
		}
	}
	return w, loss(w)
}

// maxEigen is the largest eigenvalue of a symmetric positive semi-definite
// matrix, by power iteration (padded by 1e-9 relative, so the step stays safe).
func maxEigen(a [][]float64) float64 {
	m := len(a)
	v := make([]float64, m)
	for i := range v { // a fixed start no eigenvector of a Gram matrix is orthogonal to, generically
		v[i] = 1 + 0.37*float64(i%5) - 0.11*float64(i%3)
	}
	var lam float64
	for range 500 {
		u := make([]float64, m)
		for i := range m {
			for j := range m {
				u[i] += a[i][j] * v[j]
			}
		}
		var norm float64
		for _, x := range u {
			norm += x * x
		}
		norm = math.Sqrt(norm)
		if norm == 0 {
			return 0
		}
		for i := range u {
			u[i] /= norm
		}
		if math.Abs(norm-lam) < 1e-12*norm {
			lam = norm
			break
		}
		lam, v = norm, u
	}
	return lam * (1 + 1e-9)
}

func clone2(a [][]float64) [][]float64 {
	out := make([][]float64, len(a))
	for i := range a {
		out[i] = append([]float64(nil), a[i]...)
	}
	return out
}
