package cocoop

import (
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"slices"

	"golang.org/x/image/draw"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
)

// This file turns a Datum into the CLIP's input as Dassl's transforms do
// for the CoOp configs (INPUT.TRANSFORMS ["random_resized_crop",
// "random_flip", "normalize"], bicubic, CLIP's PIXEL_MEAN and PIXEL_STD):
// training images get RandomResizedCrop(size, scale (0.08, 1)) and a
// random horizontal flip, or are resized to size x size when the crop is
// not listed (Dassl's build_transform_train); test images have their
// shorter side resized to size and are centre-cropped (build_transform_
// test), which is also CLIP's own preprocessing (clip.py's _transform).
// Testing resamples as PIL does (torchmods.CLIPResizeCrop); training uses
// data.Augment's torchvision geometry with x/image/draw's Catmull-Rom
// (bicubic, a = -0.5 as PIL's, not bit-exact).

// CLIPPixelMean and CLIPPixelStd are the configs' INPUT.PIXEL_MEAN and
// PIXEL_STD, CLIP's normalisation.
var (
	CLIPPixelMean = []float64{0.48145466, 0.4578275, 0.40821073}
	CLIPPixelStd  = []float64{0.26862954, 0.26130258, 0.27577711}
)

// The transforms of INPUT.TRANSFORMS this package applies.
const (
	TransformRandomResizedCrop = "random_resized_crop"
	TransformRandomFlip        = "random_flip"
	TransformNormalize         = "normalize"
)

// Transform is a dataset's image pipeline.
type Transform struct {
	Size       int
	Transforms []string   // INPUT.TRANSFORMS
	Scale      [2]float64 // INPUT.RRCROP_SCALE
	Mean, Std  [3]float32 // applied with "normalize"
}

func (t Transform) has(name string) bool { return slices.Contains(t.Transforms, name) }

func (t Transform) augment() data.Augment {
	a := data.Augment{Size: t.Size, Scale: t.Scale, Flip: t.has(TransformRandomFlip), CropPct: 1, Std: [3]float32{1, 1, 1}}
	if t.has(TransformNormalize) {
		a.Mean, a.Std = t.Mean, t.Std
	}
	return a
}

// Train is the training transform: CHW float32 of size x size.
func (t Transform) Train(img image.Image, rng *rand.Rand) []float32 {
	a := t.augment()
	if t.has(TransformRandomResizedCrop) {
		return a.Train(img, rng)
	}
	dst := toSize(img, t.Size)
	if a.Flip && rng.Float64() < 0.5 {
		flip(dst)
	}
	return normalise(dst, a.Mean, a.Std)
}

// Test is the test transform: the shorter side resized to size with
// PIL's bicubic and the centre size x size crop, torchmods.CLIPResizeCrop
// (clip._transform's geometry and Pillow's resampling exactly, which is
// also Dassl's test transform on an RGB image; Dassl converts other modes
// to RGB before resizing, clip._transform after, and this follows CLIP:
// README's departures), then normalised.
func (t Transform) Test(img image.Image) ([]float32, error) {
	a := t.augment()
	px, err := torchmods.CLIPResizeCrop(img, t.Size)
	if err != nil {
		return nil, err
	}
	n := t.Size * t.Size
	out := make([]float32, 3*n)
	for i := range n {
		for c := range 3 {
			out[c*n+i] = (float32(px[i*3+c])/255 - a.Mean[c]) / a.Std[c]
		}
	}
	return out, nil
}

// toSize is img resized to size x size (Resize((size, size)), bicubic),
// or copied when it already has that size.
func toSize(img image.Image, size int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, size, size))
	if b := img.Bounds(); b.Dx() == size && b.Dy() == size {
		draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Src)
		return dst
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), img, img.Bounds(), draw.Src, nil)
	return dst
}

func flip(img *image.RGBA) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x0, x1 := b.Min.X, b.Max.X-1; x0 < x1; x0, x1 = x0+1, x1-1 {
			c0, c1 := img.RGBAAt(x0, y), img.RGBAAt(x1, y)
			img.SetRGBA(x0, y, c1)
			img.SetRGBA(x1, y, c0)
		}
	}
}

// normalise is ToTensor then Normalize: (pixel/255 - mean)/std, CHW.
func normalise(img *image.RGBA, mean, std [3]float32) []float32 {
	b := img.Bounds()
	n := b.Dx() * b.Dy()
	out := make([]float32, 3*n)
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			p := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			for c, v := range [3]uint8{p.R, p.G, p.B} {
				out[c*n+i] = (float32(v)/255 - mean[c]) / std[c]
			}
			i++
		}
	}
	return out
}

// LoadImage is the datum's image: held in memory, or decoded from its
// file within data.DecodeImage's bounds (an error names the file).
func LoadImage(d Datum) (image.Image, error) {
	if d.Image != nil {
		return d.Image, nil
	}
	f, err := os.Open(d.ImPath)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	return data.DecodeImage(f, d.ImPath, data.ImageFolderOptions{})
}
