package data

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"testing"
)

// FuzzParseIDX: whatever an IDX stream holds, the reader returns an error
// or data matching its dimensions, and never allocates what is not there.
func FuzzParseIDX(f *testing.F) {
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, int64(-1))
	f.Add([]byte{0, 0, 8, 1, 0, 0, 0, 2, 9, 200}, int64(10))
	f.Add([]byte{0, 0, 8, 2, 0, 0x80, 0, 0, 0, 0, 0, 127, 1, 2, 3}, int64(-1))
	f.Add([]byte{0, 0, 8, 2, 0, 0x80, 0, 0, 0, 0, 0, 127, 1, 2, 3}, int64(15))
	f.Add([]byte{0, 0, 13, 3}, int64(4))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if size >= 0 {
			size = int64(len(b)) // a known size is the true one
		}
		px, dims, err := parseIDX(bytes.NewReader(b), size)
		if err != nil {
			return
		}
		n := 1
		for _, d := range dims {
			n *= d
		}
		if len(px) != n {
			t.Fatalf("%d bytes for dims %v", len(px), dims)
		}
	})
}

// FuzzDecodeImage runs arbitrary bytes through the image folder's decode
// path and both transforms: an error, or a normalised image of the right
// size, never a panic or an allocation a header asked for.
func FuzzDecodeImage(f *testing.F) {
	var pngb, jpgb bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 5, 3))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	png.Encode(&pngb, img)
	jpeg.Encode(&jpgb, img, nil)
	var grey bytes.Buffer
	png.Encode(&grey, image.NewGray16(image.Rect(0, 0, 2, 9)))
	var pal bytes.Buffer
	png.Encode(&pal, image.NewPaletted(image.Rect(0, 0, 3, 3), color.Palette{color.Black, color.White}))
	f.Add(pngb.Bytes())
	f.Add(jpgb.Bytes())
	f.Add(grey.Bytes())
	f.Add(pal.Bytes())
	f.Add(pngHeader(100000, 100000))
	f.Add(pngHeader(1, 100000))
	f.Add(pngHeader(0, 5))
	f.Add([]byte("not an image"))
	opt := ImageFolderOptions{MaxPixels: 1 << 16}
	aug := Augment{Size: 8, Scale: [2]float64{0.08, 1}, Flip: true, Mean: ImageNetMean, Std: ImageNetStd}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := DecodeImage(bytes.NewReader(b), "fuzz", opt)
		if err != nil {
			return
		}
		if r := img.Bounds(); int64(r.Dx())*int64(r.Dy()) > opt.MaxPixels {
			t.Fatalf("%v passed a budget of %d pixels", r, opt.MaxPixels)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		if x := aug.Train(img, rng); len(x) != 3*8*8 {
			t.Fatalf("Train made %d values", len(x))
		}
		if x := aug.Eval(img); len(x) != 3*8*8 {
			t.Fatalf("Eval made %d values", len(x))
		}
	})
}
