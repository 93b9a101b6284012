package cocoop

import (
	"fmt"
	"hash/fnv"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/reprolab/repro/internal/config"
)

// This file is the generated data of the experiment that runs here, where
// no CLIP weights and none of the paper's datasets can be fetched: small
// rendered scenes of a few objects (shape x colour x texture x size x
// position) with captions from several templates, to pre-train a tiny CLIP
// on (pretrain.go), and labelled one-object images of compositions such as
// "red striped circle", the classes the prompt learners are trained and
// tested on (the "Scenes" dataset of datasets.go).

// Palette is the colours objects can take, by name.
var Palette = map[string]color.RGBA{
	"red": {220, 40, 40, 255}, "green": {40, 180, 60, 255}, "blue": {50, 90, 230, 255}, "yellow": {230, 210, 40, 255},
	"purple": {150, 60, 200, 255}, "orange": {240, 140, 30, 255}, "cyan": {40, 200, 210, 255}, "white": {235, 235, 235, 255},
	"pink": {240, 120, 180, 255}, "brown": {140, 90, 40, 255},
}

// Textures are the surface patterns; "plain" is unnamed in captions and
// class names ("red circle"), the others named ("red striped circle").
var Textures = []string{"plain", "striped", "checkered", "dotted"}

// Shapes are the outlines objects can take.
var Shapes = []string{"circle", "square", "triangle", "diamond", "cross"}

// SceneOptions configures the generator. The colours, textures and shapes
// listed are those scenes are drawn from (pre-training) and whose
// compositions are the classes (prompt learning).
type SceneOptions struct {
	Size       int      `toml:"size"`        // image side in pixels
	Colours    []string `toml:"colours"`     // from Palette
	Textures   []string `toml:"textures"`    // from Textures
	Shapes     []string `toml:"shapes"`      // from Shapes
	MaxObjects int      `toml:"max_objects"` // a pre-training scene has 1..max_objects objects
	Noise      float64  `toml:"noise"`       // per-pixel Gaussian noise, std on the 0..1 scale
}

// DefaultScenes is a small setting: 32-pixel scenes of up to three objects.
func DefaultScenes() SceneOptions {
	return SceneOptions{Size: 32, Colours: []string{"red", "green", "blue", "yellow", "purple", "orange"},
		Textures: []string{"plain", "striped", "checkered"}, Shapes: []string{"circle", "square", "triangle", "cross"},
		MaxObjects: 3, Noise: 0.03}
}

// Validate checks the options, naming keys under prefix ("scenes").
func (o SceneOptions) Validate(prefix string) error {
	if o.Size < 16 || o.Size > 512 {
		return config.Field(prefix+".size", "must be in [16, 512] pixels, got %d", o.Size)
	}
	if o.MaxObjects < 1 || o.MaxObjects > 3 {
		return config.Field(prefix+".max_objects", "must be 1, 2 or 3, got %d", o.MaxObjects)
	}
	if !(o.Noise >= 0 && o.Noise <= 0.5) {
		return config.Field(prefix+".noise", "must be in [0, 0.5], got %v", o.Noise)
	}
	for _, l := range []struct {
		key   string
		got   []string
		known []string
	}{{"colours", o.Colours, paletteNames()}, {"textures", o.Textures, Textures}, {"shapes", o.Shapes, Shapes}} {
		if len(l.got) == 0 {
			return config.Field(prefix+"."+l.key, "must list at least one of %v", l.known)
		}
		for i, v := range l.got {
			if !slices.Contains(l.known, v) || slices.Index(l.got, v) != i {
				return config.Field(prefix+"."+l.key, "%q is unknown or listed twice (known: %v)", v, l.known)
			}
		}
	}
	return nil
}

func paletteNames() []string {
	var out []string
	for k := range Palette {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Object is one object of a scene: its attributes, whether it is large,
// and its centre and radius in pixels.
type Object struct {
	Colour, Texture, Shape string
	Large                  bool
	X, Y, R                float64
}

// Name is the object's composition, the class name: colour, texture
// unless plain, shape.
func (ob Object) Name() string {
	if ob.Texture == "plain" {
		return ob.Colour + " " + ob.Shape
	}
	return ob.Colour + " " + ob.Texture + " " + ob.Shape
}

// phrase is how a caption names the object: its name, after its size half
// of the time.
func (ob Object) phrase(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		return ob.Name()
	}
	if ob.Large {
		return "large " + ob.Name()
	}
	return "small " + ob.Name()
}

// radius is a small or large object's radius in an image of side size.
func radius(size int, large bool) float64 {
	if large {
		return 0.24 * float64(size)
	}
	return 0.16 * float64(size)
}

// placeObjects gives each object a size and a centre inside the image, not
// overlapping those placed before; an object that finds no place in 50
// tries is dropped (the first always fits).
func placeObjects(objs []Object, size int, rng *rand.Rand) []Object {
	var out []Object
	for _, ob := range objs {
		ob.Large = rng.IntN(2) == 0
		ob.R = radius(size, ob.Large)
		for range 50 {
			lo, hi := ob.R+1, float64(size)-ob.R-1
			ob.X, ob.Y = lo+rng.Float64()*(hi-lo), lo+rng.Float64()*(hi-lo)
			free := true
			for _, o := range out {
				if math.Hypot(o.X-ob.X, o.Y-ob.Y) < o.R+ob.R+1 {
					free = false
					break
				}
			}
			if free {
				out = append(out, ob)
				break
			}
		}
	}
	return out
}

// randomObject draws an object's attributes from the options' lists.
func (o SceneOptions) randomObject(rng *rand.Rand) Object {
	return Object{Colour: o.Colours[rng.IntN(len(o.Colours))], Texture: o.Textures[rng.IntN(len(o.Textures))], Shape: o.Shapes[rng.IntN(len(o.Shapes))]}
}

// RandomScene draws a pre-training scene: 1..MaxObjects objects, rendered.
func (o SceneOptions) RandomScene(rng *rand.Rand) ([]Object, *image.RGBA) {
	n := 1 + rng.IntN(o.MaxObjects)
	objs := make([]Object, n)
	for i := range objs {
		objs[i] = o.randomObject(rng)
	}
	objs = placeObjects(objs, o.Size, rng)
	return objs, Render(objs, o.Size, o.Noise, rng)
}

// Twin is objs with one attribute of one object changed to another of the
// options' values, every position and size kept: a hard negative for the
// contrastive loss, which a scene and its twin in one batch can only tell
// apart by that attribute. With random scenes alone, colour and texture
// separate a batch's captions so well that a small CLIP learns them and
// not the shapes (zero-shot shape accuracy stayed at chance in a trial),
// so the shape is the attribute changed half the time, colour and
// texture a quarter each. An attribute with a single value is not
// changed; if none has two, objs come back as they are.
func (o SceneOptions) Twin(objs []Object, rng *rand.Rand) []Object {
	out := slices.Clone(objs)
	i := rng.IntN(len(out))
	lists := [][]string{o.Colours, o.Textures, o.Shapes}
	for range 3 {
		a := [4]int{0, 1, 2, 2}[rng.IntN(4)]
		if len(lists[a]) < 2 {
			continue
		}
		field := [3]*string{&out[i].Colour, &out[i].Texture, &out[i].Shape}[a]
		v := lists[a][rng.IntN(len(lists[a])-1)]
		if v == *field {
			v = lists[a][len(lists[a])-1] // the one value the draw above leaves out
		}
		*field = v
		return out
	}
	return out
}

// ClassImage renders one object of the composition class (Object.Name's
// form), of a random size and position.
func (o SceneOptions) ClassImage(class Object, rng *rand.Rand) *image.RGBA {
	objs := placeObjects([]Object{class}, o.Size, rng)
	return Render(objs, o.Size, o.Noise, rng)
}

// Classes are the compositions of the listed colours, textures and shapes,
// as Objects, sorted by name (the order that gives the labels, and so the
// base-to-new split).
func (o SceneOptions) Classes() []Object {
	var out []Object
	for _, c := range o.Colours {
		for _, t := range o.Textures {
			for _, s := range o.Shapes {
				out = append(out, Object{Colour: c, Texture: t, Shape: s})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// Render draws objects on a dark background with Gaussian pixel noise.
func Render(objs []Object, size int, noise float64, rng *rand.Rand) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	bg := 20 + rng.Float64()*25
	for y := range size {
		for x := range size {
			r, g, b := bg, bg, bg
			for _, ob := range objs {
				if inside(ob, float64(x)+0.5, float64(y)+0.5) {
					c := Palette[ob.Colour]
					f := shade(ob.Texture, x, y)
					r, g, b = f*float64(c.R), f*float64(c.G), f*float64(c.B)
				}
			}
			n := func(v float64) uint8 {
				return uint8(math.Max(0, math.Min(255, math.Round(v+255*noise*rng.NormFloat64()))))
			}
			img.SetRGBA(x, y, color.RGBA{n(r), n(g), n(b), 255})
		}
	}
	return img
}

// inside says whether the pixel centre (px, py) is in the object's shape.
func inside(ob Object, px, py float64) bool {
	dx, dy, r := px-ob.X, py-ob.Y, ob.R
	switch ob.Shape {
	case "circle":
		return dx*dx+dy*dy <= r*r
	case "square":
		return math.Abs(dx) <= 0.85*r && math.Abs(dy) <= 0.85*r
	case "triangle": // apex up
		return dy >= -r && dy <= 0.8*r && math.Abs(dx) <= (dy+r)/1.8
	case "diamond":
		return math.Abs(dx)+math.Abs(dy) <= r
	case "cross":
		return (math.Abs(dx) <= r/3 && math.Abs(dy) <= r) || (math.Abs(dy) <= r/3 && math.Abs(dx) <= r)
	}
	panic(fmt.Sprintf("scenes: unknown shape %q", ob.Shape))
}

// shade is the texture's brightness factor at pixel (x, y): 1, or 0.5 on
// the pattern's dark cells (2-pixel stripes and checks, dots every 4), so
// that the outline stays visible.
func shade(texture string, x, y int) float64 {
	dark := false
	switch texture {
	case "striped":
		dark = (y/2)%2 == 1
	case "checkered":
		dark = (x/2+y/2)%2 == 1
	case "dotted":
		dark = x%4 == 1 && y%4 == 1
	}
	if dark {
		return 0.5
	}
	return 1
}

// location is where an object is, in caption words.
func location(ob Object, size int) string {
	c := float64(size) / 2
	dx, dy := ob.X-c, ob.Y-c
	switch {
	case math.Abs(dx) < float64(size)/8 && math.Abs(dy) < float64(size)/8:
		return "in the middle"
	case math.Abs(dx) >= math.Abs(dy) && dx < 0:
		return "on the left"
	case math.Abs(dx) >= math.Abs(dy):
		return "on the right"
	case dy < 0:
		return "at the top"
	}
	return "at the bottom"
}

// relation is where a is relative to b, in caption words.
func relation(a, b Object) string {
	dx, dy := a.X-b.X, a.Y-b.Y
	switch {
	case math.Abs(dx) >= math.Abs(dy) && dx < 0:
		return "to the left of"
	case math.Abs(dx) >= math.Abs(dy):
		return "to the right of"
	case dy < 0:
		return "above"
	}
	return "below"
}

// Caption describes a scene with one of several templates for its number
// of objects, naming the objects in a random order.
func Caption(objs []Object, size int, rng *rand.Rand) string {
	objs = slices.Clone(objs)
	rng.Shuffle(len(objs), func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
	p := make([]string, len(objs))
	for i, ob := range objs {
		p[i] = ob.phrase(rng)
	}
	switch len(objs) {
	case 1:
		loc := location(objs[0], size)
		return []string{
			"a photo of a " + p[0] + ".",
			"a " + p[0] + ".",
			"a " + p[0] + " " + loc + ".",
			"a picture of a " + p[0] + ".",
			"there is a " + p[0] + " " + loc + ".",
		}[rng.IntN(5)]
	case 2:
		return []string{
			"a " + p[0] + " and a " + p[1] + ".",
			"a photo of a " + p[0] + " and a " + p[1] + ".",
			"a " + p[0] + " " + relation(objs[0], objs[1]) + " a " + p[1] + ".",
		}[rng.IntN(3)]
	}
	return []string{
		"a " + p[0] + ", a " + p[1] + " and a " + p[2] + ".",
		"a photo of a " + p[0] + ", a " + p[1] + " and a " + p[2] + ".",
	}[rng.IntN(2)]
}

// captionWords are the words of the templates, locations and relations.
var captionWords = strings.Fields("a photo of picture there is and on the left right at top bottom in middle to above below small large . ,")

// SceneVocabulary is every word a caption of these options can hold, plus
// "x", the context placeholder of CoOp's randomly initialised prompts
// ("X X X X red circle."): the word tokenizer's vocabulary.
func (o SceneOptions) SceneVocabulary() []string {
	words := append(slices.Clone(captionWords), "x")
	words = append(words, o.Colours...)
	for _, t := range o.Textures {
		if t != "plain" {
			words = append(words, t)
		}
	}
	return append(words, o.Shapes...)
}

// sceneSeed derives a generator for image i of a split and class from the
// data seed, so every image is the same whatever order they are made in.
func sceneSeed(seed int64, split string, class, i int) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d/%d", split, class, i)
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}

// SceneDataset is the labelled "Scenes" dataset: trainPerClass and
// testPerClass one-object images of every class, labels in the sorted
// class order, items grouped by class as a split file lists them. The
// images depend on seed only.
func (o SceneOptions) SceneDataset(seed int64, trainPerClass, testPerClass int) (train, test []Datum) {
	for y, c := range o.Classes() {
		for i := range trainPerClass {
			train = append(train, Datum{ImPath: fmt.Sprintf("scenes/train/%s/%d", c.Name(), i), Label: y, ClassName: c.Name(),
				Image: o.ClassImage(c, sceneSeed(seed, "train", y, i))})
		}
		for i := range testPerClass {
			test = append(test, Datum{ImPath: fmt.Sprintf("scenes/test/%s/%d", c.Name(), i), Label: y, ClassName: c.Name(),
				Image: o.ClassImage(c, sceneSeed(seed, "test", y, i))})
		}
	}
	return train, test
}
