package mlm

import (
	"strings"
	"unicode/utf8"
)

// Packing modes (data.packing). The official pipeline and repro's own
// differ a great deal in what a sequence is, so the choice is explicit.
const (
	// PackDocument makes every document (a WordNet gloss or example, a
	// line of a text file, a .txt file of a folder) one sequence,
	// [CLS] tokens [SEP] truncated to max_len: repro's own pipeline.
	PackDocument = "document"
	// PackOfficial is the official data_utils.BertDataProcessor: see Packer.
	PackOfficial = "official"
)

// PackModes lists the values data.packing takes ("" is PackDocument).
var PackModes = []string{PackDocument, PackOfficial}

// Paragraph is one line of a document, tokenised without [CLS] and [SEP].
type Paragraph struct {
	Chars int     // the raw line's length in characters, for the filter
	IDs   []int64 // its tokens, at most 512 (the official tokenize(..., max_length=512))
	Words []int   // each token's word, numbered from 0 within the paragraph
}

// packRand is the randomness the packer draws, Python's random.random()
// (Float64) and random.randint(5, maxLen) (5 + IntN(maxLen - 4)), in the
// official order; *rand.Rand has it, and the tests replay Python's draws.
type packRand interface {
	Float64() float64
	IntN(n int) int
}

// Packer is the official data pipeline, data_utils.BertDataProcessor at
// mutonix/better_masking 35652c2, which the paper's pre-training ran on:
//
//   - a paragraph (a line of a document) that is blank or shorter than 80
//     characters is dropped (filter_out);
//   - paragraphs are appended to the current example until it holds the
//     target length of tokens (max_len, or in 5% of examples a random
//     length in [5, max_len]), and a document's end closes the example too;
//   - the paragraphs are split into two segments as for next-sentence
//     prediction, the first aiming at (target-3)/2 tokens (in 10% of
//     examples, unbounded), but the second segment is commented out in
//     _make_example: an example is [CLS] seg_A [SEP], seg_A cut to
//     max_len-2, and the rest of its paragraphs is discarded.
//
// With max_len 512 examples average about 260 tokens and about 45% of the
// text is thrown away (the synthetic corpus of pack_test.go; the share
// depends on the paragraph lengths). A Packer carries its target length
// from one example to the next, as the official processor does.
type Packer struct {
	maxLen, target int
	rng            packRand
	cur            []Paragraph
	curLen         int
	out            []Sequence
}

// NewPacker packs into examples of at most maxLen tokens with rng.
func NewPacker(maxLen int, rng packRand) *Packer {
	return &Packer{maxLen: maxLen, target: maxLen, rng: rng}
}

// Document packs one document's paragraphs (BertDataProcessor.__call__
// for one text) and returns its examples as [CLS] seg_A [SEP] with word
// ids numbered across the example (-1 for [CLS] and [SEP]).
func (p *Packer) Document(paras []Paragraph, cls, sep int64) []Sequence {
	p.out = nil
	for _, para := range paras {
		if para.Chars < 80 { // filter_out; blank lines are dropped before it
			continue
		}
		p.cur = append(p.cur, para)
		p.curLen += len(para.IDs)
		if p.curLen >= p.target {
			p.create(cls, sep)
		}
	}
	if p.curLen != 0 {
		p.create(cls, sep)
	}
	return p.out
}

// create is _create_example and _make_example, drawing random numbers
// exactly where (and only when) the official code does.
func (p *Packer) create(cls, sep int64) {
	firstTarget := (p.target - 3) / 2
	if p.rng.Float64() < 0.1 {
		firstTarget = 100000
	}
	var first []Paragraph
	firstLen, secondLen := 0, 0
	for _, s := range p.cur {
		// Python's `or` short-circuits: the coin is tossed only when the
		// paragraph neither starts nor fits the first segment, the second
		// is still empty and the first is short of its target.
		if firstLen == 0 || firstLen+len(s.IDs) < firstTarget ||
			(secondLen == 0 && firstLen < firstTarget && p.rng.Float64() < 0.5) {
			first = append(first, s)
			firstLen += len(s.IDs)
		} else {
			secondLen += len(s.IDs) // the second segment, discarded
		}
	}
	p.cur, p.curLen = nil, 0
	if p.rng.Float64() < 0.05 {
		p.target = 5 + p.rng.IntN(p.maxLen-4) // random.randint(5, max_length)
	} else {
		p.target = p.maxLen
	}
	limit := p.maxLen - 2
	seq := Sequence{IDs: []int64{cls}, Words: []int{-1}}
	words := 0
	for _, s := range first {
		n := 0
		for k, id := range s.IDs {
			if len(seq.IDs)-1 >= limit {
				break
			}
			seq.IDs = append(seq.IDs, id)
			seq.Words = append(seq.Words, words+s.Words[k])
			n = max(n, s.Words[k]+1)
		}
		words += n
	}
	seq.IDs = append(seq.IDs, sep)
	seq.Words = append(seq.Words, -1)
	p.out = append(p.out, seq)
}

// cleanLine is the official clean(): trimmed, newlines as spaces, and
// "()" (what remains of a removed link in Wikipedia text) deleted.
func cleanLine(line string) string {
	return strings.ReplaceAll(strings.ReplaceAll(strings.TrimSpace(line), "\n", " "), "()", "")
}

// paragraph tokenises one line for the packer: the raw line's length in
// characters (filter_out counts them before cleaning), then the cleaned
// line's tokens up to 512, as the official tokenize(line, max_length=512,
// truncation=True). A blank line gives Chars 0, which the filter drops.
func paragraph(tok *Tokenizer, line string) (Paragraph, error) {
	if strings.TrimSpace(line) == "" {
		return Paragraph{}, nil
	}
	e, err := tok.Encode(cleanLine(line), 512+2)
	if err != nil {
		return Paragraph{}, err
	}
	ids, words := e.IDs[1:len(e.IDs)-1], e.Words[1:len(e.Words)-1] // without [CLS] and [SEP]
	first := -1
	for _, w := range words {
		if w >= 0 {
			first = w
			break
		}
	}
	renum := make([]int, len(words))
	for k, w := range words { // word ids from 0 within the paragraph
		renum[k] = max(w-first, 0)
	}
	return Paragraph{Chars: utf8.RuneCountInString(line), IDs: ids, Words: renum}, nil
}
