package torchmods

import (
	"encoding/binary"
	"image"
	"image/color"
	_ "image/jpeg" // the fixtures
	_ "image/png"  // "
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// The references are testdata/gen_clip_preprocess.py's: clip._transform of
// openai/CLIP at d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 on Pillow 9.4.0
// and torchvision 0.14.1, on the PNGs in testdata/clip_preprocess.

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, _, err := image.Decode(f)
	require.NoError(t, err)
	return img
}

// The pixels after Resize, CenterCrop and convert("RGB") are PIL's, every
// one, and the normalised tensor is torchvision's to the bit.
func TestCLIPPreprocessMatchesPIL(t *testing.T) {
	ref, err := safetensors.Read("testdata/clip_preprocess.safetensors")
	require.NoError(t, err)
	for _, name := range []string{"rgb_down", "rgb_up", "rgb_same", "rgb_round", "rgb_wide", "rgb_line", "gradient", "rgba", "la", "gray", "palette"} {
		want, ok := ref.Get("pixels." + name)
		require.True(t, ok, name)
		require.Equal(t, "U8", want.DType)
		n := int(want.Shape[0])
		img := readPNG(t, "testdata/clip_preprocess/"+name+".png")
		px, err := CLIPResizeCrop(img, n)
		require.NoError(t, err, name)
		maxPx := 0
		for i := range px {
			maxPx = max(maxPx, absInt(int(px[i])-int(want.Data[i])))
		}
		assert.Zero(t, maxPx, "%s: pixels", name)

		wantT, ok := ref.Get("tensor." + name)
		maxT := 0.0
		if ok {
			require.Equal(t, []int64{3, int64(n), int64(n)}, wantT.Shape)
			x, err := CLIPPreprocess(img, n)
			require.NoError(t, err)
			for i := range x {
				w := math.Float32frombits(binary.LittleEndian.Uint32(wantT.Data[4*i:]))
				maxT = math.Max(maxT, math.Abs(float64(x[i]-w)))
			}
			assert.Zero(t, maxT, "%s: tensor", name)
		}
		t.Logf("%-9s %-16T %3dx%-3d -> %3d: max pixel difference %d, max tensor difference %g",
			name, img, img.Bounds().Dx(), img.Bounds().Dy(), n, maxPx, maxT)
	}
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// JPEGs: Go's decoder is not libjpeg, but with libjpeg's chroma upsampling
// and colour conversion (libjpegRGB) only the IDCTs' rounding differs, a
// level or two here and there, where Go's own conversion is off by a mean 3
// levels and up to 29 on 4:2:0 files.
func TestCLIPPreprocessJPEG(t *testing.T) {
	ref, err := safetensors.Read("testdata/clip_preprocess.safetensors")
	require.NoError(t, err)
	for _, name := range []string{"jpeg420", "jpeg422", "jpeg444"} {
		img := readPNG(t, "testdata/clip_preprocess/"+name+".jpg")
		y, ok := img.(*image.YCbCr)
		require.True(t, ok, name)
		dec, ok := ref.Get("decoded." + name)
		require.True(t, ok)
		stats := func(got []uint8, want []byte) (int, float64) {
			mx, sum := 0, 0
			for i := range got {
				d := absInt(int(got[i]) - int(want[i]))
				mx, sum = max(mx, d), sum+d
			}
			return mx, float64(sum) / float64(len(got))
		}
		ours, ok := libjpegRGB(y)
		require.True(t, ok)
		var goConv []uint8
		b := y.Bounds()
		for yy := b.Min.Y; yy < b.Max.Y; yy++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(y.At(x, yy)).(color.NRGBA)
				goConv = append(goConv, c.R, c.G, c.B)
			}
		}
		mxOurs, meanOurs := stats(ours, dec.Data)
		mxGo, meanGo := stats(goConv, dec.Data)
		want, _ := ref.Get("pixels." + name)
		px, err := CLIPResizeCrop(img, int(want.Shape[0]))
		require.NoError(t, err)
		mxPx, meanPx := stats(px, want.Data)
		t.Logf("%s (%v): decoded vs PIL: max %d, mean %.3f (Go's YCbCrToRGB: max %d, mean %.3f); preprocessed pixels: max %d, mean %.3f",
			name, y.SubsampleRatio, mxOurs, meanOurs, mxGo, meanGo, mxPx, meanPx)
		assert.LessOrEqual(t, mxOurs, 3, name)
		assert.LessOrEqual(t, meanOurs, 0.5, name)
		assert.LessOrEqual(t, mxPx, 3, name)
	}
}

// CLIPImages batches, and refuses what it cannot preprocess by index.
func TestCLIPImages(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	a := readPNG(t, "testdata/clip_preprocess/rgb_down.png")
	b := readPNG(t, "testdata/clip_preprocess/palette.png")
	x, err := CLIPImages([]image.Image{a, b}, 16, gotch.CPU)
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 3, 16, 16}, x.MustSize())
	one, err := CLIPPreprocess(b, 16)
	require.NoError(t, err)
	got := x.MustSelect(0, 1, false).MustFlatten(0, -1, true).Float64Values()
	for i := range one {
		require.Equal(t, float64(one[i]), got[i])
	}
	_, err = CLIPImages([]image.Image{a, image.NewRGBA(image.Rect(0, 0, 0, 3))}, 16, gotch.CPU)
	assert.ErrorContains(t, err, "image 1: CLIP preprocess: the image is empty (0x3)")
	_, err = CLIPImages(nil, 16, gotch.CPU)
	assert.Error(t, err)
	_, err = CLIPPreprocess(a, 0)
	assert.ErrorContains(t, err, "image size 0")
}

// An image whose bounds do not start at 0 is read from its bounds; a
// uniform image stays uniform through the resampling (the weights sum to
// one in fixed point).
func TestCLIPPreprocessBoundsAndUniform(t *testing.T) {
	img := image.NewNRGBA(image.Rect(5, 7, 5+41, 7+29))
	for y := 7; y < 7+29; y++ {
		for x := 5; x < 5+41; x++ {
			img.SetNRGBA(x, y, color.NRGBA{200, 100, 50, 255})
		}
	}
	px, err := CLIPResizeCrop(img, 12)
	require.NoError(t, err)
	require.Len(t, px, 12*12*3)
	for i := 0; i < len(px); i += 3 {
		require.Equal(t, []uint8{200, 100, 50}, px[i:i+3])
	}
}
