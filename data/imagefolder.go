package data

import (
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder
	_ "image/png"  // registers the PNG decoder
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/image/draw"
)

// ImageFolder is a labelled image dataset laid out as torchvision's
// ImageFolder expects it, and as ImageNet is usually unpacked:
// root/<class>/<image>.{jpg,jpeg,png}. Classes are the subfolder names in
// sorted order, so label i is Classes[i], as in torchvision.
type ImageFolder struct {
	Root    string
	Classes []string
	Files   []string // paths, grouped by class
	Labels  []int
}

// NewImageFolder lists root's class subfolders and their images.
func NewImageFolder(root string) (*ImageFolder, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w (expected root/<class>/<image>.jpg)", err)
	}
	f := &ImageFolder{Root: root}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var files []string
		err := filepath.WalkDir(filepath.Join(root, e.Name()), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(p)) {
			case ".jpg", ".jpeg", ".png":
				if !d.IsDir() {
					files = append(files, p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("image folder: %w", err)
		}
		if len(files) == 0 {
			continue // torchvision skips empty classes too
		}
		slices.Sort(files)
		for _, p := range files {
			f.Files = append(f.Files, p)
			f.Labels = append(f.Labels, len(f.Classes))
		}
		f.Classes = append(f.Classes, e.Name())
	}
	if len(f.Files) == 0 {
		return nil, fmt.Errorf("image folder %s: no .jpg, .jpeg or .png images in class subfolders (expected %s/<class>/<image>.jpg)", root, root)
	}
	return f, nil
}

// Len is the number of images.
func (f *ImageFolder) Len() int { return len(f.Files) }

// Open decodes image i; the error names the file.
func (f *ImageFolder) Open(i int) (image.Image, error) {
	r, err := os.Open(f.Files[i])
	if err != nil {
		return nil, err
	}
	defer r.Close()
	img, _, err := image.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Files[i], err)
	}
	return img, nil
}

// ImageNetMean and ImageNetStd are the per-channel statistics the papers'
// recipes normalise with (torchvision's IMAGENET_DEFAULT_MEAN/STD).
var (
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// Augment is the usual ImageNet pipeline, as torchvision transforms:
// training images get RandomResizedCrop(Size, scale=Scale, ratio 3/4..4/3,
// bicubic) and a random horizontal flip; evaluation images are resized so
// their shorter side is Size/CropPct, then centre-cropped to Size. Both end
// as normalised float32 CHW RGB.
type Augment struct {
	Size    int
	Scale   [2]float64 // RandomResizedCrop's area range, e.g. {0.2, 1} for MAE pre-training
	Flip    bool       // random horizontal flip while training
	CropPct float64    // evaluation crop fraction (default 0.875, i.e. 224 from 256)
	Mean    [3]float32
	Std     [3]float32
}

// Train applies the training transform with rng.
func (a Augment) Train(img image.Image, rng *rand.Rand) []float32 {
	r := randomResizedCrop(img.Bounds(), a.Scale, [2]float64{3.0 / 4, 4.0 / 3}, rng)
	dst := resize(img, r, a.Size, a.Size)
	if a.Flip && rng.Float64() < 0.5 {
		hflip(dst)
	}
	return a.normalise(dst)
}

// Eval applies the evaluation transform.
func (a Augment) Eval(img image.Image) []float32 {
	pct := a.CropPct
	if pct == 0 {
		pct = 0.875
	}
	b := img.Bounds()
	short := int(math.Floor(float64(a.Size) / pct))
	w, h := short, short
	if b.Dx() < b.Dy() {
		h = int(float64(short) * float64(b.Dy()) / float64(b.Dx()))
	} else {
		w = int(float64(short) * float64(b.Dx()) / float64(b.Dy()))
	}
	full := resize(img, b, w, h)
	x0, y0 := int(math.Round(float64(w-a.Size)/2)), int(math.Round(float64(h-a.Size)/2))
	crop := image.NewRGBA(image.Rect(0, 0, a.Size, a.Size))
	draw.Draw(crop, crop.Bounds(), full, image.Pt(x0, y0), draw.Src)
	return a.normalise(crop)
}

// randomResizedCrop picks a crop as torchvision's RandomResizedCrop.get_params:
// ten tries at a random area and log-uniform aspect ratio, then a centre
// crop clamped to the ratio range.
func randomResizedCrop(b image.Rectangle, scale, ratio [2]float64, rng *rand.Rand) image.Rectangle {
	W, H := b.Dx(), b.Dy()
	area := float64(W * H)
	lr0, lr1 := math.Log(ratio[0]), math.Log(ratio[1])
	for range 10 {
		target := area * (scale[0] + rng.Float64()*(scale[1]-scale[0]))
		ar := math.Exp(lr0 + rng.Float64()*(lr1-lr0))
		w := int(math.Round(math.Sqrt(target * ar)))
		h := int(math.Round(math.Sqrt(target / ar)))
		if w > 0 && h > 0 && w <= W && h <= H {
			y := rng.IntN(H - h + 1)
			x := rng.IntN(W - w + 1)
			return image.Rect(b.Min.X+x, b.Min.Y+y, b.Min.X+x+w, b.Min.Y+y+h)
		}
	}
	w, h := W, H
	if r := float64(W) / float64(H); r < ratio[0] {
		h = int(math.Round(float64(w) / ratio[0]))
	} else if r > ratio[1] {
		w = int(math.Round(float64(h) * ratio[1]))
	}
	x, y := (W-w)/2, (H-h)/2
	return image.Rect(b.Min.X+x, b.Min.Y+y, b.Min.X+x+w, b.Min.Y+y+h)
}

// resize scales the src rectangle of img to w x h with a bicubic
// (Catmull-Rom) kernel, as the recipes' interpolation=3.
func resize(img image.Image, src image.Rectangle, w, h int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), img, src, draw.Src, nil)
	return dst
}

func hflip(img *image.RGBA) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x0, x1 := b.Min.X, b.Max.X-1; x0 < x1; x0, x1 = x0+1, x1-1 {
			c0, c1 := img.RGBAAt(x0, y), img.RGBAAt(x1, y)
			img.SetRGBA(x0, y, c1)
			img.SetRGBA(x1, y, c0)
		}
	}
}

// normalise returns (pixel/255 - mean) / std as CHW float32.
func (a Augment) normalise(img *image.RGBA) []float32 {
	b := img.Bounds()
	n := b.Dx() * b.Dy()
	out := make([]float32, 3*n)
	std := a.Std
	for c := range std {
		if std[c] == 0 {
			std[c] = 1
		}
	}
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			p := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			for c, v := range [3]uint8{p.R, p.G, p.B} {
				out[c*n+i] = (float32(v)/255 - a.Mean[c]) / std[c]
			}
			i++
		}
	}
	return out
}
