package vqa

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/reprolab/repro/internal/config"
)

// This file generates the data of the experiment that runs here, where no
// medical images can be fetched: small greyscale "scans" of a body region
// drawn as shapes (skull, body outline, spine, and the organs brain, lung,
// heart, liver, kidney), with 0-3 lesions inside the organs, a caption per
// image in simple radiology style (the pre-training pairs, as ROCO's are
// for MUMC), and VQA-RAD-style questions about each image.
//
// Everything a question asks is drawn, so an answer is always a function of
// the pixels:
//
//   - region (head, chest, abdomen) and plane (axial, coronal, sagittal)
//     set the layout: which organs appear and where;
//   - modality (ct, mri, x-ray) sets the grey level of every tissue (mri
//     has dark bone and bright fluid, x-ray is brighter and blurred) and
//     the noise (fine grain for ct, a smooth bias field and Rician noise
//     for mri, blur and a vertical gradient for x-ray);
//   - a lesion is a disk inside one organ, small or large, brighter or
//     darker than its organ by 45-70 grey levels, on the left or right and
//     in the upper or lower part of it.
//
// Sides are the viewer's: "left" is the left half of the image, so the
// "left kidney" is the kidney drawn on the image's left (radiology names
// sides after the patient, the other way round; one convention used
// throughout is all the questions need). For a paired organ (lung, kidney)
// a lesion's side is the side of its organ; for the others it is the side
// of the organ's centre the lesion lies on. Every lesion is at least a
// pixel off its organ's centre line in both directions, so side and level
// are never ambiguous.
//
// Held-out lesion sites (SynthHeldOutSites) make the test set need
// composition: a lesion in the left kidney, in the right lung, or in the
// right half of the brain is never drawn in a train, val or pre-training
// image, although kidneys, lungs and brains with lesions, and lesions on
// either side, are. Test images draw lesions freely and, in addition,
// every synthHeldOutEvery-th test image has one at a held-out site, the
// sites taken in turn. Val follows the training distribution, so that model
// selection does not see the held-out sites.
//
// Generation is deterministic: each image has its own PCG stream, seeded
// with the options' seed and the image's split and index, and nothing
// iterates over a map, so the same options give the same bytes, and an
// image does not change when the number of images of another split does.

// Question types, VQA-RAD's abbreviations. VQA-RAD files questions about
// density or intensity ("is the mass hyperintense?") under COLOR, so the
// comparisons of a lesion's brightness with its organ are COLOR questions.
const (
	synthQPres     = "PRES"
	synthQPos      = "POS"
	synthQCount    = "COUNT"
	synthQSize     = "SIZE"
	synthQColor    = "COLOR"
	synthQModality = "MODALITY"
	synthQPlane    = "PLANE"
	synthQOrgan    = "ORGAN"
)

// SynthQuestionTypes lists the question types Synthesize asks, in a fixed
// order.
func SynthQuestionTypes() []string {
	return []string{synthQPres, synthQPos, synthQCount, synthQSize, synthQColor, synthQModality, synthQPlane, synthQOrgan}
}

// synthClosedShare is the probability that a question picked for an image
// is closed (yes/no): VQA-RAD's share, about 58% of its questions (59% of
// the training questions, 56% of the test ones).
const synthClosedShare = 0.58

// synthHeldOutEvery: every synthHeldOutEvery-th test image (index 0, 4, 8,
// ...) has a lesion at a held-out site.
const synthHeldOutEvery = 4

// Split names of SynthImage.Split, in the order of SynthSet.Images.
const (
	SynthTrain = "train"
	SynthVal   = "val"
	SynthTest  = "test"
	SynthExtra = "extra" // caption-only images for pre-training
)

// SynthOptions configures Synthesize. Counts are numbers of images.
type SynthOptions struct {
	Size              int    `toml:"size"`                // image side in pixels
	Train             int    `toml:"train"`               // images with questions and captions
	Val               int    `toml:"val"`                 // images with questions
	Test              int    `toml:"test"`                // images with questions, including the held-out sites
	PretrainExtra     int    `toml:"pretrain_extra"`      // caption-only images for pre-training
	QuestionsPerImage int    `toml:"questions_per_image"` // questions asked per train, val or test image
	Seed              uint64 `toml:"seed"`
}

// DefaultSynthOptions is the experiment's setting: 2,000 images of 64
// pixels (VQA-RAD has 315 images and 3,515 questions; this is a few times
// larger because the models here start from nothing) and six questions per
// image, about VQA-RAD's eleven per image halved.
func DefaultSynthOptions() SynthOptions {
	return SynthOptions{Size: 64, Train: 1000, Val: 200, Test: 300, PretrainExtra: 500, QuestionsPerImage: 6, Seed: 1}
}

// synthMaxImages bounds each count, far above anything used, to catch a
// mistyped value before it allocates gigabytes.
const synthMaxImages = 1_000_000

// Validate checks the options, naming keys under prefix ("synth").
func (o SynthOptions) Validate(prefix string) error {
	if o.Size < 48 || o.Size > 512 {
		return config.Field(prefix+".size", "must be in [48, 512] pixels (below 48 a kidney is a few pixels wide and a large lesion hardly larger than a small one), got %d", o.Size)
	}
	minTest := synthHeldOutEvery * len(SynthHeldOutSites())
	for _, c := range []struct {
		key    string
		got    int
		lo     int
		reason string
	}{
		{"train", o.Train, 1, ""},
		{"val", o.Val, 0, ""},
		{"test", o.Test, minTest, " so that every held-out site is drawn"},
		{"pretrain_extra", o.PretrainExtra, 0, ""},
	} {
		if c.got < c.lo || c.got > synthMaxImages {
			return config.Field(prefix+"."+c.key, "must be in [%d, %d]%s, got %d", c.lo, synthMaxImages, c.reason, c.got)
		}
	}
	if o.QuestionsPerImage < 1 || o.QuestionsPerImage > 20 {
		return config.Field(prefix+".questions_per_image", "must be in [1, 20], got %d", o.QuestionsPerImage)
	}
	return nil
}

// SynthSite is where a lesion is: an organ and a side.
type SynthSite struct {
	Organ string // "kidney"
	Side  string // "left" or "right", the viewer's
}

// String names the site as the captions do: "left kidney", or "right half
// of the brain" for an unpaired organ.
func (s SynthSite) String() string {
	if synthPaired(s.Organ) {
		return s.Side + " " + s.Organ
	}
	return s.Side + " half of the " + s.Organ
}

// SynthHeldOutSites are the lesion sites never drawn in train, val or
// pre-training images: two paired organs with one side each (the other side
// is drawn, as are lesions on this side in other organs) and one unpaired
// organ's half.
func SynthHeldOutSites() []SynthSite {
	return []SynthSite{{"kidney", "left"}, {"lung", "right"}, {"brain", "right"}}
}

func synthIsHeldOut(s SynthSite) bool {
	return slices.Contains(SynthHeldOutSites(), s)
}

// SynthLesion is one lesion as drawn.
type SynthLesion struct {
	Organ  string  // "kidney"
	Side   string  // "left" or "right" (viewer's)
	Level  string  // "upper" or "lower" part of its organ
	Large  bool    // large (radius about 7% of the image) or small (about 3.5%)
	Bright bool    // brighter than its organ (hyperdense, hyperintense) or darker
	X, Y   float64 // centre in pixels, from the top-left corner of the image
	R      float64 // radius in pixels
	Part   int     // index of its organ in SynthImage.Organs
	value  float64 // grey level before the modality's noise
}

// Site is the lesion's organ and side.
func (l SynthLesion) Site() SynthSite { return SynthSite{l.Organ, l.Side} }

// SynthImage is one generated image with its ground truth.
type SynthImage struct {
	Name     string   // "train_00001"; the file is images/<Name>.png
	Split    string   // SynthTrain, SynthVal, SynthTest or SynthExtra
	Region   string   // "head", "chest" or "abdomen"
	Plane    string   // "axial", "coronal" or "sagittal"
	Modality string   // "ct", "mri" or "x-ray"
	Organs   []string // the organs shown, as questions name them: "liver", "left kidney"
	Lesions  []SynthLesion
	HeldOut  bool   // has a lesion at a held-out site
	Caption  string // 2-3 sentences
	Pixels   []uint8

	shapes    []synthShape // the organs' shapes, parallel to Organs
	organMap  []uint8      // per pixel, 1 + index into Organs, 0 outside organs
	lesionMap []uint8      // per pixel, 1 + index into Lesions, 0 outside lesions
}

// File is the image's file name, as items name it.
func (im *SynthImage) File() string { return im.Name + ".png" }

// SynthSet is a generated dataset.
type SynthSet struct {
	Opt SynthOptions
	// Images are all images: train, val, test, then extra, each in index
	// order.
	Images []*SynthImage
	// Train, Val and Test are the questions of each split; Item.Image is
	// the file name inside images/, as VQA-RAD's image_name.
	Train, Val, Test []Item
	// Captions are the pre-training pairs: the train images and the extra
	// ones. Caption.Image is the file name inside images/, as Item.Image,
	// so that one image root serves both.
	Captions []Caption
	// Answers are the answers of all splits, sorted (MUMC ranks the
	// candidates of answer_all_list.json, which lists every split's
	// answers).
	Answers []string
	// HeldOut names the held-out lesion sites ("lesion in the left kidney
	// (test only)"), in the order of SynthHeldOutSites.
	HeldOut []string

	index map[string]int
}

// synthSplit is one split to generate.
type synthSplit struct {
	name      string
	count     int
	stream    uint64 // high bits of the images' PCG streams
	questions bool
	heldOut   bool // may draw held-out sites
}

func (o SynthOptions) splits() []synthSplit {
	return []synthSplit{
		{SynthTrain, o.Train, 1, true, false},
		{SynthVal, o.Val, 2, true, false},
		{SynthTest, o.Test, 3, true, true},
		{SynthExtra, o.PretrainExtra, 4, false, false},
	}
}

// Synthesize generates the dataset of o. Invalid options give a
// config.FieldError naming the key under "synth" ("synth.size").
func Synthesize(o SynthOptions) (*SynthSet, error) {
	if err := o.Validate("synth"); err != nil {
		return nil, err
	}
	s := &SynthSet{Opt: o, index: map[string]int{}}
	for _, site := range SynthHeldOutSites() {
		s.HeldOut = append(s.HeldOut, fmt.Sprintf("lesion in the %s (test only)", site))
	}
	rasters := synthRasters(o.Size)
	qid := 0
	answers := map[string]bool{}
	for _, sp := range o.splits() {
		for i := range sp.count {
			rng := rand.New(rand.NewPCG(o.Seed, sp.stream<<40|uint64(i)))
			var force *SynthSite
			if sp.heldOut && i%synthHeldOutEvery == 0 {
				site := SynthHeldOutSites()[i/synthHeldOutEvery%len(SynthHeldOutSites())]
				force = &site
			}
			im, err := synthImage(rng, o.Size, rasters, sp, i, force)
			if err != nil {
				return nil, err
			}
			s.index[im.Name] = len(s.Images)
			s.Images = append(s.Images, im)
			if sp.name == SynthTrain || sp.name == SynthExtra {
				s.Captions = append(s.Captions, Caption{Image: im.File(), Captions: []string{im.Caption}})
			}
			if !sp.questions {
				continue
			}
			split := map[string]*[]Item{SynthTrain: &s.Train, SynthVal: &s.Val, SynthTest: &s.Test}[sp.name]
			for _, qa := range synthPick(rng, synthCandidates(rng, im), o.QuestionsPerImage) {
				qid++
				it := qa.item(strconv.Itoa(qid), im)
				answers[it.Answer] = true
				*split = append(*split, it)
			}
		}
	}
	for a := range answers {
		s.Answers = append(s.Answers, a)
	}
	slices.Sort(s.Answers)
	return s, nil
}

// Image returns the image called name ("train_00001", with or without
// ".png" and a leading "images/").
func (s *SynthSet) Image(name string) (*SynthImage, bool) {
	name = strings.TrimSuffix(strings.TrimPrefix(name, "images/"), ".png")
	i, ok := s.index[name]
	if !ok {
		return nil, false
	}
	return s.Images[i], true
}

// Pixels returns a copy of the grey levels of the image called name (as
// Image takes it), Size*Size bytes, row-major.
func (s *SynthSet) Pixels(name string) ([]uint8, error) {
	im, ok := s.Image(name)
	if !ok {
		return nil, fmt.Errorf("vqa: synth: no image %q", name)
	}
	return slices.Clone(im.Pixels), nil
}

// ---- anatomy ----

// Regions and the planes each is drawn in. The chest has no sagittal
// layout because a sagittal slice shows one lung, whose side the image
// cannot tell.
var (
	synthRegions    = []string{"head", "chest", "abdomen"}
	synthModalities = []string{"ct", "mri", "x-ray"}
)

func synthPlanes(region string) []string {
	if region == "chest" {
		return []string{"axial", "coronal"}
	}
	return []string{"axial", "coronal", "sagittal"}
}

// synthShape is a filled superellipse of one tissue: centre, semi-axes
// and rotation in units of the image side, exponent 2 for an ellipse and
// larger for a boxier outline. A kidney has a notch (its hilum) on the side
// facing the midline: notch is +1 or -1, the direction of that side.
type synthShape struct {
	tissue                   string // an organ or "body", "bone", "csf"
	side                     string // "left"/"right" for a paired organ
	cx, cy, rx, ry, rot, exp float64
	notch                    float64
}

func synthPaired(organ string) bool { return organ == "lung" || organ == "kidney" }

func (sh synthShape) isOrgan() bool {
	switch sh.tissue {
	case "body", "bone", "csf":
		return false
	}
	return true
}

// label names an organ as questions do: "liver", "left kidney".
func (sh synthShape) label() string {
	if sh.side == "" {
		return sh.tissue
	}
	return sh.side + " " + sh.tissue
}

// contains reports whether the point (u, v), in units of the image side,
// is inside the shape.
func (sh synthShape) contains(u, v float64) bool {
	dx, dy := u-sh.cx, v-sh.cy
	if sh.notch != 0 {
		nx := dx - sh.notch*0.95*sh.rx
		if nx*nx+dy*dy < (0.45*sh.rx)*(0.45*sh.rx) {
			return false
		}
	}
	c, s := math.Cos(sh.rot), math.Sin(sh.rot)
	a := math.Abs((c*dx + s*dy) / sh.rx)
	b := math.Abs((-s*dx + c*dy) / sh.ry)
	if a > 1 || b > 1 {
		return false
	}
	return math.Pow(a, sh.exp)+math.Pow(b, sh.exp) <= 1
}

// synthLayout is the drawing of a region in a plane, back to front: the
// body, bones and fluid first, then the organs.
func synthLayout(region, plane string) []synthShape {
	el := func(t string, cx, cy, rx, ry float64) synthShape {
		return synthShape{tissue: t, cx: cx, cy: cy, rx: rx, ry: ry, exp: 2}
	}
	rot := func(sh synthShape, r, e float64) synthShape { sh.rot, sh.exp = r, e; return sh }
	pair := func(t string, cx, cy, rx, ry, e float64, notch bool) []synthShape {
		l := synthShape{tissue: t, side: "left", cx: cx, cy: cy, rx: rx, ry: ry, exp: e}
		r := l
		r.side, r.cx = "right", 1-cx
		if notch {
			l.notch, r.notch = 1, -1
		}
		return []synthShape{l, r}
	}
	switch region + "/" + plane {
	case "head/axial":
		return []synthShape{el("bone", .5, .5, .37, .45), el("csf", .5, .5, .33, .41), el("brain", .5, .5, .3, .38)}
	case "head/coronal":
		return []synthShape{el("body", .5, .9, .15, .14), el("bone", .5, .45, .4, .4), el("csf", .5, .45, .36, .36),
			rot(el("brain", .5, .44, .33, .31), 0, 2.4)}
	case "head/sagittal":
		return []synthShape{el("body", .62, .86, .16, .16), rot(el("bone", .48, .46, .43, .36), -.15, 2),
			rot(el("csf", .48, .46, .39, .32), -.15, 2), rot(el("brain", .49, .45, .36, .28), -.15, 2)}
	case "chest/axial":
		out := []synthShape{rot(el("body", .5, .52, .46, .32), 0, 2.4), el("bone", .5, .78, .05, .05)}
		out = append(out, pair("lung", .27, .5, .13, .2, 2.2, false)...)
		return append(out, el("heart", .5, .6, .11, .1))
	case "chest/coronal":
		out := []synthShape{rot(el("body", .5, .5, .42, .46), 0, 2.6)}
		out = append(out, pair("lung", .29, .42, .15, .3, 2.2, false)...)
		return append(out, el("heart", .5, .77, .14, .1))
	case "abdomen/axial":
		out := []synthShape{rot(el("body", .5, .52, .46, .36), 0, 2.4), el("bone", .5, .74, .05, .05),
			rot(el("liver", .35, .38, .2, .14), .25, 2.6)}
		return append(out, pair("kidney", .3, .72, .1, .13, 2, true)...)
	case "abdomen/coronal":
		out := []synthShape{rot(el("body", .5, .5, .42, .46), 0, 2.6), rot(el("bone", .5, .65, .035, .3), 0, 4),
			rot(el("liver", .36, .28, .22, .13), .15, 2.6)}
		return append(out, pair("kidney", .31, .64, .1, .14, 2, true)...)
	case "abdomen/sagittal":
		return []synthShape{rot(el("body", .5, .5, .34, .46), 0, 2.6), rot(el("bone", .74, .5, .035, .4), 0, 4),
			rot(el("liver", .45, .36, .22, .17), -.2, 2.6)}
	}
	panic("vqa: synth: no layout for " + region + "/" + plane)
}

// synthTissueLevel is each tissue's grey level per modality (ct, mri,
// x-ray): ct is dark with bright bone, mri has dark bone, bright fluid and
// kidneys and a darker liver, x-ray is bright overall. Organs lie in
// [45, 210] so that a lesion 45-70 levels away stays in [0, 255] or is
// clamped no closer than 45.
var synthTissueLevel = map[string][3]float64{
	"background": {8, 4, 10},
	"body":       {95, 70, 135},
	"bone":       {235, 35, 220},
	"csf":        {30, 200, 150},
	"brain":      {120, 140, 170},
	"lung":       {50, 45, 60},
	"heart":      {150, 95, 200},
	"liver":      {135, 80, 180},
	"kidney":     {170, 165, 160},
}

func synthLevel(tissue, modality string) float64 {
	return synthTissueLevel[tissue][slices.Index(synthModalities, modality)]
}

// ---- one image ----

// synthImage draws image i of split sp: region, plane and modality, the
// anatomy, the lesions, the modality's noise, then the caption. With force
// set, the region and plane are among those showing the forced site and
// the first lesion is there.
func synthImage(rng *rand.Rand, size int, rasters map[string]*synthRaster, sp synthSplit, i int, force *SynthSite) (*SynthImage, error) {
	im := &SynthImage{Name: fmt.Sprintf("%s_%05d", sp.name, i+1), Split: sp.name}
	if force != nil {
		rp := synthShowing(*force)
		pick := rp[rng.IntN(len(rp))]
		im.Region, im.Plane = pick[0], pick[1]
	} else {
		im.Region = synthRegions[rng.IntN(len(synthRegions))]
		planes := synthPlanes(im.Region)
		im.Plane = planes[rng.IntN(len(planes))]
	}
	im.Modality = synthModalities[rng.IntN(len(synthModalities))]
	vals, levels := synthAnatomy(rng, im, rasters[im.Region+"/"+im.Plane])
	if err := synthLesions(rng, im, size, levels, sp.heldOut, force); err != nil {
		return nil, err
	}
	for k, l := range im.Lesions {
		synthDisk(size, l.X, l.Y, l.R, func(p int) {
			vals[p] = l.value
			im.lesionMap[p] = uint8(k + 1)
		})
		im.HeldOut = im.HeldOut || synthIsHeldOut(l.Site())
	}
	im.Pixels = synthFinish(rng, vals, size, im.Modality)
	im.Caption = synthCaption(rng, im)
	return im, nil
}

// synthShowing lists the (region, plane) pairs whose layout can show a
// lesion at site.
func synthShowing(site SynthSite) [][2]string {
	var out [][2]string
	for _, r := range synthRegions {
		for _, p := range synthPlanes(r) {
			for _, sh := range synthLayout(r, p) {
				if sh.tissue == site.Organ && (sh.side == "" || sh.side == site.Side) {
					out = append(out, [2]string{r, p})
					break
				}
			}
		}
	}
	return out
}

// synthRaster is a layout drawn at one size: per pixel, the index of the
// front-most shape covering it (-1 for none). Layouts are fixed, so each is
// rasterised once per Synthesize rather than once per image.
type synthRaster struct {
	shapes []synthShape
	top    []int8
}

// synthRasters rasterises every (region, plane) layout at size, keyed
// "region/plane".
func synthRasters(size int) map[string]*synthRaster {
	out := map[string]*synthRaster{}
	for _, r := range synthRegions {
		for _, p := range synthPlanes(r) {
			ra := &synthRaster{shapes: synthLayout(r, p), top: make([]int8, size*size)}
			for y := range size {
				for x := range size {
					u, v := (float64(x)+0.5)/float64(size), (float64(y)+0.5)/float64(size)
					ra.top[y*size+x] = -1
					for k, sh := range ra.shapes {
						if sh.contains(u, v) {
							ra.top[y*size+x] = int8(k)
						}
					}
				}
			}
			out[r+"/"+p] = ra
		}
	}
	return out
}

// synthAnatomy fills the organ map and returns the grey levels of the
// region without lesions and each organ's level (parallel to im.Organs).
// An organ's level is jittered by up to 6 so that it is recognised by its
// shape and place, not by one exact value.
func synthAnatomy(rng *rand.Rand, im *SynthImage, ra *synthRaster) (vals, organLevels []float64) {
	levels := make([]float64, len(ra.shapes))
	organOf := make([]uint8, len(ra.shapes)) // 1 + index into im.Organs, 0 for other tissues
	for k, sh := range ra.shapes {
		levels[k] = synthLevel(sh.tissue, im.Modality)
		if sh.isOrgan() {
			levels[k] += 12 * (rng.Float64() - 0.5)
			im.shapes = append(im.shapes, sh)
			im.Organs = append(im.Organs, sh.label())
			organLevels = append(organLevels, levels[k])
			organOf[k] = uint8(len(im.Organs))
		}
	}
	n := len(ra.top)
	vals = make([]float64, n)
	im.organMap = make([]uint8, n)
	im.lesionMap = make([]uint8, n)
	bg := synthLevel("background", im.Modality)
	for p, k := range ra.top {
		if k < 0 {
			vals[p] = bg
			continue
		}
		vals[p] = levels[k]
		im.organMap[p] = organOf[k]
	}
	return vals, organLevels
}

// synthLesionCount draws how many lesions an image has: a quarter of the
// images are normal, most abnormal ones have one lesion. An image forced to
// show a held-out site has at least one.
func synthLesionCount(rng *rand.Rand, forced bool) int {
	u := rng.Float64()
	if forced {
		switch {
		case u < 0.6:
			return 1
		case u < 0.9:
			return 2
		}
		return 3
	}
	switch {
	case u < 0.25:
		return 0
	case u < 0.7:
		return 1
	case u < 0.9:
		return 2
	}
	return 3
}

// synthLesions places the image's lesions, the forced site first. Without
// allowHeldOut no lesion is placed at a held-out site. A lesion that does
// not fit (its organ is full) is dropped after a few tries, so the count
// drawn is an upper bound and im.Lesions the truth.
func synthLesions(rng *rand.Rand, im *SynthImage, size int, levels []float64, allowHeldOut bool, force *SynthSite) error {
	n := synthLesionCount(rng, force != nil)
	if force != nil {
		part := slices.IndexFunc(im.shapes, func(sh synthShape) bool {
			return sh.tissue == force.Organ && (sh.side == "" || sh.side == force.Side)
		})
		l, ok := synthPlace(rng, im, size, levels, part, force.Side, func(SynthSite) bool { return true })
		if !ok {
			return fmt.Errorf("vqa: synth: %s: no room for a lesion in the %s", im.Name, force)
		}
		im.Lesions = append(im.Lesions, l)
	}
	allowed := func(s SynthSite) bool { return allowHeldOut || !synthIsHeldOut(s) }
	var parts []int // organs a lesion may go in: a paired organ's side is fixed
	for k, sh := range im.shapes {
		if sh.side == "" || allowed(SynthSite{sh.tissue, sh.side}) {
			parts = append(parts, k)
		}
	}
	for tries := 0; len(im.Lesions) < n && tries < 4*n; tries++ {
		if l, ok := synthPlace(rng, im, size, levels, parts[rng.IntN(len(parts))], "", allowed); ok {
			im.Lesions = append(im.Lesions, l)
		}
	}
	return nil
}

// synthRadius is a lesion's radius in pixels: large ones are 7% of the
// image side, small ones half that but at least 2.2 pixels, so that even a
// blurred small lesion keeps a core of its own grey level.
func synthRadius(size int, large bool) float64 {
	if large {
		return 0.07 * float64(size)
	}
	return max(2.2, 0.035*float64(size))
}

// synthPlace draws a lesion in organ part (on side, if not empty) at a
// site allowed accepts, entirely inside the organ and clear of the other
// lesions. It tries the drawn size, then the other one, and reports false
// when neither fits.
func synthPlace(rng *rand.Rand, im *SynthImage, size int, levels []float64, part int, side string, allowed func(SynthSite) bool) (SynthLesion, bool) {
	sh := im.shapes[part]
	large, bright := rng.IntN(2) == 0, rng.IntN(2) == 0
	delta := 45 + 25*rng.Float64()
	if !bright {
		delta = -delta
	}
	s := float64(size)
	cx, cy, ext := sh.cx*s, sh.cy*s, max(sh.rx, sh.ry)*s
	for _, lg := range []bool{large, !large} {
		r := synthRadius(size, lg)
		for range 300 {
			x, y := cx+ext*(2*rng.Float64()-1), cy+ext*(2*rng.Float64()-1)
			if math.Abs(x-cx) < 1 || math.Abs(y-cy) < 1 {
				continue // too near the centre lines for side and level to be clear
			}
			l := SynthLesion{Organ: sh.tissue, Side: sh.side, Level: "upper", Large: lg, Bright: bright, X: x, Y: y, R: r, Part: part}
			if l.Side == "" {
				l.Side = "left"
				if x > cx {
					l.Side = "right"
				}
			}
			if y > cy {
				l.Level = "lower"
			}
			if (side != "" && l.Side != side) || !allowed(l.Site()) || !synthFits(im, size, l) {
				continue
			}
			l.value = min(max(levels[part]+delta, 0), 255)
			return l, true
		}
	}
	return SynthLesion{}, false
}

// synthFits reports whether l lies entirely inside its organ and at least
// 1.5 pixels clear of every lesion already placed.
func synthFits(im *SynthImage, size int, l SynthLesion) bool {
	for _, o := range im.Lesions {
		if math.Hypot(l.X-o.X, l.Y-o.Y) < l.R+o.R+1.5 {
			return false
		}
	}
	inside := true
	synthDisk(size, l.X, l.Y, l.R, func(p int) {
		inside = inside && im.organMap[p] == uint8(l.Part+1)
	})
	// A disk reaching past the image is never inside (synthDisk skips
	// those pixels), so check the bounds too.
	return inside && l.X-l.R >= 0 && l.Y-l.R >= 0 && l.X+l.R <= float64(size) && l.Y+l.R <= float64(size)
}

// synthDisk calls f with the index of every pixel of the image whose
// centre is within r of (x, y).
func synthDisk(size int, x, y, r float64, f func(p int)) {
	x0, x1 := max(int(math.Floor(x-r)), 0), min(int(math.Ceil(x+r)), size-1)
	y0, y1 := max(int(math.Floor(y-r)), 0), min(int(math.Ceil(y+r)), size-1)
	for py := y0; py <= y1; py++ {
		for px := x0; px <= x1; px++ {
			dx, dy := float64(px)+0.5-x, float64(py)+0.5-y
			if dx*dx+dy*dy <= r*r {
				f(py*size + px)
			}
		}
	}
}

// synthFinish applies the modality's texture and quantises: ct gets fine
// Gaussian grain; mri a smooth multiplicative bias field (up to about 11%,
// in a random direction) and Rician noise, which lifts the background off
// zero; x-ray a 3x3 blur (a projection has no sharp edges), a brightening
// towards the bottom and faint grain.
func synthFinish(rng *rand.Rand, vals []float64, size int, modality string) []uint8 {
	s := float64(size)
	switch modality {
	case "ct":
		for p := range vals {
			vals[p] += 5 * rng.NormFloat64()
		}
	case "mri":
		th := 2 * math.Pi * rng.Float64()
		c, sn := math.Cos(th), math.Sin(th)
		for p := range vals {
			u, v := (float64(p%size)+0.5)/s-0.5, (float64(p/size)+0.5)/s-0.5
			f := 1 + 0.16*(u*c+v*sn)
			vals[p] = math.Hypot(vals[p]*f+5*rng.NormFloat64(), 5*rng.NormFloat64())
		}
	case "x-ray":
		vals = synthBlur(vals, size)
		for p := range vals {
			vals[p] += 12*(float64(p/size)+0.5)/s + 2.5*rng.NormFloat64()
		}
	}
	out := make([]uint8, len(vals))
	for p, v := range vals {
		out[p] = uint8(math.Round(min(max(v, 0), 255)))
	}
	return out
}

// synthBlur is a 3x3 box blur, the border pixels averaging the
// neighbours they have.
func synthBlur(vals []float64, size int) []float64 {
	out := make([]float64, len(vals))
	for y := range size {
		for x := range size {
			sum, n := 0.0, 0
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					if xx, yy := x+dx, y+dy; xx >= 0 && yy >= 0 && xx < size && yy < size {
						sum += vals[yy*size+xx]
						n++
					}
				}
			}
			out[y*size+x] = sum / float64(n)
		}
	}
	return out
}

// ---- words ----

// synthDensity is the radiological word for a lesion brighter or darker
// than its organ: density for ct and x-ray, intensity for mri.
func synthDensity(modality string, bright bool) string {
	switch {
	case modality == "mri" && bright:
		return "hyperintense"
	case modality == "mri":
		return "hypointense"
	case bright:
		return "hyperdense"
	}
	return "hypodense"
}

// synthBrighter is how a lesion compares with its organ.
func synthBrighter(bright bool) string {
	if bright {
		return "brighter"
	}
	return "darker"
}

func synthSize(large bool) string {
	if large {
		return "large"
	}
	return "small"
}

// synthWhere is a lesion's place in caption words: "upper part of the left
// kidney", "lower right part of the liver".
func synthWhere(l SynthLesion) string {
	if synthPaired(l.Organ) {
		return fmt.Sprintf("%s part of the %s %s", l.Level, l.Side, l.Organ)
	}
	return fmt.Sprintf("%s %s part of the %s", l.Level, l.Side, l.Organ)
}

// synthOrganCode is VQA-RAD's image_organ for a region.
func synthOrganCode(region string) string {
	switch region {
	case "head":
		return "HEAD"
	case "chest":
		return "CHEST"
	}
	return "ABD"
}

// synthArticle is the noun phrase closed modality and plane questions use.
func synthArticle(w string) string {
	switch w {
	case "ct":
		return "a ct scan"
	case "mri":
		return "an mri"
	case "x-ray":
		return "an x-ray"
	case "axial":
		return "an axial image"
	}
	return "a " + w + " image"
}

func synthYes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// synthOther returns truth half of the time and another of choices
// otherwise, so that closed questions are answered yes about as often as
// no.
func synthOther(rng *rand.Rand, choices []string, truth string) string {
	if rng.IntN(2) == 0 {
		return truth
	}
	var others []string
	for _, c := range choices {
		if c != truth {
			others = append(others, c)
		}
	}
	return others[rng.IntN(len(others))]
}

// ---- captions ----

// synthCaption describes an image in two or three sentences: the study
// (plane, modality, region), the findings (every lesion's size, density
// and place, or none), and, half of the time, the organs shown.
func synthCaption(rng *rand.Rand, im *SynthImage) string {
	var study string
	switch rng.IntN(3) {
	case 0:
		study = fmt.Sprintf("%s %s of the %s.", im.Plane, im.Modality, im.Region)
	case 1:
		study = fmt.Sprintf("%s image of the %s in the %s plane.", im.Modality, im.Region, im.Plane)
	default:
		study = fmt.Sprintf("%s %s image showing the %s.", im.Plane, im.Modality, im.Region)
	}
	parts := []string{study, synthFindings(rng, im)}
	if rng.IntN(2) == 0 {
		parts = append(parts, synthVisible(im))
	}
	return strings.Join(parts, " ")
}

func synthFindings(rng *rand.Rand, im *SynthImage) string {
	var phrases []string
	for _, l := range im.Lesions {
		phrases = append(phrases, fmt.Sprintf("a %s %s lesion in the %s", synthSize(l.Large), synthDensity(im.Modality, l.Bright), synthWhere(l)))
	}
	switch len(phrases) {
	case 0:
		return []string{"no focal lesion is seen.", "no lesions are seen.", "there is no lesion."}[rng.IntN(3)]
	case 1:
		if rng.IntN(2) == 0 {
			return "there is " + phrases[0] + "."
		}
		return phrases[0] + " is seen."
	}
	return fmt.Sprintf("there are %s lesions: %s.", []string{"two", "three"}[len(phrases)-2], synthJoin(phrases))
}

// synthVisible names the organs shown: "both lungs and the heart are
// visible."
func synthVisible(im *SynthImage) string {
	var names []string
	for k, sh := range im.shapes {
		if k > 0 && im.shapes[k-1].tissue == sh.tissue {
			continue // a pair is named once
		}
		if synthPaired(sh.tissue) {
			names = append(names, "both "+sh.tissue+"s")
		} else {
			names = append(names, "the "+sh.tissue)
		}
	}
	verb := "are"
	if len(names) == 1 && !strings.HasPrefix(names[0], "both") {
		verb = "is"
	}
	return synthJoin(names) + " " + verb + " visible."
}

// synthJoin is "a", "a and b", "a, b and c".
func synthJoin(w []string) string {
	if len(w) <= 1 {
		return strings.Join(w, "")
	}
	return strings.Join(w[:len(w)-1], ", ") + " and " + w[len(w)-1]
}

// ---- questions ----

// synthQA is one question with its answer.
type synthQA struct {
	q, a, qtype string
	closed      bool
}

func (qa synthQA) item(qid string, im *SynthImage) Item {
	at := "OPEN"
	if qa.closed {
		at = "CLOSED"
	}
	return Item{QID: qid, Image: im.File(), Question: qa.q, Answer: qa.a, AnswerType: at, QuestionType: qa.qtype, Organ: synthOrganCode(im.Region)}
}

// synthAsk collects an image's candidate questions, each phrased with one
// of its templates, dropping repeated texts.
type synthAsk struct {
	rng  *rand.Rand
	out  []synthQA
	seen map[string]bool
}

func (a *synthAsk) add(qtype, answer string, closed bool, templates []string) {
	q := templates[a.rng.IntN(len(templates))]
	if a.seen[q] {
		return
	}
	a.seen[q] = true
	a.out = append(a.out, synthQA{q: q, a: answer, qtype: qtype, closed: closed})
}

func (a *synthAsk) open(qtype, answer string, templates ...string) {
	a.add(qtype, answer, false, templates)
}

func (a *synthAsk) closed(qtype string, yes bool, templates ...string) {
	a.add(qtype, synthYes(yes), true, templates)
}

// synthCandidates lists every question the image can answer: the study's
// modality, plane and region, the number of lesions and their presence in
// each organ, and, for an image with one lesion, its place, size and
// density (VQA-RAD asks about "the lesion" only when there is one); for
// several lesions, whether they share a side, size or density. Closed
// questions ask about the truth or another value equally often.
func synthCandidates(rng *rand.Rand, im *SynthImage) []synthQA {
	a := &synthAsk{rng: rng, seen: map[string]bool{}}
	a.open(synthQModality, im.Modality, "what imaging modality is this?", "what type of imaging is this?", "how was this image taken?")
	m := synthOther(rng, synthModalities, im.Modality)
	a.closed(synthQModality, m == im.Modality, "is this "+synthArticle(m)+"?", "is this image "+synthArticle(m)+"?")
	a.open(synthQPlane, im.Plane, "in what plane is this image taken?", "which plane is this image in?", "what plane is shown?")
	p := synthOther(rng, []string{"axial", "coronal", "sagittal"}, im.Plane)
	a.closed(synthQPlane, p == im.Plane, "is this image in the "+p+" plane?", "is this "+synthArticle(p)+"?")
	a.open(synthQOrgan, im.Region, "what part of the body is shown?", "what organ system is imaged?", "which body region is this?")
	r := synthOther(rng, synthRegions, im.Region)
	a.closed(synthQOrgan, r == im.Region, "is this an image of the "+r+"?", "does this image show the "+r+"?")

	n := len(im.Lesions)
	a.open(synthQCount, strconv.Itoa(n), "how many lesions are there?", "how many lesions are seen?", "what is the number of lesions?")
	a.closed(synthQCount, n > 1, "is there more than one lesion?", "are there multiple lesions?")
	a.closed(synthQPres, n > 0, "are there any lesions?", "is there a lesion in this image?", "is there an abnormality?")
	for k, lab := range im.Organs {
		has := slices.ContainsFunc(im.Lesions, func(l SynthLesion) bool { return l.Part == k })
		a.closed(synthQPres, has, "is there a lesion in the "+lab+"?", "does the "+lab+" have a lesion?")
	}
	switch {
	case n == 1:
		synthAskOne(a, im, im.Lesions[0])
	case n > 1:
		synthAskMany(a, im)
	}
	return a.out
}

// synthAskOne adds the questions about an image's only lesion.
func synthAskOne(a *synthAsk, im *SynthImage, l SynthLesion) {
	rng := a.rng
	lab := im.Organs[l.Part]
	a.open(synthQPos, lab, "where is the lesion?", "where is the lesion located?", "which organ is the lesion in?")
	a.open(synthQPos, l.Side, "which side is the lesion on?", "is the lesion on the left or the right?")
	a.open(synthQPos, l.Level, "is the lesion in the upper or lower part of the "+l.Organ+"?")
	side := synthOther(rng, []string{"left", "right"}, l.Side)
	a.closed(synthQPos, side == l.Side, "is the lesion on the "+side+"?", "is the lesion on the "+side+" side?")
	level := synthOther(rng, []string{"upper", "lower"}, l.Level)
	a.closed(synthQPos, level == l.Level, "is the lesion in the "+level+" part of the "+l.Organ+"?")
	if len(im.Organs) > 1 {
		o := synthOther(rng, im.Organs, lab)
		a.closed(synthQPos, o == lab, "is the lesion in the "+o+"?")
	}
	size := synthOther(rng, []string{"large", "small"}, synthSize(l.Large))
	a.closed(synthQSize, size == synthSize(l.Large), "is the lesion "+size+"?")
	a.open(synthQSize, synthSize(l.Large), "what size is the lesion?", "how large is the lesion?")
	cmp := synthOther(rng, []string{"brighter", "darker"}, synthBrighter(l.Bright))
	a.closed(synthQColor, (cmp == "brighter") == l.Bright, "is the lesion "+cmp+" than the "+l.Organ+"?")
	d := synthDensity(im.Modality, rng.IntN(2) == 0)
	a.closed(synthQColor, d == synthDensity(im.Modality, l.Bright), "is the lesion "+d+"?")
	hyper, hypo := synthDensity(im.Modality, true), synthDensity(im.Modality, false)
	a.open(synthQColor, synthDensity(im.Modality, l.Bright), "is the lesion "+hyper+" or "+hypo+"?")
	a.open(synthQColor, synthBrighter(l.Bright), "is the lesion brighter or darker than the "+l.Organ+"?")
}

// synthAskMany adds the questions about an image's several lesions taken
// together.
func synthAskMany(a *synthAsk, im *SynthImage) {
	all := func(f func(SynthLesion) bool) bool {
		return !slices.ContainsFunc(im.Lesions, func(l SynthLesion) bool { return !f(l) })
	}
	first := im.Lesions[0]
	a.closed(synthQPos, all(func(l SynthLesion) bool { return l.Side == first.Side }), "are the lesions on the same side?")
	large := a.rng.IntN(2) == 0
	a.closed(synthQSize, all(func(l SynthLesion) bool { return l.Large == large }), "are all the lesions "+synthSize(large)+"?")
	bright := a.rng.IntN(2) == 0
	a.closed(synthQColor, all(func(l SynthLesion) bool { return l.Bright == bright }), "are all the lesions "+synthDensity(im.Modality, bright)+"?")
}

// synthTypeWeight is how often synthPick draws a question type, relative
// to the others present: presence and position questions are VQA-RAD's
// most common (about a third and a tenth of its questions), then size and
// density; the study questions (modality, plane, region) and counting are
// the rarer ones.
func synthTypeWeight(qtype string) int {
	switch qtype {
	case synthQPres:
		return 6
	case synthQPos:
		return 4
	case synthQSize, synthQColor:
		return 3
	}
	return 2
}

// synthPick chooses k of the candidates: each pick is closed with
// probability synthClosedShare (open if no closed one is left, and the
// other way round), of a question type drawn by synthTypeWeight among those
// left, so that the type mix does not follow how many questions each type
// has (an abdomen has six presence questions and one modality question).
func synthPick(rng *rand.Rand, cands []synthQA, k int) []synthQA {
	pool := slices.Clone(cands)
	var out []synthQA
	for len(out) < k && len(pool) > 0 {
		closed := rng.Float64() < synthClosedShare
		if !slices.ContainsFunc(pool, func(q synthQA) bool { return q.closed == closed }) {
			closed = !closed
		}
		var types []string
		total := 0
		for _, t := range SynthQuestionTypes() {
			if slices.ContainsFunc(pool, func(q synthQA) bool { return q.closed == closed && q.qtype == t }) {
				types = append(types, t)
				total += synthTypeWeight(t)
			}
		}
		t, w := types[0], rng.IntN(total)
		for _, c := range types {
			if w -= synthTypeWeight(c); w < 0 {
				t = c
				break
			}
		}
		var idx []int
		for j, q := range pool {
			if q.closed == closed && q.qtype == t {
				idx = append(idx, j)
			}
		}
		j := idx[rng.IntN(len(idx))]
		out = append(out, pool[j])
		pool = slices.Delete(pool, j, j+1)
	}
	return out
}

// ---- files ----

// synthItemJSON is an item as MUMC's VQA-RAD files hold it (VQA-RAD's
// field names, a numeric qid).
type synthItemJSON struct {
	QID          int    `json:"qid"`
	ImageName    string `json:"image_name"`
	ImageOrgan   string `json:"image_organ"`
	Answer       string `json:"answer"`
	AnswerType   string `json:"answer_type"`
	QuestionType string `json:"question_type"`
	Question     string `json:"question"`
}

// synthCaptionJSON is a pre-training pair as ALBEF's files hold it.
type synthCaptionJSON struct {
	Image   string `json:"image"`
	Caption string `json:"caption"`
}

// Write saves the set under dir: images/<name>.png (8-bit greyscale),
// trainset.json, valset.json and testset.json (MUMC's item format),
// answer_list.json (every split's answers), captions.json (the pre-training
// pairs) and README.txt. Items and captions name images by their file name
// inside images/, the image root to read them with.
func (s *SynthSet) Write(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return err
	}
	for _, im := range s.Images {
		if err := synthWritePNG(filepath.Join(dir, "images", im.File()), im.Pixels, s.Opt.Size); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name  string
		items []Item
	}{{"trainset.json", s.Train}, {"valset.json", s.Val}, {"testset.json", s.Test}} {
		recs := make([]synthItemJSON, 0, len(f.items))
		for _, it := range f.items {
			qid, err := strconv.Atoi(it.QID)
			if err != nil {
				return fmt.Errorf("vqa: synth: %s: qid %q is not a number", f.name, it.QID)
			}
			recs = append(recs, synthItemJSON{qid, it.Image, it.Organ, it.Answer, it.AnswerType, it.QuestionType, it.Question})
		}
		if err := synthWriteJSON(filepath.Join(dir, f.name), recs); err != nil {
			return err
		}
	}
	if err := synthWriteJSON(filepath.Join(dir, "answer_list.json"), s.Answers); err != nil {
		return err
	}
	caps := []synthCaptionJSON{}
	for _, c := range s.Captions {
		for _, t := range c.Captions {
			caps = append(caps, synthCaptionJSON{c.Image, t})
		}
	}
	if err := synthWriteJSON(filepath.Join(dir, "captions.json"), caps); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "README.txt"), []byte(s.readme()), 0o644)
}

// WriteImageFolder writes the images an image encoder may pre-train on
// (the training and caption-only ones, never a test image) as an
// ImageNet-style folder, dir/train/scan/*.png, with the validation
// images in dir/val/scan/: the layout mae.pretrain reads (data.kind =
// "folder"), for the MAE-initialised image encoder of the experiment.
func (s *SynthSet) WriteImageFolder(dir string) error {
	for _, split := range []string{"train", "val"} {
		if err := os.MkdirAll(filepath.Join(dir, split, "scan"), 0o755); err != nil {
			return err
		}
	}
	for _, im := range s.Images {
		split := ""
		switch im.Split {
		case SynthTrain, SynthExtra:
			split = "train"
		case SynthVal:
			split = "val"
		default:
			continue
		}
		if err := synthWritePNG(filepath.Join(dir, split, "scan", im.File()), im.Pixels, s.Opt.Size); err != nil {
			return err
		}
	}
	return nil
}

func synthWritePNG(path string, pix []uint8, size int) error {
	g := image.NewGray(image.Rect(0, 0, size, size))
	copy(g.Pix, pix)
	var b bytes.Buffer
	if err := png.Encode(&b, g); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func synthWriteJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// synthClosedFraction is the fraction of items that are closed.
func synthClosedFraction(items []Item) float64 {
	if len(items) == 0 {
		return 0
	}
	n := 0
	for _, it := range items {
		if it.AnswerType == "CLOSED" {
			n++
		}
	}
	return float64(n) / float64(len(items))
}

// readme describes the generator and the held-out sites.
func (s *SynthSet) readme() string {
	o := s.Opt
	var b strings.Builder
	fmt.Fprintf(&b, "Synthetic radiology-style VQA data (github.com/reprolab/repro/vqa, synth.go)\n\n")
	fmt.Fprintf(&b, "Options: size %d px, train %d, val %d, test %d, pre-training extra %d images, %d questions per image, seed %d.\n\n",
		o.Size, o.Train, o.Val, o.Test, o.PretrainExtra, o.QuestionsPerImage, o.Seed)
	b.WriteString(`Each image is a greyscale "scan" of a body region (head, chest, abdomen)
in a plane (axial, coronal, sagittal; the chest only axial or coronal)
and a modality (ct, mri, x-ray), drawn as shapes: body outline, skull,
spine and the organs brain, lungs, heart, liver and kidneys. The region
and plane set which organs appear and where; the modality sets each
tissue's grey level and the texture (ct: fine grain; mri: dark bone,
bright fluid, a bias field and Rician noise; x-ray: bright, blurred).
An image has 0-3 lesions, disks inside organs, small or large, brighter
or darker than their organ by 45-70 grey levels, on the left or right
and in the upper or lower part of it. Sides are the viewer's: the "left
kidney" is the one on the image's left.

Files: images/<name>.png; trainset.json, valset.json, testset.json
(qid, image_name inside images/, image_organ HEAD/CHEST/ABD, answer,
answer_type OPEN/CLOSED, question_type PRES/POS/COUNT/SIZE/COLOR/
MODALITY/PLANE/ORGAN, question); answer_list.json (every split's
answers, sorted); captions.json (pre-training pairs, train and extra
images, {"image": file name inside images/, "caption": text}). Use
images/ as the image root for both. Closed questions are the yes/no
ones.

Held-out lesion sites (composition needed to answer on the test set):
no lesion is drawn at these sites in train, val or pre-training images,
although the organ has lesions on its other side and other organs have
lesions on this side. Test images draw lesions freely, and
`)
	fmt.Fprintf(&b, "every %dth test image (index 0, %d, %d, ...) has one at a held-out site,\nthe sites in turn:\n", synthHeldOutEvery, synthHeldOutEvery, 2*synthHeldOutEvery)
	for _, h := range s.HeldOut {
		fmt.Fprintf(&b, "  - %s\n", h)
	}
	fmt.Fprintf(&b, "\nQuestions: train %d, val %d, test %d; closed share %.3f, %.3f, %.3f. Answers: %d.\n",
		len(s.Train), len(s.Val), len(s.Test), synthClosedFraction(s.Train), synthClosedFraction(s.Val), synthClosedFraction(s.Test), len(s.Answers))
	return b.String()
}
