package metapt

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"unicode"

	"github.com/reprolab/repro/mlm"
)

// Corpus is the pre-training text as documents of tokenised sentences:
// for WordNet a synset's gloss followed by its example sentences, for a
// text corpus each document's sentences (SplitSentences). Sentences hold
// word-piece ids without [CLS] and [SEP].
type Corpus struct {
	Docs    [][][]int64
	Heldout []bool // per document
}

// Anchor is a sentence that has a next sentence in its document: the
// first segment of a next-sentence pair.
type Anchor struct{ Doc, Sent int }

// Anchors lists the sentences with a successor among the documents whose
// held-out flag is heldout, in document order. A one-sentence document
// gives none (its sentence still appears as a random second segment).
func (c *Corpus) Anchors(heldout bool) []Anchor {
	var out []Anchor
	for d, doc := range c.Docs {
		if c.Heldout[d] != heldout {
			continue
		}
		for s := 0; s+1 < len(doc); s++ {
			out = append(out, Anchor{d, s})
		}
	}
	return out
}

// Rand is what pair construction and masking draw from (*rand.Rand).
type Rand interface {
	Float64() float64
	IntN(n int) int
}

// Pair is one next-sentence example before encoding.
type Pair struct {
	A, B   []int64
	Random bool // B was drawn from another document (NSP label 1)
}

// MakePair builds the pair of anchor a as BERT's create_pretraining_data
// does for two sentences: with probability randomNext (one Float64 draw
// below it) B is a random sentence of a random other document among docs
// (IntN over the other documents, then IntN over its sentences), else B
// is the sentence after A. docs are the indices of the documents a random
// B may come from (the anchor's split); they must include another
// document than the anchor's.
func (c *Corpus) MakePair(a Anchor, docs []int, randomNext float64, rng Rand) (Pair, error) {
	p := Pair{A: c.Docs[a.Doc][a.Sent]}
	if rng.Float64() >= randomNext {
		p.B = c.Docs[a.Doc][a.Sent+1]
		return p, nil
	}
	// Pick among the other documents: the anchor's own is skipped by
	// drawing from len-1 and stepping over its position.
	self := -1
	for i, d := range docs {
		if d == a.Doc {
			self = i
			break
		}
	}
	n := len(docs)
	if self >= 0 {
		n--
	}
	if n < 1 {
		return p, fmt.Errorf("next-sentence pairs: no document other than %d to draw a random sentence from", a.Doc)
	}
	i := rng.IntN(n)
	if self >= 0 && i >= self {
		i++
	}
	doc := c.Docs[docs[i]]
	p.B, p.Random = doc[rng.IntN(len(doc))], true
	return p, nil
}

// Encoded is a pair as the model reads it: [CLS] A [SEP] B [SEP] with
// token types 0 for [CLS] A [SEP] and 1 for B [SEP].
type Encoded struct {
	IDs, Types []int64
	NSP        int64 // 0: B follows A, 1: B is random
}

// Encode truncates the pair to maxLen tokens in all and adds the special
// tokens. Truncation is BERT's truncate_seq_pair with the cut always at
// the end: one token at a time from the longer segment (A when equal)
// until the pair fits; each segment keeps at least one token.
func Encode(p Pair, maxLen int, cls, sep int64) (Encoded, error) {
	if maxLen < 5 {
		return Encoded{}, fmt.Errorf("pairs need max_len >= 5 ([CLS] a [SEP] b [SEP]), got %d", maxLen)
	}
	a, b := p.A, p.B
	for len(a)+len(b)+3 > maxLen {
		if len(a) >= len(b) {
			a = a[:len(a)-1]
		} else {
			b = b[:len(b)-1]
		}
	}
	e := Encoded{IDs: make([]int64, 0, len(a)+len(b)+3), Types: make([]int64, 0, len(a)+len(b)+3)}
	e.IDs = append(append(append(append(append(e.IDs, cls), a...), sep), b...), sep)
	for i := range e.IDs {
		t := int64(0)
		if i > len(a)+1 {
			t = 1
		}
		e.Types = append(e.Types, t)
	}
	if p.Random {
		e.NSP = 1
	}
	return e, nil
}

// Example is an encoded pair with its masked-LM input and labels.
type Example struct {
	Input, Types, Labels []int64 // Labels: the original id where masked, mlm.Ignore elsewhere
	NSP                  int64
}

// Batch is a batch of examples as plain Go slices (the loader's workers
// make it; the training step turns it into tensors).
type Batch []Example

// Examples builds the examples of anchors: pairs (MakePair), encoded
// (Encode), then masked with mlm.MaskTokens at ratio (special tokens never
// masked), all drawing from rng in that order, anchor by anchor.
func (c *Corpus) Examples(anchors []Anchor, docs []int, o PairOptions, rng *rand.Rand) (Batch, error) {
	out := make(Batch, len(anchors))
	for i, a := range anchors {
		p, err := c.MakePair(a, docs, o.RandomNext, rng)
		if err != nil {
			return nil, err
		}
		e, err := Encode(p, o.MaxLen, o.Tok.CLS, o.Tok.SEP)
		if err != nil {
			return nil, err
		}
		in, lab := mlm.MaskTokens(e.IDs, o.MaskRatio, o.Tok.MASK, o.Tok.Size, o.Tok.IsSpecial, rng)
		out[i] = Example{Input: in, Types: e.Types, Labels: lab, NSP: e.NSP}
	}
	return out, nil
}

// PairOptions say how examples are made.
type PairOptions struct {
	MaxLen     int     // tokens per pair, special tokens included
	RandomNext float64 // share of pairs whose second segment is random (0.5)
	MaskRatio  float64 // masked-LM ratio (0.15, then 80/10/10)
	Tok        *mlm.Tokenizer
}

// SplitSentences splits a document into sentences after '.', '!' or '?'
// (with any closing quotes or brackets) followed by white space, and on
// line breaks; empty pieces are dropped. It is deliberately simple: a
// corpus with abbreviations should come split already (a line per
// sentence is not a document, though: documents are lines of
// data.ReadCorpus, so join a document's sentences on one line, or use a
// folder of .txt files with a sentence per line).
func SplitSentences(text string) []string {
	var out []string
	var cur strings.Builder
	rs := []rune(text)
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if r == '\n' || r == '\r' {
			flush()
			continue
		}
		cur.WriteRune(r)
		if r != '.' && r != '!' && r != '?' {
			continue
		}
		j := i + 1
		for j < len(rs) && strings.ContainsRune(`"')]`+"\u201d\u2019", rs[j]) {
			cur.WriteRune(rs[j])
			j++
		}
		i = j - 1
		if j == len(rs) || unicode.IsSpace(rs[j]) {
			flush()
		}
	}
	flush()
	return out
}
