package ir

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// RM3Params configure RM3 pseudo-relevance feedback as Anserini's
// Rm3Reranker (io.anserini.rerank.lib.Rm3Reranker) implements it:
//
//  1. Search the original query with BM25 and take the top FbDocs
//     documents, ties broken by doc id ascending as Anserini's Lucene sort
//     does (its first stage keeps 50 hits, of which RM3 reads FbDocs).
//  2. For each of them, take its term vector (terms and their frequencies
//     in the document), drop terms shorter than 2 or longer than 20
//     characters, terms other than [a-z0-9]+ (when FilterTerms), and terms
//     in more than 10% of all documents (df/numDocs > 0.1, which stands in
//     for a stopword list), and keep the FbTerms most frequent (ties: term
//     ascending). Call the kept frequencies v_i(t) and their sum |v_i|.
//  3. Score each kept term: rm(t) = sum over the feedback documents of
//     v_i(t) / |v_i| * score_i, where score_i is document i's BM25 score
//     (documents with |v_i| <= 0.001 are skipped). Keep the FbTerms best
//     and scale them to sum to 1.
//  4. Interpolate with the original query, its term counts scaled to sum
//     to 1: w(t) = OriginalQueryWeight * q(t) + (1 - OriginalQueryWeight) * rm(t).
//  5. Search again with every term of w as a clause boosted by w(t).
//
// Arithmetic is float32 where Anserini's is (FeatureVector stores floats),
// so that expanded weights match Anserini's to the last bit in the usual
// case. The query's own terms are not filtered; a query term outside the
// feedback terms keeps OriginalQueryWeight * q(t).
type RM3Params struct {
	FbTerms             int     // feedback terms kept (Anserini: 10)
	FbDocs              int     // feedback documents (Anserini: 10)
	OriginalQueryWeight float32 // weight of the original query (Anserini: 0.5)
	FilterTerms         bool    // keep only [a-z0-9]+ feedback terms (Anserini: true)
}

// DefaultRM3 returns Anserini's defaults: 10 terms from 10 documents,
// original query weight 0.5, English term filter on.
func DefaultRM3() RM3Params {
	return RM3Params{FbTerms: 10, FbDocs: 10, OriginalQueryWeight: 0.5, FilterTerms: true}
}

func (p RM3Params) validate() error {
	if p.FbTerms < 1 || p.FbDocs < 1 {
		return fmt.Errorf("ir: RM3 fbTerms %d and fbDocs %d must be >= 1", p.FbTerms, p.FbDocs)
	}
	w := float64(p.OriginalQueryWeight)
	if math.IsNaN(w) || w < 0 || w > 1 {
		return fmt.Errorf("ir: RM3 original query weight %v, want [0, 1]", p.OriginalQueryWeight)
	}
	return nil
}

// ExpandRM3 returns the RM3 expansion of query (steps 1-4 of RM3Params):
// the weighted terms the second search uses, by weight descending (ties:
// term ascending).
func (ix *Index) ExpandRM3(query string, bm BM25Params, p RM3Params) ([]WeightedTerm, error) {
	if err := bm.validate(); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return nil, errClosed
	}
	tokens := ix.an.Analyze(query)
	return ix.expandRM3(tokens, queryTerms(tokens), bm, p, ix.newScratch()), nil
}

// featureOrder sorts as Anserini's FeatureVector.getOrderedFeatures
// (VALUE_DESCENDING): value descending, then feature ascending.
func featureOrder(a, b WeightedTerm) int {
	if a.Weight != b.Weight {
		if a.Weight > b.Weight {
			return -1
		}
		return 1
	}
	return cmp.Compare(a.Term, b.Term)
}

// pruneFeatures keeps the k best features (FeatureVector.pruneToSize).
func pruneFeatures(f []WeightedTerm, k int) []WeightedTerm {
	slices.SortFunc(f, featureOrder)
	if len(f) > k {
		f = f[:k]
	}
	return f
}

// l1Norm is FeatureVector.computeL1Norm: a float64 sum of |value|.
func l1Norm(f []WeightedTerm) float64 {
	s := 0.0
	for _, x := range f {
		s += math.Abs(float64(x.Weight))
	}
	return s
}

// scaleL1 is FeatureVector.scaleToUnitL1Norm: value = (float)(value / norm).
func scaleL1(f []WeightedTerm) {
	n := l1Norm(f)
	for i := range f {
		f[i].Weight = float32(float64(f[i].Weight) / n)
	}
}

// isFeedbackTerm applies Rm3Reranker's term filters (length in UTF-16
// units, as Java's String.length counts them).
func (ix *Index) isFeedbackTerm(term []byte, df int, filter bool) bool {
	n := 0
	for _, r := range string(term) {
		n++
		if r > 0xFFFF {
			n++
		}
	}
	if n < 2 || n > 20 {
		return false
	}
	if filter {
		for _, c := range term {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
				return false
			}
		}
	}
	// Java: float ratio = (float) df / numDocs; if (ratio > 0.1f) skip.
	return !(float32(df)/float32(ix.nDocs) > 0.1)
}

// expandRM3 implements steps 1-4 of RM3Params. Callers hold ix.mu.
func (ix *Index) expandRM3(tokens []string, terms []WeightedTerm, bm BM25Params, p RM3Params, sc *scratch) []WeightedTerm {
	if len(tokens) == 0 {
		return nil
	}
	fb := ix.top(ix.score(terms, bm, sc), p.FbDocs, true)

	// Original query: term counts scaled to unit L1 norm.
	qfv := slices.Clone(terms)
	scaleL1(qfv)

	// Feedback documents' pruned term vectors.
	type docVec struct {
		terms map[string]float32
		norm  float32
		score float32
	}
	vecs := make([]docVec, 0, len(fb))
	vocab := map[string]struct{}{}
	for _, d := range fb {
		var f []WeightedTerm
		lo, hi := ix.vecRange(int(d.doc))
		for i := lo; i < hi; i++ {
			t := int(ix.u32(secVecTerms, i))
			term := ix.termBytes(t)
			plo, phi := ix.postRange(t)
			if !ix.isFeedbackTerm(term, phi-plo, p.FilterTerms) {
				continue
			}
			f = append(f, WeightedTerm{string(term), float32(ix.u32(secVecFreqs, i))})
		}
		f = pruneFeatures(f, p.FbTerms)
		v := docVec{terms: make(map[string]float32, len(f)), norm: float32(l1Norm(f)), score: d.score}
		for _, x := range f {
			v.terms[x.Term] = x.Weight
			vocab[x.Term] = struct{}{}
		}
		vecs = append(vecs, v)
	}

	// Relevance model: sum_i v_i(t) / |v_i| * score_i, in float32.
	rm := make([]WeightedTerm, 0, len(vocab))
	for t := range vocab {
		var w float32
		for _, v := range vecs {
			if v.norm > 0.001 {
				// The conversion keeps Go from fusing the multiply-add.
				w += float32(v.terms[t] / v.norm * v.score)
			}
		}
		rm = append(rm, WeightedTerm{t, w})
	}
	rm = pruneFeatures(rm, p.FbTerms)
	scaleL1(rm)

	// Interpolation (FeatureVector.interpolate): Java computes
	// (float) (xWeight * x + (1.0 - xWeight) * y), the first product in
	// float32 and the rest in float64.
	qw := map[string]float32{}
	for _, x := range qfv {
		qw[x.Term] = x.Weight
	}
	rw := map[string]float32{}
	for _, x := range rm {
		rw[x.Term] = x.Weight
	}
	union := map[string]struct{}{}
	for t := range qw {
		union[t] = struct{}{}
	}
	for t := range rw {
		union[t] = struct{}{}
	}
	ow := p.OriginalQueryWeight
	out := make([]WeightedTerm, 0, len(union))
	for t := range union {
		w := float32(float64(ow*qw[t]) + float64((1.0-float64(ow))*float64(rw[t])))
		out = append(out, WeightedTerm{t, w})
	}
	slices.SortFunc(out, featureOrder)
	return out
}
