package ir

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// The RM3 corpus: 20 documents, so that a term in 2 of them (ratio 0.1)
// passes Anserini's df filter (ratio > 0.1 is dropped) and one in 3 does not.
//
//	d01 "alpha beta alpha gamma"  dl 4
//	d02 "alpha beta delta café"   dl 4
//	d03 "beta gamma gamma omega"  dl 4
//	d04..d20 "xNN yNN"            dl 2 each (17 fillers)
//
// N = 20, avgdl = (4 + 4 + 4 + 34) / 20 = 2.3. df: alpha 2, beta 3 (0.15:
// filtered), gamma 2, delta 1, café 1 (not [a-z0-9]+: filtered by default).
func rm3Index(t *testing.T) *Index {
	t.Helper()
	docs := []Document{
		{"d01", "alpha beta alpha gamma"},
		{"d02", "alpha beta delta café"},
		{"d03", "beta gamma gamma omega"},
	}
	for i := 4; i <= 20; i++ {
		docs = append(docs, Document{fmt.Sprintf("d%02d", i), fmt.Sprintf("x%02d y%02d", i, i)})
	}
	path := filepath.Join(t.TempDir(), "rm3.idx")
	if _, err := BuildIndex(path, docs, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// RM3 for the query "alpha", by hand:
//
// First stage (BM25, k1 0.9, b 0.4): idf(alpha) = ln(1 + 18.5/2.5) = 2.1282317,
// norm(dl 4) = 0.9 * (0.6 + 0.4 * 4 / 2.3) = 1.1660870,
//
//	s1 = score(d01) = 2.1282317 * 2 / (2 + 1.1660870) = 1.3443925
//	s2 = score(d02) = 2.1282317 * 1 / (1 + 1.1660870) = 0.9825237
//
// Only d01 and d02 contain alpha, so they are the feedback documents.
// Their filtered term vectors: d01 {alpha 2, gamma 1}, |v1| = 3;
// d02 {alpha 1, delta 1}, |v2| = 2 (beta and café dropped).
//
//	rm(alpha) = 2/3 * s1 + 1/2 * s2 = 1.3875235
//	rm(gamma) = 1/3 * s1            = 0.4481308
//	rm(delta) =            1/2 * s2 = 0.4912618
//
// Scaled to sum 1 (sum 2.3269161): alpha 0.5962926, delta 0.2111214, gamma
// 0.1925859. The query is {alpha: 1}, so with weight 0.5:
//
//	alpha = 0.5 * 1 + 0.5 * 0.5962926 = 0.7981464
//	delta = 0.5 * 0.2111214           = 0.1055607
//	gamma = 0.5 * 0.1925859           = 0.0962929
func TestRM3ByHand(t *testing.T) {
	ix := rm3Index(t)
	check := func(name string, p RM3Params, want []WeightedTerm) {
		t.Helper()
		got, err := ix.ExpandRM3("alpha", DefaultBM25(), p)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
		for i := range want {
			if got[i].Term != want[i].Term || math.Abs(float64(got[i].Weight-want[i].Weight)) > 1e-6 {
				t.Errorf("%s: term %d = %v, by hand %v", name, i, got[i], want[i])
			}
		}
	}
	check("defaults", DefaultRM3(), []WeightedTerm{{"alpha", 0.7981464}, {"delta", 0.1055607}, {"gamma", 0.0962929}})

	// fbTerms 2: each document vector already has 2 terms; the model keeps
	// alpha and delta: alpha 1.3875235 / 1.8787853 = 0.7385217, so
	// alpha = 0.5 + 0.5 * 0.7385217 = 0.8692608, delta = 0.1307392.
	p := DefaultRM3()
	p.FbTerms = 2
	check("fbTerms 2", p, []WeightedTerm{{"alpha", 0.8692608}, {"delta", 0.1307392}})

	// Without the [a-z0-9]+ filter café counts: |v2| = 3,
	// rm(alpha) = 2/3 s1 + 1/3 s2 = 1.2237695, rm(delta) = rm(café) =
	// 1/3 s2 = 0.3275079, rm(gamma) = 0.4481308; sum 2.3269161 -> alpha
	// 0.7629595, gamma 0.0962929, café = delta = 0.0703738 (tie: term
	// ascending, "café" < "delta").
	p = DefaultRM3()
	p.FilterTerms = false
	check("no filter", p, []WeightedTerm{{"alpha", 0.7629595}, {"gamma", 0.0962929}, {"café", 0.0703738}, {"delta", 0.0703738}})

	// Original query weight 1: the expansion is the query itself, plus the
	// feedback terms at weight 0.
	p = DefaultRM3()
	p.OriginalQueryWeight = 1
	check("weight 1", p, []WeightedTerm{{"alpha", 1}, {"delta", 0}, {"gamma", 0}})
}

// Searching with RM3 is searching the expanded query; d03, which lacks the
// query term, is found through gamma.
func TestSearchRM3(t *testing.T) {
	ix := rm3Index(t)
	rm := DefaultRM3()
	opts := DefaultSearchOptions()
	opts.RM3 = &rm
	got, err := ix.Search("alpha", opts)
	if err != nil {
		t.Fatal(err)
	}
	terms, err := ix.ExpandRM3("alpha", opts.BM25, rm)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ix.SearchTerms(terms, opts.K, opts.BM25)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Search with RM3 %v, SearchTerms(ExpandRM3) %v", got, want)
	}
	if len(got) != 3 || got[0].DocID != "d01" || got[2].DocID != "d03" {
		t.Errorf("got %v, want d01, d02, d03", got)
	}
	run, err := ix.BatchSearch([]Query{{"1", "alpha"}}, opts)
	if err != nil || fmt.Sprint(run["1"]) != fmt.Sprint(got) {
		t.Errorf("BatchSearch with RM3: %v %v", run, err)
	}
	if terms, err := ix.ExpandRM3("the", opts.BM25, rm); err != nil || len(terms) != 0 {
		t.Errorf("a query of stopwords expands to %v, %v", terms, err)
	}
	bad := DefaultRM3()
	bad.FbDocs = 0
	if _, err := ix.ExpandRM3("alpha", opts.BM25, bad); err == nil {
		t.Error("fbDocs 0: want an error")
	}
}
