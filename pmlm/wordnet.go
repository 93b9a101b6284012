package pmlm

import (
	"fmt"
	"strings"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/mlm"
)

// Example is one sequence-to-sequence example as text.
type Example struct {
	Source, Target string
	// Answers are the targets any of which counts as an exact match: for
	// gloss-to-word every lemma of the synset, for word-to-gloss the gloss.
	Answers []string
	Heldout bool
}

// Generation tasks built on WordNet, the real text of this machine.
const (
	// GlossToWord asks for a synset's words from its definition: source
	// "a member of the genus canis ...", target "dog , domestic dog ,
	// canis familiaris" (the lemmas in WordNet's order). A reverse
	// dictionary: the first lemma is the headword.
	GlossToWord = "gloss_to_word"
	// WordToGloss asks for the definition of a word and its part of
	// speech: source "dog ( noun )", target the gloss.
	WordToGloss = "word_to_gloss"
)

var posNames = map[byte]string{'n': "noun", 'v': "verb", 'a': "adjective", 's': "adjective", 'r': "adverb"}

// WordNetExamples makes the examples of task from WordNet in dir ("" for
// Debian's), with mlm's held-out split of synsets at share, so that a
// model pre-trained by mlm, metapt or pmlm on the same split has never
// read a test synset's gloss.
func WordNetExamples(dir, task string, share float64) ([]Example, error) {
	if task != GlossToWord && task != WordToGloss {
		return nil, fmt.Errorf("unknown WordNet generation task %q (want %q or %q)", task, GlossToWord, WordToGloss)
	}
	syn, err := data.WordNet(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Example, 0, len(syn))
	for _, s := range syn {
		if len(s.Lemmas) == 0 || strings.TrimSpace(s.Definition) == "" {
			continue
		}
		e := Example{Heldout: mlm.HeldoutSynset(s, share)}
		if task == GlossToWord {
			e.Source, e.Target, e.Answers = s.Definition, strings.Join(s.Lemmas, " , "), s.Lemmas
		} else {
			e.Source, e.Target = s.Lemmas[0]+" ( "+posNames[s.POS]+" )", s.Definition
			e.Answers = []string{s.Definition}
		}
		out = append(out, e)
	}
	return out, nil
}

// Normalize is the text as the uncased BERT tokenizer sees it, words
// separated by single spaces ("Canis familiaris," -> "canis familiaris
// ,"), so that generated text, decoded from word pieces, compares with
// the references.
func Normalize(text string) string { return strings.Join(mlm.BasicTokenize(text), " ") }

// Detokenize joins word pieces into text: "##" pieces continue the word
// before them. Special tokens are dropped.
func Detokenize(tok *mlm.Tokenizer, ids []int64) string {
	var b strings.Builder
	for _, id := range ids {
		if tok.IsSpecial(id) && id != tok.UNK {
			continue
		}
		t := tok.Token(id)
		if rest, ok := strings.CutPrefix(t, "##"); ok && b.Len() > 0 {
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

// FirstAnswerMatch says whether the first item of a generated list ("dog
// , domestic dog" -> "dog") is one of the answers, compared normalised:
// the reverse dictionary's hit at 1.
func FirstAnswerMatch(generated string, answers []string) bool {
	first, _, _ := strings.Cut(Normalize(generated), " , ")
	first = strings.TrimSpace(first)
	for _, a := range answers {
		if first != "" && first == Normalize(a) {
			return true
		}
	}
	return false
}
