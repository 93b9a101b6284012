package torchmods

import (
	"fmt"
	"image"
	"image/color"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// This file is clip.load's preprocess, clip._transform(n_px) of
// github.com/openai/CLIP: torchvision's Resize(n_px, BICUBIC) of the
// shorter side, CenterCrop(n_px), convert("RGB"), ToTensor and Normalize
// with CLIP's mean and std, on a PIL image. torchvision resizes a PIL image
// with PIL's Image.resize, so the resampling here is Pillow's (9.4,
// libImaging/Resample.c, unchanged in its 8-bit path since 7.0): the
// filter's coefficients computed in float64 and rounded to 22-bit fixed
// point, a horizontal pass then a vertical one, each rounding to 8 bits,
// so that the pixels are PIL's exactly (testdata/gen_clip_preprocess.py's
// references: max difference 0) and not only close. JPEGs are the
// exception: Go's decoder is not libjpeg, and although libjpegRGB converts
// its planes as libjpeg does, a few pixels differ by a level or so.

// CLIPMean and CLIPStd are the Normalize of clip._transform, per RGB channel.
var (
	CLIPMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	CLIPStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// pilImage is an 8-bit image as PIL holds it: 3 channels (modes RGB, L)
// or 4 (RGBA and LA, resized premultiplied), or a palette image (P,
// resized with NEAREST), interleaved.
type pilImage struct {
	w, h, c int
	pix     []uint8
	nearest bool
}

// toPIL reads a Go image in the PIL mode that PIL opens its file in: a
// palette image (*image.Paletted: PNG and GIF palettes) as P, an image
// whose Opaque says so (JPEG, PNG without alpha) as RGB, any other as
// RGBA. Each pixel goes through color.NRGBAModel: 16-bit samples keep
// their high byte, as PIL reads 16-bit RGB PNGs. (PIL opens a 16-bit
// grey PNG as mode I and clips it to 255 on convert("RGB"); here its high
// byte is kept. A 1-bit grey PNG, which PIL resizes with NEAREST as mode
// 1, decodes in Go as any grey image and is resized bicubic.)
func toPIL(img image.Image) pilImage {
	b := img.Bounds()
	p := pilImage{w: b.Dx(), h: b.Dy(), c: 4}
	if pal, ok := img.(*image.Paletted); ok {
		p.c, p.nearest = 3, true
		rgb := make([][3]uint8, len(pal.Palette))
		for i, c := range pal.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			rgb[i] = [3]uint8{n.R, n.G, n.B}
		}
		p.pix = make([]uint8, 0, p.w*p.h*3)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				i := pal.ColorIndexAt(x, y)
				if int(i) < len(rgb) {
					p.pix = append(p.pix, rgb[i][0], rgb[i][1], rgb[i][2])
				} else { // an index past the palette: PIL's palettes have 256 entries, black past the file's
					p.pix = append(p.pix, 0, 0, 0)
				}
			}
		}
		return p
	}
	if y, ok := img.(*image.YCbCr); ok && b.Dx() > 2 {
		if pix, ok := libjpegRGB(y); ok {
			p.c, p.pix = 3, pix
			return p
		}
	}
	if o, ok := img.(interface{ Opaque() bool }); ok && o.Opaque() {
		p.c = 3
	}
	p.pix = make([]uint8, 0, p.w*p.h*p.c)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			n := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			p.pix = append(p.pix, n.R, n.G, n.B)
			if p.c == 4 {
				p.pix = append(p.pix, n.A)
			}
		}
	}
	return p
}

// libjpegRGB converts a decoded JPEG's YCbCr planes to RGB as libjpeg
// (libjpeg-turbo, PIL's decoder) does by default, not as Go's
// color.YCbCrToRGB: subsampled chroma is upsampled "fancy"
// (jdsample.c's h2v2_fancy_upsample and h2v1_fancy_upsample, a triangle
// filter, where Go repeats each chroma sample), then converted with
// jdcolor.c's fixed-point tables. On testdata's 4:2:0 JPEG this takes the
// decoded pixels from a mean 3.5 levels off PIL's (26 at most) to 0.05 (3
// at most), what is left being the IDCTs' rounding (Go's is not libjpeg's
// ISLOW). Other subsamplings (4:4:0, 4:1:1, 4:1:0) report false and go
// through color.YCbCrToRGB.
func libjpegRGB(img *image.YCbCr) ([]uint8, bool) {
	b := img.Rect
	w, h := b.Dx(), b.Dy()
	var cw, ch int // chroma samples per row and column: libjpeg's downsampled_width and height
	switch img.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		cw, ch = w, h
	case image.YCbCrSubsampleRatio422:
		cw, ch = (w+1)/2, h
	case image.YCbCrSubsampleRatio420:
		cw, ch = (w+1)/2, (h+1)/2
	default:
		return nil, false
	}
	// The chroma planes at full resolution, row by row.
	plane := func(src []uint8) []int32 {
		at := func(x, y int) int32 {
			return int32(src[img.COffset(b.Min.X, b.Min.Y)+y*img.CStride+x])
		}
		out := make([]int32, 0, w*h)
		row := make([]int32, 2*cw)
		for y := range h {
			switch img.SubsampleRatio {
			case image.YCbCrSubsampleRatio444:
				for x := range w {
					out = append(out, at(x, y))
				}
				continue
			case image.YCbCrSubsampleRatio422: // h2v1_fancy_upsample
				row[0] = at(0, y)
				row[1] = (at(0, y)*3 + at(1, y) + 2) >> 2
				for i := 1; i < cw-1; i++ {
					v := at(i, y) * 3
					row[2*i] = (v + at(i-1, y) + 1) >> 2
					row[2*i+1] = (v + at(i+1, y) + 2) >> 2
				}
				row[2*cw-2] = (at(cw-1, y)*3 + at(cw-2, y) + 1) >> 2
				row[2*cw-1] = at(cw-1, y)
			case image.YCbCrSubsampleRatio420: // h2v2_fancy_upsample
				near := y / 2
				far := near - 1 // the row above for an even row, below for an odd one, the edge row repeated
				if y%2 == 1 {
					far = near + 1
				}
				far = min(max(far, 0), ch-1)
				col := func(i int) int32 { return at(i, near)*3 + at(i, far) }
				this, next := col(0), col(1)
				row[0] = (this*4 + 8) >> 4
				row[1] = (this*3 + next + 7) >> 4
				last := this
				this = next
				for i := 1; i < cw-1; i++ {
					next = col(i + 1)
					row[2*i] = (this*3 + last + 8) >> 4
					row[2*i+1] = (this*3 + next + 7) >> 4
					last, this = this, next
				}
				row[2*cw-2] = (this*3 + last + 8) >> 4
				row[2*cw-1] = (this*4 + 7) >> 4
			}
			out = append(out, row[:w]...)
		}
		return out
	}
	cb, cr := plane(img.Cb), plane(img.Cr)
	// jdcolor.c's build_ycc_rgb_table and ycc_rgb_convert, SCALEBITS 16.
	const half = 1 << 15
	fix := func(x float64) int32 { return int32(x*(1<<16) + 0.5) }
	clamp := func(v int32) uint8 { return uint8(min(max(v, 0), 255)) }
	pix := make([]uint8, 0, w*h*3)
	for y := range h {
		for x := range w {
			yy := int32(img.Y[img.YOffset(b.Min.X+x, b.Min.Y+y)])
			u, v := cb[y*w+x]-128, cr[y*w+x]-128
			r := (fix(1.40200)*v + half) >> 16
			g := (-fix(0.34414)*u + half - fix(0.71414)*v) >> 16
			bl := (fix(1.77200)*u + half) >> 16
			pix = append(pix, clamp(yy+r), clamp(yy+g), clamp(yy+bl))
		}
	}
	return pix, true
}

// resize is PIL's Image.resize((w, h), BICUBIC) as torchvision calls it
// (no box, no reducing_gap): NEAREST for a palette image; for RGBA the
// channels premultiplied by alpha first (convert("RGBa")) and divided
// after (convert("RGBA")), as Image.resize does.
func (p pilImage) resize(w, h int) pilImage {
	if w == p.w && h == p.h {
		return p
	}
	if p.nearest {
		return p.resizeNearest(w, h)
	}
	if p.c == 4 {
		premultiply(p.pix)
	}
	out := p.resample(w, h)
	if p.c == 4 {
		unpremultiply(out.pix)
	}
	return out
}

// premultiply is Convert.c's rgba2rgbA: each colour times alpha / 255,
// rounded as MULDIV255.
func premultiply(pix []uint8) {
	for i := 0; i < len(pix); i += 4 {
		a := uint32(pix[i+3])
		for c := range 3 {
			t := uint32(pix[i+c])*a + 128
			pix[i+c] = uint8((t>>8 + t) >> 8)
		}
	}
}

// unpremultiply is Convert.c's rgbA2rgba: each colour times 255 / alpha,
// truncated and clipped, unless alpha is 0 or 255.
func unpremultiply(pix []uint8) {
	for i := 0; i < len(pix); i += 4 {
		a := uint32(pix[i+3])
		if a == 0 || a == 255 {
			continue
		}
		for c := range 3 {
			pix[i+c] = uint8(min(255*uint32(pix[i+c])/a, 255))
		}
	}
}

// resizeNearest is _imaging.c's NEAREST resize: an affine scaling
// (ImagingScaleAffine), each output pixel the input pixel under its
// centre.
func (p pilImage) resizeNearest(w, h int) pilImage {
	out := pilImage{w: w, h: h, c: p.c, pix: make([]uint8, w*h*p.c), nearest: true}
	sx, sy := float64(p.w)/float64(w), float64(p.h)/float64(h)
	coord := func(v float64, n int) int {
		i := int(v)
		if v < 0 {
			i = -1
		}
		return min(max(i, 0), n-1)
	}
	for y := range h {
		yi := coord(sy*(float64(y)+0.5), p.h)
		for x := range w {
			xi := coord(sx*(float64(x)+0.5), p.w)
			copy(out.pix[(y*w+x)*p.c:(y*w+x+1)*p.c], p.pix[(yi*p.w+xi)*p.c:(yi*p.w+xi+1)*p.c])
		}
	}
	return out
}

// bicubicFilter is Resample.c's bicubic_filter, a = -0.5. The float64
// conversions keep each product rounded on its own, as C computes it (no
// fused multiply-add).
func bicubicFilter(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64((a+2)*x)-(a+3))*x)*x + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

// pilPrecisionBits is Resample.c's PRECISION_BITS, 32 - 8 - 2.
const pilPrecisionBits = 22

// coeffs is precompute_coeffs for an output of outSize from inSize
// (no box) then normalize_coeffs_8bpc: per output pixel, the first input
// pixel and the fixed-point weights of the pixels from it.
func coeffs(inSize, outSize int) (first []int, weights [][]int32) {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := 2 * filterscale // bicubic's support is 2
	ss := 1 / filterscale
	first = make([]int, outSize)
	weights = make([][]int32, outSize)
	for xx := range outSize {
		center := float64(float64(xx)+0.5) * scale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		k := make([]float64, xmax)
		ww := 0.0
		for x := range xmax {
			k[x] = bicubicFilter(float64(float64(x+xmin)-center+0.5) * ss)
			ww += k[x]
		}
		w := make([]int32, xmax)
		for x := range xmax {
			if ww != 0 {
				k[x] /= ww
			}
			if k[x] < 0 {
				w[x] = int32(-0.5 + float64(k[x]*(1<<pilPrecisionBits)))
			} else {
				w[x] = int32(0.5 + float64(k[x]*(1<<pilPrecisionBits)))
			}
		}
		first[xx], weights[xx] = xmin, w
	}
	return first, weights
}

// clip8 is Resample.c's clip8: the accumulator back to 8 bits.
func clip8(v int32) uint8 {
	return uint8(min(max(v>>pilPrecisionBits, 0), 255))
}

// resample is ImagingResampleInner with the bicubic filter: the
// horizontal pass over the rows the vertical one reads, then the
// vertical pass, each only if its size changes.
func (p pilImage) resample(w, h int) pilImage {
	c := p.c
	src, sw, sh := p.pix, p.w, p.h
	vFirst, vWeights := coeffs(p.h, h)
	if w != p.w {
		y0 := vFirst[h-1] + len(vWeights[h-1])
		ybox := vFirst[0]
		y1 := y0
		if h == p.h { // no vertical pass: every row
			ybox, y1 = 0, p.h
		}
		hFirst, hWeights := coeffs(p.w, w)
		tmp := make([]uint8, w*(y1-ybox)*c)
		for y := ybox; y < y1; y++ {
			row := src[y*sw*c : (y+1)*sw*c]
			out := tmp[(y-ybox)*w*c:]
			for xx := range w {
				x0, k := hFirst[xx], hWeights[xx]
				for ch := range c {
					ss := int32(1 << (pilPrecisionBits - 1))
					for x, kx := range k {
						ss += int32(row[(x0+x)*c+ch]) * kx
					}
					out[xx*c+ch] = clip8(ss)
				}
			}
		}
		for i := range vFirst {
			vFirst[i] -= ybox
		}
		src, sw, sh = tmp, w, y1-ybox
	}
	if h == p.h {
		return pilImage{w: sw, h: sh, c: c, pix: src}
	}
	out := make([]uint8, sw*h*c)
	for yy := range h {
		y0, k := vFirst[yy], vWeights[yy]
		for x := range sw {
			for ch := range c {
				ss := int32(1 << (pilPrecisionBits - 1))
				for y, ky := range k {
					ss += int32(src[((y0+y)*sw+x)*c+ch]) * ky
				}
				out[(yy*sw+x)*c+ch] = clip8(ss)
			}
		}
	}
	return pilImage{w: sw, h: h, c: c, pix: out}
}

// CLIPResizeCrop is clip._transform up to the tensor: Resize(n) of the
// shorter side with PIL's bicubic (the longer side n × long / short,
// truncated, as torchvision), CenterCrop(n) (offsets rounded half to
// even, as Python's round), convert("RGB"). It returns the n × n RGB
// pixels, row by row. An empty image or n < 1 is an error.
func CLIPResizeCrop(img image.Image, n int) ([]uint8, error) {
	b := img.Bounds()
	if b.Empty() {
		return nil, fmt.Errorf("CLIP preprocess: the image is empty (%dx%d)", b.Dx(), b.Dy())
	}
	if n < 1 {
		return nil, fmt.Errorf("CLIP preprocess: image size %d, want at least 1", n)
	}
	p := toPIL(img)
	w, h := p.w, p.h
	short, long := w, h
	if w > h {
		short, long = h, w
	}
	newLong := int(float64(n*long) / float64(short))
	nw, nh := n, newLong
	if w > h {
		nw, nh = newLong, n
	}
	p = p.resize(nw, nh)
	// torchvision's center_crop: int(round((size - n) / 2.0)); the image
	// is at least n wide and high after Resize, so no padding.
	top := int(math.RoundToEven(float64(p.h-n) / 2))
	left := int(math.RoundToEven(float64(p.w-n) / 2))
	out := make([]uint8, 0, n*n*3)
	for y := top; y < top+n; y++ {
		for x := left; x < left+n; x++ {
			i := (y*p.w + x) * p.c
			out = append(out, p.pix[i], p.pix[i+1], p.pix[i+2]) // convert("RGB"): alpha dropped, not composited
		}
	}
	return out, nil
}

// CLIPPreprocess is clip.load's preprocess, clip._transform(n): the
// image as a [3, n, n] float32 slice (channels, rows, columns), each
// value (v / 255 - mean) / std in float32 arithmetic as ToTensor and
// Normalize compute it.
func CLIPPreprocess(img image.Image, n int) ([]float32, error) {
	px, err := CLIPResizeCrop(img, n)
	if err != nil {
		return nil, err
	}
	out := make([]float32, 3*n*n)
	for i := range n * n {
		for c := range 3 {
			v := float32(px[i*3+c]) / 255
			out[c*n*n+i] = (v - CLIPMean[c]) / CLIPStd[c]
		}
	}
	return out, nil
}

// CLIPImages preprocesses images into a batch [B, 3, n, n] (float32) on
// dev, ready for CLIP.EncodeImage; an error names the image's index.
func CLIPImages(imgs []image.Image, n int, dev gotch.Device) (*ts.Tensor, error) {
	if len(imgs) == 0 {
		return nil, fmt.Errorf("CLIP preprocess: no images")
	}
	all := make([]float32, 0, len(imgs)*3*n*n)
	for i, img := range imgs {
		x, err := CLIPPreprocess(img, n)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		all = append(all, x...)
	}
	var t *ts.Tensor
	err := Try(func() {
		t = ts.MustOfSlice(all).MustView([]int64{int64(len(imgs)), 3, int64(n), int64(n)}, true).MustTo(dev, true)
	})
	return t, err
}
