package data

import (
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeImage(t *testing.T, path string, img image.Image) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	if filepath.Ext(path) == ".png" {
		require.NoError(t, png.Encode(f, img))
	} else {
		require.NoError(t, jpeg.Encode(f, img, &jpeg.Options{Quality: 95}))
	}
}

func uniform(w, h int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func TestImageFolder(t *testing.T) {
	root := t.TempDir()
	grey := color.RGBA{128, 128, 128, 255}
	writeImage(t, filepath.Join(root, "cat", "b.png"), uniform(40, 30, grey))
	writeImage(t, filepath.Join(root, "cat", "a.jpg"), uniform(30, 40, grey))
	writeImage(t, filepath.Join(root, "dog", "x.png"), uniform(20, 20, grey))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "dog", "notes.txt"), []byte("skip me"), 0o644))

	f, err := NewImageFolder(root)
	require.NoError(t, err)
	require.Equal(t, []string{"cat", "dog"}, f.Classes)
	require.Equal(t, []int{0, 0, 1}, f.Labels)
	require.Equal(t, filepath.Join(root, "cat", "a.jpg"), f.Files[0])

	aug := Augment{Size: 16, Scale: [2]float64{0.2, 1}, Flip: true, Mean: ImageNetMean, Std: ImageNetStd}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range f.Len() {
		img, err := f.Open(i)
		require.NoError(t, err)
		for _, x := range [][]float32{aug.Train(img, rng), aug.Eval(img)} {
			require.Len(t, x, 3*16*16)
			for c := range 3 { // a uniform grey image stays uniform through every transform
				want := (128.0/255 - ImageNetMean[c]) / ImageNetStd[c]
				require.InDelta(t, want, x[c*256+100], 0.02, "channel %d of %s", c, f.Files[i])
			}
		}
	}

	require.NoError(t, os.WriteFile(filepath.Join(root, "dog", "broken.png"), []byte("not a png"), 0o644))
	var warned []string
	f, err = NewImageFolderWith(root, ImageFolderOptions{Warn: func(s string) { warned = append(warned, s) }})
	require.NoError(t, err)
	_, err = f.Decode(2)
	require.ErrorContains(t, err, "broken.png")
	img, err := f.Open(2) // skipped by default: the class's next image stands in
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, 20, 20), img.Bounds())
	require.Len(t, warned, 1)
	require.Contains(t, warned[0], "broken.png")

	_, err = NewImageFolder(filepath.Join(root, "empty"))
	require.ErrorContains(t, err, "no .jpg")
}

func TestRandomResizedCropStaysInsideAndFlipMirrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b := image.Rect(0, 0, 50, 20)
	for range 1000 {
		r := randomResizedCrop(b, [2]float64{0.08, 1}, [2]float64{3.0 / 4, 4.0 / 3}, rng)
		require.True(t, r.In(b) && !r.Empty(), "%v", r)
	}
	// Scale 1 with a 5:2 image cannot keep the ratio range: the fallback is a
	// centred crop clamped to ratio 4/3, at torchvision's (50-27)//2 = 11.
	require.Equal(t, image.Rect(11, 0, 38, 20), randomResizedCrop(b, [2]float64{1, 1}, [2]float64{3.0 / 4, 4.0 / 3}, rng))

	img := uniform(3, 1, color.RGBA{0, 0, 0, 255})
	img.SetRGBA(0, 0, color.RGBA{255, 0, 0, 255})
	hflip(img)
	require.Equal(t, color.RGBA{255, 0, 0, 255}, img.RGBAAt(2, 0))
	require.Equal(t, color.RGBA{0, 0, 0, 255}, img.RGBAAt(0, 0))
}

// The evaluation crop is torchvision's Resize then CenterCrop, whose
// origin is int(round((h - size) / 2.0)) with Python's round, half to
// even: a 500 x 375 photo resizes to 341 x 256 and is cropped from x = 58
// (58.5 rounds down), where rounding half up would give 59.
func TestEvalCentreCropRoundsHalfToEven(t *testing.T) {
	a := Augment{Size: 224}
	w, h, x0, y0 := a.evalGeometry(image.Rect(0, 0, 500, 375))
	require.Equal(t, [4]int{341, 256, 58, 16}, [4]int{w, h, x0, y0})
	w, h, x0, y0 = a.evalGeometry(image.Rect(0, 0, 375, 500))
	require.Equal(t, [4]int{256, 341, 16, 58}, [4]int{w, h, x0, y0})

	// The pixels: a 35 x 30 image at size 16 resizes to 21 x 18, and the
	// crop starts at x = round(2.5) = 2, y = 1.
	rng := rand.New(rand.NewPCG(7, 7))
	img := image.NewRGBA(image.Rect(0, 0, 35, 30))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	a = Augment{Size: 16, Mean: ImageNetMean, Std: ImageNetStd}
	full := resize(img, img.Bounds(), 21, 18)
	crop := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for y := range 16 {
		for x := range 16 {
			crop.SetRGBA(x, y, full.RGBAAt(2+x, 1+y))
		}
	}
	require.Equal(t, a.normalise(crop), a.Eval(img))
}

// Augment.Train runs RandAugment after the crop and flip and random
// erasing on the normalised result, drawing from the same generator.
func TestTrainRunsRandAugmentAndErasing(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	ra, err := ParseRandAugment("rand-m9-mstd0.5-inc1", ImageNetMean, Bicubic)
	require.NoError(t, err)
	ra.Prob = 1
	re, err := NewRandomErasing(1, "const", 1)
	require.NoError(t, err)
	for _, crop := range []CropMode{RetryCrop, ClampedCrop} {
		a := Augment{Size: 16, Scale: [2]float64{0.08, 1}, Flip: true, Mean: ImageNetMean, Std: ImageNetStd, Crop: crop, RandAugment: ra, Erasing: re}
		got := a.Train(img, rand.New(rand.NewPCG(1, 2)))

		// The same steps by hand, from the same seed.
		r := rand.New(rand.NewPCG(1, 2))
		var box image.Rectangle
		if crop == ClampedCrop {
			box = clampedCrop(img.Bounds(), a.Scale, [2]float64{3.0 / 4, 4.0 / 3}, [4]float64{r.Float64(), r.Float64(), r.Float64(), r.Float64()})
		} else {
			box = randomResizedCrop(img.Bounds(), a.Scale, [2]float64{3.0 / 4, 4.0 / 3}, r)
		}
		dst := resize(img, box, 16, 16)
		if r.Float64() < 0.5 {
			hflip(dst)
		}
		want := a.normalise(ra.Apply(dst, r))
		boxes := re.Apply(want, 3, 16, 16, r)
		require.Len(t, boxes, 1)
		require.Equal(t, want, got, "crop mode %d", crop)
		require.Equal(t, float32(0), got[boxes[0].Min.Y*16+boxes[0].Min.X], "const erasing writes zeros")
	}
}
