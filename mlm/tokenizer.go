package mlm

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/model/wordpiece"
	"github.com/sugarme/tokenizer/normalizer"
	"github.com/sugarme/tokenizer/pretokenizer"
	"github.com/sugarme/tokenizer/pretrained"
	"github.com/sugarme/tokenizer/processor"
)

// Tokenizer is a BERT WordPiece tokenizer (github.com/sugarme/tokenizer):
// BERT's normaliser (clean text, lowercase, strip accents), its
// pre-tokeniser (whitespace and punctuation) and [CLS] ... [SEP].
type Tokenizer struct {
	tk                       *tokenizer.Tokenizer
	PAD, UNK, CLS, SEP, MASK int64
	Size                     int64
	special                  map[int64]bool
}

// Encoded is one tokenised text.
type Encoded struct {
	IDs   []int64 // [CLS] tokens [SEP]
	Words []int   // the word each token belongs to; -1 for [CLS] and [SEP]
}

// LoadTokenizer reads a HF tokenizer.json, or a vocab.txt (one token per
// line) with BERT's uncased pipeline. A tokenizer.json's padding and
// truncation settings are ignored: Encode cuts at its maxLen and never
// pads.
func LoadTokenizer(path string) (*Tokenizer, error) {
	var tk *tokenizer.Tokenizer
	if filepath.Ext(path) == ".json" {
		var err error
		if tk, err = pretrained.FromFile(path); err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w", path, err)
		}
		// The file's padding and truncation (sentence-transformers ships
		// padding {"Fixed": 128} and truncation at 128) would pad every
		// encoding with [PAD]s and cut it at the file's length: Encode's
		// callers truncate (maxLen) and pad (with attention masks)
		// themselves, so both are turned off.
		tk.WithPadding(nil)
		tk.WithTruncation(nil)
	} else {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		model, err := wordpiece.NewWordPieceFromFile(path, "[UNK]")
		if err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w", path, err)
		}
		tk = tokenizer.NewTokenizer(model)
		tk.WithNormalizer(normalizer.NewBertNormalizer(true, true, true, true))
		tk.WithPreTokenizer(pretokenizer.NewBertPreTokenizer())
	}
	t := &Tokenizer{tk: tk, special: map[int64]bool{}}
	for _, s := range []struct {
		name string
		id   *int64
	}{{"[PAD]", &t.PAD}, {"[UNK]", &t.UNK}, {"[CLS]", &t.CLS}, {"[SEP]", &t.SEP}, {"[MASK]", &t.MASK}} {
		id, ok := tk.TokenToId(s.name)
		if !ok {
			return nil, fmt.Errorf("tokenizer %s: no %s token", path, s.name)
		}
		*s.id = int64(id)
		t.special[int64(id)] = true
	}
	if filepath.Ext(path) != ".json" {
		tk.WithPostProcessor(processor.NewBertProcessing(processor.PostToken{Id: int(t.SEP), Value: "[SEP]"}, processor.PostToken{Id: int(t.CLS), Value: "[CLS]"}))
	}
	t.Size = int64(tk.GetVocabSize(true))
	return t, nil
}

// IsSpecial says whether id is [PAD], [UNK], [CLS], [SEP] or [MASK].
func (t *Tokenizer) IsSpecial(id int64) bool { return t.special[id] }

// Encode tokenises text as [CLS] tokens [SEP], truncated to maxLen tokens
// in all (whole words are not kept together at the cut).
func (t *Tokenizer) Encode(text string, maxLen int) (Encoded, error) {
	en, err := t.tk.EncodeSingle(text, true)
	if err != nil {
		return Encoded{}, err
	}
	var e Encoded
	n := len(en.Ids)
	for i, id := range en.Ids {
		w := -1
		if i < len(en.Words) {
			w = en.Words[i]
		}
		if int64(id) == t.CLS || int64(id) == t.SEP {
			w = -1
		}
		e.IDs = append(e.IDs, int64(id))
		e.Words = append(e.Words, w)
	}
	if n > maxLen && maxLen >= 2 {
		e.IDs = append(e.IDs[:maxLen-1], t.SEP)
		e.Words = append(e.Words[:maxLen-1], -1)
	}
	return e, nil
}

// Token is the text of id.
func (t *Tokenizer) Token(id int64) string {
	s, _ := t.tk.IdToToken(int(id))
	return s
}

// ID is the id of a token of the vocabulary ("[MASK]", "dog").
func (t *Tokenizer) ID(token string) (int64, bool) {
	id, ok := t.tk.TokenToId(token)
	return int64(id), ok
}
