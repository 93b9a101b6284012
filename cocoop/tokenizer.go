package cocoop

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Tokenizer is what the prompt learners and zero-shot CLIP need of CLIP's
// tokenizer: simple_tokenizer's encode (the ids of a text, no start or end
// token: coop.py counts a class name's tokens with it) and clip.tokenize
// ([SOT] ids [EOT], padded with 0 to the context length; a text too long
// for it is an error, as tokenize with truncate=False raises). Errors name
// the text: a class name with a word the vocabulary lacks must stop a run,
// not become an unknown token.
type Tokenizer interface {
	Encode(text string) ([]int64, error)
	Tokenize(texts []string, context int) ([][]int64, error)
}

// WordTokenizer is a word-level vocabulary for a CLIP trained here from
// scratch (the scenes' CLIP): every word and punctuation mark of the
// captions is one token. Id 0 pads, as clip.tokenize pads; the words are
// 1..n; the start token is n+1 and the end token n+2, the largest id, so
// that CLIP's end-of-text pooling (the argmax of the ids) finds it as it
// finds BPE's 49407. The official prompt layout assumes one token per
// context word ("X X X X", "a photo of a"), which holds here by
// construction.
type WordTokenizer struct {
	Words []string
	ids   map[string]int64
}

// wordPattern splits text as WordTokenizer does: runs of letters and
// digits, and every other non-space character alone.
var wordPattern = regexp.MustCompile(`[\p{L}\p{N}]+|[^\s\p{L}\p{N}]`)

// NewWordTokenizer makes a tokenizer of the given words (lower case, each
// a single token as wordPattern splits), refusing duplicates.
func NewWordTokenizer(words []string) (*WordTokenizer, error) {
	t := &WordTokenizer{Words: words, ids: make(map[string]int64, len(words))}
	for i, w := range words {
		if parts := wordPattern.FindAllString(w, -1); len(parts) != 1 || parts[0] != w || strings.ToLower(w) != w {
			return nil, fmt.Errorf("vocabulary word %d, %q: want one lower-case word or punctuation mark", i+1, w)
		}
		if _, dup := t.ids[w]; dup {
			return nil, fmt.Errorf("vocabulary word %q is listed twice", w)
		}
		t.ids[w] = int64(i + 1)
	}
	return t, nil
}

// LoadWordTokenizer reads a vocabulary written by Save: a word per line.
func LoadWordTokenizer(path string) (*WordTokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("word vocabulary: %w", err)
	}
	defer f.Close()
	var words []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" {
			words = append(words, w)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t, err := NewWordTokenizer(words)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Save writes the vocabulary, a word per line, in id order.
func (t *WordTokenizer) Save(path string) error {
	return os.WriteFile(path, []byte(strings.Join(t.Words, "\n")+"\n"), 0o644)
}

// VocabSize is the number of ids: padding, the words, start and end.
func (t *WordTokenizer) VocabSize() int64 { return int64(len(t.Words)) + 3 }

// SOT is the start-of-text id.
func (t *WordTokenizer) SOT() int64 { return int64(len(t.Words)) + 1 }

// EOT is the end-of-text id, the largest.
func (t *WordTokenizer) EOT() int64 { return int64(len(t.Words)) + 2 }

// Encode lower-cases text and maps each word and punctuation mark to its
// id; a word outside the vocabulary is an error naming it.
func (t *WordTokenizer) Encode(text string) ([]int64, error) {
	var out []int64
	for _, w := range wordPattern.FindAllString(strings.ToLower(text), -1) {
		id, ok := t.ids[w]
		if !ok {
			return nil, fmt.Errorf("%q: the word %q is not in the CLIP's vocabulary of %d words", text, w, len(t.Words))
		}
		out = append(out, id)
	}
	return out, nil
}

// Tokenize is clip.tokenize(texts, context) with this vocabulary.
func (t *WordTokenizer) Tokenize(texts []string, context int) ([][]int64, error) {
	out := make([][]int64, len(texts))
	for i, s := range texts {
		ids, err := t.Encode(s)
		if err != nil {
			return nil, err
		}
		row, err := padTokens(s, ids, t.SOT(), t.EOT(), context)
		if err != nil {
			return nil, err
		}
		out[i] = row
	}
	return out, nil
}

// padTokens is one row of clip.tokenize: [sot] ids [eot], zeros to
// context; longer than context is an error, as without truncate.
func padTokens(text string, ids []int64, sot, eot int64, context int) ([]int64, error) {
	if len(ids)+2 > context {
		return nil, fmt.Errorf("%q is %d tokens with the start and end tokens, more than the context length %d", text, len(ids)+2, context)
	}
	row := make([]int64, context)
	row[0] = sot
	copy(row[1:], ids)
	row[len(ids)+1] = eot
	return row, nil
}
