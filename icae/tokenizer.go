package icae

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"

	"github.com/reprolab/repro/mlm"
)

// Tokenizer turns text into the LLM's token ids and back. Encode adds no
// special tokens: where BOS and EOS go is the data pipeline's business,
// with the ids the LLM's config.json names.
type Tokenizer interface {
	Encode(text string) ([]int64, error)
	Decode(ids []int64) string
	Size() int64
}

// LoadTokenizer reads a BERT-style WordPiece vocab.txt (mlm's tokenizer:
// what the experiment here trains on WordNet) or any HF tokenizer.json
// (github.com/sugarme/tokenizer: Llama 2's and Mistral's for the paper's
// recipes, which this package has not checked against their reference
// ids).
func LoadTokenizer(path string) (Tokenizer, error) {
	if filepath.Ext(path) == ".json" {
		tk, err := pretrained.FromFile(path)
		if err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w", path, err)
		}
		return &hfTokenizer{tk: tk}, nil
	}
	tk, err := mlm.LoadTokenizer(path)
	if err != nil {
		return nil, err
	}
	return &wordPiece{tk: tk}, nil
}

// FindTokenizer is the tokenizer file of a model folder: vocab.txt (which
// icae.lm writes beside its export) or tokenizer.json.
func FindTokenizer(dir string) (string, error) {
	for _, f := range []string{"vocab.txt", "tokenizer.json"} {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: no vocab.txt or tokenizer.json; name the tokenizer with data.vocab", dir)
}

// wordPiece is mlm's uncased WordPiece tokenizer with its [CLS] and [SEP]
// taken off.
type wordPiece struct{ tk *mlm.Tokenizer }

func (w *wordPiece) Encode(text string) ([]int64, error) {
	e, err := w.tk.Encode(text, 1<<30)
	if err != nil {
		return nil, err
	}
	ids := e.IDs
	if len(ids) > 0 && ids[0] == w.tk.CLS {
		ids = ids[1:]
	}
	if len(ids) > 0 && ids[len(ids)-1] == w.tk.SEP {
		ids = ids[:len(ids)-1]
	}
	return ids, nil
}

// Decode joins the word pieces: a "##" piece onto what precedes it (its
// "##" dropped), others after a space; [PAD] is left out.
func (w *wordPiece) Decode(ids []int64) string {
	var b strings.Builder
	for _, id := range ids {
		if id == w.tk.PAD {
			continue
		}
		t := w.tk.Token(id)
		if rest, ok := strings.CutPrefix(t, "##"); ok {
			b.WriteString(rest)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t)
	}
	return b.String()
}

func (w *wordPiece) Size() int64 { return w.tk.Size }

// Specials are the WordPiece vocabulary's [PAD], [CLS] and [SEP], which a
// causal LM trained here uses as padding, BOS and EOS.
func (w *wordPiece) Specials() (pad, bos, eos int64) { return w.tk.PAD, w.tk.CLS, w.tk.SEP }

// hfTokenizer is a HF tokenizer.json.
type hfTokenizer struct{ tk *tokenizer.Tokenizer }

func (h *hfTokenizer) Encode(text string) ([]int64, error) {
	e, err := h.tk.EncodeSingle(text, false)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(e.Ids))
	for i, id := range e.Ids {
		out[i] = int64(id)
	}
	return out, nil
}

func (h *hfTokenizer) Decode(ids []int64) string {
	in := make([]int, len(ids))
	for i, id := range ids {
		in[i] = int(id)
	}
	return h.tk.Decode(in, true)
}

func (h *hfTokenizer) Size() int64 { return int64(h.tk.GetVocabSize(true)) }
