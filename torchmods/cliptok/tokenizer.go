// Package cliptok is CLIP's tokenizer: clip/simple_tokenizer.py and
// clip.tokenize of github.com/openai/CLIP (commit
// d05afc436d78f1c48dc0dbf8e5980a9d471f35f6), a byte-level BPE over
// lower-cased text whose words end in "</w>", with OpenAI's vocabulary
// (bpe_simple_vocab_16e6.txt.gz, embedded: Default needs no download).
//
// Encode is SimpleTokenizer.encode: the clean-up (Clean), the split into
// words by simple_tokenizer.py's regular expression, each word's UTF-8
// bytes mapped to printable characters (bytes_to_unicode) and merged by
// the BPE ranks, the last character of the word carrying "</w>". Tokenize
// is clip.tokenize. The ids are the official code's on every string of
// testdata/ids.json (testdata/gen_ids.py runs simple_tokenizer.py on them
// twice, with ftfy 6.3.1 and with ftfy.fix_text as the identity), but for
// those whose mojibake ftfy repairs: that repair is not here (Clean says
// precisely what of ftfy is).
//
// github.com/sugarme/tokenizer, already a dependency, was not used: it
// has a BPE with an end-of-word suffix and a regex Split pre-tokenizer,
// but its ByteLevel pre-tokenizer always splits by GPT-2's expression (no
// use_regex=false), it has no CLIP normaliser (ftfy, html.unescape) and no
// CLIP preset, so it cannot reproduce these ids as it is; the BPE here is
// a hundred lines and follows simple_tokenizer.py step by step.
package cliptok

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed" // the vocabulary
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

//go:embed bpe_simple_vocab_16e6.txt.gz
var defaultMerges []byte

// numMerges is how many merges simple_tokenizer.py keeps: the lines
// 1 to 49152-256-2 of the file (line 0 is a version header), so that the
// vocabulary is 256 bytes, 256 bytes with "</w>", the merges and the two
// special tokens: 49408.
const numMerges = 49152 - 256 - 2

// The special tokens, as simple_tokenizer.py spells them.
const (
	StartOfText = "<|startoftext|>"
	EndOfText   = "<|endoftext|>"
)

// wordPattern is simple_tokenizer.py's self.pat, compiled with
// re.IGNORECASE by the regex module. Go's RE2 picks the same match as the
// regex module's backtracking here (leftmost, then the first alternative
// that matches), and \p{L}, \p{N} are the same Unicode categories. Two
// differences are handled: \s (RE2's is ASCII, the regex module's
// White_Space) never matters, as Clean has made every White_Space run one
// ' '; and case-insensitivity is kept to the literal alternatives (so that
// 'ſ still matches 's, as there), because RE2 would also add to \p{L} the
// characters whose case folds into it: only U+0345 (COMBINING GREEK
// YPOGEGRAMMENI, folding to ι), which the regex module instead leaves out of
// [^\s\p{L}\p{N}] and so matches with no alternative: it is dropped from
// the text, and here too. TestUnicodeMatchesPython checks every code point.
var wordPattern = regexp.MustCompile(`(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{345}]+`)

// Tokenizer is simple_tokenizer.py's SimpleTokenizer with a vocabulary.
// It is safe for concurrent use.
type Tokenizer struct {
	encoder   map[string]int64
	decoder   []string // by id; "" where a HF vocab.json has a hole
	ranks     map[pair]int
	sot, eot  int64
	byteRunes [256]rune // bytes_to_unicode
	runeBytes map[rune]byte

	mu    sync.Mutex
	cache map[string][]int64 // a word (byte-encoded) to its ids
}

type pair struct{ a, b string }

// maxCache bounds the word cache (simple_tokenizer.py's is unbounded);
// when full it starts again empty.
const maxCache = 1 << 16

var (
	defaultOnce sync.Once
	defaultTok  *Tokenizer
)

// Default is the tokenizer of OpenAI's vocabulary, embedded in the
// package, read on first use. It panics only if the embedded file is
// damaged, a build fault.
func Default() *Tokenizer {
	defaultOnce.Do(func() {
		t, err := fromMerges(bytes.NewReader(defaultMerges), true, "the embedded bpe_simple_vocab_16e6.txt.gz")
		if err != nil {
			panic(fmt.Sprintf("cliptok: %v", err))
		}
		defaultTok = t
	})
	return defaultTok
}

// Load reads a vocabulary: a merges file as simple_tokenizer.py reads it
// (bpe_simple_vocab_16e6.txt.gz, or the same uncompressed; a name ending
// in .gz is gunzipped), or a HF CLIP tokenizer folder (vocab.json and
// merges.txt, as CLIPTokenizer.save_pretrained writes them), whose ids
// are vocab.json's.
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		return loadHF(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	return fromMerges(f, strings.HasSuffix(path, ".gz"), path)
}

// readMerges reads the merges of a merges file: as simple_tokenizer.py
// (and HF's CLIPTokenizer for merges.txt), lines 1 to numMerges, each two
// symbols separated by a space.
func readMerges(r io.Reader, gz bool, name string) ([]pair, error) {
	if gz {
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer z.Close()
		r = z
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var merges []pair
	for n := 0; sc.Scan() && n <= numMerges; n++ {
		if n == 0 {
			continue // the version header
		}
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, fmt.Errorf("%s:%d: a merge is two symbols separated by a space, not %q", name, n+1, sc.Text())
		}
		merges = append(merges, pair{f[0], f[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(merges) == 0 {
		return nil, fmt.Errorf("%s: no merges (line 1 is a version header, the merges follow)", name)
	}
	return merges, nil
}

// fromMerges builds the vocabulary as SimpleTokenizer.__init__: the byte
// characters, the same with "</w>", each merge joined, then the two
// special tokens.
func fromMerges(r io.Reader, gz bool, name string) (*Tokenizer, error) {
	merges, err := readMerges(r, gz, name)
	if err != nil {
		return nil, err
	}
	t := newTokenizer(merges)
	order := byteOrder()
	vocab := make([]string, 0, 2*256+len(merges)+2)
	for _, b := range order {
		vocab = append(vocab, string(t.byteRunes[b]))
	}
	for _, b := range order {
		vocab = append(vocab, string(t.byteRunes[b])+"</w>")
	}
	for _, m := range merges {
		vocab = append(vocab, m.a+m.b)
	}
	vocab = append(vocab, StartOfText, EndOfText)
	t.decoder = vocab
	// dict(zip(vocab, range)): a token listed twice keeps its last id.
	for i, v := range vocab {
		t.encoder[v] = int64(i)
	}
	t.sot, t.eot = t.encoder[StartOfText], t.encoder[EndOfText]
	return t, nil
}

// loadHF reads a HF CLIP tokenizer folder: the ids from vocab.json, the
// ranks from merges.txt. Every byte symbol and every merge's result must
// have an id, so that Encode cannot meet a symbol without one.
func loadHF(dir string) (*Tokenizer, error) {
	vpath, mpath := filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt")
	vb, err := os.ReadFile(vpath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w (a HF CLIP tokenizer folder has vocab.json and merges.txt)", err)
	}
	var vocab map[string]int64
	if err := json.Unmarshal(vb, &vocab); err != nil {
		return nil, fmt.Errorf("%s: %w", vpath, err)
	}
	mf, err := os.Open(mpath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w (a HF CLIP tokenizer folder has vocab.json and merges.txt)", err)
	}
	defer mf.Close()
	merges, err := readMerges(mf, false, mpath)
	if err != nil {
		return nil, err
	}
	t := newTokenizer(merges)
	size := int64(0)
	for tok, id := range vocab {
		if id < 0 || id > 1<<24 {
			return nil, fmt.Errorf("%s: %q has id %d", vpath, tok, id)
		}
		size = max(size, id+1)
	}
	t.decoder = make([]string, size)
	for tok, id := range vocab {
		if t.decoder[id] != "" {
			return nil, fmt.Errorf("%s: id %d is both %q and %q", vpath, id, t.decoder[id], tok)
		}
		t.decoder[id] = tok
		t.encoder[tok] = id
	}
	need := []string{StartOfText, EndOfText}
	for _, r := range t.byteRunes {
		need = append(need, string(r), string(r)+"</w>")
	}
	for _, m := range merges {
		need = append(need, m.a+m.b)
	}
	for _, s := range need {
		if _, ok := t.encoder[s]; !ok {
			return nil, fmt.Errorf("%s: no id for %q, which merges.txt or CLIP's byte alphabet needs", vpath, s)
		}
	}
	t.sot, t.eot = t.encoder[StartOfText], t.encoder[EndOfText]
	return t, nil
}

func newTokenizer(merges []pair) *Tokenizer {
	t := &Tokenizer{encoder: map[string]int64{}, ranks: make(map[pair]int, len(merges)), runeBytes: map[rune]byte{}}
	for i, m := range merges {
		t.ranks[m] = i // dict(zip(merges, range)): a merge listed twice keeps its last rank
	}
	for b, r := range bytesToUnicode() {
		t.byteRunes[b] = r
		t.runeBytes[r] = byte(b)
	}
	t.cache = map[string][]int64{}
	return t
}

// byteOrder is the order of bytes_to_unicode's dict: the printable bytes
// '!'..'~', '¡'..'¬', '®'..'ÿ', then the others in order.
func byteOrder() []int {
	var bs []int
	in := [256]bool{}
	for _, r := range [][2]int{{'!', '~'}, {0xA1, 0xAC}, {0xAE, 0xFF}} {
		for b := r[0]; b <= r[1]; b++ {
			bs = append(bs, b)
			in[b] = true
		}
	}
	for b := range 256 {
		if !in[b] {
			bs = append(bs, b)
		}
	}
	return bs
}

// bytesToUnicode is bytes_to_unicode: the printable bytes stand for
// themselves, the others for 256, 257, ... in byte order, so that no
// byte becomes whitespace or a control character.
func bytesToUnicode() [256]rune {
	var m [256]rune
	n := 0
	for i, b := range byteOrder() {
		if i < 188 { // the printable ones: 94 + 12 + 82
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}

// SOT is the id of <|startoftext|> (49406 in OpenAI's vocabulary).
func (t *Tokenizer) SOT() int64 { return t.sot }

// EOT is the id of <|endoftext|> (49407), which CLIP's text encoder pools at.
func (t *Tokenizer) EOT() int64 { return t.eot }

// Token is the vocabulary entry of id (simple_tokenizer's decoder[id],
// "</w>" marking a word's end), "" for an id outside the vocabulary.
func (t *Tokenizer) Token(id int64) string {
	if id < 0 || id >= int64(len(t.decoder)) {
		return ""
	}
	return t.decoder[id]
}

// VocabSize is the number of ids (49408): a CLIP's token embedding must
// have at least as many rows.
func (t *Tokenizer) VocabSize() int { return len(t.decoder) }

// Encode is SimpleTokenizer.encode: text to ids, without the start and
// end tokens. Text that is not valid UTF-8 is read as Python's
// bytes.decode("utf-8", errors="replace") reads it.
func (t *Tokenizer) Encode(text string) []int64 {
	return t.encodeCleaned(Clean(text))
}

// encodeCleaned splits cleaned text into words and encodes each.
func (t *Tokenizer) encodeCleaned(text string) []int64 {
	var ids []int64
	for _, w := range wordPattern.FindAllString(text, -1) {
		ids = append(ids, t.word(w)...)
	}
	return ids
}

// word is the ids of one word of the pattern: its UTF-8 bytes as
// bytes_to_unicode characters, through bpe, looked up.
func (t *Tokenizer) word(w string) []int64 {
	var sb strings.Builder
	for i := 0; i < len(w); i++ {
		sb.WriteRune(t.byteRunes[w[i]])
	}
	token := sb.String()
	t.mu.Lock()
	ids, ok := t.cache[token]
	t.mu.Unlock()
	if ok {
		return ids
	}
	if token == StartOfText || token == EndOfText { // simple_tokenizer.py's cache starts with these two
		ids = []int64{t.encoder[token]}
	} else {
		for _, s := range t.bpe(token) {
			ids = append(ids, t.encoder[s])
		}
	}
	t.mu.Lock()
	if len(t.cache) >= maxCache {
		t.cache = map[string][]int64{}
	}
	t.cache[token] = ids
	t.mu.Unlock()
	return ids
}

// bpe is SimpleTokenizer.bpe: the word's characters, the last with
// "</w>", merged pair by pair, the pair of lowest rank first, every
// occurrence of it left to right, until no pair has a rank.
func (t *Tokenizer) bpe(token string) []string {
	rs := []rune(token)
	word := make([]string, len(rs))
	for i, r := range rs {
		word[i] = string(r)
	}
	word[len(word)-1] += "</w>"
	for len(word) > 1 {
		best, bestRank := pair{}, -1
		for i := 0; i+1 < len(word); i++ {
			p := pair{word[i], word[i+1]}
			if r, ok := t.ranks[p]; ok && (bestRank < 0 || r < bestRank) {
				best, bestRank = p, r
			}
		}
		if bestRank < 0 {
			break
		}
		merged := make([]string, 0, len(word))
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == best.a && word[i+1] == best.b {
				merged = append(merged, best.a+best.b)
				i += 2
			} else {
				merged = append(merged, word[i])
				i++
			}
		}
		word = merged
	}
	return word
}

// Decode is SimpleTokenizer.decode: the tokens' characters back to
// bytes, decoded as UTF-8 with errors="replace" (each maximal invalid
// sequence one U+FFFD, as Python), every "</w>" a space. Ids outside the
// vocabulary (where Python raises KeyError) are skipped.
func (t *Tokenizer) Decode(ids []int64) string {
	var b []byte
	for _, id := range ids {
		if id < 0 || id >= int64(len(t.decoder)) {
			continue
		}
		for _, r := range t.decoder[id] {
			if c, ok := t.runeBytes[r]; ok {
				b = append(b, c)
			}
		}
	}
	return strings.ReplaceAll(decodeUTF8Replace(b), "</w>", " ")
}

// Tokenize is clip.tokenize: a row per text, [SOT] + Encode(text) +
// [EOT], padded with 0 to context (77 for every released CLIP). A row
// longer than context is an error naming the text, unless truncate: then
// it is cut to context with EOT last, as clip.tokenize(truncate=True).
func (t *Tokenizer) Tokenize(texts []string, context int, truncate bool) ([][]int64, error) {
	if context < 1 {
		return nil, fmt.Errorf("tokenize: context length %d, want at least 1", context)
	}
	out := make([][]int64, len(texts))
	for i, text := range texts {
		ids := append(append([]int64{t.sot}, t.Encode(text)...), t.eot)
		if len(ids) > context {
			if !truncate {
				return nil, fmt.Errorf("text %d (%s) is %d tokens with <|startoftext|> and <|endoftext|>, more than the context length %d",
					i, abbreviate(text), len(ids), context)
			}
			ids = ids[:context]
			ids[context-1] = t.eot
		}
		row := make([]int64, context)
		copy(row, ids)
		out[i] = row
	}
	return out, nil
}

// abbreviate quotes text for an error, its first 40 characters.
func abbreviate(text string) string {
	rs := []rune(text)
	if len(rs) > 40 {
		return fmt.Sprintf("%q...", string(rs[:40]))
	}
	return fmt.Sprintf("%q", text)
}
