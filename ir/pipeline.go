package ir

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
)

// Retriever is a first stage: it ranks the whole collection for each query
// and returns the top k, best first in trec_eval's order (SortTREC).
// out[i] belongs to queries[i]; a query with no match gets an empty list.
//
// It takes a batch rather than one query because the stages to come do
// their work per batch: a bi-encoder encodes a batch of queries in one
// forward pass and scores it against the corpus in one matrix product, which
// costs little more than one query does. The search service gathers
// concurrent requests into such batches (see Server). Implementations must
// be safe for concurrent calls and should return ctx.Err() soon after ctx
// is done, so that a timed-out request stops using the machine.
type Retriever interface {
	Retrieve(ctx context.Context, queries []string, k int) ([][]Result, error)
}

// Reranker is a second stage: it rescores candidates[i], documents a first
// stage retrieved for queries[i], and returns the best k of them, best first
// in trec_eval's order. A cross-encoder such as monoBERT reads each
// (query, document) pair, which is why it only sees a first stage's top few
// hundred. Batched and concurrent-safe for the same reasons as Retriever.
type Reranker interface {
	Rerank(ctx context.Context, queries []string, candidates [][]Result, k int) ([][]Result, error)
}

// RetrieverFunc makes a function a Retriever.
type RetrieverFunc func(ctx context.Context, queries []string, k int) ([][]Result, error)

// Retrieve calls f.
func (f RetrieverFunc) Retrieve(ctx context.Context, queries []string, k int) ([][]Result, error) {
	return f(ctx, queries, k)
}

// RerankerFunc makes a function a Reranker.
type RerankerFunc func(ctx context.Context, queries []string, candidates [][]Result, k int) ([][]Result, error)

// Rerank calls f.
func (f RerankerFunc) Rerank(ctx context.Context, queries []string, candidates [][]Result, k int) ([][]Result, error) {
	return f(ctx, queries, candidates, k)
}

// DefaultRerankDepth is the number of first-stage candidates a Pipeline
// re-ranks when RerankDepth is not set. monoBERT's MS MARCO runs re-rank
// 1000, which costs a thousand cross-encoder passes per query; 100 keeps
// an interactive service responsive and loses little MRR@10 (the survey's
// re-ranking rows are computed on the top 1000: set RerankDepth for those).
const DefaultRerankDepth = 100

// Pipeline is what the search service and `repro ir search` run: a first
// stage and an optional re-ranker. The same value describes every
// configuration of issue 21 (BM25, BM25+RM3, dense, hybrid, each with or
// without monoBERT), so that the service and the offline runs that RESULTS.md
// reports execute the same code.
type Pipeline struct {
	// First retrieves candidates from the collection (required).
	First Retriever
	// Rerank, when not nil, re-ranks the first stage's top RerankDepth.
	Rerank Reranker
	// RerankDepth is the number of candidates re-ranked (<= 0:
	// DefaultRerankDepth). The first stage is asked for max(k, RerankDepth)
	// and only its top RerankDepth are re-ranked; when k is larger, its
	// candidates below RerankDepth follow the re-ranked ones in the first
	// stage's order (pygaggle's and Anserini's behaviour), with
	// scores below every re-ranked score so that trec_eval ranks them
	// there too (see appendTail).
	RerankDepth int
}

// Search runs the pipeline on a batch of queries and returns the top k of
// each, best first: out[i] belongs to queries[i]. With a re-ranker, the
// first stage's top RerankDepth are re-ranked and, when k > RerankDepth,
// the first stage's next k - RerankDepth follow. It checks what the stages
// return (one list per query, at most k results kept), so that a faulty
// stage is an error rather than a wrong answer for somebody else's query.
func (p *Pipeline) Search(ctx context.Context, queries []string, k int) ([][]Result, error) {
	if p == nil || p.First == nil {
		return nil, errors.New("ir: pipeline has no first stage")
	}
	if k < 1 {
		return nil, fmt.Errorf("ir: search k = %d, want >= 1", k)
	}
	if len(queries) == 0 {
		return [][]Result{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	depth, rerankDepth := k, 0
	if p.Rerank != nil {
		rerankDepth = p.RerankDepth
		if rerankDepth <= 0 {
			rerankDepth = DefaultRerankDepth
		}
		depth = max(depth, rerankDepth)
	}
	cands, err := p.First.Retrieve(ctx, queries, depth)
	if err != nil {
		return nil, err
	}
	if len(cands) != len(queries) {
		return nil, fmt.Errorf("ir: first stage returned %d result lists for %d queries", len(cands), len(queries))
	}
	out := cands
	if p.Rerank != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		top := cands
		if k > rerankDepth {
			top = make([][]Result, len(cands))
			for i, rs := range cands {
				top[i] = rs[:min(len(rs), rerankDepth)]
			}
		}
		if out, err = p.Rerank.Rerank(ctx, queries, top, min(k, rerankDepth)); err != nil {
			return nil, err
		}
		if len(out) != len(queries) {
			return nil, fmt.Errorf("ir: re-ranker returned %d result lists for %d queries", len(out), len(queries))
		}
		if k > rerankDepth {
			for i, rs := range cands {
				if len(rs) > rerankDepth {
					out[i] = appendTail(out[i], rs[rerankDepth:min(len(rs), k)])
				}
			}
		}
	}
	for i, rs := range out {
		if len(rs) > k {
			out[i] = rs[:k]
		}
	}
	return out, nil
}

// appendTail returns reranked followed by tail, first-stage results below
// the re-ranking depth, in tail's order. Their first-stage scores are on
// another scale than the re-ranker's, so each gets a new one: 1, 2, 3, ...
// below the lowest re-ranked score, or the next float32 below its
// predecessor where that step would not show as a float32 (trec_eval's
// precision). The list is then in trec_eval's order: the re-ranked
// results first, the rest in the first stage's order.
func appendTail(reranked, tail []Result) []Result {
	out := make([]Result, 0, len(reranked)+len(tail))
	out = append(out, reranked...)
	low := math.Inf(1)
	for _, r := range reranked {
		low = min(low, r.Score)
	}
	if math.IsInf(low, 1) {
		low = 0 // nothing was re-ranked
	}
	prev := float32(low)
	for j, r := range tail {
		s := low - float64(j+1)
		if !(float32(s) < prev) {
			s = float64(math.Nextafter32(prev, float32(math.Inf(-1))))
		}
		prev = float32(s)
		out = append(out, Result{DocID: r.DocID, Score: s})
	}
	return out
}

// BM25Retriever is the BM25 (or BM25+RM3) first stage over an Index.
//
// It searches a batch on several goroutines as Index.BatchSearch does, with
// two differences that matter in a server: the per-goroutine score
// accumulators (9 bytes per document: 80 MB for MS MARCO's 8.8M passages)
// are pooled instead of allocated for every call, and the context is checked
// between queries, so an abandoned batch stops early. Rankings are exactly
// Index.Search's.
type BM25Retriever struct {
	ix   *Index
	opts SearchOptions
	pool sync.Pool // *scratch sized for ix
}

// NewBM25Retriever returns a retriever over ix with opts (opts.K is ignored:
// each call gives its own k; opts.RM3 turns on RM3; opts.Workers bounds the
// goroutines per call, <= 0: runtime.GOMAXPROCS(0)). It fails if opts are
// invalid, so a bad configuration is reported at start-up and not at the
// first query.
func NewBM25Retriever(ix *Index, opts SearchOptions) (*BM25Retriever, error) {
	if ix == nil {
		return nil, errors.New("ir: BM25 retriever needs an index")
	}
	opts.K = 1
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r := &BM25Retriever{ix: ix, opts: opts}
	r.pool.New = func() any { return ix.newScratch() }
	return r, nil
}

// Retrieve returns the top k documents of each query by BM25 (with RM3 if
// configured).
func (r *BM25Retriever) Retrieve(ctx context.Context, queries []string, k int) ([][]Result, error) {
	opts := r.opts
	opts.K = k
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ix := r.ix
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return nil, errClosed
	}
	out := make([][]Result, len(queries))
	w := opts.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	w = max(1, min(w, len(queries)))
	var next sync.Mutex
	i := 0
	work := func() {
		sc := r.pool.Get().(*scratch)
		defer r.pool.Put(sc)
		for ctx.Err() == nil {
			next.Lock()
			j := i
			i++
			next.Unlock()
			if j >= len(queries) {
				return
			}
			out[j] = ix.search(queries[j], opts, sc)
		}
	}
	if w == 1 {
		work()
	} else {
		var wg sync.WaitGroup
		for range w {
			wg.Go(work)
		}
		wg.Wait()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for j := range out {
		if out[j] == nil {
			out[j] = []Result{}
		}
	}
	return out, nil
}

// FusionMethod is how a Hybrid retriever combines its retrievers' rankings.
type FusionMethod int

const (
	// FuseInterpolate is a weighted sum of normalised scores (Interpolate).
	FuseInterpolate FusionMethod = iota
	// FuseRRF is reciprocal rank fusion (RRF).
	FuseRRF
)

func (m FusionMethod) String() string {
	switch m {
	case FuseInterpolate:
		return "interpolate"
	case FuseRRF:
		return "rrf"
	}
	return fmt.Sprintf("FusionMethod(%d)", int(m))
}

// ParseFusionMethod reads "interpolate" or "rrf", as configs spell them.
func ParseFusionMethod(s string) (FusionMethod, error) {
	for _, m := range []FusionMethod{FuseInterpolate, FuseRRF} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("ir: unknown fusion method %q (want interpolate or rrf)", s)
}

// Hybrid is a first stage that fuses the rankings of several retrievers,
// usually a sparse and a dense one (the survey's hybrid rows, Pyserini's
// HybridSearcher), with fusion.go's Interpolate or RRF. The retrievers run
// concurrently on the same batch; the first error cancels the others.
type Hybrid struct {
	// Retrievers are the runs to fuse (at least one; typically BM25 and a
	// bi-encoder).
	Retrievers []Retriever
	// Method is FuseInterpolate (default) or FuseRRF.
	Method FusionMethod
	// Weights are Interpolate's, one per retriever; nil: all 1.
	Weights []float64
	// Norm is Interpolate's per-query normalisation.
	Norm Normalization
	// RRFK is RRF's k (<= 0: DefaultRRFK).
	RRFK float64
	// Depth is the number of results taken from each retriever before
	// fusion (<= 0 or < k: k). Pyserini's HybridSearcher takes k0 = k; a
	// deeper pool lets a document that one run ranks just below k be lifted
	// by the other.
	Depth int
}

// Retrieve fuses the retrievers' top Depth for each query and returns the
// best k.
func (h *Hybrid) Retrieve(ctx context.Context, queries []string, k int) ([][]Result, error) {
	n := len(h.Retrievers)
	if n == 0 {
		return nil, errors.New("ir: hybrid retriever has no retrievers")
	}
	weights := h.Weights
	if weights == nil {
		weights = make([]float64, n)
		for i := range weights {
			weights[i] = 1
		}
	}
	if h.Method == FuseInterpolate && len(weights) != n {
		return nil, fmt.Errorf("ir: hybrid retriever has %d retrievers and %d weights", n, len(weights))
	}
	if h.Method != FuseInterpolate && h.Method != FuseRRF {
		return nil, fmt.Errorf("ir: unknown fusion method %d", int(h.Method))
	}
	if k < 1 {
		return nil, fmt.Errorf("ir: search k = %d, want >= 1", k)
	}
	depth := max(k, h.Depth)
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runs := make([]Run, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, r := range h.Retrievers {
		wg.Go(func() {
			res, err := r.Retrieve(ctx, queries, depth)
			if err == nil && len(res) != len(queries) {
				err = fmt.Errorf("returned %d result lists for %d queries", len(res), len(queries))
			}
			if err != nil {
				errs[i] = fmt.Errorf("ir: hybrid retriever %d: %w", i, err)
				cancel()
				return
			}
			run := make(Run, len(queries))
			for q, rs := range res {
				run[strconv.Itoa(q)] = rs
			}
			runs[i] = run
		})
	}
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, err
	}
	// The first failure, not the cancellations it caused in the others.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	var fused Run
	var err error
	if h.Method == FuseRRF {
		fused, err = RRF(runs, h.RRFK, depth)
	} else {
		fused, err = Interpolate(runs, weights, h.Norm, depth)
	}
	if err != nil {
		return nil, err
	}
	out := make([][]Result, len(queries))
	for q := range out {
		rs := fused[strconv.Itoa(q)]
		if len(rs) > k {
			rs = rs[:k]
		}
		if rs == nil {
			rs = []Result{}
		}
		out[q] = rs
	}
	return out, nil
}
