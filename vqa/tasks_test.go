package vqa

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

func init() { train.Register(PretrainTask, FinetuneTask) }

// microModel is a model small enough for tests: a 1-block ViT on 48 px
// and a 2-layer BERT (1 text, 1 fusion layer), width 32.
func microModel() ModelConfig {
	c := tinyModel()
	c.ImageRes, c.Patch, c.VisionWidth, c.VisionDepth, c.VisionHeads, c.DecoderLayers, c.EmbedDim = 48, 16, 32, 1, 2, 1, 16
	c.Text.HiddenSize, c.Text.NumHiddenLayers, c.Text.NumAttentionHeads, c.Text.IntermediateSize = 32, 2, 2, 64
	c.Text.FusionLayer, c.Text.EncoderWidth = 1, 32
	return c
}

func microData(dir string) DataConfig {
	d := DefaultData()
	d.Synth = SynthConfig{Size: 48, Train: 24, Val: 12, Test: 12, PretrainExtra: 8, QuestionsPerImage: 2, Seed: 5}
	d.Vocab, d.VocabSize, d.Batch, d.EvalBatch, d.Workers = filepath.Join(dir, "vocab.txt"), 200, 4, 8, 1
	return d
}

func microPretrain(dir string) *PretrainConfig {
	c := DefaultPretrain()
	c.Model, c.Data = microModel(), microData(dir)
	c.Objective.QueueSize = 8
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.CheckpointEvery, c.Optim.WarmupSteps = 4, 2, 2, 2
	return c
}

func microFinetune(dir, pretrained string) *FinetuneConfig {
	c := DefaultFinetune()
	c.Model, c.Data, c.Pretrained = microModel(), microData(dir), pretrained
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.EvalEvery, c.Trainer.CheckpointEvery = 4, 2, 2, 2
	c.KTest = 5
	return c
}

// Pre-training then fine-tuning, end to end on the synthetic scans: the
// losses are finite, the pre-training checkpoint holds MUMC's names, the
// fine-tuning loads it (the decoder from the fusion layers) and reports
// accuracies of the test split at the epoch chosen on val.
func TestPretrainThenFinetune(t *testing.T) {
	dir := t.TempDir()
	pre, err := PretrainTask.Start(microPretrain(dir), filepath.Join(dir, "pre"), false, io.Discard)
	require.NoError(t, err)
	for _, l := range []float64{pre.ITA, pre.ITM, pre.MLM} {
		assert.Greater(t, l, 0.0)
	}
	assert.Equal(t, int64(4), pre.Steps)

	src, err := torchmods.Resolve(filepath.Join(dir, "pre"))
	require.NoError(t, err)
	wf, err := torchmods.ReadWeights(src.File)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, x := range wf.Tensors {
		names[x.Name] = true
	}
	for _, n := range []string{"visual_encoder.pos_embed", "visual_encoder_m.blocks.0.attn.qkv.weight", "text_encoder.bert.encoder.layer.1.crossattention.self.key.weight",
		"text_encoder.cls.predictions.bias", "text_encoder_m.bert.embeddings.word_embeddings.weight", "vision_proj.weight", "text_proj_m.bias",
		"temp", "itm_head.3.weight", "image_queue", "text_queue", "queue_ptr"} {
		assert.True(t, names[n], n)
	}

	var log bytes.Buffer
	res, err := FinetuneTask.Start(microFinetune(dir, filepath.Join(dir, "pre")), filepath.Join(dir, "ft"), false, &log)
	require.NoError(t, err)
	assert.Contains(t, log.String(), "VQA model from "+src.File)
	assert.Contains(t, log.String(), "unexpected (18): image_queue, itm_head.0.bias")
	assert.NotContains(t, log.String(), "missing", "every VQA weight, the decoder's included, comes from the pre-training")
	assert.Equal(t, [3]int{48, 24, 24}, res.Questions)
	for _, a := range []Accuracies{res.Val, res.Test, res.TestLast} {
		assert.True(t, a.Overall >= 0 && a.Overall <= 100)
	}
	var rows []map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "ft", "metrics.jsonl"))
	require.NoError(t, err)
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r map[string]any
		require.NoError(t, json.Unmarshal(line, &r))
		if _, ok := r["val_overall"]; ok {
			rows = append(rows, r)
		}
	}
	require.Len(t, rows, 2, "evaluated at steps 2 and 4")
	best := rows[0]
	if rows[1]["val_overall"].(float64) > rows[0]["val_overall"].(float64) {
		best = rows[1]
	}
	assert.InDelta(t, best["test_overall"], res.Test.Overall, 1e-9, "the test accuracy of the evaluation with the best val accuracy")
	assert.InDelta(t, rows[1]["test_overall"], res.TestLast.Overall, 1e-9)
	assert.InDelta(t, best["epoch"], res.Epoch, 1e-12, "the selected evaluation's epoch, as metrics.jsonl counts it")

	// repro vqa answer's path, one question at a time from the run's last
	// checkpoint, scores the test split as the task's last evaluation did.
	a, err := OpenAnswerer(microFinetune(dir, filepath.Join(dir, "pre")), filepath.Join(dir, "ft"), gotch.CPU, io.Discard)
	require.NoError(t, err)
	ev, err := a.Evaluate("test")
	require.NoError(t, err)
	assert.Equal(t, 24, ev.All.N)
	assert.InDelta(t, res.TestLast.Overall, ev.All.Overall, 1e-9)
	require.NotNil(t, ev.HeldOut)
	require.NotNil(t, ev.Others)
	assert.Equal(t, 24, ev.HeldOut.N+ev.Others.N)
	_, err = a.Evaluate("train")
	assert.ErrorContains(t, err, `split "train"`)

	// How many answers are shown does not change the ranking, which
	// re-ranks k_test candidates whatever is shown.
	img, err := synthImages{mustSynth(t, microData(dir))}.Image(res0Image(t, dir))
	require.NoError(t, err)
	one, err := a.Answer(img, []string{"is there a lesion?", "what imaging modality is this?"}, 1)
	require.NoError(t, err)
	five, err := a.Answer(img, []string{"is there a lesion?", "what imaging modality is this?"}, 5)
	require.NoError(t, err)
	for i := range one {
		require.Len(t, one[i], 1)
		require.Len(t, five[i], 5)
		assert.Equal(t, one[i][0], five[i][0])
		for j := 1; j < 5; j++ {
			assert.LessOrEqual(t, five[i][j].Prob, five[i][j-1].Prob)
		}
	}
}

func mustSynth(t *testing.T, d DataConfig) *SynthSet {
	s, err := Synthesize(d.Synth.options())
	require.NoError(t, err)
	return s
}

// res0Image is the first test question's image of the micro data.
func res0Image(t *testing.T, dir string) string {
	return mustSynth(t, microData(dir)).Test[0].Image
}

// An interrupted pre-training resumes to the same weights, queues and
// held-out losses as one that ran through: the data order, masks and
// negatives follow from the seed and step, the queue is in the checkpoint.
func TestPretrainResumesExactly(t *testing.T) {
	dir := t.TempDir()
	full, err := PretrainTask.Start(microPretrain(dir), filepath.Join(dir, "full"), false, io.Discard)
	require.NoError(t, err)
	c := microPretrain(dir)
	c.Trainer.MaxSteps = 2
	_, err = PretrainTask.Start(c, filepath.Join(dir, "cut"), false, io.Discard)
	require.NoError(t, err)
	// Resume with the full length: the run continues from step 2.
	cfg := filepath.Join(dir, "cut", "config.toml")
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, bytes.Replace(b, []byte("max_steps = 2"), []byte("max_steps = 4"), 1), 0o644))
	resumed, err := PretrainTask.Start(microPretrain(dir), filepath.Join(dir, "cut"), true, io.Discard)
	require.NoError(t, err)
	assert.InDelta(t, full.ITA, resumed.ITA, 1e-5)
	assert.InDelta(t, full.ITM, resumed.ITM, 1e-5)
	assert.InDelta(t, full.MLM, resumed.MLM, 1e-5)
}

// A checkpoint saved by the mae package initialises the image encoder,
// with a report of what loaded: the encoder's 18 tensors (patch embedding, cls
// token, position table, the block's 12, the final norm), none missing,
// not MAE's decoder.
func TestVisionInitFromMAECheckpoint(t *testing.T) {
	dir := t.TempDir()
	func() {
		sc := ts.NewScope()
		defer sc.Close()
		store := torchmods.NewStore(gotch.CPU)
		_, err := mae.New(store.Root(), mae.Options{ImgSize: 48, Patch: 16, InChans: 3, Dim: 32, Depth: 1, Heads: 2, DecoderDim: 16, DecoderDepth: 1, DecoderHeads: 2, MLPRatio: 4, Eps: 1e-6})
		require.NoError(t, err)
		require.NoError(t, train.SaveCheckpoint(filepath.Join(dir, "mae"), 7, store, train.NewAdamW(store, 0.9, 0.95, 1e-8, 0.05), nil, 1))
	}()
	c := microPretrain(dir)
	c.VisionInit, c.Trainer.MaxSteps = filepath.Join(dir, "mae"), 1
	var log bytes.Buffer
	_, err := PretrainTask.Start(c, filepath.Join(dir, "pre"), false, &log)
	require.NoError(t, err)
	assert.Regexp(t, `visual_encoder from MAE state_dict \(safetensors\) from .*step-0*7/model.safetensors: loaded 18 tensors\n`, log.String())

	c = microPretrain(dir)
	c.VisionInit = filepath.Join(dir, "nothing")
	_, err = PretrainTask.Start(c, filepath.Join(dir, "bad"), false, io.Discard)
	assert.ErrorContains(t, err, "vision_init")
	assert.ErrorContains(t, err, "nothing")
}

// The VQA loss reaches every module: the image encoder through the
// fusion layers' cross-attention, the question's text layers, the
// decoder; the momentum copies get no gradient.
func TestVQALossReachesEveryModule(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	dir := t.TempDir()
	c := microFinetune(dir, "")
	ds, err := c.Data.Open(true)
	require.NoError(t, err)
	tok, err := c.Data.Tokenizer(ds)
	require.NoError(t, err)
	c.Model.Text.VocabSize = tok.Size
	store := torchmods.NewStore(gotch.CPU)
	m, err := NewVQAModel(store.Root(), c.Model, true, 0.995)
	require.NoError(t, err)
	aug, err := c.Data.augment(c.Model.ImageRes)
	require.NoError(t, err)
	var qb qaBatch
	var names []string
	for _, it := range ds.Train[:4] {
		names = append(names, it.Image)
		qb.questions, qb.answers = append(qb.questions, PreQuestion(it.Question, 30)), append(qb.answers, PreAnswer(it.Answer))
	}
	qb.pixels, err = imageBatch(ds.Images, names, aug, false, nil)
	require.NoError(t, err)
	imgs := torchmods.FromSlice(qb.pixels, []int64{4, 3, c.Model.ImageRes, c.Model.ImageRes}, gotch.CPU)
	loss, err := m.loss(tok, imgs, qb, c, 0.4)
	require.NoError(t, err)
	loss.MustBackward()
	for _, name := range []string{"visual_encoder.patch_embed.proj.weight", "visual_encoder.blocks.0.attn.qkv.weight", "text_encoder.embeddings.word_embeddings.weight",
		"text_encoder.encoder.layer.0.attention.self.query.weight", "text_encoder.encoder.layer.1.crossattention.self.key.weight",
		"text_decoder.bert.encoder.layer.0.crossattention.self.value.weight", "text_decoder.cls.predictions.bias"} {
		p, ok := store.Param(name)
		require.True(t, ok, name)
		g := p.Tensor.MustGrad(false)
		require.True(t, g.MustDefined(), name)
		assert.Greater(t, floats(g.MustAbs(false).MustMax(true))[0], 0.0, name)
	}
	p, _ := store.Param("visual_encoder_m.blocks.0.attn.qkv.weight")
	assert.False(t, p.Tensor.MustGrad(false).MustDefined())
}

// The synthetic set written to disk (repro vqa synth) reads back through
// the file readers as the same questions, captions and images, and a
// val_split holds out whole images.
func TestSynthFilesReadBack(t *testing.T) {
	dir := t.TempDir()
	mem := microData(dir)
	s, err := Synthesize(mem.Synth.options())
	require.NoError(t, err)
	require.NoError(t, s.Write(filepath.Join(dir, "synth")))
	files := mem
	files.Kind, files.ImageRoot = "files", filepath.Join(dir, "synth", "images")
	files.Captions = []string{filepath.Join(dir, "synth", "captions.json")}
	files.Train, files.Test = []string{filepath.Join(dir, "synth", "trainset.json")}, []string{filepath.Join(dir, "synth", "testset.json")}
	files.Val, files.AnswerList = []string{filepath.Join(dir, "synth", "valset.json")}, filepath.Join(dir, "synth", "answer_list.json")
	require.NoError(t, files.validate(true))
	a, err := mem.Open(true)
	require.NoError(t, err)
	b, err := files.Open(true)
	require.NoError(t, err)
	assert.Equal(t, a.Train, b.Train)
	assert.Equal(t, a.Val, b.Val)
	assert.Equal(t, a.Test, b.Test)
	assert.Equal(t, a.Answers, b.Answers)
	assert.Equal(t, a.Pairs, b.Pairs)
	aug, err := files.augment(48)
	require.NoError(t, err)
	x, err := imageBatch(a.Images, []string{a.Test[0].Image}, aug, false, nil)
	require.NoError(t, err)
	y, err := imageBatch(b.Images, []string{b.Test[0].Image}, aug, false, nil)
	require.NoError(t, err)
	assert.Equal(t, x, y, "the PNG holds the generated pixels")

	files.Val, files.ValSplit = nil, 0.25
	require.NoError(t, files.validate(true))
	c, err := files.Open(true)
	require.NoError(t, err)
	assert.Equal(t, len(a.Train), len(c.Train)+len(c.Val))
	assert.NotEmpty(t, c.Val)
	held := map[string]bool{}
	for _, it := range c.Val {
		held[it.Image] = true
	}
	for _, it := range c.Train {
		assert.False(t, held[it.Image], "an image's questions are all on one side")
	}
	files.ValSplit = 0
	assert.ErrorContains(t, files.validate(true), "data.val")

	// The image folder for mae.pretrain: training and caption-only images, then validation; no test image.
	require.NoError(t, s.WriteImageFolder(filepath.Join(dir, "folder")))
	tr, err := data.NewImageFolder(filepath.Join(dir, "folder", "train"))
	require.NoError(t, err)
	va, err := data.NewImageFolder(filepath.Join(dir, "folder", "val"))
	require.NoError(t, err)
	assert.Equal(t, []int{32, 12}, []int{tr.Len(), va.Len()}, "24 train + 8 caption-only; 12 val")
	for _, f := range append(tr.Files, va.Files...) {
		assert.NotContains(t, filepath.Base(f), "test")
	}
}

// data.randaugment takes ALBEF's RandomAugment ("albef") or timm's
// RandAugment ("rand-..."), and names the key when the spec is wrong.
func TestAugmentSpecs(t *testing.T) {
	d := DefaultData()
	d.RandAugment = "albef"
	a, err := d.augment(64)
	require.NoError(t, err)
	require.NotNil(t, a.ALBEF)
	assert.Equal(t, 2, a.ALBEF.N)
	assert.Nil(t, a.RandAugment)
	d.RandAugment = "rand-m9-n2"
	a, err = d.augment(64)
	require.NoError(t, err)
	assert.NotNil(t, a.RandAugment)
	assert.Nil(t, a.ALBEF)
	d.RandAugment = "albef-q3"
	_, err = d.augment(64)
	assert.ErrorContains(t, err, "data.randaugment")
}
