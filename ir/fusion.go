package ir

import (
	"fmt"
	"math"
	"slices"
)

// Normalization rescales one query's scores from one run before fusion, so
// that runs on different scales (BM25's unbounded sums, a bi-encoder's dot
// products) can be added.
type Normalization int

const (
	// NoNormalization adds raw scores, as Pyserini's HybridSearcher does by
	// default.
	NoNormalization Normalization = iota
	// MinMax maps a query's scores to [0, 1]: (s - min) / (max - min).
	MinMax
	// ZScore maps a query's scores to (s - mean) / std, with the population
	// standard deviation.
	ZScore
)

func (n Normalization) String() string {
	switch n {
	case NoNormalization:
		return "none"
	case MinMax:
		return "minmax"
	case ZScore:
		return "zscore"
	}
	return fmt.Sprintf("Normalization(%d)", int(n))
}

// ParseNormalization reads "none", "minmax" or "zscore".
func ParseNormalization(s string) (Normalization, error) {
	for _, n := range []Normalization{NoNormalization, MinMax, ZScore} {
		if n.String() == s {
			return n, nil
		}
	}
	return 0, fmt.Errorf("ir: unknown normalization %q (want none, minmax or zscore)", s)
}

// Normalize returns a copy of one query's results with scores normalised.
// A list whose scores are all equal (a single result, say) carries no scale:
// MinMax gives each result 1 and ZScore gives 0.
func Normalize(results []Result, n Normalization) []Result {
	out := slices.Clone(results)
	if len(out) == 0 || n == NoNormalization {
		return out
	}
	lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
	for _, r := range out {
		lo, hi, sum = min(lo, r.Score), max(hi, r.Score), sum+r.Score
	}
	switch n {
	case MinMax:
		for i := range out {
			if hi > lo {
				out[i].Score = (out[i].Score - lo) / (hi - lo)
			} else {
				out[i].Score = 1
			}
		}
	case ZScore:
		mean := sum / float64(len(out))
		ss := 0.0
		for _, r := range out {
			ss += (r.Score - mean) * (r.Score - mean)
		}
		std := math.Sqrt(ss / float64(len(out)))
		for i := range out {
			if std > 0 {
				out[i].Score = (out[i].Score - mean) / std
			} else {
				out[i].Score = 0
			}
		}
	}
	return out
}

// topN returns a copy of results in trec_eval's order, cut to depth (<= 0:
// all).
func topN(results []Result, depth int) []Result {
	rs := slices.Clone(results)
	SortTREC(rs)
	if depth > 0 && len(rs) > depth {
		rs = rs[:depth]
	}
	return rs
}

// Top returns a copy of the run with each query's results in trec_eval's
// order, cut to the best k (k <= 0: all).
func (r Run) Top(k int) Run {
	out := make(Run, len(r))
	for q, rs := range r {
		out[q] = topN(rs, k)
	}
	return out
}

func queryUnion(runs []Run) []string {
	set := map[string]struct{}{}
	for _, r := range runs {
		for q, rs := range r {
			if len(rs) > 0 {
				set[q] = struct{}{}
			}
		}
	}
	return mapKeys(set)
}

func checkDuplicates(run int, qid string, rs []Result) error {
	seen := make(map[string]struct{}, len(rs))
	for _, r := range rs {
		if _, dup := seen[r.DocID]; dup {
			return fmt.Errorf("ir: run %d, query %q: document %q appears twice", run, qid, r.DocID)
		}
		if math.IsNaN(r.Score) || math.IsInf(r.Score, 0) {
			return fmt.Errorf("ir: run %d, query %q: document %q has score %v", run, qid, r.DocID, r.Score)
		}
		seen[r.DocID] = struct{}{}
	}
	return nil
}

// Interpolate fuses runs by a weighted sum of normalised scores, per query:
//
//	fused(d) = sum over runs r of weights[r] * s_r(d)
//
// where s_r(d) is d's score in run r after norm, computed over r's top depth
// results for the query (depth <= 0: all of them). A document that run r did
// not retrieve (within depth) gets the lowest normalised score r gave any
// document for that query, the choice of Pyserini's HybridSearcher (which
// uses the minimum raw score), so that being missing is never better than
// being last; for MinMax that value is 0, also when all of r's scores are
// equal. A run without results for the query adds nothing. Every document
// any run retrieved is in the output, sorted in trec_eval's order.
//
// With two runs, weights {alpha, 1} and NoNormalization this is Pyserini's
// hybrid fusion (alpha * sparse + dense); weights {alpha, 1 - alpha} with
// MinMax is the usual convex combination.
func Interpolate(runs []Run, weights []float64, norm Normalization, depth int) (Run, error) {
	if len(runs) == 0 || len(runs) != len(weights) {
		return nil, fmt.Errorf("ir: %d runs and %d weights", len(runs), len(weights))
	}
	for _, w := range weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("ir: fusion weight %v is not finite", w)
		}
	}
	if norm < NoNormalization || norm > ZScore {
		return nil, fmt.Errorf("ir: unknown normalization %d", int(norm))
	}
	out := Run{}
	for _, q := range queryUnion(runs) {
		fused := map[string]float64{}
		type runScores struct {
			scores  map[string]float64
			missing float64
		}
		per := make([]runScores, len(runs))
		for i, r := range runs {
			if err := checkDuplicates(i, q, r[q]); err != nil {
				return nil, err
			}
			rs := Normalize(topN(r[q], depth), norm)
			if len(rs) == 0 {
				continue
			}
			m := make(map[string]float64, len(rs))
			low := math.Inf(1)
			for _, x := range rs {
				m[x.DocID] = x.Score
				low = min(low, x.Score)
				fused[x.DocID] = 0
			}
			if norm == MinMax {
				low = 0
			}
			per[i] = runScores{m, low}
		}
		for d := range fused {
			s := 0.0
			for i, p := range per {
				if p.scores == nil {
					continue
				}
				v, ok := p.scores[d]
				if !ok {
					v = p.missing
				}
				s += weights[i] * v
			}
			fused[d] = s
		}
		rs := make([]Result, 0, len(fused))
		for d, s := range fused {
			rs = append(rs, Result{d, s})
		}
		SortTREC(rs)
		out[q] = rs
	}
	return out, nil
}

// DefaultRRFK is the k of reciprocal rank fusion, 60 as in Cormack, Clarke
// and Büttcher (SIGIR 2009) and Pyserini's fusion.
const DefaultRRFK = 60

// RRF fuses runs by reciprocal rank fusion (Cormack et al., 2009):
//
//	rrf(d) = sum over runs r that retrieved d of 1 / (k + rank_r(d))
//
// with rank_r(d) the 1-based rank of d in r's trec_eval ordering of the
// query, counting only r's top depth results (depth <= 0: all; Pyserini
// uses 1000). k <= 0 means DefaultRRFK. Scores play no part beyond ranking,
// which is why RRF needs no normalisation. Output is in trec_eval's order;
// equal sums (common, since they are sums of a few unit fractions) are
// broken by doc id descending like any other tie. Each document's terms
// are added in rank order, whatever the order of the runs, so that
// documents with the same ranks get bit-equal sums and do tie.
func RRF(runs []Run, k float64, depth int) (Run, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("ir: no runs to fuse")
	}
	if math.IsNaN(k) || math.IsInf(k, 0) {
		return nil, fmt.Errorf("ir: RRF k = %v", k)
	}
	if k <= 0 {
		k = DefaultRRFK
	}
	out := Run{}
	for _, q := range queryUnion(runs) {
		ranks := map[string][]int{}
		for i, r := range runs {
			if err := checkDuplicates(i, q, r[q]); err != nil {
				return nil, err
			}
			for rank, x := range topN(r[q], depth) {
				ranks[x.DocID] = append(ranks[x.DocID], rank+1)
			}
		}
		// Each document's terms are summed in one order, by rank, not in
		// the order of the runs: floating-point addition is not
		// associative, and two documents with the same ranks in different
		// runs (1, 2, 7 and 7, 1, 2) must get bit-equal sums, so that
		// they tie and the tie goes by doc id.
		rs := make([]Result, 0, len(ranks))
		for d, rk := range ranks {
			slices.Sort(rk)
			s := 0.0
			for _, r := range rk {
				s += 1 / (k + float64(r))
			}
			rs = append(rs, Result{d, s})
		}
		SortTREC(rs)
		out[q] = rs
	}
	return out, nil
}
