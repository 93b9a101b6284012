package imageclf

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

func init() { train.Register(Task) }

// The MAE fixture: a HF ViTMAE folder, 28x28 grey, patch 7, width 16,
// one block of 2 heads.
const fixture = "../mae/testdata/hf_vitmae_grey"

// stripes is a 28x28 grey image of horizontal or vertical stripes, with
// noise: two classes a ViT tells apart from its patches.
func stripes(vertical bool, rng *rand.Rand) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	phase := rng.IntN(4)
	for y := range 28 {
		for x := range 28 {
			k := y
			if vertical {
				k = x
			}
			v := 40 + rng.IntN(40)
			if (k+phase)/2%2 == 0 {
				v = 180 + rng.IntN(60)
			}
			g.SetGray(x, y, color.Gray{Y: uint8(v)})
		}
	}
	return g
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, png.Encode(f, img))
	require.NoError(t, f.Close())
}

// stripeFolder writes an ImageNet-style folder: train/ and val/ with
// classes horizontal and vertical.
func stripeFolder(t *testing.T, nTrain, nVal int) string {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	for split, n := range map[string]int{"train": nTrain, "val": nVal} {
		for i := range n {
			cls := []string{"horizontal", "vertical"}[i%2]
			writePNG(t, filepath.Join(dir, split, cls, fmt.Sprintf("%03d.png", i)), stripes(i%2 == 1, rng))
		}
	}
	return dir
}

func tinyConfig(dir string) *Config {
	c := Default()
	c.Pretrained = fixture
	c.Data.Dir = dir
	c.Data.Batch, c.Data.EvalBatch, c.Data.Workers = 8, 16, 1
	c.Data.Scale, c.Data.CropPct = [2]float64{1, 1}, 1
	c.Data.Mean, c.Data.Std = []float64{0.5}, []float64{0.25}
	c.Optim.BLR, c.Optim.WarmupEpochs = 0.1, 1
	c.Trainer.Epochs, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints, c.Trainer.LogEvery, c.Trainer.TensorBoard = 12, 8, 10, 8, false
	return c
}

// End to end on a folder from the MAE fixture: the classes are learned,
// and the run writes its confusion matrix, predictions and model.json, so
// that Open classifies alone and repro eval agrees.
func TestClassifyFolderEndToEnd(t *testing.T) {
	dir := stripeFolder(t, 32, 16)
	c := tinyConfig(dir)
	require.NoError(t, c.Validate())
	out := t.TempDir()
	var log strings.Builder
	res, err := Task.Start(c, out, false, &log)
	require.NoError(t, err, log.String())
	assert.Contains(t, log.String(), "Hugging Face ViTMAE weights", "the MAE checkpoint is what loaded")
	t.Logf("top-1 %v, loss %v", res.Top1, res.Loss)
	assert.GreaterOrEqual(t, res.Top1, 0.9, log.String())
	assert.Equal(t, []string{"horizontal", "vertical"}, res.Classes)
	assert.Zero(t, res.Top5, "no top-5 with 2 classes")
	for _, f := range []string{"confusion.png", "predictions.tsv", SpecFile} {
		assert.FileExists(t, filepath.Join(out, f))
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	assert.InDelta(t, res.Top1, raw["top1"], 1e-12)

	m, err := Open(out, OpenOptions{})
	require.NoError(t, err)
	defer m.Close()
	rng := rand.New(rand.NewPCG(99, 1))
	got, err := m.Classify([]image.Image{stripes(true, rng), stripes(false, rng)}, 2)
	require.NoError(t, err)
	assert.Equal(t, "vertical", got[0][0].Label)
	assert.Equal(t, "horizontal", got[1][0].Label)
	assert.InDelta(t, 1, got[0][0].Prob+got[0][1].Prob, 1e-9)

	var ev strings.Builder
	require.NoError(t, Eval(c, out, &ev))
	assert.Contains(t, ev.String(), fmt.Sprintf("top-1 %.2f%%", 100*res.Top1))
}

// A run cut back to an earlier checkpoint and resumed ends with the same
// weights, byte for byte, as the run straight through (MAE recipe: layer
// decay, drop path, smoothing, random flips).
func TestClassifyResumesExactly(t *testing.T) {
	dir := stripeFolder(t, 32, 8)
	c := tinyConfig(dir)
	c.Trainer.Epochs = 4 // 16 steps, checkpoints at 8 and 16
	out := t.TempDir()
	_, err := Task.Start(c, out, false, io.Discard)
	require.NoError(t, err)
	final := filepath.Join(out, "checkpoints", "step-00000016", "model.safetensors")
	want, err := os.ReadFile(final)
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(filepath.Join(out, "checkpoints", "step-00000016")))
	require.NoError(t, os.Remove(filepath.Join(out, "results.json")))
	_, err = Task.Start(c, out, true, io.Discard)
	require.NoError(t, err)
	got, err := os.ReadFile(final)
	require.NoError(t, err)
	require.Equal(t, want, got, "the same weights, byte for byte")
}

// A CSV of paths and labels, the simple recipe, and a HF ViT folder
// (model_type "vit", whose names are ViTMAE's encoder's) as the start.
func TestCSVSimpleRecipeFromHFViT(t *testing.T) {
	dir := stripeFolder(t, 16, 8)
	for _, split := range []string{"train", "val"} {
		var b strings.Builder
		b.WriteString("path,label\n")
		for _, cls := range []string{"horizontal", "vertical"} {
			files, err := filepath.Glob(filepath.Join(dir, split, cls, "*.png"))
			require.NoError(t, err)
			for _, f := range files {
				rel, _ := filepath.Rel(dir, f)
				fmt.Fprintf(&b, "%s,%s\n", rel, cls)
			}
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, split+".csv"), []byte(b.String()), 0o644))
	}
	vit := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(fixture, "config.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(cfg, &m))
	m["model_type"], m["architectures"] = "vit", []string{"ViTModel"}
	b, _ := json.Marshal(m)
	require.NoError(t, os.WriteFile(filepath.Join(vit, "config.json"), b, 0o644))
	w, err := os.ReadFile(filepath.Join(fixture, "model.safetensors"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(vit, "model.safetensors"), w, 0o644))

	c := tinyConfig("")
	c.Pretrained, c.Recipe = vit, "simple"
	c.MAE = DefaultMAE()
	c.Data.Train, c.Data.Eval = filepath.Join(dir, "train.csv"), filepath.Join(dir, "val.csv")
	c.Trainer.Epochs, c.Trainer.CheckpointEvery = 2, 0
	require.NoError(t, c.Validate())
	var log strings.Builder
	res, err := Task.Start(c, t.TempDir(), false, &log)
	require.NoError(t, err, log.String())
	assert.Contains(t, log.String(), "Hugging Face ViT (")
	assert.Equal(t, 8, res.Eval)

	c.MAE.DropPath = 0.2
	assert.ErrorContains(t, c.Validate(), "mae:", "the simple recipe refuses MAE's keys")
}

// MAE's official encoder file (no config): sizes inferred from its shapes,
// heads assumed and said so.
func TestFromOfficialEncoder(t *testing.T) {
	ck, err := openCheckpoint("../mae/testdata/official_encoder.pth")
	require.NoError(t, err)
	assert.False(t, ck.known)
	assert.NotEmpty(t, ck.assumed, "heads are assumed aloud")
	c := Default()
	c.Model.Heads = 2
	s, err := c.spec(ck, []string{"a", "b"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, int64(28), s.Model.ImgSize)
	assert.Equal(t, int64(2), s.Model.Heads)
}

// The grey transform reproduces mae's Fashion-MNIST pipeline on a 28x28
// image: (pixel/255 - mean)/std, flipped or not, without resampling.
func TestTransformWholeGreyImage(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	for i := range g.Pix {
		g.Pix[i] = uint8(i % 251)
	}
	tr := Transform{Size: 28, Chans: 1, Scale: [2]float64{1, 1}, CropPct: 1, Mean: []float32{0.2860}, Std: []float32{0.3530}}
	px := tr.Pixels(g, nil)
	for _, i := range []int{0, 29, 783} {
		assert.Equal(t, (float32(g.Pix[i])/255-0.2860)/0.3530, px[i])
	}
	tr.Flip = true
	flipped := false
	for seed := range uint64(8) {
		p := tr.Pixels(g, rand.New(rand.NewPCG(seed, 0)))
		if p[0] != px[0] {
			flipped = true
			assert.Equal(t, px[27], p[0], "a horizontal flip")
		}
	}
	assert.True(t, flipped)
}

// train_limit keeps images evenly spaced, so a folder's classes (listed
// one after the other) all stay.
func TestSubsetKeepsEveryClass(t *testing.T) {
	s := &Set{}
	for i := range 10 {
		s.Paths = append(s.Paths, fmt.Sprint(i))
		s.Names = append(s.Names, []string{"a", "b"}[i/5])
	}
	require.NoError(t, s.mapLabels([]string{"a", "b"}, "test"))
	s.subset(4)
	assert.Equal(t, []string{"0", "2", "5", "7"}, s.Paths)
	assert.Equal(t, []int{0, 0, 1, 1}, s.Labels)
	assert.Equal(t, []int{0, 2, 5, 7}, s.index)
}

// A timm state_dict with a head for other classes (ImageNet's 1000, here
// 5): the encoder loads, the head is left out and said so; with as many
// classes as the head has, it loads too.
func TestTimmStateDictHead(t *testing.T) {
	ck, err := mae.OpenCheckpoint(fixture)
	require.NoError(t, err)
	var names []string
	var tensors []*ts.Tensor
	for _, x := range ck.Tensors {
		if strings.HasPrefix(x.Name, "decoder") || x.Name == "mask_token" {
			continue
		}
		v, err := torchmods.FromSafetensors(x, gotch.CPU)
		require.NoError(t, err)
		names, tensors = append(names, x.Name), append(tensors, v)
	}
	names = append(names, "head.weight", "head.bias")
	tensors = append(tensors, ts.MustZeros([]int64{5, 16}, gotch.Float, gotch.CPU), ts.MustZeros([]int64{5}, gotch.Float, gotch.CPU))
	timm := filepath.Join(t.TempDir(), "vit_tiny.safetensors")
	require.NoError(t, torchmods.SaveTensors(timm, names, tensors, "F32", nil))

	got, err := openCheckpoint(timm)
	require.NoError(t, err)
	c := Default()
	c.Model.Heads = 2
	for _, classes := range [][]string{{"a", "b"}, {"a", "b", "c", "d", "e"}} {
		spec, err := c.spec(got, classes, io.Discard)
		require.NoError(t, err)
		store := torchmods.NewStore(gotch.CPU)
		m, err := newModel(store, spec, 0)
		require.NoError(t, err)
		var log strings.Builder
		require.NoError(t, m.load(got, &log))
		if len(classes) == 2 {
			assert.Contains(t, log.String(), "left out (another number of classes; a new head is trained): head.weight [5 16], head.bias [5]")
		} else {
			assert.NotContains(t, log.String(), "left out")
			assert.Contains(t, log.String(), "missing (2): fc_norm.weight, fc_norm.bias", "only the global pool's norm is new")
		}
		store.Drop()
	}
}
