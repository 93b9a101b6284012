package cocoop

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fewshotFixture is testdata/fewshot_python.json, written by
// testdata/gen_fewshot.py with CPython's random module and the official
// few-shot and base-to-new code.
type fewshotFixture struct {
	Raw []struct {
		Seed  int64    `json:"seed"`
		Words []uint32 `json:"words"`
		Below []int    `json:"below"`
		Bits  []uint64 `json:"bits"`
	} `json:"raw"`
	Sample []struct {
		Seed int64 `json:"seed"`
		N    int   `json:"n"`
		K    int   `json:"k"`
		Got  []int `json:"got"`
	} `json:"sample"`
	FewShot []struct {
		Seed  int64    `json:"seed"`
		Shots int      `json:"shots"`
		Got   []string `json:"got"`
		Base  [][2]any `json:"base"`
		New   [][2]any `json:"new"`
	} `json:"fewshot"`
	Items [][3]any `json:"items"`
}

func loadFewshotFixture(t *testing.T) fewshotFixture {
	t.Helper()
	b, err := os.ReadFile("testdata/fewshot_python.json")
	require.NoError(t, err)
	var f fewshotFixture
	require.NoError(t, json.Unmarshal(b, &f))
	return f
}

// The generator is CPython's: the same words, bounded draws and bit
// draws after random.seed(n), seeds past 32 bits included.
func TestPyRandomMatchesCPython(t *testing.T) {
	f := loadFewshotFixture(t)
	require.NotEmpty(t, f.Raw)
	for _, c := range f.Raw {
		r := NewPyRandom(c.Seed)
		for i, w := range c.Words {
			require.Equal(t, uint64(w), r.GetRandBits(32), "seed %d word %d", c.Seed, i)
		}
		for i, n := range []int{1, 2, 3, 7, 100, 1000, 1<<31 + 3} {
			require.Equal(t, c.Below[i], r.RandBelow(n), "seed %d randbelow(%d)", c.Seed, n)
		}
		for i, k := range []int{1, 5, 31, 33, 64} {
			require.Equal(t, c.Bits[i], r.GetRandBits(k), "seed %d getrandbits(%d)", c.Seed, k)
		}
	}
	for _, c := range f.Sample {
		got := NewPyRandom(c.Seed).Sample(c.N, c.K)
		if c.K == 0 {
			assert.Empty(t, got)
			continue
		}
		assert.Equal(t, c.Got, got, "random.sample(range(%d), %d) after seed %d", c.N, c.K, c.Seed)
	}
}

func fixtureItems(f fewshotFixture) []Datum {
	var items []Datum
	for _, it := range f.Items {
		items = append(items, Datum{ImPath: it[0].(string), Label: int(it[1].(float64)), ClassName: it[2].(string)})
	}
	return items
}

// K-shot sampling and the base/new split pick what the official code
// picks, item for item, for every seed and shot count of the fixture
// (classes of fewer than K items kept whole, labels first seen out of
// order).
func TestFewShotAndSubsampleMatchTheOfficialCode(t *testing.T) {
	f := loadFewshotFixture(t)
	items := fixtureItems(f)
	require.NotEmpty(t, f.FewShot)
	for _, c := range f.FewShot {
		fs := FewShot(items, c.Shots, c.Seed)
		var got []string
		for _, it := range fs {
			got = append(got, it.ImPath)
		}
		require.Equal(t, c.Got, got, "seed %d, %d shots", c.Seed, c.Shots)
		for mode, want := range map[string][][2]any{SubsampleBase: c.Base, SubsampleNew: c.New} {
			out, err := Subsample(mode, fs)
			require.NoError(t, err)
			require.Len(t, out[0], len(want), mode)
			for i, it := range out[0] {
				assert.Equal(t, want[i][0], it.ImPath, "%s item %d", mode, i)
				assert.Equal(t, int(want[i][1].(float64)), it.Label, "%s item %d label", mode, i)
			}
		}
	}
}

// The same seed gives the same few-shot set; another seed another one.
func TestFewShotIsDeterministicBySeed(t *testing.T) {
	var items []Datum
	for y := range 5 {
		for i := range 30 {
			items = append(items, Datum{ImPath: string(rune('a'+y)) + string(rune('A'+i)), Label: y, ClassName: "c"})
		}
	}
	a, b, c := FewShot(items, 16, 1), FewShot(items, 16, 1), FewShot(items, 16, 2)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	assert.Len(t, a, 80)
	perClass := map[int]int{}
	seen := map[string]bool{}
	for _, it := range a {
		perClass[it.Label]++
		assert.False(t, seen[it.ImPath], "no item twice")
		seen[it.ImPath] = true
	}
	for y := range 5 {
		assert.Equal(t, 16, perClass[y])
	}
	assert.Equal(t, items, FewShot(items, 0, 1), "k < 1 keeps everything")
	assert.Equal(t, items, FewShot(items, -1, 1))
}

// Hand examples of subsample_classes: labels sorted, base is the first
// half rounded up, each half relabelled from 0 in the sorted order, and
// the later splits follow the first split's labels.
func TestSubsampleBaseNewByHand(t *testing.T) {
	d := func(path string, y int) Datum { return Datum{ImPath: path, Label: y, ClassName: string(rune('a' + y))} }
	train := []Datum{d("t9", 9), d("t2", 2), d("t5", 5), d("t7", 7), d("t2b", 2)}
	test := []Datum{d("s7", 7), d("s3", 3), d("s9", 9), d("s2", 2), d("s5", 5)}
	base, err := Subsample(SubsampleBase, train, test)
	require.NoError(t, err)
	// labels {2, 5, 7, 9}: base {2, 5} -> 0, 1; new {7, 9} -> 0, 1; label 3 (test only) is dropped
	assert.Equal(t, []Datum{d("t2", 2), d("t5", 5), d("t2b", 2)}[0].ImPath, base[0][0].ImPath)
	assert.Equal(t, []int{0, 1, 0}, labels(base[0]))
	assert.Equal(t, []string{"t2", "t5", "t2b"}, paths(base[0]))
	assert.Equal(t, []string{"s2", "s5"}, paths(base[1]))
	assert.Equal(t, []int{0, 1}, labels(base[1]))
	nw, err := Subsample(SubsampleNew, train, test)
	require.NoError(t, err)
	assert.Equal(t, []string{"t9", "t7"}, paths(nw[0]))
	assert.Equal(t, []int{1, 0}, labels(nw[0]))
	assert.Equal(t, []string{"s7", "s9"}, paths(nw[1]))
	assert.Equal(t, []int{0, 1}, labels(nw[1]))
	names, err := ClassNames(nw[0])
	require.NoError(t, err)
	assert.Equal(t, []string{"h", "j"}, names, "class names follow the new labels")

	// An odd count: 5 labels give 3 base and 2 new.
	odd := []Datum{d("a", 0), d("b", 1), d("c", 2), d("d", 3), d("e", 4)}
	b, _ := Subsample(SubsampleBase, odd)
	n, _ := Subsample(SubsampleNew, odd)
	assert.Equal(t, []string{"a", "b", "c"}, paths(b[0]))
	assert.Equal(t, []string{"d", "e"}, paths(n[0]))
	all, _ := Subsample(SubsampleAll, odd)
	assert.Equal(t, odd, all[0])
	_, err = Subsample("half", odd)
	assert.ErrorContains(t, err, `subsample "half"`)
}

func TestClassNamesRefusesGapsAndConflicts(t *testing.T) {
	_, err := ClassNames([]Datum{{Label: 0, ClassName: "a"}, {Label: 2, ClassName: "c"}})
	assert.ErrorContains(t, err, "no item has label 1")
	_, err = ClassNames([]Datum{{Label: 0, ClassName: "a"}, {Label: 0, ClassName: "b"}})
	assert.ErrorContains(t, err, `label 0 has two class names`)
	_, err = ClassNames(nil)
	assert.ErrorContains(t, err, "no items, so no classes")
}

// Templates: zsclip.py's custom template alone; with the ensemble, the
// seven IMAGENET_TEMPLATES_SELECT plus the custom one except on ImageNet,
// where ZeroshotCLIP2 adds none; a template the user sets is kept there.
func TestZeroShotTemplates(t *testing.T) {
	got, err := Templates("OxfordPets", false, "")
	require.NoError(t, err)
	assert.Equal(t, []string{"a photo of a {}, a type of pet."}, got)
	got, err = Templates("OxfordPets", true, "")
	require.NoError(t, err)
	assert.Equal(t, append(append([]string(nil), ImageNetTemplatesSelect...), "a photo of a {}, a type of pet."), got)
	got, err = Templates("ImageNet", true, "")
	require.NoError(t, err)
	assert.Equal(t, ImageNetTemplatesSelect, got)
	got, err = Templates("ImageNet", true, "a good photo of a {}.")
	require.NoError(t, err)
	assert.Equal(t, "a good photo of a {}.", got[len(got)-1])
	assert.Len(t, got, 8)
	_, err = Templates("Scenes", false, "no slot")
	assert.ErrorContains(t, err, "must hold {} once")
}

func labels(items []Datum) []int {
	var out []int
	for _, it := range items {
		out = append(out, it.Label)
	}
	return out
}

func paths(items []Datum) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.ImPath)
	}
	return out
}
