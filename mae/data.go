package mae

import (
	"fmt"
	"image"
	"math/rand/v2"
	"path/filepath"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
)

// DataConfig picks the images: Fashion-MNIST from Debian's package, or an
// ImageNet-style folder (dir/train/<class>/*.JPEG and dir/val/<class>/*.JPEG).
type DataConfig struct {
	Kind       string     `toml:"kind"`        // "fashion_mnist" (default) or "folder"
	Dir        string     `toml:"dir"`         // the dataset's folder ("" for Debian's Fashion-MNIST)
	Batch      int64      `toml:"batch"`       // images per micro-batch (per optimizer step with trainer.accumulate = 1)
	TrainLimit int64      `toml:"train_limit"` // use the first N training images; 0 for all
	Scale      [2]float64 `toml:"scale"`       // RandomResizedCrop's area range for folder images
	Flip       bool       `toml:"flip"`        // random horizontal flips while training
	Workers    int        `toml:"workers"`     // loader goroutines (0: up to 4)
	// Crop is how a folder image's training crop is drawn: "retry"
	// (torchvision's and timm's RandomResizedCrop, up to ten draws then a
	// centre crop: main_pretrain.py, main_finetune.py; "" means it too)
	// or "clamped" (MAE's util/crop.RandomResizedCrop, one draw with each
	// side clamped to the image: main_linprobe.py, mae.linprobe's default).
	Crop string `toml:"crop"`
}

func (d DataConfig) validate() error {
	switch {
	case d.Kind != "fashion_mnist" && d.Kind != "folder":
		return config.Field("data.kind", `must be "fashion_mnist" or "folder", got %q`, d.Kind)
	case d.Kind == "folder" && d.Dir == "":
		return config.Field("data.dir", "must name the image folder (with train/ and val/) when data.kind is folder")
	case d.Batch <= 0:
		return config.Field("data.batch", "must be positive, got %d", d.Batch)
	case d.TrainLimit < 0:
		return config.Field("data.train_limit", "must not be negative, got %d", d.TrainLimit)
	case d.Kind == "folder" && (d.Scale[0] <= 0 || d.Scale[0] > d.Scale[1] || d.Scale[1] > 1):
		return config.Field("data.scale", "must satisfy 0 < scale[0] <= scale[1] <= 1, got %v", d.Scale)
	case d.Crop != "" && d.Crop != "retry" && d.Crop != "clamped":
		return config.Field("data.crop", `must be "retry" or "clamped", got %q`, d.Crop)
	}
	return nil
}

// trainExtras are the optional stages of the training transform that
// main_finetune.py adds through timm's create_transform; the zero value
// adds none.
type trainExtras struct {
	randAugment string  // timm's RandAugment spec ("rand-m9-mstd0.5-inc1"); "" for none
	reprob      float64 // random erasing's chance per image; 0 for none
	remode      string
	recount     int
}

// build makes the stages for images normalised with mean; RandAugment
// fills with round(255 * mean), as timm's img_mean, and interpolates
// bicubically, as MAE passes interpolation="bicubic" to create_transform.
func (x trainExtras) build(mean [3]float32) (ra *data.RandAugment, re *data.RandomErasing, err error) {
	if x.randAugment != "" {
		if ra, err = data.ParseRandAugment(x.randAugment, mean, data.Bicubic); err != nil {
			return nil, nil, err
		}
	}
	if x.reprob > 0 {
		if re, err = data.NewRandomErasing(x.reprob, x.remode, x.recount); err != nil {
			return nil, nil, err
		}
	}
	return ra, re, nil
}

// imageSet is one split, decoded on the loader's goroutines into
// normalised CHW float32 images.
type imageSet struct {
	n, classes int
	chans      int64
	size       int64
	get        func(i int, rng *rand.Rand, train bool) ([]float32, int64, error)
	label      func(i int) int64
}

// Fashion-MNIST's pixel mean and standard deviation on [0, 1].
const fmnistMean, fmnistStd = 0.2860, 0.3530

// openImages opens the "train" or "test" split for a model taking
// size x size images with chans channels; x adds stages to the training
// transform.
func openImages(d DataConfig, split string, size, chans int64, x trainExtras) (*imageSet, error) {
	if d.Kind == "fashion_mnist" {
		im, err := data.FashionMNIST(d.Dir, split)
		if err != nil {
			return nil, err
		}
		if size != int64(im.Rows) || chans != 1 {
			return nil, fmt.Errorf("model.img_size %d and model.in_chans %d: Fashion-MNIST images are 28x28 with 1 channel", size, chans)
		}
		n := im.N
		if split == "train" && d.TrainLimit > 0 && int(d.TrainLimit) < n {
			n = int(d.TrainLimit)
		}
		ra, re, err := x.build([3]float32{fmnistMean, fmnistMean, fmnistMean})
		if err != nil {
			return nil, err
		}
		return &imageSet{n: n, classes: 10, chans: 1, size: size, label: func(i int) int64 { return int64(im.Labels[i]) }, get: func(i int, rng *rand.Rand, train bool) ([]float32, int64, error) {
			px := im.Image(i)
			flip := train && d.Flip && rng.IntN(2) == 1
			if flip || (train && ra != nil) {
				px = fmnistAugment(px, im.Rows, im.Cols, flip, ra, rng)
			}
			out := make([]float32, len(px))
			for k, v := range px {
				out[k] = (float32(v)/255 - fmnistMean) / fmnistStd
			}
			if train && re != nil {
				re.Apply(out, 1, im.Rows, im.Cols, rng)
			}
			return out, int64(im.Labels[i]), nil
		}}, nil
	}
	sub := map[string]string{"train": "train", "test": "val"}[split]
	f, err := data.NewImageFolder(filepath.Join(d.Dir, sub))
	if err != nil {
		return nil, err
	}
	if chans != 3 {
		return nil, fmt.Errorf("model.in_chans %d: folder images are decoded as RGB (3 channels)", chans)
	}
	aug := data.Augment{Size: int(size), Scale: d.Scale, Flip: d.Flip, Mean: data.ImageNetMean, Std: data.ImageNetStd}
	if d.Crop == "clamped" {
		aug.Crop = data.ClampedCrop
	}
	if aug.RandAugment, aug.Erasing, err = x.build(data.ImageNetMean); err != nil {
		return nil, err
	}
	n := f.Len()
	if split == "train" && d.TrainLimit > 0 && int(d.TrainLimit) < n {
		n = int(d.TrainLimit)
	}
	return &imageSet{n: n, classes: len(f.Classes), chans: 3, size: size, label: func(i int) int64 { return int64(f.Labels[i]) }, get: func(i int, rng *rand.Rand, train bool) ([]float32, int64, error) {
		img, err := f.Open(i)
		if err != nil {
			return nil, 0, err
		}
		if train {
			return aug.Train(img, rng), int64(f.Labels[i]), nil
		}
		return aug.Eval(img), int64(f.Labels[i]), nil
	}}, nil
}

// openSplits opens the training and test splits for the model's image
// size and channels; x adds stages to the training transform.
func openSplits(d DataConfig, o Options, x trainExtras) (trainSet, testSet *imageSet, err error) {
	if trainSet, err = openImages(d, "train", o.ImgSize, o.InChans, x); err != nil {
		return nil, nil, err
	}
	testSet, err = openImages(d, "test", o.ImgSize, o.InChans, trainExtras{})
	return trainSet, testSet, err
}

// fmnistAugment flips a Fashion-MNIST image and runs RandAugment on it
// (either may be off). RandAugment sees the grey image as RGB with equal
// channels, which every op keeps equal (PIL's luma of (v, v, v) is v, the
// fill is grey), so channel 0 is the result: what PIL's ops give on the
// grey ("L") image.
func fmnistAugment(px []uint8, rows, cols int, flip bool, ra *data.RandAugment, rng *rand.Rand) []uint8 {
	img := image.NewRGBA(image.Rect(0, 0, cols, rows))
	for y := range rows {
		for x := range cols {
			sx := x
			if flip {
				sx = cols - 1 - x
			}
			v := px[y*cols+sx]
			copy(img.Pix[4*(y*cols+x):], []uint8{v, v, v, 255})
		}
	}
	if ra != nil {
		img = ra.Apply(img, rng)
	}
	out := make([]uint8, rows*cols)
	for k := range out {
		out[k] = img.Pix[4*k]
	}
	return out
}

// imageBatch is a batch in Go memory, made on a loader goroutine.
type imageBatch struct {
	pixels  []float32
	labels  []int64
	shape   []int64
	indices []int64   // the examples' indices (for cached features)
	soft    []float32 // mixed, smoothed targets [N, classes] when mixup or cutmix is on
}

func (s *imageSet) batch(idx []int, rng *rand.Rand, train bool) (imageBatch, error) {
	per := int(s.chans * s.size * s.size)
	b := imageBatch{pixels: make([]float32, len(idx)*per), labels: make([]int64, len(idx)), shape: []int64{int64(len(idx)), s.chans, s.size, s.size}}
	for k, i := range idx {
		px, y, err := s.get(i, rng, train)
		if err != nil {
			return b, err
		}
		copy(b.pixels[k*per:], px)
		b.labels[k] = y
	}
	return b, nil
}

func (b imageBatch) tensors(dev gotch.Device) (x, y *ts.Tensor) {
	x = torchmods.FromSlice(b.pixels, b.shape, dev)
	y = torchmods.FromSlice(b.labels, []int64{int64(len(b.labels))}, dev)
	return x, y
}

// loader is the seeded, prefetching training loader over s.
func (s *imageSet) loader(d DataConfig, seed int64) (*data.Loader[imageBatch], error) {
	return data.NewLoader(data.LoaderOptions{N: s.n, Batch: int(d.Batch), Shuffle: true, DropLast: true, Seed: uint64(seed), Workers: d.Workers},
		func(b data.Batch) (imageBatch, error) { return s.batch(b.Indices, b.Rand(), true) })
}

// eachEval calls fn on the split's batches in order, with the evaluation transform.
func (s *imageSet) eachEval(batch int, dev gotch.Device, fn func(x, y *ts.Tensor)) error {
	return data.Sequential(s.n, batch, func(idx []int) error {
		b, err := s.batch(idx, nil, false)
		if err != nil {
			return err
		}
		sc := ts.NewScope()
		defer sc.Close()
		x, y := b.tensors(dev)
		fn(x, y)
		return nil
	})
}
