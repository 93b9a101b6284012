package imageclf_test

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/reprolab/repro/imageclf"
)

// Fine-tune a ViT from a MAE checkpoint (here the HF ViTMAE test fixture:
// 28x28 grey images, patch 7, one block) on an image folder from Go, then
// open the run, as a program that only classifies would, and classify new
// images. The same Open serves any image.classify run; repro predict does
// this from the command line.
func Example() {
	dir, _ := os.MkdirTemp("", "imageclf-example")
	defer os.RemoveAll(dir)
	rng := rand.New(rand.NewPCG(1, 2))
	for split, n := range map[string]int{"train": 32, "val": 8} {
		for i := range n {
			class := []string{"horizontal", "vertical"}[i%2]
			if err := save(filepath.Join(dir, "data", split, class, fmt.Sprintf("%d.png", i)), stripes(i%2 == 1, rng)); err != nil {
				fmt.Println(err)
				return
			}
		}
	}

	c := imageclf.Default()
	c.Pretrained = "../mae/testdata/hf_vitmae_grey"
	c.Data.Dir = filepath.Join(dir, "data")
	c.Data.Batch, c.Data.Scale, c.Data.CropPct = 8, [2]float64{1, 1}, 1 // 28x28 images used whole
	c.Data.Mean, c.Data.Std = []float64{0.5}, []float64{0.25}
	c.Optim.BLR, c.Optim.WarmupEpochs = 0.1, 1
	c.Trainer.Epochs, c.Trainer.CheckpointEvery, c.Trainer.TensorBoard = 12, 0, false
	run := filepath.Join(dir, "run")
	if _, err := imageclf.Task.Start(c, run, false, io.Discard); err != nil {
		fmt.Println(err)
		return
	}

	m, err := imageclf.Open(run, imageclf.OpenOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	best, err := m.Classify([]image.Image{stripes(true, rng), stripes(false, rng)}, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, b := range best {
		fmt.Println(b[0].Label)
	}
	// Output:
	// vertical
	// horizontal
}

// stripes draws noisy horizontal or vertical stripes.
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

func save(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
