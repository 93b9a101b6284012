package ir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/torchmods"
)

// hnswClustered is n unit vectors of dim floats around clusters centres
// (Gaussian centres, Gaussian spread 0.5 per coordinate, then normalised),
// the shape of a bi-encoder's cosine embeddings of a topical collection.
func hnswClustered(rng *rand.Rand, n, dim, clusters int, centres [][]float32) ([]float32, [][]float32) {
	if centres == nil {
		centres = make([][]float32, clusters)
		for i := range centres {
			centres[i] = make([]float32, dim)
			for j := range centres[i] {
				centres[i][j] = float32(rng.NormFloat64())
			}
		}
	}
	flat := make([]float32, 0, n*dim)
	for range n {
		c := centres[rng.IntN(len(centres))]
		v := make([]float32, dim)
		var s float64
		for j := range v {
			v[j] = c[j] + float32(0.5*rng.NormFloat64())
			s += float64(v[j]) * float64(v[j])
		}
		for j := range v {
			v[j] /= float32(math.Sqrt(s))
		}
		flat = append(flat, v...)
	}
	return flat, centres
}

func hnswRows(flat []float32, dim int) [][]float32 {
	var out [][]float32
	for i := 0; i < len(flat); i += dim {
		out = append(out, flat[i:i+dim])
	}
	return out
}

// hnswWriteIndex writes and opens a flat index of vecs with ids d0000....
func hnswWriteIndex(t *testing.T, path string, vecs []float32, dim int, sim Similarity) *DenseIndex {
	t.Helper()
	n := len(vecs) / dim
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%04d", i)
	}
	if _, err := WriteDenseIndex(path, ids, dim, sim, vecs); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenDenseIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// hnswCheckSorted fails unless rs is in trec_eval's order.
func hnswCheckSorted(t *testing.T, what string, rs []Result) {
	t.Helper()
	for j := 1; j < len(rs); j++ {
		if !trecBefore(rs[j-1], rs[j]) {
			t.Fatalf("%s: results %d and %d out of trec_eval's order: %v, %v", what, j-1, j, rs[j-1], rs[j])
		}
	}
}

// TestHNSWRecall builds a graph over 5,000 clustered vectors of 64 floats
// with the defaults and measures recall@10 against exact search on 200
// queries from the same clusters. Measured when written: 0.944 at ef 10,
// 1.000 at ef 64 (and 0.34 with coder/hnsw v0.6.1 at any EfSearch, see
// hnsw.go). The thresholds leave room for the levels' random draw.
func TestHNSWRecall(t *testing.T) {
	const n, dim, k = 5000, 64, 10
	rng := rand.New(rand.NewPCG(1, 2))
	flat, centres := hnswClustered(rng, n, dim, 50, nil)
	qflat, _ := hnswClustered(rng, 200, dim, 50, centres)
	queries := hnswRows(qflat, dim)
	ix := hnswWriteIndex(t, filepath.Join(t.TempDir(), "c.dense"), flat, dim, SimCosine)
	h, err := BuildHNSW(ix, HNSWOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := h.Stats()
	if st.M != 16 || st.M0 != 32 || st.EfConstruction != 200 || st.EfSearch != DefaultHNSWEfSearch || st.Docs != n || st.Layers < 2 {
		t.Errorf("stats %+v", st)
	}
	if avg := float64(st.Links) / n; avg < 8 || avg > 32 {
		t.Errorf("%.1f links per document on layer 0", avg)
	}
	cmp, err := CompareHNSW(h, queries, k, []int{10, DefaultHNSWEfSearch}, DenseSearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := cmp.Write(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %.2f s\n%s", st.Seconds, out.String())
	if r := cmp.Rows[0]; r.Ef != 10 || r.Recall < 0.90 {
		t.Errorf("ef 10: recall@10 %.4f, want >= 0.90", r.Recall)
	}
	if r := cmp.Rows[1]; r.Recall < 0.98 {
		t.Errorf("ef %d: recall@10 %.4f, want >= 0.98", r.Ef, r.Recall)
	}
	if !(cmp.ExactBatchMS > 0 && cmp.ExactQueryMS > 0 && cmp.Rows[1].QueryMS > 0) || cmp.ExactQueryQueries != 200 {
		t.Errorf("timings %+v", cmp)
	}

	// Search: k results in trec_eval's order, with the exact dot products
	// (up to float32 rounding) of the documents both searches found.
	exact, err := ix.Search(queries, k, DenseSearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.Search(queries, k, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range queries {
		if len(got[i]) != k {
			t.Fatalf("query %d: %d results", i, len(got[i]))
		}
		hnswCheckSorted(t, fmt.Sprintf("query %d", i), got[i])
		want := map[string]float64{}
		for _, r := range exact[i] {
			want[r.DocID] = r.Score
		}
		for _, r := range got[i] {
			if s, ok := want[r.DocID]; ok && math.Abs(s-r.Score) > 1e-5 {
				t.Errorf("query %d, %s: score %v, exact %v", i, r.DocID, r.Score, s)
			}
		}
	}
	if _, err := h.Search(queries, 0, 0); err == nil {
		t.Error("k 0 accepted")
	}
	if _, err := h.Search([][]float32{make([]float32, 3)}, 1, 0); err == nil {
		t.Error("a query of the wrong size accepted")
	}
}

// TestHNSWTiesAsTrecEval searches integer-valued vectors, many repeated,
// with ef as large as the collection, so that the graph's search reaches
// every document: the result must then be the brute force's, ties broken
// by doc id descending as trec_eval does (the same fixture as
// TestDenseExactSearchEqualsBruteForce).
func TestHNSWTiesAsTrecEval(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, dim = 57, 5
	ids := make([]string, n)
	vecs := make([]float32, n*dim)
	for i := range n {
		ids[i] = fmt.Sprintf("d%03d", (i*37)%101)
		if i%4 == 3 {
			copy(vecs[i*dim:(i+1)*dim], vecs[(i-3)*dim:(i-2)*dim])
			continue
		}
		for j := range dim {
			vecs[i*dim+j] = float32(rng.IntN(7) - 3)
		}
	}
	path := filepath.Join(t.TempDir(), "x.dense")
	if _, err := WriteDenseIndex(path, ids, dim, SimDot, vecs); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenDenseIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	h, err := BuildHNSW(ix, HNSWOptions{M: 4, EfConstruction: 20, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	var queries [][]float32
	for range 9 {
		q := make([]float32, dim)
		for j := range q {
			q[j] = float32(rng.IntN(5) - 2)
		}
		queries = append(queries, q)
	}
	queries = append(queries, make([]float32, dim)) // a 57-way tie
	for _, k := range []int{1, 4, 10, n} {
		got, err := h.Search(queries, k, n)
		if err != nil {
			t.Fatal(err)
		}
		for i, q := range queries {
			want := denseBruteForce(ids, vecs, dim, q, k)
			if !slices.Equal(got[i], want) {
				t.Fatalf("k %d, query %d:\n got %v\nwant %v", k, i, got[i], want)
			}
		}
	}
}

// TestHNSWSaveLoad writes a graph beside its flat index and reads it back:
// the same statistics and the same rankings; a single-goroutine build is
// the same file every time; an empty index has an empty graph.
func TestHNSWSaveLoad(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	flat, centres := hnswClustered(rng, 600, 16, 8, nil)
	qflat, _ := hnswClustered(rng, 20, 16, 8, centres)
	queries := hnswRows(qflat, 16)
	dense := filepath.Join(dir, "p.dense")
	ix := hnswWriteIndex(t, dense, flat, 16, SimCosine)
	h, err := BuildHNSW(ix, HNSWOptions{M: 8, EfConstruction: 50, EfSearch: 30, Seed: 7, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	path := HNSWPath(dense)
	if path != dense+".hnsw" {
		t.Errorf("HNSWPath %s", path)
	}
	size, err := h.WriteFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != size {
		t.Fatalf("wrote %d bytes, the file: %v %v", size, fi, err)
	}
	h2, err := OpenHNSW(path, ix)
	if err != nil {
		t.Fatal(err)
	}
	a, b := h.Stats(), h2.Stats()
	a.Seconds, b.Seconds = 0, 0
	if a != b || b.EfSearch != 30 || b.Seed != 7 || b.M != 8 {
		t.Errorf("stats written %+v, read %+v", a, b)
	}
	for _, ef := range []int{0, 10, 100} {
		r1, err := h.Search(queries, 10, ef)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := h2.Search(queries, 10, ef)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r1 {
			if !slices.Equal(r1[i], r2[i]) {
				t.Fatalf("ef %d, query %d: before saving %v, after %v", ef, i, r1[i], r2[i])
			}
		}
	}
	again, err := BuildHNSW(ix, HNSWOptions{M: 8, EfConstruction: 50, EfSearch: 30, Seed: 7, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	path2 := filepath.Join(dir, "again.hnsw")
	if _, err := again.WriteFile(path2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(must2(os.ReadFile(path)), must2(os.ReadFile(path2))) {
		t.Error("two single-goroutine builds differ")
	}
	// A parallel build is another graph of the same quality.
	par, err := BuildHNSW(ix, HNSWOptions{M: 8, EfConstruction: 50, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := CompareHNSW(par, queries, 10, []int{100}, DenseSearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Rows[0].Recall < 0.98 {
		t.Errorf("parallel build: recall@10 %.3f at ef 100", cmp.Rows[0].Recall)
	}

	empty := hnswWriteIndex(t, filepath.Join(dir, "empty.dense"), nil, 16, SimDot)
	he, err := BuildHNSW(empty, HNSWOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := he.WriteFile(filepath.Join(dir, "empty.hnsw")); err != nil {
		t.Fatal(err)
	}
	he2, err := OpenHNSW(filepath.Join(dir, "empty.hnsw"), empty)
	if err != nil {
		t.Fatal(err)
	}
	res, err := he2.Search(queries[:2], 5, 0)
	if err != nil || len(res) != 2 || len(res[0]) != 0 {
		t.Errorf("empty graph: %v %v", res, err)
	}

	if _, err := BuildHNSW(ix, HNSWOptions{M: 1}); err == nil {
		t.Error("M 1 accepted")
	}
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestHNSWCorrupt damages the file in several ways, and opens it with a
// flat index it was not built on: each is an error naming the file (both
// files for the mismatch), never a graph that searches wrong.
func TestHNSWCorrupt(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	flat, _ := hnswClustered(rng, 300, 8, 4, nil)
	dense := filepath.Join(dir, "p.dense")
	ix := hnswWriteIndex(t, dense, flat, 8, SimCosine)
	h, err := BuildHNSW(ix, HNSWOptions{M: 4, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	path := HNSWPath(dense)
	if _, err := h.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	good := must2(os.ReadFile(path))
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		msg    string
	}{
		{"truncated header", func(b []byte) []byte { return b[:40] }, "truncated"},
		{"truncated links", func(b []byte) []byte { return b[:len(b)-5] }, "truncated or padded"},
		{"padded", func(b []byte) []byte { return append(b, 0) }, "truncated or padded"},
		{"flipped link", func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b }, "checksum mismatch"},
		{"flipped header", func(b []byte) []byte { b[25] ^= 1; return b }, "header checksum"},
		{"not HNSW", func(b []byte) []byte { copy(b, "IRDENSE1"); return b }, "not an HNSW index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".hnsw")
			if err := os.WriteFile(bad, tc.damage(slices.Clone(good)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := OpenHNSW(bad, ix)
			var ce *CorruptHNSWError
			if !errors.As(err, &ce) || ce.Path != bad || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%v, want a CorruptHNSWError naming %s: %s", err, bad, tc.msg)
			}
		})
	}
	// The same shape, other vectors: a graph that does not fit them.
	other, _ := hnswClustered(rng, 300, 8, 4, nil)
	otherPath := filepath.Join(dir, "other.dense")
	ox := hnswWriteIndex(t, otherPath, other, 8, SimCosine)
	_, err = OpenHNSW(path, ox)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), otherPath) || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a graph opened with another index: %v", err)
	}
	if _, err := OpenHNSW(filepath.Join(dir, "none.hnsw"), ix); err == nil || !strings.Contains(err.Error(), "none.hnsw") {
		t.Errorf("a missing file: %v", err)
	}
}

// TestHNSWRetriever checks the pipeline stage: a tiny bi-encoder's
// passages in a flat index, the graph over them searched with ef as large
// as the collection, ranks as DenseRetriever does; an encoder of another
// size is refused at start-up.
func TestHNSWRetriever(t *testing.T) {
	dir := t.TempDir()
	words := []string{"the", "dog", "cat", "a", "barked", "sat", "on", "mat", "ran", "far", "red", "big"}
	vocab, tok := denseTinyVocab(t, dir, words...)
	cfg := BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolMean, Similarity: SimCosine, QueryMaxLen: 16, PassageMaxLen: 16}
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := NewBiEncoder(store, cfg, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	var docs []Document
	for i := range 40 {
		docs = append(docs, Document{ID: fmt.Sprintf("p%02d", i), Text: strings.Join([]string{words[i%12], words[(i*5+1)%12], words[(i*7+3)%12]}, " ")})
	}
	path := filepath.Join(dir, RunDenseIndexFile)
	if _, err := EncodeCorpus(m.Passage, docs, path, EncodeCorpusOptions{Batch: 8}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenDenseIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	h, err := BuildHNSW(ix, HNSWOptions{M: 4, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	hr, err := NewHNSWRetriever(m.Query, h, HNSWRetrieverOptions{Batch: 3, Ef: len(docs)})
	if err != nil {
		t.Fatal(err)
	}
	dr, err := NewDenseRetriever(m.Query, ix, DenseRetrieverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	queries := []string{"the dog barked", "a red cat", "ran far", "big mat"}
	got, err := hr.Retrieve(context.Background(), queries, 5)
	if err != nil {
		t.Fatal(err)
	}
	want, err := dr.Retrieve(context.Background(), queries, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := range queries {
		hnswCheckSorted(t, queries[i], got[i])
		if len(got[i]) != 5 {
			t.Fatalf("%q: %d results", queries[i], len(got[i]))
		}
		for j := range got[i] {
			if got[i][j].DocID != want[i][j].DocID || math.Abs(got[i][j].Score-want[i][j].Score) > 1e-5 {
				t.Fatalf("%q: HNSW %v, exact %v", queries[i], got[i], want[i])
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := hr.Retrieve(ctx, queries, 5); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled context: %v", err)
	}
	other := hnswWriteIndex(t, filepath.Join(dir, "o.dense"), make([]float32, 8), 8, SimCosine)
	ho, err := BuildHNSW(other, HNSWOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewHNSWRetriever(m.Query, ho, HNSWRetrieverOptions{}); err == nil || !strings.Contains(err.Error(), "16-float") {
		t.Errorf("an encoder of 16 floats on an index of 8: %v", err)
	}
}

// TestHNSWMeasureLarge is README.md's measurement: 117,659 clustered unit
// vectors of 128 floats (the WordNet benchmark's size and the small
// configs' dimension; 1,000 clusters), a graph with the defaults built on
// one goroutine, and 1,000 queries searched exactly and with the graph.
// It takes minutes, so it runs only with IR_HNSW_MEASURE=1.
func TestHNSWMeasureLarge(t *testing.T) {
	if os.Getenv("IR_HNSW_MEASURE") != "1" {
		t.Skip("set IR_HNSW_MEASURE=1 to measure (minutes)")
	}
	const n, dim = 117659, 128
	rng := rand.New(rand.NewPCG(11, 12))
	flat, centres := hnswClustered(rng, n, dim, 1000, nil)
	qflat, _ := hnswClustered(rng, 1000, dim, 1000, centres)
	ix := hnswWriteIndex(t, filepath.Join(t.TempDir(), "large.dense"), flat, dim, SimCosine)
	h, err := BuildHNSW(ix, HNSWOptions{Workers: 1, Progress: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	size, err := h.WriteFile(HNSWPath(ix.Path()))
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := CompareHNSW(h, hnswRows(qflat, dim), 10, nil, DenseSearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmp.Write(&out)
	t.Logf("%+v\nflat index %d bytes, graph file %d bytes\n%s", h.Stats(), ix.Bytes(), size, out.String())
}
