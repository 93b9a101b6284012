package mlm

import (
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
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
	// Packing is how documents become sequences: "document" (or "") makes
	// each document one sequence truncated to max_len; "official" packs
	// paragraphs as the official data_utils.py does (Packer). With
	// "official" a text file is one document per line, as the official
	// loader of a text file reads it, and a folder one document per .txt
	// file with a paragraph per line, as the Wikipedia articles the paper
	// trained on; for WordNet a synset's gloss and examples are its
	// paragraphs.
	Packing string `toml:"packing"`
}

// Validate checks the section's keys, naming them (data.*); pmlm uses mlm's
// corpus section and its checks.
func (d DataConfig) Validate() error {
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
	case d.Packing != "" && d.Packing != PackDocument && d.Packing != PackOfficial:
		return config.Field("data.packing", "must be one of %v, got %q", PackModes, d.Packing)
	}
	return nil
}

func (d DataConfig) official() bool { return d.Packing == PackOfficial }

// Doc is one text with its split and, for WordNet, its synset's lexname.
// Under official packing LoadCorpus gives one Doc per paragraph, and the
// paragraphs of a document share its Source; Prepare's Docs are then the
// packed examples, each with its document's Source, split and lexname.
type Doc struct {
	Text    string
	Heldout bool
	Lexname int // index in data.WordNetLexNames; -1 outside WordNet
	Gloss   bool
	Source  int // the document (for WordNet the synset) the text belongs to
}

// heldoutKey puts a synset (or document) in the held-out split by a hash,
// so the split does not depend on the order of reading.
func heldoutKey(key string, share float64) bool {
	h := fnv.New64a()
	io.WriteString(h, key)
	return float64(h.Sum64()%1_000_000)/1_000_000 < share
}

// HeldoutSynset is WordNet's split: whether the synset is held out when
// share of them are. Packages that build other tasks on WordNet (pmlm's
// gloss-to-word generation) use it so that their test synsets are the
// ones no pre-training run has seen.
func HeldoutSynset(s data.Synset, share float64) bool {
	return heldoutKey(fmt.Sprintf("%c%d", s.POS, s.Offset), share)
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
		for k, s := range syn {
			out := HeldoutSynset(s, d.Heldout)
			docs = append(docs, Doc{Text: s.Definition, Heldout: out, Lexname: lex[s.LexName], Gloss: true, Source: k})
			for _, e := range s.Examples {
				docs = append(docs, Doc{Text: e, Heldout: out, Lexname: lex[s.LexName], Source: k})
			}
		}
		return docs, nil
	}
	if st, err := os.Stat(d.Corpus); err == nil && st.IsDir() && d.official() {
		return readParagraphs(d)
	}
	texts, err := data.ReadCorpus(d.Corpus)
	if err != nil {
		return nil, err
	}
	for i, t := range texts {
		docs = append(docs, Doc{Text: t, Heldout: heldoutKey(fmt.Sprint(i), d.Heldout), Lexname: -1, Source: i})
	}
	return docs, nil
}

// readParagraphs reads a folder for official packing: each .txt file
// (sorted by path) a document, each of its lines a paragraph, kept as
// they are (the packer drops blank and short ones, as the official code).
func readParagraphs(d DataConfig) ([]Doc, error) {
	var files []string
	err := filepath.WalkDir(d.Corpus, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.EqualFold(filepath.Ext(p), ".txt") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	sort.Strings(files)
	var docs []Doc
	for i, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		out := heldoutKey(fmt.Sprint(i), d.Heldout)
		for _, line := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
			docs = append(docs, Doc{Text: line, Heldout: out, Lexname: -1, Source: i})
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("corpus %s: no .txt files", d.Corpus)
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
	cache := d.Vocab + ".corpus-" + corpusKey(d, vb, docs) + ".gob"
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
	var p *Prepared
	if d.official() {
		fmt.Fprintf(w, "packing, tokenising and tagging %d paragraphs as the official data_utils.py (cached in %s)\n", len(docs), cache)
		if p, err = pack(docs, tok, tagger, d.MaxLen); err != nil {
			return nil, nil, err
		}
	} else {
		fmt.Fprintf(w, "tokenising and tagging %d documents (cached in %s)\n", len(docs), cache)
		p = &Prepared{Docs: docs, Seqs: make([]Sequence, len(docs))}
		for i, doc := range docs {
			e, err := tok.Encode(doc.Text, d.MaxLen)
			if err != nil {
				return nil, nil, fmt.Errorf("document %d: %w", i, err)
			}
			p.Seqs[i] = tagSequence(Sequence{IDs: e.IDs, Words: e.Words}, tok, tagger)
		}
	}
	// A temporary file of its own: parallel runs of an experiment may all
	// prepare the same corpus at once, and a shared ".tmp" would interleave them.
	if f, err := os.CreateTemp(filepath.Dir(cache), filepath.Base(cache)+".*.tmp"); err == nil {
		if gob.NewEncoder(f).Encode(p) == nil && f.Close() == nil {
			os.Rename(f.Name(), cache)
		} else {
			f.Close()
			os.Remove(f.Name())
		}
	}
	return tok, p, nil
}

// corpusKey names the tokenised-corpus cache: everything that changes the
// cached ids and tags is part of it. That includes the tagger's word lists, not
// only the tag set: a cache written while "to" was tagged PART was once reused
// after "to" became ADP, and PTW runs then trained on the old tags.
func corpusKey(d DataConfig, vocab []byte, docs []Doc) string {
	h := sha256.New()
	h.Write(vocab)
	fmt.Fprintf(h, "|%d|%v|%d|%s|%s|%s", d.MaxLen, d.Heldout, len(docs), strings.Join(Tags, ","), d.packing(), taggerKey())
	for _, doc := range docs {
		io.WriteString(h, doc.Text)
		if d.official() {
			fmt.Fprintf(h, "|%d|", doc.Source)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (d DataConfig) packing() string {
	if d.Packing == "" {
		return PackDocument
	}
	return d.Packing
}

// packSeed seeds the official packer's draws (5% random target lengths,
// 10% unbounded first segments, the coin for a segment's last paragraph):
// fixed, so the packed corpus is the same for every run and cacheable,
// whatever trainer.seed is.
const packSeed = 0x35652c2

// pack runs the official packer over the documents (runs of paragraphs
// sharing a Source), then tags each example's words. An example inherits
// its document's split and lexname.
func pack(docs []Doc, tok *Tokenizer, tagger *Tagger, maxLen int) (*Prepared, error) {
	packer := NewPacker(maxLen, rand.New(rand.NewPCG(packSeed, 0)))
	p := &Prepared{}
	for lo := 0; lo < len(docs); {
		hi := lo
		for hi < len(docs) && docs[hi].Source == docs[lo].Source {
			hi++
		}
		paras := make([]Paragraph, 0, hi-lo)
		for i := lo; i < hi; i++ {
			para, err := paragraph(tok, docs[i].Text)
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", docs[lo].Source, err)
			}
			paras = append(paras, para)
		}
		for _, s := range packer.Document(paras, tok.CLS, tok.SEP) {
			src := docs[lo]
			p.Docs = append(p.Docs, Doc{Heldout: src.Heldout, Lexname: src.Lexname, Source: src.Source})
			p.Seqs = append(p.Seqs, tagSequence(s, tok, tagger))
		}
		lo = hi
	}
	if len(p.Seqs) == 0 {
		return nil, fmt.Errorf("official packing left no examples: every paragraph is shorter than 80 characters")
	}
	return p, nil
}

// tagSequence tags each word of s: a word's text is its tokens joined
// without "##", and the tagger tags that.
func tagSequence(s Sequence, tok *Tokenizer, tagger *Tagger) Sequence {
	nw := 0
	for _, wd := range s.Words {
		nw = max(nw, wd+1)
	}
	text := make([]strings.Builder, nw)
	for k, wd := range s.Words {
		if wd >= 0 {
			text[wd].WriteString(strings.TrimPrefix(tok.Token(s.IDs[k]), "##"))
		}
	}
	s.WordTags = make([]int, nw)
	for wd := range text {
		s.WordTags[wd] = TagID(tagger.Tag(text[wd].String()))
	}
	return s
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
