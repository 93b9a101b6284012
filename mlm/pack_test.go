package mlm

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// packFixture is testdata/pack_fixture.json, written by pack_fixture.py:
// a transcription of the official BertDataProcessor run on a synthetic
// corpus of documents with paragraphs of 20-200 tokens.
type packFixture struct {
	MaxLen    int         `json:"max_len"`
	Docs      [][][2]int  `json:"docs"`     // per document, per paragraph: characters, tokens
	Draws     []drawn     `json:"draws"`    // every random.random() and randint() in order
	Examples  [][][2]int  `json:"examples"` // per example, [paragraph, tokens taken] runs
	Lengths   []int       `json:"lengths"`  // tokens per example, [CLS] and [SEP] included
	KeptShare float64     `json:"kept_share"`
	Own       packDistrib `json:"own"` // 20 packings with Python's own generator
}

type drawn struct {
	Kind  string
	Value float64
}

func (d *drawn) UnmarshalJSON(b []byte) error {
	var v [2]any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	d.Kind, d.Value = v[0].(string), v[1].(float64)
	return nil
}

type packDistrib struct {
	Examples  int       `json:"examples"`
	Mean      float64   `json:"mean"`
	Stdev     float64   `json:"stdev"`
	Deciles   []float64 `json:"deciles"`
	KeptShare float64   `json:"kept_share"`
}

// replay hands the packer Python's recorded draws, checking each is of
// the kind the official code draws at that point.
type replay struct {
	t      *testing.T
	draws  []drawn
	maxLen int
}

func (r *replay) next(kind string) float64 {
	require.NotEmpty(r.t, r.draws, "the packer drew more than the official code")
	d := r.draws[0]
	r.draws = r.draws[1:]
	require.Equal(r.t, kind, d.Kind, "the packer drew a different kind of number than the official code")
	return d.Value
}

func (r *replay) Float64() float64 { return r.next("f") }
func (r *replay) IntN(n int) int {
	require.Equal(r.t, r.maxLen-4, n, "randint(5, max_length)")
	return int(r.next("i")) - 5
}

func loadPackFixture(t *testing.T) (*packFixture, [][]Paragraph, int) {
	b, err := os.ReadFile(filepath.Join("testdata", "pack_fixture.json"))
	require.NoError(t, err)
	var f packFixture
	require.NoError(t, json.Unmarshal(b, &f))
	// A token's id says its paragraph (over the corpus) and position; a
	// token is a word, as the fixture's whitespace tokenizer makes it.
	var docs [][]Paragraph
	para, tokens := 0, 0
	for _, d := range f.Docs {
		var ps []Paragraph
		for _, pc := range d {
			p := Paragraph{Chars: pc[0]}
			for k := range min(pc[1], 512) {
				p.IDs = append(p.IDs, int64(para)<<16|int64(k))
				p.Words = append(p.Words, k)
			}
			if pc[0] >= 80 {
				tokens += len(p.IDs)
			}
			ps = append(ps, p)
			para++
		}
		docs = append(docs, ps)
	}
	return &f, docs, tokens
}

const testCLS, testSEP = -1, -2

// With Python's draws replayed, the Go packer makes exactly the official
// packer's examples: the same count, lengths and paragraphs, drawing the
// same numbers in the same order.
func TestPackerMatchesOfficialExactly(t *testing.T) {
	f, docs, _ := loadPackFixture(t)
	r := &replay{t: t, draws: f.Draws, maxLen: f.MaxLen}
	packer := NewPacker(f.MaxLen, r)
	var got []Sequence
	for _, d := range docs {
		got = append(got, packer.Document(d, testCLS, testSEP)...)
	}
	assert.Empty(t, r.draws, "draws left over")
	require.Len(t, got, len(f.Lengths))
	for i, s := range got {
		require.Equal(t, f.Lengths[i], len(s.IDs), "example %d", i)
		assert.Equal(t, int64(testCLS), s.IDs[0])
		assert.Equal(t, int64(testSEP), s.IDs[len(s.IDs)-1])
		var runs [][2]int
		for k, id := range s.IDs[1 : len(s.IDs)-1] {
			p := int(id >> 16)
			if n := len(runs); n > 0 && runs[n-1][0] == p {
				runs[n-1][1]++
			} else {
				runs = append(runs, [2]int{p, 1})
			}
			if k > 0 {
				assert.GreaterOrEqual(t, s.Words[k+1], s.Words[k], "word ids run across the example")
			}
		}
		require.Equal(t, f.Examples[i], runs, "example %d: paragraphs and token counts", i)
		assert.Equal(t, -1, s.Words[0])
		assert.Equal(t, -1, s.Words[len(s.Words)-1])
	}
}

// With its own generator the Go packer's example lengths follow the
// official packer's distribution (20 packings of the corpus each side):
// mean, deciles and the share of tokens kept.
func TestPackerLengthDistribution(t *testing.T) {
	f, docs, tokens := loadPackFixture(t)
	var lengths []float64
	kept := 0
	for seed := range 20 {
		packer := NewPacker(f.MaxLen, rand.New(rand.NewPCG(uint64(seed), 7)))
		for _, d := range docs {
			for _, s := range packer.Document(d, testCLS, testSEP) {
				lengths = append(lengths, float64(len(s.IDs)))
				kept += len(s.IDs) - 2
			}
		}
	}
	var mean float64
	for _, l := range lengths {
		mean += l / float64(len(lengths))
	}
	t.Logf("Go: %d examples, mean %.1f tokens, %.1f%% of tokens kept; official: %d, mean %.1f, %.1f%%",
		len(lengths), mean, 100*float64(kept)/20/float64(tokens), f.Own.Examples, f.Own.Mean, 100*f.Own.KeptShare)
	assert.InEpsilon(t, float64(f.Own.Examples), float64(len(lengths)), 0.02)
	assert.InEpsilon(t, f.Own.Mean, mean, 0.02)
	assert.InDelta(t, f.Own.KeptShare, float64(kept)/20/float64(tokens), 0.01)
	dec := deciles(lengths)
	for i := range dec {
		assert.InEpsilon(t, f.Own.Deciles[i], dec[i], 0.05, "decile %d", i+1)
	}
	// The replayed run's numbers are of the same corpus: about half the text kept.
	assert.InDelta(t, 0.55, f.KeptShare, 0.05)
}

// deciles is Python's statistics.quantiles(x, n=10) (the exclusive method).
func deciles(x []float64) []float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	m := len(s) + 1
	var out []float64
	for i := 1; i < 10; i++ {
		j := i * m / 10
		delta := float64(i*m - j*10)
		out = append(out, (s[j-1]*(10-delta)+s[j]*delta)/10)
	}
	return out
}

// The packer's edge cases on hand-made paragraphs: short and blank lines
// are dropped, a document's end closes its example, and a long paragraph
// is cut to max_len - 2 tokens.
func TestPackerEdgeCases(t *testing.T) {
	para := func(chars, n, base int) Paragraph {
		p := Paragraph{Chars: chars}
		for k := range n {
			p.IDs = append(p.IDs, int64(base+k))
			p.Words = append(p.Words, k/2) // two tokens a word
		}
		return p
	}
	always := rand.New(rand.NewPCG(1, 1))
	packer := NewPacker(16, always)
	got := packer.Document([]Paragraph{para(79, 5, 100), {}, para(80, 4, 200)}, testCLS, testSEP)
	require.Len(t, got, 1, "only the 80-character paragraph is kept, closed at the document's end")
	assert.Equal(t, []int64{testCLS, 200, 201, 202, 203, testSEP}, got[0].IDs)
	assert.Equal(t, []int{-1, 0, 0, 1, 1, -1}, got[0].Words)
	assert.Empty(t, packer.Document([]Paragraph{para(10, 30, 0)}, testCLS, testSEP))
	long := packer.Document([]Paragraph{para(500, 40, 0)}, testCLS, testSEP)
	require.NotEmpty(t, long)
	assert.LessOrEqual(t, len(long[0].IDs), 16)
	assert.Equal(t, int64(testSEP), long[0].IDs[len(long[0].IDs)-1])
	assert.Equal(t, "a b c", cleanLine("  a ()b\nc "))
}
