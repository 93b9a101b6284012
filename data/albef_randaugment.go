package data

import (
	"fmt"
	"image"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// This file is ALBEF's RandomAugment, salesforce/ALBEF dataset/randaugment.py
// (git blob 094d9f4c, the same file as pengfeiliHEU/MUMC's at commit
// 27b544d0), which ALBEF and MUMC run for pre-training and VQA as
//
//	RandomAugment(2, 7, isPIL=True, augs=['Identity', 'AutoContrast', 'Equalize', 'Brightness',
//	    'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate'])
//
// after RandomResizedCrop and RandomHorizontalFlip, on the PIL image turned
// into an RGB numpy array. It is not timm's RandAugment (randaugment.go):
// its ops are numpy and OpenCV code with their own level-to-argument
// functions, and several differ from PIL's on purpose or by accident. They
// are transcribed here as they run, with numpy 1.x and OpenCV 4.x (up to
// 4.10; testdata/gen_albef_randaugment.py checks them against numpy 1.24
// and OpenCV 4.6):
//
//   - AutoContrast: `offset = -low * scale` negates a numpy uint8, which
//     wraps, so a channel whose minimum is above 0 (and whose maximum is
//     above its minimum) comes out all 255; only a channel that already
//     reaches 0 is stretched. A flat channel is left as is.
//   - Equalize: PIL's algorithm, as its docstring says (the same LUT as
//     equalize in randaugment.go). Its histogram sums are float32, exact
//     below 2^24 pixels, far above any training crop.
//   - Brightness: a LUT of float32(i) * float32(factor), clipped, truncated.
//   - Sharpness: cv2.filter2D with (1 1 1, 1 5 1, 1 1 1) / 13, then
//     degenerate + factor * (img - degenerate) in float32 on all but the
//     one-pixel border, cast to uint8 without clipping: numpy's cast
//     truncates to an integer and keeps its low byte on x86, so values
//     past 255 or below 0 (factor > 1 at strong edges) wrap around.
//   - ShearX/Y, TranslateX/Y, Rotate: cv2.warpAffine, bilinear, border
//     (128, 128, 128): the forward matrix inverted in double, source
//     coordinates in 1/32 pixel fixed point, 15-bit integer weights. Pixel
//     (x, y) samples the source at the inverse map of (x, y) itself (not
//     the pixel centre, as PIL's transform), so ShearX reads x - f*y, the
//     opposite direction to timm's for the same factor, and Rotate turns
//     about (W/2, H/2), anticlockwise for a positive angle. Shear and
//     translate matrices are np.float32, so their factors are rounded to
//     float32 first.
//   - Color and Contrast (not among ALBEF's ops, but in randaugment.py)
//     use OpenCV's BGR luma weights on what isPIL=True makes RGB data.
//   - Posterize masks with np.uint8(255 << (8 - bits)), which numpy 1.x
//     wraps to the low byte (bits 0 keeps nothing).
//
// The random choices are numpy's order: N ops with replacement
// (np.random.choice), then for each a draw against 0.5 (applied when
// random() <= 0.5), then, for the geometric ops, one for the direction.

// ALBEFOps are the ops ALBEF's and MUMC's create_dataset pass as augs.
var ALBEFOps = []string{"Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness",
	"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}

// ALBEFAllOps are randaugment.py's arg_dict keys in their order: the ops of
// RandomAugment called without augs.
var ALBEFAllOps = []string{"Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Contrast",
	"Brightness", "Sharpness", "ShearX", "TranslateX", "TranslateY", "Posterize", "ShearY"}

const (
	albefMaxLevel       = 10  // MAX_LEVEL
	albefTranslateConst = 10  // translate_const: the shift, in pixels, at level MAX_LEVEL
	albefFill           = 128 // replace_value, (128, 128, 128)
	albefProb           = 0.5 // each drawn op's chance (get_random_ops)
)

// ALBEFRandomAugment is randaugment.py's RandomAugment(N, M, isPIL=True,
// augs=Augs).
type ALBEFRandomAugment struct {
	N    int      // ops drawn per image, with replacement
	M    float64  // the level, 0..10 (ALBEF and MUMC: 7)
	Augs []string // op names, from ALBEFAllOps (ALBEF and MUMC: ALBEFOps)
}

// ParseALBEFRandomAugment reads a spec such as "albef-n2-m7": "albef",
// then optional sections n<ops per image>, m<level, 0..10> and "all" (the
// ops of ALBEFAllOps instead of ALBEFOps). Without sections it is what
// ALBEF and MUMC run: N 2, M 7, ALBEFOps. Unknown or repeated sections are
// errors.
func ParseALBEFRandomAugment(spec string) (*ALBEFRandomAugment, error) {
	parts := strings.Split(spec, "-")
	if parts[0] != "albef" {
		return nil, fmt.Errorf("ALBEF RandomAugment spec %q must start with \"albef\" (e.g. albef-n2-m7)", spec)
	}
	a := &ALBEFRandomAugment{N: 2, M: 7, Augs: slices.Clone(ALBEFOps)}
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		key := p
		if p != "all" && len(p) > 0 {
			key = p[:1]
		}
		if seen[key] {
			return nil, fmt.Errorf("ALBEF RandomAugment spec %q: section %q given twice", spec, key)
		}
		seen[key] = true
		switch key {
		case "all":
			a.Augs = slices.Clone(ALBEFAllOps)
		case "n":
			n, err := strconv.Atoi(p[1:])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("ALBEF RandomAugment spec %q: section %q: n must be a count of ops, 0 or more", spec, p)
			}
			a.N = n
		case "m":
			m, err := strconv.ParseFloat(p[1:], 64)
			if err != nil || !(m >= 0 && m <= albefMaxLevel) {
				return nil, fmt.Errorf("ALBEF RandomAugment spec %q: section %q: m must be a level from 0 to 10", spec, p)
			}
			a.M = m
		default:
			return nil, fmt.Errorf("ALBEF RandomAugment spec %q: unknown section %q (n<ops>, m<level> and all are supported)", spec, p)
		}
	}
	return a, nil
}

// albefDraw is one op as RandomAugment's random choices made it.
type albefDraw struct {
	op     string
	negate bool
}

// albefSource is where the plan's draws come from: np.random.choice's
// index and np.random.random.
type albefSource interface {
	choice(n int) int
	random() float64
}

type albefRand struct{ *rand.Rand }

func (r albefRand) choice(n int) int { return r.IntN(n) }
func (r albefRand) random() float64  { return r.Float64() }

// plan makes the random choices for one image in RandomAugment.__call__'s
// order: N ops with replacement, then for each the probability draw and,
// for the geometric ops it applies, the direction: ShearX/Y and
// TranslateX/Y negate when random() > 0.5, Rotate when random() < 0.5.
func (a *ALBEFRandomAugment) plan(src albefSource) []albefDraw {
	if a.N > 0 && len(a.Augs) == 0 {
		panic("ALBEF RandomAugment: no ops to draw from")
	}
	picks := make([]string, a.N)
	for i := range picks {
		picks[i] = a.Augs[src.choice(len(a.Augs))]
	}
	var out []albefDraw
	for _, op := range picks {
		if src.random() > albefProb {
			continue
		}
		d := albefDraw{op: op}
		switch op {
		case "ShearX", "ShearY", "TranslateX", "TranslateY":
			d.negate = src.random() > 0.5
		case "Rotate":
			d.negate = src.random() < 0.5
		}
		out = append(out, d)
	}
	return out
}

// Apply runs RandomAugment on img with rng and returns the result (img
// itself when no op changes it); img is not modified.
func (a *ALBEFRandomAugment) Apply(img *image.RGBA, rng *rand.Rand) *image.RGBA {
	return a.applyPlan(img, a.plan(albefRand{rng}))
}

func (a *ALBEFRandomAugment) applyPlan(img *image.RGBA, plan []albefDraw) *image.RGBA {
	for _, d := range plan {
		img = a.ApplyOp(img, d.op, d.negate)
	}
	return img
}

// ApplyOp applies one op at level a.M, always (no probability draw):
// randaugment.py's level-to-argument function, then its op. negate picks
// the negative direction of ShearX/Y, TranslateX/Y and Rotate. img is not
// modified.
func (a *ALBEFRandomAugment) ApplyOp(img *image.RGBA, op string, negate bool) *image.RGBA {
	img = atOrigin(img)
	level := a.M
	sign := func(v float64) float64 {
		if negate {
			return -v
		}
		return v
	}
	enhance := float64(level/albefMaxLevel*1.8) + 0.1 // enhance_level_to_args
	switch op {
	case "Identity":
		return img
	case "AutoContrast":
		return albefAutoContrast(img)
	case "Equalize":
		return equalize(img)
	case "Rotate":
		return cvRotate(img, sign(level/albefMaxLevel*30), albefFill)
	case "Solarize":
		return solarize(img, int(level/albefMaxLevel*256))
	case "Color":
		return albefColor(img, enhance)
	case "Contrast":
		return albefContrast(img, enhance)
	case "Brightness":
		return albefBrightness(img, enhance)
	case "Sharpness":
		return albefSharpness(img, enhance)
	case "ShearX":
		f := float64(float32(sign(level / albefMaxLevel * 0.3)))
		return cvWarpAffine(img, [6]float64{1, f, 0, 0, 1, 0}, albefFill)
	case "ShearY":
		f := float64(float32(sign(level / albefMaxLevel * 0.3)))
		return cvWarpAffine(img, [6]float64{1, 0, 0, f, 1, 0}, albefFill)
	case "TranslateX":
		off := sign(level / albefMaxLevel * float64(albefTranslateConst))
		return cvWarpAffine(img, [6]float64{1, 0, float64(float32(-off)), 0, 1, 0}, albefFill)
	case "TranslateY":
		off := sign(level / albefMaxLevel * float64(albefTranslateConst))
		return cvWarpAffine(img, [6]float64{1, 0, 0, 0, 1, float64(float32(-off))}, albefFill)
	case "Posterize":
		bits := int(level / albefMaxLevel * 4)
		if bits > 8 {
			panic(fmt.Sprintf("ALBEF RandomAugment: Posterize at level %g keeps %d bits (Python fails on the negative shift)", level, bits))
		}
		return posterize(img, bits) // i & ^(2^(8-bits)-1): np.uint8(255 << (8-bits)) wrapped
	}
	panic(fmt.Sprintf("ALBEF RandomAugment: unknown op %q", op))
}

// albefAutoContrast is autocontrast_func(img) (cutoff 0), per channel:
// with low < high, table = clip(arange(256) * scale + offset, 0, 255) with
// scale = 255 / (high - low) and offset = -low * scale, where -low is the
// uint8 negation, 256 - low for low > 0. The table is truncated to uint8.
func albefAutoContrast(img *image.RGBA) *image.RGBA {
	var l [3][256]uint8
	for c := range 3 {
		lo, hi := uint8(255), uint8(0)
		for i := c; i < len(img.Pix); i += 4 {
			lo, hi = min(lo, img.Pix[i]), max(hi, img.Pix[i])
		}
		for i := range 256 {
			v := float64(i)
			if hi > lo {
				scale := 255 / float64(hi-lo)
				offset := float64(-lo) * scale // uint8 negation wraps, as numpy's
				v = min(255, max(0, float64(float64(i)*scale)+offset))
			}
			l[c][i] = uint8(v)
		}
	}
	return applyLUT(img, l)
}

// albefBrightness is brightness_func: np.arange(256, float32) * factor
// (a float32 product), clipped to 0..255 and truncated.
func albefBrightness(img *image.RGBA, factor float64) *image.RGBA {
	f := float32(factor)
	return applyLUT(img, lut3(func(i int) int {
		return int(min(255, max(0, float32(float32(i)*f))))
	}))
}

// albefContrast is contrast_func: mean = sum(channel means * (0.114,
// 0.587, 0.299)), summed left to right, and the LUT (i - mean) * factor +
// mean in double, clipped and truncated.
func albefContrast(img *image.RGBA, factor float64) *image.RGBA {
	var sum [3]float64
	for i := 0; i < len(img.Pix); i += 4 {
		for c := range 3 {
			sum[c] += float64(img.Pix[i+c]) // exact: integers below 2^53
		}
	}
	n := float64(img.Rect.Dx() * img.Rect.Dy())
	w := [3]float64{0.114, 0.587, 0.299}
	mean := 0.0
	for c := range 3 {
		mean += float64(sum[c] / n * w[c])
	}
	return applyLUT(img, lut3(func(i int) int {
		return int(min(255, max(0, float64(float64(float64(i)-mean)*factor)+mean)))
	}))
}

// albefColorM and albefColorB are color_func's matrices, rounded to
// float32 at run time from their float64 values, as np.float32 rounds them.
var (
	albefColorM = [3][3]float64{{0.886, -0.114, -0.114}, {-0.587, 0.413, -0.587}, {-0.299, -0.299, 0.701}}
	albefColorB = [3]float64{0.114, 0.587, 0.299}
)

// albefColor is color_func: np.matmul(img, M) in float32 with M =
// float32 matrix * factor + column, clipped and truncated. The products
// are summed left to right, rounding each step, as numpy's matmul does
// here; a BLAS that fuses them could differ in the last bit of the float32
// sum, which moves a truncated pixel only when it lands within that of an
// integer.
func albefColor(img *image.RGBA, factor float64) *image.RGBA {
	f := float32(factor)
	var m [3][3]float32
	for i := range 3 {
		for j := range 3 {
			m[i][j] = float32(float32(albefColorM[i][j])*f) + float32(albefColorB[i])
		}
	}
	out := image.NewRGBA(img.Rect)
	for i := 0; i < len(img.Pix); i += 4 {
		p := [3]float32{float32(img.Pix[i]), float32(img.Pix[i+1]), float32(img.Pix[i+2])}
		for c := range 3 {
			s := float32(float32(p[0]*m[0][c])+float32(p[1]*m[1][c])) + float32(p[2]*m[2][c])
			out.Pix[i+c] = uint8(min(255, max(0, s)))
		}
		out.Pix[i+3] = 255
	}
	return out
}

// albefSharpness is sharpness_func. The degenerate image is
// cv2.filter2D(img, -1, kernel) with kernel (1 1 1, 1 5 1, 1 1 1) / 13 in
// float32, rounded to nearest: that is round(S / 13) for the integer S =
// 5 * centre + the 8 neighbours, since S / 13 is never within 1/26 of a
// half and float32's error is below 1e-3, so however OpenCV orders or fuses
// the sum (its SIMD paths use FMA) it rounds the same. Borders are
// reflected (BORDER_REFLECT_101); they matter only for factor 0, which
// returns the degenerate image whole. Otherwise the border keeps img's
// pixels and the rest is degenerate + factor * (img - degenerate) in
// float32, cast to uint8 by truncation to an integer and keeping its low
// byte (numpy's cast on x86: no clipping).
func albefSharpness(img *image.RGBA, factor float64) *image.RGBA {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := image.NewRGBA(img.Rect)
	copy(out.Pix, img.Pix)
	for i := 3; i < len(out.Pix); i += 4 {
		out.Pix[i] = 255
	}
	if factor == 1 {
		return out
	}
	reflect := func(p, n int) int { // borderInterpolate, BORDER_REFLECT_101, for p in -1..n
		switch {
		case n == 1:
			return 0
		case p < 0:
			return -p
		case p >= n:
			return 2*n - 2 - p
		}
		return p
	}
	degen := func(x, y, c int) int {
		s := 0
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				k := 1
				if dx == 0 && dy == 0 {
					k = 5
				}
				s += k * int(img.Pix[reflect(y+dy, h)*img.Stride+4*reflect(x+dx, w)+c])
			}
		}
		return (2*s + 13) / 26 // round(s / 13); never a tie
	}
	if factor == 0 {
		for y := range h {
			for x := range w {
				for c := range 3 {
					out.Pix[y*out.Stride+4*x+c] = uint8(degen(x, y, c))
				}
			}
		}
		return out
	}
	f := float32(factor)
	for y := 1; y < h-1; y++ {
		for x := 1; x < w-1; x++ {
			for c := range 3 {
				d := float32(degen(x, y, c))
				v := float32(img.Pix[y*img.Stride+4*x+c])
				r := d + float32(f*(v-d))
				out.Pix[y*out.Stride+4*x+c] = uint8(int32(r)) // truncate, keep the low byte
			}
		}
	}
	return out
}

// cvRotate is rotate_func: cv2.getRotationMatrix2D((W/2, H/2), deg, 1)
// (centre as float32, angle * (CV_PI/180), cos and sin in double), then
// cvWarpAffine.
func cvRotate(img *image.RGBA, deg float64, fill uint8) *image.RGBA {
	return cvWarpAffine(img, cvRotationMatrix(img.Rect.Dx(), img.Rect.Dy(), deg), fill)
}

// cvRotationMatrix is getRotationMatrix2D_ (OpenCV 4.6 imgwarp.cpp) with
// scale 1, for an image of w x h.
func cvRotationMatrix(w, h int, deg float64) [6]float64 {
	cx, cy := float64(float32(float64(w)/2)), float64(float32(float64(h)/2))
	angle := deg * (pi / 180)
	beta, alpha := sinCos(angle)
	return [6]float64{
		alpha, beta, float64((1-alpha)*cx) - float64(beta*cy),
		-beta, alpha, float64(beta*cx) + float64((1-alpha)*cy),
	}
}

// sinCos is sin(x) and cos(x) correctly rounded, as glibc's sin and cos
// (which OpenCV calls) give them in practice. Go's math.Cos is one unit in
// the last place off for some of RandomAugment's angles (6, 9, 12 and 18
// degrees; not ALBEF's 21), which could move a rotated pixel whose
// fixed-point coordinate sits on a rounding boundary (none did in a
// 480x480 test); this gives OpenCV's matrix bit for bit. It sums the
// Taylor series in 320-bit floats and rounds once, for |x| <= 64
// (RandomAugment's angles are at most pi/6); math.Sin and math.Cos beyond.
func sinCos(x float64) (sin, cos float64) {
	if x == 0 || math.IsNaN(x) || math.Abs(x) > 64 {
		return math.Sin(x), math.Cos(x)
	}
	const prec = 320
	bx := new(big.Float).SetPrec(prec).SetFloat64(x)
	s, c := new(big.Float).SetPrec(prec), new(big.Float).SetPrec(prec)
	term := new(big.Float).SetPrec(prec).SetInt64(1) // x^n / n!
	n := new(big.Float).SetPrec(prec)
	for k := int64(0); term.Sign() != 0 && term.MantExp(nil) > -prec-16; k++ {
		switch k % 4 {
		case 0:
			c.Add(c, term)
		case 1:
			s.Add(s, term)
		case 2:
			c.Sub(c, term)
		case 3:
			s.Sub(s, term)
		}
		term.Mul(term, bx)
		term.Quo(term, n.SetInt64(k+1))
	}
	sin, _ = s.Float64()
	cos, _ = c.Float64()
	return sin, cos
}

// cvBilinearTab is OpenCV's BilinearTab_i (initInterTab2D(INTER_LINEAR,
// true)): for each 1/32 pixel offset (ty, tx), the weights of the four
// neighbours in 15-bit fixed point. The (0, 0) entry's 32768 saturates to
// 32767 and OpenCV's correction adds the missing 1 to its last weight,
// giving (32767, 0, 0, 1); it reproduces that.
var cvBilinearTab = func() (t [1024][4]int32) {
	const n = 32
	var tab [2 * n]float32
	scale := float32(1) / n
	for i := range n {
		x := float32(i) * scale
		tab[2*i], tab[2*i+1] = 1-x, x
	}
	flat := make([]int32, 4*n*n+8) // the correction reads past its own entry
	for i := range n {
		for j := range n {
			e := flat[4*(i*n+j):]
			isum := int32(0)
			for k1 := range 2 {
				for k2 := range 2 {
					v := tab[2*i+k1] * tab[2*j+k2]
					iv := min(math.MaxInt16, max(math.MinInt16, int32(math.RoundToEven(float64(v*32768)))))
					e[2*k1+k2] = iv
					isum += iv
				}
			}
			if diff := isum - 32768; diff != 0 {
				mk, Mk := 3, 3 // ksize2 = 1: the search starts at (1, 1)
				for k1 := 1; k1 < 3; k1++ {
					for k2 := 1; k2 < 3; k2++ {
						k := 2*k1 + k2
						if e[k] < e[mk] {
							mk = k
						} else if e[k] > e[Mk] {
							Mk = k
						}
					}
				}
				if diff < 0 {
					e[Mk] -= diff
				} else {
					e[mk] -= diff
				}
			}
		}
	}
	for k := range t {
		copy(t[k][:], flat[4*k:])
	}
	return t
}()

// cvRound is cvRound(double) on x86-64 (cvtsd2si): nearest, ties to even;
// out of the int range it gives INT_MIN.
func cvRound(v float64) int32 {
	r := math.RoundToEven(v)
	if !(r >= math.MinInt32 && r <= math.MaxInt32) {
		return math.MinInt32
	}
	return int32(r)
}

func saturateShort(v int32) int32 { return min(math.MaxInt16, max(math.MinInt16, v)) }

// cvWarpAffine is cv2.warpAffine(img, m, (W, H), flags=INTER_LINEAR,
// borderMode=BORDER_CONSTANT, borderValue=(fill,)*3) for an 8-bit
// 3-channel image, as OpenCV 4.6's imgwarp.cpp computes it (no IPP:
// OpenCV disables it for warpAffine): m, the forward map, inverted in
// double; for output pixel (x, y), the source position in 1/32 pixels is
// (round(m0*x*1024) + round((m1*y + m2)*1024) + 16) >> 5 (and likewise
// for y), split into an integer pixel and a table index; the four
// neighbours, those outside the image replaced by fill, weighted by
// cvBilinearTab and rounded from 15-bit fixed point. A pixel whose whole
// neighbourhood is outside is fill.
func cvWarpAffine(img *image.RGBA, m [6]float64, fill uint8) *image.RGBA {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	d := float64(m[0]*m[4]) - float64(m[1]*m[3])
	if d != 0 {
		d = 1 / d
	}
	a11, a22 := m[4]*d, m[0]*d
	m[0], m[4] = a11, a22
	m[1] *= -d
	m[3] *= -d
	b1 := float64(-m[0]*m[2]) - float64(m[1]*m[5])
	b2 := float64(-m[3]*m[2]) - float64(m[4]*m[5])
	m[2], m[5] = b1, b2

	const abScale, roundDelta = 1024, 16 // AB_SCALE, AB_SCALE/INTER_TAB_SIZE/2
	adelta, bdelta := make([]int32, w), make([]int32, w)
	for x := range w {
		adelta[x] = cvRound(float64(m[0]*float64(x)) * abScale)
		bdelta[x] = cvRound(float64(m[3]*float64(x)) * abScale)
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	at := func(x, y, c int32) int32 {
		if x < 0 || x >= int32(w) || y < 0 || y >= int32(h) {
			return int32(fill)
		}
		return int32(img.Pix[int(y)*img.Stride+4*int(x)+int(c)])
	}
	for y := range h {
		x0 := cvRound((float64(m[1]*float64(y))+m[2])*abScale) + roundDelta
		y0 := cvRound((float64(m[4]*float64(y))+m[5])*abScale) + roundDelta
		for x := range w {
			X := (x0 + adelta[x]) >> 5
			Y := (y0 + bdelta[x]) >> 5
			sx, sy := saturateShort(X>>5), saturateShort(Y>>5)
			px := out.Pix[y*out.Stride+4*x:]
			px[3] = 255
			if sx >= int32(w) || sx+1 < 0 || sy >= int32(h) || sy+1 < 0 {
				px[0], px[1], px[2] = fill, fill, fill
				continue
			}
			wt := &cvBilinearTab[(Y&31)*32+(X&31)]
			for c := range int32(3) {
				s := at(sx, sy, c)*wt[0] + at(sx+1, sy, c)*wt[1] + at(sx, sy+1, c)*wt[2] + at(sx+1, sy+1, c)*wt[3]
				px[c] = uint8(min(255, max(0, (s+1<<14)>>15)))
			}
		}
	}
	return out
}
