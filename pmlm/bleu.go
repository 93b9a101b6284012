package pmlm

import (
	"fmt"
	"math"
	"strings"
)

// UniLM's SQuAD question-generation numbers (unilm-v1/src/qg/eval.py and
// eval_on_unilm_tokenized_ref.py, reused for UniLMv2; s2s-ft has no QG
// evaluation of its own) come from Du et al.'s nqg/qgevalcap, whose Bleu(4)
// is the coco-caption BleuScorer (bleu/bleu_scorer.py) called with
// option='closest'. That is what CorpusBLEU computes, so that reported
// BLEU-4 is comparable with the papers':
//
//   - tokens are the whitespace-separated words of the already tokenized
//     strings (no further tokenization, no lowercasing);
//   - clipped n-gram matches use, per n-gram, the maximum count in any one
//     reference; matches and guesses (max(0, len-n+1)) are summed over the
//     corpus;
//   - the reference length of a sentence is the reference length closest to
//     the candidate's, the shorter one on a tie; lengths are summed over the
//     corpus;
//   - BLEU-n = (prod_{k<=n} (correct_k + 1e-15) / (guess_k + 1e-9))^(1/n),
//     times exp(1 - 1/ratio) when ratio = (testlen + 1e-15) / (reflen + 1e-9)
//     is below 1.
//
// There is no smoothing beyond those two constants, which do not make a zero
// count give zero: a corpus without a single 4-gram match gets a tiny
// positive BLEU-4 (about 1e-4 to 1e-5), and an n-gram order with no guesses
// at all contributes a factor 1e-6.

const (
	bleuTiny  = 1e-15
	bleuSmall = 1e-9
	bleuN     = 4
)

// BLEUScores is the corpus result, with the counts behind it for reports.
type BLEUScores struct {
	// BLEU[n-1] is cumulative BLEU-n; BLEU[3] is the reported BLEU-4.
	BLEU    [bleuN]float64
	Correct [bleuN]int // clipped n-gram matches, n = 1..4
	Guess   [bleuN]int // candidate n-grams, n = 1..4
	TestLen int        // candidate words
	RefLen  int        // closest reference words
}

// bleuFields splits on runs of ASCII whitespace as Python 2's str.split()
// does on the byte strings qgevalcap receives.
func bleuFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		switch r {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			return true
		}
		return false
	})
}

func bleuCounts(words []string) map[string]int {
	m := map[string]int{}
	for k := 1; k <= bleuN; k++ {
		for i := 0; i+k <= len(words); i++ {
			m[strings.Join(words[i:i+k], " ")]++
		}
	}
	return m
}

// CorpusBLEU scores candidates against their reference sets (each needs at
// least one reference, as qgevalcap asserts) with qgevalcap's BLEU; see the
// definition above.
func CorpusBLEU(candidates []string, references [][]string) (BLEUScores, error) {
	var s BLEUScores
	if len(candidates) != len(references) {
		return s, fmt.Errorf("pmlm: %d candidates for %d reference sets", len(candidates), len(references))
	}
	for i, cand := range candidates {
		if len(references[i]) == 0 {
			return s, fmt.Errorf("pmlm: candidate %d has no reference", i)
		}
		refMax := map[string]int{}
		refLens := make([]int, len(references[i]))
		for j, ref := range references[i] {
			w := bleuFields(ref)
			refLens[j] = len(w)
			for g, c := range bleuCounts(w) {
				refMax[g] = max(refMax[g], c)
			}
		}
		w := bleuFields(cand)
		testLen := len(w)
		// min((abs(l-testlen), l) for l in reflen)[1]
		best := refLens[0]
		for _, l := range refLens[1:] {
			d, bd := bleuAbs(l-testLen), bleuAbs(best-testLen)
			if d < bd || d == bd && l < best {
				best = l
			}
		}
		s.TestLen += testLen
		s.RefLen += best
		for k := 1; k <= bleuN; k++ {
			s.Guess[k-1] += max(0, testLen-k+1)
		}
		for g, c := range bleuCounts(w) {
			s.Correct[strings.Count(g, " ")] += min(refMax[g], c)
		}
	}
	prod := 1.0
	for k := 0; k < bleuN; k++ {
		prod *= (float64(s.Correct[k]) + bleuTiny) / (float64(s.Guess[k]) + bleuSmall)
		if k == 3 {
			// prod**0.25 as sqrt(sqrt(prod)): Python's pow is correctly
			// rounded and math.Pow is not; the two square roots agree with
			// it bit for bit far more often (both within ~1e-15 anyway).
			s.BLEU[k] = math.Sqrt(math.Sqrt(prod))
		} else {
			s.BLEU[k] = math.Pow(prod, 1.0/float64(k+1))
		}
	}
	ratio := (float64(s.TestLen) + bleuTiny) / (float64(s.RefLen) + bleuSmall)
	if ratio < 1 {
		bp := math.Exp(1 - 1/ratio)
		for k := range s.BLEU {
			s.BLEU[k] *= bp
		}
	}
	return s, nil
}

func bleuAbs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// QGEvalBLEU runs unilm-v1/src/qg/eval.py's pipeline (the Du et al. 2017
// references) up to BLEU: sources[i], predictions[i] and references[i] are
// the i-th lines of the source, output and target files without their
// newline. As in the script, predictions go through fix_tokenization (see
// QGFixTokenization) and lowercasing, and examples are grouped by their
// stripped, lowercased source sentence: every reference of a sentence is
// kept, but only the last prediction for it is scored. That grouping is part
// of the published numbers, so it is reproduced rather than fixed.
// Lowercasing and stripping are ASCII-only, as on Python 2 byte strings.
func QGEvalBLEU(sources, predictions, references []string) (BLEUScores, error) {
	if len(sources) != len(predictions) || len(sources) != len(references) {
		return BLEUScores{}, fmt.Errorf("pmlm: %d sources, %d predictions, %d references",
			len(sources), len(predictions), len(references))
	}
	index := map[string]int{}
	var cands []string
	var refs [][]string
	for i, src := range sources {
		key := bleuLowerASCII(bleuStrip(src))
		pred := bleuLowerASCII(QGFixTokenization(bleuStrip(predictions[i])))
		j, ok := index[key]
		if !ok {
			j = len(cands)
			index[key] = j
			cands = append(cands, "")
			refs = append(refs, nil)
		}
		cands[j] = pred
		refs[j] = append(refs[j], bleuStrip(references[i]))
	}
	return CorpusBLEU(cands, refs)
}

func bleuStrip(s string) string { return strings.Trim(s, " \t\n\r\v\f") }

func bleuLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// bleuPunct is Python's string.punctuation.
const bleuPunct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

var bleuTokMap = map[string]string{
	"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-",
	"[UNK]": "UNK", "&": "&amp;", "<": "&lt;", ">": "&gt;",
}

// bleuIsDigit is Python 2's str.isdigit on a byte string.
func bleuIsDigit(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// bleuIsDigitComma is eval.py's _is_digit: every byte a digit or a comma
// (true for the empty string, as the Python loop is).
func bleuIsDigitComma(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != ',' {
			return false
		}
	}
	return true
}

// bleuIsUpper1 is str.isupper on a one-byte string.
func bleuIsUpper1(s string) bool { return len(s) == 1 && s[0] >= 'A' && s[0] <= 'Z' }

// QGFixTokenization is fix_tokenization from unilm-v1/src/qg/eval.py: it
// re-tokenizes BERT-style output the way Du et al.'s references are
// tokenized (brackets as -lrb- etc., double quotes as PTB-style pairs of
// backquotes and apostrophes, n't / 's / 'd / 'll clitics, "...", 3,000 and
// 3.03 numbers, U.N.-style acronyms, hyphenated words), so that BLEU is not
// lost to tokenization mismatches. Quirks of the
// original are kept, e.g. the acronym rule resumes scanning at the second
// period and so leaves an extra "." behind; string.punctuation tests on a
// whole token are substring tests, as in Python.
func QGFixTokenization(text string) string {
	in := bleuFields(text)
	var out []string
	leftQuote, leftSingle, prevDash := false, false, false
	lastOut := func() string { return out[len(out)-1] }
	for i := 0; i < len(in); {
		tok := in[i]
		flagPrevDash := false
		n := len(in)
		if m, ok := bleuTokMap[tok]; ok {
			out = append(out, m)
			i++
		} else if tok == `"` {
			if leftQuote {
				out = append(out, "''")
			} else {
				out = append(out, "``")
			}
			leftQuote = !leftQuote
			i++
		} else if tok == "'" && len(out) > 0 && strings.HasSuffix(lastOut(), "n") && i < n-1 && in[i+1] == "t" {
			out[len(out)-1] = strings.TrimSuffix(lastOut(), "n")
			out = append(out, "n't")
			i += 2
		} else if tok == "'" && i < n-1 && (in[i+1] == "s" || in[i+1] == "d" || in[i+1] == "ll") {
			out = append(out, "'"+in[i+1])
			i += 2
		} else if tok == "'" {
			if leftSingle {
				out = append(out, "'")
			} else {
				out = append(out, "`")
			}
			leftSingle = !leftSingle
			i++
		} else if tok == "." && i < n-2 && in[i+1] == "." && in[i+2] == "." {
			out = append(out, "...")
			i += 3
		} else if tok == "," && len(out) > 0 && bleuIsDigitComma(lastOut()) && i < n-1 && bleuIsDigitComma(in[i+1]) {
			out[len(out)-1] += "," + in[i+1]
			i += 2
		} else if tok == "." && len(out) > 0 && bleuIsDigit(lastOut()) && i < n-1 && bleuIsDigit(in[i+1]) {
			out[len(out)-1] += "." + in[i+1]
			i += 2
		} else if tok == "." && len(out) > 0 && bleuIsUpper1(lastOut()) && i < n-2 && bleuIsUpper1(in[i+1]) && in[i+2] == "." {
			k := i + 3
			for k+2 < n && bleuIsUpper1(in[k+1]) && in[k+2] == "." {
				k += 2
			}
			out[len(out)-1] += strings.Join(in[i:k], "")
			i += 2
		} else if tok == "-" {
			switch {
			case i < n-1 && in[i+1] == "-":
				out = append(out, "--")
				i += 2
			case i == n-1 || i == 0:
				out = append(out, "-")
				i++
			case !strings.Contains(bleuPunct, lastOut()) && strings.IndexByte(bleuPunct, in[i+1][0]) < 0:
				out[len(out)-1] += "-"
				i++
				flagPrevDash = true
			default:
				out = append(out, "-")
				i++
			}
		} else if prevDash && len(out) > 0 && strings.IndexByte(bleuPunct, tok[0]) < 0 {
			out[len(out)-1] += tok
			i++
		} else {
			out = append(out, tok)
			i++
		}
		prevDash = flagPrevDash
	}
	return strings.Join(out, " ")
}
