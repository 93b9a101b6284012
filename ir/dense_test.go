package ir

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// denseTensor is a float32 tensor of the given shape on the CPU.
func denseTensor(t *testing.T, v []float32, shape ...int64) *ts.Tensor {
	t.Helper()
	return torchmods.FromSlice(v, shape, gotch.CPU)
}

func denseFloats(t *ts.Tensor) []float64 {
	return t.MustTotype(gotch.Double, false).MustContiguous(true).Float64Values()
}

func denseNear(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			return false
		}
	}
	return true
}

func TestDensePoolingAndSimilarity(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	// Two sequences of three tokens, hidden size 2; the second has one
	// real token, the first two.
	hidden := denseTensor(t, []float32{1, 2, 3, 4, 100, 100, 5, 6, 100, 100, 100, 100}, 2, 3, 2)
	mask := torchmods.FromSlice([]int64{1, 1, 0, 1, 0, 0}, []int64{2, 3}, gotch.CPU)
	if got := denseFloats(PoolHidden(hidden, mask, PoolCLS)); !denseNear(got, []float64{1, 2, 5, 6}, 0) {
		t.Errorf("cls pooling %v", got)
	}
	// Mean over the real tokens only: padding (100) never counts.
	if got := denseFloats(PoolHidden(hidden, mask, PoolMean)); !denseNear(got, []float64{2, 3, 5, 6}, 1e-6) {
		t.Errorf("mean pooling %v", got)
	}
	// A row of zeros stays zero (the norm is clamped), others get length 1.
	n := denseFloats(NormalizeRows(denseTensor(t, []float32{3, 4, 0, 0}, 2, 2)))
	if !denseNear(n, []float64{0.6, 0.8, 0, 0}, 1e-7) {
		t.Errorf("normalised %v", n)
	}
	q := denseTensor(t, []float32{1, 2, 0, 1}, 2, 2)
	p := denseTensor(t, []float32{3, 4, -1, 1, 2, 0}, 3, 2)
	if got := denseFloats(ScoreMatrix(q, p)); !denseNear(got, []float64{11, 1, 2, 4, 1, 0}, 0) {
		t.Errorf("dot scores %v", got)
	}
	// Cosine is the dot product of normalised rows.
	if got := denseFloats(ScoreMatrix(NormalizeRows(q), NormalizeRows(p))); !denseNear(got, []float64{11 / (math.Sqrt(5) * 5), 1 / (math.Sqrt(5) * math.Sqrt(2)), 2 / (math.Sqrt(5) * 2), 0.8, 1 / math.Sqrt(2), 0}, 1e-6) {
		t.Errorf("cosine scores %v", got)
	}
	for _, s := range []string{"cls", "mean"} {
		if _, err := ParsePooling(s); err != nil {
			t.Error(err)
		}
	}
	for _, s := range []string{"dot", "cosine"} {
		if _, err := ParseSimilarity(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParsePooling("max"); err == nil {
		t.Error("max pooling accepted")
	}
	if _, err := ParseSimilarity("l2"); err == nil {
		t.Error("l2 similarity accepted")
	}
}

// TestDenseContrastiveLossByHand checks DPR's loss against the softmax
// cross-entropy written out: mean over queries of log Σ_j exp(s_ij/τ) −
// s_i,pos/τ, over the columns not excluded.
func TestDenseContrastiveLossByHand(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	s := [][]float64{{2, 1, 0, -1}, {0.5, 1.5, -1, 3}}
	pos := []int64{0, 2}
	flat := []float32{}
	for _, r := range s {
		for _, v := range r {
			flat = append(flat, float32(v))
		}
	}
	hand := func(tau float64, exclude [][]bool) float64 {
		var sum float64
		for i, r := range s {
			var z float64
			for j, v := range r {
				if exclude == nil || !exclude[i][j] || int64(j) == pos[i] {
					z += math.Exp(v / tau)
				}
			}
			sum += math.Log(z) - r[pos[i]]/tau
		}
		return sum / float64(len(s))
	}
	scores := denseTensor(t, flat, 2, 4)
	for _, tau := range []float64{1, 0.5} {
		got := ContrastiveLoss(scores, pos, nil, tau).Float64Values()[0]
		if want := hand(tau, nil); math.Abs(got-want) > 1e-5 {
			t.Errorf("tau %v: loss %v, by hand %v", tau, got, want)
		}
	}
	// Query 1's column 3 is a false negative (judged relevant): it leaves
	// the softmax. Query 0's own positive is never excluded.
	ex := [][]bool{{true, false, false, false}, {false, false, false, true}}
	var exFlat []bool
	for _, r := range ex {
		exFlat = append(exFlat, r...)
	}
	got := ContrastiveLoss(scores, pos, exFlat, 1).Float64Values()[0]
	if want := hand(1, ex); math.Abs(got-want) > 1e-5 {
		t.Errorf("with exclusions: loss %v, by hand %v", got, want)
	}
}

// bruteForce ranks every document by an exact dot product and sorts as
// trec_eval does.
func denseBruteForce(ids []string, vecs []float32, dim int, q []float32, k int) []Result {
	var rs []Result
	for i, id := range ids {
		var s float64
		for j := range dim {
			s += float64(vecs[i*dim+j]) * float64(q[j])
		}
		rs = append(rs, Result{DocID: id, Score: s})
	}
	SortTREC(rs)
	return rs[:min(k, len(rs))]
}

// TestDenseExactSearchEqualsBruteForce searches integer-valued vectors,
// whose dot products float32 computes exactly in any order, so that the
// matrix products' scores and the brute force's are equal and only the
// ranking logic is under test. Many documents tie (repeated vectors), so
// the doc-id rule decides across chunk boundaries.
func TestDenseExactSearchEqualsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, dim = 57, 5
	ids := make([]string, n)
	vecs := make([]float32, n*dim)
	for i := range n {
		ids[i] = fmt.Sprintf("d%03d", (i*37)%101) // ids in no particular order
		if i%4 == 3 {
			copy(vecs[i*dim:(i+1)*dim], vecs[(i-3)*dim:(i-2)*dim]) // a tie with document i-3
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
	var queries [][]float32
	for range 9 {
		q := make([]float32, dim)
		for j := range q {
			q[j] = float32(rng.IntN(5) - 2)
		}
		queries = append(queries, q)
	}
	queries = append(queries, make([]float32, dim)) // every document scores 0: a 57-way tie
	for _, chunk := range []int{1, 3, 7, 64} {
		resident, err := ix.residentChunks(gotch.CPU, chunk)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []int{1, 4, 10, n, n + 5} {
			streamed, err := ix.Search(queries, k, DenseSearchOptions{ChunkRows: chunk})
			if err != nil {
				t.Fatal(err)
			}
			kept, err := ix.search(queries, k, gotch.CPU, chunk, resident)
			if err != nil {
				t.Fatal(err)
			}
			for qi, q := range queries {
				want := denseBruteForce(ids, vecs, dim, q, k)
				if !reflect.DeepEqual(streamed[qi], want) {
					t.Fatalf("chunk %d, k %d, query %d:\n got %v\nwant %v", chunk, k, qi, streamed[qi], want)
				}
				if !reflect.DeepEqual(kept[qi], want) {
					t.Fatalf("resident chunks %d, k %d, query %d:\n got %v\nwant %v", chunk, k, qi, kept[qi], want)
				}
			}
		}
		for _, r := range resident {
			r.MustDrop()
		}
	}
	if _, err := ix.Search([][]float32{{1, 2}}, 3, DenseSearchOptions{}); err == nil {
		t.Error("a query of the wrong size was searched")
	}
	if _, err := ix.Search([][]float32{{1, 2, float32(math.NaN()), 0, 0}}, 3, DenseSearchOptions{}); err == nil {
		t.Error("a NaN query was searched")
	}
}

func TestDenseIndexRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.dense")
	ids := []string{"b", "a", "c"}
	vecs := []float32{0.6, 0.8, 1, 0, 0, -1}
	size, err := WriteDenseIndex(path, ids, 2, SimCosine, vecs)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := OpenDenseIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 3 || ix.Dim() != 2 || ix.Similarity() != SimCosine || ix.Bytes() != size {
		t.Errorf("index: %d docs of %d, %s, %d bytes (wrote %d)", ix.Len(), ix.Dim(), ix.Similarity(), ix.Bytes(), size)
	}
	for i, id := range ids {
		if ix.DocID(i) != id || !slices.Equal(ix.Vector(i), vecs[2*i:2*i+2]) {
			t.Errorf("document %d: %q %v", i, ix.DocID(i), ix.Vector(i))
		}
	}
	ix.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := func(name string, b []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenDenseIndex(p)
		var ce *CorruptDenseIndexError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want a CorruptDenseIndexError naming the file", name, err)
		}
	}
	flip := func(off int) []byte {
		b := slices.Clone(good)
		b[off] ^= 0x10
		return b
	}
	corrupt("vector.dense", flip(denseHeaderSize+3))
	corrupt("id.dense", flip(len(good)-1))
	corrupt("header.dense", flip(13))
	corrupt("truncated.dense", good[:len(good)-2])
	corrupt("short.dense", good[:20])
	corrupt("padded.dense", append(slices.Clone(good), 0))
	corrupt("magic.dense", append([]byte("NOTDENSE"), good[8:]...))

	// The writer refuses what would make a bad index.
	if _, err := WriteDenseIndex(filepath.Join(dir, "nan.dense"), ids, 2, SimDot, []float32{1, 0, float32(math.Inf(1)), 0, 0, 0}); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("non-finite vector: %v, want an error naming document a", err)
	}
	if _, err := WriteDenseIndex(filepath.Join(dir, "dup.dense"), []string{"a", "a"}, 1, SimDot, []float32{1, 2}); err == nil {
		t.Error("duplicate ids accepted")
	}
	w, err := CreateDenseIndex(filepath.Join(dir, "partial.dense"), ids, 2, SimDot)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]int{0, 2}, []float32{1, 1, 2, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("a row never written: %v, want an error naming document a", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partial.dense")); !os.IsNotExist(err) {
		t.Error("a failed index was left at its path")
	}
}

func TestDenseICTSentences(t *testing.T) {
	text := "dog, domestic dog; the dog barked all night. It ran!  Then 3.5 more; canine"
	ss := ictSentences(text)
	var got []string
	for _, s := range ss {
		got = append(got, text[s[0]:s[1]])
	}
	want := []string{"dog, domestic dog", "the dog barked all night.", "It ran!", "Then 3.5 more", "canine"}
	if !slices.Equal(got, want) {
		t.Fatalf("sentences %q, want %q", got, want)
	}
	removed := []string{
		"the dog barked all night. It ran!  Then 3.5 more; canine",
		"dog, domestic dog; It ran!  Then 3.5 more; canine",
		"dog, domestic dog; the dog barked all night. Then 3.5 more; canine",
		"dog, domestic dog; the dog barked all night. It ran!  canine",
		"dog, domestic dog; the dog barked all night. It ran!  Then 3.5 more",
	}
	for i, w := range removed {
		if r := ictRemove(text, ss, i); r != w {
			t.Errorf("without sentence %d: %q, want %q", i, r, w)
		}
	}
	if n := len(ictSentences("entity")); n != 1 {
		t.Errorf("one-word document: %d sentences", n)
	}
}

// tinyBert is a BERT small enough to train in a test.
func denseTinyBert() torchmods.BertConfig {
	return torchmods.BertConfig{HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 32, HiddenAct: "gelu",
		MaxPositionEmbeddings: 64, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02}
}

// tinyVocab writes a vocab.txt with BERT's specials and the given words.
func denseTinyVocab(t *testing.T, dir string, words ...string) (string, *mlm.Tokenizer) {
	t.Helper()
	path := filepath.Join(dir, "vocab.txt")
	if err := mlm.WriteVocab(path, append(slices.Clone(mlm.Specials), words...)); err != nil {
		t.Fatal(err)
	}
	tok, err := mlm.LoadTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, tok
}

// saveTower writes the store's parameters under prefix, renamed to
// newPrefix, with extra tensors, as safetensors.
func denseSaveTower(t *testing.T, path string, store *torchmods.Store, prefix, newPrefix string, extra map[string]*ts.Tensor, skip string) {
	t.Helper()
	var names []string
	var tensors []*ts.Tensor
	for _, p := range store.Params() {
		if rest, ok := strings.CutPrefix(p.Name, prefix); ok && p.Name != skip {
			names = append(names, newPrefix+rest)
			tensors = append(tensors, p.Tensor)
		}
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for k := range extra {
			if !yield(k) {
				return
			}
		}
	}) {
		names = append(names, n)
		tensors = append(tensors, extra[n])
	}
	if err := torchmods.SaveTensors(path, names, tensors, "", nil); err != nil {
		t.Fatal(err)
	}
}

func denseWriteJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func denseCopyInto(t *testing.T, src, dir string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var denseTexts = []string{"the dog barked", "a cat", "dog cat dog", ""}

func denseSameEmbeddings(t *testing.T, what string, a, b *DenseEncoder) {
	t.Helper()
	x, err := a.Encode(denseTexts, 2)
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Encode(denseTexts, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		for j := range x[i] {
			if math.Abs(float64(x[i][j]-y[i][j])) > 1e-5 {
				t.Fatalf("%s: text %d element %d: %v, reference %v", what, i, j, y[i][j], x[i][j])
			}
		}
	}
}

// TestDenseLoadDPRCheckpoints writes tiny DPRQuestionEncoder and
// DPRContextEncoder folders, with the names HF's DPR classes save
// (question_encoder.bert_model.*, ctx_encoder.bert_model.*, the
// position_ids buffer and an old-style pooler), loads them, and checks that
// the towers compute what the model that wrote them computes; then that a
// missing, misshapen or unknown tensor is an error naming it.
func TestDenseLoadDPRCheckpoints(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	dir := t.TempDir()
	vocab, tok := denseTinyVocab(t, dir, "the", "dog", "cat", "a", "barked")
	cfg := BiEncoderConfig{Bert: denseTinyBert(), Pooling: PoolCLS, Similarity: SimDot, QueryMaxLen: 16, PassageMaxLen: 32}
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	ref, err := NewBiEncoder(store, cfg, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	extra := func(prefix string) map[string]*ts.Tensor {
		return map[string]*ts.Tensor{
			prefix + "embeddings.position_ids": torchmods.FromSlice(make([]int64, 64), []int64{1, 64}, gotch.CPU),
			prefix + "pooler.dense.weight":     ts.MustZeros([]int64{16, 16}, gotch.Float, gotch.CPU),
		}
	}
	folder := func(name, arch, prefix string, extra map[string]*ts.Tensor, skip string) string {
		d := filepath.Join(dir, name)
		hf := ref.Cfg.Bert.HFConfig()
		hf["model_type"], hf["architectures"], hf["projection_dim"] = "dpr", []string{arch}, 0
		denseWriteJSON(t, filepath.Join(d, "config.json"), hf)
		denseSaveTower(t, filepath.Join(d, "model.safetensors"), store, prefix, prefix, extra, skip)
		denseCopyInto(t, vocab, d)
		return d
	}
	q := folder("dpr-q", "DPRQuestionEncoder", QueryPrefix, extra(QueryPrefix), "")
	c := folder("dpr-c", "DPRContextEncoder", PassagePrefix, extra(PassagePrefix), "")
	var log strings.Builder
	m, err := OpenBiEncoder(q, OpenBiEncoderOptions{Passage: c, QueryMaxLen: 16, PassageMaxLen: 32, W: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Cfg.Shared || m.Cfg.Pooling != PoolCLS || m.Cfg.Similarity != SimDot {
		t.Errorf("DPR opened as %+v", m.Cfg)
	}
	denseSameEmbeddings(t, "question encoder", ref.Query, m.Query)
	denseSameEmbeddings(t, "context encoder", ref.Passage, m.Passage)
	if !strings.Contains(log.String(), "pooler.dense.weight") || !strings.Contains(log.String(), "position_ids") {
		t.Errorf("the load report does not name what it dropped:\n%s", log.String())
	}
	if _, err := OpenBiEncoder(q, OpenBiEncoderOptions{}); err == nil {
		t.Error("a DPR question encoder opened without its context encoder")
	}

	// A missing tensor, a wrong shape and an unknown tensor under the
	// tower's names are errors that name the tensor.
	gone := QueryPrefix + "encoder.layer.0.output.dense.weight"
	bad := folder("dpr-missing", "DPRQuestionEncoder", QueryPrefix, nil, gone)
	if _, err := OpenBiEncoder(bad, OpenBiEncoderOptions{Passage: c}); err == nil || !strings.Contains(err.Error(), gone) {
		t.Errorf("missing tensor: %v, want an error naming %s", err, gone)
	}
	wrong := QueryPrefix + "embeddings.word_embeddings.weight"
	bad = folder("dpr-shape", "DPRQuestionEncoder", QueryPrefix, map[string]*ts.Tensor{wrong: ts.MustZeros([]int64{tok.Size, 8}, gotch.Float, gotch.CPU)}, wrong)
	if _, err := OpenBiEncoder(bad, OpenBiEncoderOptions{Passage: c}); err == nil || !strings.Contains(err.Error(), wrong) {
		t.Errorf("wrong shape: %v, want an error naming %s", err, wrong)
	}
	unknown := QueryPrefix + "encoder.layer.5.output.dense.weight"
	bad = folder("dpr-unknown", "DPRQuestionEncoder", QueryPrefix, map[string]*ts.Tensor{unknown: ts.MustZeros([]int64{16, 32}, gotch.Float, gotch.CPU)}, "")
	if _, err := OpenBiEncoder(bad, OpenBiEncoderOptions{Passage: c}); err == nil || !strings.Contains(err.Error(), unknown) {
		t.Errorf("unknown tensor: %v, want an error naming %s", err, unknown)
	}
	// The context encoder's names in a question encoder's folder.
	bad = folder("dpr-mixed", "DPRQuestionEncoder", PassagePrefix, nil, "")
	if _, err := OpenBiEncoder(bad, OpenBiEncoderOptions{Passage: c}); err == nil || !strings.Contains(err.Error(), PassagePrefix) {
		t.Errorf("context names in a question encoder: %v, want an error naming them", err)
	}
}

// TestDenseLoadSentenceTransformers writes a tiny sentence-transformers
// folder (a BertModel saved without the bert. prefix, mean pooling, a
// Normalize module) and checks it opens as one shared tower with mean
// pooling and cosine similarity, computing the reference's vectors.
func TestDenseLoadSentenceTransformers(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	dir := t.TempDir()
	vocab, tok := denseTinyVocab(t, dir, "the", "dog", "cat", "a", "barked")
	cfg := BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolMean, Similarity: SimCosine, QueryMaxLen: 20, PassageMaxLen: 20}
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	ref, err := NewBiEncoder(store, cfg, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "st")
	hf := ref.Cfg.Bert.HFConfig()
	hf["model_type"], hf["architectures"] = "bert", []string{"BertModel"}
	denseWriteJSON(t, filepath.Join(st, "config.json"), hf)
	denseSaveTower(t, filepath.Join(st, "model.safetensors"), store, SharedPrefix, "",
		map[string]*ts.Tensor{"pooler.dense.weight": ts.MustZeros([]int64{16, 16}, gotch.Float, gotch.CPU)}, "")
	denseCopyInto(t, vocab, st)
	denseWriteJSON(t, filepath.Join(st, "modules.json"), []map[string]any{
		{"idx": 0, "name": "0", "path": "", "type": stTransformer},
		{"idx": 1, "name": "1", "path": "1_Pooling", "type": stPooling},
		{"idx": 2, "name": "2", "path": "2_Normalize", "type": stNormalize},
	})
	pooling := map[string]any{"word_embedding_dimension": 16, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true,
		"pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false}
	denseWriteJSON(t, filepath.Join(st, "1_Pooling", "config.json"), pooling)
	denseWriteJSON(t, filepath.Join(st, "sentence_bert_config.json"), map[string]any{"max_seq_length": 20, "do_lower_case": false})
	m, err := OpenBiEncoder(st, OpenBiEncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Cfg.Shared || m.Cfg.Pooling != PoolMean || m.Cfg.Similarity != SimCosine || m.Cfg.QueryMaxLen != 20 || m.Query.Bert != m.Passage.Bert {
		t.Errorf("sentence-transformers opened as %+v", m.Cfg)
	}
	denseSameEmbeddings(t, "sentence embedder", ref.Query, m.Query)
	v, err := m.Query.Encode([]string{"the dog"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var norm float64
	for _, x := range v[0] {
		norm += float64(x) * float64(x)
	}
	if math.Abs(norm-1) > 1e-5 {
		t.Errorf("a normalised embedding has squared norm %v", norm)
	}
	// Max pooling is refused, naming the key.
	pooling["pooling_mode_max_tokens"] = true
	denseWriteJSON(t, filepath.Join(st, "1_Pooling", "config.json"), pooling)
	if _, err := OpenBiEncoder(st, OpenBiEncoderOptions{}); err == nil || !strings.Contains(err.Error(), "pooling_mode_max_tokens") {
		t.Errorf("max pooling: %v, want an error naming it", err)
	}
}

// tinyIRBenchmark is a synthetic benchmark: documents of three sentences
// (so ICT can cut them) and one query per document, judged against it.
func denseTinyIRBenchmark(t *testing.T) string {
	t.Helper()
	animals := []string{"dog", "cat", "horse", "cow", "sheep", "goat", "duck", "hen", "fox", "wolf", "bear", "deer"}
	traits := []string{"loyal", "quiet", "fast", "big", "woolly", "stubborn"}
	b := &Benchmark{Queries: map[string]map[string]string{}, Qrels: map[string]Qrels{}}
	for _, sp := range Splits {
		b.Queries[sp], b.Qrels[sp] = map[string]string{}, Qrels{}
	}
	for i, a := range animals {
		for j, tr := range traits[:3] {
			id := fmt.Sprintf("%s%d", a, j)
			trait := traits[(i+j)%len(traits)]
			b.Docs = append(b.Docs, Document{ID: id, Text: fmt.Sprintf("%s, %s %s; the %s %s is %s; animal, %s", a, tr, a, trait, a, tr, trait)})
			sp := SplitTrain
			if (i+j)%4 == 0 {
				sp = SplitDev
			}
			b.Queries[sp][id] = fmt.Sprintf("a %s animal that is %s", trait, tr)
			b.Qrels[sp][id] = map[string]int{id: 1}
		}
	}
	dir := t.TempDir()
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func denseFinite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

// TestDenseICTThenDenseEndToEnd pre-trains with ICT for a few steps, then
// trains ir.dense from that run with BM25 hard negatives for a few more,
// and checks the metrics are finite, the run's files are there, and that
// reopening the run as a retriever ranks as the evaluation did.
func TestDenseICTThenDenseEndToEnd(t *testing.T) {
	bench := denseTinyIRBenchmark(t)
	work := t.TempDir()
	trainer := func(tc *train.TrainerConfig) {
		tc.MaxSteps, tc.LogEvery, tc.TensorBoard, tc.KeepCheckpoints = 3, 1, false, 1
	}
	ic := DefaultICT()
	trainer(&ic.Trainer)
	ic.Tokenizer, ic.VocabSize, ic.Model = filepath.Join(work, "vocab.txt"), 120, denseTinyBert()
	ic.Encoder.QueryMaxLen, ic.Encoder.PassageMaxLen = 16, 32
	ic.Data.Benchmark, ic.Data.Batch = bench, 4
	ic.Eval.Split = SplitDev // zero-shot retrieval after ICT
	ictOut := filepath.Join(work, "ict")
	ir, err := ICTTask.Start(ic, ictOut, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if ir.ICTDocs != 36 || ir.Steps != 3 || !denseFinite(ir.LastLoss) || ir.DenseEvaluation == nil || !denseFinite(ir.MRR10, ir.NDCG10, ir.Recall100) {
		t.Fatalf("ir.ict result %+v", ir)
	}
	for _, f := range []string{BiEncoderFile, "vocab.txt", "passages.dense", "run.dev.trec"} {
		if !denseExists(filepath.Join(ictOut, f)) {
			t.Errorf("ir.ict run lacks %s", f)
		}
	}

	dc := DefaultDense()
	trainer(&dc.Trainer)
	dc.Pretrained = ictOut
	dc.Model = denseTinyBert() // the ICT run's sizes: a config may keep its [model] when it matches
	dc.Encoder.QueryMaxLen, dc.Encoder.PassageMaxLen = 16, 32
	dc.Data.Benchmark, dc.Data.Batch = bench, 4
	dc.Negatives.Hard, dc.Negatives.Depth = 2, 5
	dc.Optim.LR = 1e-3
	dc.Eval.Batch = 5
	denseOut := filepath.Join(work, "dense")
	var log strings.Builder
	dr, err := DenseTask.Start(dc, denseOut, false, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if dr.Queries != 9 || dr.Docs != 36 || dr.TrainQueries != 27 || dr.Steps != 3 || !denseFinite(dr.MRR10, dr.NDCG10, dr.Recall100) ||
		dr.IndexBytes <= 36*16*4 || !(dr.EncodeSeconds > 0) {
		t.Fatalf("ir.dense result %+v\n%s", dr, log.String())
	}
	if !strings.Contains(log.String(), "query tower (question_encoder.bert_model) <- ") {
		t.Errorf("ir.dense did not report loading the ICT run:\n%s", log.String())
	}
	neg, err := ReadRunFile(filepath.Join(denseOut, "hard_negatives.trec"))
	if err != nil {
		t.Fatal(err)
	}
	for qid, rs := range neg {
		for _, r := range rs {
			if r.DocID == qid {
				t.Errorf("query %s has its own relevant document as a hard negative", qid)
			}
		}
	}

	// The run reopened for serving ranks the dev queries as its run file:
	// the same documents in the same order, with the same scores up to
	// float rounding (the batches differ), a near tie alone allowed to
	// swap.
	run, err := ReadRunFile(filepath.Join(denseOut, "run.dev.trec"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenBiEncoder(denseOut, OpenBiEncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ix, err := OpenDenseIndex(filepath.Join(denseOut, "passages.dense"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	r, err := NewDenseRetriever(m.Query, ix, DenseRetrieverOptions{Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := ReadBenchmarkDir(bench)
	if err != nil {
		t.Fatal(err)
	}
	dev := b.QueryList(SplitDev)
	texts := make([]string, len(dev))
	for i, q := range dev {
		texts[i] = q.Text
	}
	got, err := r.Retrieve(context.Background(), texts, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(dev) != 9 || len(got) != len(dev) {
		t.Fatalf("%d dev queries, %d result lists", len(dev), len(got))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-4*max(1, math.Abs(a)) }
	for i, q := range dev {
		want := run[q.ID]
		SortTREC(want)
		if len(want) != 36 || len(got[i]) != 5 {
			t.Fatalf("query %s: the run file ranks %d documents (want the 36 of the collection), the retriever returned %d of 5", q.ID, len(want), len(got[i]))
		}
		inRun := map[string]float64{}
		for _, r := range want {
			inRun[r.DocID] = r.Score
		}
		for j, res := range got[i] {
			if !near(res.Score, want[j].Score) {
				t.Errorf("query %s rank %d: score %v, the run's %v", q.ID, j+1, res.Score, want[j].Score)
			}
			if s, ok := inRun[res.DocID]; res.DocID != want[j].DocID && !(ok && near(s, want[j].Score)) {
				t.Errorf("query %s rank %d: %s, the run's %s (scores %v and %v: not a near tie)", q.ID, j+1, res.DocID, want[j].DocID, s, want[j].Score)
			}
		}
	}

	// The same data from scratch with one shared tower, mean pooling and
	// cosine similarity (the default temperature, cosine's 0.05), in-batch
	// negatives only: 80 steps lift dev MRR@10 well above one step's.
	// (Recall@100 says nothing here: 36 documents, all of them ranked.)
	scratch := func(steps int64) *DenseResult {
		sc := DefaultDense()
		trainer(&sc.Trainer)
		sc.Trainer.MaxSteps, sc.Trainer.LogEvery = steps, 1000
		sc.Tokenizer, sc.VocabSize, sc.Model = filepath.Join(work, "vocab.txt"), 120, denseTinyBert()
		sc.Encoder = EncoderKeys{Shared: true, Pooling: "mean", Similarity: "cosine", QueryMaxLen: 16, PassageMaxLen: 32}
		sc.Negatives.Hard = 0
		sc.Optim.LR = 2e-3
		sc.Data.Benchmark, sc.Data.Batch = bench, 8
		sr, err := DenseTask.Start(sc, filepath.Join(work, fmt.Sprintf("scratch-%d", steps)), false, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !denseFinite(sr.MRR10, sr.NDCG10, sr.Recall100) {
			t.Fatalf("from scratch, %d steps: %+v", steps, sr)
		}
		return sr
	}
	before, after := scratch(1), scratch(80)
	t.Logf("shared cosine tower from scratch: dev MRR@10 %.3f after 1 step, %.3f after 80", before.MRR10, after.MRR10)
	if !(after.MRR10 > before.MRR10+0.1) {
		t.Errorf("shared cosine tower from scratch: dev MRR@10 after 1 step %.3f, after 80 steps %.3f: training did not help", before.MRR10, after.MRR10)
	}
	// [model] must describe the pretrained run's BERT.
	dc.Model.IntermediateSize = 64
	if _, err := DenseTask.Start(dc, filepath.Join(work, "bad-model"), false, io.Discard); err == nil || !strings.Contains(err.Error(), "[model]") {
		t.Errorf("[model] unlike the pretrained run's: %v", err)
	}
	dc.Model = denseTinyBert()
	// A shared model cannot start from a two-tower run.
	dc.Encoder.Shared = true
	if _, err := DenseTask.Start(dc, filepath.Join(work, "bad"), false, io.Discard); err == nil || !strings.Contains(err.Error(), "shared") {
		t.Errorf("a two-tower run into a shared model: %v", err)
	}
}

// TestDenseBatchNegatives checks a batch's layout (each query's positive,
// then its hard negatives) and that a passage judged relevant to a query is
// excluded from its negatives wherever it stands.
func TestDenseBatchNegatives(t *testing.T) {
	dir := t.TempDir()
	vocab, tok := denseTinyVocab(t, dir, "a", "b", "c", "d")
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := NewBiEncoder(store, BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolCLS, Similarity: SimDot, QueryMaxLen: 8, PassageMaxLen: 8}, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	c := &denseCorpus{docs: []Document{{"A", "a"}, {"B", "b"}, {"C", "c"}, {"D", "d"}},
		train:      []Query{{"q1", "a"}, {"q2", "b"}},
		trainQrels: Qrels{"q1": {"A": 1, "B": 1}, "q2": {"B": 1}}}
	c.index = map[string]int{"A": 0, "B": 1, "C": 2, "D": 3}
	// q2's only hard negative is A; q1's are C and D.
	ex, noNeg, dropped := denseExamples(c, Run{"q1": {{"C", 2}, {"D", 1}}, "q2": {{"A", 1}}})
	if len(ex) != 2 || noNeg != 0 || dropped != 0 {
		t.Fatalf("examples %+v, %d without negatives, %d dropped", ex, noNeg, dropped)
	}
	for seed := range uint64(20) {
		b, err := makeDenseBatch(denseDataBatch([]int{0, 1}, seed), ex, c, m, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.positives, []int64{0, 3}) || len(b.p) != 6 || len(b.q) != 2 {
			t.Fatalf("layout: positives %v, %d passages", b.positives, len(b.p))
		}
		docOf := func(seq []int64) string { return strings.ToUpper(tok.Token(seq[1])) }
		for j, p := range b.p {
			d := docOf(p)
			for i, qid := range []string{"q1", "q2"} {
				if want := c.trainQrels[qid][d] > 0; b.exclude[i*6+j] != want {
					t.Errorf("seed %d: query %s, column %d (%s): excluded %v", seed, qid, j, d, b.exclude[i*6+j])
				}
			}
		}
		if d := docOf(b.p[4]); d != "A" {
			t.Errorf("seed %d: q2's first hard negative is %s, want A", seed, d)
		}
		if d := docOf(b.p[5]); d == "B" {
			t.Errorf("seed %d: q2's random negative is its positive", seed)
		}
	}
}

// dataBatch is a loader's batch of the given examples; n varies its
// generator.
func denseDataBatch(idx []int, n uint64) data.Batch { return data.Batch{Indices: idx, Index: int64(n)} }

// TestDenseResumesExactly cuts an ir.dense run back to its first
// checkpoint and resumes it: the resumed run rebuilds its model from its
// own bi_encoder.json, reads the hard negatives it mined, and ends with the
// same weights, byte for byte, and the same metrics.
func TestDenseResumesExactly(t *testing.T) {
	bench := denseTinyIRBenchmark(t)
	work := t.TempDir()
	c := DefaultDense()
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.TensorBoard = 4, 1, false
	c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints = 2, 2
	c.Tokenizer, c.VocabSize, c.Model = filepath.Join(work, "vocab.txt"), 120, denseTinyBert()
	c.Encoder.QueryMaxLen, c.Encoder.PassageMaxLen = 16, 32
	c.Data.Benchmark, c.Data.Batch = bench, 4
	c.Negatives.Depth = 5
	c.Optim.LR = 1e-3
	out := filepath.Join(work, "run")
	whole, err := DenseTask.Start(c, out, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	last := filepath.Join(out, "checkpoints", "step-00000004")
	want, err := os.ReadFile(filepath.Join(last, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{last, filepath.Join(out, "results.json")} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	// The tokenizer the config names is gone: the run has its own copy.
	if err := os.Remove(c.Tokenizer); err != nil {
		t.Fatal(err)
	}
	resumed, err := DenseTask.Start(c, out, true, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(last, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("the resumed run's weights differ from the run straight through")
	}
	if whole.MRR10 != resumed.MRR10 || whole.NDCG10 != resumed.NDCG10 || whole.Recall100 != resumed.Recall100 {
		t.Errorf("metrics: straight through %+v, resumed %+v", whole.DenseEvaluation, resumed.DenseEvaluation)
	}
}

// TestDenseTrainingLearns trains a small bi-encoder from scratch on the
// synthetic benchmark and checks that dev retrieval beats the untrained
// model by a clear margin: a wrong target column, a detached tower or a
// sign error would still give finite metrics, not better ones.
func TestDenseTrainingLearns(t *testing.T) {
	bench := denseTinyIRBenchmark(t)
	work := t.TempDir()
	mrr := map[int64]float64{}
	for _, steps := range []int64{1, 150} {
		c := DefaultDense()
		c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.TensorBoard, c.Trainer.KeepCheckpoints = steps, 50, false, 1
		c.Tokenizer, c.VocabSize, c.Model = filepath.Join(work, "vocab.txt"), 120, denseTinyBert()
		c.Model.HiddenSize, c.Model.IntermediateSize = 32, 64
		c.Encoder.QueryMaxLen, c.Encoder.PassageMaxLen = 16, 32
		c.Data.Benchmark, c.Data.Batch = bench, 8
		c.Negatives.Depth = 5
		c.Optim.LR = 2e-3
		r, err := DenseTask.Start(c, filepath.Join(work, fmt.Sprint(steps)), false, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		mrr[steps] = r.MRR10
	}
	if !(mrr[150] > mrr[1]+0.1) {
		t.Errorf("dev MRR@10 after 1 step %.3f, after 150 steps %.3f: training did not help", mrr[1], mrr[150])
	}
}

// TestDenseLoadBertAndMLMRun opens a HF BertForMaskedLM folder (bert.*
// names, an MLM head, one LayerNorm in the TensorFlow-converted gamma/beta
// spelling) and an mlm.pretrain run (config.toml with [model] and
// data.vocab, the weights in its newest checkpoint) as shared bi-encoders
// with [CLS] pooling and dot product, computing the reference's vectors;
// both can start either tower of a separate bi-encoder.
func TestDenseLoadBertAndMLMRun(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	dir := t.TempDir()
	vocab, tok := denseTinyVocab(t, dir, "the", "dog", "cat", "a", "barked")
	bert := denseTinyBert()
	bert.VocabSize = tok.Size
	cfg := BiEncoderConfig{Bert: bert, Shared: true, Pooling: PoolCLS, Similarity: SimDot, QueryMaxLen: 16, PassageMaxLen: 16}
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	ref, err := NewBiEncoder(store, cfg, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	head := map[string]*ts.Tensor{
		"cls.predictions.bias":                   ts.MustZeros([]int64{tok.Size}, gotch.Float, gotch.CPU),
		"cls.predictions.transform.dense.weight": ts.MustZeros([]int64{16, 16}, gotch.Float, gotch.CPU),
	}
	// The HF folder, with the embeddings' LayerNorm saved as gamma/beta.
	hfDir := filepath.Join(dir, "hf")
	hf := ref.Cfg.Bert.HFConfig()
	hf["model_type"], hf["architectures"] = "bert", []string{"BertForMaskedLM"}
	denseWriteJSON(t, filepath.Join(hfDir, "config.json"), hf)
	legacy := map[string]*ts.Tensor{}
	for k, v := range head {
		legacy[k] = v
	}
	for _, n := range []string{"weight", "bias"} {
		p, _ := store.Param("bert.embeddings.LayerNorm." + n)
		legacy[map[string]string{"weight": "bert.embeddings.LayerNorm.gamma", "bias": "bert.embeddings.LayerNorm.beta"}[n]] = p.Tensor
	}
	var names []string
	var tensors []*ts.Tensor
	for _, p := range store.Params() {
		if !strings.HasPrefix(p.Name, "bert.embeddings.LayerNorm.") {
			names, tensors = append(names, p.Name), append(tensors, p.Tensor)
		}
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range legacy {
			if !yield(k) {
				return
			}
		}
	}) {
		names, tensors = append(names, k), append(tensors, legacy[k])
	}
	if err := torchmods.SaveTensors(filepath.Join(hfDir, "model.safetensors"), names, tensors, "", nil); err != nil {
		t.Fatal(err)
	}
	denseCopyInto(t, vocab, hfDir)

	// The mlm.pretrain run: sizes and tokenizer from config.toml.
	run := filepath.Join(dir, "mlm-run")
	ck := filepath.Join(run, "checkpoints", "step-00000003")
	if err := os.MkdirAll(ck, 0o755); err != nil {
		t.Fatal(err)
	}
	denseSaveTower(t, filepath.Join(ck, "model.safetensors"), store, SharedPrefix, SharedPrefix, head, "")
	toml := fmt.Sprintf("task = \"mlm.pretrain\"\n[model]\nvocab_size = 0\nhidden_size = 16\nnum_hidden_layers = 1\nnum_attention_heads = 2\n"+
		"intermediate_size = 32\nhidden_act = \"gelu\"\nmax_position_embeddings = 64\ntype_vocab_size = 2\nlayer_norm_eps = 1e-12\n"+
		"initializer_range = 0.02\n[data]\nvocab = %q\n", vocab)
	if err := os.WriteFile(filepath.Join(run, "config.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{hfDir, run} {
		var log strings.Builder
		m, err := OpenBiEncoder(spec, OpenBiEncoderOptions{QueryMaxLen: 16, PassageMaxLen: 16, W: &log})
		if err != nil {
			t.Fatal(err)
		}
		if !m.Cfg.Shared || m.Cfg.Pooling != PoolCLS || m.Cfg.Similarity != SimDot || m.Cfg.Bert != ref.Cfg.Bert {
			t.Errorf("%s opened as %+v", spec, m.Cfg)
		}
		denseSameEmbeddings(t, spec, ref.Query, m.Query)
		if !strings.Contains(log.String(), "cls.predictions.bias") {
			t.Errorf("%s: the MLM head is not reported as dropped:\n%s", spec, log.String())
		}
		m.Close()
		// Into two towers: both start from the one BERT.
		src, err := ResolveEncoderSource(spec, "")
		if err != nil {
			t.Fatal(err)
		}
		two := torchmods.NewStore(gotch.CPU)
		sep := cfg
		sep.Shared, sep.Bert = false, src.BertFor(tok)
		m2, err := NewBiEncoder(two, sep, tok, vocab)
		if err != nil {
			t.Fatal(err)
		}
		if err := m2.LoadSource(src, BothSides, nil); err != nil {
			t.Fatal(err)
		}
		denseSameEmbeddings(t, spec+" (query tower)", ref.Query, m2.Query)
		denseSameEmbeddings(t, spec+" (passage tower)", ref.Passage, m2.Passage)
		two.Drop()
	}
}

// denseSharedRun writes an ir run directory with one shared tower (what
// ir.dense with encoder.shared writes: bi_encoder.json, the tokenizer and
// a checkpoint) and returns it with the model that wrote it.
func denseSharedRun(t *testing.T, dir string, store *torchmods.Store) (string, *BiEncoder) {
	t.Helper()
	vocab, tok := denseTinyVocab(t, dir, "the", "dog", "cat", "a", "barked")
	cfg := BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolCLS, Similarity: SimDot, QueryMaxLen: 16, PassageMaxLen: 16}
	ref, err := NewBiEncoder(store, cfg, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	ck := filepath.Join(run, "checkpoints", "step-00000001")
	if err := os.MkdirAll(ck, 0o755); err != nil {
		t.Fatal(err)
	}
	denseSaveTower(t, filepath.Join(ck, "model.safetensors"), store, SharedPrefix, SharedPrefix, nil, "")
	if err := ref.WriteFiles(run); err != nil {
		t.Fatal(err)
	}
	return run, ref
}

// An ir run with one shared encoder has no separate passage tower: a
// passage source would load into the shared BERT and overwrite the query
// tower, so OpenBiEncoder refuses it.
func TestOpenBiEncoderRefusesPassageForSharedRun(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	run, ref := denseSharedRun(t, t.TempDir(), store)
	m, err := OpenBiEncoder(run, OpenBiEncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	denseSameEmbeddings(t, "shared run", ref.Query, m.Query)
	m.Close()
	m, err = OpenBiEncoder(run, OpenBiEncoderOptions{Passage: run})
	if err == nil {
		m.Close()
		t.Fatal("a passage source for a run with a shared encoder was accepted")
	}
	if !strings.Contains(err.Error(), "shared") || !strings.Contains(err.Error(), run) {
		t.Errorf("error %q, want it to name the run and say its encoder is shared", err)
	}
}

// encoder.temperature 0 (the default) is the similarity's: 0.05 for
// cosine, whose scores in [-1, 1] would otherwise barely move the
// softmax, and 1 for the dot product.
func TestDenseTemperatureDefaultsBySimilarity(t *testing.T) {
	if d := DefaultDense(); d.Encoder.Temperature != 0 || d.Encoder.validate() != nil {
		t.Fatalf("DefaultDense's temperature %v (validate: %v), want 0, the similarity's default", d.Encoder.Temperature, d.Encoder.validate())
	}
	bad := DefaultDense().Encoder
	bad.Temperature = -1
	if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "encoder.temperature") {
		t.Errorf("temperature -1: %v, want an error naming encoder.temperature", err)
	}
	if DefaultTemperature(SimCosine) != 0.05 || DefaultTemperature(SimDot) != 1 {
		t.Errorf("DefaultTemperature: cosine %v, dot %v", DefaultTemperature(SimCosine), DefaultTemperature(SimDot))
	}
	sc := ts.NewScope()
	defer sc.Close()
	vocab, tok := denseTinyVocab(t, t.TempDir(), "a", "b", "c", "d")
	for _, sim := range []Similarity{SimCosine, SimDot} {
		store := torchmods.NewStore(gotch.CPU)
		defer store.Drop()
		m, err := NewBiEncoder(store, BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolMean, Similarity: sim, QueryMaxLen: 8, PassageMaxLen: 8}, tok, vocab)
		if err != nil {
			t.Fatal(err)
		}
		q, err := m.Query.TokenizeAll([]string{"a b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := m.Passage.TokenizeAll([]string{"a", "c d", "b"})
		if err != nil {
			t.Fatal(err)
		}
		var byDefault, explicit, one float64
		err = torchmods.Try(func() {
			ts.NoGrad(func() {
				byDefault = m.loss(q, p, []int64{0, 1}, nil, 0, false).Float64Values()[0]
				explicit = m.loss(q, p, []int64{0, 1}, nil, DefaultTemperature(sim), false).Float64Values()[0]
				one = m.loss(q, p, []int64{0, 1}, nil, 1, false).Float64Values()[0]
			})
		})
		if err != nil {
			t.Fatalf("%s: temperature 0: %v", sim, err)
		}
		if byDefault != explicit {
			t.Errorf("%s: loss with temperature 0 %v, with %v %v", sim, byDefault, DefaultTemperature(sim), explicit)
		}
		if (sim == SimCosine) == (byDefault == one) {
			t.Errorf("%s: loss with the default temperature %v, with 1 %v", sim, byDefault, one)
		}
	}
}

// A closed bi-encoder's towers refuse to encode, and so does a retriever
// searching with them, instead of reading freed parameters; encodings
// running while it closes either finish or stop with that error.
func TestBiEncoderCloseRefuses(t *testing.T) {
	dir := t.TempDir()
	vocab, tok := denseTinyVocab(t, dir, "a", "b", "c", "d")
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := NewBiEncoder(store, BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolCLS, Similarity: SimDot, QueryMaxLen: 8, PassageMaxLen: 8}, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	docs := []Document{{"A", "a"}, {"B", "b c"}, {"C", "c d"}}
	path := filepath.Join(dir, "p.dense")
	if _, err := EncodeCorpus(m.Passage, docs, path, EncodeCorpusOptions{Batch: 2}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenDenseIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	r, err := NewDenseRetriever(m.Query, ix, DenseRetrieverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Retrieve(context.Background(), []string{"a"}, 2); err != nil {
		t.Fatal(err)
	}

	// Encodings racing Close: each one succeeds or says closed.
	texts := []string{"a b", "c", "d a", "b", "a c d", "c c"}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if _, err := m.Query.Encode(texts, 1); err != nil {
					if !strings.Contains(err.Error(), "closed") {
						errs <- err
					}
					return
				}
			}
		})
	}
	m.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("an encoding racing Close: %v", err)
	}
	if _, err := m.Query.Encode([]string{"a"}, 1); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Encode after Close: %v, want an error", err)
	}
	if _, err := r.Retrieve(context.Background(), []string{"a"}, 2); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Retrieve with a closed bi-encoder: %v, want an error", err)
	}
	m.Close() // twice is fine
}

// denseCraft returns a copy of a good index file with header fields
// changed and the header checksum made right again, as a crafted (not a
// damaged) file would be.
func denseCraft(good []byte, set func(h []byte)) []byte {
	b := slices.Clone(good)
	set(b[:denseHeaderSize])
	binary.LittleEndian.PutUint32(b[52:], crc32.Checksum(b[:52], crc32c))
	return b
}

// A header whose ids offset and length add up to the file's size only
// by wrapping around (the ids past the end), or do not, is a
// CorruptDenseIndexError, not a panic or an index over the wrong bytes;
// more documents than int32 numbers are refused.
func TestDenseIndexCraftedHeaders(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.dense")
	size, err := WriteDenseIndex(path, []string{"b", "a", "c"}, 2, SimDot, []float32{0.6, 0.8, 1, 0, 0, -1})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	open := func(name string, b []byte) error {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		var err error
		func() {
			defer func() {
				if v := recover(); v != nil {
					err = fmt.Errorf("panicked: %v", v)
				}
			}()
			var ix *DenseIndex
			if ix, err = OpenDenseIndex(p); err == nil {
				ix.Close()
			}
		}()
		return err
	}
	idsOff := binary.LittleEndian.Uint64(good[32:])
	crafted := map[string][]byte{
		// 1000 documents of 2 floats: the ids would start past the end,
		// and an ids length of size - offset, wrapped around, makes the
		// two add up to the file's size.
		"past.dense": denseCraft(good, func(h []byte) {
			off := uint64(denseHeaderSize + 1000*2*4)
			binary.LittleEndian.PutUint64(h[16:], 1000)
			binary.LittleEndian.PutUint64(h[32:], off)
			binary.LittleEndian.PutUint64(h[40:], uint64(size)-off)
		}),
		// The right offset and a length one byte short of the rest.
		"short-ids.dense": denseCraft(good, func(h []byte) {
			binary.LittleEndian.PutUint64(h[40:], uint64(size)-idsOff-1)
		}),
	}
	for name, b := range crafted {
		err := open(name, b)
		var ce *CorruptDenseIndexError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a CorruptDenseIndexError", name, err)
		}
	}
	// 2^31 documents: refused for their number, before anything else.
	n := uint64(math.MaxInt32) + 1
	err = open("many.dense", denseCraft(good, func(h []byte) {
		binary.LittleEndian.PutUint32(h[12:], 1)
		binary.LittleEndian.PutUint64(h[16:], n)
		binary.LittleEndian.PutUint64(h[32:], denseHeaderSize+4*n)
	}))
	if err == nil || !strings.Contains(err.Error(), "2147483648 documents") {
		t.Errorf("2^31 documents: %v, want an error saying there are too many", err)
	}
}

// A closed index refuses a new retriever and searches, and Bytes says 0;
// a search stops between chunks once its context is done.
func TestDenseIndexClosedAndContext(t *testing.T) {
	dir := t.TempDir()
	vocab, tok := denseTinyVocab(t, dir, "a", "b", "c", "d")
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := NewBiEncoder(store, BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolCLS, Similarity: SimDot, QueryMaxLen: 8, PassageMaxLen: 8}, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	var docs []Document
	for i := range 40 {
		docs = append(docs, Document{fmt.Sprintf("d%02d", i), []string{"a", "b c", "c d", "d a b"}[i%4]})
	}
	path := filepath.Join(dir, "p.dense")
	if _, err := EncodeCorpus(m.Passage, docs, path, EncodeCorpusOptions{Batch: 8}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenDenseIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	q, err := m.Query.Encode([]string{"a b"}, 1)
	if err != nil {
		t.Fatal(err)
	}

	// Cancelled after the third check: a search of 40 one-document chunks
	// stops there.
	ctx := &denseCountingCtx{Context: context.Background(), after: 3}
	if _, err := ix.SearchContext(ctx, q, 5, DenseSearchOptions{ChunkRows: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("search with a context cancelled mid-way: %v, want context.Canceled", err)
	}
	if ctx.calls > 5 {
		t.Errorf("the search went on for %d checks after its context was done", ctx.calls-3)
	}
	r, err := NewDenseRetriever(m.Query, ix, DenseRetrieverOptions{ChunkRows: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Retrieve(context.Background(), []string{"a b"}, 3); err != nil || len(got[0]) != 3 {
		t.Fatalf("retrieve: %v, %v", got, err)
	}

	ix.Close()
	if ix.Bytes() != 0 {
		t.Errorf("a closed index's Bytes: %d", ix.Bytes())
	}
	if _, err := NewDenseRetriever(m.Query, ix, DenseRetrieverOptions{}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("a retriever over a closed index: %v, want an error", err)
	}
	if _, err := NewDenseRetriever(m.Query, ix, DenseRetrieverOptions{MaxResidentBytes: -1}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("a streaming retriever over a closed index: %v, want an error", err)
	}
	if _, err := r.Retrieve(context.Background(), []string{"a b"}, 3); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("retrieve from a closed index: %v, want an error", err)
	}
	ix.mu.RLock()
	_, err = ix.search(q, 3, gotch.CPU, 4, nil)
	ix.mu.RUnlock()
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("search of a closed index: %v, want an error", err)
	}
}

// denseCountingCtx is a context whose Err is nil for its first after
// calls and context.Canceled from then on.
type denseCountingCtx struct {
	context.Context
	after, calls int
}

func (c *denseCountingCtx) Err() error {
	c.calls++
	if c.calls > c.after {
		return context.Canceled
	}
	return nil
}

// A query judged relevant to every document but one cannot be topped up
// to two random negatives: it gets the one there is, and a query relevant
// to every document gets none, instead of a draw that never ends; a
// random negative is never drawn twice, nor is a hard one drawn again.
func TestDenseBatchTooFewNegatives(t *testing.T) {
	dir := t.TempDir()
	vocab, tok := denseTinyVocab(t, dir, "a", "b", "c", "d")
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := NewBiEncoder(store, BiEncoderConfig{Bert: denseTinyBert(), Shared: true, Pooling: PoolCLS, Similarity: SimDot, QueryMaxLen: 8, PassageMaxLen: 8}, tok, vocab)
	if err != nil {
		t.Fatal(err)
	}
	c := &denseCorpus{docs: []Document{{"A", "a"}, {"B", "b"}, {"C", "c"}, {"D", "d"}},
		train:      []Query{{"q1", "a"}, {"q2", "b"}, {"q3", "c"}},
		trainQrels: Qrels{"q1": {"A": 1, "B": 1, "C": 1}, "q2": {"B": 1}, "q3": {"A": 1, "B": 1, "C": 1, "D": 1}}}
	c.index = map[string]int{"A": 0, "B": 1, "C": 2, "D": 3}
	ex, _, _ := denseExamples(c, Run{"q2": {{"A", 1}}})
	docOf := func(seq []int64) string { return strings.ToUpper(tok.Token(seq[1])) }
	for seed := range uint64(20) {
		done := make(chan error, 1)
		var b *denseBatch
		go func() {
			var err error
			b, err = makeDenseBatch(denseDataBatch([]int{0, 1, 2}, seed), ex, c, m, 2)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("makeDenseBatch is still drawing negatives for a query relevant to (nearly) every document")
		}
		// q1: its positive, then D, the one document not relevant to it;
		// q2: its positive B, its hard negative A, one random of C and D;
		// q3: its positive alone.
		if !slices.Equal(b.positives, []int64{0, 2, 5}) || len(b.p) != 6 {
			t.Fatalf("seed %d: positives %v, %d passages", seed, b.positives, len(b.p))
		}
		if d := docOf(b.p[1]); d != "D" {
			t.Errorf("seed %d: q1's negative is %s, want D", seed, d)
		}
		if d := docOf(b.p[4]); d != "C" && d != "D" {
			t.Errorf("seed %d: q2's random negative is %s, want C or D", seed, d)
		}
	}
}

// ContrastiveLoss refuses a positive column outside the scores with an
// error value (tensor code's panic), not an index out of range.
func TestDenseContrastiveLossChecksPositives(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	scores := denseTensor(t, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	for _, pos := range [][]int64{{0, 3}, {-1, 0}} {
		var err error
		func() {
			defer func() {
				if v := recover(); v != nil {
					e, ok := v.(error)
					if _, rt := v.(runtime.Error); !ok || rt {
						t.Errorf("positives %v: panicked with %T %v, want an error value", pos, v, v)
						return
					}
					err = e
				}
			}()
			ContrastiveLoss(scores, pos, make([]bool, 6), 1)
		}()
		if err == nil || !strings.Contains(err.Error(), "positive") {
			t.Errorf("positives %v: %v, want an error about the positive column", pos, err)
		}
	}
}

// With files, evaluation queries that are also training queries are
// refused, naming one.
func TestDenseDataRefusesTrainedEvalQueries(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	d := DenseData{
		Collection:   write("collection.tsv", "A\ta dog\nB\ta cat\nC\ta cow\n"),
		TrainQueries: write("train.tsv", "1\tdog\n2\tcat\n"),
		TrainQrels:   write("train.qrels", "1 0 A 1\n2 0 B 1\n"),
		EvalQueries:  write("dev.tsv", "3\tcow\n2\tcat\n"),
		EvalQrels:    write("dev.qrels", "3 0 C 1\n2 0 B 1\n"),
		Batch:        2,
	}
	e := DenseEval{Batch: 2, Depth: 100}
	if _, err := loadDenseData(d, e, true); err == nil || !strings.Contains(err.Error(), "query 2") {
		t.Errorf("an evaluation query that is a training query: %v, want an error naming query 2", err)
	}
	d.EvalQueries, d.EvalQrels = write("dev2.tsv", "3\tcow\n"), write("dev2.qrels", "3 0 C 1\n")
	if c, err := loadDenseData(d, e, true); err != nil || len(c.eval) != 1 || len(c.train) != 2 {
		t.Errorf("disjoint files: %v", err)
	}
	// Evaluation alone (repro eval) has no training queries to compare.
	d.EvalQueries, d.EvalQrels = write("dev3.tsv", "2\tcat\n"), write("dev3.qrels", "2 0 B 1\n")
	d.TrainQueries, d.TrainQrels = "", ""
	if _, err := loadDenseData(d, e, false); err != nil {
		t.Errorf("evaluation without training: %v", err)
	}
}
