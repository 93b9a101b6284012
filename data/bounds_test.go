package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pngHeader is the start of a PNG claiming w x h 8-bit grey pixels: a valid
// signature and IHDR, then an IDAT of a few bytes. A decoder that trusts
// the header allocates w*h bytes before it finds the data missing.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 0 // 8-bit greyscale
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00})
	chunk("IEND", nil)
	return b.Bytes()
}

// TestImageFolderRefusesPixelBombs is the reliability issue's item 9: a
// PNG claiming 100000 x 100000 pixels made training die with a Go fatal
// out-of-memory. The header is read first and the image refused, naming
// the file; a 1 x 100000 strip (a few hundred bytes, within the pixel
// budget) would make the evaluation resize allocate 10 GB, and is
// refused by its aspect ratio.
func TestImageFolderRefusesPixelBombs(t *testing.T) {
	root := t.TempDir()
	grey := color.RGBA{128, 128, 128, 255}
	writeImage(t, filepath.Join(root, "cat", "a.png"), uniform(20, 20, grey))
	bomb := filepath.Join(root, "cat", "b.png")
	require.NoError(t, os.WriteFile(bomb, pngHeader(100000, 100000), 0o644))
	strip := filepath.Join(root, "cat", "c.png")
	writeImage(t, strip, image.NewGray(image.Rect(0, 0, 1, 100000)))
	writeImage(t, filepath.Join(root, "dog", "d.png"), uniform(20, 20, grey))

	var mu sync.Mutex
	var warnings []string
	f, err := NewImageFolderWith(root, ImageFolderOptions{Warn: func(s string) { mu.Lock(); warnings = append(warnings, s); mu.Unlock() }})
	require.NoError(t, err)
	_, err = f.Decode(1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), bomb)
	assert.Contains(t, err.Error(), "10000 megapixels")
	_, err = f.Decode(2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), strip)
	assert.Contains(t, err.Error(), "aspect ratio")

	// The default skips them: a batch that draws them gets another image of
	// the class, and the run is told once per file.
	aug := Augment{Size: 16, Scale: [2]float64{0.2, 1}, Mean: ImageNetMean, Std: ImageNetStd}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2 {
		for i := range 3 {
			img, err := f.Open(i)
			require.NoError(t, err, "a bad image must not stop training")
			assert.Equal(t, image.Rect(0, 0, 20, 20), img.Bounds())
			aug.Train(img, rng)
			aug.Eval(img)
		}
	}
	require.Len(t, warnings, 2)
	assert.Contains(t, warnings[0], bomb)
	assert.Contains(t, warnings[0], "skipped")

	// Refusing instead: the check pass at start-up names every bad file.
	_, err = NewImageFolderWith(root, ImageFolderOptions{BadImages: RefuseBadImages})
	require.Error(t, err)
	assert.Contains(t, err.Error(), bomb)
	assert.Contains(t, err.Error(), strip)
	assert.Contains(t, err.Error(), "2 of 4 images")
	assert.ErrorContains(t, f.Check(), "2 of 4 images")

	// A smaller budget is the caller's to set.
	small, err := NewImageFolderWith(root, ImageFolderOptions{MaxPixels: 100, BadImages: RefuseBadImages})
	assert.Nil(t, small)
	assert.ErrorContains(t, err, "a.png")
}

// TestImageFolderClassWithNoReadableImage: skipping cannot invent a label,
// so a class whose every image is bad is an error naming it.
func TestImageFolderClassWithNoReadableImage(t *testing.T) {
	root := t.TempDir()
	writeImage(t, filepath.Join(root, "cat", "a.png"), uniform(4, 4, color.RGBA{1, 2, 3, 255}))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "dog"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "dog", "x.png"), []byte("junk"), 0o644))
	f, err := NewImageFolderWith(root, ImageFolderOptions{Warn: func(string) {}})
	require.NoError(t, err)
	_, err = f.Open(1)
	assert.ErrorContains(t, err, `class "dog": none of its 1 images can be read`)
	assert.NoError(t, func() error { _, err := f.Open(0); return err }())
}

// TestEvalDoesNotResizeTheWholeImage: evaluation crops the centre of the
// resized image; only that window is computed now, with the same pixels.
func TestEvalDoesNotResizeTheWholeImage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	img := image.NewRGBA(image.Rect(0, 0, 57, 23))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	a := Augment{Size: 16, Mean: ImageNetMean, Std: ImageNetStd}
	// The former implementation: the full resize, then the crop.
	short := int(math.Floor(16 / 0.875))
	w, h := int(float64(short)*57/23), short
	full := resize(img, img.Bounds(), w, h)
	x0, y0 := (w-16+1)/2, (h-16+1)/2
	want := make([]float32, 0, 3*16*16)
	crop := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for y := range 16 {
		for x := range 16 {
			crop.SetRGBA(x, y, full.RGBAAt(x0+x, y0+y))
		}
	}
	want = append(want, a.normalise(crop)...)
	assert.Equal(t, want, a.Eval(img))
}

// TestFashionMNISTRefusesOutOfRangeLabels is item 13: label 200 in a
// 10-class dataset used to fail at step 0 inside libtorch.
func TestFashionMNISTRefusesOutOfRangeLabels(t *testing.T) {
	dir := t.TempDir()
	writeIDX(t, dir, "t10k-images-idx3-ubyte.gz", []byte{0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1}, []byte{1, 2, 3})
	lab := writeIDX(t, dir, "t10k-labels-idx1-ubyte.gz", []byte{0, 0, 8, 1, 0, 0, 0, 3}, []byte{9, 200, 0})
	_, err := FashionMNIST(dir, "test")
	require.Error(t, err)
	assert.Contains(t, err.Error(), lab)
	assert.Contains(t, err.Error(), "example 1")
	assert.Contains(t, err.Error(), "label 200")
	assert.Contains(t, err.Error(), "10 classes")
}

// TestReadIDXDoesNotTrustItsHeader: a 40-byte file claiming 2 GiB of data
// used to allocate all of it before finding the data missing.
func TestReadIDXDoesNotTrustItsHeader(t *testing.T) {
	dir := t.TempDir()
	p := writeIDX(t, dir, "big.gz", []byte{0, 0, 8, 2, 0, 0x80, 0, 0, 0, 0, 0, 127}, []byte{1, 2, 3})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := ReadIDX(p)
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bytes of data expected")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "allocated for data that is not there")

	// An uncompressed file is checked against its size before reading.
	raw := filepath.Join(dir, "big.idx")
	require.NoError(t, os.WriteFile(raw, []byte{0, 0, 8, 2, 0, 0x80, 0, 0, 0, 0, 0, 127, 1, 2, 3}, 0o644))
	_, _, err = ReadIDX(raw)
	assert.ErrorContains(t, err, "bytes of data expected")
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

var _ = strings.Contains
