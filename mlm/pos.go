package mlm

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Tags are spaCy's 17 universal POS tags in the official code's order
// (data_utils.py's pos_classes), which fixes their ids. PTW keeps a
// running loss for each of the 17, all starting at 0, and the weights'
// mean and standard deviation run over all of them. The WordNet tagger
// never emits INTJ, PROPN and SYM: like a class absent from every
// official batch, they keep their initial loss 0 throughout, and still
// count in the mean and standard deviation, as officially.
var Tags = []string{"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"}

// Untagged are the tags the WordNet tagger never emits.
var Untagged = []string{"INTJ", "PROPN", "SYM"}

// TagID is a tag's index in Tags (X's for an unknown tag).
func TagID(tag string) int {
	for i, t := range Tags {
		if t == tag {
			return i
		}
	}
	return len(Tags) - 1
}

// closedClass lists English function words by universal tag. The paper
// tags its corpus with spaCy, which Debian does not have; this tagger
// uses these lists, then WordNet's open-class index files.
var closedClass = map[string]string{}

func init() {
	// A slice, not a map: the order decides the words listed twice, and a
	// map's iteration order would change it from one process to the next
	// (it did: "to" was PART in some runs and ADP in others).
	for _, l := range []struct{ tag, words string }{
		{"DET", "a an the this that these those each every either neither some any no all both another such what which whose"},
		{"ADP", "of in to for with on at by from about as into like through after over between out against during without before under around among across behind beyond near off above below upon within along toward towards despite throughout via per"},
		{"PRON", "i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it its itself we us our ours ourselves they them their theirs themselves who whom someone something anyone anything everyone everything nobody nothing one oneself"},
		{"CCONJ", "and or but nor yet so"},
		{"SCONJ", "if because although though while whereas unless since until whether than that when where whenever wherever"},
		{"AUX", "be is am are was were been being have has had having do does did can could may might must shall should will would"},
		{"PART", "not n't 's to"},
	} {
		for _, w := range strings.Fields(l.words) {
			if _, dup := closedClass[w]; !dup { // the first list wins: "that" is DET, "to" is ADP
				closedClass[w] = l.tag
			}
		}
	}
}

// taggerRules versions the tagger's rules that are code, not data (the
// detachment rules and the character classes in Tag). Change it with them:
// it is part of the corpus cache's key, with the closed-class lists.
const taggerRules = 1

// taggerKey is the tagger's rules as a string, in a fixed order, for the
// corpus cache's key: a changed word list or rule makes a new cache.
func taggerKey() string {
	words := make([]string, 0, len(closedClass))
	for w, tag := range closedClass {
		words = append(words, w+"="+tag)
	}
	sort.Strings(words)
	return fmt.Sprintf("rules %d|%s", taggerRules, strings.Join(words, " "))
}

// Tagger assigns coarse POS tags to words without context, from WordNet
// 3.0's index files: a word's tag is that of its part of speech with the
// most sense-tagged occurrences (tagsense_cnt, then synset count), after
// WordNet's exception lists and detachment rules for inflections (the
// morphy algorithm). Function words come from closed-class lists, numbers
// are NUM and punctuation PUNCT; anything else is X.
type Tagger struct {
	lemmas map[string][4]int // lemma -> score per noun, verb, adj, adv
	exc    [4]map[string]string
}

var wnPOS = []struct{ file, tag string }{{"noun", "NOUN"}, {"verb", "VERB"}, {"adj", "ADJ"}, {"adv", "ADV"}}

// NewTagger reads dir/index.{noun,verb,adj,adv} and the .exc files (dir ""
// for Debian's wordnet-base).
func NewTagger(dir string) (*Tagger, error) {
	if dir == "" {
		dir = "/usr/share/wordnet"
	}
	t := &Tagger{lemmas: map[string][4]int{}}
	for p, pos := range wnPOS {
		path := filepath.Join(dir, "index."+pos.file)
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("pos tagger: %w (install Debian's wordnet-base)", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == ' ' {
				continue
			}
			fs := strings.Fields(line)
			if len(fs) < 4 {
				continue
			}
			synsets, _ := strconv.Atoi(fs[2])
			ptrs, _ := strconv.Atoi(fs[3])
			tagged := 0
			if 5+ptrs < len(fs) {
				tagged, _ = strconv.Atoi(fs[5+ptrs])
			}
			s := t.lemmas[fs[0]]
			s[p] = 1000*tagged + synsets // sense-tagged counts first, synset counts break ties
			t.lemmas[fs[0]] = s
		}
		f.Close()
		t.exc[p] = map[string]string{}
		if ef, err := os.Open(filepath.Join(dir, pos.file+".exc")); err == nil {
			sc := bufio.NewScanner(ef)
			for sc.Scan() {
				if fs := strings.Fields(sc.Text()); len(fs) >= 2 {
					t.exc[p][fs[0]] = fs[1]
				}
			}
			ef.Close()
		}
	}
	return t, nil
}

// morphy's detachment rules per part of speech.
var detach = [4][][2]string{
	{{"s", ""}, {"ses", "s"}, {"xes", "x"}, {"zes", "z"}, {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"}},
	{{"s", ""}, {"ies", "y"}, {"es", "e"}, {"es", ""}, {"ed", "e"}, {"ed", ""}, {"ing", "e"}, {"ing", ""}},
	{{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}},
	{},
}

// Tag returns the word's tag.
func (t *Tagger) Tag(word string) string {
	w := strings.ToLower(word)
	if tag, ok := closedClass[w]; ok {
		return tag
	}
	if w == "" {
		return "X"
	}
	allPunct, allDigit := true, true
	for _, r := range w {
		allPunct = allPunct && (unicode.IsPunct(r) || unicode.IsSymbol(r))
		allDigit = allDigit && (unicode.IsDigit(r) || r == '.' || r == ',')
	}
	switch {
	case allPunct:
		return "PUNCT"
	case allDigit:
		return "NUM"
	}
	best, bestScore := -1, -1
	for p := range wnPOS {
		score := -1
		if s, ok := t.lemmas[w]; ok && s[p] > 0 {
			score = s[p]
		} else if base, ok := t.exc[p][w]; ok {
			score = t.lemmas[base][p]
		} else {
			for _, r := range detach[p] {
				if strings.HasSuffix(w, r[0]) && len(w) > len(r[0]) {
					if s := t.lemmas[strings.TrimSuffix(w, r[0])+r[1]][p]; s > 0 {
						score = s / 2 // an inflected form: weaker evidence than the lemma itself
						break
					}
				}
			}
		}
		if score > bestScore {
			best, bestScore = p, score
		}
	}
	if bestScore <= 0 {
		return "X"
	}
	return wnPOS[best].tag
}
