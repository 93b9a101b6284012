package icae

import (
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
)

// DataConfig picks the text, its tokenizer and the batches.
type DataConfig struct {
	// Corpus is "wordnet" (each synset's gloss followed by its example
	// sentences is a document) or a text file (a document per line) or a
	// folder of .txt files (a document per file).
	Corpus string `toml:"corpus"`
	// Vocab is the tokenizer: a WordPiece vocab.txt (trained on the
	// training documents and written there when missing, as mlm does) or a
	// HF tokenizer.json. Empty: the base model folder's vocab.txt or
	// tokenizer.json (icae.pretrain and icae.finetune).
	Vocab     string  `toml:"vocab"`
	VocabSize int     `toml:"vocab_size"` // size of a trained vocabulary
	Heldout   float64 `toml:"heldout"`    // share of documents (WordNet: synsets) held out for evaluation, by hash as mlm splits them
	// DocLen cuts the token stream into pieces of this many tokens: the
	// training sequences of icae.lm, and the texts icae.pretrain draws its
	// AE and LM examples from (the official pretrain.py's examples["text"]).
	// 0 (icae.pretrain only) makes each document one text, [BOS] text, as
	// pretrain.py tokenises a JSON line; WordNet's documents are a gloss
	// and its examples, shorter than a context, hence the packing.
	DocLen int `toml:"doc_len"`
	Batch  int `toml:"batch"` // examples per micro-batch
}

func (d DataConfig) validate(needVocab, wholeDocs bool) error {
	switch {
	case d.Corpus == "":
		return config.Field("data.corpus", `must be "wordnet" or a text file or folder`)
	case needVocab && d.Vocab == "":
		return config.Field("data.vocab", "must name a vocab.txt (trained and written when missing) or a tokenizer.json")
	case d.Vocab != "" && filepath.Ext(d.Vocab) != ".json" && d.VocabSize < 100:
		return config.Field("data.vocab_size", "must be at least 100 for a trained vocabulary, got %d", d.VocabSize)
	case !(d.Heldout > 0 && d.Heldout < 1):
		return config.Field("data.heldout", "must be in (0, 1), got %v", d.Heldout)
	case d.DocLen < 2 && !(wholeDocs && d.DocLen == 0):
		return config.Field("data.doc_len", "must be at least 2, got %d", d.DocLen)
	case d.Batch < 1:
		return config.Field("data.batch", "must be positive, got %d", d.Batch)
	}
	return nil
}

// Streams are the corpus tokenised as two token streams, the training and
// the held-out documents, each document as [BOS] text [EOS]: the way a
// causal LM sees its corpus, documents packed end to end.
type Streams struct {
	Train, Heldout []int64
	Docs           [2]int // training and held-out documents
	// TrainStarts are where each training document starts in Train.
	TrainStarts []int
}

// Texts are the training stream as pretrain.py's texts: pieces of n
// tokens (Chunks), or with n = 0 each document as [BOS] text, without the
// EOS that ends it in the stream.
func (s *Streams) Texts(n int) [][]int64 {
	if n > 0 {
		return Chunks(s.Train, n)
	}
	out := make([][]int64, len(s.TrainStarts))
	for i, start := range s.TrainStarts {
		end := len(s.Train)
		if i+1 < len(s.TrainStarts) {
			end = s.TrainStarts[i+1]
		}
		out[i] = s.Train[start : end-1]
	}
	return out
}

// Chunks cuts a stream into consecutive pieces of n tokens, leaving out
// the remainder.
func Chunks(stream []int64, n int) [][]int64 {
	var out [][]int64
	for i := 0; i+n <= len(stream); i += n {
		out = append(out, stream[i:i+n])
	}
	return out
}

// documents reads the corpus with mlm's readers and split: for WordNet
// mlm lists each synset's gloss then its examples, which join here into one
// document, each part ending as a sentence.
func documents(d DataConfig) (texts []string, heldout []bool, err error) {
	docs, err := mlm.LoadCorpus(mlm.DataConfig{Corpus: d.Corpus, Heldout: d.Heldout})
	if err != nil {
		return nil, nil, err
	}
	for i, doc := range docs {
		part := strings.TrimSpace(doc.Text)
		if part == "" {
			continue
		}
		if !strings.HasSuffix(part, ".") && !strings.HasSuffix(part, "!") && !strings.HasSuffix(part, "?") {
			part += "."
		}
		if i > 0 && doc.Source == docs[i-1].Source && len(texts) > 0 {
			texts[len(texts)-1] += " " + part
			continue
		}
		texts, heldout = append(texts, part), append(heldout, doc.Heldout)
	}
	if len(texts) == 0 {
		return nil, nil, fmt.Errorf("corpus %s: no text", d.Corpus)
	}
	return texts, heldout, nil
}

// PrepareTokenizer loads data.vocab, first training a WordPiece
// vocabulary of data.vocab_size on the training documents when a vocab.txt
// is missing (mlm.TrainWordPiece, minimum frequency 2, as mlm.Prepare).
func PrepareTokenizer(d DataConfig, w io.Writer) (Tokenizer, error) {
	if _, err := os.Stat(d.Vocab); os.IsNotExist(err) {
		if filepath.Ext(d.Vocab) == ".json" {
			return nil, fmt.Errorf("data.vocab: tokenizer %s not found", d.Vocab)
		}
		texts, held, err := documents(d)
		if err != nil {
			return nil, err
		}
		var train []string
		for i, t := range texts {
			if !held[i] {
				train = append(train, t)
			}
		}
		fmt.Fprintf(w, "training a %d-token WordPiece vocabulary on %d documents\n", d.VocabSize, len(train))
		vocab, err := mlm.TrainWordPiece(train, d.VocabSize, 2)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(d.Vocab), 0o755); err != nil {
			return nil, err
		}
		if err := mlm.WriteVocab(d.Vocab+".tmp", vocab); err != nil {
			return nil, err
		}
		if err := os.Rename(d.Vocab+".tmp", d.Vocab); err != nil {
			return nil, err
		}
	}
	return LoadTokenizer(d.Vocab)
}

// LoadStreams tokenises the corpus with tok (whose file is vocab) into
// Streams. The result is cached beside the tokenizer file, keyed by the
// tokenizer's and the corpus's contents and the special ids, so that a
// second run (or a resumed one) reads it back instead of tokenising again.
func LoadStreams(d DataConfig, vocab string, tok Tokenizer, bos, eos int64, w io.Writer) (*Streams, error) {
	texts, held, err := documents(d)
	if err != nil {
		return nil, err
	}
	vb, err := os.ReadFile(vocab)
	if err != nil {
		return nil, fmt.Errorf("data.vocab: %w", err)
	}
	h := sha256.New()
	h.Write(vb)
	fmt.Fprintf(h, "|v2|%d|%d|%v|%d|", bos, eos, d.Heldout, len(texts))
	for i, t := range texts {
		fmt.Fprintf(h, "%v|%s|", held[i], t)
	}
	cache := vocab + ".icae-" + hex.EncodeToString(h.Sum(nil))[:16] + ".gob"
	if f, err := os.Open(cache); err == nil {
		var s Streams
		err := gob.NewDecoder(f).Decode(&s)
		f.Close()
		if err == nil {
			return &s, nil
		}
	}
	fmt.Fprintf(w, "tokenising %d documents (cached in %s)\n", len(texts), cache)
	s := &Streams{}
	for i, t := range texts {
		ids, err := tok.Encode(t)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		doc := append(append([]int64{bos}, ids...), eos)
		if held[i] {
			s.Heldout, s.Docs[1] = append(s.Heldout, doc...), s.Docs[1]+1
		} else {
			s.TrainStarts = append(s.TrainStarts, len(s.Train))
			s.Train, s.Docs[0] = append(s.Train, doc...), s.Docs[0]+1
		}
	}
	// A temporary file of its own, so that runs tokenising at the same time
	// (an experiment's parallel runs on one base) never write into one.
	if f, err := os.CreateTemp(filepath.Dir(cache), filepath.Base(cache)+".*.tmp"); err == nil {
		if gob.NewEncoder(f).Encode(s) == nil && f.Close() == nil {
			os.Rename(f.Name(), cache)
		} else {
			f.Close()
			os.Remove(f.Name())
		}
	}
	return s, nil
}
