package imageclf

import (
	"encoding/csv"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/reprolab/repro/data"
)

// Set is a labelled image set: an image folder (root/<class>/<image>) or a
// CSV of paths and labels, with labels as ids into the task's classes.
type Set struct {
	Paths  []string
	Labels []int
	// Names are the labels as the set names them (its class folders or
	// CSV labels), before mapping to the task's classes.
	Names  []string
	folder *data.ImageFolder // for a folder: its reader, which skips unreadable images
	index  []int             // after subset: each image's index in folder
}

// Len is the number of images.
func (s *Set) Len() int { return len(s.Paths) }

// OpenSet reads an image folder, or a CSV (a path ending in .csv) with the
// given path and label columns.
func OpenSet(path, pathCol, labelCol string) (*Set, error) {
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		return readCSV(path, pathCol, labelCol)
	}
	f, err := data.NewImageFolder(path)
	if err != nil {
		return nil, err
	}
	s := &Set{Paths: f.Files, Labels: f.Labels, folder: f}
	for _, l := range f.Labels {
		s.Names = append(s.Names, f.Classes[l])
	}
	return s, nil
}

func readCSV(path, pathCol, labelCol string) (*Set, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	rows, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("%s: no rows after the header", path)
	}
	col := func(name string) int {
		for i, h := range rows[0] {
			if strings.TrimPrefix(h, "\ufeff") == name {
				return i
			}
		}
		return -1
	}
	pc, lc := col(pathCol), col(labelCol)
	if pc < 0 || lc < 0 {
		return nil, fmt.Errorf("%s: columns %q and %q not both in the header %q (data.path_column, data.label_column)", path, pathCol, labelCol, rows[0])
	}
	s := &Set{}
	base := filepath.Dir(path)
	for i, r := range rows[1:] {
		if len(r) <= max(pc, lc) || r[pc] == "" || r[lc] == "" {
			return nil, fmt.Errorf("%s:%d: a row needs a path and a label", path, i+2)
		}
		p := r[pc]
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		s.Paths, s.Names = append(s.Paths, p), append(s.Names, r[lc])
	}
	return s, nil
}

// subset keeps n images evenly spaced in file order: a folder lists its
// images class by class, so the first n would leave classes out.
func (s *Set) subset(n int) {
	var paths, names []string
	var labels, index []int
	for k := range n {
		i := k * len(s.Paths) / n
		paths, names, index = append(paths, s.Paths[i]), append(names, s.Names[i]), append(index, s.folderIndex(i))
		if s.Labels != nil {
			labels = append(labels, s.Labels[i])
		}
	}
	s.Paths, s.Names, s.Labels, s.index = paths, names, labels, index
}

// folderIndex is image i's index in the folder's reader.
func (s *Set) folderIndex(i int) int {
	if s.index != nil {
		return s.index[i]
	}
	return i
}

// Classes are a set's distinct label names, sorted (torchvision's
// ImageFolder order for a folder).
func (s *Set) Classes() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range s.Names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// mapLabels sets Labels to each image's id in classes; a name outside
// them is an error naming it.
func (s *Set) mapLabels(classes []string, what string) error {
	ids := map[string]int{}
	for i, c := range classes {
		ids[c] = i
	}
	s.Labels = make([]int, len(s.Names))
	for i, n := range s.Names {
		id, ok := ids[n]
		if !ok {
			return fmt.Errorf("%s: %s has label %q, not one of the classes %q", what, s.Paths[i], n, classes)
		}
		s.Labels[i] = id
	}
	return nil
}

// open decodes image i within data's pixel bounds. In a folder an
// unreadable image is replaced by the next readable one of its class, with
// a warning (data.SkipBadImages); in a CSV it is an error naming the file.
func (s *Set) open(i int) (image.Image, error) {
	if s.folder != nil {
		return s.folder.Open(s.folderIndex(i))
	}
	f, err := os.Open(s.Paths[i])
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return data.DecodeImage(f, s.Paths[i], data.ImageFolderOptions{})
}

// Transform turns a decoded image into the model's input: CHW float32,
// normalised per channel, grey (ITU-R 601 luma, as PIL's convert("L")) when
// the model takes one channel.
type Transform struct {
	Size      int
	Chans     int
	Scale     [2]float64 // training crop's area range
	Flip      bool
	CropPct   float64
	Mean, Std []float32
}

// Pixels applies the training (rng set) or evaluation (rng nil)
// transform. A training image with scale [1, 1], or an evaluation image
// with crop_pct 1, that is already Size x Size is used as it is (flipped
// at random in training), with no resampling: Fashion-MNIST's pipeline.
func (t Transform) Pixels(img image.Image, rng *rand.Rand) []float32 {
	b := img.Bounds()
	whole := b.Dx() == t.Size && b.Dy() == t.Size && (rng == nil && t.CropPct == 1 || rng != nil && t.Scale == [2]float64{1, 1})
	n := t.Size * t.Size
	rgb := make([]float32, 3*n) // on [0, 1]
	if whole {
		flip := rng != nil && t.Flip && rng.IntN(2) == 1
		for y := range t.Size {
			for x := range t.Size {
				sx := x
				if flip {
					sx = t.Size - 1 - x
				}
				r, g, bl, _ := img.At(b.Min.X+sx, b.Min.Y+y).RGBA()
				k := y*t.Size + x
				rgb[k], rgb[n+k], rgb[2*n+k] = float32(r>>8)/255, float32(g>>8)/255, float32(bl>>8)/255
				if t.Chans == 1 { // Go's own luma, exact for grey images
					rgb[k] = float32(color.GrayModel.Convert(img.At(b.Min.X+sx, b.Min.Y+y)).(color.Gray).Y) / 255
				}
			}
		}
	} else {
		aug := data.Augment{Size: t.Size, Scale: t.Scale, Flip: t.Flip, CropPct: t.CropPct} // mean 0, std 1: values on [0, 1]
		if rng != nil {
			rgb = aug.Train(img, rng)
		} else {
			rgb = aug.Eval(img)
		}
		if t.Chans == 1 {
			for k := range n {
				rgb[k] = 0.299*rgb[k] + 0.587*rgb[n+k] + 0.114*rgb[2*n+k]
			}
		}
	}
	out := rgb[:t.Chans*n]
	for c := range t.Chans {
		for k := range n {
			out[c*n+k] = (out[c*n+k] - t.Mean[c]) / t.Std[c]
		}
	}
	return out
}

// batch is images in Go memory, made on a loader goroutine.
type batch struct {
	pixels []float32
	labels []int64
	n      int
}

// makeBatch decodes and transforms the images at idx (rng nil: evaluation).
func (s *Set) makeBatch(idx []int, t Transform, rng *rand.Rand) (batch, error) {
	per := t.Chans * t.Size * t.Size
	b := batch{pixels: make([]float32, len(idx)*per), labels: make([]int64, len(idx)), n: len(idx)}
	for k, i := range idx {
		img, err := s.open(i)
		if err != nil {
			return b, err
		}
		copy(b.pixels[k*per:], t.Pixels(img, rng))
		if s.Labels != nil {
			b.labels[k] = int64(s.Labels[i])
		}
	}
	return b, nil
}

// defaultNorm is ImageNet's statistics, or for one channel their means
// (timm's way of adapting a three-channel normalisation to grey).
func defaultNorm(chans int) (mean, std []float32) {
	if chans == 1 {
		var m, s float32
		for c := range 3 {
			m += data.ImageNetMean[c] / 3
			s += data.ImageNetStd[c] / 3
		}
		return []float32{m}, []float32{s}
	}
	return data.ImageNetMean[:], data.ImageNetStd[:]
}
