package mae

import (
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
)

// The configs say what the official scripts do: fine-tuning on ImageNet
// with RandAugment and random erasing, linear probing with MAE's clamped
// crop, Fashion-MNIST fine-tuning without either (as its reported runs),
// and the Fashion-MNIST probe's lr from blr by lr = blr * batch / 256.
func TestConfigsFollowTheOfficialScripts(t *testing.T) {
	for _, size := range []string{"base", "large", "huge"} {
		ft := DefaultFinetune()
		require.NoError(t, config.Load(filepath.Join("..", "configs", "mae", "finetune_vit_"+size+".toml"), ft, nil))
		assert.Equal(t, "rand-m9-mstd0.5-inc1", ft.RandAugment, size)
		assert.Equal(t, 0.25, ft.Reprob, size)
		assert.Equal(t, "pixel", ft.Remode, size)
		assert.Equal(t, 1, ft.Recount, size)
		assert.Equal(t, "retry", ft.Data.Crop, size)

		lp := DefaultLinprobe()
		require.NoError(t, config.Load(filepath.Join("..", "configs", "mae", "linprobe_vit_"+size+".toml"), lp, nil))
		assert.Equal(t, "clamped", lp.Data.Crop, size)

		pt := DefaultPretrain()
		require.NoError(t, config.Load(filepath.Join("..", "configs", "mae", "pretrain_vit_"+size+".toml"), pt, nil))
		assert.Equal(t, "retry", pt.Data.Crop, size)
	}
	for _, name := range []string{"fmnist_finetune", "fmnist_scratch"} {
		ft := DefaultFinetune()
		require.NoError(t, config.Load(filepath.Join("..", "configs", "mae", name+".toml"), ft, nil))
		assert.Empty(t, ft.RandAugment, name)
		assert.Zero(t, ft.Reprob, name)
	}
	lp := DefaultLinprobe()
	require.NoError(t, config.Load(filepath.Join("..", "configs", "mae", "fmnist_linprobe.toml"), lp, nil))
	assert.Zero(t, lp.Optim.LR, "lr is derived from blr")
	assert.InDelta(t, 0.1, lp.Optim.AbsLR(lp.Data.Batch*lp.Trainer.Accumulate), 1e-12)

	// main_finetune.py's and main_linprobe.py's defaults.
	assert.Equal(t, "rand-m9-mstd0.5-inc1", DefaultFinetune().RandAugment)
	assert.Equal(t, 0.25, DefaultFinetune().Reprob)
	assert.Equal(t, "clamped", DefaultLinprobe().Data.Crop)
}

func TestAugmentationConfigErrorsNameTheKey(t *testing.T) {
	for key, mutate := range map[string]func(*FinetuneConfig){
		"rand_augment": func(c *FinetuneConfig) { c.RandAugment = "rand-m9-w0" },
		"reprob":       func(c *FinetuneConfig) { c.Reprob = 1.5 },
		"remode":       func(c *FinetuneConfig) { c.Remode = "noise" },
		"recount":      func(c *FinetuneConfig) { c.Recount = 0 },
		"data.crop":    func(c *FinetuneConfig) { c.Data.Crop = "centre" },
	} {
		c := DefaultFinetune()
		require.NoError(t, c.Validate())
		mutate(c)
		var fe *config.FieldError
		require.ErrorAs(t, c.Validate(), &fe, key)
		assert.Equal(t, key, fe.Key)
	}
}

// Fashion-MNIST's RandAugment runs on the grey image as R = G = B and
// keeps channel 0. Every op keeps the channels equal, so that is what the
// ops give on the grey image itself.
func TestFashionMNISTRandAugmentStaysGrey(t *testing.T) {
	ra, err := data.ParseRandAugment("rand-m9-mstd0.5", [3]float32{fmnistMean, fmnistMean, fmnistMean}, data.RandomResample)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(3, 4))
	px := make([]uint8, 28*28)
	for i := range px {
		px[i] = uint8(rng.IntN(200))
	}
	img := image.NewRGBA(image.Rect(0, 0, 28, 28))
	for i, v := range px {
		copy(img.Pix[4*i:], []uint8{v, v, v, 255})
	}
	for _, op := range append(append([]string{}, data.RandOps...), data.RandIncreasingOps...) {
		for _, neg := range []bool{false, true} {
			for _, rs := range []data.Resample{data.Bilinear, data.Bicubic} {
				out := ra.ApplyOp(img, op, 9.3, neg, rs)
				for i := 0; i < len(out.Pix); i += 4 {
					require.True(t, out.Pix[i] == out.Pix[i+1] && out.Pix[i] == out.Pix[i+2], "%s made pixel %d coloured", op, i/4)
				}
			}
		}
	}

	// fmnistAugment is the flip then RandAugment, read back from channel 0.
	ra.Prob = 1
	flipped := make([]uint8, len(px))
	for y := range 28 {
		for x := range 28 {
			flipped[y*28+x] = px[y*28+27-x]
		}
	}
	assert.Equal(t, flipped, fmnistAugment(px, 28, 28, true, nil, rng))
	got := fmnistAugment(px, 28, 28, true, ra, rand.New(rand.NewPCG(5, 5)))
	want := ra.Apply(func() *image.RGBA {
		m := image.NewRGBA(image.Rect(0, 0, 28, 28))
		for i, v := range flipped {
			copy(m.Pix[4*i:], []uint8{v, v, v, 255})
		}
		return m
	}(), rand.New(rand.NewPCG(5, 5)))
	for i := range got {
		require.Equal(t, want.Pix[4*i], got[i])
	}
}

// openImages puts RandAugment and erasing in the training transform only,
// for both kinds of data, and the folder's crop follows data.crop.
func TestTrainExtrasReachTheTrainingTransformOnly(t *testing.T) {
	extras := trainExtras{randAugment: "rand-m9-mstd0.5-inc1", reprob: 1, remode: "const", recount: 1}
	// const erasing writes 0, which no pixel normalises to exactly (v/255
	// never equals these means), so zeros count erased pixels.
	zeros := func(x []float32) (n int) {
		for _, v := range x {
			if v == 0 {
				n++
			}
		}
		return n
	}

	root := t.TempDir()
	src := rand.New(rand.NewPCG(1, 1))
	for _, split := range []string{"train", "val"} {
		for _, class := range []string{"a", "b"} {
			img := image.NewRGBA(image.Rect(0, 0, 40, 30))
			for i := range img.Pix {
				img.Pix[i] = uint8(src.IntN(256))
			}
			writePNG(t, filepath.Join(root, split, class, "x.png"), img)
		}
	}
	for _, crop := range []string{"retry", "clamped"} {
		d := DataConfig{Kind: "folder", Dir: root, Batch: 2, Scale: [2]float64{0.08, 1}, Flip: true, Crop: crop}
		require.NoError(t, d.validate())
		plain, err := openImages(d, "train", 16, 3, trainExtras{})
		require.NoError(t, err)
		aug, err := openImages(d, "train", 16, 3, extras)
		require.NoError(t, err)
		x, _, err := aug.get(0, rand.New(rand.NewPCG(2, 2)), true)
		require.NoError(t, err)
		require.Len(t, x, 3*16*16)
		assert.Positive(t, zeros(x), "erased box, crop %s", crop)
		p, _, err := plain.get(0, rand.New(rand.NewPCG(2, 2)), true)
		require.NoError(t, err)
		assert.NotEqual(t, p, x)
		pe, _, err := plain.get(1, nil, false)
		require.NoError(t, err)
		ae, _, err := aug.get(1, nil, false)
		require.NoError(t, err)
		assert.Equal(t, pe, ae, "evaluation is not augmented")
	}

	if _, err := os.Stat(data.FashionMNISTDir); err != nil {
		t.Skip("dataset-fashion-mnist not installed")
	}
	d := DataConfig{Kind: "fashion_mnist", Batch: 2, Flip: true}
	plain, err := openImages(d, "train", 28, 1, trainExtras{})
	require.NoError(t, err)
	aug, err := openImages(d, "train", 28, 1, extras)
	require.NoError(t, err)
	x, _, err := aug.get(0, rand.New(rand.NewPCG(3, 3)), true)
	require.NoError(t, err)
	assert.Positive(t, zeros(x))
	pe, _, err := plain.get(0, nil, false)
	require.NoError(t, err)
	ae, _, err := aug.get(0, nil, false)
	require.NoError(t, err)
	assert.Equal(t, pe, ae, "evaluation is not augmented")
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, png.Encode(f, img))
}
