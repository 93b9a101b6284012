package mlm

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Specials are the special tokens of a trained vocabulary, with ids 0..4.
var Specials = []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}

// BasicTokenize is BERT's BasicTokenizer for uncased models: clean control
// characters, lowercase, strip accents (NFD, drop combining marks), split
// on whitespace and around punctuation.
func BasicTokenize(text string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, string(cur))
			cur = cur[:0]
		}
	}
	for _, r := range norm.NFD.String(strings.ToLower(text)) {
		switch {
		case unicode.Is(unicode.Mn, r), r == 0, r == 0xfffd, unicode.IsControl(r) && !unicode.IsSpace(r):
			continue
		case unicode.IsSpace(r):
			flush()
		case isPunct(r):
			flush()
			words = append(words, string(r))
		default:
			cur = append(cur, r)
		}
	}
	flush()
	return words
}

// isPunct is BERT's _is_punctuation: ASCII symbols count as punctuation.
func isPunct(r rune) bool {
	if (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126) {
		return true
	}
	return unicode.IsPunct(r)
}

// TrainWordPiece learns a WordPiece vocabulary of at most size entries
// from texts, as HF's WordPieceTrainer does: BPE merges by pair frequency
// over BERT-basic-tokenized words, where a word starts as its first
// character followed by "##"-prefixed characters, and a merge of a and b
// is a + b without b's "##". Words seen fewer than minFreq times are
// ignored. The vocabulary is the specials, then the alphabet, then the
// merges in order.
func TrainWordPiece(texts []string, size, minFreq int) ([]string, error) {
	counts := map[string]int{}
	for _, t := range texts {
		for _, w := range BasicTokenize(t) {
			counts[w]++
		}
	}
	type word struct {
		units []string
		count int
	}
	var words []word
	vocab := append([]string{}, Specials...)
	seen := map[string]bool{}
	for _, s := range Specials {
		seen[s] = true
	}
	keys := make([]string, 0, len(counts))
	for w, c := range counts {
		if c >= minFreq {
			keys = append(keys, w)
		}
	}
	sort.Strings(keys) // deterministic
	var alphabet []string
	for _, w := range keys {
		var units []string
		for i, r := range []rune(w) {
			u := string(r)
			if i > 0 {
				u = "##" + u
			}
			units = append(units, u)
			if !seen[u] {
				seen[u] = true
				alphabet = append(alphabet, u)
			}
		}
		words = append(words, word{units, counts[w]})
	}
	sort.Strings(alphabet)
	vocab = append(vocab, alphabet...)
	if len(vocab) > size {
		return nil, fmt.Errorf("wordpiece: vocabulary size %d is smaller than the %d specials and characters", size, len(vocab))
	}
	type pair struct{ a, b string }
	pairCount := map[pair]int{}
	where := map[pair]map[int]bool{}
	add := func(i int, sign int) {
		u := words[i].units
		for k := 0; k+1 < len(u); k++ {
			p := pair{u[k], u[k+1]}
			pairCount[p] += sign * words[i].count
			if pairCount[p] <= 0 {
				delete(pairCount, p)
			}
			if sign > 0 {
				if where[p] == nil {
					where[p] = map[int]bool{}
				}
				where[p][i] = true
			}
		}
	}
	for i := range words {
		add(i, 1)
	}
	for len(vocab) < size {
		var best pair
		bestN := 0
		for p, n := range pairCount {
			if n > bestN || (n == bestN && n > 0 && (p.a+"\x00"+p.b) < (best.a+"\x00"+best.b)) {
				best, bestN = p, n
			}
		}
		if bestN == 0 {
			break // every word is a single unit
		}
		merged := best.a + strings.TrimPrefix(best.b, "##")
		for i := range where[best] {
			add(i, -1)
			u := words[i].units
			var out []string
			for k := 0; k < len(u); k++ {
				if k+1 < len(u) && u[k] == best.a && u[k+1] == best.b {
					out = append(out, merged)
					k++
				} else {
					out = append(out, u[k])
				}
			}
			words[i].units = out
			add(i, 1)
		}
		delete(pairCount, best)
		delete(where, best)
		if !seen[merged] {
			seen[merged] = true
			vocab = append(vocab, merged)
		}
	}
	return vocab, nil
}

// WriteVocab writes one token per line, as BERT's vocab.txt.
func WriteVocab(path string, vocab []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, t := range vocab {
		fmt.Fprintln(w, t)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
