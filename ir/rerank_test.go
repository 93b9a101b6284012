package ir

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
)

// reWords are the tiny vocabulary's words, each a single token.
var reWords = []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "dog", "cat", "barks", "meows", "animal", "pet"}

// reTokenizer writes a vocab.txt of the specials and reWords and loads it.
func reTokenizer(t *testing.T) (*mlm.Tokenizer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vocab.txt")
	if err := mlm.WriteVocab(path, append(slices.Clone(mlm.Specials), reWords...)); err != nil {
		t.Fatal(err)
	}
	tok, err := mlm.LoadTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok, path
}

// reBertConfig is a BERT small enough to build and run in milliseconds.
func reBertConfig(vocab int64) torchmods.BertConfig {
	return torchmods.BertConfig{VocabSize: vocab, HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 32,
		HiddenAct: "gelu", HiddenDropout: 0.1, AttentionDropout: 0.1, MaxPositionEmbeddings: 32, TypeVocabSize: 2,
		LayerNormEps: 1e-12, InitializerRange: 0.02}
}

func TestEncodePair(t *testing.T) {
	tok, _ := reTokenizer(t)
	id := func(words string) []int64 {
		var out []int64
		for _, w := range strings.Fields(words) {
			switch w {
			case "[CLS]":
				out = append(out, tok.CLS)
			case "[SEP]":
				out = append(out, tok.SEP)
			default:
				x, ok := tok.ID(w)
				if !ok {
					t.Fatalf("%q not in the vocabulary", w)
				}
				out = append(out, x)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, q, p      string
		maxQ, maxLen    int
		want            string
		firstSegmentLen int
	}{
		// The query is cut to its limit ([CLS] a b c [SEP] = 5), then the
		// passage fills the rest of the 10.
		{"both cut", "a b c d e f", "g h i j k l", 5, 10, "[CLS] a b c [SEP] g h i j [SEP]", 5},
		// A short query leaves its budget to the passage.
		{"short query", "a", "g h i j k l", 5, 10, "[CLS] a [SEP] g h i j k l [SEP]", 3},
		{"nothing cut", "dog", "cat meows", 5, 10, "[CLS] dog [SEP] cat meows [SEP]", 3},
		{"passage cut to one token", "a b c d e f", "g h", 5, 7, "[CLS] a b c [SEP] g [SEP]", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := EncodePair(tok, tc.q, tc.p, tc.maxQ, tc.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			if want := id(tc.want); !slices.Equal(e.IDs, want) {
				t.Fatalf("ids %v, want %v (%s)", e.IDs, want, tc.want)
			}
			if len(e.Types) != len(e.IDs) {
				t.Fatalf("%d segment ids for %d tokens", len(e.Types), len(e.IDs))
			}
			for i, ty := range e.Types {
				want := int64(0)
				if i >= tc.firstSegmentLen {
					want = 1
				}
				if ty != want {
					t.Fatalf("segment ids %v: [CLS] q [SEP] is segment 0, p [SEP] segment 1", e.Types)
				}
			}
		})
	}
	if _, err := EncodePair(tok, "a", "b", 5, 6); err == nil {
		t.Error("a pair limit that leaves no passage token is refused")
	}
	if _, err := EncodePair(tok, "a", "b", 2, 10); err == nil {
		t.Error("a query limit below 3 is refused")
	}

	a, _ := EncodePair(tok, "dog", "cat meows", 5, 10)
	b, _ := EncodePair(tok, "a", "g", 5, 10)
	pb := PadPairs([]PairEncoding{a, b}, tok.PAD)
	if pb.N != 2 || pb.L != 6 {
		t.Fatalf("padded to %dx%d, want 2x6", pb.N, pb.L)
	}
	if !slices.Equal(pb.IDs[6:], append(slices.Clone(b.IDs), tok.PAD)) || !slices.Equal(pb.Mask[6:], []int64{1, 1, 1, 1, 1, 0}) ||
		!slices.Equal(pb.Types[6:], []int64{0, 0, 0, 1, 1, 0}) {
		t.Fatalf("second row ids %v types %v mask %v", pb.IDs[6:], pb.Types[6:], pb.Mask[6:])
	}
}

func TestRelevanceScoresDirection(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	one := RelevanceScores(torchmods.FromSlice([]float32{3, -1}, []int64{2, 1}, gotch.CPU)).Float64Values()
	if !slices.Equal(one, []float64{3, -1}) {
		t.Errorf("one output: scores %v, want the logits [3 -1]", one)
	}
	two := RelevanceScores(torchmods.FromSlice([]float32{0, 2, 2, 0}, []int64{2, 2}, gotch.CPU)).Float64Values()
	want := []float64{-math.Log1p(math.Exp(-2)), -math.Log1p(math.Exp(2))} // log p(relevant) = log sigmoid(l1 - l0)
	for i := range want {
		if math.Abs(two[i]-want[i]) > 1e-6 {
			t.Errorf("two outputs: scores %v, want log p(relevant) %v", two, want)
		}
	}
	if !(two[0] > two[1]) {
		t.Error("a pair whose relevant logit is higher scores higher")
	}
}

// reConstModel is a cross-encoder whose classifier ignores its input:
// weight 0 and the given bias, so every pair gets the same, known score.
func reConstModel(t *testing.T, tok *mlm.Tokenizer, bias []float32, docs DocLookup) *CrossEncoder {
	t.Helper()
	store := torchmods.NewStore(gotch.CPU)
	t.Cleanup(store.Drop)
	m := torchmods.NewBertForSequenceClassification(store.Root(), reBertConfig(tok.Size), int64(len(bias)))
	ts.NoGrad(func() {
		m.Classifier.Weight.MustZero_()
		m.Classifier.Bias.Copy_(torchmods.FromSlice(bias, []int64{int64(len(bias))}, gotch.CPU))
	})
	ce, err := NewCrossEncoder(m, tok, docs, CrossEncoderOptions{MaxQueryLen: 8, MaxLen: 24, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	return ce
}

func TestCrossEncoderScoreDirection(t *testing.T) {
	tok, _ := reTokenizer(t)
	ctx := context.Background()
	ce1 := reConstModel(t, tok, []float32{1.25}, nil)
	s, err := ce1.Score(ctx, []string{"dog", "cat"}, []string{"dog barks", "a b c"})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s[0]-1.25) > 1e-6 || math.Abs(s[1]-1.25) > 1e-6 {
		t.Errorf("one output: scores %v, want the raw logit 1.25", s)
	}
	ce2 := reConstModel(t, tok, []float32{0, 1.5}, nil)
	if s, err = ce2.Score(ctx, []string{"dog"}, []string{"dog barks"}); err != nil {
		t.Fatal(err)
	}
	if want := -math.Log1p(math.Exp(-1.5)); math.Abs(s[0]-want) > 1e-6 {
		t.Errorf("two outputs: score %v, want log softmax([0 1.5])[1] = %v", s[0], want)
	}
	if ce1.NumLabels() != 1 || ce2.NumLabels() != 2 {
		t.Errorf("NumLabels %d and %d", ce1.NumLabels(), ce2.NumLabels())
	}
}

func TestRerankSortsAsTrecEval(t *testing.T) {
	cands := []Result{{"a", 9}, {"b", 8}, {"c", 7}, {"d", 6}}
	got := rerankResults(cands, []float64{1, 2, 2, 0.5}, 3)
	want := []Result{{"c", 2}, {"b", 2}, {"a", 1}}
	if !slices.Equal(got, want) {
		t.Errorf("re-ranked %v, want %v: score descending, a tie by doc id descending, k kept", got, want)
	}

	tok, _ := reTokenizer(t)
	docs, err := NewDocStore([]Document{{"d1", "dog barks"}, {"d2", "cat meows"}, {"d3", "pet animal"}})
	if err != nil {
		t.Fatal(err)
	}
	ce := reConstModel(t, tok, []float32{0.5}, docs.Text)
	out, err := ce.Rerank(context.Background(), []string{"dog", "cat", "pet"},
		[][]Result{{{"d1", 3}, {"d3", 2}, {"d2", 1}}, {}, {{"d2", 1}}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || len(out[1]) != 0 || out[1] == nil {
		t.Fatalf("one list per query, an empty one for no candidates: %v", out)
	}
	if ids := []string{out[0][0].DocID, out[0][1].DocID}; !slices.Equal(ids, []string{"d3", "d2"}) {
		t.Errorf("equal scores come back by doc id descending, top 2: %v", out[0])
	}
	if out[2][0].DocID != "d2" || math.Abs(out[2][0].Score-0.5) > 1e-6 {
		t.Errorf("the candidate's score is the cross-encoder's: %v", out[2])
	}
	if _, err := ce.Rerank(context.Background(), []string{"dog"}, [][]Result{{{"nope", 1}}}, 2); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("an unknown candidate is an error naming it, got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ce.Rerank(ctx, []string{"dog"}, [][]Result{{{"d1", 1}}}, 2); err == nil {
		t.Error("a cancelled context stops the re-ranking")
	}
}

func TestRerankLosses(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	cpu := gotch.CPU
	value := func(x *ts.Tensor) float64 { return x.Float64Values()[0] }
	labels := torchmods.FromSlice([]int64{1, 0}, []int64{2}, cpu)
	softplus := func(x float64) float64 { return math.Log1p(math.Exp(x)) } // -log sigmoid(-x)

	// Two classes: cross-entropy, -log softmax(logits)[label], averaged.
	got := value(PointwiseLoss(torchmods.FromSlice([]float32{0, 0, 1, 3}, []int64{2, 2}, cpu), labels))
	want := (math.Log(2) + math.Log(1+math.Exp(2))) / 2 // -log(1/2), -log(e/(e+e^3))
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("pointwise, 2 labels: %v, want %v", got, want)
	}
	// One output: binary cross-entropy on the logit.
	got = value(PointwiseLoss(torchmods.FromSlice([]float32{2, -1}, []int64{2, 1}, cpu), labels))
	want = (softplus(-2) + softplus(-1)) / 2 // -log sigmoid(2), -log(1 - sigmoid(-1))
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("pointwise, 1 label: %v, want %v", got, want)
	}
	// LCE, groups of 3 (positive first): -s_pos + log sum exp(s).
	lse := func(xs ...float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += math.Exp(x)
		}
		return math.Log(s)
	}
	got = value(LCELoss(torchmods.FromSlice([]float32{3, 1, 0, 0, 2, 1}, []int64{6, 1}, cpu), 3))
	want = ((-3 + lse(3, 1, 0)) + (-0 + lse(0, 2, 1))) / 2
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("lce, 1 label: %v, want %v", got, want)
	}
	// Two classes: the scores are the log-odds l1 - l0.
	got = value(LCELoss(torchmods.FromSlice([]float32{0, 3, 1, 2, 0, 0, 1, 1, 0, 2, 0, 1}, []int64{6, 2}, cpu), 3))
	want = ((-3 + lse(3, 1, 0)) + (-0 + lse(0, 2, 1))) / 2
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("lce, 2 labels: %v, want %v", got, want)
	}
}

// reSaveModel writes a BertForSequenceClassification with labels outputs
// (or, with labels 0, a BertForMaskedLM) to dir/model.safetensors, leaving
// out the tensors named in drop, and returns the store for comparisons.
func reSaveModel(t *testing.T, dir string, cfg torchmods.BertConfig, labels int, drop ...string) *torchmods.Store {
	t.Helper()
	store := torchmods.NewStore(gotch.CPU)
	t.Cleanup(store.Drop)
	if labels == 0 {
		torchmods.NewBertForMaskedLM(store.Root(), cfg)
	} else {
		torchmods.NewBertForSequenceClassification(store.Root(), cfg, int64(labels))
	}
	var names []string
	var tensors []*ts.Tensor
	for _, p := range store.Params() {
		if !slices.Contains(drop, p.Name) {
			names, tensors = append(names, p.Name), append(tensors, p.Tensor)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := torchmods.SaveTensors(filepath.Join(dir, "model.safetensors"), names, tensors, "", nil); err != nil {
		t.Fatal(err)
	}
	return store
}

// reWriteHF writes a HF folder: config.json with extra keys, the vocabulary.
func reWriteHF(t *testing.T, dir string, cfg torchmods.BertConfig, vocab string, extra map[string]any) {
	t.Helper()
	c := cfg.HFConfig()
	c["model_type"] = "bert"
	for k, v := range extra {
		c[k] = v
	}
	if err := torchmods.WriteHFConfig(filepath.Join(dir, "config.json"), c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(vocab)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vocab.txt"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// HF cross-encoder folders of BERT type load with their heads: one output
// (cross-encoder/ms-marco-MiniLM-L-6-v2: id2label of one entry) scores by
// the logit, two (castorini/monobert-large-msmarco; here an older config
// with num_labels only) by log p(relevant), both equal to the saved
// model's own outputs; a head tensor missing from the file is an error
// naming it; a BERT without a head, from HF or an mlm.pretrain run, gets
// a new one.
func TestLoadCrossEncoderHF(t *testing.T) {
	tok, vocab := reTokenizer(t)
	cfg := reBertConfig(tok.Size)
	ctx := context.Background()
	queries, passages := []string{"dog", "cat", "a b c"}, []string{"dog barks", "animal pet", "g h i j"}
	for _, tc := range []struct {
		name   string
		labels int
		extra  map[string]any
	}{
		{"MiniLM-style, 1 label", 1, map[string]any{"architectures": []string{"BertForSequenceClassification"}, "id2label": map[string]string{"0": "LABEL_0"}}},
		{"monoBERT-style, 2 labels", 2, map[string]any{"architectures": []string{"BertForSequenceClassification"}, "num_labels": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ce")
			store := reSaveModel(t, dir, cfg, tc.labels)
			reWriteHF(t, dir, cfg, vocab, tc.extra)
			ce, err := LoadCrossEncoder(dir, nil, LoadCrossEncoderOptions{CrossEncoderOptions: CrossEncoderOptions{MaxQueryLen: 8, MaxLen: 24}})
			if err != nil {
				t.Fatal(err)
			}
			defer ce.Close()
			if ce.NumLabels() != tc.labels {
				t.Fatalf("%d labels, want %d", ce.NumLabels(), tc.labels)
			}
			got, err := ce.Score(ctx, queries, passages)
			if err != nil {
				t.Fatal(err)
			}
			want := reDirectScores(t, store, cfg, tc.labels, tok, queries, passages)
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-5 {
					t.Fatalf("scores %v, want the saved model's %v", got, want)
				}
			}
		})
	}

	t.Run("missing classifier tensor", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ce")
		reSaveModel(t, dir, cfg, 1, "classifier.weight")
		reWriteHF(t, dir, cfg, vocab, map[string]any{"architectures": []string{"BertForSequenceClassification"}, "id2label": map[string]string{"0": "LABEL_0"}})
		_, err := LoadCrossEncoder(dir, nil, LoadCrossEncoderOptions{CrossEncoderOptions: CrossEncoderOptions{MaxQueryLen: 8, MaxLen: 24}})
		if err == nil || !strings.Contains(err.Error(), "classifier.weight") {
			t.Fatalf("a cross-encoder without its classifier weight: got %v, want an error naming classifier.weight", err)
		}
	})

	t.Run("three labels refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ce")
		reSaveModel(t, dir, cfg, 3)
		reWriteHF(t, dir, cfg, vocab, map[string]any{"architectures": []string{"BertForSequenceClassification"}, "num_labels": 3})
		if _, err := LoadCrossEncoder(dir, nil, LoadCrossEncoderOptions{}); err == nil || !strings.Contains(err.Error(), "3 labels") {
			t.Fatalf("got %v, want an error about 3 labels", err)
		}
	})

	t.Run("HF BERT gets a new head", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "mlm")
		reSaveModel(t, dir, cfg, 0)
		reWriteHF(t, dir, cfg, vocab, map[string]any{"architectures": []string{"BertForMaskedLM"}})
		src, err := ResolveCrossEncoder(dir, "", torchmods.BertConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if src.Head != 0 {
			t.Fatalf("a BertForMaskedLM has no classifier head, got %d", src.Head)
		}
		ce, err := LoadCrossEncoder(dir, nil, LoadCrossEncoderOptions{CrossEncoderOptions: CrossEncoderOptions{MaxQueryLen: 8}})
		if err != nil {
			t.Fatal(err)
		}
		defer ce.Close()
		if ce.NumLabels() != 2 || ce.MaxLen != 32 {
			t.Errorf("new head of %d labels (want 2), pairs of %d tokens (want the model's 32 positions)", ce.NumLabels(), ce.MaxLen)
		}
	})

	t.Run("mlm.pretrain run", func(t *testing.T) {
		run := t.TempDir()
		reSaveModel(t, filepath.Join(run, "checkpoints", "step-00000010"), cfg, 0)
		rc := map[string]any{"task": "mlm.pretrain", "model": cfg, "data": map[string]any{"vocab": vocab}}
		f, err := os.Create(filepath.Join(run, "config.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := toml.NewEncoder(f).Encode(rc); err != nil {
			t.Fatal(err)
		}
		f.Close()
		src, err := ResolveCrossEncoder(run, "", torchmods.BertConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if src.Tokenizer != vocab || src.Head != 0 || !strings.Contains(src.Kind, "mlm.pretrain") {
			t.Fatalf("source %+v", src)
		}
		store := torchmods.NewStore(gotch.CPU)
		defer store.Drop()
		var sb strings.Builder
		if _, err := src.Build(store, tok, 1, true, &sb); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(sb.String(), "missing") || !strings.Contains(sb.String(), "classifier.weight") {
			t.Errorf("the load report names the new head: %s", sb.String())
		}
	})
}

// reDirectScores runs the saved model's parameters as a plain
// BertForSequenceClassification on the encoded pairs.
func reDirectScores(t *testing.T, saved *torchmods.Store, cfg torchmods.BertConfig, labels int, tok *mlm.Tokenizer, queries, passages []string) []float64 {
	t.Helper()
	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m := torchmods.NewBertForSequenceClassification(store.Root(), cfg, int64(labels))
	w := map[string]*ts.Tensor{}
	for _, p := range saved.Params() {
		w[p.Name] = p.Tensor
	}
	if _, err := store.Load(w, true); err != nil {
		t.Fatal(err)
	}
	var enc []PairEncoding
	for i := range queries {
		e, err := EncodePair(tok, queries[i], passages[i], 8, 24)
		if err != nil {
			t.Fatal(err)
		}
		enc = append(enc, e)
	}
	var out []float64
	ts.NoGrad(func() {
		ids, types, mask := PadPairs(enc, tok.PAD).Tensors(gotch.CPU)
		logits := m.Forward(ids, types, mask, false)
		if labels == 1 {
			out = logits.MustView([]int64{-1}, false).Float64Values()
			return
		}
		for i, v := range logits.MustLogSoftmax(-1, gotch.Double, false).Float64Values() {
			if i%2 == 1 {
				out = append(out, v)
			}
		}
	})
	return out
}

// reBenchmark is a tiny synthetic benchmark: 30 documents of three words,
// and for each a query sharing one or two of them, split 21/6/3.
func reBenchmark(t *testing.T) (string, *Benchmark) {
	t.Helper()
	words := []string{"amber", "basil", "cedar", "delta", "ember", "fjord", "grove", "heron", "inlet", "jasper", "kelp", "lotus", "maple", "nectar", "onyx"}
	b := &Benchmark{Queries: map[string]map[string]string{}, Qrels: map[string]Qrels{}}
	for _, sp := range Splits {
		b.Queries[sp], b.Qrels[sp] = map[string]string{}, Qrels{}
	}
	for i := range 30 {
		w := func(k int) string { return words[k%len(words)] }
		id := fmt.Sprintf("d%02d", i)
		b.Docs = append(b.Docs, Document{ID: id, Text: fmt.Sprintf("%s %s %s", w(i), w(3*i+1), w(7*i+2))})
		sp := SplitTrain
		switch {
		case i%5 == 1:
			sp = SplitDev
		case i%10 == 3:
			sp = SplitTest
		}
		q := fmt.Sprintf("q%02d", i)
		b.Queries[sp][q] = fmt.Sprintf("the %s of %s", w(i), w(7*i+2))
		b.Qrels[sp][q] = map[string]int{id: 1}
	}
	dir := filepath.Join(t.TempDir(), "bench")
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir, b
}

// A few steps of ir.rerank on the tiny benchmark, from scratch with a
// vocabulary trained on first use, with both losses: the metrics are
// finite, the re-ranked run holds exactly BM25's top rerank_depth (so its
// Recall@100 is BM25's Recall@depth), and the run folder opens as a
// cross-encoder that gives the run's scores.
func TestRerankTaskEndToEnd(t *testing.T) {
	dir, bench := reBenchmark(t)
	vocab := filepath.Join(t.TempDir(), "vocab.txt")
	for _, loss := range []string{LossPointwise, LossLCE} {
		t.Run(loss, func(t *testing.T) {
			c := DefaultRerankConfig()
			c.Tokenizer, c.VocabSize = vocab, 60
			c.Model = reBertConfig(0)
			c.Loss, c.MaxQueryLen, c.MaxLen = loss, 12, 28
			c.Optim.LR = 1e-3
			c.Data = RerankData{Benchmark: dir, NegativesDepth: 10, Batch: 4}
			c.Data.Negatives = 2 // pointwise: a positive and two negatives, labelled 1, 0, 0
			if loss == LossLCE {
				c.Data.Negatives = 3
			}
			c.Eval = RerankEval{Split: SplitDev, RerankDepth: 5, Batch: 16}
			c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.TensorBoard = 3, 1, false
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			var log strings.Builder
			res, err := RerankTask.Start(c, out, false, &log)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			t.Logf("%s", log.String())
			if res.Queries != 6 || res.TrainQueries != 21 || res.Steps != 3 {
				t.Errorf("%d queries evaluated (want 6), %d trained on (want 21), %d steps", res.Queries, res.TrainQueries, res.Steps)
			}
			wantLabels := map[string]int{LossPointwise: 2, LossLCE: 1}[loss]
			if res.Labels != wantLabels {
				t.Errorf("%d labels, want %d", res.Labels, wantLabels)
			}
			for _, m := range []RerankMetrics{res.BM25, res.Rerank} {
				for _, v := range []float64{m.MRR10, m.NDCG10, m.Recall100} {
					if math.IsNaN(v) || v < 0 || v > 1 {
						t.Errorf("metric %v outside [0, 1]: %+v", v, m)
					}
				}
				if !(m.LatencyMS > 0) {
					t.Errorf("latency %v", m.LatencyMS)
				}
			}
			bm25, err := ReadRunFile(filepath.Join(out, "bm25.dev.trec"))
			if err != nil {
				t.Fatal(err)
			}
			rr, err := ReadRunFile(filepath.Join(out, "rerank.dev.trec"))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := Evaluate(bm25, bench.Qrels[SplitDev], []Metric{{Recall, 5}}, EvalOptions{Complete: true})
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(ev.Mean[0]-res.Rerank.Recall100) > 1e-12 {
				t.Errorf("re-ranked Recall@100 %v, BM25's Recall@5 %v: the re-ranker reorders BM25's top 5", res.Rerank.Recall100, ev.Mean[0])
			}
			for qid, rs := range rr {
				top := slices.Clone(bm25[qid])
				SortTREC(top)
				var want, got []string
				for _, r := range top[:min(5, len(top))] {
					want = append(want, r.DocID)
				}
				for _, r := range rs {
					got = append(got, r.DocID)
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("query %s: re-ranked %v, BM25's top 5 %v", qid, got, want)
				}
			}

			var evOut strings.Builder
			if err := EvalRerank(c, out, &evOut); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("BM25 + monoBERT    %.4f", res.Rerank.MRR10); !strings.Contains(evOut.String(), want) {
				t.Errorf("repro eval of the run gives its MRR@10 (%s):\n%s", want, evOut.String())
			}

			docs, err := NewDocStore(bench.Docs)
			if err != nil {
				t.Fatal(err)
			}
			ce, err := LoadCrossEncoder(out, docs.Text, LoadCrossEncoderOptions{CrossEncoderOptions: CrossEncoderOptions{MaxQueryLen: 12, MaxLen: 28}})
			if err != nil {
				t.Fatalf("the run opens as a cross-encoder: %v", err)
			}
			defer ce.Close()
			if ce.NumLabels() != wantLabels {
				t.Errorf("reopened with %d labels", ce.NumLabels())
			}
			q := SortQIDs(mapKeys(rr))[0]
			again, err := ce.Rerank(context.Background(), []string{bench.Queries[SplitDev][q]}, [][]Result{rr[q]}, 5)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(rr[q])
			SortTREC(want)
			for i := range want {
				if again[0][i].DocID != want[i].DocID || math.Abs(again[0][i].Score-want[i].Score) > 1e-5 {
					t.Fatalf("reopened run scores %v, the run file's %v", again[0], want)
				}
			}
		})
	}
}

// A file that cannot be read stops the run with an error naming it, after
// the BM25 index is built (which is then removed).
func TestRerankTaskBadNegativesFile(t *testing.T) {
	dir, _ := reBenchmark(t)
	c := DefaultRerankConfig()
	c.Tokenizer, c.VocabSize, c.Model = filepath.Join(t.TempDir(), "vocab.txt"), 60, reBertConfig(0)
	c.MaxQueryLen, c.MaxLen = 12, 28
	c.Data = RerankData{Benchmark: dir, NegativesFile: filepath.Join(t.TempDir(), "missing.trec"), NegativesDepth: 10, Batch: 4}
	c.Trainer.MaxSteps, c.Trainer.TensorBoard = 1, false
	_, err := RerankTask.Start(c, t.TempDir(), false, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "missing.trec") {
		t.Fatalf("got %v, want an error naming the negatives file", err)
	}
}

// The config's keys are checked, naming the key.
func TestRerankConfigValidate(t *testing.T) {
	for key, mod := range map[string]func(*RerankConfig){
		"loss":                 func(c *RerankConfig) { c.Loss = "listwise" },
		"num_labels":           func(c *RerankConfig) { c.NumLabels = 3 },
		"max_len":              func(c *RerankConfig) { c.MaxLen = c.MaxQueryLen + 1 },
		"tokenizer":            func(c *RerankConfig) { c.Tokenizer = "" },
		"eval.split":           func(c *RerankConfig) { c.Eval.Split = SplitTrain },
		"data.negatives_depth": func(c *RerankConfig) { c.Data.NegativesDepth = 0 },
		"optim.warmup_ratio":   func(c *RerankConfig) { c.Optim.Warmup = 10 },
	} {
		c := DefaultRerankConfig()
		c.Tokenizer, c.Model = "vocab.txt", reBertConfig(0)
		if err := c.Validate(); err != nil {
			t.Fatalf("the base config: %v", err)
		}
		mod(c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), key+":") {
			t.Errorf("%s: got %v", key, err)
		}
	}
}

// Close waits for the scoring calls in progress (freeing the parameters
// under a forward pass would be a use after free), and calls after it
// return an error.
func TestCrossEncoderCloseWaitsAndRefuses(t *testing.T) {
	tok, _ := reTokenizer(t)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	docs := DocLookup(func(id string) (string, error) {
		once.Do(func() { close(started) })
		<-release
		return "dog barks", nil
	})
	ce := reConstModel(t, tok, []float32{0.75}, docs)
	ce.cacheMax = -1 // look every passage up, so that the call blocks
	type answer struct {
		out [][]Result
		err error
	}
	rerank := make(chan answer, 1)
	go func() {
		out, err := ce.Rerank(context.Background(), []string{"dog"}, [][]Result{{{"d1", 1}, {"d2", 0}}}, 2)
		rerank <- answer{out, err}
	}()
	<-started
	closed := make(chan struct{})
	go func() {
		ce.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a re-ranking was in progress")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	a := <-rerank
	if a.err != nil || len(a.out) != 1 || len(a.out[0]) != 2 || math.Abs(a.out[0][0].Score-0.75) > 1e-6 {
		t.Errorf("the call in progress: %v, %v; want both candidates scored 0.75", a.out, a.err)
	}
	<-closed
	ctx := context.Background()
	if _, err := ce.Rerank(ctx, []string{"dog"}, [][]Result{{{"d1", 1}}}, 1); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Rerank after Close: %v, want an error", err)
	}
	if _, err := ce.Score(ctx, []string{"dog"}, []string{"dog barks"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Score after Close: %v, want an error", err)
	}
	if _, err := ce.ScoreEncoded(ctx, []PairEncoding{ce.Pair([]int64{5}, []int64{6})}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("ScoreEncoded after Close: %v, want an error", err)
	}
	if ce.NumLabels() != 1 {
		t.Errorf("NumLabels after Close: %d", ce.NumLabels())
	}
	ce.Close() // twice is fine
}

// makeBatch lays each query out as its positive (label 1) then n
// negatives (label 0), never a document judged relevant to it, no
// document twice; a short negative list is made up with random documents,
// and a query with too few documents not relevant to it is an error
// naming it, not an endless draw.
func TestRerankMakeBatch(t *testing.T) {
	tok, _ := reTokenizer(t)
	letters := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	bench := &Benchmark{}
	for _, l := range letters {
		bench.Docs = append(bench.Docs, Document{ID: strings.ToUpper(l), Text: l})
	}
	store, err := NewDocStore(bench.Docs)
	if err != nil {
		t.Fatal(err)
	}
	ce := reConstModel(t, tok, []float32{0}, store.Text)
	rel := func(ids ...string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	d := &rerankData{bench: bench, train: []trainQuery{
		{id: "q1", text: "dog", pos: []string{"A", "B"}, neg: []string{"C", "D", "E", "F"}, rel: rel("A", "B")},
		{id: "q2", text: "cat", pos: []string{"C"}, neg: []string{"A"}, rel: rel("C", "D", "E", "F", "G")},      // short list: topped up
		{id: "q3", text: "pet", pos: []string{"A"}, neg: nil, rel: rel("A", "B", "C", "D", "E", "F", "G", "H")}, // I and J only
	}}
	const n = 3
	// [CLS] query [SEP] passage [SEP], one token each: the passage's is
	// the document's id in lower case.
	docOf := func(pair []int64) string { return strings.ToUpper(tok.Token(pair[3])) }
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 7))
		b, err := d.makeBatch(ce, []int{0, 1}, n, rng)
		if err != nil {
			t.Fatal(err)
		}
		if b.pairs.N != 2*(n+1) || len(b.labels) != 2*(n+1) {
			t.Fatalf("seed %d: %d pairs, %d labels, want %d", seed, b.pairs.N, len(b.labels), 2*(n+1))
		}
		for qi, k := range []int{0, 1} {
			q := d.train[k]
			seen := map[string]bool{}
			for j := range n + 1 {
				row := qi*(n+1) + j
				ids := b.pairs.IDs[row*b.pairs.L : (row+1)*b.pairs.L]
				doc := docOf(ids)
				if seen[doc] {
					t.Errorf("seed %d, %s: %s drawn twice", seed, q.id, doc)
				}
				seen[doc] = true
				switch {
				case j == 0 && (b.labels[row] != 1 || !slices.Contains(q.pos, doc)):
					t.Errorf("seed %d, %s: first pair %s label %d, want a positive labelled 1", seed, q.id, doc, b.labels[row])
				case j > 0 && (b.labels[row] != 0 || q.rel[doc]):
					t.Errorf("seed %d, %s: pair %d is %s (relevant %v) label %d, want a non-relevant document labelled 0", seed, q.id, j, doc, q.rel[doc], b.labels[row])
				case j > 0 && k == 0 && !slices.Contains(q.neg, doc):
					t.Errorf("seed %d, %s: negative %s is not from its list of four", seed, q.id, doc)
				}
			}
			if k == 1 && !seen["A"] {
				t.Errorf("seed %d, q2: its one listed negative A was not used", seed)
			}
		}
	}
	// q3 has two documents not relevant to it, and asks for three.
	done := make(chan error, 1)
	go func() {
		_, err := d.makeBatch(ce, []int{2}, n, rand.New(rand.NewPCG(1, 2)))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "q3") {
			t.Errorf("too few non-relevant documents: %v, want an error naming q3", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("makeBatch is still drawing negatives for a query with too few non-relevant documents")
	}
	if b, err := d.makeBatch(ce, []int{2}, 2, rand.New(rand.NewPCG(1, 2))); err != nil || b.pairs.N != 3 {
		t.Errorf("q3 with 2 negatives (exactly I and J): %v, %v", b.pairs.N, err)
	}
}

// The run refuses, before training, a query with fewer documents not
// relevant to it than the negatives per query.
func TestRerankTaskTooFewNegatives(t *testing.T) {
	b := &Benchmark{Queries: map[string]map[string]string{}, Qrels: map[string]Qrels{}}
	for _, sp := range Splits {
		b.Queries[sp], b.Qrels[sp] = map[string]string{}, Qrels{}
	}
	for i := range 6 {
		b.Docs = append(b.Docs, Document{ID: fmt.Sprintf("d%d", i), Text: reWords[i]})
	}
	b.Queries[SplitTrain]["q1"], b.Qrels[SplitTrain]["q1"] = "a", map[string]int{"d0": 1}
	b.Queries[SplitTrain]["qall"], b.Qrels[SplitTrain]["qall"] = "b", map[string]int{"d0": 1, "d1": 1, "d2": 1, "d3": 1}
	b.Queries[SplitDev]["q9"], b.Qrels[SplitDev]["q9"] = "c", map[string]int{"d2": 1}
	dir := filepath.Join(t.TempDir(), "bench")
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	_, vocab := reTokenizer(t)
	c := DefaultRerankConfig()
	c.Tokenizer, c.Model = vocab, reBertConfig(0)
	c.MaxQueryLen, c.MaxLen = 12, 28
	c.Data = RerankData{Benchmark: dir, NegativesDepth: 10, Batch: 2, Negatives: 3}
	c.Eval = RerankEval{Split: SplitDev, RerankDepth: 5, Batch: 16}
	d, err := prepareRerank(c, io.Discard, true)
	if err == nil {
		d.close()
		t.Fatal("a query with 2 documents not relevant to it, and 3 negatives asked: accepted")
	}
	if !strings.Contains(err.Error(), "qall") || !strings.Contains(err.Error(), "data.negatives") {
		t.Errorf("error %q, want it to name data.negatives and the query qall", err)
	}
}

// reAnimalBenchmark is a benchmark BM25 cannot solve and a cross-encoder
// learns in a few dozen steps: each place has an animal's document and a
// plant's ("dog amber", "oak amber"), and the query "animal amber" wants
// the animal's. BM25 sees the place word alone in both, a tie that doc
// ids break one way for half the places and the other way for the rest
// (MRR@10 0.75); the relevant document is the one with an animal word,
// for training and evaluation queries alike, places apart.
func reAnimalBenchmark(t *testing.T) string {
	t.Helper()
	places := []string{"amber", "basil", "cedar", "delta", "ember", "fjord", "grove", "heron", "inlet", "jasper", "kelp", "lotus",
		"maple", "nectar", "onyx", "pearl", "quartz", "raven", "sage", "tulip", "umber", "violet", "willow", "yarrow"}
	animals := []string{"dog", "cat", "horse", "cow", "duck", "goat"}
	plants := []string{"oak", "fir", "rose", "fern", "moss", "reed"}
	b := &Benchmark{Queries: map[string]map[string]string{}, Qrels: map[string]Qrels{}}
	for _, sp := range Splits {
		b.Queries[sp], b.Qrels[sp] = map[string]string{}, Qrels{}
	}
	for i, p := range places {
		animal := fmt.Sprintf("d%02d%d", i, i%2)
		b.Docs = append(b.Docs, Document{ID: animal, Text: animals[i%len(animals)] + " " + p},
			Document{ID: fmt.Sprintf("d%02d%d", i, 1-i%2), Text: plants[(i/2)%len(plants)] + " " + p})
		sp := SplitTrain
		if i%3 == 2 {
			sp = SplitDev
		}
		q := fmt.Sprintf("q%02d", i)
		b.Queries[sp][q] = "animal " + p
		b.Qrels[sp][q] = map[string]int{animal: 1}
	}
	dir := filepath.Join(t.TempDir(), "bench")
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A few dozen steps of ir.rerank from scratch, with either loss, lift
// dev MRR@10 from the untrained model's and BM25's 0.75 to (nearly) 1:
// a flipped label, a positive out of its place, a loss of the wrong sign
// or an evaluation of other weights would not. (What the model learns
// here is a property of the passage; that it reads query and passage as
// monoBERT does is what the checkpoint parity tests show.)
func TestRerankTrainingLearns(t *testing.T) {
	dir := reAnimalBenchmark(t)
	vocab := filepath.Join(t.TempDir(), "vocab.txt")
	for _, loss := range []string{LossPointwise, LossLCE} {
		mrr := func(steps int64, lr float64) (bm25, rerank float64) {
			c := DefaultRerankConfig()
			c.Tokenizer, c.VocabSize, c.Model = vocab, 100, reBertConfig(0)
			c.Loss, c.MaxQueryLen, c.MaxLen = loss, 12, 28
			c.Optim.LR = lr
			c.Data = RerankData{Benchmark: dir, NegativesDepth: 10, Batch: 8, Negatives: 1}
			c.Eval = RerankEval{Split: SplitDev, RerankDepth: 10, Batch: 64}
			c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.TensorBoard = steps, 1000, false
			res, err := RerankTask.Start(c, t.TempDir(), false, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			return res.BM25.MRR10, res.Rerank.MRR10
		}
		bm25, untrained := mrr(1, 1e-12) // one step that changes nothing
		_, trained := mrr(30, 3e-3)
		t.Logf("%s: BM25 %.3f, untrained %.3f, after 30 steps %.3f", loss, bm25, untrained, trained)
		if math.Abs(bm25-0.75) > 1e-9 {
			t.Errorf("%s: BM25's MRR@10 %v, want 0.75 (the benchmark's ties)", loss, bm25)
		}
		if !(trained >= 0.95 && trained > untrained+0.05) {
			t.Errorf("%s: dev MRR@10 untrained %.3f, after 30 steps %.3f (BM25 %.3f): training did not help", loss, untrained, trained, bm25)
		}
	}
}
