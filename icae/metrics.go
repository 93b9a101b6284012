package icae

import "math"

// TokenAccuracy is the share of reference tokens that the hypothesis has
// at the same position (a hypothesis shorter than its reference misses the
// rest), over all pairs: how exactly a reconstruction restores the context.
func TokenAccuracy(hyps, refs [][]int64) float64 {
	var hit, total int
	for i, ref := range refs {
		for j, t := range ref {
			if j < len(hyps[i]) && hyps[i][j] == t {
				hit++
			}
		}
		total += len(ref)
	}
	if total == 0 {
		return 0
	}
	return float64(hit) / float64(total)
}

// BLEU is corpus-level BLEU-4 over token ids (Papineni et al. 2002, as
// sacrebleu and NLTK's corpus_bleu compute it without smoothing): the
// geometric mean of the clipped 1- to 4-gram precisions, pooled over the
// corpus, times the brevity penalty exp(1 - r/c) when the hypotheses are
// shorter in total (c) than the references (r). 0 when some order has no
// match.
func BLEU(hyps, refs [][]int64) float64 {
	var match, count [4]float64
	var hypLen, refLen float64
	for i, ref := range refs {
		hyp := hyps[i]
		hypLen += float64(len(hyp))
		refLen += float64(len(ref))
		for n := 1; n <= 4; n++ {
			refCounts := ngrams(ref, n)
			for g, c := range ngrams(hyp, n) {
				match[n-1] += math.Min(float64(c), float64(refCounts[g]))
				count[n-1] += float64(c)
			}
		}
	}
	var logP float64
	for n := range 4 {
		if match[n] == 0 || count[n] == 0 {
			return 0
		}
		logP += math.Log(match[n]/count[n]) / 4
	}
	bp := 1.0
	if hypLen < refLen {
		bp = math.Exp(1 - refLen/hypLen)
	}
	return bp * math.Exp(logP)
}

type ngram [4]int64

func ngrams(s []int64, n int) map[ngram]int {
	out := map[ngram]int{}
	for i := 0; i+n <= len(s); i++ {
		var g ngram
		copy(g[:], s[i:i+n])
		for k := n; k < 4; k++ {
			g[k] = -1 // so that a 2-gram never equals a 3-gram's prefix
		}
		out[g]++
	}
	return out
}
