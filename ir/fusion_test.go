package ir

import (
	"math"
	"testing"
)

// Two runs for q1: A (say BM25) and B (say a bi-encoder). A lacks d4, B
// lacks d3. q3 is only in A.
var (
	fuseA = Run{"q1": {{"d1", 10}, {"d2", 8}, {"d3", 6}}, "q3": {{"d7", 1}}}
	fuseB = Run{"q1": {{"d2", 0.9}, {"d4", 0.7}, {"d1", 0.5}}}
)

func checkFused(t *testing.T, name string, got Run, qid string, want []Result) {
	t.Helper()
	rs := got[qid]
	if len(rs) != len(want) {
		t.Fatalf("%s: %v, want %v", name, rs, want)
	}
	for i := range want {
		if rs[i].DocID != want[i].DocID || math.Abs(rs[i].Score-want[i].Score) > 1e-7 {
			t.Errorf("%s: rank %d = %v, by hand %v", name, i+1, rs[i], want[i])
		}
	}
}

func TestInterpolateMinMax(t *testing.T) {
	// A: (s - 6) / (10 - 6): d1 1, d2 0.5, d3 0; d4 missing -> 0.
	// B: (s - 0.5) / (0.9 - 0.5): d2 1, d4 0.5, d1 0; d3 missing -> 0.
	// 0.5 A + 0.5 B: d1 0.5, d2 0.75, d3 0, d4 0.25.
	got, err := Interpolate([]Run{fuseA, fuseB}, []float64{0.5, 0.5}, MinMax, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkFused(t, "minmax", got, "q1", []Result{{"d2", 0.75}, {"d1", 0.5}, {"d4", 0.25}, {"d3", 0}})
	// q3 is only in A: d7 = 0.5 * 1 (a single score normalises to 1).
	checkFused(t, "minmax q3", got, "q3", []Result{{"d7", 0.5}})
}

func TestInterpolateZScore(t *testing.T) {
	// A: mean 8, std sqrt((4 + 0 + 4) / 3) = 1.6329932: d1 1.2247449, d2 0,
	//    d3 -1.2247449; d4 missing -> A's minimum, -1.2247449.
	// B: mean 0.7, std sqrt((0.04 + 0 + 0.04) / 3) = 0.1632993: d2 1.2247449,
	//    d4 0, d1 -1.2247449; d3 missing -> -1.2247449.
	// 0.5 A + 0.5 B: d1 0, d2 0.6123724, d3 -1.2247449, d4 -0.6123724.
	got, err := Interpolate([]Run{fuseA, fuseB}, []float64{0.5, 0.5}, ZScore, 0)
	if err != nil {
		t.Fatal(err)
	}
	z := math.Sqrt(1.5) // 2 / sqrt(8/3) = 1.2247449
	checkFused(t, "zscore", got, "q1", []Result{{"d2", z / 2}, {"d1", 0}, {"d4", -z / 2}, {"d3", -z}})
}

// Pyserini's hybrid: alpha * sparse + dense, raw scores, a missing document
// taking the run's minimum: d1 0.1*10 + 0.5 = 1.5, d2 0.8 + 0.9 = 1.7,
// d3 0.6 + 0.5 = 1.1, d4 0.1*6 + 0.7 = 1.3.
func TestInterpolateRaw(t *testing.T) {
	got, err := Interpolate([]Run{fuseA, fuseB}, []float64{0.1, 1}, NoNormalization, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkFused(t, "raw", got, "q1", []Result{{"d2", 1.7}, {"d1", 1.5}, {"d4", 1.3}, {"d3", 1.1}})
	if _, err := Interpolate([]Run{fuseA}, []float64{0.5, 0.5}, MinMax, 0); err == nil {
		t.Error("weights and runs of different lengths: want an error")
	}
}

// RRF with k = 60: A ranks d1 d2 d3, B ranks d2 d4 d1.
//
//	d1 = 1/61 + 1/63 = 0.0163934 + 0.0158730 = 0.0322664
//	d2 = 1/62 + 1/61 = 0.0161290 + 0.0163934 = 0.0325224
//	d3 = 1/63 = 0.0158730, d4 = 1/62 = 0.0161290
func TestRRF(t *testing.T) {
	got, err := RRF([]Run{fuseA, fuseB}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkFused(t, "rrf", got, "q1", []Result{
		{"d2", 1.0/62 + 1.0/61}, {"d1", 1.0/61 + 1.0/63}, {"d4", 1.0 / 62}, {"d3", 1.0 / 63}})
	checkFused(t, "rrf q3", got, "q3", []Result{{"d7", 1.0 / 61}})

	// depth 1: only each run's first document: d1 = d2 = 1/61, a tie broken
	// by doc id descending.
	got, err = RRF([]Run{fuseA, fuseB}, 60, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkFused(t, "rrf depth 1", got, "q1", []Result{{"d2", 1.0 / 61}, {"d1", 1.0 / 61}})

	// Ranks come from scores in trec_eval's order, not slice order: x and
	// y tie at 1 in C, so C ranks y (1) before x (2); D ranks x first.
	c := Run{"q": {{"x", 1}, {"y", 1}}}
	d := Run{"q": {{"y", 0.2}, {"x", 0.9}}}
	got, err = RRF([]Run{c, d}, 60, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkFused(t, "rrf ties", got, "q", []Result{{"y", 1.0/61 + 1.0/62}, {"x", 1.0/62 + 1.0/61}})

	if _, err := RRF([]Run{{"q": {{"x", 1}, {"x", 2}}}}, 60, 0); err == nil {
		t.Error("duplicate document: want an error")
	}
}

func TestNormalize(t *testing.T) {
	one := []Result{{"a", 3}}
	if Normalize(one, MinMax)[0].Score != 1 || Normalize(one, ZScore)[0].Score != 0 || one[0].Score != 3 {
		t.Error("single result: MinMax 1, ZScore 0, input untouched")
	}
	if n, err := ParseNormalization("zscore"); err != nil || n != ZScore || n.String() != "zscore" {
		t.Error("ParseNormalization")
	}
	top := Run{"q": {{"a", 1}, {"b", 3}, {"c", 2}}}.Top(2)
	if len(top["q"]) != 2 || top["q"][0].DocID != "b" || top["q"][1].DocID != "c" {
		t.Errorf("Top(2) = %v", top)
	}
}

// ranked builds a one-query run ranking docs in the order given.
func ranked(docs ...string) Run {
	rs := make([]Result, len(docs))
	for i, d := range docs {
		rs[i] = Result{d, float64(len(docs) - i)}
	}
	return Run{"q": rs}
}

// RRF sums each document's terms in a fixed order, so that sums equal in
// mathematics are equal in bits: three runs rank x 1, 2, 7 and y 7, 1, 2;
// summed in run order the two sums differ in the last bit
// (0.0474478480153437 and 0.04744784801534369), and the tie between them
// would depend on the order of the runs.
func TestRRFSumsInFixedOrder(t *testing.T) {
	runs := []Run{
		ranked("x", "a", "b", "c", "d", "e", "y"),
		ranked("y", "x"),
		ranked("f", "y", "g", "h", "i", "j", "x"),
	}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}} {
		got, err := RRF([]Run{runs[order[0]], runs[order[1]], runs[order[2]]}, 60, 0)
		if err != nil {
			t.Fatal(err)
		}
		score := map[string]float64{}
		for _, r := range got["q"] {
			score[r.DocID] = r.Score
		}
		want := 1.0/61 + 1.0/62 + 1.0/67
		if score["x"] != score["y"] || math.Abs(score["x"]-want) > 1e-15 {
			t.Errorf("runs in order %v: x %v and y %v, want both %v bit for bit", order, score["x"], score["y"], want)
		}
		if got["q"][0].DocID != "y" || got["q"][1].DocID != "x" {
			t.Errorf("runs in order %v: %v, want the tie y, x (doc id descending) first", order, got["q"][:2])
		}
	}
}
