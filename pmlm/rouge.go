package pmlm

import (
	"fmt"
	"strings"
)

// The ROUGE definitions below follow Google's rouge-score package
// (rouge/rouge_scorer.py, tokenize.py, scoring.py) line by line, so that the
// numbers match the scorer most summarization papers and libraries report
// without running Python. Stemming is a hook: rouge-score's use_stemmer=True
// is NLTK's PorterStemmer in its NLTK_EXTENSIONS mode, which no Go module
// reproduces, so callers pass nil (use_stemmer=False) unless they supply an
// exact port.

// RougeScore is rouge-score's Score tuple.
type RougeScore struct {
	Precision float64
	Recall    float64
	F         float64
}

// RougeScores holds the four types this package computes for one example or,
// from CorpusRouge, their means.
type RougeScores struct {
	Rouge1    RougeScore
	Rouge2    RougeScore
	RougeL    RougeScore
	RougeLsum RougeScore
}

// RougeTokenize is rouge-score's tokenize.tokenize: lowercase, replace every
// run of characters outside [a-z0-9] by a space, split, stem tokens longer
// than 3 characters when stem is non-nil, and keep only non-empty [a-z0-9]+
// tokens. Besides A-Z, Python's str.lower turns only two characters into
// ASCII letters: U+0130 (to "i" plus a combining dot, i.e. "i" then a
// separator) and U+212A KELVIN SIGN (to "k"). Those are mapped and every
// other non-ASCII character is a separator, which gives Python's result
// without depending on either language's Unicode tables.
func RougeTokenize(text string, stem func(string) string) []string {
	var toks []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for _, r := range text {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			cur.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			cur.WriteRune(r + ('a' - 'A'))
		case r == '\u212a':
			cur.WriteByte('k')
		case r == '\u0130':
			cur.WriteByte('i')
			flush()
		default:
			flush()
		}
	}
	flush()
	if stem == nil {
		return toks
	}
	out := toks[:0]
	for _, t := range toks {
		if len(t) > 3 {
			t = stem(t)
		}
		if rougeValidToken(t) {
			out = append(out, t)
		}
	}
	return out
}

// rougeValidToken is the final ^[a-z0-9]+$ filter of tokenize.py, which only
// matters after stemming.
func rougeValidToken(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// rougeF is scoring.fmeasure: the harmonic mean, 0 when both are 0.
func rougeF(p, r float64) float64 {
	if p+r > 0 {
		return 2 * p * r / (p + r)
	}
	return 0
}

func rougeNgrams(toks []string, n int) map[string]int {
	m := map[string]int{}
	for i := 0; i+n <= len(toks); i++ {
		// Tokens are [a-z0-9]+ (or whatever a custom tokenizer gives), so a
		// control character cannot occur inside one and is a safe joiner.
		m[strings.Join(toks[i:i+n], "\x00")]++
	}
	return m
}

// RougeN is rouge-score's rougeN (_score_ngrams): clipped n-gram overlap over
// max(count, 1), so an empty side or one shorter than n scores 0 rather than
// failing. n must be positive (rouge-score raises ValueError; this panics).
func RougeN(target, prediction []string, n int) RougeScore {
	if n <= 0 {
		panic(fmt.Sprintf("pmlm: RougeN with n=%d", n))
	}
	t, p := rougeNgrams(target, n), rougeNgrams(prediction, n)
	var inter, tc, pc int
	for g, c := range t {
		inter += min(c, p[g])
		tc += c
	}
	for _, c := range p {
		pc += c
	}
	prec := float64(inter) / float64(max(pc, 1))
	rec := float64(inter) / float64(max(tc, 1))
	return RougeScore{prec, rec, rougeF(prec, rec)}
}

// rougeLCSTable is _lcs_table: rows over ref, columns over can.
func rougeLCSTable(ref, can []string) [][]int {
	t := make([][]int, len(ref)+1)
	for i := range t {
		t[i] = make([]int, len(can)+1)
	}
	for i := 1; i <= len(ref); i++ {
		for j := 1; j <= len(can); j++ {
			if ref[i-1] == can[j-1] {
				t[i][j] = t[i-1][j-1] + 1
			} else {
				t[i][j] = max(t[i-1][j], t[i][j-1])
			}
		}
	}
	return t
}

// RougeL is rouge-score's sentence-level rougeL (_score_lcs): LCS length over
// the prediction (precision) and target (recall) lengths, all zero when
// either side is empty.
func RougeL(target, prediction []string) RougeScore {
	if len(target) == 0 || len(prediction) == 0 {
		return RougeScore{}
	}
	t := rougeLCSTable(target, prediction)
	l := float64(t[len(target)][len(prediction)])
	p := l / float64(len(prediction))
	r := l / float64(len(target))
	return RougeScore{p, r, rougeF(p, r)}
}

// rougeLCSIndices is lcs_ind/_backtrack_norec: the ref positions of one LCS,
// chosen by the same tie-breaking walk, since which LCS is taken changes the
// union in RougeLsum.
func rougeLCSIndices(ref, can []string) []int {
	t := rougeLCSTable(ref, can)
	i, j := len(ref), len(can)
	var idx []int
	for i > 0 && j > 0 {
		switch {
		case ref[i-1] == can[j-1]:
			idx = append(idx, i-1)
			i--
			j--
		case t[i][j-1] > t[i-1][j]:
			j--
		default:
			i--
		}
	}
	for a, b := 0, len(idx)-1; a < b; a, b = a+1, b-1 {
		idx[a], idx[b] = idx[b], idx[a]
	}
	return idx
}

// RougeLsum is rouge-score's summary-level rougeLsum (_summary_level_lcs):
// for each target sentence the union of its LCS positions with every
// predicted sentence, with hits capped by the token counts of both sides (the
// ROUGE-1.5.5 guard against double counting), over the total token counts.
func RougeLsum(targetSents, predictionSents [][]string) RougeScore {
	if len(targetSents) == 0 || len(predictionSents) == 0 {
		return RougeScore{}
	}
	var m, n int
	cntR, cntC := map[string]int{}, map[string]int{}
	for _, s := range targetSents {
		m += len(s)
		for _, w := range s {
			cntR[w]++
		}
	}
	for _, s := range predictionSents {
		n += len(s)
		for _, w := range s {
			cntC[w]++
		}
	}
	if m == 0 || n == 0 {
		return RougeScore{}
	}
	hits := 0
	for _, r := range targetSents {
		union := make([]bool, len(r))
		for _, c := range predictionSents {
			for _, i := range rougeLCSIndices(r, c) {
				union[i] = true
			}
		}
		for i, in := range union {
			if !in {
				continue
			}
			if w := r[i]; cntC[w] > 0 && cntR[w] > 0 {
				hits++
				cntC[w]--
				cntR[w]--
			}
		}
	}
	rec := float64(hits) / float64(m)
	prec := float64(hits) / float64(n)
	return RougeScore{prec, rec, rougeF(prec, rec)}
}

// rougeSentences is rougeLsum's get_sents with split_summaries=False:
// sentences are the non-empty lines of the text.
func rougeSentences(text string, stem func(string) string) [][]string {
	var out [][]string
	for _, s := range strings.Split(text, "\n") {
		if s != "" {
			out = append(out, RougeTokenize(s, stem))
		}
	}
	return out
}

// ScoreRouge is RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"]).score
// for one (target, prediction) pair; note the target comes first, as in
// rouge-score. rougeLsum treats newlines as sentence breaks.
func ScoreRouge(target, prediction string, stem func(string) string) RougeScores {
	t, p := RougeTokenize(target, stem), RougeTokenize(prediction, stem)
	return RougeScores{
		Rouge1:    RougeN(t, p, 1),
		Rouge2:    RougeN(t, p, 2),
		RougeL:    RougeL(t, p),
		RougeLsum: RougeLsum(rougeSentences(target, stem), rougeSentences(prediction, stem)),
	}
}

// CorpusRouge averages ScoreRouge over examples: the plain mean of each of
// precision, recall and F, which is what rouge-score's BootstrapAggregator
// estimates as its "mid" value (we skip the resampling, which only adds
// noise and confidence bounds).
func CorpusRouge(targets, predictions []string, stem func(string) string) (RougeScores, error) {
	if len(targets) != len(predictions) {
		return RougeScores{}, fmt.Errorf("pmlm: %d targets for %d predictions", len(targets), len(predictions))
	}
	if len(targets) == 0 {
		return RougeScores{}, fmt.Errorf("pmlm: no examples to score")
	}
	var sum RougeScores
	add := func(a *RougeScore, b RougeScore) {
		a.Precision += b.Precision
		a.Recall += b.Recall
		a.F += b.F
	}
	for i := range targets {
		s := ScoreRouge(targets[i], predictions[i], stem)
		add(&sum.Rouge1, s.Rouge1)
		add(&sum.Rouge2, s.Rouge2)
		add(&sum.RougeL, s.RougeL)
		add(&sum.RougeLsum, s.RougeLsum)
	}
	n := float64(len(targets))
	div := func(a *RougeScore) {
		a.Precision /= n
		a.Recall /= n
		a.F /= n
	}
	div(&sum.Rouge1)
	div(&sum.Rouge2)
	div(&sum.RougeL)
	div(&sum.RougeLsum)
	return sum, nil
}
