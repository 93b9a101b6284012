package mlm

import (
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
)

// DataConfig picks the corpus and its tokenisation.
type DataConfig struct {
	Corpus    string  `toml:"corpus"`     // "wordnet" (glosses and examples of /usr/share/wordnet), or a text file or folder (data.ReadCorpus)
	Vocab     string  `toml:"vocab"`      // vocab.txt or tokenizer.json; trained on the training split and written there if missing
	VocabSize int     `toml:"vocab_size"` // size of a trained vocabulary
	MaxLen    int     `toml:"max_len"`    // tokens per sequence, [CLS] and [SEP] included
	Batch     int     `toml:"batch"`      // sequences per micro-batch
	Heldout   float64 `toml:"heldout"`    // share of WordNet synsets (or documents) held out for evaluation
}

func (d DataConfig) validate() error {
	switch {
	case d.Corpus == "":
		return config.Field("data.corpus", `must be "wordnet" or a text file or folder`)
	case d.Vocab == "":
		return config.Field("data.vocab", "must name a vocab.txt (trained and written when missing) or a tokenizer.json")
	case d.VocabSize < 100:
		return config.Field("data.vocab_size", "must be at least 100, got %d", d.VocabSize)
	case d.MaxLen < 4:
		return config.Field("data.max_len", "must be at least 4, got %d", d.MaxLen)
	case d.Batch < 1:
		return config.Field("data.batch", "must be positive, got %d", d.Batch)
	case d.Heldout <= 0 || d.Heldout >= 1:
		return config.Field("data.heldout", "must be in (0, 1), got %v", d.Heldout)
	}
	return nil
}

// Doc is one text with its split and, for WordNet, its synset's lexname.
type Doc struct {
	Text    string
	Heldout bool
	Lexname int // index in data.WordNetLexNames; -1 outside WordNet
	Gloss   bool
}

// heldoutKey puts a synset (or document) in the held-out split by a hash,
// so the split does not depend on the order of reading.
func heldoutKey(key string, share float64) bool {
	h := fnv.New64a()
	io.WriteString(h, key)
	return float64(h.Sum64()%1_000_000)/1_000_000 < share
}

// LoadCorpus reads the documents. For WordNet every synset gives its
// definition (Gloss) and each example sentence, all in the synset's split:
// held-out synsets, not sentences, so neither pre-training nor
// fine-tuning sees any text of a test synset.
func LoadCorpus(d DataConfig) ([]Doc, error) {
	var docs []Doc
	if d.Corpus == "wordnet" {
		syn, err := data.WordNet("")
		if err != nil {
			return nil, err
		}
		lex := map[string]int{}
		for i, n := range data.WordNetLexNames {
			lex[n] = i
		}
		for _, s := range syn {
			out := heldoutKey(fmt.Sprintf("%c%d", s.POS, s.Offset), d.Heldout)
			docs = append(docs, Doc{Text: s.Definition, Heldout: out, Lexname: lex[s.LexName], Gloss: true})
			for _, e := range s.Examples {
				docs = append(docs, Doc{Text: e, Heldout: out, Lexname: lex[s.LexName]})
			}
		}
		return docs, nil
	}
	texts, err := data.ReadCorpus(d.Corpus)
	if err != nil {
		return nil, err
	}
	for i, t := range texts {
		docs = append(docs, Doc{Text: t, Heldout: heldoutKey(fmt.Sprint(i), d.Heldout), Lexname: -1})
	}
	return docs, nil
}

// Sequence is a tokenised document with word tags for PTW.
type Sequence struct {
	IDs      []int64
	Words    []int
	WordTags []int // the tag of each word
}

// Prepared is a tokenised corpus, cached next to the vocabulary.
type Prepared struct {
	Docs []Doc
	Seqs []Sequence
}

// Prepare loads (or trains and writes) the tokenizer and tokenises the
// corpus, tagging every word. The result is cached in a file next to the
// vocabulary, keyed by the vocabulary's and the corpus's contents.
func Prepare(d DataConfig, w io.Writer) (*Tokenizer, *Prepared, error) {
	docs, err := LoadCorpus(d)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(d.Vocab); os.IsNotExist(err) {
		if filepath.Ext(d.Vocab) == ".json" {
			return nil, nil, fmt.Errorf("tokenizer %s not found", d.Vocab)
		}
		var texts []string
		for _, doc := range docs {
			if !doc.Heldout {
				texts = append(texts, doc.Text)
			}
		}
		fmt.Fprintf(w, "training a %d-token WordPiece vocabulary on %d documents\n", d.VocabSize, len(texts))
		vocab, err := TrainWordPiece(texts, d.VocabSize, 2)
		if err != nil {
			return nil, nil, err
		}
		if err := os.MkdirAll(filepath.Dir(d.Vocab), 0o755); err != nil {
			return nil, nil, err
		}
		if err := WriteVocab(d.Vocab+".tmp", vocab); err != nil {
			return nil, nil, err
		}
		if err := os.Rename(d.Vocab+".tmp", d.Vocab); err != nil {
			return nil, nil, err
		}
	}
	tok, err := LoadTokenizer(d.Vocab)
	if err != nil {
		return nil, nil, err
	}
	vb, err := os.ReadFile(d.Vocab)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.New()
	h.Write(vb)
	fmt.Fprintf(h, "|%d|%v|%d", d.MaxLen, d.Heldout, len(docs))
	for _, doc := range docs {
		io.WriteString(h, doc.Text)
	}
	cache := d.Vocab + ".corpus-" + hex.EncodeToString(h.Sum(nil))[:16] + ".gob"
	if f, err := os.Open(cache); err == nil {
		var p Prepared
		err := gob.NewDecoder(f).Decode(&p)
		f.Close()
		if err == nil && len(p.Seqs) == len(p.Docs) {
			return tok, &p, nil
		}
	}
	tagger, err := NewTagger("")
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(w, "tokenising and tagging %d documents (cached in %s)\n", len(docs), cache)
	p := &Prepared{Docs: docs, Seqs: make([]Sequence, len(docs))}
	for i, doc := range docs {
		e, err := tok.Encode(doc.Text, d.MaxLen)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", i, err)
		}
		s := Sequence{IDs: e.IDs, Words: e.Words}
		// A word's text is its tokens joined without "##"; its tag comes from that.
		nw := 0
		for _, wd := range e.Words {
			nw = max(nw, wd+1)
		}
		text := make([]strings.Builder, nw)
		for k, wd := range e.Words {
			if wd >= 0 {
				text[wd].WriteString(strings.TrimPrefix(tok.Token(e.IDs[k]), "##"))
			}
		}
		s.WordTags = make([]int, nw)
		for wd := range text {
			s.WordTags[wd] = TagID(tagger.Tag(text[wd].String()))
		}
		p.Seqs[i] = s
	}
	if f, err := os.Create(cache + ".tmp"); err == nil {
		if gob.NewEncoder(f).Encode(p) == nil && f.Close() == nil {
			os.Rename(cache+".tmp", cache)
		} else {
			os.Remove(cache + ".tmp")
		}
	}
	return tok, p, nil
}

// Split returns the indices of the training and held-out documents
// (optionally glosses only).
func (p *Prepared) Split(glossesOnly bool) (train, heldout []int) {
	for i, d := range p.Docs {
		if glossesOnly && !d.Gloss {
			continue
		}
		if d.Heldout {
			heldout = append(heldout, i)
		} else {
			train = append(train, i)
		}
	}
	sort.Ints(train)
	sort.Ints(heldout)
	return train, heldout
}
