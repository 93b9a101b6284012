package icae

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

var testDir string // the vocabulary trained on testdata/corpus.txt and the shared LM run

func TestMain(m *testing.M) {
	var err error
	if testDir, err = os.MkdirTemp("", "icae-test"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(testDir)
	os.Exit(code)
}

// tinyLMConfig is a 2-layer Llama of width 32 on the test corpus: 6 steps,
// a checkpoint every 2.
func tinyLMConfig() *LMConfig {
	c := LMTask.Default()
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints, c.Trainer.TensorBoard = 6, 2, 2, 10, false
	c.Model = ModelConfig{HiddenSize: 32, IntermediateSize: 64, Layers: 2, Heads: 4, KVHeads: 2, RMSNormEps: 1e-5, RopeTheta: 10000,
		InitializerRange: 0.02, MaxPositions: 128}
	c.Optim.Warmup = 2
	c.Data = DataConfig{Corpus: "testdata/corpus.txt", Vocab: filepath.Join(testDir, "vocab.txt"), VocabSize: 300, Heldout: 0.2, DocLen: 32, Batch: 8}
	c.Eval.Batches = 2
	return c
}

var (
	lmOnce sync.Once
	lmRun  string
	lmErr  error
)

// baseLM is the HF folder of one icae.lm run the ICAE tests share.
func baseLM(t *testing.T) string {
	t.Helper()
	lmOnce.Do(func() {
		lmRun = filepath.Join(testDir, "lm")
		_, lmErr = LMTask.Start(tinyLMConfig(), lmRun, false, io.Discard)
	})
	require.NoError(t, lmErr)
	return filepath.Join(lmRun, "hf")
}

// tinyPretrainConfig compresses 16-token contexts to 4 slots (4x), from
// 48-token texts, AE and LM mixed, LoRA r 4 on q and v: 6 steps, a
// checkpoint every 2.
func tinyPretrainConfig(t *testing.T) *Config {
	c := PretrainTask.Default()
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints, c.Trainer.TensorBoard = 6, 2, 2, 10, false
	c.LLM = baseLM(t)
	c.Memory = MemoryConfig{Size: 4, Compression: 4, InitStd: 1}
	c.LoRA = LoRAConfig{Enabled: true, Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}
	c.Objective = ObjectiveConfig{MaxLen: 16, LMRatio: 0.5, MinTokensForLM: 4, LeaveTokens: 2}
	c.Optim.LR, c.Optim.Warmup = 1e-2, 2
	c.Data = DataConfig{Corpus: "testdata/corpus.txt", Heldout: 0.2, DocLen: 48, Batch: 4}
	c.Eval = EvalConfig{Samples: 6, ContLen: 8, Generate: true}
	return c
}

func checkpoint(t *testing.T, run string, step int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "checkpoints", fmt.Sprintf("step-%08d", step), "model.safetensors"))
	require.NoError(t, err)
	return b
}

// cutBack removes the checkpoints after step 2 and the results, as a run
// killed after step 2's checkpoint would leave its folder.
func cutBack(t *testing.T, run string) {
	t.Helper()
	for _, step := range []string{"step-00000004", "step-00000006"} {
		require.NoError(t, os.RemoveAll(filepath.Join(run, "checkpoints", step)))
	}
	require.NoError(t, os.Remove(filepath.Join(run, "results.json")))
}

// icae.lm trains, writes a HF folder that torchmods opens as a Llama, and
// a run cut back to its step-2 checkpoint and resumed ends with the same
// weights and held-out loss as the run straight through.
func TestLMTaskExportsAndResumesExactly(t *testing.T) {
	base := baseLM(t)
	whole := lmRun
	ll, err := torchmods.OpenLlama(base, torchmods.LlamaLoadOptions{Device: gotch.CPU}, io.Discard)
	require.NoError(t, err)
	defer ll.Store.Drop()
	assert.Equal(t, int64(32), ll.Model.Cfg.HiddenSize)
	assert.Empty(t, ll.Report.Missing)
	_, err = LoadTokenizer(filepath.Join(base, "vocab.txt"))
	require.NoError(t, err)

	dir := t.TempDir()
	want, err := LMTask.Start(tinyLMConfig(), dir, false, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, checkpoint(t, whole, 6), checkpoint(t, dir, 6), "the same config, the same weights")
	assert.Less(t, want.HeldoutPPL, float64(300), "below the uniform perplexity of the vocabulary")
	cutBack(t, dir)
	got, err := LMTask.Start(tinyLMConfig(), dir, true, io.Discard)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(checkpoint(t, whole, 6), checkpoint(t, dir, 6)), "resumed: the same weights, byte for byte")
	assert.Equal(t, want.HeldoutLoss, got.HeldoutLoss)
}

// icae.pretrain (AE and LM mixed) runs on the frozen LM, reports every
// metric, checkpoints only the trainable tensors, and resumes exactly:
// the loader's position, the per-batch draws of AE or LM and of windows,
// the objective counts and the optimizer all come back.
func TestPretrainTaskResumesExactly(t *testing.T) {
	dir := t.TempDir()
	c := tinyPretrainConfig(t)
	whole, err := PretrainTask.Start(c, dir, false, io.Discard)
	require.NoError(t, err)
	for _, k := range []string{"ae_loss", "ae_tf_token_acc", "recon_token_acc", "recon_bleu4", "trunc_token_acc", "trunc_bleu4", "ppl_full", "ppl_slots", "ppl_none"} {
		assert.Contains(t, whole.Metrics, k)
	}
	assert.Equal(t, []any{16, 4, 4.0}, []any{whole.ContextTokens, whole.Slots, whole.Ratio}, "16 tokens, one segment of 4 slots: 4x")
	assert.Greater(t, whole.AEShare, 0.0)
	assert.Less(t, whole.AEShare, 1.0, "lm_ratio 0.5 draws LM examples too")
	// Per layer: q_proj's A [4, 32] and B [32, 4], v_proj's A [4, 32] and
	// B [16, 4] (2 key/value heads of 8); then the memory table, 4+3 rows.
	assert.Equal(t, int64(2*(128+128+128+64)+7*32), whole.Trainable)
	w, err := torchmods.LoadWeights(filepath.Join(dir, "checkpoints", "step-00000006", "model.safetensors"), gotch.CPU)
	require.NoError(t, err)
	assert.Len(t, w, 9, "8 LoRA matrices and memory_token_embed.weight: the frozen LLM is not in the checkpoint")
	assert.Contains(t, w, "memory_token_embed.weight")
	assert.Contains(t, w, "icae.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight")

	want := checkpoint(t, dir, 6)
	cutBack(t, dir)
	resumed, err := PretrainTask.Start(c, dir, true, io.Discard)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, checkpoint(t, dir, 6)), "the same weights, byte for byte")
	assert.Equal(t, whole.Metrics, resumed.Metrics)
	assert.Equal(t, whole.AEShare, resumed.AEShare, "the objective counts are checkpointed")
}

// The ablation without LoRA trains the memory table alone, and a
// pre-trained ICAE loads as restore_from does.
func TestPretrainWithoutLoRAAndFromPretrained(t *testing.T) {
	c := tinyPretrainConfig(t)
	c.LoRA.Enabled = false
	c.Trainer.MaxSteps, c.Eval.Generate = 2, false
	dir := t.TempDir()
	res, err := PretrainTask.Start(c, dir, false, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, int64(7*32), res.Trainable)
	assert.NotContains(t, res.Metrics, "recon_bleu4")

	c2 := tinyPretrainConfig(t)
	c2.LoRA.Enabled, c2.Pretrained = false, dir
	c2.Optim.LR = 1e-12 // the loaded table, as good as unchanged
	c2.Trainer.MaxSteps, c2.Eval.Generate = 1, false
	again, err := PretrainTask.Start(c2, t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	assert.InDelta(t, res.Metrics["ae_loss"], again.Metrics["ae_loss"], 1e-4, "starts from the pre-trained memory table")
}

// icae.finetune trains on PwC-format examples, from a pre-trained ICAE,
// and resumes exactly.
func TestFinetuneTaskResumesExactly(t *testing.T) {
	pre := t.TempDir()
	pc := tinyPretrainConfig(t)
	pc.Trainer.MaxSteps, pc.Eval.Generate = 2, false
	_, err := PretrainTask.Start(pc, pre, false, io.Discard)
	require.NoError(t, err)

	c := FinetuneTask.Default()
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints, c.Trainer.TensorBoard = 6, 2, 2, 10, false
	c.LLM, c.Pretrained = baseLM(t), pre
	c.Memory, c.LoRA = pc.Memory, pc.LoRA
	c.Format = FormatConfig{Format: "v2", PrefixIDs: []int64{2}, MaxContext: 40} // [CLS] as BOS
	c.Data = FinetuneData{Train: "testdata/pwc_train.jsonl", Eval: "testdata/pwc_eval.jsonl", Batch: 4}
	c.Optim.LR = 1e-2
	dir := t.TempDir()
	whole, err := FinetuneTask.Start(c, dir, false, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 8, whole.Samples)
	assert.Positive(t, whole.AnswerLoss)
	want := checkpoint(t, dir, 6)
	cutBack(t, dir)
	resumed, err := FinetuneTask.Start(c, dir, true, io.Discard)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, checkpoint(t, dir, 6)), "the same weights, byte for byte")
	assert.Equal(t, whole, resumed)
}

// LoRA dropout (the official 0.05) trains, and a run with it resumes
// exactly (the dropout masks come from the checkpointed generator).
func TestLoRADropoutTrains(t *testing.T) {
	c := tinyPretrainConfig(t)
	c.LoRA.Dropout = 0.05
	dir := t.TempDir()
	whole, err := PretrainTask.Start(c, dir, false, io.Discard)
	require.NoError(t, err)
	want := checkpoint(t, dir, 6)
	cutBack(t, dir)
	resumed, err := PretrainTask.Start(c, dir, true, io.Discard)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, checkpoint(t, dir, 6)), "the same weights, byte for byte")
	assert.Equal(t, whole.Metrics, resumed.Metrics)
}

// Every shipped config loads, and errors name the key.
func TestConfigs(t *testing.T) {
	if _, err := train.Lookup(PretrainTask.Name); err != nil {
		train.Register(LMTask, PretrainTask, FinetuneTask)
	}
	paths, err := filepath.Glob("../configs/icae/*.toml")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		_, _, err := train.LoadConfig(p, nil)
		assert.NoError(t, err, p)
	}
	for key, set := range map[string]func(c *Config){
		"base":                          func(c *Config) { c.LLM = "" },
		"base_dtype":                    func(c *Config) { c.BaseDType = "int8" },
		"memory.size":                   func(c *Config) { c.Memory.Size = 0 },
		"memory.compression":            func(c *Config) { c.Memory.Compression = 0 },
		"lora.targets":                  func(c *Config) { c.LoRA.Targets = []string{"gate_proj"} },
		"lora.dropout":                  func(c *Config) { c.LoRA.Dropout = 1 },
		"objective.lm_ratio":            func(c *Config) { c.Objective.LMRatio = 2 },
		"objective.leave_tokens_for_lm": func(c *Config) { c.Objective.LeaveTokens = c.Objective.MinTokensForLM + 1 },
		"optim.decay":                   func(c *Config) { c.Optim.Decay = "step" },
		"data.doc_len":                  func(c *Config) { c.Data.DocLen = 1 },
		"eval.samples":                  func(c *Config) { c.Eval.Samples = 0 },
	} {
		c := PretrainTask.Default()
		c.LLM = "runs/icae-lm/hf"
		set(c)
		assert.ErrorContains(t, c.Validate(), key, key)
	}
	lm := LMTask.Default()
	lm.Data.Vocab = "tokenizer.json"
	assert.ErrorContains(t, lm.Validate(), "data.vocab")
	ft := FinetuneTask.Default()
	ft.LLM, ft.Data.Train, ft.Data.Eval, ft.Format.Format = "x", "a", "b", "v3"
	assert.ErrorContains(t, ft.Validate(), "format.format")
}

// withCopies doubles each row's first half with probability share, the
// same draws for the same seed and step, other draws for another step.
func TestWithCopies(t *testing.T) {
	var seqs [][]int64
	for i := range 400 {
		seqs = append(seqs, []int64{int64(i), 1, 2, 3, 4, 5, 6})
	}
	assert.Equal(t, seqs, withCopies(seqs, 0, 3, 7))
	for _, q := range withCopies(seqs, 1, 3, 7) {
		assert.Equal(t, []int64{q[0], 1, 2, q[0], 1, 2, q[0]}, q)
	}
	a, b, c := withCopies(seqs, 0.5, 3, 7), withCopies(seqs, 0.5, 3, 7), withCopies(seqs, 0.5, 3, 8)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	n := 0
	for i, q := range a {
		if q[3] == q[0] && q[0] != 3 {
			n++
		} else {
			assert.Equal(t, seqs[i], q)
		}
	}
	assert.InDelta(t, 200, n, 40, "about half of 400 rows doubled")
}

// With copy_share the LM still resumes byte for byte (the draws follow the
// step), and it reports its copying perplexity.
func TestLMWithCopiesResumesExactly(t *testing.T) {
	cfg := func() *LMConfig { c := tinyLMConfig(); c.CopyShare = 0.5; return c }
	whole := t.TempDir()
	want, err := LMTask.Start(cfg(), whole, false, io.Discard)
	require.NoError(t, err)
	assert.Greater(t, want.CopyPPL, 1.0)
	dir := t.TempDir()
	_, err = LMTask.Start(cfg(), dir, false, io.Discard)
	require.NoError(t, err)
	cutBack(t, dir)
	got, err := LMTask.Start(cfg(), dir, true, io.Discard)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(checkpoint(t, whole, 6), checkpoint(t, dir, 6)), "resumed: the same weights, byte for byte")
	assert.Equal(t, want.CopyPPL, got.CopyPPL)
	c := cfg()
	c.CopyShare = 1.5
	assert.ErrorContains(t, c.Validate(), "copy_share")
}
