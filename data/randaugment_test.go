package data

import (
	"encoding/json"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixtures is testdata/randaugment.json, written by gen_randaugment.py with
// PIL 9.4 from timm 0.3.2's op functions and MAE's util/crop.py.
type fixtures struct {
	Pil    string   `json:"pil"`
	Fill   [3]uint8 `json:"fill"`
	Images []struct {
		W, H int
		RGB  []byte `json:"rgb"`
	} `json:"images"`
	Ops []struct {
		Image     int     `json:"image"`
		Op        string  `json:"op"`
		Magnitude float64 `json:"magnitude"`
		Negate    bool    `json:"negate"`
		Resample  string  `json:"resample"`
		Out       []byte  `json:"out"`
	} `json:"ops"`
	Crops []struct {
		W, H  int
		Scale [2]float64 `json:"scale"`
		U     [4]float64 `json:"u"`
		Box   [4]int     `json:"box"` // i, j, h, w
	} `json:"crops"`
	Erase []struct {
		H, W, Count int
		U           [2]float64 `json:"u"`
		Box         [2]int     `json:"box"` // h, w
	} `json:"erase"`
}

func loadFixtures(t *testing.T) fixtures {
	t.Helper()
	b, err := os.ReadFile("testdata/randaugment.json")
	require.NoError(t, err)
	var f fixtures
	require.NoError(t, json.Unmarshal(b, &f))
	require.Equal(t, "9.4.0", f.Pil)
	return f
}

func rgbImage(w, h int, rgb []byte) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		copy(img.Pix[4*i:], rgb[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	return img
}

func rgbBytes(img *image.RGBA) []byte {
	out := make([]byte, 0, len(img.Pix)/4*3)
	for i := 0; i < len(img.Pix); i += 4 {
		out = append(out, img.Pix[i:i+3]...)
	}
	return out
}

// Every op of both RandAugment op lists, at magnitudes 0, 9, 9.37 and 10,
// both signs and both interpolations, on two small images, against PIL's
// pixels: exactly.
func TestRandAugmentOpsMatchPIL(t *testing.T) {
	f := loadFixtures(t)
	ra, err := ParseRandAugment("rand-m9-mstd0.5-inc1", ImageNetMean, Bicubic)
	require.NoError(t, err)
	require.Equal(t, f.Fill, ra.Fill, "timm's img_mean: round(255 * ImageNet mean)")
	seen := map[string]bool{}
	for _, c := range f.Ops {
		im := f.Images[c.Image]
		in := rgbImage(im.W, im.H, im.RGB)
		before := append([]byte(nil), in.Pix...)
		rs := map[string]Resample{"bicubic": Bicubic, "bilinear": Bilinear}[c.Resample]
		got := rgbBytes(ra.ApplyOp(in, c.Op, c.Magnitude, c.Negate, rs))
		name := fmt.Sprintf("%s image %d magnitude %v negate %v %s", c.Op, c.Image, c.Magnitude, c.Negate, c.Resample)
		if !assert.Equal(t, c.Out, got, name) {
			for i := range got {
				if got[i] != c.Out[i] {
					t.Logf("%s: first difference at pixel %d channel %d: %d, PIL %d", name, i/3, i%3, got[i], c.Out[i])
					break
				}
			}
		}
		require.Equal(t, before, in.Pix, "%s modified its input", name)
		seen[c.Op] = true
	}
	for _, op := range append(append([]string{}, RandOps...), RandIncreasingOps...) {
		assert.True(t, seen[op], "no PIL reference for %s", op)
	}
}

func TestParseRandAugment(t *testing.T) {
	ra, err := ParseRandAugment("rand-m9-mstd0.5-inc1", ImageNetMean, Bicubic)
	require.NoError(t, err)
	assert.Equal(t, RandIncreasingOps, ra.Ops)
	assert.Equal(t, 2, ra.Layers)
	assert.Equal(t, 9.0, ra.Magnitude)
	assert.Equal(t, 0.5, ra.MagnitudeStd)
	assert.Equal(t, 0.5, ra.Prob)
	assert.Equal(t, 0.45, ra.TranslatePct)
	assert.Equal(t, [3]uint8{124, 116, 104}, ra.Fill)

	ra, err = ParseRandAugment("rand-n3-mstd1-mstd2", [3]float32{0.286, 0.286, 0.286}, RandomResample)
	require.NoError(t, err)
	assert.Equal(t, RandOps, ra.Ops)
	assert.Equal(t, 3, ra.Layers)
	assert.Equal(t, 10.0, ra.Magnitude, "timm's default magnitude is _MAX_LEVEL")
	assert.Equal(t, 1.0, ra.MagnitudeStd, "the first mstd counts (hparams.setdefault)")
	assert.Equal(t, [3]uint8{73, 73, 73}, ra.Fill)

	ra, err = ParseRandAugment("rand-inc0", ImageNetMean, Bicubic)
	require.NoError(t, err)
	assert.Equal(t, RandIncreasingOps, ra.Ops, "timm 0.3.2 reads inc with bool(str): inc0 is true")

	for _, bad := range []string{"", "augmix-m3", "rand-m9.5", "rand-w0", "rand-x1"} {
		_, err := ParseRandAugment(bad, ImageNetMean, Bicubic)
		assert.Error(t, err, bad)
	}
}

// The magnitude is N(m, mstd) clipped to [0, 10], exactly: the same
// generator's normal draws, clipped.
func TestRandAugmentMagnitudeSampling(t *testing.T) {
	for _, c := range []struct{ m, std float64 }{{9, 0.5}, {5, 4}, {9, 0}} {
		ra := &RandAugment{Magnitude: c.m, MagnitudeStd: c.std}
		rng, ref := rand.New(rand.NewPCG(7, 8)), rand.New(rand.NewPCG(7, 8))
		var low, high int
		const n = 100000
		for range n {
			got := ra.sampleMagnitude(rng)
			want := c.m
			if c.std > 0 {
				want = c.m + c.std*ref.NormFloat64()
			}
			require.Equal(t, min(10, max(0, want)), got)
			if got == 0 {
				low++
			}
			if got == 10 {
				high++
			}
		}
		switch c {
		case struct{ m, std float64 }{9, 0.5}: // P(Z > 2) = 2.275%, P(Z < -18) = 0
			assert.InDelta(t, 0.02275, float64(high)/n, 0.002)
			assert.Zero(t, low)
		case struct{ m, std float64 }{5, 4}: // P(Z > 1.25) = P(Z < -1.25) = 10.56%
			assert.InDelta(t, 0.1056, float64(high)/n, 0.004)
			assert.InDelta(t, 0.1056, float64(low)/n, 0.004)
		}
	}
}

// plan draws Layers ops uniformly with replacement, keeps each with
// probability Prob, draws a sign for signed ops only and an interpolation
// for geometric ops only when it is RandomResample; Apply applies the plan.
func TestRandAugmentPlan(t *testing.T) {
	ra, err := ParseRandAugment("rand-m9-mstd0.5-inc1", ImageNetMean, RandomResample)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 1))
	count := map[string]int{}
	kept, negated, signed, bicubic, geometric := 0, 0, 0, 0, 0
	const images = 60000
	for range images {
		for _, d := range ra.plan(rng) {
			kept++
			count[d.op]++
			require.True(t, d.magnitude >= 0 && d.magnitude <= 10)
			if signedOps[d.op] {
				signed++
				if d.negate {
					negated++
				}
			} else {
				require.False(t, d.negate, d.op)
			}
			if geometricOps[d.op] {
				geometric++
				if d.resample == Bicubic {
					bicubic++
				}
			} else {
				require.Equal(t, RandomResample, d.resample, "%s draws no interpolation", d.op)
			}
		}
	}
	assert.InDelta(t, 0.5, float64(kept)/(2*images), 0.01, "prob 0.5 per drawn op")
	assert.InDelta(t, 0.5, float64(negated)/float64(signed), 0.01)
	assert.InDelta(t, 0.5, float64(bicubic)/float64(geometric), 0.01)
	require.Len(t, count, len(RandIncreasingOps))
	for op, n := range count {
		assert.InDelta(t, 1.0/15, float64(n)/float64(kept), 0.006, op)
	}

	// Apply is the plan applied in order, and leaves its input alone.
	img := image.NewRGBA(image.Rect(0, 0, 12, 10))
	src := rand.New(rand.NewPCG(2, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(src.IntN(256))
	}
	before := append([]uint8(nil), img.Pix...)
	ra.Prob = 1
	for seed := range uint64(20) {
		want := img
		for _, d := range ra.plan(rand.New(rand.NewPCG(seed, 3))) {
			want = ra.ApplyOp(want, d.op, d.magnitude, d.negate, d.resample)
		}
		assert.Equal(t, want.Pix, ra.Apply(img, rand.New(rand.NewPCG(seed, 3))).Pix)
	}
	assert.Equal(t, before, img.Pix)
}

// MAE's util/crop.RandomResizedCrop against its transcription on fixed
// draws: exactly.
func TestClampedCropMatchesMAE(t *testing.T) {
	f := loadFixtures(t)
	clamped := 0
	for _, c := range f.Crops {
		r := clampedCrop(image.Rect(0, 0, c.W, c.H), c.Scale, [2]float64{3.0 / 4, 4.0 / 3}, c.U)
		i, j, h, w := c.Box[0], c.Box[1], c.Box[2], c.Box[3]
		require.Equal(t, image.Rect(j, i, j+w, i+h), r, "%d x %d, scale %v, draws %v", c.W, c.H, c.Scale, c.U)
		if w == c.W || h == c.H {
			clamped++
		}
	}
	assert.Positive(t, clamped, "some draws must reach the clamp")
	// The box is placed in the image's own coordinates.
	assert.Equal(t, image.Rect(10, 20, 110, 100), clampedCrop(image.Rect(10, 20, 110, 100), [2]float64{1, 1}, [2]float64{1.25, 1.25}, [4]float64{0.5, 0.5, 0.5, 0.5}))
}

// timm's RandomErasing box sizes against their transcription on fixed
// draws (exactly), then Apply's statistics with a seeded generator.
func TestRandomErasing(t *testing.T) {
	f := loadFixtures(t)
	e, err := NewRandomErasing(0.25, "pixel", 1)
	require.NoError(t, err)
	for _, c := range f.Erase {
		h, w := e.boxSize(c.H, c.W, c.Count, c.U[0], c.U[1])
		require.Equal(t, c.Box, [2]int{h, w}, "%d x %d, count %d, draws %v", c.H, c.W, c.Count, c.U)
	}

	const H, W, trials = 28, 32, 20000
	rng := rand.New(rand.NewPCG(9, 9))
	x := make([]float32, 3*H*W)
	erased := 0
	var sum, sq float64
	var n int
	for range trials {
		for i := range x {
			x[i] = 7
		}
		boxes := e.Apply(x, 3, H, W, rng)
		require.LessOrEqual(t, len(boxes), 1, "recount 1: at most one box")
		if len(boxes) == 0 {
			require.Equal(t, float32(7), x[0])
			continue
		}
		erased++
		b := boxes[0]
		require.True(t, b.In(image.Rect(0, 0, W, H)) && b.Dx() < W && b.Dy() < H, "%v", b)
		// The box's area lies in [0.02, 1/3] of the image up to the rounding
		// of each side (at most half a pixel).
		lo := math.Pow(math.Sqrt(0.02*H*W*0.3)-0.5, 2)
		require.GreaterOrEqual(t, float64(b.Dx()*b.Dy()), lo, "%v", b)
		require.LessOrEqual(t, float64(b.Dx()*b.Dy()), float64(H*W)/3+math.Sqrt(float64(H*W)/3*(1/0.3))+0.25, "%v", b)
		for c := range 3 {
			for y := range H {
				for xx := range W {
					v := x[c*H*W+y*W+xx]
					if image.Pt(xx, y).In(b) {
						sum, sq, n = sum+float64(v), sq+float64(v)*float64(v), n+1
					} else if v != 7 {
						t.Fatalf("box %v: pixel (%d, %d) outside it changed to %v", b, xx, y, v)
					}
				}
			}
		}
	}
	assert.InDelta(t, 0.25, float64(erased)/trials, 0.015, "reprob 0.25")
	mean := sum / float64(n)
	assert.InDelta(t, 0, mean, 0.01, "per-pixel standard normal noise")
	assert.InDelta(t, 1, sq/float64(n)-mean*mean, 0.01)

	// recount 3: 1 to 3 boxes, each a third of the area budget.
	e3, err := NewRandomErasing(1, "const", 3)
	require.NoError(t, err)
	counts := map[int]int{}
	for range 3000 {
		counts[len(e3.Apply(x, 3, H, W, rng))]++
	}
	assert.Len(t, counts, 3)
	for k := 1; k <= 3; k++ {
		assert.InDelta(t, 1000, counts[k], 120, "count %d", k)
	}
	for _, bad := range []struct {
		p    float64
		mode string
		n    int
	}{{1.5, "pixel", 1}, {0.25, "noise", 1}, {0.25, "pixel", 0}} {
		_, err := NewRandomErasing(bad.p, bad.mode, bad.n)
		assert.Error(t, err, "%v", bad)
	}
}
