// Package causal is "Multi-task Learning of Order-Consistent Causal
// Graphs" (Chen, Sun, Ellington, Xing, Song; NeurIPS 2021), following its
// official code xinshi-chen/MultiDAG: K linear Gaussian SEMs that share one
// causal order, estimated jointly with a group-lasso penalty across tasks
// (solver.go), an exact solver for small graphs (exact.go), the synthetic
// generator (this file), the paper's metrics (metrics.go) and the sweep
// behind its recovery heatmaps (sweep.go).
//
// Convention, as the official code: X = X W + E, so W[i][j] != 0 is an
// edge i -> j and column j holds node j's parents.
package causal

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// GenOptions are data_generator.random_G's parameters.
type GenOptions struct {
	P        int     `toml:"p"`  // variables
	S        int     `toml:"s"`  // edges in the union support
	S0       int     `toml:"s0"` // edges per task
	D        int     `toml:"d"`  // most nonzeros per row of a task's (unpermuted) graph: children per node
	K        int     `toml:"k"`  // tasks
	N        int     `toml:"n"`  // samples per task
	WLo, WHi float64 `toml:"-"`  // edge weights uniform on ±[WLo, WHi] (0.5, 2.0)
	// UnequalVariance gives the first that many tasks per-node noise
	// standard deviations uniform on [0.5, 2]: with unequal variances a
	// linear Gaussian SEM is not identifiable from its own data (only its
	// Markov equivalence class is), the setting in which the paper argues
	// joint estimation still recovers the shared order.
	UnequalVariance int `toml:"unequal_variance"`
}

// Validate checks the options can be satisfied.
func (o GenOptions) Validate() error {
	switch {
	case o.P < 2:
		return fmt.Errorf("p must be at least 2, got %d", o.P)
	case o.S < 1 || o.S > o.P*(o.P-1)/2:
		return fmt.Errorf("s = %d edges do not fit the %d slots of a %d-node lower triangle", o.S, o.P*(o.P-1)/2, o.P)
	case o.S0 < 1 || o.S0 > o.S:
		return fmt.Errorf("s0 = %d must be in [1, s = %d]", o.S0, o.S)
	case o.K < 1 || o.K*o.S0 < o.S:
		return fmt.Errorf("k = %d tasks of s0 = %d edges cannot cover s = %d", o.K, o.S0, o.S)
	case o.D < 1:
		return fmt.Errorf("d must be positive, got %d", o.D)
	case o.N < 1:
		return fmt.Errorf("n must be positive, got %d", o.N)
	case o.UnequalVariance < 0 || o.UnequalVariance > o.K:
		return fmt.Errorf("unequal_variance = %d must be in [0, k = %d]", o.UnequalVariance, o.K)
	}
	return nil
}

// Problem is one synthetic multi-task instance.
type Problem struct {
	W     [][][]float64 // [K][p][p] true weighted adjacency of each task
	Order []int         // the shared causal order, roots first: every edge goes from earlier to later
	X     [][][]float64 // [K][n][p] samples
	Noise [][]float64   // [K][p] noise standard deviations
}

// Generate draws a problem as data_generator.random_G and sampler do:
// a union support of S edges from the strict lower triangle; each task
// takes S0 of them with at most D per row, and together the tasks cover the
// union; one permutation shared by all tasks; each task's own weights
// uniform on ±[0.5, 2]; Gaussian noise, N(0, 1) unless UnequalVariance.
func Generate(o GenOptions, rng *rand.Rand) (*Problem, error) {
	if o.WLo == 0 && o.WHi == 0 {
		o.WLo, o.WHi = 0.5, 2.0
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	p := o.P
	var slots [][2]int // strict lower triangle (i > j): edge i -> j in the unpermuted graph
	for i := range p {
		for j := range i {
			slots = append(slots, [2]int{i, j})
		}
	}
	supp := make([][][]bool, o.K)
	for try := 0; ; try++ {
		if try > 10000 {
			return nil, fmt.Errorf("generator: no %d task graphs of %d edges with at most %d per row cover a %d-edge union; loosen s0 or d", o.K, o.S0, o.D, o.S)
		}
		perm := rng.Perm(len(slots))
		union := make([][2]int, o.S)
		for i := range union {
			union[i] = slots[perm[i]]
		}
		// The official loop keeps G[k] from a failed cover attempt and adds
		// the next attempt's edges on top (so a task can exceed s0 and leave
		// the union); here every attempt starts from empty graphs.
		ok := true
		for k := range o.K {
			var sub [][]bool
			for tk := 0; ; tk++ {
				if tk > 10000 {
					ok = false
					break
				}
				sub = newBool(p)
				rows := make([]int, p)
				fits := true
				for _, e := range rng.Perm(o.S)[:o.S0] {
					i, j := union[e][0], union[e][1]
					sub[i][j] = true
					rows[i]++
					fits = fits && rows[i] <= o.D
				}
				if fits {
					break
				}
			}
			if !ok {
				break
			}
			supp[k] = sub
		}
		if !ok {
			continue
		}
		covered := true
		for _, e := range union {
			c := false
			for k := range o.K {
				c = c || supp[k][e[0]][e[1]]
			}
			covered = covered && c
		}
		if covered {
			break
		}
	}
	// One permutation for all tasks: the unpermuted graph's node i becomes
	// node perm[i] (the official Perm^T G Perm). Unpermuted edges run from
	// higher to lower index, so the order is perm read backwards.
	perm := rng.Perm(p)
	pr := &Problem{}
	for r := p - 1; r >= 0; r-- {
		pr.Order = append(pr.Order, perm[r])
	}
	for k := range o.K {
		w := newFloat(p)
		for i := range p {
			for j := range p {
				if supp[k][i][j] {
					v := o.WLo + rng.Float64()*(o.WHi-o.WLo)
					if rng.Float64() < 0.5 {
						v = -v
					}
					w[perm[i]][perm[j]] = v
				}
			}
		}
		pr.W = append(pr.W, w)
		noise := make([]float64, p)
		for j := range noise {
			noise[j] = 1
			if k < o.UnequalVariance {
				noise[j] = 0.5 + 1.5*rng.Float64()
			}
		}
		pr.Noise = append(pr.Noise, noise)
		pr.X = append(pr.X, Sample(w, noise, o.N, rng))
	}
	return pr, nil
}

// Sample draws n samples of x_j = sum_i W[i][j] x_i + noise_j, visiting
// the nodes in a topological order of W.
func Sample(w [][]float64, noise []float64, n int, rng *rand.Rand) [][]float64 {
	p := len(w)
	order, ok := TopoOrder(Binary(w, 0))
	if !ok {
		panic("causal.Sample: the graph has a cycle")
	}
	x := make([][]float64, n)
	for s := range x {
		x[s] = make([]float64, p)
		for _, j := range order {
			v := noise[j] * rng.NormFloat64()
			for i := range p {
				if w[i][j] != 0 {
					v += w[i][j] * x[s][i]
				}
			}
			x[s][j] = v
		}
	}
	return x
}

// Rank inverts a permutation: Rank(perm)[node] is its position.
func Rank(perm []int) []int {
	r := make([]int, len(perm))
	for i, v := range perm {
		r[v] = i
	}
	return r
}

func newBool(p int) [][]bool {
	m := make([][]bool, p)
	for i := range m {
		m[i] = make([]bool, p)
	}
	return m
}

func newFloat(p int) [][]float64 {
	m := make([][]float64, p)
	for i := range m {
		m[i] = make([]float64, p)
	}
	return m
}

// Binary is the support of w thresholded as the official code does: an
// edge wherever |w| >= threshold (its G_est[G_est < threshold] = 0), and w
// is not 0, so that threshold 0 gives the nonzero pattern of a true graph.
func Binary(w [][]float64, threshold float64) [][]bool {
	b := newBool(len(w))
	for i := range w {
		for j := range w[i] {
			b[i][j] = isEdge(w[i][j], threshold)
		}
	}
	return b
}

// isEdge is the one thresholding rule (Binary, UnionOrder, the fit's
// adjacency files): nonzero and |v| >= threshold, as the official
// scripts keep weights at the threshold.
func isEdge(v, threshold float64) bool { return v != 0 && math.Abs(v) >= threshold }

// TopoOrder is a topological order of b (Kahn's algorithm, smallest index
// first among ties) and whether b is acyclic.
func TopoOrder(b [][]bool) ([]int, bool) {
	p := len(b)
	indeg := make([]int, p)
	for i := range p {
		for j := range p {
			if b[i][j] {
				indeg[j]++
			}
		}
	}
	var ready, order []int
	for j := range p {
		if indeg[j] == 0 {
			ready = append(ready, j)
		}
	}
	for len(ready) > 0 {
		sort.Ints(ready)
		i := ready[0]
		ready = ready[1:]
		order = append(order, i)
		for j := range p {
			if b[i][j] {
				if indeg[j]--; indeg[j] == 0 {
					ready = append(ready, j)
				}
			}
		}
	}
	return order, len(order) == p
}
