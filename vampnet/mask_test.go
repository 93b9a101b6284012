package vampnet

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func maskRng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d61736b)) }

func codesOf(vals []int64, shape ...int64) *ts.Tensor {
	return ts.MustOfSlice(vals).MustReshape(shape, true)
}

func zerosCodes(shape ...int64) *ts.Tensor {
	return ts.MustZeros(shape, gotch.Int64, gotch.CPU)
}

func values(t *testing.T, m *ts.Tensor) []int64 {
	t.Helper()
	require.Equal(t, gotch.Int64, m.DType())
	return m.Int64Values()
}

// row is the time row of sample b, codebook c.
func row(t *testing.T, m *ts.Tensor, b, c int64) []int64 {
	s := m.MustSize()
	v := values(t, m)
	return v[(b*s[1]+c)*s[2] : (b*s[1]+c+1)*s[2]]
}

// everyRow asserts that every (sample, codebook) row of m is want.
func everyRow(t *testing.T, m *ts.Tensor, want []int64, msg string) {
	t.Helper()
	s := m.MustSize()
	for b := range s[0] {
		for c := range s[1] {
			assert.Equal(t, want, row(t, m, b, c), "%s: sample %d codebook %d", msg, b, c)
		}
	}
}

func mean(v []int64) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x)
	}
	return s / float64(len(v))
}

// The periodic prompt on T = 10, written out, with the official loop's
// edge cases: width 0 acts as 1, width 2 keeps 3 steps, period 0 keeps
// nothing, a negative width is the official's crash.
func TestMaskPeriodicByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := zerosCodes(2, 3, 10)
	for _, c := range []struct {
		period, width int64
		want          []int64
	}{
		{3, 1, []int64{0, 1, 1, 0, 1, 1, 0, 1, 1, 0}},
		{3, 0, []int64{0, 1, 1, 0, 1, 1, 0, 1, 1, 0}},
		{3, 2, []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{4, 2, []int64{0, 0, 1, 0, 0, 0, 1, 0, 0, 0}},
		{4, 3, []int64{0, 0, 1, 0, 0, 0, 1, 0, 0, 0}},
		{5, 1, []int64{0, 1, 1, 1, 1, 0, 1, 1, 1, 1}},
		{-5, 1, []int64{0, 1, 1, 1, 1, 0, 1, 1, 1, 1}},
		{1, 1, []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{0, 1, []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{20, 1, []int64{0, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
	} {
		m, err := PeriodicMask(x, c.period, c.width, false, nil)
		require.NoError(t, err)
		everyRow(t, m, c.want, "periodic")
	}
	_, err := PeriodicMask(x, 3, -1, false, nil)
	assert.ErrorContains(t, err, "negative")
	_, err = PeriodicMask(x, -3, 1, true, maskRng(0))
	assert.Error(t, err)
	_, err = PeriodicMask(x, 3, 1, true, nil)
	assert.Error(t, err)
	m, err := TimeStretchMask(x, 3)
	require.NoError(t, err)
	everyRow(t, m, []int64{0, 1, 1, 0, 1, 1, 0, 1, 1, 0}, "time stretch")
	_, err = TimeStretchMask(x, 0)
	assert.Error(t, err)
}

// The random roll shifts the whole batch by one offset in [0, period),
// and a seed fixes it.
func TestMaskPeriodicRandomRoll(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := zerosCodes(2, 2, 9)
	rolls := map[string]bool{}
	for seed := range uint64(30) {
		m, err := PeriodicMask(x, 3, 1, true, maskRng(seed))
		require.NoError(t, err)
		r := row(t, m, 0, 0)
		everyRow(t, m, r, "one offset for the batch")
		off := -1
		for i, v := range r[:3] {
			if v == 0 {
				off = i
			}
		}
		want := []int64{1, 1, 1, 1, 1, 1, 1, 1, 1}
		for j := off; j < 9; j += 3 {
			want[j] = 0
		}
		assert.Equal(t, want, r)
		rolls[string(rune('0'+off))] = true
		again, _ := PeriodicMask(x, 3, 1, true, maskRng(seed))
		assert.Equal(t, r, row(t, again, 1, 1))
	}
	assert.Len(t, rolls, 3, "every offset in [0, 3) occurs")
}

// Prefix 2 and suffix 3 on T = 10; per-row counts; counts past T; the
// official's "count <= 0 keeps nothing".
func TestMaskInpaintByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := zerosCodes(2, 2, 10)
	m, err := Inpaint(x, []int64{2}, []int64{3})
	require.NoError(t, err)
	everyRow(t, m, []int64{0, 0, 1, 1, 1, 1, 1, 0, 0, 0}, "prefix 2 suffix 3")
	m, err = Inpaint(x, []int64{1, 0}, []int64{0, 4})
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, row(t, m, 0, 1))
	assert.Equal(t, []int64{1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, row(t, m, 1, 0))
	m, err = Inpaint(x, []int64{-2}, []int64{12})
	require.NoError(t, err)
	everyRow(t, m, make([]int64, 10), "suffix past T")
	_, err = Inpaint(x, []int64{1, 2, 3}, []int64{0})
	assert.Error(t, err)
	_, err = Inpaint(ts.MustZeros([]int64{2, 10}, gotch.Int64, gotch.CPU), []int64{1}, []int64{1})
	assert.ErrorContains(t, err, "[2 10]")
}

func TestMaskCodebooksByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := zerosCodes(1, 4, 3)
	full, err := FullMask(x)
	require.NoError(t, err)
	m, err := CodebookUnmask(full, 2)
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, values(t, m))
	assert.Equal(t, []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, values(t, full), "the input is left alone")
	m, _ = CodebookUnmask(full, -1) // Python's [:-1]
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1}, values(t, m))
	empty, err := EmptyMask(x)
	require.NoError(t, err)
	m, err = CodebookMask(empty, 3)
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1}, values(t, m))
	m, _ = CodebookMask(empty, 9)
	assert.Equal(t, make([]int64, 12), values(t, m))
	_, err = CodebookMask(ts.MustZeros([]int64{1, 4, 3}, gotch.Float, gotch.CPU), 1)
	assert.ErrorContains(t, err, "int64")
}

// AND keeps a prompt of either mask (min), OR only the common ones (max).
func TestMaskAndOrTruthTables(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	a := codesOf([]int64{0, 0, 1, 1}, 1, 1, 4)
	b := codesOf([]int64{0, 1, 0, 1}, 1, 1, 4)
	m, err := MaskAnd(a, b)
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 0, 0, 1}, values(t, m))
	m, err = MaskOr(a, b)
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 1, 1, 1}, values(t, m))
	_, err = MaskAnd(a, codesOf([]int64{0, 1, 0}, 1, 1, 3))
	assert.ErrorContains(t, err, "[1 1 4] and [1 1 3]")
	// AND, like torch.min, takes any values; OR refuses non-binary
	two := codesOf([]int64{2, 2, 2, 2}, 1, 1, 4)
	m, err = MaskAnd(two, b)
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 1, 0, 1}, values(t, m))
	_, err = MaskOr(a, two)
	assert.ErrorContains(t, err, "binary")
}

func TestMaskApplyByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := codesOf([]int64{5, 6, 7, 8, 9, 10}, 1, 2, 3)
	mask := codesOf([]int64{1, 0, 0, 0, 1, 1}, 1, 2, 3)
	got, err := ApplyMask(x, mask, 1024)
	require.NoError(t, err)
	assert.Equal(t, []int64{1024, 6, 7, 8, 1024, 1024}, values(t, got))
	_, err = ApplyMask(x, codesOf([]int64{1, 0, 2, 0, 1, 1}, 1, 2, 3), 1024)
	assert.ErrorContains(t, err, "binary")
	_, err = ApplyMask(x, codesOf([]int64{1, 0, 0, 1, 1, 1}, 1, 3, 2), 1024)
	assert.ErrorContains(t, err, "mask [1 3 2] and x [1 2 3]")
	_, err = ApplyMask(x, codesOf([]int64{1, 0, 0, 0, 1, 1}, 6), 1024)
	assert.ErrorContains(t, err, "[6]")
	_, err = ApplyMask(x, mask.MustTotype(gotch.Float, false), 1024)
	assert.ErrorContains(t, err, "int64")
}

// Random masks with probability gamma(r) per sample: everything at r = 0,
// (almost) nothing at r = 1 (gamma's floor is 1e-10), cos(pi/4) = 0.707 of
// the tokens at r = 0.5; a seed fixes the mask.
func TestMaskRandomRates(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := zerosCodes(4, 8, 500)
	m, err := Random(x, BatchScalar(0, 4), maskRng(1))
	require.NoError(t, err)
	assert.Equal(t, 1.0, mean(values(t, m)))
	m, err = Random(x, BatchScalar(1, 4), maskRng(1))
	require.NoError(t, err)
	assert.LessOrEqual(t, mean(values(t, m)), 1.0/16000)
	m, err = Random(x, BatchScalar(0.5, 1), maskRng(1))
	require.NoError(t, err)
	assert.InDelta(t, math.Cos(math.Pi/4), mean(values(t, m)), 0.02) // sd 0.0036
	again, _ := Random(x, BatchScalar(0.5, 1), maskRng(1))
	assert.Equal(t, values(t, m), values(t, again))
	other, _ := Random(x, BatchScalar(0.5, 1), maskRng(2))
	assert.NotEqual(t, values(t, m), values(t, other))
	// per-sample r
	m, err = Random(x, ts.MustOfSlice([]float32{0, 1, 0, 1}), maskRng(3))
	require.NoError(t, err)
	v := values(t, m)
	assert.Equal(t, 1.0, mean(v[:4000]))
	assert.Equal(t, 0.0, mean(v[4000:8000]))
	_, err = Random(x, BatchScalar(0.5, 3), maskRng(1))
	assert.Error(t, err)
	_, err = Random(x, BatchScalar(0.5, 4), nil)
	assert.Error(t, err)
	// the schedule itself
	g := GammaTensor(ts.MustOfSlice([]float32{0, 0.5, 1})).Float64Values()
	assert.InDelta(t, 1, g[0], 1e-7)
	assert.InDelta(t, math.Sqrt(0.5), g[1], 1e-7)
	assert.InDelta(t, 1e-10, g[2], 1e-17)
	assert.InDelta(t, 0.5, InvGamma(Gamma(0.5)), 1e-12)
	assert.Equal(t, 1e-10, Gamma(1))
}

// LinearRandom uses r itself, and (the official's broadcast) a vector r
// runs along time.
func TestMaskLinearRandom(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := zerosCodes(2, 4, 1000)
	m, err := LinearRandom(x, BatchScalar(1, 1), maskRng(1))
	require.NoError(t, err)
	assert.Equal(t, 1.0, mean(values(t, m)))
	m, _ = LinearRandom(x, BatchScalar(0, 1), maskRng(1))
	assert.Equal(t, 0.0, mean(values(t, m)))
	m, _ = LinearRandom(x, BatchScalar(0.3, 1), maskRng(1))
	assert.InDelta(t, 0.3, mean(values(t, m)), 0.03)
	_, err = LinearRandom(x, BatchScalar(0.3, 2), maskRng(1))
	assert.ErrorContains(t, err, "time")
	x4 := zerosCodes(2, 3, 4)
	m, err = LinearRandom(x4, ts.MustOfSlice([]float32{1, 0, 0, 1}), maskRng(1))
	require.NoError(t, err)
	everyRow(t, m, []int64{1, 0, 0, 1}, "r along time")
}

// Dropout masks each kept position with probability p and leaves masked
// ones masked.
func TestMaskDropout(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := zerosCodes(2, 4, 1000)
	p, err := PeriodicMask(x, 2, 1, false, nil) // half kept
	require.NoError(t, err)
	m, err := Dropout(p, 0, maskRng(1))
	require.NoError(t, err)
	assert.Equal(t, values(t, p), values(t, m))
	m, _ = Dropout(p, 1, maskRng(1))
	assert.Equal(t, 1.0, mean(values(t, m)))
	m, _ = Dropout(p, 0.5, maskRng(1))
	pv, mv := values(t, p), values(t, m)
	for i := range pv {
		if pv[i] == 1 {
			require.Equal(t, int64(1), mv[i])
		}
	}
	assert.InDelta(t, 0.75, mean(mv), 0.02)
	_, err = Dropout(p, 1.5, maskRng(1))
	assert.Error(t, err)
	_, err = Dropout(codesOf([]int64{0, 3}, 1, 1, 2), 0.5, maskRng(1))
	assert.ErrorContains(t, err, "binary")
}

// onset_mask's span [i - width, i + width) around each onset frame, with
// its quirks: 2*width steps from i - width; an onset before `width` unmasks nothing (a negative slice
// start), one past the end is clamped to the last frame, none gives an
// empty mask.
func TestMaskOnsetByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	z := zerosCodes(1, 2, 20)
	// sr 10, hop 1: frame = int(t * 10)
	m, err := OnsetMask(z, []float64{0.5, 0.05, 5.0}, 10, 1, 2)
	require.NoError(t, err)
	everyRow(t, m, []int64{1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}, "onsets 5, 0, 19")
	m, err = OnsetMask(z, nil, 10, 1, 2)
	require.NoError(t, err)
	everyRow(t, m, make([]int64, 20), "no onsets")
	assert.Equal(t, []int64{2, 0, 1}, TimeToFrames([]float64{0.05, 0.0049, 0.034}, 44100, 768))
}

// OnsetMaskFromAudio on clicks keeps spans at the clicks' codec frames.
func TestMaskOnsetFromAudio(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const sr, hop = 22050, 256
	y, at := clickTrack([]float64{0.5, 1.0, 1.5}, sr, 2)
	T := int64(len(y) / hop)
	m, err := OnsetMaskFromAudio(zerosCodes(1, 1, T), y, sr, hop, 3)
	require.NoError(t, err)
	r := row(t, m, 0, 0)
	kept := 0
	for _, v := range r {
		kept += int(1 - v)
	}
	assert.Equal(t, 3*6, kept, "three spans of 2*width")
	for _, a := range at {
		f := a / hop
		near := false
		for d := -5; d <= 5; d++ {
			near = near || (f+d >= 0 && f+d < int(T) && r[f+d] == 0)
		}
		assert.True(t, near, "a kept span near frame %d", f)
	}
}

func TestMaskBeatByHand(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	// sr 100, hop 10: beat frames ceil(t*10); 1 s is 10 frames
	o := DefaultBeatMaskOptions()
	o.AfterBeatS = 0.2 // 2 frames
	m, err := MakeBeatMask([]float64{0.1, 0.5}, []float64{0.5}, 1, 2, 100, 10, o, nil)
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 2, 10}, m.MustSize())
	everyRow(t, m, []int64{1, 0, 0, 1, 1, 0, 0, 1, 1, 1}, "beats at 1 and 5")
	o.Dropout = 0.5
	_, err = MakeBeatMask([]float64{0.1}, nil, 1, 2, 100, 10, o, nil)
	assert.Error(t, err, "dropout needs an rng")
	o.Dropout, o.BeatDownsampleFactor = 0, -1
	_, err = MakeBeatMask([]float64{0.1}, nil, 1, 2, 100, 10, o, nil)
	assert.Error(t, err)
}

// BuildMask composes as the app does: with rand_mask_intensity 1 and no
// dropout only the periodic roll draws, so the same seed gives the same
// periodic prompt with and without the onset mask, and the onset mask
// only adds masked positions (OR).
func TestMaskBuild(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const sr, hop = 22050, 256
	y, _ := clickTrack([]float64{0.5, 1.0}, sr, 1.5)
	T := int64(len(y) / hop)
	z := zerosCodes(1, 14, T)
	o := DefaultBuildMaskOptions(sr, hop)
	o.OnsetMaskWidth = 0
	o.PrefixS = 0.05 // 5 frames
	m, err := BuildMask(z, o, MaskPrompt{}, maskRng(7))
	require.NoError(t, err)
	p, _ := PeriodicMask(z, 3, 1, true, maskRng(7))
	in, _ := Inpaint(z, []int64{5}, []int64{0})
	want, _ := MaskAnd(p, in)
	want, _ = CodebookMask(want, 9)
	assert.Equal(t, values(t, want), values(t, m))
	for c := int64(9); c < 14; c++ {
		assert.Equal(t, ones(T), row(t, m, 0, c), "codebooks from 9 masked")
	}

	o.OnsetMaskWidth = 2
	withOnsets, err := BuildMask(z, o, MaskPrompt{Samples: y, SampleRate: sr}, maskRng(7))
	require.NoError(t, err)
	om, _ := OnsetMaskFromAudio(z, y, sr, hop, 2)
	want, _ = MaskOr(m, om)
	assert.Equal(t, values(t, want), values(t, withOnsets))

	_, err = BuildMask(z, o, MaskPrompt{}, maskRng(7))
	assert.ErrorContains(t, err, "signal")
	o.OnsetMaskWidth, o.BeatMaskWidth = 0, 50
	_, err = BuildMask(z, o, MaskPrompt{Samples: y, SampleRate: sr}, maskRng(7))
	assert.ErrorContains(t, err, "beat")
	_, err = BuildMask(z, o, MaskPrompt{}, nil)
	assert.Error(t, err)
	assert.Equal(t, 1, ts.ScopeDepth(), "no scope left open")
}

type maskFixture struct {
	Commit string `json:"commit"`
	Cases  []struct {
		Name      string          `json:"name"`
		Fn        string          `json:"fn"`
		Shape     []int64         `json:"shape"`
		Shape2    []int64         `json:"shape2"`
		Want      json.RawMessage `json:"want"`
		WantShape []int64         `json:"want_shape"`
		Error     string          `json:"error"`
		Mask      []int64         `json:"mask"`
		Mask2     []int64         `json:"mask2"`
		X         []int64         `json:"x"`
		MaskToken int64           `json:"mask_token"`
		NPrefix   []int64         `json:"n_prefix"`
		NSuffix   []int64         `json:"n_suffix"`
		Period    int64           `json:"period"`
		Width     int64           `json:"width"`
		Roll      bool            `json:"random_roll"`
		Stretch   int64           `json:"stretch_factor"`
		N         int64           `json:"n"`
		Start     int64           `json:"start"`
		R         []float32       `json:"r"`
		Beats     []float64       `json:"beats"`
		Downbeats []float64       `json:"downbeats"`
		Duration  float64         `json:"duration"`
		SR        int             `json:"sample_rate"`
		Hop       int             `json:"hop_length"`
		NCB       int64           `json:"n_codebooks"`
		Options   struct {
			Before *float64 `json:"before_beat_s"`
			After  *float64 `json:"after_beat_s"`
			Down   *bool    `json:"mask_downbeats"`
			Up     *bool    `json:"mask_upbeats"`
			BeatK  int      `json:"beat_downsample_factor"`
			DownK  int      `json:"downbeat_downsample_factor"`
			Invert *bool    `json:"invert"`
		} `json:"options"`
	} `json:"cases"`
}

// The fixtures come from testdata/gen_mask_fixtures.py, which RUNS the
// official vampnet/mask.py (and interface.py's make_beat_mask) at
// dce1655 on Debian's torch 1.13: every deterministic mask, and the
// inputs its assertions refuse, compared exactly.
func TestMaskOfficialFixtures(t *testing.T) {
	b, err := os.ReadFile("testdata/mask_fixtures.json")
	require.NoError(t, err)
	var fx maskFixture
	require.NoError(t, json.Unmarshal(b, &fx))
	require.Equal(t, "dce1655ecd9f6044ce9e13e95e1423a50837a615", fx.Commit)
	require.NotEmpty(t, fx.Cases)
	for _, c := range fx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			s := ts.NewScope()
			defer s.Close()
			if c.Fn == "gamma" || c.Fn == "invgamma" {
				var want []float64
				require.NoError(t, json.Unmarshal(c.Want, &want))
				f := GammaTensor
				if c.Fn == "invgamma" {
					f = InvGammaTensor
				}
				got := f(ts.MustOfSlice(c.R))
				require.Equal(t, gotch.Float, got.DType())
				for i, g := range got.Float64Values() {
					assert.InDelta(t, want[i], g, 1e-7*math.Max(1e-3, math.Abs(want[i])), "r %v", c.R[i])
				}
				return
			}
			shape2 := c.Shape2
			if shape2 == nil {
				shape2 = c.Shape
			}
			z := zerosCodes(c.Shape...)
			var got *ts.Tensor
			var err error
			switch c.Fn {
			case "full_mask":
				got, err = FullMask(z)
			case "empty_mask":
				got, err = EmptyMask(z)
			case "inpaint":
				got, err = Inpaint(z, c.NPrefix, c.NSuffix)
			case "periodic_mask":
				got, err = PeriodicMask(z, c.Period, c.Width, c.Roll, maskRng(0))
			case "time_stretch_mask":
				got, err = TimeStretchMask(z, c.Stretch)
			case "codebook_unmask":
				got, err = CodebookUnmask(codesOf(c.Mask, c.Shape...), c.N)
			case "codebook_mask":
				got, err = CodebookMask(codesOf(c.Mask, c.Shape...), c.Start)
			case "mask_and":
				got, err = MaskAnd(codesOf(c.Mask, c.Shape...), codesOf(c.Mask2, shape2...))
			case "mask_or":
				got, err = MaskOr(codesOf(c.Mask, c.Shape...), codesOf(c.Mask2, shape2...))
			case "apply_mask":
				got, err = ApplyMask(codesOf(c.X, c.Shape...), codesOf(c.Mask, shape2...), c.MaskToken)
			case "make_beat_mask":
				o := DefaultBeatMaskOptions()
				setF := func(dst *float64, v *float64) {
					if v != nil {
						*dst = *v
					}
				}
				setB := func(dst *bool, v *bool) {
					if v != nil {
						*dst = *v
					}
				}
				setF(&o.BeforeBeatS, c.Options.Before)
				setF(&o.AfterBeatS, c.Options.After)
				setB(&o.MaskDownbeats, c.Options.Down)
				setB(&o.MaskUpbeats, c.Options.Up)
				setB(&o.Invert, c.Options.Invert)
				o.BeatDownsampleFactor, o.DownbeatDownsampleFactor = c.Options.BeatK, c.Options.DownK
				got, err = MakeBeatMask(c.Beats, c.Downbeats, c.Duration, c.NCB, c.SR, c.Hop, o, nil)
			default:
				t.Fatalf("unknown fn %q", c.Fn)
			}
			if c.Error != "" {
				assert.Error(t, err, "the official: %s", c.Error)
				return
			}
			require.NoError(t, err)
			var want []int64
			require.NoError(t, json.Unmarshal(c.Want, &want))
			assert.Equal(t, c.WantShape, got.MustSize())
			assert.Equal(t, want, values(t, got))
		})
	}
}
