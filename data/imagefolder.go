package data

import (
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder
	_ "image/png"  // registers the PNG decoder
	"io"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

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
	Options ImageFolderOptions

	mu  sync.Mutex
	bad map[int]error // images found unusable, each warned about once
}

// DefaultMaxPixels is the pixel budget images are held to unless the
// options say otherwise: 64 megapixels (8000 x 8000), far beyond any
// training image, while a decoded image of that size (256 MB as RGBA, per
// loader goroutine) still fits in memory.
const DefaultMaxPixels = 64_000_000

// DefaultMaxAspect bounds the ratio of an image's long side to its short
// side. Augment resizes the short side to the model's size, so a 1 x 10^6
// strip of a few hundred bytes would become a 256 x 256-million image;
// real photographs (panoramas included) stay well under 32.
const DefaultMaxAspect = 32

// BadImages says what happens to an image that cannot be used: a corrupt
// or truncated file, or one over the pixel budget.
type BadImages int

const (
	// SkipBadImages (the default) replaces a bad image, when its batch
	// comes up, by the next readable image of the same class, and warns
	// once per file: one bad file among a million must not stop a run
	// hours in.
	SkipBadImages BadImages = iota
	// RefuseBadImages decodes every image when the folder is opened
	// (Check) and refuses the folder if any is bad, naming each: a run
	// then either starts with every image usable or not at all. The pass
	// costs one decode of the whole dataset.
	RefuseBadImages
)

// ImageFolderOptions bound what an image folder's files may make a reader
// do; the zero value is the safe default.
type ImageFolderOptions struct {
	// MaxPixels is the pixel budget (width x height, read from the file's
	// header before decoding); 0 means DefaultMaxPixels.
	MaxPixels int64
	// MaxAspect bounds the long side over the short side; 0 means
	// DefaultMaxAspect.
	MaxAspect float64
	// BadImages is what to do with images that cannot be used.
	BadImages BadImages
	// Warn receives SkipBadImages' warnings; nil writes them with log.Print.
	Warn func(string)
}

func (o ImageFolderOptions) withDefaults() ImageFolderOptions {
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	if o.MaxAspect <= 0 {
		o.MaxAspect = DefaultMaxAspect
	}
	if o.Warn == nil {
		o.Warn = func(s string) { log.Print(s) }
	}
	return o
}

// NewImageFolder lists root's class subfolders and their images, with the
// default options.
func NewImageFolder(root string) (*ImageFolder, error) {
	return NewImageFolderWith(root, ImageFolderOptions{})
}

// NewImageFolderWith lists root's class subfolders and their images; with
// RefuseBadImages it also decodes each one, and refuses the folder if any
// cannot be used.
func NewImageFolderWith(root string, o ImageFolderOptions) (*ImageFolder, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w (expected root/<class>/<image>.jpg)", err)
	}
	f := &ImageFolder{Root: root, Options: o.withDefaults(), bad: map[int]error{}}
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
	if f.Options.BadImages == RefuseBadImages {
		if err := f.Check(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Len is the number of images.
func (f *ImageFolder) Len() int { return len(f.Files) }

// Decode decodes image i, within the options' bounds; the error names the
// file.
func (f *ImageFolder) Decode(i int) (image.Image, error) {
	r, err := os.Open(f.Files[i])
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return DecodeImage(r, f.Files[i], f.Options)
}

// Open returns image i for training or evaluation. An image that cannot
// be used is, with SkipBadImages, replaced by the next readable image of
// the same class (so the label stays right and the choice is the same on
// every run), with a warning the first time; with RefuseBadImages (whose
// check already passed, so the file changed since) it is an error.
func (f *ImageFolder) Open(i int) (image.Image, error) {
	err := f.badErr(i)
	if err == nil { // not known to be bad: a bad file is decoded once, not every epoch
		img, err := f.Decode(i)
		if err == nil || f.Options.BadImages == RefuseBadImages {
			return img, err
		}
		f.markBad(i, err)
	}
	first, n := f.classRange(f.Labels[i])
	for k := 1; k < n; k++ {
		j := first + (i-first+k)%n
		if f.badErr(j) != nil {
			continue
		}
		img, err := f.Decode(j)
		if err == nil {
			return img, nil
		}
		f.markBad(j, err)
	}
	if err == nil {
		err = f.badErr(i)
	}
	return nil, fmt.Errorf("image folder %s: class %q: none of its %d images can be read (%w)", f.Root, f.Classes[f.Labels[i]], n, err)
}

// badErr is why image i was found unusable, or nil.
func (f *ImageFolder) badErr(i int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bad[i]
}

// markBad records image i as unusable, warning the first time.
func (f *ImageFolder) markBad(i int, err error) {
	f.mu.Lock()
	first := f.bad[i] == nil
	if first {
		f.bad[i] = err
	}
	f.mu.Unlock()
	if first {
		f.Options.Warn(fmt.Sprintf("warning: %v: skipped, another image of class %q is used in its place", err, f.Classes[f.Labels[i]]))
	}
}

// classRange is the first index and the count of class c's images, which
// are contiguous in Files.
func (f *ImageFolder) classRange(c int) (first, n int) {
	first, _ = slices.BinarySearch(f.Labels, c)
	end, _ := slices.BinarySearch(f.Labels, c+1)
	return first, end - first
}

// BadImagesError lists the images a check found unusable.
type BadImagesError struct {
	Root  string
	Total int
	Bad   []error // one per bad image, each naming its file, in file order
}

func (e *BadImagesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image folder %s: %d of %d images cannot be used:", e.Root, len(e.Bad), e.Total)
	for _, err := range e.Bad {
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Check decodes every image, on as many goroutines as there are CPUs, and
// returns a *BadImagesError naming each one that cannot be used (corrupt,
// truncated, over the pixel budget), or nil. It is the start-up pass of
// RefuseBadImages, and what a dataset check command runs.
func (f *ImageFolder) Check() error {
	errs := make([]error, len(f.Files))
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= len(f.Files) {
					return
				}
				_, errs[j] = f.Decode(j)
			}
		})
	}
	wg.Wait()
	e := &BadImagesError{Root: f.Root, Total: len(f.Files)}
	for _, err := range errs {
		if err != nil {
			e.Bad = append(e.Bad, err)
		}
	}
	if len(e.Bad) > 0 {
		return e
	}
	return nil
}

// DecodeImage decodes an image from r within o's bounds; name is the file
// in errors. The header is read first (image.DecodeConfig), so an image
// claiming more pixels than the budget, or an extreme aspect ratio, is
// refused before anything of its size is allocated: decoders allocate the
// whole image from the header's dimensions, and a PNG of a few bytes can
// claim 10^10 pixels, a Go fatal out-of-memory that no recover catches.
func DecodeImage(r io.ReadSeeker, name string, o ImageFolderOptions) (image.Image, error) {
	o = o.withDefaults()
	cfg, _, err := image.DecodeConfig(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	switch {
	case w <= 0 || h <= 0:
		return nil, fmt.Errorf("%s: a %d x %d image has no pixels", name, w, h)
	case w > o.MaxPixels || h > o.MaxPixels || w*h > o.MaxPixels:
		return nil, fmt.Errorf("%s: %d x %d pixels is %v megapixels, over the budget of %v (ImageFolderOptions.MaxPixels)", name, w, h, float64(w)*float64(h)/1e6, float64(o.MaxPixels)/1e6)
	case float64(max(w, h)) > o.MaxAspect*float64(min(w, h)):
		return nil, fmt.Errorf("%s: %d x %d pixels: an aspect ratio over %g (ImageFolderOptions.MaxAspect) would blow up when resized", name, w, h, o.MaxAspect)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	img, _, err := image.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if b := img.Bounds(); int64(b.Dx()) != w || int64(b.Dy()) != h {
		return nil, fmt.Errorf("%s: decoded as %d x %d, but its header says %d x %d", name, b.Dx(), b.Dy(), w, h)
	}
	return img, nil
}

// ImageNetMean and ImageNetStd are the per-channel statistics the papers'
// recipes normalise with (torchvision's IMAGENET_DEFAULT_MEAN/STD).
var (
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// Augment is the usual ImageNet pipeline, as torchvision and timm
// transforms: training images get a RandomResizedCrop(Size, scale=Scale,
// ratio 3/4..4/3, bicubic) and a random horizontal flip, then optionally
// RandAugment on the 8-bit image and random erasing on the normalised one
// (timm's create_transform order); evaluation images are resized so their
// shorter side is Size/CropPct, then centre-cropped to Size. Both end as
// normalised float32 CHW RGB. ALBEF and MUMC train with ALBEF's
// RandomAugment in RandAugment's place: after the crop and flip, on the
// 8-bit image, before ToTensor and normalising.
type Augment struct {
	Size        int
	Scale       [2]float64 // RandomResizedCrop's area range, e.g. {0.2, 1} for MAE pre-training
	Flip        bool       // random horizontal flip while training
	CropPct     float64    // evaluation crop fraction (default 0.875, i.e. 224 from 256)
	Mean        [3]float32
	Std         [3]float32
	Crop        CropMode       // how the training crop is drawn
	RandAugment *RandAugment   // after the crop and flip (nil: none)
	Erasing     *RandomErasing // after normalising (nil: none)
	// ALBEF is ALBEF's RandomAugment, also after the crop and flip, after
	// RandAugment if both are set (nil: none).
	ALBEF *ALBEFRandomAugment
}

// CropMode is how RandomResizedCrop draws its box.
type CropMode int

const (
	// RetryCrop is torchvision's and timm's RandomResizedCrop.get_params:
	// up to ten draws of area and aspect ratio until the box fits, then a
	// centre crop clamped to the ratio range. MAE pre-trains
	// (torchvision) and fine-tunes (timm) with it.
	RetryCrop CropMode = iota
	// ClampedCrop is MAE's util/crop.RandomResizedCrop, which
	// main_linprobe.py uses: one draw of area and aspect ratio, each side
	// clamped to the image ("for matching TF/TPU implementation", after
	// BYOL's TF code), so boxes are more often the whole side and may
	// leave the ratio range.
	ClampedCrop
)

// Train applies the training transform with rng.
func (a Augment) Train(img image.Image, rng *rand.Rand) []float32 {
	ratio := [2]float64{3.0 / 4, 4.0 / 3}
	var r image.Rectangle
	if a.Crop == ClampedCrop {
		r = clampedCrop(img.Bounds(), a.Scale, ratio, [4]float64{rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64()})
	} else {
		r = randomResizedCrop(img.Bounds(), a.Scale, ratio, rng)
	}
	dst := resize(img, r, a.Size, a.Size)
	if a.Flip && rng.Float64() < 0.5 {
		hflip(dst)
	}
	if a.RandAugment != nil {
		dst = a.RandAugment.Apply(dst, rng)
	}
	if a.ALBEF != nil {
		dst = a.ALBEF.Apply(dst, rng)
	}
	out := a.normalise(dst)
	if a.Erasing != nil {
		a.Erasing.Apply(out, 3, a.Size, a.Size, rng)
	}
	return out
}

// Eval applies the evaluation transform.
func (a Augment) Eval(img image.Image) []float32 {
	b := img.Bounds()
	w, h, x0, y0 := a.evalGeometry(b)
	// Resize to w x h but compute only the centre crop: the scaler clips
	// its output to the destination's bounds, so the pixels are those of
	// the full resize, without its w x h image in memory.
	crop := image.NewRGBA(image.Rect(x0, y0, x0+a.Size, y0+a.Size))
	draw.CatmullRom.Scale(crop, image.Rect(0, 0, w, h), img, b, draw.Src, nil)
	return a.normalise(crop)
}

// Squash is the evaluation transform of ALBEF-style code,
// transforms.Resize((Size, Size)): the whole image resized to a square,
// its aspect ratio not kept, nothing cropped.
func (a Augment) Squash(img image.Image) []float32 {
	return a.normalise(resize(img, img.Bounds(), a.Size, a.Size))
}

// evalGeometry is torchvision's Resize(int(Size/CropPct)) then
// CenterCrop(Size) for an image of bounds b: the resized w x h (the long
// side truncated, as torchvision) and the crop's origin, which
// torchvision's center_crop places at int(round((h - Size) / 2.0)), half
// to even: 500 x 375 resizes to 341 x 256 and crops from x = 58, not 59.
func (a Augment) evalGeometry(b image.Rectangle) (w, h, x0, y0 int) {
	pct := a.CropPct
	if pct == 0 {
		pct = 0.875
	}
	short := int(math.Floor(float64(a.Size) / pct))
	w, h = short, short
	if b.Dx() < b.Dy() {
		h = int(float64(short) * float64(b.Dy()) / float64(b.Dx()))
	} else {
		w = int(float64(short) * float64(b.Dx()) / float64(b.Dy()))
	}
	return w, h, int(math.RoundToEven(float64(w-a.Size) / 2)), int(math.RoundToEven(float64(h-a.Size) / 2))
}

// randomResizedCrop picks a crop as torchvision's RandomResizedCrop.get_params
// (RetryCrop): ten tries at a random area and log-uniform aspect ratio,
// then a centre crop clamped to the ratio range. Sides are rounded half to
// even, as Python's round.
func randomResizedCrop(b image.Rectangle, scale, ratio [2]float64, rng *rand.Rand) image.Rectangle {
	W, H := b.Dx(), b.Dy()
	area := float64(W * H)
	lr0, lr1 := math.Log(ratio[0]), math.Log(ratio[1])
	for range 10 {
		target := area * (scale[0] + rng.Float64()*(scale[1]-scale[0]))
		ar := math.Exp(lr0 + rng.Float64()*(lr1-lr0))
		w := int(math.RoundToEven(math.Sqrt(target * ar)))
		h := int(math.RoundToEven(math.Sqrt(target / ar)))
		if w > 0 && h > 0 && w <= W && h <= H {
			y := rng.IntN(H - h + 1)
			x := rng.IntN(W - w + 1)
			return image.Rect(b.Min.X+x, b.Min.Y+y, b.Min.X+x+w, b.Min.Y+y+h)
		}
	}
	w, h := W, H
	if r := float64(W) / float64(H); r < ratio[0] {
		h = int(math.RoundToEven(float64(w) / ratio[0]))
	} else if r > ratio[1] {
		w = int(math.RoundToEven(float64(h) * ratio[1]))
	}
	x, y := (W-w)/2, (H-h)/2
	return image.Rect(b.Min.X+x, b.Min.Y+y, b.Min.X+x+w, b.Min.Y+y+h)
}

// clampedCrop is MAE's util/crop.RandomResizedCrop.get_params (ClampedCrop)
// for the uniform draws u: area = W*H * uniform(scale), aspect =
// exp(uniform(log ratio)), sides rounded half to even and clamped to the
// image, then the top row i = randint(0, H-h+1) and left column j =
// randint(0, W-w+1), in that order; uniform(a, b) is a + (b-a)*u and
// randint(0, n) is int(u*n). torch draws these in float32; float64 here.
// A side is at least 1 pixel (torch would fail on an empty crop).
func clampedCrop(b image.Rectangle, scale, ratio [2]float64, u [4]float64) image.Rectangle {
	W, H := b.Dx(), b.Dy()
	target := float64(W*H) * (scale[0] + float64((scale[1]-scale[0])*u[0]))
	lr0, lr1 := math.Log(ratio[0]), math.Log(ratio[1])
	ar := math.Exp(lr0 + float64((lr1-lr0)*u[1]))
	w := max(1, min(W, int(math.RoundToEven(math.Sqrt(target*ar)))))
	h := max(1, min(H, int(math.RoundToEven(math.Sqrt(target/ar)))))
	i := int(u[2] * float64(H-h+1))
	j := int(u[3] * float64(W-w+1))
	return image.Rect(b.Min.X+j, b.Min.Y+i, b.Min.X+j+w, b.Min.Y+i+h)
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
