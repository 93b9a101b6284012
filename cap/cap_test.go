package cap

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/textclf"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

func init() {
	train.Register(Task)
	train.Register(textclf.Task)
}

// The fixture BERT (vocabulary 50, 16 positions, hidden 32, 2 layers of 4
// heads and 64 neurons, with its MLM head) and a vocabulary of its size.
const (
	fixture = "../torchmods/testdata/hf_bert_mlm"
	vocab   = "../textclf/testdata/vocab.txt"
)

// sentiment writes n rows of a separable two-class task.
func sentiment(t *testing.T, path string, n int, seed uint64) {
	testutil.WriteSentiment(t, path, n, seed)
}

// teacher fine-tunes the fixture with text.classify once per test binary.
var teacherDir string

func teacher(t *testing.T, data string) string {
	t.Helper()
	if teacherDir != "" {
		return teacherDir
	}
	dir, err := os.MkdirTemp("", "cap-teacher-")
	require.NoError(t, err)
	c := textclf.Default()
	c.Pretrained, c.Tokenizer, c.MaxLen = fixture, vocab, 16
	c.Data.Train, c.Data.Eval = filepath.Join(data, "train.tsv"), []string{filepath.Join(data, "dev.tsv")}
	c.Data.Batch, c.Data.EvalBatch = 16, 16
	c.Optim.LR, c.Optim.WarmupRatio = 3e-3, 0.1
	c.Trainer.Epochs, c.Trainer.LogEvery = 20, 50
	c.Trainer.TensorBoard = false
	res, err := textclf.Task.Start(c, dir, false, io.Discard)
	require.NoError(t, err)
	require.Greater(t, res.Metrics["dev_accuracy"], 0.85, "the teacher learns the task")
	teacherDir = dir
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if teacherDir != "" {
		os.RemoveAll(teacherDir)
	}
	os.Exit(code)
}

func tinyConfig(t *testing.T, method string) *Config {
	t.Helper()
	data := t.TempDir()
	sentiment(t, filepath.Join(data, "train.tsv"), 96, 1)
	sentiment(t, filepath.Join(data, "dev.tsv"), 32, 2)
	c := Default()
	c.Pretrained, c.Tokenizer, c.Teacher, c.MaxLen = fixture, vocab, teacher(t, data), 16
	c.Data.Train, c.Data.Eval = filepath.Join(data, "train.tsv"), []string{filepath.Join(data, "dev.tsv")}
	c.Data.Batch, c.Data.EvalBatch = 16, 16
	c.Optim.LR = 3e-3
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints = 6, 3, 3, 10
	c.Trainer.TensorBoard = false
	c.Contrastive.Rep, c.Contrastive.ExtraExamples = "mean-pooling", 32
	c.MLMEval = MLMEvalConfig{File: filepath.Join(data, "dev.tsv"), Share: 0.15}
	c.Prune.Method = method
	if method == "structured" {
		c.Prune.Percents, c.Prune.HeadPercents = []float64{25, 50, 90}, []float64{25, 50, 75}
		c.Prune.ImportanceShare = 0.5
	} else {
		c.Trainer.MaxSteps, c.Trainer.CheckpointEvery = 12, 4
		c.Optim.WarmupRatio = 0
		c.Prune.Warmup, c.Prune.InitialWarmup, c.Prune.FinalWarmup, c.Prune.FinalThreshold, c.Prune.SnapshotEvery = 1, 2, 3, 0.2, 4
		c.Distill.Temperature = 2
	}
	require.NoError(t, c.Validate())
	return c
}

// Structured CAP end to end: three rounds prune the heads and neurons the
// schedule says, each round's evaluation is reported, and the really
// pruned model in pruned/ is smaller, computes what the masked model
// computes, and opens alone (text.classify's Open) to predict.
func TestStructuredEndToEnd(t *testing.T) {
	c := tinyConfig(t, "structured")
	out := t.TempDir()
	res, err := Task.Start(c, out, false, io.Discard)
	require.NoError(t, err)
	require.Len(t, res.Rounds, 3)
	// 8 heads: int(8 x 25%) = 2, 4, 6 pruned; 128 neurons: 32, 64, 115.
	for i, want := range [][2]int64{{6, 96}, {4, 64}, {2, 13}} {
		assert.Equal(t, want[0], res.Rounds[i].HeadsKept, "round %d heads", i+1)
		assert.Equal(t, want[1], res.Rounds[i].FFNKept, "round %d neurons", i+1)
		assert.Contains(t, res.Rounds[i].Metrics, "dev_accuracy")
	}
	assert.Equal(t, int64(2), res.HeadsKept)
	for _, k := range []string{"dev_accuracy", "teacher_dev_accuracy", "relative_dev_accuracy", "dev_accuracy_at_25", "dev_accuracy_at_90",
		"relative_dev_accuracy_at_50", "mlm_loss", "mlm_loss_pretrained", "mlm_loss_teacher"} {
		assert.Contains(t, res.Metrics, k)
	}
	assert.Less(t, res.PrunedMaxDiff, 1e-5)
	assert.Less(t, res.PrunedParams, res.EncoderParam/3)

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	assert.InDelta(t, res.Metrics["dev_accuracy_at_90"], raw["dev_accuracy_at_90"], 1e-12, "metrics at the top level, for repro exp")

	m, err := textclf.Open(filepath.Join(out, "pruned"), textclf.OpenOptions{MaxLen: 16})
	require.NoError(t, err, "the pruned model opens alone")
	defer m.Close()
	require.NotNil(t, m.Bert.Cfg.Pruned, "its config.json says what was pruned")
	assert.Equal(t, []string{"neg", "pos"}, m.Labels)
	var kept int64
	for l := range m.Bert.Layers {
		kept += m.Bert.Cfg.LayerHeads(l)
	}
	assert.Equal(t, int64(2), kept)
	assert.InDelta(t, res.Metrics["dev_accuracy"], accuracy(t, m, c.Data.Eval[0]), 1e-9, "its accuracy is the run's")
}

// accuracy is m's accuracy on a TSV of sentences and labels.
func accuracy(t *testing.T, m *textclf.Model, path string) float64 {
	t.Helper()
	ex, _, err := textclf.ReadExamples(path, textclf.Layout{Text: "sentence", Label: "label"}, true)
	require.NoError(t, err)
	pred, err := m.Predict(ex)
	require.NoError(t, err)
	correct := 0
	for i, p := range pred {
		if p.Label == ex[i].Label {
			correct++
		}
	}
	return float64(correct) / float64(len(ex))
}

// A run cut back to an earlier checkpoint and resumed ends with the same
// weights, byte for byte, and the same metrics as the run straight
// through: the masks, banks, rounds and schedule position come back.
func TestResumesExactly(t *testing.T) {
	// Structured: 3 rounds of 6 steps, checkpoints every 3; back to step
	// 15, in the third round. topK: 12 steps, checkpoints every 4; back to
	// step 8, in the threshold's descent.
	for method, last := range map[string]int64{"structured": 18, string(TopK): 12} {
		t.Run(method, func(t *testing.T) { resumeMatches(t, tinyConfig(t, method), last, last) })
	}
}

// resumeMatches runs c straight through to step last, deletes the
// checkpoints at the given steps and results.json, resumes, and requires
// the same final weights, metrics and rounds.
func resumeMatches(t *testing.T, c *Config, last int64, drop ...int64) {
	t.Helper()
	out := t.TempDir()
	whole, err := Task.Start(c, out, false, io.Discard)
	require.NoError(t, err)
	ckpt := func(step int64) string { return filepath.Join(out, "checkpoints", fmt.Sprintf("step-%08d", step)) }
	final := filepath.Join(ckpt(last), "model.safetensors")
	want, err := os.ReadFile(final)
	require.NoError(t, err)
	for _, d := range drop {
		require.NoError(t, os.RemoveAll(ckpt(d)))
	}
	require.NoError(t, os.Remove(filepath.Join(out, "results.json")))
	resumed, err := Task.Start(c, out, true, io.Discard)
	require.NoError(t, err)
	got, err := os.ReadFile(final)
	require.NoError(t, err)
	require.Equal(t, want, got, "the same weights, byte for byte")
	assert.Equal(t, whole.Metrics, resumed.Metrics)
	assert.Equal(t, whole.Rounds, resumed.Rounds)
}

// Unstructured runs: movement and magnitude pruning keep the final share
// of every masked matrix, soft movement with its L1 penalty keeps some,
// with all banks, one bank or none.
func TestUnstructuredMethods(t *testing.T) {
	for _, m := range []struct {
		method  Method
		banks   []string
		regular string
	}{{TopK, []string{BankPretrained, BankSnapshots, BankFinetuned}, ""}, {Sigmoid, []string{BankFinetuned}, "l1"}, {Magnitude, nil, ""}} {
		t.Run(string(m.method), func(t *testing.T) {
			c := tinyConfig(t, string(m.method))
			c.Contrastive.Enabled, c.Contrastive.Banks = m.banks != nil, m.banks
			if m.method == Sigmoid {
				// sigmoid(0) = 0.5 is not above 0.5: a weight stays only if
				// its score rose.
				c.Prune.InitialThreshold, c.Prune.FinalThreshold, c.Prune.Regularization, c.Prune.FinalLambda = 0, 0.5, "l1", 5
			}
			require.NoError(t, c.Validate())
			res, err := Task.Start(c, t.TempDir(), false, io.Discard)
			require.NoError(t, err)
			if m.method != Sigmoid {
				// int(0.2 x n) of each matrix: 32x32 -> 204, 64x32 and 32x64 -> 409.
				want := float64(2*(4*204+2*409)) / float64(2*(4*1024+2*2048))
				assert.InDelta(t, want, res.WeightsKept, 1e-12)
			} else {
				assert.Less(t, res.WeightsKept, 1.0)
				assert.Greater(t, res.WeightsKept, 0.0)
			}
			assert.Contains(t, res.Metrics, "dev_accuracy")
		})
	}
}

// A mask of ones changes nothing, a head's mask value changes the output,
// and a mask of the wrong shape is refused naming both shapes. (0/1
// masks are checked exactly against really pruned models in
// structured_test.go.)
func TestHeadMaskIsHFs(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store, b := tinyBert(t)
	defer store.Drop()
	ids := torchmods.FromSlice([]int64{1, 5, 9, 33, 2, 0}, []int64{1, 6}, gotch.CPU)
	full := b.ForwardInput(torchmods.BertInput{IDs: ids}, false)
	ones := b.ForwardInput(torchmods.BertInput{IDs: ids, HeadMask: maskTensor(Ones(3, 4), gotch.CPU), FFNMask: maskTensor(Ones(3, 10), gotch.CPU)}, false)
	assert.InDeltaSlice(t, full.Float64Values(), ones.Float64Values(), 1e-7, "a mask of ones changes nothing")
	half := Ones(3, 4)
	half[1][2] = 0.5
	h := b.ForwardInput(torchmods.BertInput{IDs: ids, HeadMask: maskTensor(half, gotch.CPU)}, false)
	assert.Greater(t, h.MustSub(full, false).MustAbs(true).MustMax(true).Float64Values()[0], 1e-4)
	_, err := func() (x *ts.Tensor, err error) {
		err = torchmods.Try(func() {
			x = b.ForwardInput(torchmods.BertInput{IDs: ids, HeadMask: maskTensor(Ones(2, 4), gotch.CPU)}, false)
		})
		return
	}()
	assert.ErrorContains(t, err, "head mask of shape [2 4], want [layers 3, heads 4]")
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Prune.Method = "random" }, "prune.method"},
		{func(c *Config) { c.Prune.Percents = nil }, "prune.percents"},
		{func(c *Config) { c.Prune.Percents = []float64{50, 20} }, "must rise"},
		{func(c *Config) { c.Prune.HeadPercents = []float64{10} }, "prune.head_percents"},
		{func(c *Config) { c.Contrastive.Banks = []string{"teacher"} }, `unknown bank "teacher"`},
		{func(c *Config) { c.Contrastive.Rep = "max" }, "contrastive.rep"},
		{func(c *Config) { c.Teacher = "" }, "teacher"},
		{func(c *Config) { c.Prune.HeadProtection = "" }, "prune.head_protection"},
		{func(c *Config) {
			c.Prune.Method, c.Prune.Percents, c.Prune.HeadPercents, c.Optim.WarmupRatio = "topK", nil, nil, 0
			c.Prune.Regularization = "l1"
		}, "sigmoied_threshold scores only"},
		{func(c *Config) { c.Prune.Method = "topK" }, "set optim.warmup_ratio = 0"},
		{func(c *Config) { c.Prune.Method, c.Optim.WarmupRatio = "topK", 0 }, "prune.percents: is for structured pruning"},
		{func(c *Config) { c.Optim.Warmup = 10 }, "not both"},
		{func(c *Config) { c.Data.GLUE = "nope" }, `unknown GLUE task "nope"`},
	} {
		c := Default()
		c.Pretrained, c.Teacher = "p", "t"
		c.Prune.Percents = []float64{10, 20}
		tc.edit(c)
		assert.ErrorContains(t, c.Validate(), tc.want)
	}
}

// Export writes from a checkpoint what the finished run wrote to pruned/:
// the same really pruned weights (structured) or the same weights with
// their masks applied (movement pruning), which open alone and score what
// the run scored.
func TestExportFromCheckpoint(t *testing.T) {
	for _, method := range []string{"structured", string(TopK)} {
		t.Run(method, func(t *testing.T) {
			c := tinyConfig(t, method)
			run := t.TempDir()
			res, err := Task.Start(c, run, false, io.Discard)
			require.NoError(t, err)
			out := filepath.Join(t.TempDir(), "export")
			ckpt, err := Export(c, run, out, ExportOptions{})
			require.NoError(t, err)
			assert.Contains(t, ckpt, "checkpoints")
			want, err := os.ReadFile(filepath.Join(run, "pruned", "model.safetensors"))
			require.NoError(t, err)
			got, err := os.ReadFile(filepath.Join(out, "model.safetensors"))
			require.NoError(t, err)
			assert.Equal(t, want, got, "the same weights as the run's pruned/")
			m, err := textclf.Open(out, textclf.OpenOptions{MaxLen: 16})
			require.NoError(t, err)
			defer m.Close()
			assert.InDelta(t, res.Metrics["dev_accuracy"], accuracy(t, m, c.Data.Eval[0]), 1e-9)
			assert.Less(t, res.PrunedMaxDiff, 1e-5)
		})
	}
}

// A structured run resumed exactly at a round's end (the next round's
// importance, banks and optimizer restart run after the restore) ends as
// the run straight through.
func TestResumesAtRoundBoundary(t *testing.T) {
	c := tinyConfig(t, "structured")
	c.Trainer.CheckpointEvery = 6
	resumeMatches(t, c, 18, 18, 12) // back to step 6, the end of round 1
}

// An unstructured run is evaluated and exported at prune.final_threshold,
// as the official evaluate() is, even when the schedule has not reached
// it (a run shorter than its warm-up).
func TestFinalThresholdAtTheEnd(t *testing.T) {
	c := tinyConfig(t, string(TopK))
	c.Prune.Warmup = 10 // the schedule holds 1.0 for 20 steps, the run has 12
	res, err := Task.Start(c, t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	want := float64(2*(4*204+2*409)) / float64(2*(4*1024+2*2048))
	assert.InDelta(t, want, res.WeightsKept, 1e-12)
}
