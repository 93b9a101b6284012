package cocoop

import (
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writePNG writes a rendered one-object image of class, w x h pixels
// (another size than the CLIP's, so the transforms resize and crop).
func writePNG(t *testing.T, path string, class Object, w, h int, seed uint64) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	o := tinyScenes()
	o.Size = max(w, h)
	img := o.ClassImage(class, rand.New(rand.NewPCG(seed, 1))).SubImage(image.Rect(0, 0, w, h))
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, png.Encode(f, img))
	require.NoError(t, f.Close())
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
}

// splitZhouFolder writes dataset name's folder under root as DATASETS.md
// lays it out: images under its image folder and split_zhou_<name>.json
// listing perSplit images per class for train, val and test.
func splitZhouFolder(t *testing.T, root, name string, classes []Object, perSplit int) {
	t.Helper()
	s := splitZhouDatasets[name]
	dir := filepath.Join(root, s.dir)
	split := map[string][][3]any{}
	for _, sp := range []string{"train", "val", "test"} {
		split[sp] = [][3]any{}
		for y, c := range classes {
			for i := range perSplit {
				rel := fmt.Sprintf("%s/%s_%d.png", strings.ReplaceAll(c.Name(), " ", "_"), sp, i)
				writePNG(t, filepath.Join(dir, s.images, rel), c, 20, 24, uint64(100*y+i))
				split[sp] = append(split[sp], [3]any{rel, y, c.Name()})
			}
		}
	}
	b, err := json.Marshal(split)
	require.NoError(t, err)
	writeFile(t, filepath.Join(dir, s.split), string(b))
}

var fourClasses = []Object{{Colour: "red", Texture: "plain", Shape: "circle"}, {Colour: "blue", Texture: "striped", Shape: "square"},
	{Colour: "red", Texture: "striped", Shape: "square"}, {Colour: "blue", Texture: "plain", Shape: "circle"}}

func TestReadSplitZhou(t *testing.T) {
	root := t.TempDir()
	splitZhouFolder(t, root, "OxfordPets", fourClasses, 2)
	ds, err := ReadDataset("OxfordPets", root)
	require.NoError(t, err)
	assert.Len(t, ds.Train, 8)
	assert.Len(t, ds.Val, 8)
	assert.Len(t, ds.Test, 8)
	assert.Equal(t, filepath.Join(root, "oxford_pets", "images", "blue_striped_square", "test_1.png"), ds.Test[3].ImPath)
	assert.Equal(t, 1, ds.Test[3].Label)
	assert.Equal(t, "blue striped square", ds.Test[3].ClassName)
	names, err := ClassNames(ds.Train)
	require.NoError(t, err)
	assert.Equal(t, []string{"red circle", "blue striped square", "red striped square", "blue circle"}, names)
	img, err := LoadImage(ds.Test[3])
	require.NoError(t, err)
	assert.Equal(t, image.Rect(0, 0, 20, 24), img.Bounds())

	// StanfordCars' paths are relative to the dataset folder itself.
	splitZhouFolder(t, root, "StanfordCars", fourClasses[:1], 1)
	cars, err := ReadDataset("StanfordCars", root)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "stanford_cars", "red_circle", "train_0.png"), cars.Train[0].ImPath)

	_, err = ReadDataset("DescribableTextures", root)
	assert.ErrorContains(t, err, "split_zhou_DescribableTextures.json is missing: download it as CoOp's DATASETS.md says")
	writeFile(t, filepath.Join(root, "dtd", "split_zhou_DescribableTextures.json"), `{"train": [["a.jpg", 0, "banded"], ["b.jpg", 1.5, "x"]], "val": [], "test": []}`)
	_, err = ReadDataset("DescribableTextures", root)
	assert.ErrorContains(t, err, "train[1] is not [impath, label, classname]")
	writeFile(t, filepath.Join(root, "dtd", "split_zhou_DescribableTextures.json"), `{"train": [], "val": []}`)
	_, err = ReadDataset("DescribableTextures", root)
	assert.ErrorContains(t, err, `no "test" list`)
	_, err = ReadDataset("Imagenet", root)
	assert.ErrorContains(t, err, `unknown dataset "Imagenet"`)
}

// imageNetFolder writes ImageNet's layout: classnames.txt and
// images/{train,val}/<wnid>/, with a hidden file the reader skips.
func imageNetFolder(t *testing.T, dir string, classes []Object, train, val int) {
	t.Helper()
	var lines []string
	for y, c := range classes {
		wnid := fmt.Sprintf("n%08d", 9-y) // folder order is not the classnames.txt order
		lines = append(lines, wnid+" "+c.Name())
		for i := range train {
			writePNG(t, filepath.Join(dir, "images", "train", wnid, fmt.Sprintf("%s_%d.png", wnid, i)), c, 20, 18, uint64(y*10+i))
		}
		for i := range val {
			writePNG(t, filepath.Join(dir, "images", "val", wnid, fmt.Sprintf("val_%d.png", i)), c, 18, 20, uint64(y*10+i+5))
		}
	}
	writeFile(t, filepath.Join(dir, "images", "train", ".DS_Store"), "x")
	writeFile(t, filepath.Join(dir, "images", "train", lineWnid(lines[0]), ".hidden.png"), "x")
	writeFile(t, filepath.Join(dir, "classnames.txt"), strings.Join(lines, "\n")+"\n")
}

func lineWnid(line string) string { return strings.Fields(line)[0] }

func TestReadImageNetLayouts(t *testing.T) {
	root := t.TempDir()
	imageNetFolder(t, filepath.Join(root, "imagenet"), fourClasses[:3], 3, 2)
	ds, err := ReadDataset("ImageNet", root)
	require.NoError(t, err)
	assert.Len(t, ds.Train, 9)
	assert.Len(t, ds.Test, 6)
	// Labels follow the sorted folders: n00000007 (the third class) is label 0.
	assert.Equal(t, "red striped square", ds.Train[0].ClassName)
	assert.Equal(t, 0, ds.Train[0].Label)
	assert.Equal(t, filepath.Join(root, "imagenet", "images", "train", "n00000007", "n00000007_0.png"), ds.Train[0].ImPath)
	assert.Equal(t, "red circle", ds.Test[5].ClassName)
	assert.Equal(t, 2, ds.Test[5].Label)
	assert.Equal(t, ds.Test, ds.Val, "the val set is the test set")

	writeFile(t, filepath.Join(root, "imagenet", "classnames.txt"), "n00000009 red circle\n")
	_, err = ReadDataset("ImageNet", root)
	assert.ErrorContains(t, err, `folder "n00000007" has no line in classnames.txt`)
	_, err = ReadDataset("ImageNetSketch", root)
	assert.ErrorContains(t, err, "classnames.txt is missing")

	// The variants: Sketch, A and R are class folders; V2 numbers them.
	sk := filepath.Join(root, "imagenet-sketch")
	writeFile(t, filepath.Join(sk, "classnames.txt"), "n00000009 red circle\nn00000008 blue striped square\n")
	for _, w := range []string{"n00000009", "n00000008"} {
		writePNG(t, filepath.Join(sk, "images", w, "s.png"), fourClasses[0], 16, 16, 1)
	}
	sketch, err := ReadDataset("ImageNetSketch", root)
	require.NoError(t, err)
	assert.True(t, sketch.TestOnly)
	assert.Equal(t, []string{"blue striped square", "red circle"}, []string{sketch.Test[0].ClassName, sketch.Test[1].ClassName})

	v2 := filepath.Join(root, "imagenetv2")
	writeFile(t, filepath.Join(v2, "classnames.txt"), "n1 red circle\nn2 blue square\n")
	writePNG(t, filepath.Join(v2, "imagenetv2-matched-frequency-format-val", "1", "a.png"), fourClasses[1], 16, 16, 2)
	writePNG(t, filepath.Join(v2, "imagenetv2-matched-frequency-format-val", "0", "b.png"), fourClasses[0], 16, 16, 3)
	in2, err := ReadDataset("ImageNetV2", root)
	require.NoError(t, err)
	require.Len(t, in2.Test, 2)
	assert.Equal(t, Datum{ImPath: filepath.Join(v2, "imagenetv2-matched-frequency-format-val", "1", "a.png"), Label: 1, ClassName: "blue square"}, in2.Test[1])
}

func TestReadAircraft(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "fgvc_aircraft")
	writeFile(t, filepath.Join(dir, "variants.txt"), "707-320\nA300B4\n")
	writeFile(t, filepath.Join(dir, "images_variant_train.txt"), "0034309 A300B4\n0034958 707-320\n")
	writeFile(t, filepath.Join(dir, "images_variant_val.txt"), "")
	writeFile(t, filepath.Join(dir, "images_variant_test.txt"), "1 707-320\n2 Boeing 747\n")
	_, err := ReadDataset("FGVCAircraft", root)
	assert.ErrorContains(t, err, `images_variant_test.txt:2: want "<image id> <variant of variants.txt>"`)
	writeFile(t, filepath.Join(dir, "images_variant_test.txt"), "1 707-320\n")
	ds, err := ReadDataset("FGVCAircraft", root)
	require.NoError(t, err)
	assert.Equal(t, Datum{ImPath: filepath.Join(dir, "images", "0034309.jpg"), Label: 1, ClassName: "A300B4"}, ds.Train[0])
	assert.Len(t, ds.Test, 1)
}

// The cross-dataset protocol on folders: CoOp trained on every class of
// an OxfordPets-layout folder (images of other sizes, random resized
// crops), then tested on its own test split and on a DTD-layout folder and
// an ImageNet-Sketch-layout folder of other classes, the learner rebuilt
// for each.
func TestCrossDatasetOnFolders(t *testing.T) {
	dir := t.TempDir()
	clipRun := filepath.Join(dir, "clip")
	tinyPretrain(t, clipRun, false)
	root := filepath.Join(dir, "data")
	splitZhouFolder(t, root, "OxfordPets", fourClasses, 2)
	splitZhouFolder(t, root, "DescribableTextures", fourClasses[1:], 1)
	sk := filepath.Join(root, "imagenet-sketch")
	writeFile(t, filepath.Join(sk, "classnames.txt"), "n1 red square\nn2 blue circle\n")
	writePNG(t, filepath.Join(sk, "images", "n1", "a.png"), Object{Colour: "red", Texture: "plain", Shape: "square"}, 30, 16, 4)
	writePNG(t, filepath.Join(sk, "images", "n2", "a.png"), fourClasses[3], 16, 30, 5)

	c := DefaultCoOp()
	c.CLIP.Path = clipRun
	c.Data.Dataset, c.Data.Root, c.Data.Protocol, c.Data.Shots, c.Data.Batch, c.Data.Workers, c.Data.TestBatch = "OxfordPets", root, ProtocolAll, 2, 4, 1, 3
	c.Data.Eval = []EvalTarget{{Dataset: "DescribableTextures"}, {Dataset: "ImageNetSketch", Root: root}}
	c.Trainer.Epochs = 1
	require.NoError(t, c.Validate())
	r, err := CoOpTask.Start(c, filepath.Join(dir, "run"), false, io.Discard)
	require.NoError(t, err)
	require.NotNil(t, r.Accuracy)
	assert.Nil(t, r.BaseAccuracy)
	assert.Equal(t, 8, r.Tests["all"].Items)
	assert.Equal(t, []string{"blue striped square", "red striped square", "blue circle"}, r.Tests["cross:DescribableTextures"].Classes)
	assert.Equal(t, 3, r.Tests["cross:DescribableTextures"].Items)
	assert.Equal(t, []string{"red square", "blue circle"}, r.Tests["cross:ImageNetSketch"].Classes)
	assert.Len(t, r.Cross, 2)
	assert.Equal(t, int64(2), r.Steps, "8 images in batches of 4, one epoch")
}
