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
