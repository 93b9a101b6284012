package data

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// albefFixtures is testdata/albef_randaugment.json.gz, written by
// gen_albef_randaugment.py: the official randaugment.py of ALBEF and MUMC
// (MUMC 27b544d0, blob 094d9f4c), imported unchanged and run with real
// OpenCV 4.6 (Debian's python3-opencv) and numpy 1.24; nothing of cv2 is
// transcribed on the Python side.
type albefFixtures struct {
	Blob   string `json:"blob"`
	OpenCV string `json:"opencv"`
	Numpy  string `json:"numpy"`
	Images []struct {
		W, H int
		RGB  []byte `json:"rgb"`
	} `json:"images"`
	Ops []struct {
		Image  int     `json:"image"`
		Op     string  `json:"op"`
		Level  float64 `json:"level"`
		Negate bool    `json:"negate"`
		Out    []byte  `json:"out"`
	} `json:"ops"`
	Rotation []struct {
		W, H   int
		Level  float64   `json:"level"`
		Negate bool      `json:"negate"`
		M      [6]string `json:"m"` // float.hex
	} `json:"rotation"`
	Sequences []struct {
		Image    int       `json:"image"`
		N        int       `json:"n"`
		M        float64   `json:"m"`
		Augs     []string  `json:"augs"`
		Choices  []int     `json:"choices"`
		Uniforms []float64 `json:"uniforms"`
		Out      []byte    `json:"out"`
	} `json:"sequences"`
}

func loadALBEFFixtures(t *testing.T) albefFixtures {
	t.Helper()
	r, err := os.Open("testdata/albef_randaugment.json.gz")
	require.NoError(t, err)
	defer r.Close()
	z, err := gzip.NewReader(r)
	require.NoError(t, err)
	var f albefFixtures
	require.NoError(t, json.NewDecoder(z).Decode(&f))
	require.Equal(t, "094d9f4cacc93146d2bab7311d9dc04feb07032c", f.Blob)
	require.Equal(t, "4.6.0", f.OpenCV)
	return f
}

func firstDiff(t *testing.T, name string, want, got []byte) {
	t.Helper()
	for i := range got {
		if got[i] != want[i] {
			t.Logf("%s: first difference at pixel %d channel %d: %d, Python %d", name, i/3, i%3, got[i], want[i])
			return
		}
	}
}

// Every op of randaugment.py at several levels (ALBEF's 7, 10, 2.5, 5 for
// Sharpness's factor 1, 3.3), both directions of the geometric ones, on
// 16x12 and 15x11 images, against the official functions: all of them
// exactly, the LUT ops and the warps alike. The warps are exact because
// warpAffine's arithmetic is integer once the matrix is: the Go code
// computes the matrix in the same double operations (the rotation's cos
// and sin checked bit for bit by TestALBEFRotationMatrixMatchesOpenCV),
// then the same fixed-point coordinates and weights.
func TestALBEFOpsMatchPython(t *testing.T) {
	f := loadALBEFFixtures(t)
	seen := map[string]bool{}
	for _, c := range f.Ops {
		im := f.Images[c.Image]
		in := rgbImage(im.W, im.H, im.RGB)
		before := append([]byte(nil), in.Pix...)
		a := &ALBEFRandomAugment{M: c.Level}
		got := rgbBytes(a.ApplyOp(in, c.Op, c.Negate))
		name := fmt.Sprintf("%s image %d level %v negate %v", c.Op, c.Image, c.Level, c.Negate)
		if !assert.Equal(t, c.Out, got, name) {
			firstDiff(t, name, c.Out, got)
		}
		require.Equal(t, before, in.Pix, "%s modified its input", name)
		seen[c.Op] = true
	}
	for _, op := range ALBEFAllOps {
		assert.True(t, seen[op], "no Python reference for %s", op)
	}
}

// The fixtures exercise the quirks the port keeps: AutoContrast's uint8
// negation (a channel not reaching 0 becomes 255) and Sharpness's
// wrap-around past 255.
func TestALBEFFixturesCoverQuirks(t *testing.T) {
	f := loadALBEFFixtures(t)
	var ac, sharp bool
	for _, c := range f.Ops {
		im := f.Images[c.Image]
		switch {
		case c.Op == "AutoContrast" && c.Image == 0:
			for i := 1; i < len(c.Out); i += 3 { // green starts at 30
				require.Equal(t, uint8(255), c.Out[i])
			}
			ac = true
		case c.Op == "Sharpness" && c.Level == 10 && c.Image == 1:
			// green is 10/250 blocks: 250 next to 10s overshoots and wraps to a small value
			for i := 1; i < len(c.Out); i += 3 {
				if im.RGB[i] == 250 && c.Out[i] < 100 {
					sharp = true
				}
			}
		}
	}
	assert.True(t, ac, "no AutoContrast case on image 0")
	assert.True(t, sharp, "no Sharpness case that wraps")
}

// getRotationMatrix2D's entries come from glibc's cos and sin; sinCos's
// correctly rounded values give the same bits for every integer level
// 0..10 (and 2.5, 3.3), both directions, at the fixture sizes and at 224,
// 384 and 480 (ALBEF's and MUMC's image sizes). Go's math.Cos would not:
// it is one unit in the last place off at 6, 9, 12 and 18 degrees.
func TestALBEFRotationMatrixMatchesOpenCV(t *testing.T) {
	f := loadALBEFFixtures(t)
	require.NotEmpty(t, f.Rotation)
	for _, c := range f.Rotation {
		deg := c.Level / albefMaxLevel * 30
		if c.Negate {
			deg = -deg
		}
		got := cvRotationMatrix(c.W, c.H, deg)
		for i, s := range c.M {
			want, err := strconv.ParseFloat(s, 64)
			require.NoError(t, err)
			assert.Equal(t, math.Float64bits(want), math.Float64bits(got[i]), "%dx%d level %v negate %v entry %d: %v, OpenCV %v", c.W, c.H, c.Level, c.Negate, i, got[i], want)
		}
	}
}

// albefScript replays np.random.choice indices and np.random.random draws.
type albefScript struct {
	choices  []int
	uniforms []float64
}

func (s *albefScript) choice(n int) int {
	c := s.choices[0]
	s.choices = s.choices[1:]
	return c
}

func (s *albefScript) random() float64 {
	u := s.uniforms[0]
	s.uniforms = s.uniforms[1:]
	return u
}

// RandomAugment.__call__ on scripted draws, against the Python class with
// the same script: the order of the draws (all choices, then per op the
// probability and, if applied, the direction), the comparisons (0.5
// itself applies an op; shear and translate negate above 0.5, rotate
// below), and chains of ops, all exact.
func TestALBEFSequencesMatchPython(t *testing.T) {
	f := loadALBEFFixtures(t)
	require.NotEmpty(t, f.Sequences)
	for k, c := range f.Sequences {
		im := f.Images[c.Image]
		a := &ALBEFRandomAugment{N: c.N, M: c.M, Augs: c.Augs}
		s := &albefScript{choices: c.Choices, uniforms: c.Uniforms}
		got := rgbBytes(a.applyPlan(rgbImage(im.W, im.H, im.RGB), a.plan(s)))
		assert.Empty(t, s.choices, "sequence %d: choices left", k)
		assert.Empty(t, s.uniforms, "sequence %d: draws left", k)
		name := fmt.Sprintf("sequence %d", k)
		if !assert.Equal(t, c.Out, got, name) {
			firstDiff(t, name, c.Out, got)
		}
	}
}

// With a real generator: N ops per image drawn uniformly with replacement,
// each applied with probability 0.5, so the applied count is Binomial(N,
// 0.5); directions are even. Bounds are over 6 standard deviations.
func TestALBEFSelectionStatistics(t *testing.T) {
	a, err := ParseALBEFRandomAugment("albef-n2-m7")
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	const trials = 40000
	var applied [3]int // images with 0, 1, 2 ops applied
	ops := map[string]int{}
	neg, signed := 0, 0
	total := 0
	for range trials {
		p := a.plan(albefRand{rng})
		require.LessOrEqual(t, len(p), 2)
		applied[len(p)]++
		for _, d := range p {
			ops[d.op]++
			total++
			switch d.op {
			case "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate":
				signed++
				if d.negate {
					neg++
				}
			default:
				require.False(t, d.negate, d.op)
			}
		}
	}
	within := func(name string, got int, n int, p float64) {
		t.Helper()
		mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
		assert.InDelta(t, mean, float64(got), 6*sd, "%s: %d of %d, expected %.0f", name, got, n, mean)
	}
	within("no op applied", applied[0], trials, 0.25)
	within("one op applied", applied[1], trials, 0.5)
	within("both applied", applied[2], trials, 0.25)
	within("ops applied", total, 2*trials, 0.5)
	require.Len(t, ops, len(ALBEFOps))
	for _, op := range ALBEFOps {
		within(op, ops[op], total, 1.0/float64(len(ALBEFOps)))
	}
	within("negated", neg, signed, 0.5)

	a.N = 5
	var count [6]int
	for range trials {
		count[len(a.plan(albefRand{rng}))]++
	}
	for k, p := range []float64{1, 5, 10, 10, 5, 1} {
		within(fmt.Sprintf("N=5, %d applied", k), count[k], trials, p/32)
	}
}

func TestParseALBEFRandomAugment(t *testing.T) {
	a, err := ParseALBEFRandomAugment("albef-n2-m7")
	require.NoError(t, err)
	assert.Equal(t, &ALBEFRandomAugment{N: 2, M: 7, Augs: ALBEFOps}, a)
	a, err = ParseALBEFRandomAugment("albef")
	require.NoError(t, err)
	assert.Equal(t, &ALBEFRandomAugment{N: 2, M: 7, Augs: ALBEFOps}, a, "ALBEF's and MUMC's configuration")
	a, err = ParseALBEFRandomAugment("albef-m2.5-all-n3")
	require.NoError(t, err)
	assert.Equal(t, &ALBEFRandomAugment{N: 3, M: 2.5, Augs: ALBEFAllOps}, a)
	a.Augs[0] = "changed"
	assert.Equal(t, "Identity", ALBEFAllOps[0], "the parsed ops are a copy")

	for spec, msg := range map[string]string{
		"rand-m9":       `must start with "albef"`,
		"albef-x3":      `unknown section "x3"`,
		"albef-n2-m7-":  `unknown section ""`,
		"albef-mstd0.5": `section "mstd0.5": m must be a level`,
		"albef-m11":     "m must be a level from 0 to 10",
		"albef-m-1":     `section "m"`,
		"albef-n-1":     `section "n"`,
		"albef-nx":      "n must be a count",
		"albef-n2-n3":   `section "n" given twice`,
		"albef-all-all": `section "all" given twice`,
	} {
		_, err := ParseALBEFRandomAugment(spec)
		if assert.Error(t, err, spec) {
			assert.Contains(t, err.Error(), msg, spec)
		}
	}
}

// Apply leaves its input alone, keeps alpha opaque, works on images whose
// bounds do not start at the origin, and panics on an unknown op name.
func TestALBEFApply(t *testing.T) {
	a := &ALBEFRandomAugment{N: 4, M: 7, Augs: ALBEFAllOps}
	rng := rand.New(rand.NewPCG(3, 4))
	src := image.NewRGBA(image.Rect(5, 7, 5+20, 7+14))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 37)
	}
	for i := 3; i < len(src.Pix); i += 4 {
		src.Pix[i] = 255
	}
	before := append([]byte(nil), src.Pix...)
	for range 200 {
		out := a.Apply(src, rng)
		require.Equal(t, 20, out.Rect.Dx())
		require.Equal(t, 14, out.Rect.Dy())
		for i := 3; i < len(out.Pix); i += 4 {
			require.Equal(t, uint8(255), out.Pix[i])
		}
	}
	require.Equal(t, before, src.Pix)

	assert.PanicsWithValue(t, `ALBEF RandomAugment: unknown op "Cutout"`, func() { a.ApplyOp(src, "Cutout", false) })
	assert.Same(t, src, (&ALBEFRandomAugment{N: 0}).Apply(src, rng), "N 0 draws nothing")
}

// Augment.Train runs ALBEF's RandomAugment after the crop and flip: with
// only Identity to draw, the result is the plain crop's.
func TestAugmentTrainWithALBEF(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 13)
	}
	base := Augment{Size: 16, Scale: [2]float64{0.5, 1}, Flip: true, Mean: ImageNetMean, Std: ImageNetStd}
	with := base
	with.ALBEF = &ALBEFRandomAugment{N: 2, M: 7, Augs: []string{"Identity"}}
	// Identity draws one choice and one probability per op from rng after
	// the crop and flip, so the crops match draw for draw.
	r1, r2 := rand.New(rand.NewPCG(5, 6)), rand.New(rand.NewPCG(5, 6))
	assert.Equal(t, base.Train(img, r1), with.Train(img, r2))

	with.ALBEF = &ALBEFRandomAugment{N: 2, M: 7, Augs: []string{"Brightness"}}
	differ := 0
	for seed := range uint64(20) {
		a := base.Train(img, rand.New(rand.NewPCG(seed, 8)))
		b := with.Train(img, rand.New(rand.NewPCG(seed, 8)))
		if !assert.ObjectsAreEqual(a, b) {
			differ++
		}
	}
	// Each image gets Brightness (factor 1.36) with probability 3/4.
	assert.Greater(t, differ, 5, "Brightness at level 7 applied to %d of 20 images", differ)
}
