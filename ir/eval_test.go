package ir

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The hand-worked example. Grades: d1 1, d2 2, d3 0, d4 1 (never
// retrieved), dY -1 (in the pool, unjudged). q2 has judgements but no
// relevant document; q3 is judged but not in the run; q4 is in the run but
// not judged.
const handQrels = `q1 0 d1 1
q1 0 d2 2
q1 0 d3 0
q1 0 d4 1
q1 0 dY -1
q2 0 d5 0
q3 0 d9 1
`

// The file's ranks are deliberately wrong (d1 before dX): trec_eval ignores
// them and so must Evaluate.
const handRun = `q1 Q0 d3 1 3.0 t
q1 Q0 d1 2 2.0 t
q1 Q0 dX 3 2.0 t
q1 Q0 d2 4 1.0 t
q1 Q0 dY 5 0.5 t
q2 Q0 d5 1 1.0 t
q2 Q0 d6 2 0.5 t
q4 Q0 d1 1 1.0 t
`

func mustRun(t *testing.T, s string) Run {
	t.Helper()
	r, err := ReadRun(strings.NewReader(s), "run")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustQrels(t *testing.T, s string) Qrels {
	t.Helper()
	q, err := ReadQrels(strings.NewReader(s), "qrels")
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

var (
	log2of3 = math.Log2(3) // 1.5849625
	log2of5 = math.Log2(5) // 2.3219281
)

// q1 in trec_eval's order: d3 (3.0); then the tie at 2.0, broken by doc id
// descending: "dX" > "d1" since 'X' (0x58) > '1' (0x31), so dX, then d1;
// then d2 (1.0), dY (0.5). Ranks and grades:
//
//	1 d3 0 | 2 dX unjudged | 3 d1 1 | 4 d2 2 | 5 dY unjudged (grade -1)
//
// Relevant (grade >= 1) in the qrels: d1, d2, d4, so NumRel = 3.
func TestJudgedHandWorked(t *testing.T) {
	run, qrels := mustRun(t, handRun), mustQrels(t, handQrels)
	j, err := JudgeQuery(run["q1"], qrels["q1"], EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, Unjudged, 1, 2, Unjudged}; !equalInts(j.Rels, want) {
		t.Fatalf("rels %v, want %v", j.Rels, want)
	}
	if j.NumRel != 3 || !equalInts(j.Ideal, []int{2, 1, 1}) {
		t.Fatalf("NumRel %d Ideal %v, want 3 [2 1 1]", j.NumRel, j.Ideal)
	}
	// DCG@10  = 1/log2(3+1) + 2/log2(4+1) = 0.5 + 0.8613531 = 1.3613531
	// IDCG@10 = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.6309298 + 0.5 = 3.1309298
	// nDCG@10 = 0.4348079
	// DCG@3 = 0.5 (only d1 of the top 3 has a gain); IDCG@3 = 3.1309298
	dcg10 := 0.5 + 2/log2of5
	idcg := 2 + 1/log2of3 + 0.5
	cases := []struct {
		m    Metric
		want float64
	}{
		{Metric{RecipRank, 0}, 1.0 / 3},   // first relevant, d1, at rank 3
		{Metric{RecipRank, 10}, 1.0 / 3},  // within the top 10
		{Metric{RecipRank, 2}, 0},         // MRR@2: nothing relevant in the top 2
		{Metric{NDCG, 10}, dcg10 / idcg},  // 0.4348079
		{Metric{NDCG, 3}, 0.5 / idcg},     // 0.1596970
		{Metric{Recall, 3}, 1.0 / 3},      // d1 of {d1, d2, d4}
		{Metric{Recall, 10}, 2.0 / 3},     // d1, d2; d4 never retrieved
		{Metric{Precision, 3}, 1.0 / 3},   // d1 in the top 3
		{Metric{Precision, 10}, 2.0 / 10}, // only 5 retrieved; the missing 5 count as non-relevant
		{MAP, (1.0/3 + 2.0/4) / 3},        // P at d1 (rank 3) and d2 (rank 4), over NumRel 3: 0.2777778
	}
	for _, c := range cases {
		if got := j.Value(c.m); !near(got, c.want) {
			t.Errorf("%v = %.7f, want %.7f", c.m, got, c.want)
		}
	}
	if math.Abs(dcg10/idcg-0.4348079) > 1e-7 || math.Abs(0.5/idcg-0.1596970) > 1e-7 {
		t.Errorf("nDCG arithmetic in the comment is off: %.7f %.7f", dcg10/idcg, 0.5/idcg)
	}
}

// Ties decide MRR here: broken by doc id ascending (Lucene's order) d1 would
// be rank 2 and MRR 0.5; trec_eval's descending order gives 1/3.
func TestTieBreakIsDocIDDescending(t *testing.T) {
	rs := []Result{{"d1", 2}, {"d3", 3}, {"dX", 2}, {"d10", 2}}
	SortTREC(rs)
	var got []string
	for _, r := range rs {
		got = append(got, r.DocID)
	}
	// "dX" > "d10" > "d1" bytewise (strcmp), as trec_eval compares.
	if want := "d3 dX d10 d1"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

// Means checked against trec_eval 9.0.8 run on handQrels/handRun (its
// output is quoted; "all" rows are means over q1 and q2).
func TestEvaluateMatchesTrecEval(t *testing.T) {
	run, qrels := mustRun(t, handRun), mustQrels(t, handQrels)
	metrics := []Metric{MAP, {RecipRank, 0}, {Precision, 3}, {Precision, 10}, {Recall, 3}, {Recall, 10}, {NDCG, 3}, {NDCG, 10}}
	check := func(name string, opts EvalOptions, wantQ int, want []float64) *Evaluation {
		t.Helper()
		ev, err := Evaluate(run, qrels, metrics, opts)
		if err != nil {
			t.Fatal(err)
		}
		if ev.NumQueries != wantQ {
			t.Errorf("%s: %d queries, want %d", name, ev.NumQueries, wantQ)
		}
		for i, m := range metrics {
			// trec_eval prints 4 decimals.
			if math.Abs(ev.Mean[i]-want[i]) > 0.00005 {
				t.Errorf("%s: %v = %.4f, trec_eval %.4f", name, m, ev.Mean[i], want[i])
			}
		}
		return ev
	}
	// trec_eval -m map -m recip_rank -m P.3,10 -m recall.3,10 -m ndcg_cut.3,10
	//   map 0.1389 recip_rank 0.1667 P_3 0.1667 P_10 0.1000 recall_3 0.1667
	//   recall_10 0.3333 ndcg_cut_3 0.0798 ndcg_cut_10 0.2174
	// q2 (no relevant document) scores 0 everywhere and halves every mean:
	// map = (0.2777778 + 0) / 2 = 0.1388889.
	ev := check("default", EvalOptions{}, 2, []float64{0.1389, 0.1667, 0.1667, 0.1000, 0.1667, 0.3333, 0.0798, 0.2174})
	if strings.Join(ev.NotInRun, ",") != "q3" || strings.Join(ev.NotInQrels, ",") != "q4" {
		t.Errorf("NotInRun %v NotInQrels %v, want [q3] [q4]", ev.NotInRun, ev.NotInQrels)
	}
	if ev.PerQuery[0].QID != "q1" || ev.PerQuery[0].NumRet != 5 || ev.PerQuery[0].NumRel != 3 || ev.PerQuery[0].NumRelRet != 2 {
		t.Errorf("q1 counts %+v, trec_eval: num_ret 5 num_rel 3 num_rel_ret 2", ev.PerQuery[0])
	}
	// trec_eval -c: q3 counts with 0, divisor 3: map 0.2777778/3 = 0.0926.
	check("complete", EvalOptions{Complete: true}, 3, []float64{0.0926, 0.1111, 0.1111, 0.0667, 0.1111, 0.2222, 0.0532, 0.1449})
	// trec_eval -M 3: q1 keeps d3 dX d1; map = (1/3)/3 / 2 = 0.0556,
	// P_10 = 1/10/2 = 0.05, recall_10 = 1/3/2 = 0.1667.
	check("M3", EvalOptions{MaxDocs: 3}, 2, []float64{0.0556, 0.1667, 0.1667, 0.0500, 0.1667, 0.1667, 0.0798, 0.0798})
	// trec_eval -l 2: only d2 is relevant; q1: map 1/4, recip_rank 1/4,
	// P_10 0.1, recall_10 1; nDCG still uses the grades (0.4348 for q1).
	ev = check("l2", EvalOptions{RelevanceLevel: 2}, 2, []float64{0.125, 0.125, 0, 0.05, 0, 0.5, 0.0798, 0.2174})
	if ev.PerQuery[0].NumRel != 1 {
		t.Errorf("-l 2: q1 num_rel %d, trec_eval 1", ev.PerQuery[0].NumRel)
	}
}

// MRR@10 is recip_rank under trec_eval -M 10; checked with -M 2 (trec_eval
// gives 0 for q1, whose first relevant document is at rank 3).
func TestMRRCutoffIsMaxDocs(t *testing.T) {
	run, qrels := mustRun(t, handRun), mustQrels(t, handQrels)
	a, err := Evaluate(run, qrels, []Metric{{RecipRank, 2}}, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Evaluate(run, qrels, []Metric{{RecipRank, 0}}, EvalOptions{MaxDocs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if a.Mean[0] != 0 || b.Mean[0] != 0 {
		t.Fatalf("MRR@2 %v, recip_rank -M 2 %v, trec_eval 0", a.Mean[0], b.Mean[0])
	}
}

func TestEvaluateErrors(t *testing.T) {
	qrels := mustQrels(t, handQrels)
	if _, err := Evaluate(Run{"q9": {{"d1", 1}}}, qrels, []Metric{MAP}, EvalOptions{}); err == nil {
		t.Error("no common query: want an error, as trec_eval exits")
	}
	if _, err := Evaluate(Run{"q1": {{"d1", 1}, {"d1", 2}}}, qrels, []Metric{MAP}, EvalOptions{}); err == nil {
		t.Error("duplicate document: want an error, as trec_eval's 'duplicate docs'")
	}
	if _, err := Evaluate(Run{"q1": {{"d1", 1}}}, qrels, []Metric{{NDCG, 0}}, EvalOptions{}); err == nil {
		t.Error("nDCG without a cutoff: want an error")
	}
	// A query with an empty result list is absent, as after a file round trip.
	ev, err := Evaluate(Run{"q1": {{"d1", 1}}, "q2": nil}, qrels, []Metric{MAP}, EvalOptions{})
	if err != nil || ev.NumQueries != 1 {
		t.Errorf("empty result list: %v queries, err %v; want 1", ev, err)
	}
}

func TestParseMetric(t *testing.T) {
	for s, want := range map[string]Metric{
		"MRR@10": MRR10, "mrr@10": MRR10, "recip_rank": {RecipRank, 0}, "MRR": {RecipRank, 0},
		"nDCG@10": NDCG10, "ndcg_cut.10": NDCG10, "ndcg_cut_10": NDCG10,
		"Recall@100": Recall100, "R@100": Recall100, "recall.100": Recall100, "recall_100": Recall100,
		"P@10": {Precision, 10}, "P.10": {Precision, 10}, "P_10": {Precision, 10}, "MAP": MAP, "map": MAP,
	} {
		got, err := ParseMetric(s)
		if err != nil || got != want {
			t.Errorf("ParseMetric(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"nDCG", "P@0", "MAP@10", "foo@3", "recall@x"} {
		if _, err := ParseMetric(s); err == nil {
			t.Errorf("ParseMetric(%q): want an error", s)
		}
	}
	if MRR10.String() != "MRR@10" || NDCG10.TrecEvalName() != "ndcg_cut_10" || Recall100.TrecEvalName() != "recall_100" {
		t.Error("metric names")
	}
}

func TestEvaluationWrite(t *testing.T) {
	ev, err := Evaluate(mustRun(t, handRun), mustQrels(t, handQrels), []Metric{MRR10, MAP}, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ev.Write(&buf, true); err != nil {
		t.Fatal(err)
	}
	want := "MRR@10                \tq1\t0.3333\n" +
		"MAP                   \tq1\t0.2778\n" +
		"MRR@10                \tq2\t0.0000\n" +
		"MAP                   \tq2\t0.0000\n" +
		"MRR@10                \tall\t0.1667\n" +
		"MAP                   \tall\t0.1389\n" +
		"num_q                 \tall\t2\n"
	if buf.String() != want {
		t.Errorf("Write:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// TestGoldenTrecEval compares every query of a larger run (testdata: 40
// queries, graded judgements, score ties, unjudged and duplicate-free
// documents, queries without relevant documents, queries missing on either
// side) with the output of trec_eval 9.0.8 itself, stored beside it
// (testdata/trec_eval/golden.trec_eval, made by
// `trec_eval -q -m recip_rank -m ndcg_cut.10 -m recall.5,100 -m P.5 -m map golden.qrels golden.run`
// and the same with -M 10 for recip_rank, kept as recip_rank_M10).
func TestGoldenTrecEval(t *testing.T) {
	run, err := ReadRunFile(filepath.Join("testdata", "trec_eval", "golden.run"))
	if err != nil {
		t.Fatal(err)
	}
	qrels, err := ReadQrelsFile(filepath.Join("testdata", "trec_eval", "golden.qrels"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Metric{
		"recip_rank": {RecipRank, 0}, "recip_rank_M10": MRR10, "ndcg_cut_10": NDCG10,
		"recall_5": {Recall, 5}, "recall_100": Recall100, "P_5": {Precision, 5}, "map": MAP,
	}
	var metrics []Metric
	var order []string
	for n, m := range names {
		metrics = append(metrics, m)
		order = append(order, n)
	}
	ev, err := Evaluate(run, qrels, metrics, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]string]float64{}
	for _, qe := range ev.PerQuery {
		for i, n := range order {
			got[[2]string{n, qe.QID}] = qe.Values[i]
		}
	}
	for i, n := range order {
		got[[2]string{n, "all"}] = ev.Mean[i]
	}
	f, err := os.Open(filepath.Join("testdata", "trec_eval", "golden.trec_eval"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	checked := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		if _, ok := names[fields[0]]; !ok {
			continue
		}
		want, _ := strconv.ParseFloat(fields[2], 64)
		v, ok := got[[2]string{fields[0], fields[1]}]
		if !ok {
			t.Errorf("%s %s: trec_eval has it, Evaluate does not", fields[0], fields[1])
			continue
		}
		if math.Abs(v-want) > 0.00005 {
			t.Errorf("%s %s = %.4f, trec_eval %.4f", fields[0], fields[1], v, want)
		}
		checked++
	}
	if n := len(ev.PerQuery) + 1; checked != n*len(names) {
		t.Errorf("checked %d values, want %d", checked, n*len(names))
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
