package cocoop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/reprolab/repro/torchmods/cliptok"
)

// bpeTokenizer is CLIP's own tokenizer (torchmods/cliptok, OpenAI's
// simple_tokenizer.py and clip.tokenize) as a Tokenizer.
type bpeTokenizer struct{ t *cliptok.Tokenizer }

func (b bpeTokenizer) Encode(text string) ([]int64, error) { return b.t.Encode(text), nil }

func (b bpeTokenizer) Tokenize(texts []string, context int) ([][]int64, error) {
	return b.t.Tokenize(texts, context, false)
}

// vocabSized is a tokenizer that knows its number of ids.
type vocabSized interface{ VocabSize() int64 }

func (b bpeTokenizer) VocabSize() int64 { return int64(b.t.VocabSize()) }

// The clip.tokenizer forms.
const (
	tokenizerBPE   = "bpe"    // CLIP's BPE with OpenAI's vocabulary
	tokenizerBPEAt = "bpe:"   // CLIP's BPE with the merges file at the path
	tokenizerWords = "words:" // a word vocabulary (vocab.txt of a cocoop.pretrain run)
)

// LoadTokenizer reads the tokenizer spec names: "bpe", "bpe:PATH" (a
// bpe_simple_vocab_16e6.txt(.gz) merges file or a HF tokenizer folder, as
// cliptok.Load reads them), or "words:PATH" (a word vocabulary). "" is
// "bpe", unless clipPath is a cocoop.pretrain run, whose vocab.txt is its
// CLIP's vocabulary.
func LoadTokenizer(spec, clipPath string) (Tokenizer, error) {
	if spec == "" {
		if v := filepath.Join(clipPath, pretrainVocabFile); isFile(v) {
			spec = tokenizerWords + v
		} else {
			spec = tokenizerBPE
		}
	}
	switch {
	case spec == tokenizerBPE:
		return bpeTokenizer{cliptok.Default()}, nil
	case strings.HasPrefix(spec, tokenizerBPEAt):
		t, err := cliptok.Load(strings.TrimPrefix(spec, tokenizerBPEAt))
		if err != nil {
			return nil, fmt.Errorf("clip.tokenizer: %w", err)
		}
		return bpeTokenizer{t}, nil
	case strings.HasPrefix(spec, tokenizerWords):
		t, err := LoadWordTokenizer(strings.TrimPrefix(spec, tokenizerWords))
		if err != nil {
			return nil, fmt.Errorf("clip.tokenizer: %w", err)
		}
		return t, nil
	}
	return nil, fmt.Errorf(`clip.tokenizer %q: want "bpe", "bpe:PATH" or "words:PATH"`, spec)
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
