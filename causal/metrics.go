package causal

import "math"

// Accuracy is NOTEARS' count_accuracy, as dag_utils.py computes it.
type Accuracy struct {
	FDR float64 `json:"fdr"` // (reversed + false positive) / predicted
	TPR float64 `json:"tpr"` // true positive / true edges
	FPR float64 `json:"fpr"` // (reversed + false positive) / true non-edges
	SHD int     `json:"shd"` // extra + missing skeleton edges + reversed
	NNZ int     `json:"nnz"` // predicted edges
}

// CountAccuracy compares an estimated graph with the truth. An estimate
// with cycles is projected to a DAG first (ProjectDAG), as the official
// code does.
func CountAccuracy(truth, est [][]bool, weights [][]float64) Accuracy {
	if _, ok := TopoOrder(est); !ok {
		est = ProjectDAG(est, weights)
	}
	p := len(truth)
	var a Accuracy
	var tp, fp, rev, cond int
	for i := range p {
		for j := range p {
			if truth[i][j] {
				cond++
			}
			if !est[i][j] {
				continue
			}
			a.NNZ++
			switch {
			case truth[i][j]:
				tp++
			case truth[j][i]:
				rev++
			default:
				fp++
			}
		}
	}
	// SHD on skeletons: pairs (i > j) with an edge either way in one graph only, plus reversals.
	for i := range p {
		for j := range i {
			e, t := est[i][j] || est[j][i], truth[i][j] || truth[j][i]
			if e != t {
				a.SHD++
			}
		}
	}
	a.SHD += rev
	condNeg := 0.5*float64(p*(p-1)) - float64(cond)
	a.FDR = float64(rev+fp) / math.Max(float64(a.NNZ), 1)
	a.TPR = float64(tp) / math.Max(float64(cond), 1)
	a.FPR = float64(rev+fp) / math.Max(condNeg, 1)
	return a
}

// ProjectDAG removes edges until b is acyclic: while a cycle remains, the
// weakest edge (smallest |weight|, weights nil meaning all equal) inside a
// strongly connected component goes. The official code projects with a
// NOTEARS augmented-Lagrangian fit (scipy L-BFGS-B); this greedy rule
// keeps the strongest edges and needs no optimiser. The continuous solver's
// estimates are acyclic by construction almost always, so it rarely runs.
func ProjectDAG(b [][]bool, weights [][]float64) [][]bool {
	p := len(b)
	out := newBool(p)
	for i := range b {
		copy(out[i], b[i])
	}
	for {
		if _, ok := TopoOrder(out); ok {
			return out
		}
		comp := sccs(out)
		bi, bj, best := -1, -1, math.Inf(1)
		for i := range p {
			for j := range p {
				if out[i][j] && comp[i] == comp[j] {
					w := 1.0
					if weights != nil {
						w = math.Abs(weights[i][j])
					}
					if w < best {
						bi, bj, best = i, j, w
					}
				}
			}
		}
		out[bi][bj] = false
	}
}

// sccs labels strongly connected components (Tarjan) so that nodes in a
// cycle share a label.
func sccs(b [][]bool) []int {
	p := len(b)
	index, low, comp := make([]int, p), make([]int, p), make([]int, p)
	for i := range index {
		index[i], comp[i] = -1, -1
	}
	var stack []int
	on := make([]bool, p)
	next, label := 0, 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		on[v] = true
		for w := range p {
			if !b[v][w] {
				continue
			}
			if index[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if on[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				on[w] = false
				comp[w] = label
				if w == v {
					break
				}
			}
			label++
		}
	}
	for v := range p {
		if index[v] < 0 {
			visit(v)
		}
	}
	return comp
}

// OrderSuccess is recovery_probability.success: after projection to a
// DAG, no estimated edge may run against the true order, and the estimate
// must keep at least minEdges edges (p/3 in the paper's figure), so that
// an empty graph does not count as recovering the order.
func OrderSuccess(est [][]bool, weights [][]float64, order []int, minEdges float64) bool {
	if _, ok := TopoOrder(est); !ok {
		est = ProjectDAG(est, weights)
	}
	rank := Rank(order)
	edges := 0
	for i := range est {
		for j := range est[i] {
			if est[i][j] {
				if rank[i] > rank[j] {
					return false
				}
				edges++
			}
		}
	}
	return float64(edges) >= minEdges
}

// SuccessThreshold is the edge threshold of the paper's order-recovery
// figure: 0.3 + 0.02 log2(n/10).
func SuccessThreshold(n int) float64 { return 0.3 + 0.02*math.Log2(float64(n)/10) }

// UnionOrder is a causal order read from estimated task graphs: a
// topological order of the union of their supports above threshold,
// projected to a DAG with the summed |weights|.
func UnionOrder(w [][][]float64, threshold float64) []int {
	p := len(w[0])
	sum := newFloat(p)
	for _, wk := range w {
		for i := range p {
			for j := range p {
				sum[i][j] += math.Abs(wk[i][j])
			}
		}
	}
	b := newBool(p)
	for _, wk := range w {
		for i := range p {
			for j := range p {
				b[i][j] = b[i][j] || math.Abs(wk[i][j]) > threshold
			}
		}
	}
	order, ok := TopoOrder(b)
	if !ok {
		order, _ = TopoOrder(ProjectDAG(b, sum))
	}
	return order
}
