package cocoop

import (
	"image"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/torchmods"
)

// Every caption the generator writes tokenizes with its vocabulary within
// the tiny CLIP's context of 24, and every scene holds 1 to max_objects
// objects inside the image, none overlapping.
func TestSceneCaptionsFitTheVocabulary(t *testing.T) {
	o := DefaultScenes()
	tok, err := NewWordTokenizer(o.SceneVocabulary())
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[int]int{}
	for range 2000 {
		objs, img := o.RandomScene(rng)
		require.Equal(t, image.Rect(0, 0, 32, 32), img.Bounds())
		counts[len(objs)]++
		for i, a := range objs {
			assert.True(t, a.X-a.R >= 0 && a.X+a.R <= 32 && a.Y-a.R >= 0 && a.Y+a.R <= 32, "inside the image")
			for _, b := range objs[i+1:] {
				assert.Greater(t, (a.X-b.X)*(a.X-b.X)+(a.Y-b.Y)*(a.Y-b.Y), (a.R+b.R)*(a.R+b.R), "no overlap")
			}
		}
		c := Caption(objs, o.Size, rng)
		_, err := tok.Tokenize([]string{c}, 24)
		require.NoError(t, err, c)
	}
	assert.Len(t, counts, 3, "1, 2 and 3 objects all occur")
	// The prompts the tasks build fit too.
	for _, cl := range o.Classes() {
		_, err := tok.Tokenize([]string{"a photo of a " + cl.Name() + ".", "X X X X X X X X X X X X X X X X " + cl.Name() + "."}, 24)
		require.NoError(t, err)
	}
}

// The classes are the sorted compositions; a class image shows its
// colour (at full or texture-darkened brightness) and nothing else but
// background; the dataset is the same for the same seed.
func TestSceneClassesAndDataset(t *testing.T) {
	o := tinyScenes()
	var names []string
	for _, c := range o.Classes() {
		names = append(names, c.Name())
	}
	assert.Equal(t, []string{"blue circle", "blue square", "blue striped circle", "blue striped square",
		"red circle", "red square", "red striped circle", "red striped square"}, names)
	assert.True(t, sort.StringsAreSorted(names))
	o.Noise = 0
	img := o.ClassImage(Object{Colour: "red", Texture: "plain", Shape: "square"}, rand.New(rand.NewPCG(1, 1)))
	red := 0
	for y := range 32 {
		for x := range 32 {
			c := img.RGBAAt(x, y)
			if c == Palette["red"] {
				red++
			} else {
				assert.True(t, c.R == c.G && c.G == c.B && c.R < 50, "background at %d,%d: %v", x, y, c)
			}
		}
	}
	assert.Greater(t, red, 10)

	a, at := tinyScenes().SceneDataset(5, 3, 2)
	b, bt := tinyScenes().SceneDataset(5, 3, 2)
	c, _ := tinyScenes().SceneDataset(6, 3, 2)
	require.Len(t, a, 24)
	require.Len(t, at, 16)
	assert.Equal(t, a, b)
	assert.Equal(t, at, bt)
	assert.NotEqual(t, a[0].Image, c[0].Image)
	assert.Equal(t, 7, a[23].Label)
	assert.Equal(t, "red striped square", a[23].ClassName)
}

// The transforms: an image of the CLIP's size is taken as it is for
// testing; another size has its shorter side resized and is centre
// cropped (as torchmods.CLIPPreprocess, with the configured mean and
// std); training without a random crop resizes to the square and may flip.
func TestTransforms(t *testing.T) {
	o := tinyScenes()
	img := o.ClassImage(o.Classes()[0], rand.New(rand.NewPCG(1, 1)))
	tf := Transform{Size: 32, Transforms: []string{TransformRandomFlip, TransformNormalize}, Scale: [2]float64{0.08, 1},
		Mean: f32x3(CLIPPixelMean), Std: f32x3(CLIPPixelStd)}
	x, err := tf.Test(img)
	require.NoError(t, err)
	require.Len(t, x, 3*32*32)
	p := img.RGBAAt(5, 7)
	assert.InDelta(t, (float64(p.R)/255-CLIPPixelMean[0])/CLIPPixelStd[0], x[7*32+5], 1e-5)
	assert.InDelta(t, (float64(p.B)/255-CLIPPixelMean[2])/CLIPPixelStd[2], x[2*1024+7*32+5], 1e-5)
	wide := o.ClassImage(o.Classes()[3], rand.New(rand.NewPCG(2, 1))).SubImage(image.Rect(0, 0, 40, 23))
	y, err := tf.Test(wide)
	require.NoError(t, err)
	want, err := torchmods.CLIPPreprocess(wide, 32)
	require.NoError(t, err)
	assert.Equal(t, want, y, "CLIP's own preprocessing")
	flipped := 0
	for i := range 20 {
		y := tf.Train(img, rand.New(rand.NewPCG(uint64(i), 0)))
		if y[7*32+26] == x[7*32+5] && y[7*32+5] == x[7*32+26] && x[7*32+5] != x[7*32+26] {
			flipped++
		}
	}
	assert.Greater(t, flipped, 0, "some training images are flipped")
	tf.Transforms = append(tf.Transforms, TransformRandomResizedCrop)
	assert.Len(t, tf.Train(wide, rand.New(rand.NewPCG(1, 0))), 3*32*32)
}

// A twin differs from its scene in exactly one attribute of one object,
// each of colour, texture and shape being the one changed sometimes.
func TestSceneTwinChangesOneAttribute(t *testing.T) {
	o := DefaultScenes()
	rng := rand.New(rand.NewPCG(3, 4))
	changed := map[string]int{}
	for range 300 {
		objs, _ := o.RandomScene(rng)
		tw := o.Twin(objs, rng)
		require.Len(t, tw, len(objs))
		diffs := 0
		for i := range objs {
			a, b := objs[i], tw[i]
			assert.Equal(t, [4]float64{a.X, a.Y, a.R, map[bool]float64{true: 1}[a.Large]}, [4]float64{b.X, b.Y, b.R, map[bool]float64{true: 1}[b.Large]})
			for name, d := range map[string]bool{"colour": a.Colour != b.Colour, "texture": a.Texture != b.Texture, "shape": a.Shape != b.Shape} {
				if d {
					diffs++
					changed[name]++
				}
			}
		}
		assert.Equal(t, 1, diffs)
	}
	assert.Len(t, changed, 3)
}
