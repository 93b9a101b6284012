package cocoop

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

func init() { train.Register(CoOpTask, CoCoOpTask, ZeroShotTask, PretrainTask) }

// tinyScenes are 32-pixel scenes of 2 colours x 2 textures x 2 shapes.
func tinyScenes() SceneOptions {
	return SceneOptions{Size: 32, Colours: []string{"red", "blue"}, Textures: []string{"plain", "striped"},
		Shapes: []string{"circle", "square"}, MaxObjects: 2, Noise: 0.03}
}

// tinyPretrain trains a very small CLIP for 3 steps in dir: a ModifiedResNet
// image encoder (as the experiment's) or a vision transformer.
func tinyPretrain(t *testing.T, dir string, resnet bool) *PretrainResult {
	t.Helper()
	c := DefaultPretrain()
	c.Model = SceneCLIPModel{EmbedDim: 32, VisionLayers: []int64{1}, VisionWidth: 16, VisionHeads: 2, PatchSize: 8, ContextLength: 24,
		TextWidth: 16, TextHeads: 2, TextLayers: 1}
	if resnet {
		c.Model.VisionLayers, c.Model.VisionWidth, c.Model.VisionHeads, c.Model.PatchSize = []int64{1, 1, 1, 1}, 8, 4, 0
	}
	c.Scenes, c.Batch, c.Workers = tinyScenes(), 8, 1
	c.Eval = PretrainEval{Scenes: 16, Batch: 8, PerClass: 1, Seed: 7}
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Optim.Warmup = 3, 1, 1
	res, err := PretrainTask.Start(c, dir, false, io.Discard)
	require.NoError(t, err)
	return res
}

// sceneData is the tiny scenes as a 2-shot base-to-new dataset: 8
// classes, 4 base and 4 new.
func sceneData() DataConfig {
	d := defaultData(4)
	d.Dataset, d.Shots, d.TestBatch, d.Workers = ScenesDataset, 2, 5, 1
	d.Transforms = []string{TransformRandomFlip, TransformNormalize}
	o := tinyScenes()
	d.Scenes = ScenesData{Size: 32, Colours: o.Colours, Textures: o.Textures, Shapes: o.Shapes, Noise: 0.03, Seed: 3, TrainPerClass: 4, TestPerClass: 3}
	return d
}

func promptConfig(task, clipRun string) *Config {
	c := DefaultCoCoOp()
	if task == coopName {
		c = DefaultCoOp()
	}
	c.CLIP.Path, c.Data = clipRun, sceneData()
	c.Trainer.Epochs, c.Trainer.LogEvery = 2, 1
	if task == cocoopName {
		c.Data.Batch, c.Trainer.MaxSteps = 1, 3
	}
	return c
}

// A tiny run of every task, end to end: pre-train the CLIP, then
// zero-shot, CoOp and CoCoOp on its base-to-new split; every accuracy is
// a percentage of the right test set, the checkpoints hold the prompt
// learner alone under the official names, and evaluating a run's
// checkpoint (repro eval) reproduces its numbers.
func TestTasksEndToEnd(t *testing.T) {
	dir := t.TempDir()
	clipRun := filepath.Join(dir, "clip")
	pre := tinyPretrain(t, clipRun, true)
	assert.Equal(t, int64(3), pre.Steps)
	assert.Equal(t, 8, pre.Classes)
	for _, v := range []float64{pre.ZeroShot, pre.ImageToText, pre.TextToImage} {
		assert.True(t, v >= 0 && v <= 100, "a percentage: %v", v)
	}
	for _, f := range []string{pretrainVocabFile, pretrainConfigFile} {
		assert.FileExists(t, filepath.Join(clipRun, f))
	}
	loaded, tok, err := LoadFrozenCLIP(CLIPSource{Path: clipRun}, gotch.CPU, io.Discard)
	require.NoError(t, err, "the run loads as a CLIP, heads from clip.json")
	assert.IsType(t, &WordTokenizer{}, tok, "with its word vocabulary")
	assert.Equal(t, int64(2), loaded.Model.Cfg.TransformerHeads)
	assert.Equal(t, int64(4), loaded.Model.Cfg.VisionHeads, "the attention pool's heads, from clip.json")
	assert.True(t, loaded.Model.Cfg.IsResNet())
	for _, p := range loaded.Store.Params() {
		assert.False(t, p.Tensor.MustRequiresGrad(), "%s is frozen", p.Name)
	}
	loaded.Store.Drop()

	base := []string{"blue circle", "blue square", "blue striped circle", "blue striped square"}
	nw := []string{"red circle", "red square", "red striped circle", "red striped square"}
	check := func(r *Result) {
		t.Helper()
		require.NotNil(t, r.BaseAccuracy)
		require.NotNil(t, r.NewAccuracy)
		assert.Nil(t, r.Accuracy)
		assert.Equal(t, base, r.Tests["base"].Classes)
		assert.Equal(t, nw, r.Tests["new"].Classes)
		assert.Equal(t, 12, r.Tests["base"].Items)
		assert.Equal(t, 12, r.Tests["new"].Items)
		for _, name := range []string{"base", "new"} { // Dassl's evaluator's other numbers, per test set
			tr := r.Tests[name]
			assert.Len(t, tr.PerClassAccuracy, len(tr.Classes))
			assert.True(t, tr.MacroF1 >= 0 && tr.MacroF1 <= 100, "macro-F1 %v", tr.MacroF1)
			mean := 0.0
			for _, a := range tr.PerClassAccuracy {
				mean += a / float64(len(tr.PerClassAccuracy))
			}
			assert.InDelta(t, mean, tr.MeanPerClass, 1e-9, "every class has test items here")
		}
		assert.InDelta(t, harmonicMean(*r.BaseAccuracy, *r.NewAccuracy), *r.HarmonicMean, 1e-9)
		for _, v := range []float64{*r.BaseAccuracy, *r.NewAccuracy} {
			assert.True(t, v >= 0 && v <= 100)
			assert.InDelta(t, 0, v*12/100-float64(int(v*12/100+0.5)), 1e-9, "a whole number of the 12 images")
		}
	}

	zc := DefaultZeroShot()
	zc.CLIP.Path, zc.Data = clipRun, sceneData()
	zr, err := ZeroShotTask.Start(zc, filepath.Join(dir, "zeroshot"), false, io.Discard)
	require.NoError(t, err)
	check(zr)

	for _, task := range []string{coopName, cocoopName} {
		spec := map[string]train.TaskSpec[*Config, *Result]{coopName: CoOpTask, cocoopName: CoCoOpTask}[task]
		c := promptConfig(task, clipRun)
		run := filepath.Join(dir, task)
		r, err := spec.Start(c, run, false, io.Discard)
		require.NoError(t, err, task)
		check(r)
		assert.Equal(t, 8, r.TrainItems, "%s: 2 shots of the 4 base classes", task)
		want := int64(4) // CoOp: 2 batches of 4 per epoch, 2 epochs
		if task == cocoopName {
			want = 3
		}
		assert.Equal(t, want, r.Steps, task)

		ck, err := train.LatestCheckpoint(run)
		require.NoError(t, err)
		w, err := torchmods.LoadWeights(filepath.Join(ck, "model.safetensors"), gotch.CPU)
		require.NoError(t, err)
		var names []string
		for k := range w {
			names = append(names, k)
		}
		sort.Strings(names)
		expect := []string{"prompt_learner.ctx", "prompt_learner.token_prefix", "prompt_learner.token_suffix"}
		if task == cocoopName {
			expect = []string{"prompt_learner.ctx", "prompt_learner.meta_net.linear1.bias", "prompt_learner.meta_net.linear1.weight",
				"prompt_learner.meta_net.linear2.bias", "prompt_learner.meta_net.linear2.weight", "prompt_learner.token_prefix", "prompt_learner.token_suffix"}
		}
		assert.Equal(t, expect, names, "%s: the checkpoint is the prompt learner's state dict, no CLIP", task)

		var out bytes.Buffer
		require.NoError(t, spec.Eval(c, run, &out))
		assert.Contains(t, out.String(), fmt.Sprintf("base %.2f%%, new %.2f%%", *r.BaseAccuracy, *r.NewAccuracy), "%s: evaluating the checkpoint gives the run's numbers", task)
	}
}

// A CoOp run cut back to an earlier checkpoint and resumed ends with the
// same prompt learner, byte for byte, and the same results.
func TestCoOpResumesExactly(t *testing.T) {
	dir := t.TempDir()
	clipRun := filepath.Join(dir, "clip")
	tinyPretrain(t, clipRun, false)
	c := promptConfig(coopName, clipRun)
	c.Trainer.Epochs, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints = 3, 2, 10
	run := filepath.Join(dir, "coop")
	whole, err := CoOpTask.Start(c, run, false, io.Discard)
	require.NoError(t, err)
	final := filepath.Join(run, "checkpoints", "step-00000006", "model.safetensors")
	want, err := os.ReadFile(final)
	require.NoError(t, err)
	for _, step := range []string{"step-00000004", "step-00000006"} {
		require.NoError(t, os.RemoveAll(filepath.Join(run, "checkpoints", step)))
	}
	require.NoError(t, os.Remove(filepath.Join(run, "results.json")))
	resumed, err := CoOpTask.Start(c, run, true, io.Discard)
	require.NoError(t, err)
	got, err := os.ReadFile(final)
	require.NoError(t, err)
	assert.Equal(t, want, got, "the same prompt learner")
	assert.Equal(t, *whole.BaseAccuracy, *resumed.BaseAccuracy)
	assert.Equal(t, *whole.NewAccuracy, *resumed.NewAccuracy)
}

// The official output folder loads: model.pth.tar-5 found under
// prompt_learner/, the learner taken from "state_dict" (fp16 to float32),
// token_prefix and token_suffix dropped so the current class names'
// buffers stay, the optimizer's state ignored.
func TestLoadOfficialPromptLearner(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := torchmods.LoadWeights("testdata/prompt_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	tok, err := NewWordTokenizer(testWords)
	require.NoError(t, err)
	clipStore := torchmods.NewStore(gotch.CPU)
	defer clipStore.Drop()
	clip := torchmods.NewCLIP(clipStore.Root(), torchmods.CLIPConfig{EmbedDim: 48, ImageResolution: 16, VisionLayers: []int64{1}, VisionWidth: 32,
		VisionPatchSize: 8, VisionHeads: 2, ContextLength: 16, VocabSize: tok.VocabSize(), TransformerWidth: 32, TransformerHeads: 2, TransformerLayers: 2})
	_, err = clipStore.Load(testutil.Sub(ref, "sd."), true)
	require.NoError(t, err)
	clipStore.Freeze()

	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	// Other class names than the saved learner's: its buffers must not load.
	l, err := NewCoCoOpPromptLearner(store.Root().Sub("prompt_learner"), clip, tok, []string{"red square", "green circle"}, PromptOptions{CtxInit: "a photo of a"})
	require.NoError(t, err)
	prefix, suffix := l.TokenPrefix.Float64Values(), l.TokenSuffix.Float64Values()
	var log bytes.Buffer
	file, err := LoadPromptLearner(store, "testdata/official_output", &log)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(file, filepath.Join("prompt_learner", "model.pth.tar-5")), file)
	official := testutil.Sub(ref, "official.")
	for name, x := range map[string]*ts.Tensor{"ctx": l.Ctx, "meta_net.linear1.weight": l.Linear1.Weight, "meta_net.linear1.bias": l.Linear1.Bias,
		"meta_net.linear2.weight": l.Linear2.Weight, "meta_net.linear2.bias": l.Linear2.Bias} {
		assert.Equal(t, official[name].Float64Values(), x.Float64Values(), "%s loaded (the fp16 values exactly)", name)
	}
	assert.Equal(t, prefix, l.TokenPrefix.Float64Values(), "token_prefix stays the current classes'")
	assert.Equal(t, suffix, l.TokenSuffix.Float64Values())
	assert.Contains(t, log.String(), "dropped as load_model drops them: [prompt_learner.token_prefix prompt_learner.token_suffix]")

	// A CoOp learner has no Meta-Net: the file is refused, naming what is missing.
	store2 := torchmods.NewStore(gotch.CPU)
	defer store2.Drop()
	_, err = NewCoOpPromptLearner(store2.Root().Sub("prompt_learner"), clip, tok, []string{"red square"}, PromptOptions{NCtx: 8, Position: PositionEnd})
	require.NoError(t, err)
	_, err = LoadPromptLearner(store2, "testdata/official_output", io.Discard)
	assert.ErrorContains(t, err, "not a prompt learner of this task")
}

// Configs name the key of a mistake.
func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		key  string
	}{
		{func(c *Config) { c.CLIP.Path = "" }, "clip.path"},
		{func(c *Config) { c.Data.Dataset = "Imagenet" }, "data.dataset"},
		{func(c *Config) { c.Data.Dataset = "ImageNetA" }, "data.dataset"},
		{func(c *Config) { c.Data.Protocol = "base" }, "data.protocol"},
		{func(c *Config) { c.Data.Transforms = []string{"random_crop"} }, "data.transforms"},
		{func(c *Config) { c.Prompt.NCtx = 16 }, "prompt.n_ctx"},
		{func(c *Config) { c.Prompt.CtxInit, c.Prompt.CSC = "", true }, "prompt.csc"},
		{func(c *Config) { c.Prompt.ClassTokenPosition = "middle" }, "prompt.class_token_position"},
		{func(c *Config) { c.Prompt.CtxInit, c.Prompt.NCtx, c.Prompt.CSC = "", 4, true }, "prompt.csc"},
		{func(c *Config) { c.Optim.LR = 0 }, "optim.lr"},
		{func(c *Config) { c.Data.Eval = []EvalTarget{{Dataset: "Scenes"}} }, "data.eval"},
	} {
		cfg := DefaultCoCoOp()
		cfg.CLIP.Path, cfg.Data.Root = "ViT-B-16.pt", "datasets"
		require.NoError(t, cfg.Validate())
		c.edit(cfg)
		err := cfg.Validate()
		require.Error(t, err)
		assert.True(t, strings.HasPrefix(err.Error(), c.key+":"), "%v names %s", err, c.key)
	}
	coop := DefaultCoOp()
	coop.CLIP.Path, coop.Data.Root = "ViT-B-16.pt", "datasets"
	coop.Prompt.ClassTokenPosition = PositionMiddle
	assert.NoError(t, coop.Validate(), "CoOp takes other class token positions")
	coop.Prompt.CtxInit, coop.Prompt.CSC = "", true
	assert.ErrorContains(t, coop.Validate(), "prompt.csc: class-specific contexts cannot be used for classes not trained on")
}
