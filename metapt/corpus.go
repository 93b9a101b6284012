package metapt

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
)

// DataConfig picks the corpus, its tokenisation and the batches.
type DataConfig struct {
	// Corpus is "wordnet" (a synset's gloss then its example sentences form
	// a document) or a text file (a document per line) or folder of .txt
	// files (a document per file), split into sentences by SplitSentences.
	Corpus    string  `toml:"corpus"`
	Vocab     string  `toml:"vocab"`      // vocab.txt or tokenizer.json; a vocab.txt is trained on the training documents if missing
	VocabSize int     `toml:"vocab_size"` // size of a trained vocabulary
	MaxLen    int     `toml:"max_len"`    // tokens per pair, [CLS] and both [SEP] included (and per sentence before pairing)
	Batch     int     `toml:"batch"`      // pairs per batch: every inner step and the meta-test each take one
	Heldout   float64 `toml:"heldout"`    // share of documents (WordNet: synsets) held out for evaluation
	EvalPairs int     `toml:"eval_pairs"` // held-out pairs the MLM and NSP evaluation uses (0: all)
}

func (d DataConfig) validate() error {
	switch {
	case d.Corpus == "":
		return config.Field("data.corpus", `must be "wordnet" or a text file or folder`)
	case d.Vocab == "":
		return config.Field("data.vocab", "must name a vocab.txt (trained and written when missing) or a tokenizer.json")
	case d.VocabSize < 100:
		return config.Field("data.vocab_size", "must be at least 100, got %d", d.VocabSize)
	case d.MaxLen < 5:
		return config.Field("data.max_len", "must be at least 5 ([CLS] a [SEP] b [SEP]), got %d", d.MaxLen)
	case d.Batch < 1:
		return config.Field("data.batch", "must be positive, got %d", d.Batch)
	case !(d.Heldout > 0 && d.Heldout < 1):
		return config.Field("data.heldout", "must be in (0, 1), got %v", d.Heldout)
	case d.EvalPairs < 0:
		return config.Field("data.eval_pairs", "must not be negative, got %d", d.EvalPairs)
	}
	return nil
}

// mlmData is the same corpus as mlm's DataConfig, so that the WordNet
// tokenisation cache and the vocabulary are shared with mlm.finetune.
func (d DataConfig) mlmData() mlm.DataConfig {
	return mlm.DataConfig{Corpus: d.Corpus, Vocab: d.Vocab, VocabSize: d.VocabSize, MaxLen: d.MaxLen, Batch: d.Batch, Heldout: d.Heldout}
}

// LoadCorpus reads the corpus as documents of tokenised sentences with
// mlm's tokenizer (trained on the training documents when the vocabulary
// file is missing) and mlm's held-out split. WordNet goes through
// mlm.Prepare, whose cache mlm.finetune shares; a text corpus is split
// into sentences here.
func LoadCorpus(d DataConfig, w io.Writer) (*mlm.Tokenizer, *Corpus, error) {
	if d.Corpus == "wordnet" {
		tok, prep, err := mlm.Prepare(d.mlmData(), w)
		if err != nil {
			return nil, nil, err
		}
		// mlm.LoadCorpus lists each synset's gloss, then its examples.
		all := &Corpus{}
		for i, doc := range prep.Docs {
			if doc.Gloss || len(all.Docs) == 0 {
				all.Docs = append(all.Docs, nil)
				all.Heldout = append(all.Heldout, doc.Heldout)
			}
			if ids := prep.Seqs[i].IDs; len(ids) >= 3 { // more than [CLS] [SEP]
				last := len(all.Docs) - 1
				all.Docs[last] = append(all.Docs[last], ids[1:len(ids)-1])
			}
		}
		c := &Corpus{}
		for i, doc := range all.Docs {
			if len(doc) > 0 {
				c.Docs = append(c.Docs, doc)
				c.Heldout = append(c.Heldout, all.Heldout[i])
			}
		}
		return tok, c, nil
	}
	docs, err := mlm.LoadCorpus(d.mlmData())
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(d.Vocab); os.IsNotExist(err) && filepath.Ext(d.Vocab) != ".json" {
		var texts []string
		for _, doc := range docs {
			if !doc.Heldout {
				texts = append(texts, doc.Text)
			}
		}
		fmt.Fprintf(w, "training a %d-token WordPiece vocabulary on %d documents\n", d.VocabSize, len(texts))
		vocab, err := mlm.TrainWordPiece(texts, d.VocabSize, 2)
		if err != nil {
			return nil, nil, err
		}
		if err := os.MkdirAll(filepath.Dir(d.Vocab), 0o755); err != nil {
			return nil, nil, err
		}
		if err := mlm.WriteVocab(d.Vocab+".tmp", vocab); err != nil {
			return nil, nil, err
		}
		if err := os.Rename(d.Vocab+".tmp", d.Vocab); err != nil {
			return nil, nil, err
		}
	}
	tok, err := mlm.LoadTokenizer(d.Vocab)
	if err != nil {
		return nil, nil, err
	}
	c := &Corpus{}
	for i, doc := range docs {
		var sents [][]int64
		for _, s := range SplitSentences(doc.Text) {
			e, err := tok.Encode(s, d.MaxLen)
			if err != nil {
				return nil, nil, fmt.Errorf("document %d: %w", i, err)
			}
			if len(e.IDs) >= 3 {
				sents = append(sents, e.IDs[1:len(e.IDs)-1])
			}
		}
		if len(sents) > 0 {
			c.Docs = append(c.Docs, sents)
			c.Heldout = append(c.Heldout, doc.Heldout)
		}
	}
	return tok, c, nil
}

// Split lists the documents of one split.
func (c *Corpus) Split(heldout bool) []int {
	var out []int
	for d, h := range c.Heldout {
		if h == heldout {
			out = append(out, d)
		}
	}
	return out
}
