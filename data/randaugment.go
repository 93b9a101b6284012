package data

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// This file is timm's RandAugment as MAE's main_finetune.py runs it
// (--aa rand-m9-mstd0.5-inc1): timm 0.3.2, the version MAE pins, read at
// huggingface/pytorch-image-models commit 6504a428 ("Version 0.3.2"),
// timm/data/auto_augment.py. Its ops are PIL calls; each is transcribed
// here from Pillow 9.4 (ImageOps, ImageEnhance, and libImaging's Geometry.c,
// Blend.c, Filter.c, Convert.c) down to the order of the floating-point
// operations, so that an op at a given magnitude gives PIL's pixels
// exactly (testdata/gen_randaugment.py checks it). Products are wrapped in
// explicit conversions (float64(a*b)) wherever PIL's C code rounds them:
// Go may otherwise fuse a*b+c into one FMA on some architectures.

// RandOps are timm's _RAND_TRANSFORMS, the ops of a "rand-..." spec.
var RandOps = []string{"AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
	"Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}

// RandIncreasingOps are timm's _RAND_INCREASING_TRANSFORMS, chosen by "inc1":
// posterize, solarize and the four enhancements made stronger as the
// magnitude grows, the enhancements in a random direction.
var RandIncreasingOps = []string{"AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
	"ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}

// Resample is the interpolation of RandAugment's geometric ops (Rotate,
// ShearX/Y, TranslateX/YRel), as PIL's Image.transform applies it.
type Resample int

const (
	// Bicubic is PIL's BICUBIC transform filter (a cubic with a = -1, not
	// the a = -0.5 of PIL's resize). MAE's build_transform passes
	// interpolation="bicubic" to create_transform, which hands it to the
	// ops, so this is what MAE's fine-tuning uses.
	Bicubic Resample = iota
	// Bilinear is PIL's BILINEAR transform filter.
	Bilinear
	// RandomResample picks Bilinear or Bicubic with equal chance per op:
	// timm's default when create_transform gets interpolation="random".
	RandomResample
)

// maxLevel is timm's _MAX_LEVEL: magnitudes run from 0 to 10.
const maxLevel = 10.0

// RandAugment is timm's RandAugment: Layers ops drawn uniformly with
// replacement, each applied with probability Prob at a magnitude drawn
// from N(Magnitude, MagnitudeStd) and clipped to [0, 10].
type RandAugment struct {
	Ops          []string // op names, RandOps or RandIncreasingOps
	Layers       int      // ops drawn per image (timm's n, default 2)
	Magnitude    float64  // timm's m on the 0..10 scale (10 unless the spec says)
	MagnitudeStd float64  // timm's mstd; 0 uses Magnitude as is
	Prob         float64  // chance each drawn op is applied (0.5, as rand_augment_ops sets it)
	Fill         [3]uint8 // colour geometric ops move in from outside the image: timm's img_mean
	Resample     Resample
	TranslatePct float64 // TranslateX/YRel's shift at magnitude 10, a fraction of the side (0.45)
}

// ParseRandAugment reads a timm RandAugment spec such as
// "rand-m9-mstd0.5-inc1": sections after "rand" are m (magnitude, an
// integer), n (ops per image), mstd (magnitude std) and inc (the
// increasing ops). Fill is timm's img_mean, round(255 * mean) per channel.
// A section without a digit is skipped, as timm skips it. timm 0.3.2
// tests inc's value with Python's bool() of the string, so "inc0" selects
// the increasing ops too; so it does here. The weighted op choice (w) is
// not implemented and is refused.
func ParseRandAugment(spec string, mean [3]float32, resample Resample) (*RandAugment, error) {
	parts := strings.Split(spec, "-")
	if parts[0] != "rand" {
		return nil, fmt.Errorf("RandAugment spec %q must start with \"rand-\" (e.g. rand-m9-mstd0.5-inc1)", spec)
	}
	r := &RandAugment{Ops: RandOps, Layers: 2, Magnitude: maxLevel, Prob: 0.5, Resample: resample, TranslatePct: 0.45}
	for c, m := range mean {
		r.Fill[c] = uint8(min(255, max(0, math.RoundToEven(255*float64(m)))))
	}
	stdSet := false
	for _, p := range parts[1:] {
		i := strings.IndexAny(p, "0123456789") // timm: re.split(r'(\d.*)', section)
		if i < 0 {
			continue
		}
		key, val := p[:i], p[i:]
		var err error
		switch key {
		case "mstd":
			var v float64
			if v, err = strconv.ParseFloat(val, 64); err == nil && !stdSet { // hparams.setdefault: the first one counts
				r.MagnitudeStd, stdSet = v, true
			}
		case "inc":
			r.Ops = RandIncreasingOps
		case "m":
			var m int
			m, err = strconv.Atoi(val)
			r.Magnitude = float64(m)
		case "n":
			r.Layers, err = strconv.Atoi(val)
		default:
			return nil, fmt.Errorf("RandAugment spec %q: unknown section %q (m, n, mstd and inc are supported)", spec, p)
		}
		if err != nil {
			return nil, fmt.Errorf("RandAugment spec %q: section %q: %v", spec, p, err)
		}
	}
	r.Ops = append([]string(nil), r.Ops...)
	return r, nil
}

// randDraw is one op as RandAugment's random choices made it.
type randDraw struct {
	op        string
	magnitude float64
	negate    bool
	resample  Resample
}

// signedOps draw a direction (timm's _randomly_negate); geometricOps draw
// an interpolation when Resample is RandomResample (_check_args_tf).
var (
	signedOps = map[string]bool{"Rotate": true, "ColorIncreasing": true, "ContrastIncreasing": true, "BrightnessIncreasing": true,
		"SharpnessIncreasing": true, "ShearX": true, "ShearY": true, "TranslateXRel": true, "TranslateYRel": true}
	geometricOps = map[string]bool{"Rotate": true, "ShearX": true, "ShearY": true, "TranslateXRel": true, "TranslateYRel": true}
)

// plan makes the random choices for one image in timm's order: Layers ops
// uniformly with replacement (np.random.choice), then for each the prob
// check, the magnitude, the direction and the interpolation. Ops that fail
// the check are left out; they draw nothing more, as in timm.
func (r *RandAugment) plan(rng *rand.Rand) []randDraw {
	picks := make([]string, r.Layers)
	for i := range picks {
		picks[i] = r.Ops[rng.IntN(len(r.Ops))]
	}
	var out []randDraw
	for _, op := range picks {
		if r.Prob < 1 && rng.Float64() > r.Prob {
			continue
		}
		d := randDraw{op: op, magnitude: r.sampleMagnitude(rng), resample: r.Resample}
		if signedOps[op] {
			d.negate = rng.Float64() > 0.5
		}
		if geometricOps[op] && r.Resample == RandomResample {
			d.resample = []Resample{Bilinear, Bicubic}[rng.IntN(2)]
		}
		out = append(out, d)
	}
	return out
}

// sampleMagnitude is AugmentOp's magnitude: random.gauss(m, mstd) when
// mstd > 0, clipped to [0, 10].
func (r *RandAugment) sampleMagnitude(rng *rand.Rand) float64 {
	m := r.Magnitude
	if r.MagnitudeStd > 0 {
		m += r.MagnitudeStd * rng.NormFloat64()
	}
	return min(maxLevel, max(0, m))
}

// Apply runs RandAugment on img with rng and returns the result (img
// itself when no op applies); img is not modified.
func (r *RandAugment) Apply(img *image.RGBA, rng *rand.Rand) *image.RGBA {
	for _, d := range r.plan(rng) {
		img = r.ApplyOp(img, d.op, d.magnitude, d.negate, d.resample)
	}
	return img
}

// ApplyOp applies one op at magnitude m (0..10), always (no probability,
// no sampling): timm's level-to-argument function, then its PIL call.
// negate picks the negative direction of the signed ops (Rotate, Shear,
// Translate, the increasing enhancements); resample must be Bilinear or
// Bicubic. img is not modified.
func (r *RandAugment) ApplyOp(img *image.RGBA, op string, m float64, negate bool, resample Resample) *image.RGBA {
	img = atOrigin(img)
	sign := func(v float64) float64 {
		if negate {
			return -v
		}
		return v
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	switch op {
	case "AutoContrast":
		return autoContrast(img)
	case "Equalize":
		return equalize(img)
	case "Invert":
		return applyLUT(img, lut3(func(i int) int { return 255 - i }))
	case "Rotate":
		return rotate(img, sign(m/maxLevel*30), resample, r.Fill)
	case "Posterize":
		return posterize(img, int(m/maxLevel*4))
	case "PosterizeIncreasing":
		return posterize(img, 4-int(m/maxLevel*4))
	case "Solarize":
		return solarize(img, int(m/maxLevel*256))
	case "SolarizeIncreasing":
		return solarize(img, 256-int(m/maxLevel*256))
	case "SolarizeAdd":
		add := int(m / maxLevel * 110)
		return applyLUT(img, lut3(func(i int) int {
			if i < 128 {
				return min(255, i+add)
			}
			return i
		}))
	case "Color", "Contrast", "Brightness", "Sharpness":
		return enhance(img, op, float64(m/maxLevel*1.8)+0.1)
	case "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing":
		return enhance(img, strings.TrimSuffix(op, "Increasing"), 1+sign(m/maxLevel*0.9))
	case "ShearX":
		return affine(img, [6]float64{1, sign(m / maxLevel * 0.3), 0, 0, 1, 0}, resample, r.Fill)
	case "ShearY":
		return affine(img, [6]float64{1, 0, 0, sign(m / maxLevel * 0.3), 1, 0}, resample, r.Fill)
	case "TranslateXRel":
		return affine(img, [6]float64{1, 0, sign(m/maxLevel*r.TranslatePct) * float64(w), 0, 1, 0}, resample, r.Fill)
	case "TranslateYRel":
		return affine(img, [6]float64{1, 0, 0, 0, 1, sign(m/maxLevel*r.TranslatePct) * float64(h)}, resample, r.Fill)
	}
	panic(fmt.Sprintf("RandAugment: unknown op %q", op))
}

// atOrigin returns img, or a copy of it whose bounds start at (0, 0).
func atOrigin(img *image.RGBA) *image.RGBA {
	if img.Rect.Min == (image.Point{}) {
		return img
	}
	out := image.NewRGBA(image.Rect(0, 0, img.Rect.Dx(), img.Rect.Dy()))
	for y := range out.Rect.Dy() {
		copy(out.Pix[y*out.Stride:(y+1)*out.Stride], img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):])
	}
	return out
}

// lut3 is one lookup table for all three channels, clipped to 0..255 as
// PIL's Image.point clips its table (CLIP8).
func lut3(f func(int) int) (l [3][256]uint8) {
	for i := range 256 {
		v := uint8(min(255, max(0, f(i))))
		l[0][i], l[1][i], l[2][i] = v, v, v
	}
	return l
}

func applyLUT(img *image.RGBA, l [3][256]uint8) *image.RGBA {
	out := image.NewRGBA(img.Rect)
	for i := 0; i < len(img.Pix); i += 4 {
		out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = l[0][img.Pix[i]], l[1][img.Pix[i+1]], l[2][img.Pix[i+2]], 255
	}
	return out
}

func histograms(img *image.RGBA) (h [3][256]int) {
	for i := 0; i < len(img.Pix); i += 4 {
		h[0][img.Pix[i]]++
		h[1][img.Pix[i+1]]++
		h[2][img.Pix[i+2]]++
	}
	return h
}

// autoContrast is ImageOps.autocontrast(img) (cutoff 0): each channel's
// [lo, hi] stretched to [0, 255] through int(i * scale + offset).
func autoContrast(img *image.RGBA) *image.RGBA {
	var l [3][256]uint8
	for c, h := range histograms(img) {
		lo, hi := 0, 255
		for lo < 255 && h[lo] == 0 {
			lo++
		}
		for hi > 0 && h[hi] == 0 {
			hi--
		}
		for i := range 256 {
			v := i
			if hi > lo {
				scale := 255.0 / float64(hi-lo)
				offset := float64(-lo) * scale
				v = min(255, max(0, int(float64(float64(i)*scale)+offset)))
			}
			l[c][i] = uint8(v)
		}
	}
	return applyLUT(img, l)
}

// equalize is ImageOps.equalize(img): per channel, step is the pixel count
// less the last occupied bin's, over 255 (integer division).
func equalize(img *image.RGBA) *image.RGBA {
	var l [3][256]uint8
	for c, h := range histograms(img) {
		total, last, bins := 0, 0, 0
		for _, n := range h {
			if n > 0 {
				total, last, bins = total+n, n, bins+1
			}
		}
		step := 0
		if bins > 1 {
			step = (total - last) / 255
		}
		n := step / 2
		for i := range 256 {
			if step == 0 {
				l[c][i] = uint8(i)
				continue
			}
			l[c][i] = uint8(min(255, n/step))
			n += h[i]
		}
	}
	return applyLUT(img, l)
}

// posterize is ImageOps.posterize (timm returns the image for bits >= 8).
func posterize(img *image.RGBA, bits int) *image.RGBA {
	if bits >= 8 {
		return img
	}
	mask := ^(1<<(8-bits) - 1)
	return applyLUT(img, lut3(func(i int) int { return i & mask }))
}

// solarize is ImageOps.solarize: values at or above thresh are inverted.
func solarize(img *image.RGBA, thresh int) *image.RGBA {
	return applyLUT(img, lut3(func(i int) int {
		if i < thresh {
			return i
		}
		return 255 - i
	}))
}

// enhance is ImageEnhance.<kind>(img).enhance(factor): a blend of img
// with its degenerate image.
func enhance(img *image.RGBA, kind string, factor float64) *image.RGBA {
	var degen *image.RGBA
	switch kind {
	case "Color": // img.convert("L").convert("RGB")
		degen = image.NewRGBA(img.Rect)
		for i := 0; i < len(img.Pix); i += 4 {
			l := luma(img.Pix[i:])
			degen.Pix[i], degen.Pix[i+1], degen.Pix[i+2], degen.Pix[i+3] = l, l, l, 255
		}
	case "Contrast": // an image of the L mean, int(mean + 0.5)
		var sum float64
		n := 0
		for i := 0; i < len(img.Pix); i += 4 {
			sum += float64(luma(img.Pix[i:])) // ImageStat sums j * h[j] over the histogram: exact either way
			n++
		}
		m := uint8(int(sum/float64(n) + 0.5))
		degen = filled(img.Rect.Dx(), img.Rect.Dy(), [3]uint8{m, m, m})
	case "Brightness":
		degen = filled(img.Rect.Dx(), img.Rect.Dy(), [3]uint8{})
	case "Sharpness":
		degen = smooth(img)
	}
	return blend(degen, img, factor)
}

// luma is PIL's RGB to L conversion (ITU-R 601-2 in 16-bit fixed point).
func luma(p []uint8) uint8 {
	return uint8((int(p[0])*19595 + int(p[1])*38470 + int(p[2])*7471 + 0x8000) >> 16)
}

func filled(w, h int, c [3]uint8) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(out.Pix); i += 4 {
		out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = c[0], c[1], c[2], 255
	}
	return out
}

// blend is Image.blend(a, b, factor), ImagingBlend: in float32 (alpha is
// a C float), truncated, clipped only when extrapolating.
func blend(a, b *image.RGBA, factor float64) *image.RGBA {
	alpha := float32(factor)
	out := image.NewRGBA(b.Rect)
	switch alpha {
	case 0:
		copy(out.Pix, a.Pix)
		return out
	case 1:
		copy(out.Pix, b.Pix)
		return out
	}
	for i := range out.Pix {
		if i%4 == 3 {
			out.Pix[i] = 255
			continue
		}
		v := float32(a.Pix[i]) + float32(alpha*float32(int(b.Pix[i])-int(a.Pix[i])))
		switch {
		case v <= 0:
			out.Pix[i] = 0
		case v >= 255:
			out.Pix[i] = 255
		default:
			out.Pix[i] = uint8(v)
		}
	}
	return out
}

// smooth is img.filter(ImageFilter.SMOOTH), ImagingFilter3x3: the kernel
// (1 1 1, 1 5 1, 1 1 1) / 13 in float32 with 0.5 added for rounding, the
// border rows and columns copied.
func smooth(img *image.RGBA) *image.RGBA {
	out := image.NewRGBA(img.Rect)
	copy(out.Pix, img.Pix)
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if w < 3 || h < 3 {
		return out
	}
	k1, k5 := float32(1)/float32(13), float32(5)/float32(13)
	row := func(r []uint8, x, c int, k0, k1, k2 float32) float32 { // KERNEL1x3
		return float32(float32(r[4*(x-1)+c])*k0) + float32(float32(r[4*x+c])*k1) + float32(float32(r[4*(x+1)+c])*k2)
	}
	for y := 1; y < h-1; y++ {
		above, mid, below := img.Pix[(y-1)*img.Stride:], img.Pix[y*img.Stride:], img.Pix[(y+1)*img.Stride:]
		for x := 1; x < w-1; x++ {
			for c := range 3 {
				ss := float32(0.5)
				ss += row(below, x, c, k1, k1, k1)
				ss += row(mid, x, c, k1, k5, k1)
				ss += row(above, x, c, k1, k1, k1)
				out.Pix[y*out.Stride+4*x+c] = clip8(ss)
			}
		}
	}
	return out
}

func clip8(v float32) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v)
}

// pi is math.Pi rounded to a float64 before dividing, as CPython's
// math.radians computes Py_MATH_PI / 180.0 in double precision.
var pi = math.Pi

// rotate is img.rotate(deg, resample, fillcolor=fill): PIL's inverse
// matrix about the centre, its entries rounded to 15 decimals as PIL
// rounds them. |deg| <= 30 here, so PIL's 90/180/270-degree transposes
// never apply; 0 returns a copy.
func rotate(img *image.RGBA, deg float64, resample Resample, fill [3]uint8) *image.RGBA {
	angle := math.Mod(deg, 360) // Python's %: the result takes the divisor's sign
	if angle < 0 {
		angle += 360
	}
	if angle == 0 {
		out := image.NewRGBA(img.Rect)
		copy(out.Pix, img.Pix)
		return out
	}
	rad := -(angle * (pi / 180))
	cos, sin := round15(math.Cos(rad)), round15(math.Sin(rad))
	m := [6]float64{cos, sin, 0, round15(-math.Sin(rad)), cos, 0}
	cx, cy := float64(img.Rect.Dx())/2, float64(img.Rect.Dy())/2
	m[2] = float64(m[0]*-cx) + float64(m[1]*-cy) + m[2]
	m[5] = float64(m[3]*-cx) + float64(m[4]*-cy) + m[5]
	m[2] += cx
	m[5] += cy
	return affine(img, m, resample, fill)
}

// round15 is Python's round(v, 15): correctly rounded to 15 decimals.
func round15(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 15, 64), 64)
	return r
}

// affine is img.transform(img.size, AFFINE, a, resample, fillcolor=fill):
// ImagingGenericTransform with affine_transform. Output pixel (x, y) reads
// the input at a applied to (x + 0.5, y + 0.5); a point outside the image
// keeps the fill colour.
func affine(img *image.RGBA, a [6]float64, resample Resample, fill [3]uint8) *image.RGBA {
	if resample != Bilinear && resample != Bicubic {
		panic(fmt.Sprintf("RandAugment: resample %d is not Bilinear or Bicubic", resample))
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := filled(w, h, fill)
	for y := range h {
		for x := range w {
			xin, yin := float64(x)+0.5, float64(y)+0.5
			sx := float64(a[0]*xin) + float64(a[1]*yin) + a[2]
			sy := float64(a[3]*xin) + float64(a[4]*yin) + a[5]
			if sx < 0 || sx >= float64(w) || sy < 0 || sy >= float64(h) {
				continue
			}
			px := out.Pix[y*out.Stride+4*x:]
			if resample == Bilinear {
				bilinearAt(img, sx, sy, px)
			} else {
				bicubicAt(img, sx, sy, px)
			}
		}
	}
	return out
}

// clip is PIL's XCLIP/YCLIP.
func clip(v, n int) int { return min(n-1, max(0, v)) }

// bilinearAt is bilinear_filter32RGB: the 2x2 neighbourhood, edge columns
// clamped, a missing lower row replaced by the upper one, truncated.
func bilinearAt(img *image.RGBA, xin, yin float64, out []uint8) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	xin, yin = xin-0.5, yin-0.5
	x, y := int(math.Floor(xin)), int(math.Floor(yin))
	dx, dy := xin-float64(x), yin-float64(y)
	x0, x1 := 4*clip(x, w), 4*clip(x+1, w)
	lerp := func(a, b, d float64) float64 { return a + float64((b-a)*d) }
	for c := range 3 {
		r := img.Pix[clip(y, h)*img.Stride+c:]
		v1 := lerp(float64(r[x0]), float64(r[x1]), dx)
		v2 := v1
		if y+1 >= 0 && y+1 < h {
			r = img.Pix[(y+1)*img.Stride+c:]
			v2 = lerp(float64(r[x0]), float64(r[x1]), dx)
		}
		out[c] = uint8(lerp(v1, v2, dy))
	}
}

// cubic is PIL's BICUBIC macro, the a = -1 cubic through four samples.
func cubic(v1, v2, v3, v4, d float64) float64 {
	p1 := v2
	p2 := -v1 + v3
	p3 := float64(2*(v1-v2)) + v3 - v4
	p4 := -v1 + v2 - v3 + v4
	return p1 + float64(d*(p2+float64(d*(p3+float64(d*p4)))))
}

// bicubicAt is bicubic_filter32RGB: the 4x4 neighbourhood, edge columns
// clamped, the first row clamped and each missing later row replaced by
// the one before, clipped to 0..255 and truncated.
func bicubicAt(img *image.RGBA, xin, yin float64, out []uint8) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	xin, yin = xin-0.5, yin-0.5
	x, y := int(math.Floor(xin)), int(math.Floor(yin))
	dx, dy := xin-float64(x), yin-float64(y)
	x--
	y--
	var xs [4]int
	for k := range xs {
		xs[k] = 4 * clip(x+k, w)
	}
	for c := range 3 {
		var v [4]float64
		for k := range v {
			ry := y + k
			if k == 0 {
				ry = clip(y, h)
			} else if ry < 0 || ry >= h {
				v[k] = v[k-1]
				continue
			}
			r := img.Pix[ry*img.Stride+c:]
			v[k] = cubic(float64(r[xs[0]]), float64(r[xs[1]]), float64(r[xs[2]]), float64(r[xs[3]]), dx)
		}
		out[c] = clip8d(cubic(v[0], v[1], v[2], v[3], dy))
	}
}

func clip8d(v float64) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v)
}
