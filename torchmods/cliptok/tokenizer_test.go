package cliptok

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The references are testdata/gen_ids.py's, made with clip/simple_tokenizer.py
// and clip.tokenize of openai/CLIP at d05afc436d78f1c48dc0dbf8e5980a9d471f35f6:
// "ids" with a stub ftfy whose fix_text is the identity, "ids_ftfy" with
// ftfy 6.3.1.

type refCase struct {
	Text     string  `json:"text"`
	IDs      []int64 `json:"ids"`
	IDsFTFY  []int64 `json:"ids_ftfy"`
	Mojibake bool    `json:"mojibake"`
	Decoded  string  `json:"decoded"`
	Tokenize []int64 `json:"tokenize"`
	TooLong  bool    `json:"too_long"`
}

type refFile struct {
	SOT, EOT  int64
	VocabSize int `json:"vocab_size"`
	Cases     []refCase
}

func loadRef(t *testing.T) refFile {
	t.Helper()
	b, err := os.ReadFile("testdata/ids.json")
	require.NoError(t, err)
	var r refFile
	require.NoError(t, json.Unmarshal(b, &r))
	require.NotEmpty(t, r.Cases)
	return r
}

func TestDefaultVocabulary(t *testing.T) {
	ref := loadRef(t)
	tok := Default()
	assert.Equal(t, ref.VocabSize, tok.VocabSize())
	assert.Equal(t, 49408, tok.VocabSize())
	assert.Equal(t, ref.SOT, tok.SOT())
	assert.Equal(t, ref.EOT, tok.EOT())
	assert.Equal(t, int64(49406), tok.SOT())
	assert.Equal(t, int64(49407), tok.EOT())
	assert.Same(t, tok, Default(), "loaded once")
}

// Without its ftfy fixes, Encode is the official encode with ftfy.fix_text
// as the identity on every string; with them it is the official encode
// with ftfy 6.3.1 on every string whose mojibake ftfy does not repair.
func TestEncodeMatchesOfficial(t *testing.T) {
	ref := loadRef(t)
	tok := Default()
	same, sameFTFY, mojibake := 0, 0, 0
	for i, c := range ref.Cases {
		got := tok.encodeCleaned(clean(c.Text, false))
		if assert.Equal(t, c.IDs, nonNil(got), "case %d %q without ftfy", i, c.Text) {
			same++
		}
		got = tok.Encode(c.Text)
		if c.Mojibake {
			mojibake++
			t.Logf("case %d %q: ftfy repairs mojibake here, which Clean does not: %v, ftfy's %v", i, c.Text, got, c.IDsFTFY)
			continue
		}
		if assert.Equal(t, c.IDsFTFY, nonNil(got), "case %d %q with ftfy", i, c.Text) {
			sameFTFY++
		}
	}
	t.Logf("%d of %d strings equal without ftfy; %d of %d equal with ftfy (%d mojibake left out)",
		same, len(ref.Cases), sameFTFY, len(ref.Cases)-mojibake, mojibake)
}

func nonNil(ids []int64) []int64 {
	if ids == nil {
		return []int64{}
	}
	return ids
}

func TestDecodeMatchesOfficial(t *testing.T) {
	ref := loadRef(t)
	tok := Default()
	for i, c := range ref.Cases {
		assert.Equal(t, c.Decoded, tok.Decode(c.IDs), "case %d %q", i, c.Text)
	}
	// Bytes cut inside a character decode as Python's errors="replace".
	euro := tok.Encode("€") // one token or more, three bytes
	assert.Equal(t, "€ ", tok.Decode(euro))
	assert.Equal(t, "", tok.Decode([]int64{-1, 49408}), "ids outside the vocabulary are skipped")
}

func TestDecodeUTF8Replace(t *testing.T) {
	for in, want := range map[string]string{
		"a\xe2\x82":         "a\ufffd",            // a cut 3-byte sequence: one replacement
		"\xe2\x82\xac":      "€",                  // whole
		"\xff\xfe":          "\ufffd\ufffd",       // bytes that start nothing
		"\xed\xa0\x80":      "\ufffd\ufffd\ufffd", // a surrogate: ED then two stray continuations
		"\xf0\x9f\x98":      "\ufffd",
		"\xf0\x9f\x98\x80x": "😀x",
		"\xc0\xaf":          "\ufffd\ufffd",
		"\xe0\x80\x80":      "\ufffd\ufffd\ufffd",
		"\xf4\x90\x80\x80":  "\ufffd\ufffd\ufffd\ufffd",
	} {
		assert.Equal(t, want, decodeUTF8Replace([]byte(in)), "%q", in)
	}
}

func TestTokenizeMatchesOfficial(t *testing.T) {
	ref := loadRef(t)
	tok := Default()
	var texts []string
	for _, c := range ref.Cases {
		texts = append(texts, c.Text)
	}
	// The references were made with the stub ftfy; strings ftfy changes
	// are compared through Encode above.
	rows, err := tok.Tokenize(texts, 77, true)
	require.NoError(t, err)
	for i, c := range ref.Cases {
		if !equalIDs(c.IDs, c.IDsFTFY) {
			continue
		}
		assert.Equal(t, c.Tokenize, rows[i], "case %d %q", i, c.Text)
		_, err := tok.Tokenize([]string{"fits", c.Text}, 77, false)
		if c.TooLong {
			assert.ErrorContains(t, err, "text 1 (", "case %d", i)
			assert.ErrorContains(t, err, "more than the context length 77", "case %d", i)
		} else {
			assert.NoError(t, err, "case %d", i)
		}
	}
	// At the boundary: 75 tokens fit 77 with SOT and EOT, 76 do not.
	text := strings.Repeat("cat ", 75)
	require.Len(t, tok.Encode(text), 75)
	_, err = tok.Tokenize([]string{text}, 77, false)
	assert.NoError(t, err)
	_, err = tok.Tokenize([]string{text + "cat"}, 77, false)
	assert.ErrorContains(t, err, "text 0 (\"cat cat")
	rows, err = tok.Tokenize([]string{text + "cat"}, 77, true)
	require.NoError(t, err)
	assert.Equal(t, tok.EOT(), rows[0][76])
	assert.Equal(t, tok.SOT(), rows[0][0])
	_, err = tok.Tokenize([]string{"x"}, 0, false)
	assert.ErrorContains(t, err, "context length 0")
	rows, err = tok.Tokenize(nil, 77, false)
	require.NoError(t, err)
	assert.Empty(t, rows)
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// unicodeTables is testdata/unicode.json: the Python side's view of each
// code point.
type unicodeTables struct {
	Unicode, Regex               string
	Letter, Number, Other, Space [][2]rune
	Lower                        [][2]json.RawMessage
}

func inRanges(rs [][2]rune) map[rune]bool {
	m := map[rune]bool{}
	for _, r := range rs {
		for c := r[0]; c <= r[1]; c++ {
			m[c] = true
		}
	}
	return m
}

// Every code point: the class the word pattern gives it alone, what strip
// removes and what lower-casing makes of it are the Python side's.
func TestUnicodeMatchesPython(t *testing.T) {
	b, err := os.ReadFile("testdata/unicode.json")
	require.NoError(t, err)
	var u unicodeTables
	require.NoError(t, json.Unmarshal(b, &u))
	t.Logf("Python side: unicodedata %s, regex %s; Go: unicode %s", u.Unicode, u.Regex, unicode.Version)
	letter, number, other, space := inRanges(u.Letter), inRanges(u.Number), inRanges(u.Other), inRanges(u.Space)
	lower := map[rune]string{}
	for _, l := range u.Lower {
		var cp rune
		var to []rune
		require.NoError(t, json.Unmarshal(l[0], &cp))
		require.NoError(t, json.Unmarshal(l[1], &to))
		lower[cp] = string(to)
	}
	// The class of c in wordPattern: matched by nothing, or the token it
	// makes after a letter, a digit, or a punctuation mark.
	class := func(s string) string {
		switch {
		case len(wordPattern.FindAllString(s, -1)) == 0:
			return "none"
		case len(wordPattern.FindAllString("a"+s, -1)) == 1:
			return "letter"
		case len(wordPattern.FindAllString("!"+s, -1)) == 1:
			return "other"
		}
		return "number"
	}
	var diffClass, diffSpace, diffLower []string
	for c := rune(0); c <= unicode.MaxRune; c++ {
		if c >= 0xd800 && c <= 0xdfff {
			continue
		}
		s := string(c)
		want := "none"
		switch {
		case letter[c]:
			want = "letter"
		case number[c]:
			want = "number"
		case other[c]:
			want = "other"
		}
		got := class(s)
		// Go's \s is ASCII; Clean leaves no White_Space but ' ', so only
		// that matters, and the rest is what Python calls "other".
		if got != want && !(want == "none" && unicode.IsSpace(c)) {
			diffClass = append(diffClass, fmt.Sprintf("U+%04X %s, Python %s", c, got, want))
		}
		if isPySpace(c) != space[c] {
			diffSpace = append(diffSpace, fmt.Sprintf("U+%04X", c))
		}
		wl, ok := lower[c]
		if !ok {
			wl = s
		}
		if gl := PyLower(s); gl != wl {
			diffLower = append(diffLower, fmt.Sprintf("U+%04X %q, Python %q", c, gl, wl))
		}
	}
	assert.Empty(t, diffClass, "pattern classes")
	assert.Empty(t, diffSpace, "str.isspace")
	assert.Empty(t, diffLower, "str.lower")
}

func TestFinalSigma(t *testing.T) {
	// Python: "ΟΔΥΣΣΕΥΣ ΣΑΣ Σ".lower() == "οδυσσευς σας σ"; "Σ." alone σ;
	// "AΣ'" ς (the quote is case-ignorable); "AΣ'B" σ.
	assert.Equal(t, "οδυσσευς σας σ", PyLower("ΟΔΥΣΣΕΥΣ ΣΑΣ Σ"))
	assert.Equal(t, "aς'", PyLower("AΣ'"))
	assert.Equal(t, "aσ'b", PyLower("AΣ'B"))
	assert.Equal(t, "i̇stanbul", PyLower("İstanbul"))
}

func TestHTMLUnescapeAsPython(t *testing.T) {
	// Each pair from Python 3.11's html.unescape.
	for in, want := range map[string]string{
		"&amp;amp;":     "&amp;",
		"&notit;":       "¬it;",
		"&notin;":       "∉",
		"&ampx":         "&x",
		"&#0;":          "\ufffd",
		"&#x80;":        "€",
		"&#150;":        "–",
		"&#xD800;":      "\ufffd",
		"&#1114112;":    "\ufffd",
		"&#11;":         "",
		"&#65535;":      "",
		"&#x1F600":      "😀",
		"&unknown;":     "&unknown;",
		"&# &#x; &; & ": "&# &#x; &; & ",
		"&EACUTE;":      "&EACUTE;",
	} {
		assert.Equal(t, want, htmlUnescape(in), "%q", in)
	}
	assert.Equal(t, "É", ftfyUnescapeHTML("&EACUTE;"))
	assert.Equal(t, "&notit;", ftfyUnescapeHTML("&notit;"), "ftfy decodes only whole references")
}

// Load reads the merges file gzipped or not and a HF tokenizer folder
// (vocab.json, merges.txt), all to the same ids; a HF folder's ids are
// its vocab.json's.
func TestLoad(t *testing.T) {
	ref := loadRef(t)
	dir := t.TempDir()
	gzPath := filepath.Join(dir, "bpe.txt.gz")
	require.NoError(t, os.WriteFile(gzPath, defaultMerges, 0o644))
	z, err := gzip.NewReader(bytes.NewReader(defaultMerges))
	require.NoError(t, err)
	var plain bytes.Buffer
	_, err = plain.ReadFrom(z)
	require.NoError(t, err)
	txtPath := filepath.Join(dir, "bpe.txt")
	require.NoError(t, os.WriteFile(txtPath, plain.Bytes(), 0o644))

	// A HF folder as CLIPTokenizer.save_pretrained writes it: vocab.json
	// token -> id, merges.txt a version line and the merges used.
	def := Default()
	hf := filepath.Join(dir, "hf")
	require.NoError(t, os.MkdirAll(hf, 0o755))
	vocab := map[string]int64{}
	for id, tok := range def.decoder {
		vocab[tok] = int64(id)
	}
	writeHF := func(dir string, vocab map[string]int64) {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		vb, err := json.Marshal(vocab)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "vocab.json"), vb, 0o644))
		lines := strings.SplitN(plain.String(), "\n", numMerges+2)[:numMerges+1]
		lines[0] = "#version: 0.2"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "merges.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	}
	writeHF(hf, vocab)

	for _, p := range []string{gzPath, txtPath, hf} {
		tok, err := Load(p)
		require.NoError(t, err, p)
		assert.Equal(t, 49408, tok.VocabSize(), p)
		assert.Equal(t, int64(49406), tok.SOT(), p)
		assert.Equal(t, int64(49407), tok.EOT(), p)
		for i, c := range ref.Cases {
			assert.Equal(t, c.IDs, nonNil(tok.encodeCleaned(clean(c.Text, false))), "%s case %d", p, i)
			assert.Equal(t, c.Decoded, tok.Decode(c.IDs), "%s case %d", p, i)
		}
	}

	// vocab.json's ids are the ones used: swap two.
	swapped := filepath.Join(dir, "swapped")
	v2 := map[string]int64{}
	for k, v := range vocab {
		v2[k] = v
	}
	v2["cat</w>"], v2["dog</w>"] = vocab["dog</w>"], vocab["cat</w>"]
	writeHF(swapped, v2)
	tok, err := Load(swapped)
	require.NoError(t, err)
	assert.Equal(t, def.Encode("a dog"), tok.Encode("a cat"))

	// Errors name the file.
	missing := filepath.Join(dir, "missing")
	v3 := map[string]int64{}
	for k, v := range vocab {
		if k != "cat</w>" {
			v3[k] = v
		}
	}
	writeHF(missing, v3)
	_, err = Load(missing)
	assert.ErrorContains(t, err, filepath.Join(missing, "vocab.json")+`: no id for "cat</w>"`)
	_, err = Load(filepath.Join(dir, "absent.txt.gz"))
	assert.ErrorContains(t, err, "absent.txt.gz")
	_, err = Load(dir)
	assert.ErrorContains(t, err, "vocab.json and merges.txt")
	bad := filepath.Join(dir, "bad.txt")
	require.NoError(t, os.WriteFile(bad, []byte("#version\ni n\nthree symbols here\n"), 0o644))
	_, err = Load(bad)
	assert.ErrorContains(t, err, bad+`:3: a merge is two symbols`)
	_, err = Load(txtPath + "x.gz")
	assert.Error(t, err)
	notGz := filepath.Join(dir, "plain.gz")
	require.NoError(t, os.WriteFile(notGz, []byte("x"), 0o644))
	_, err = Load(notGz)
	assert.ErrorContains(t, err, notGz)
}

// A small merges file makes a small vocabulary, as simple_tokenizer.py
// would: 512 byte symbols, the merges, the two special tokens.
func TestSmallMergesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.txt")
	require.NoError(t, os.WriteFile(p, []byte("#version: 0.2\nc a\nca t</w>\n"), 0o644))
	tok, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, 516, tok.VocabSize())
	assert.Equal(t, int64(514), tok.SOT())
	assert.Equal(t, []int64{513}, tok.Encode("cat"))
	assert.Equal(t, "cat ", tok.Decode([]int64{513}))
}

func TestConcurrentUse(t *testing.T) {
	ref := loadRef(t)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := Default()
			for _, c := range ref.Cases {
				if c.Mojibake {
					continue
				}
				assert.Equal(t, c.IDsFTFY, nonNil(tok.Encode(c.Text)))
			}
		}()
	}
	wg.Wait()
}
