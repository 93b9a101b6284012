package ir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// MetricKind is one of the trec_eval measures implemented here.
type MetricKind int

const (
	// RecipRank is trec_eval's recip_rank (m_recip_rank.c): 1/rank of the
	// first relevant document, 0 if none is retrieved. With a cutoff K it is
	// MRR@K as Anserini and Pyserini compute it for MS MARCO,
	// `trec_eval -c -M K -m recip_rank`: only the top K of trec_eval's
	// ranking are looked at (set EvalOptions.Complete for the -c). MS
	// MARCO's own msmarco_eval.py also divides by every query of the qrels
	// but ranks by the file's rank column, not the scores; the two agree on
	// runs whose ranks follow their scores, as every WriteRun output does.
	RecipRank MetricKind = iota + 1
	// NDCG is trec_eval's ndcg_cut.K (m_ndcg_cut.c).
	NDCG
	// Recall is trec_eval's recall.K (m_recall.c).
	Recall
	// Precision is trec_eval's P.K (m_P.c).
	Precision
	// AP is trec_eval's map (m_map.c), average precision per query.
	AP
)

// Metric is a measure and its cutoff K (0: none, allowed for RecipRank and
// AP only).
type Metric struct {
	Kind MetricKind
	K    int
}

// Shorthands for the metrics the IR results tables report.
var (
	MRR10     = Metric{RecipRank, 10}
	NDCG10    = Metric{NDCG, 10}
	Recall100 = Metric{Recall, 100}
	MAP       = Metric{AP, 0}
)

// String gives the metric's name as the results tables print it: MRR@10,
// nDCG@10, Recall@100, P@10, MAP, MRR.
func (m Metric) String() string {
	switch m.Kind {
	case RecipRank:
		if m.K == 0 {
			return "MRR"
		}
		return fmt.Sprintf("MRR@%d", m.K)
	case NDCG:
		return fmt.Sprintf("nDCG@%d", m.K)
	case Recall:
		return fmt.Sprintf("Recall@%d", m.K)
	case Precision:
		return fmt.Sprintf("P@%d", m.K)
	case AP:
		return "MAP"
	}
	return fmt.Sprintf("Metric(%d,%d)", int(m.Kind), m.K)
}

// TrecEvalName gives the name trec_eval prints for the metric (recip_rank,
// ndcg_cut_10, recall_100, P_10, map). For RecipRank with a cutoff it is
// "recip_rank" as printed by `trec_eval -M K`.
func (m Metric) TrecEvalName() string {
	switch m.Kind {
	case RecipRank:
		return "recip_rank"
	case NDCG:
		return fmt.Sprintf("ndcg_cut_%d", m.K)
	case Recall:
		return fmt.Sprintf("recall_%d", m.K)
	case Precision:
		return fmt.Sprintf("P_%d", m.K)
	case AP:
		return "map"
	}
	return m.String()
}

func (m Metric) validate() error {
	switch m.Kind {
	case RecipRank, AP:
		if m.K < 0 || (m.Kind == AP && m.K != 0) {
			return fmt.Errorf("ir: metric %v: bad cutoff %d", m, m.K)
		}
	case NDCG, Recall, Precision:
		if m.K < 1 {
			return fmt.Errorf("ir: metric %v needs a cutoff >= 1", m)
		}
	default:
		return fmt.Errorf("ir: unknown metric kind %d", int(m.Kind))
	}
	return nil
}

// ParseMetric reads a metric name: the results-table names (MRR@10,
// nDCG@10, Recall@100, R@100, P@10, MAP, MRR; case-insensitive) or
// trec_eval's (recip_rank, ndcg_cut.10 or ndcg_cut_10, recall.100, P.10, map).
func ParseMetric(s string) (Metric, error) {
	name, cut, hasCut := strings.Cut(s, "@")
	if !hasCut {
		if i := strings.LastIndexAny(s, "._"); i > 0 {
			if _, err := strconv.Atoi(s[i+1:]); err == nil {
				name, cut, hasCut = s[:i], s[i+1:], true
			}
		}
	}
	k := 0
	if hasCut {
		v, err := strconv.Atoi(cut)
		if err != nil || v < 1 {
			return Metric{}, fmt.Errorf("ir: metric %q: cutoff must be a positive integer", s)
		}
		k = v
	}
	var kind MetricKind
	switch strings.ToLower(name) {
	case "mrr", "rr", "recip_rank":
		kind = RecipRank
	case "ndcg", "ndcg_cut":
		kind = NDCG
	case "recall", "r":
		kind = Recall
	case "p", "precision":
		kind = Precision
	case "map", "ap":
		kind = AP
	default:
		return Metric{}, fmt.Errorf("ir: unknown metric %q (want MRR@k, nDCG@k, Recall@k, P@k or MAP)", s)
	}
	m := Metric{kind, k}
	return m, m.validate()
}

// EvalOptions are trec_eval's command-line switches that matter here. The
// zero value is trec_eval's default behaviour.
type EvalOptions struct {
	// RelevanceLevel is trec_eval's -l: a document is relevant when its grade
	// is at least this. Values below 1 mean 1, trec_eval's default. nDCG
	// ignores it and uses the grades as gains, as trec_eval does.
	RelevanceLevel int
	// Complete is trec_eval's -c: average over every query in the qrels,
	// with 0 for queries the run lacks, instead of over the queries that
	// are in both.
	Complete bool
	// MaxDocs is trec_eval's -M: only the top MaxDocs documents of each
	// query (after trec_eval's sort) are evaluated. 0: all.
	MaxDocs int
}

// Judged is one query's ranking as trec_eval's measures see it (the RES_RELS
// of form_res_rels.c): the grades of the retrieved documents in trec_eval's
// order, and the counts the measures normalise by.
type Judged struct {
	// Rels holds the grade of the document at each rank (index 0 is rank
	// 1). A document missing from the qrels gets Unjudged; it is never
	// relevant and adds no gain.
	Rels []int
	// NumRel is the number of judged documents with grade >= the
	// relevance level, retrieved or not.
	NumRel int
	// Ideal holds every positive grade in the qrels of the query, highest
	// first: the ideal ranking of nDCG.
	Ideal []int
	level int
}

// Unjudged marks, in Judged.Rels, a retrieved document absent from the
// qrels (trec_eval's RELVALUE_NONPOOL).
const Unjudged = -1

// JudgeQuery sorts results into trec_eval's order (on a copy), keeps the top
// opts.MaxDocs, and looks up each document's grade in judgments. A document
// retrieved twice is an error, as in trec_eval.
func JudgeQuery(results []Result, judgments map[string]int, opts EvalOptions) (Judged, error) {
	level := max(opts.RelevanceLevel, 1)
	rs := slices.Clone(results)
	SortTREC(rs)
	seen := make(map[string]struct{}, len(rs))
	for _, r := range rs {
		if _, dup := seen[r.DocID]; dup {
			return Judged{}, fmt.Errorf("ir: document %q retrieved twice", r.DocID)
		}
		seen[r.DocID] = struct{}{}
		if math.IsNaN(r.Score) {
			return Judged{}, fmt.Errorf("ir: document %q has a NaN score", r.DocID)
		}
	}
	if opts.MaxDocs > 0 && len(rs) > opts.MaxDocs {
		rs = rs[:opts.MaxDocs]
	}
	j := Judged{Rels: make([]int, len(rs)), level: level}
	for i, r := range rs {
		rel, ok := judgments[r.DocID]
		switch {
		case !ok:
			j.Rels[i] = Unjudged
		case rel < 0:
			// In the pool but unjudged (trec_eval's RELVALUE_UNJUDGED):
			// neither relevant nor a gain, like a document not in the qrels.
			j.Rels[i] = Unjudged
		default:
			j.Rels[i] = rel
		}
	}
	for _, rel := range judgments {
		if rel >= level {
			j.NumRel++
		}
		if rel > 0 {
			j.Ideal = append(j.Ideal, rel)
		}
	}
	slices.SortFunc(j.Ideal, func(a, b int) int { return b - a })
	return j, nil
}

// Value computes one metric for the query.
func (j Judged) Value(m Metric) float64 {
	switch m.Kind {
	case RecipRank:
		return j.RecipRank(m.K)
	case NDCG:
		return j.NDCG(m.K)
	case Recall:
		return j.Recall(m.K)
	case Precision:
		return j.Precision(m.K)
	case AP:
		return j.AP()
	}
	return math.NaN()
}

func (j Judged) relevant(rel int) bool { return rel >= max(j.level, 1) }

// RecipRank is 1/rank of the first relevant document among the top k (k <=
// 0: the whole ranking), 0 if there is none (m_recip_rank.c).
func (j Judged) RecipRank(k int) float64 {
	n := len(j.Rels)
	if k > 0 && k < n {
		n = k
	}
	for i := 0; i < n; i++ {
		if j.relevant(j.Rels[i]) {
			return 1 / float64(i+1)
		}
	}
	return 0
}

// NDCG is trec_eval's ndcg_cut.k (m_ndcg_cut.c): DCG@k / ideal DCG@k, where a
// document at rank r (1-based) adds gain/log2(r+1), the gain being its grade
// itself (not 2^grade-1; grades <= 0 and unjudged documents add nothing),
// and the ideal DCG sorts all positive grades of the query's qrels. A query
// with no positive grade scores 0.
func (j Judged) NDCG(k int) float64 {
	dcg := 0.0
	for i := 0; i < len(j.Rels) && i < k; i++ {
		if g := j.Rels[i]; g > 0 {
			dcg += float64(g) / math.Log2(float64(i+2))
		}
	}
	ideal := 0.0
	for i := 0; i < len(j.Ideal) && i < k; i++ {
		ideal += float64(j.Ideal[i]) / math.Log2(float64(i+2))
	}
	if ideal > 0 {
		return dcg / ideal
	}
	return dcg // 0: no positive grade, so no gain was retrieved either
}

// Recall is trec_eval's recall.k (m_recall.c): relevant documents in the top
// k over all relevant documents of the query; 0 when the query has none.
func (j Judged) Recall(k int) float64 {
	if j.NumRel == 0 {
		return 0
	}
	return float64(j.relAt(k)) / float64(j.NumRel)
}

// Precision is trec_eval's P.k (m_P.c): relevant documents in the top k over
// k, even when fewer than k were retrieved (the rest count as non-relevant).
func (j Judged) Precision(k int) float64 {
	return float64(j.relAt(k)) / float64(k)
}

// AP is trec_eval's map for one query (m_map.c): the precision at the rank
// of each relevant retrieved document, summed and divided by the number of
// relevant documents (retrieved or not); 0 when the query has none.
func (j Judged) AP() float64 {
	sum, found := 0.0, 0
	for i, rel := range j.Rels {
		if j.relevant(rel) {
			found++
			sum += float64(found) / float64(i+1)
		}
	}
	if found == 0 {
		return 0
	}
	return sum / float64(j.NumRel)
}

// NumRelRet is the number of relevant documents retrieved (trec_eval's
// num_rel_ret).
func (j Judged) NumRelRet() int { return j.relAt(len(j.Rels)) }

func (j Judged) relAt(k int) int {
	n := 0
	for i := 0; i < len(j.Rels) && i < k; i++ {
		if j.relevant(j.Rels[i]) {
			n++
		}
	}
	return n
}

// QueryEval is one query's measures.
type QueryEval struct {
	QID       string
	Values    []float64 // aligned with Evaluation.Metrics
	NumRet    int       // documents evaluated (after MaxDocs)
	NumRel    int       // relevant documents in the qrels
	NumRelRet int       // relevant documents retrieved
	InRun     bool      // false for a qrels query the run lacks (Complete only)
}

// Evaluation is the outcome of Evaluate.
type Evaluation struct {
	Metrics []Metric
	// PerQuery lists the evaluated queries by id in strcmp order, as
	// trec_eval -q prints them.
	PerQuery []QueryEval
	// Mean is each metric summed over PerQuery and divided by NumQueries.
	Mean []float64
	// NumQueries is the divisor of Mean: the queries in both run and qrels,
	// or all queries of the qrels with Complete.
	NumQueries int
	// NotInQrels lists run queries without judgements; trec_eval skips them
	// and so does Evaluate.
	NotInQrels []string
	// NotInRun lists qrels queries the run lacks (they score 0 and count in
	// the mean only with Complete).
	NotInRun []string
}

// Evaluate computes metrics for run against qrels with trec_eval's
// semantics (version 9.0.x, the one Anserini and Pyserini ship; trec_eval.c's
// main loop and meas_avg.c):
//   - each query's ranking is its results sorted by score descending, ties
//     broken by doc id descending (form_res_rels.c); the file's ranks are
//     never used;
//   - a query in the run but not in the qrels is skipped; a query in the
//     qrels but not the run is skipped too, unless opts.Complete, when it
//     scores 0 on every metric;
//   - the mean divides by the number of queries in both (or, with Complete,
//     in the qrels). A query in the qrels with no relevant document is
//     evaluated and scores 0, so it lowers the mean; trec_eval does the same;
//   - unjudged documents are not relevant.
//
// trec_eval 10.0 loops over the qrels instead and stops with an error
// when a qrels query is missing from the run and -c is not given; 9.0.x
// skips it, as Evaluate does. The means are the same whenever 10.0 runs.
//
// A query whose result slice is empty is treated as absent from the run, as
// it would be after a round trip through a run file. Evaluate fails, like
// trec_eval, when no query is in both, or a query retrieves a document twice.
func Evaluate(run Run, qrels Qrels, metrics []Metric, opts EvalOptions) (*Evaluation, error) {
	if len(metrics) == 0 {
		return nil, errors.New("ir: no metrics to evaluate")
	}
	for _, m := range metrics {
		if err := m.validate(); err != nil {
			return nil, err
		}
	}
	ev := &Evaluation{Metrics: slices.Clone(metrics), Mean: make([]float64, len(metrics))}
	for qid, rs := range run {
		if _, ok := qrels[qid]; !ok && len(rs) > 0 {
			ev.NotInQrels = append(ev.NotInQrels, qid)
		}
	}
	slices.Sort(ev.NotInQrels)
	qids := mapKeys(qrels)
	slices.Sort(qids)
	inBoth := 0
	for _, qid := range qids {
		rs := run[qid]
		if len(rs) == 0 {
			ev.NotInRun = append(ev.NotInRun, qid)
			if !opts.Complete {
				continue
			}
		} else {
			inBoth++
		}
		j, err := JudgeQuery(rs, qrels[qid], opts)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", qid, err)
		}
		qe := QueryEval{QID: qid, Values: make([]float64, len(metrics)), NumRet: len(j.Rels),
			NumRel: j.NumRel, NumRelRet: j.NumRelRet(), InRun: len(rs) > 0}
		for i, m := range metrics {
			qe.Values[i] = j.Value(m)
		}
		ev.PerQuery = append(ev.PerQuery, qe)
	}
	if inBoth == 0 {
		return nil, errors.New("ir: no queries with both results and relevance judgements")
	}
	ev.NumQueries = len(ev.PerQuery)
	for _, qe := range ev.PerQuery {
		for i, v := range qe.Values {
			ev.Mean[i] += v
		}
	}
	for i := range ev.Mean {
		ev.Mean[i] /= float64(ev.NumQueries)
	}
	return ev, nil
}

// Value returns the mean of metric m, and whether it was evaluated.
func (e *Evaluation) Value(m Metric) (float64, bool) {
	for i, x := range e.Metrics {
		if x == m {
			return e.Mean[i], true
		}
	}
	return 0, false
}

// Write prints the evaluation as trec_eval does ("%-22s\t%s\t%.4f", the
// query id "all" for the means), per query first when perQuery is set (like
// trec_eval -q), and ends with num_q. Metric names are the results-table
// ones (String), not trec_eval's, so that MRR and MRR@10 can be told apart.
func (e *Evaluation) Write(w io.Writer, perQuery bool) error {
	bw := bufio.NewWriter(w)
	if perQuery {
		for _, qe := range e.PerQuery {
			for i, m := range e.Metrics {
				fmt.Fprintf(bw, "%-22s\t%s\t%.4f\n", m.String(), qe.QID, qe.Values[i])
			}
		}
	}
	for i, m := range e.Metrics {
		fmt.Fprintf(bw, "%-22s\tall\t%.4f\n", m.String(), e.Mean[i])
	}
	fmt.Fprintf(bw, "%-22s\tall\t%d\n", "num_q", e.NumQueries)
	return bw.Flush()
}
