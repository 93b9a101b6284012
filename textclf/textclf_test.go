package textclf

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/hub"
	"github.com/reprolab/repro/train"
)

func init() { train.Register(Task) }

// The fixture BERT (vocabulary 50, 16 positions, hidden 32) and a
// vocabulary of its size.
const (
	fixture = "../torchmods/testdata/hf_bert_mlm"
	vocab   = "testdata/vocab.txt"
)

// sentiment writes n rows of a separable two-class task.
func sentiment(t *testing.T, path string, n int, seed uint64) {
	testutil.WriteSentiment(t, path, n, seed)
}

// tinyConfig is a classification run of the fixture on generated data.
func tinyConfig(t *testing.T, dir string) *Config {
	t.Helper()
	sentiment(t, filepath.Join(dir, "train.tsv"), 96, 1)
	sentiment(t, filepath.Join(dir, "dev.tsv"), 32, 2)
	c := Default()
	c.Pretrained, c.Tokenizer, c.MaxLen = fixture, vocab, 16
	c.Data.Train, c.Data.Eval = filepath.Join(dir, "train.tsv"), []string{filepath.Join(dir, "dev.tsv")}
	c.Data.Batch, c.Data.EvalBatch = 16, 16
	c.Metrics = []string{MetricAccuracy, MetricF1, MetricMatthews}
	c.Optim.LR, c.Optim.WarmupRatio = 3e-3, 0.1
	c.Trainer.Epochs, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints, c.Trainer.LogEvery = 30, 12, 10, 12
	c.Trainer.TensorBoard = false
	require.NoError(t, c.Validate())
	return c
}

// End to end: the fixture BERT fine-tuned on a separable task learns it;
// the run writes its metrics under the file's name, predictions in GLUE's
// format, and the files that let Open and Eval load it alone.
func TestClassifyEndToEnd(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	c := tinyConfig(t, data)
	res, err := Task.Start(c, out, false, io.Discard)
	require.NoError(t, err)
	t.Logf("dev metrics %v", res.Metrics)
	assert.Greater(t, res.Metrics["dev_accuracy"], 0.85, "a separable task is learned (chance is 0.5)")
	for _, k := range []string{"dev_f1", "dev_matthews", "dev_loss"} {
		assert.Contains(t, res.Metrics, k)
	}
	assert.Equal(t, []string{"neg", "pos"}, res.Labels, "labels sorted, as run_glue.py")

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	assert.InDelta(t, res.Metrics["dev_accuracy"], raw["dev_accuracy"], 1e-12, "metrics at the top level of results.json")

	pred, err := os.ReadFile(filepath.Join(out, "predictions", "dev.tsv"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(pred)), "\n")
	require.Len(t, lines, 33)
	assert.Equal(t, "index\tprediction", lines[0])
	assert.Regexp(t, `^0\t(pos|neg)$`, lines[1])

	assert.FileExists(t, filepath.Join(out, "config.json"))
	assert.FileExists(t, filepath.Join(out, "vocab.txt"))
	m, err := Open(out, OpenOptions{MaxLen: 16})
	require.NoError(t, err, "a run opens alone: config.json, vocab.txt and its newest checkpoint")
	defer m.Close()
	assert.Equal(t, []string{"neg", "pos"}, m.Labels)
	p, err := m.Predict([]Example{{Text: "the movie was great"}, {Text: "the plot was awful"}})
	require.NoError(t, err)
	assert.Equal(t, "pos", p[0].Label)
	assert.Equal(t, "neg", p[1].Label)
	assert.InDelta(t, 1, p[0].Probs[0]+p[0].Probs[1], 1e-9)

	var sb strings.Builder
	require.NoError(t, Eval(c, out, &sb))
	assert.Contains(t, sb.String(), fmt.Sprintf("dev_accuracy %.4f", res.Metrics["dev_accuracy"]), "repro eval gives the run's numbers")
}

// A run cut back to an earlier checkpoint and resumed ends with the same
// weights, byte for byte, as the run straight through.
func TestClassifyResumesExactly(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	c := tinyConfig(t, data)
	c.Trainer.Epochs = 3 // 18 steps: checkpoints at 12 and 18
	whole, err := Task.Start(c, out, false, io.Discard)
	require.NoError(t, err)
	final := filepath.Join(out, "checkpoints", "step-00000018", "model.safetensors")
	want, err := os.ReadFile(final)
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(filepath.Join(out, "checkpoints", "step-00000018")))
	require.NoError(t, os.Remove(filepath.Join(out, "results.json")))
	resumed, err := Task.Start(c, out, true, io.Discard)
	require.NoError(t, err)
	got, err := os.ReadFile(final)
	require.NoError(t, err)
	require.Equal(t, want, got, "the same weights, byte for byte")
	assert.Equal(t, whole.Metrics, resumed.Metrics)
}

// Pairs and a regression: STS-B's shape (two sentences, a score, Pearson
// and Spearman), from JSONL with numbers as labels.
func TestPairRegression(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 3))
	write := func(name string, n int) {
		var b strings.Builder
		for range n {
			a, p := testutil.SentimentPositive[rng.IntN(len(testutil.SentimentPositive))], testutil.SentimentPositive[rng.IntN(len(testutil.SentimentPositive))]
			score := 4.0
			if rng.IntN(2) == 0 {
				p, score = testutil.SentimentNegative[rng.IntN(len(testutil.SentimentNegative))], 1.0
			}
			fmt.Fprintf(&b, `{"s1": "the movie was %s", "s2": "it is %s", "score": %v}`+"\n", a, p, score)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644))
	}
	write("train.jsonl", 64)
	write("dev.jsonl", 16)
	c := Default()
	c.Pretrained, c.Tokenizer, c.MaxLen, c.Problem = fixture, vocab, 16, "regression"
	c.Data.Train, c.Data.Eval = filepath.Join(dir, "train.jsonl"), []string{filepath.Join(dir, "dev.jsonl")}
	c.Data.Text, c.Data.Pair, c.Data.Label, c.Data.Batch = "s1", "s2", "score", 16
	c.Optim.LR, c.Optim.WarmupRatio = 3e-3, 0.1
	c.Trainer.Epochs, c.Trainer.CheckpointEvery, c.Trainer.TensorBoard = 30, 0, false
	require.NoError(t, c.Validate())
	out := t.TempDir()
	res, err := Task.Start(c, out, false, io.Discard)
	require.NoError(t, err)
	t.Logf("dev metrics %v", res.Metrics)
	assert.Greater(t, res.Metrics["dev_pearson"], 0.8)
	assert.Contains(t, res.Metrics, "dev_spearman")
	pred, err := os.ReadFile(filepath.Join(out, "predictions", "dev.tsv"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^0\t\d\.\d{3}$`, string(pred), "values to 3 decimals, as run_glue.py")
	m, err := Open(out, OpenOptions{MaxLen: 16})
	require.NoError(t, err)
	defer m.Close()
	assert.True(t, m.Regression, "config.json's problem_type")
}

// From an mlm.pretrain run: its config.toml gives the BERT's sizes and the
// tokenizer (data.vocab), its newest checkpoint the weights (HF names).
func TestFromMLMRun(t *testing.T) {
	run := t.TempDir()
	ck := filepath.Join(run, "checkpoints", "step-00000001")
	require.NoError(t, os.MkdirAll(ck, 0o755))
	b, err := os.ReadFile(filepath.Join(fixture, "model.safetensors"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(ck, "model.safetensors"), b, 0o644))
	abs, err := filepath.Abs(vocab)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(run, "config.toml"), []byte(`task = "mlm.pretrain"
[model]
vocab_size = 0
hidden_size = 32
num_hidden_layers = 2
num_attention_heads = 4
intermediate_size = 64
hidden_act = "gelu"
max_position_embeddings = 16
type_vocab_size = 2
layer_norm_eps = 1e-12
[data]
vocab = "`+abs+`"
`), 0o644))
	src, err := resolveSource(run, "", Default().Model)
	require.NoError(t, err)
	assert.True(t, src.run)
	assert.Equal(t, abs, src.tokenizer)
	assert.Equal(t, int64(32), src.bert.HiddenSize)

	m, err := Open(run, OpenOptions{})
	require.NoError(t, err)
	defer m.Close()
	assert.Nil(t, m.Classifier, "an encoder: the run has no classification head")
	e, err := m.Embed([]string{"the cat sat on the mat"})
	require.NoError(t, err)
	assert.Len(t, e[0], 32)
}

// Pairs are [CLS] a [SEP] b [SEP], types 0 then 1, the longer text cut
// first (the second on a tie), as HF's longest_first.
func TestEncodePairs(t *testing.T) {
	tok, err := mlm.LoadTokenizer(vocab)
	require.NoError(t, err)
	id := func(w string) int64 {
		e, err := tok.Encode(w, 10)
		require.NoError(t, err)
		return e.IDs[1]
	}
	e, err := EncodeExample(tok, Example{Text: "the cat sat", Pair: "a dog"}, true, 16)
	require.NoError(t, err)
	assert.Equal(t, []int64{tok.CLS, id("the"), id("cat"), id("sat"), tok.SEP, id("a"), id("dog"), tok.SEP}, e.IDs)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 1, 1, 1}, e.Types)

	// 5 + 3 tokens into 7 - 3 = 4: a loses 3 (5 > 3, 4 > 3, then 3 = 3 takes
	// b's), ... ending at 2 + 2.
	e, err = EncodeExample(tok, Example{Text: "the cat sat on the", Pair: "a dog sat"}, true, 7)
	require.NoError(t, err)
	assert.Equal(t, []int64{tok.CLS, id("the"), id("cat"), tok.SEP, id("a"), id("dog"), tok.SEP}, e.IDs)

	e, err = EncodeExample(tok, Example{Text: "the cat sat on the mat"}, false, 5)
	require.NoError(t, err)
	assert.Equal(t, []int64{tok.CLS, id("the"), id("cat"), id("sat"), tok.SEP}, e.IDs)

	b := Pad([]Encoded{{IDs: []int64{2, 7, 3}, Types: []int64{0, 0, 0}}, {IDs: []int64{2, 3}, Types: []int64{0, 0}}}, 0)
	assert.Equal(t, []int64{2, 7, 3, 2, 3, 0}, b.IDs, "padded to the batch's longest")
	assert.Equal(t, []int64{1, 1, 1, 1, 1, 0}, b.Mask)
}

// The GLUE layouts read the files as distributed: CoLA without a header
// (its test file with one), MRPC's byte-order mark and quality column,
// MNLI's gold label last, quotes kept as text.
func TestGLUELayouts(t *testing.T) {
	dir := t.TempDir()
	w := func(name, s string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
		return p
	}
	cola, _ := GLUE("CoLA")
	ex, _, err := ReadExamples(w("cola.tsv", "gj04\t1\t\tOur friends won't buy this analysis.\nclc95\t0\t*\tThe more \"he\" reads.\n"), cola.Train, true)
	require.NoError(t, err)
	assert.Equal(t, []Example{{Text: "Our friends won't buy this analysis.", Label: "1"}, {Text: `The more "he" reads.`, Label: "0"}}, ex)
	ex, _, err = ReadExamples(w("cola_test.tsv", "index\tsentence\n0\tBill whistled past the house.\n"), cola.Test, false)
	require.NoError(t, err)
	assert.Equal(t, []Example{{Text: "Bill whistled past the house."}}, ex)

	mrpc, _ := GLUE("mrpc")
	ex, _, err = ReadExamples(w("mrpc.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t702876\t702977\tAmrozi accused.\tReferring to him.\n"), mrpc.Train, true)
	require.NoError(t, err)
	assert.Equal(t, []Example{{Text: "Amrozi accused.", Pair: "Referring to him.", Label: "1"}}, ex)

	mnli, _ := GLUE("mnli")
	ex, _, err = ReadExamples(w("mnli.tsv", "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tgold_label\n"+
		"0\t1\t1e\tgov\t(\t(\t(\t(\tOne.\tTwo.\tneutral\tentailment\tentailment\n"), mnli.Train, true)
	require.NoError(t, err)
	assert.Equal(t, []Example{{Text: "One.", Pair: "Two.", Label: "entailment"}}, ex)
	assert.Equal(t, []string{"dev_matched.tsv", "dev_mismatched.tsv"}, mnli.Eval)

	// A short row is an error naming the line, or skipped and counted.
	bad := w("bad.tsv", "sentence\tlabel\nfine\t1\nshort\n")
	_, _, err = ReadExamples(bad, Layout{Text: "sentence", Label: "label"}, true)
	assert.ErrorContains(t, err, "bad.tsv:3")
	ex, skipped, err := ReadExamples(bad, Layout{Text: "sentence", Label: "label", SkipBadRows: true}, true)
	require.NoError(t, err)
	assert.Len(t, ex, 1)
	assert.Equal(t, 1, skipped)

	// CSV quotes, columns by index.
	ex, _, err = ReadExamples(w("x.csv", "a,b\n\"hello, world\",yes\n"), Layout{Text: "0", Label: "b"}, true)
	require.NoError(t, err)
	assert.Equal(t, []Example{{Text: "hello, world", Label: "yes"}}, ex)
}

// A config names its mistakes by key.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		set func(*Config)
		key string
	}{
		{func(c *Config) { c.Data.GLUE = "squad" }, "data.glue"},
		{func(c *Config) { c.Data.GLUE, c.Problem = "stsb", "classification" }, "problem"},
		{func(c *Config) { c.Metrics = []string{"pearson"} }, "metrics"},
		{func(c *Config) { c.Labels = []string{"a", "a"} }, "labels"},
		{func(c *Config) { c.Optim.Warmup, c.Optim.WarmupRatio = 10, 0.1 }, "optim.warmup_ratio"},
		{func(c *Config) { c.Pretrained = "" }, "model"},
		{func(c *Config) { c.Data.Train = "" }, "data.train"},
	} {
		c := Default()
		c.Pretrained, c.Data.Train = fixture, "x.tsv"
		tc.set(c)
		err := c.Validate()
		require.Error(t, err, tc.key)
		assert.True(t, strings.HasPrefix(err.Error(), tc.key+":"), "%v should name %s", err, tc.key)
	}
}

// hf:ORG/NAME: the weights, config.json and the tokenizer from the HF
// cache (offline here), laid out as huggingface_hub lays it out.
func TestFromHubCache(t *testing.T) {
	cache := t.TempDir()
	old := torchmods.HubOptions
	torchmods.HubOptions = hub.Options{CacheDir: cache, Offline: true}
	defer func() { torchmods.HubOptions = old }()
	commit := strings.Repeat("cd", 20)
	repo := filepath.Join(cache, "models--org--tiny-bert")
	snap := filepath.Join(repo, "snapshots", commit)
	require.NoError(t, os.MkdirAll(filepath.Join(repo, "refs"), 0o755))
	require.NoError(t, os.MkdirAll(snap, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(commit), 0o644))
	for src, dst := range map[string]string{filepath.Join(fixture, "config.json"): "config.json",
		filepath.Join(fixture, "model.safetensors"): "model.safetensors", vocab: "vocab.txt"} {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(snap, dst), b, 0o644))
	}
	m, err := Open("hf:org/tiny-bert", OpenOptions{Labels: []string{"a", "b"}})
	require.NoError(t, err)
	defer m.Close()
	assert.Equal(t, filepath.Join(snap, "vocab.txt"), m.TokPath)
	p, err := m.Predict([]Example{{Text: "the cat", Pair: "sat on the mat"}})
	require.NoError(t, err)
	assert.Len(t, p[0].Probs, 2)
}
