package ir

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// genCorpus makes a reproducible synthetic collection: n documents of 20 to
// 60 words drawn with a Zipf law from a vocabulary of made-up words, and
// queries of 2 to 4 words taken from random documents (so most match).
func genCorpus(n, nQueries int, seed uint64) ([]Document, []string) {
	rng := rand.New(rand.NewPCG(seed, 1))
	syll := []string{"ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "bar", "dor", "fen", "gil", "hom"}
	vocab := make([]string, 3000)
	for i := range vocab {
		var b strings.Builder
		for range 2 + rng.IntN(3) {
			b.WriteString(syll[rng.IntN(len(syll))])
		}
		vocab[i] = b.String()
	}
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(len(vocab)-1))
	docs := make([]Document, n)
	for i := range docs {
		words := make([]string, 20+rng.IntN(41))
		for j := range words {
			words[j] = vocab[zipf.Uint64()]
		}
		docs[i] = Document{ID: fmt.Sprintf("D%05d", i), Text: strings.Join(words, " ")}
	}
	queries := make([]string, nQueries)
	for i := range queries {
		words := strings.Fields(docs[rng.IntN(n)].Text)
		q := make([]string, 2+rng.IntN(3))
		for j := range q {
			q[j] = words[rng.IntN(len(words))]
		}
		queries[i] = strings.Join(q, " ")
	}
	return docs, queries
}

func buildGenIndex(t testing.TB, n, nQueries int) (*Index, []string) {
	t.Helper()
	docs, queries := genCorpus(n, nQueries, 21)
	path := filepath.Join(t.TempDir(), "gen.idx")
	if _, err := BuildIndex(path, docs, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix, queries
}

func TestBM25RetrieverMatchesSearch(t *testing.T) {
	ix, queries := buildGenIndex(t, 400, 40)
	queries = append(queries, "qqqq zzzz", "the")
	rm3 := DefaultRM3()
	for _, rm := range []*RM3Params{nil, &rm3} {
		for _, workers := range []int{1, 3} {
			opts := DefaultSearchOptions()
			opts.RM3, opts.Workers = rm, workers
			r, err := NewBM25Retriever(ix, opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Retrieve(context.Background(), queries, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(queries) {
				t.Fatalf("%d lists for %d queries", len(got), len(queries))
			}
			opts.K = 10
			for i, q := range queries {
				want, err := ix.Search(q, opts)
				if err != nil {
					t.Fatal(err)
				}
				if want == nil {
					want = []Result{}
				}
				if !reflect.DeepEqual(got[i], want) {
					t.Errorf("rm3=%v workers=%d query %q:\n got %v\nwant %v", rm != nil, workers, q, got[i], want)
				}
			}
			if len(got[len(got)-1]) != 0 || got[len(got)-1] == nil {
				t.Errorf("a query without known terms should get an empty, non-nil list: %#v", got[len(got)-1])
			}
		}
	}
}

func TestBM25RetrieverErrors(t *testing.T) {
	ix, queries := buildGenIndex(t, 50, 5)
	if _, err := NewBM25Retriever(nil, DefaultSearchOptions()); err == nil {
		t.Error("nil index accepted")
	}
	bad := DefaultSearchOptions()
	bad.BM25.K1 = -1
	if _, err := NewBM25Retriever(ix, bad); err == nil {
		t.Error("k1 = -1 accepted")
	}
	r, err := NewBM25Retriever(ix, DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Retrieve(context.Background(), queries, 0); err == nil {
		t.Error("k = 0 accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Retrieve(ctx, queries, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
	ix.Close()
	if _, err := r.Retrieve(context.Background(), queries, 10); err == nil {
		t.Error("search of a closed index succeeded")
	}
}

// fakeFirst returns, for query q, the documents q#1 ... q#n with scores n
// ... 1, and records the depth it was asked for.
type fakeFirst struct {
	n      int
	mu     sync.Mutex
	depths []int
}

func (f *fakeFirst) Retrieve(ctx context.Context, queries []string, k int) ([][]Result, error) {
	f.mu.Lock()
	f.depths = append(f.depths, k)
	f.mu.Unlock()
	out := make([][]Result, len(queries))
	for i, q := range queries {
		for j := range min(k, f.n) {
			out[i] = append(out[i], Result{fmt.Sprintf("%s#%d", q, j+1), float64(f.n - j)})
		}
	}
	return out, nil
}

// reverseRerank ranks candidates in reverse, so that its effect shows.
var reverseRerank = RerankerFunc(func(ctx context.Context, queries []string, cands [][]Result, k int) ([][]Result, error) {
	out := make([][]Result, len(cands))
	for i, rs := range cands {
		for j := len(rs) - 1; j >= 0; j-- {
			out[i] = append(out[i], Result{rs[j].DocID, float64(len(rs) - j)})
		}
	}
	return out, nil
})

func TestPipelineFirstStageOnly(t *testing.T) {
	f := &fakeFirst{n: 20}
	p := &Pipeline{First: f}
	got, err := p.Search(context.Background(), []string{"a", "b"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Result{{{"a#1", 20}, {"a#2", 19}, {"a#3", 18}}, {{"b#1", 20}, {"b#2", 19}, {"b#3", 18}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if !reflect.DeepEqual(f.depths, []int{3}) {
		t.Errorf("first stage asked for %v, want [3]", f.depths)
	}
}

// The re-ranker sees the first stage's top RerankDepth only; when k is
// larger, the first stage's next results follow the re-ranked ones in its
// order, with scores below them (so that trec_eval keeps that order).
func TestPipelineRerankDepth(t *testing.T) {
	for _, c := range []struct{ depth, k, first, seen int }{
		{0, 10, DefaultRerankDepth, DefaultRerankDepth},
		{50, 10, 50, 50},
		{50, 200, 200, 50},
	} {
		f := &fakeFirst{n: 1000}
		var seen, seenK int
		rr := RerankerFunc(func(ctx context.Context, qs []string, cands [][]Result, k int) ([][]Result, error) {
			seen, seenK = len(cands[0]), k
			return reverseRerank(ctx, qs, cands, k)
		})
		p := &Pipeline{First: f, Rerank: rr, RerankDepth: c.depth}
		got, err := p.Search(context.Background(), []string{"q"}, c.k)
		if err != nil {
			t.Fatal(err)
		}
		if f.depths[0] != c.first || seen != c.seen || seenK != min(c.k, c.seen) {
			t.Errorf("RerankDepth %d, k %d: first stage asked for %d, re-ranker saw %d and was asked for %d; want %d, %d, %d",
				c.depth, c.k, f.depths[0], seen, seenK, c.first, c.seen, min(c.k, c.seen))
		}
		if len(got[0]) != c.k || got[0][0].DocID != fmt.Sprintf("q#%d", c.seen) {
			t.Errorf("RerankDepth %d, k %d: got %d results starting %v", c.depth, c.k, len(got[0]), got[0][0])
			continue
		}
		// Below the depth: q#51 ... q#200 in the first stage's order, each
		// scored below everything before it as trec_eval reads scores.
		for j := c.seen; j < c.k; j++ {
			if want := fmt.Sprintf("q#%d", j+1); got[0][j].DocID != want {
				t.Fatalf("RerankDepth %d, k %d: rank %d is %s, want %s (the first stage's)", c.depth, c.k, j+1, got[0][j].DocID, want)
			}
			for i := range j {
				if !(float32(got[0][j].Score) < float32(got[0][i].Score)) {
					t.Fatalf("RerankDepth %d, k %d: rank %d's score %v is not below rank %d's %v", c.depth, c.k, j+1, got[0][j].Score, i+1, got[0][i].Score)
				}
			}
		}
		rs := slices.Clone(got[0])
		SortTREC(rs)
		for j := c.seen; j < c.k; j++ {
			if rs[j].DocID != got[0][j].DocID {
				t.Fatalf("RerankDepth %d, k %d: trec_eval's order puts %s at rank %d, the pipeline %s", c.depth, c.k, rs[j].DocID, j+1, got[0][j].DocID)
			}
		}
	}
}

// appendTail keeps the tail below the re-ranked scores in float32, also
// where a step of 1 vanishes at float32's precision.
func TestAppendTail(t *testing.T) {
	tail := []Result{{"x", 100}, {"y", 100}, {"z", 3}}
	got := appendTail([]Result{{"a", 2.5}, {"b", -0.5}}, tail)
	want := []Result{{"a", 2.5}, {"b", -0.5}, {"x", -1.5}, {"y", -2.5}, {"z", -3.5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("appendTail = %v, want %v", got, want)
	}
	got = appendTail([]Result{{"a", 1e9}}, tail)
	for j := 1; j < len(got); j++ {
		if !(float32(got[j].Score) < float32(got[j-1].Score)) || got[j].DocID != tail[j-1].DocID {
			t.Errorf("large scores: %v", got)
		}
	}
	if got := appendTail(nil, tail[:1]); len(got) != 1 || got[0].Score != -1 {
		t.Errorf("nothing re-ranked: %v", got)
	}
}

func TestPipelineErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := (&Pipeline{}).Search(ctx, []string{"q"}, 10); err == nil {
		t.Error("pipeline without first stage ran")
	}
	if _, err := (*Pipeline)(nil).Search(ctx, []string{"q"}, 10); err == nil {
		t.Error("nil pipeline ran")
	}
	f := &fakeFirst{n: 5}
	if _, err := (&Pipeline{First: f}).Search(ctx, []string{"q"}, 0); err == nil {
		t.Error("k = 0 accepted")
	}
	if got, err := (&Pipeline{First: f}).Search(ctx, nil, 10); err != nil || len(got) != 0 {
		t.Errorf("no queries: %v, %v", got, err)
	}
	short := RetrieverFunc(func(context.Context, []string, int) ([][]Result, error) { return [][]Result{{}}, nil })
	if _, err := (&Pipeline{First: short}).Search(ctx, []string{"a", "b"}, 10); err == nil {
		t.Error("first stage with one list for two queries accepted")
	}
	boom := errors.New("boom")
	failing := RetrieverFunc(func(context.Context, []string, int) ([][]Result, error) { return nil, boom })
	if _, err := (&Pipeline{First: failing}).Search(ctx, []string{"a"}, 10); !errors.Is(err, boom) {
		t.Errorf("first stage error: got %v", err)
	}
	shortRR := RerankerFunc(func(context.Context, []string, [][]Result, int) ([][]Result, error) { return nil, nil })
	if _, err := (&Pipeline{First: f, Rerank: shortRR}).Search(ctx, []string{"a"}, 10); err == nil {
		t.Error("re-ranker with no lists accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	f2 := &fakeFirst{n: 5}
	if _, err := (&Pipeline{First: f2}).Search(cctx, []string{"a"}, 10); !errors.Is(err, context.Canceled) || len(f2.depths) != 0 {
		t.Errorf("cancelled context: err %v, first stage called %d times", err, len(f2.depths))
	}
}

// tableRetriever serves fixed rankings by query text.
type tableRetriever map[string][]Result

func (tr tableRetriever) Retrieve(ctx context.Context, queries []string, k int) ([][]Result, error) {
	out := make([][]Result, len(queries))
	for i, q := range queries {
		rs := topN(tr[q], k)
		out[i] = rs
	}
	return out, nil
}

func TestHybridMatchesFusion(t *testing.T) {
	a := tableRetriever{
		"q1": {{"d1", 12}, {"d2", 9}, {"d3", 7}, {"d4", 2}},
		"q2": {{"d5", 3}},
	}
	b := tableRetriever{
		"q1": {{"d3", 0.9}, {"d5", 0.8}, {"d1", 0.1}},
		"q2": {{"d6", 0.5}, {"d5", 0.4}},
	}
	queries := []string{"q1", "q2", "q3"}
	for _, c := range []struct {
		h    Hybrid
		fuse func(runs []Run) (Run, error)
	}{
		{Hybrid{Weights: []float64{0.3, 0.7}, Norm: MinMax, Depth: 3}, func(runs []Run) (Run, error) {
			return Interpolate(runs, []float64{0.3, 0.7}, MinMax, 3)
		}},
		{Hybrid{Norm: ZScore}, func(runs []Run) (Run, error) { return Interpolate(runs, []float64{1, 1}, ZScore, 2) }},
		{Hybrid{Method: FuseRRF, Depth: 10}, func(runs []Run) (Run, error) { return RRF(runs, DefaultRRFK, 10) }},
		{Hybrid{Method: FuseRRF, RRFK: 1}, func(runs []Run) (Run, error) { return RRF(runs, 1, 2) }},
	} {
		h := c.h
		h.Retrievers = []Retriever{a, b}
		got, err := h.Retrieve(context.Background(), queries, 2)
		if err != nil {
			t.Fatal(err)
		}
		depth := max(2, h.Depth)
		runs := []Run{{}, {}}
		for i, tr := range []tableRetriever{a, b} {
			for q, rs := range tr {
				runs[i][q] = topN(rs, depth)
			}
		}
		fused, err := c.fuse(runs)
		if err != nil {
			t.Fatal(err)
		}
		for i, q := range queries {
			want := topN(fused[q], 2)
			if len(want) == 0 {
				want = []Result{}
			}
			if !reflect.DeepEqual(got[i], want) {
				t.Errorf("%v depth %d, %s: got %v, want %v", h.Method, h.Depth, q, got[i], want)
			}
		}
	}
}

func TestHybridErrors(t *testing.T) {
	ctx := context.Background()
	a := tableRetriever{"q": {{"d", 1}}}
	if _, err := (&Hybrid{}).Retrieve(ctx, []string{"q"}, 10); err == nil {
		t.Error("hybrid without retrievers ran")
	}
	if _, err := (&Hybrid{Retrievers: []Retriever{a, a}, Weights: []float64{1}}).Retrieve(ctx, []string{"q"}, 10); err == nil {
		t.Error("two retrievers and one weight accepted")
	}
	if _, err := (&Hybrid{Retrievers: []Retriever{a}, Method: 7}).Retrieve(ctx, []string{"q"}, 10); err == nil {
		t.Error("unknown fusion method accepted")
	}
	// The failure is reported, not the cancellation it causes in the other.
	boom := errors.New("boom")
	failing := RetrieverFunc(func(context.Context, []string, int) ([][]Result, error) { return nil, boom })
	waiting := RetrieverFunc(func(ctx context.Context, _ []string, _ int) ([][]Result, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_, err := (&Hybrid{Retrievers: []Retriever{waiting, failing}}).Retrieve(ctx, []string{"q"}, 10)
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want boom", err)
	}
	dup := tableRetriever{"q": {{"d", 1}, {"d", 2}}}
	if _, err := (&Hybrid{Retrievers: []Retriever{dup}}).Retrieve(ctx, []string{"q"}, 10); err == nil {
		t.Error("a ranking with a document twice accepted")
	}
	for _, s := range []string{"interpolate", "rrf"} {
		if m, err := ParseFusionMethod(s); err != nil || m.String() != s {
			t.Errorf("ParseFusionMethod(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseFusionMethod("sum"); err == nil {
		t.Error("ParseFusionMethod(sum) succeeded")
	}
}

// A hybrid of BM25 and BM25+RM3 under a re-ranker: the whole pipeline over
// a real index, as the service runs it.
func TestPipelineHybridBM25(t *testing.T) {
	ix, queries := buildGenIndex(t, 300, 10)
	bm, err := NewBM25Retriever(ix, DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultSearchOptions()
	rm3 := DefaultRM3()
	o.RM3 = &rm3
	bmrm3, err := NewBM25Retriever(ix, o)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{First: &Hybrid{Retrievers: []Retriever{bm, bmrm3}, Method: FuseRRF, Depth: 100}, Rerank: reverseRerank, RerankDepth: 20}
	got, err := p.Search(context.Background(), queries, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i, rs := range got {
		if len(rs) != 5 {
			t.Errorf("query %d: %d results", i, len(rs))
		}
	}
}
