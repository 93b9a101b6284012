package ir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
)

// This file is monoBERT (Nogueira and Cho, "Passage Re-ranking with BERT",
// 2019; castorini's monobert-large-msmarco): a cross-encoder that reads a
// query and a candidate passage together as one BERT input, [CLS] query
// [SEP] passage [SEP], and scores the pair from the [CLS] state. Each
// candidate costs a forward pass, which is why it re-ranks a first stage's
// top few hundred rather than searching the collection. The same code runs
// the sentence-transformers cross-encoders (cross-encoder/ms-marco-MiniLM-*),
// which are BERT sequence classifiers with a single output.

// monoBERT's input limits, the flags of dl4marco-bert's
// convert_msmarco_to_tfrecord.py (max_query_length 64, max_seq_length 512).
const (
	DefaultMaxQueryLen = 64
	DefaultMaxPairLen  = 512
	// DefaultRerankBatch is the number of (query, passage) pairs per
	// forward pass.
	DefaultRerankBatch = 64
	// DefaultDocCache is the number of passages whose tokens a
	// CrossEncoder keeps: a passage retrieved for many queries (and, in
	// training, drawn as a negative many times) is tokenised once.
	DefaultDocCache = 100_000
)

// PairEncoding is one (query, passage) pair as BERT reads it: token ids
// [CLS] q [SEP] p [SEP] and segment (token type) ids, 0 up to and including
// the first [SEP], 1 after.
type PairEncoding struct {
	IDs, Types []int64
}

// EncodePair tokenises a pair as monoBERT's data preparation does: the
// query is cut so that [CLS] q [SEP] has at most maxQueryLen tokens, then
// the passage is cut to fill the rest of maxLen with its closing [SEP].
// A short query leaves its unused budget to the passage, as in
// dl4marco-bert, where the passage's limit is max_seq_length minus the
// query's actual length; the pair fills at most maxLen tokens, [CLS] and
// both [SEP] included. The query is cut first because it is what must
// survive whole: a query cut by a long passage, as HF's "longest_first"
// truncation would do to long queries, asks for something else.
func EncodePair(tok *mlm.Tokenizer, query, passage string, maxQueryLen, maxLen int) (PairEncoding, error) {
	if err := checkPairLens(maxQueryLen, maxLen); err != nil {
		return PairEncoding{}, err
	}
	q, err := textTokens(tok, query)
	if err != nil {
		return PairEncoding{}, err
	}
	p, err := textTokens(tok, passage)
	if err != nil {
		return PairEncoding{}, err
	}
	return pairFromTokens(tok.CLS, tok.SEP, q, p, maxQueryLen, maxLen), nil
}

// checkPairLens refuses limits that leave no room for a passage token.
func checkPairLens(maxQueryLen, maxLen int) error {
	switch {
	case maxQueryLen < 3:
		return fmt.Errorf("ir: query limit %d tokens: at least 3 ([CLS] a token [SEP])", maxQueryLen)
	case maxLen < maxQueryLen+2:
		return fmt.Errorf("ir: pair limit %d tokens leaves no room for a passage after a query of up to %d: want at least the query limit + 2", maxLen, maxQueryLen)
	}
	return nil
}

// pairFromTokens assembles a pair from the texts' token ids (without
// [CLS] and [SEP]); the limits have been checked.
func pairFromTokens(cls, sep int64, q, p []int64, maxQueryLen, maxLen int) PairEncoding {
	q = q[:min(len(q), maxQueryLen-2)]
	p = p[:min(len(p), maxLen-len(q)-3)]
	n := len(q) + len(p) + 3
	e := PairEncoding{IDs: make([]int64, 0, n), Types: make([]int64, n)}
	e.IDs = append(e.IDs, cls)
	e.IDs = append(e.IDs, q...)
	e.IDs = append(e.IDs, sep)
	e.IDs = append(e.IDs, p...)
	e.IDs = append(e.IDs, sep)
	for i := len(q) + 2; i < n; i++ {
		e.Types[i] = 1
	}
	return e
}

// textTokens are text's token ids without the [CLS] and [SEP] that the
// tokenizer's post-processor adds (a vocab.txt's BertProcessing, or a
// tokenizer.json's template).
func textTokens(tok *mlm.Tokenizer, text string) ([]int64, error) {
	e, err := tok.Encode(text, math.MaxInt32)
	if err != nil {
		return nil, fmt.Errorf("ir: tokenizing %q: %w", text, err)
	}
	ids := e.IDs
	if len(ids) > 0 && ids[0] == tok.CLS {
		ids = ids[1:]
	}
	if len(ids) > 0 && ids[len(ids)-1] == tok.SEP {
		ids = ids[:len(ids)-1]
	}
	return ids, nil
}

// PairBatch is encoded pairs padded to the longest, in Go memory: row-major
// [N, L] token ids, segment ids and attention mask (1 = a real token). It
// is built without tensors so that a data loader's goroutines can make it.
type PairBatch struct {
	IDs, Types, Mask []int64
	N, L             int
}

// PadPairs pads pairs to the longest with pad (segment 0, mask 0).
func PadPairs(enc []PairEncoding, pad int64) PairBatch {
	b := PairBatch{N: len(enc)}
	for _, e := range enc {
		b.L = max(b.L, len(e.IDs))
	}
	b.IDs, b.Types, b.Mask = make([]int64, b.N*b.L), make([]int64, b.N*b.L), make([]int64, b.N*b.L)
	for i, e := range enc {
		row := i * b.L
		for j := range b.L {
			b.IDs[row+j] = pad
		}
		copy(b.IDs[row:], e.IDs)
		copy(b.Types[row:], e.Types)
		for j := range e.IDs {
			b.Mask[row+j] = 1
		}
	}
	return b
}

// Tensors makes the batch's tensors on dev (tensor code: call it in a scope).
func (b PairBatch) Tensors(dev gotch.Device) (ids, types, mask *ts.Tensor) {
	shape := []int64{int64(b.N), int64(b.L)}
	return torchmods.FromSlice(b.IDs, shape, dev), torchmods.FromSlice(b.Types, shape, dev), torchmods.FromSlice(b.Mask, shape, dev)
}

// RelevanceScores turns a cross-encoder's logits [N, C] into one score per
// pair [N], as castorini's pygaggle scores monoBERT and its kin
// (SequenceClassificationTransformerReranker): with one output
// (sentence-transformers' CrossEncoder with num_labels 1) the raw logit,
// which its sigmoid would only map monotonically; with two (monoBERT: not
// relevant, relevant) the log probability of the relevant class,
// log_softmax(logits)[:, 1]. Other shapes panic.
func RelevanceScores(logits *ts.Tensor) *ts.Tensor {
	s := logits.MustSize()
	switch {
	case len(s) == 2 && s[1] == 1:
		return logits.MustView([]int64{-1}, false)
	case len(s) == 2 && s[1] == 2:
		return logits.MustLogSoftmax(-1, logits.DType(), false).MustSelect(1, 1, true)
	}
	panic(fmt.Errorf("ir: cross-encoder logits of shape %v, want [pairs, 1] or [pairs, 2]", s))
}

// The training losses of a cross-encoder (the ir.rerank task's loss key).
const (
	// LossPointwise is monoBERT's: each (query, passage) pair is
	// classified on its own, relevant or not - cross-entropy over the two
	// classes, or for a one-output head binary cross-entropy on the logit
	// (sentence-transformers' CrossEncoder with num_labels 1).
	LossPointwise = "pointwise"
	// LossLCE is the localized contrastive estimation loss of Gao, Dai
	// and Callan, "Rethink Training of BERT Rerankers in Multi-Stage
	// Retrieval Pipeline" (ECIR 2021; Tevatron's reranker): a softmax over
	// the scores of one positive and n hard negatives of the same query,
	// cross-entropy with the positive as target. It trains the ranking of a
	// query's candidates directly, not each pair's calibration.
	LossLCE = "lce"
)

// PointwiseLoss is monoBERT's loss on logits [N, C] and labels [N] (int64,
// 1 = relevant): the mean cross-entropy over the two classes for C = 2 (the
// original's softmax over "not relevant", "relevant"), the mean binary
// cross-entropy with logits for C = 1.
func PointwiseLoss(logits, labels *ts.Tensor) *ts.Tensor {
	s := logits.MustSize()
	switch {
	case len(s) == 2 && s[1] == 2:
		return torchmods.CrossEntropy(logits, labels, torchmods.CEOptions{})
	case len(s) == 2 && s[1] == 1:
		y := labels.MustTotype(logits.DType(), false).MustView([]int64{-1, 1}, true)
		return logits.MustBinaryCrossEntropyWithLogits(y, ts.None, ts.None, 1, false) // 1: mean
	}
	panic(fmt.Errorf("ir: pointwise loss on logits of shape %v, want [pairs, 1] or [pairs, 2]", s))
}

// LCELoss is the localized contrastive loss on logits [B*group, C]: rows
// come in groups of one query's candidates, the positive first. The
// candidates' scores are the logit (C = 1) or, for a two-class head, the
// log-odds of relevance, logit[1] - logit[0]; within each group they are
// softmaxed and the loss is the mean negative log-probability of the
// positive. Log-odds rather than monoBERT's log-probability: both rank
// alike, but a log-probability is at most 0, so a softmax over them
// cannot make the positive's share approach 1 (its logit's gap is capped),
// while log-odds are unbounded like the one-output head's logit.
func LCELoss(logits *ts.Tensor, group int64) *ts.Tensor {
	s := logits.MustSize()
	if len(s) != 2 || (s[1] != 1 && s[1] != 2) || group < 2 || s[0]%group != 0 {
		panic(fmt.Errorf("ir: LCE loss on logits of shape %v in groups of %d: want [queries x group, 1 or 2] and a group of at least 2", s, group))
	}
	var scores *ts.Tensor
	if s[1] == 1 {
		scores = logits.MustView([]int64{-1}, false)
	} else {
		scores = logits.MustSelect(1, 1, false).MustSub(logits.MustSelect(1, 0, false), true)
	}
	scores = scores.MustView([]int64{-1, group}, true)
	target := ts.MustZeros([]int64{s[0] / group}, gotch.Int64, logits.MustDevice())
	return torchmods.CrossEntropy(scores, target, torchmods.CEOptions{})
}

// DocLookup returns a document's text by id; a CrossEncoder reads the
// passages of its candidates through one, since a first stage returns ids
// and scores only. DocStore.Text is one.
type DocLookup func(docid string) (string, error)

// DocStore holds a collection's texts by document id in memory, for a
// re-ranker's lookups. The WordNet benchmark's 117,659 documents take about
// 20 MB; MS MARCO's 8.8M passages take about 4 GB, where a memory-mapped
// store would be the next step.
type DocStore struct {
	text map[string]string
}

// NewDocStore indexes docs by id; a repeated id is an error, as it is for
// an index.
func NewDocStore(docs []Document) (*DocStore, error) {
	s := &DocStore{text: make(map[string]string, len(docs))}
	for _, d := range docs {
		if _, dup := s.text[d.ID]; dup {
			return nil, fmt.Errorf("ir: duplicate doc id %q", d.ID)
		}
		s.text[d.ID] = d.Text
	}
	return s, nil
}

// ReadDocStore reads a "docid<TAB>text" collection (MS MARCO's
// collection.tsv, a benchmark's collection.tsv) into a DocStore.
func ReadDocStore(path string) (*DocStore, error) {
	s := &DocStore{text: map[string]string{}}
	err := ReadTSVCollection(path, func(d Document) error {
		if _, dup := s.text[d.ID]; dup {
			return fmt.Errorf("ir: %s: duplicate doc id %q", path, d.ID)
		}
		s.text[d.ID] = d.Text
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Len is the number of documents.
func (s *DocStore) Len() int { return len(s.text) }

// Text is a document's text; an unknown id is an error naming it (a run
// from another collection, say).
func (s *DocStore) Text(docid string) (string, error) {
	t, ok := s.text[docid]
	if !ok {
		return "", fmt.Errorf("ir: document %q is not in the collection", docid)
	}
	return t, nil
}

// CrossEncoderOptions are a CrossEncoder's input limits and batching.
type CrossEncoderOptions struct {
	// MaxQueryLen bounds [CLS] query [SEP], in tokens (0:
	// DefaultMaxQueryLen).
	MaxQueryLen int
	// MaxLen bounds the whole pair (0: DefaultMaxPairLen); it is cut to
	// the model's max_position_embeddings, which is reported to W.
	MaxLen int
	// Batch is the number of pairs per forward pass (0:
	// DefaultRerankBatch).
	Batch int
	// DocCache is the number of passages whose tokens are kept (0:
	// DefaultDocCache; negative: none).
	DocCache int
	// W receives notes such as a MaxLen cut; nil discards them.
	W io.Writer
}

// CrossEncoder is a monoBERT-style re-ranker: a BERT sequence classifier
// over [CLS] query [SEP] passage [SEP] with one output (a relevance logit)
// or two (not relevant, relevant), scoring each pair on its own
// (RelevanceScores). It implements Reranker.
//
// Rerank, Score and ScoreEncoded run each forward pass in its own tensor
// scope with gradients off and only read the parameters, so goroutines may
// call them at once (a search service's requests), as long as nothing
// trains the model meanwhile. Close waits for the calls in progress, and
// calls after it return an error, never touching freed parameters.
type CrossEncoder struct {
	Model *torchmods.BertForSequenceClassification
	Tok   *mlm.Tokenizer
	// Docs gives the passage of a candidate's doc id.
	Docs                DocLookup
	MaxQueryLen, MaxLen int
	Batch               int
	// Source names the weights, for messages.
	Source string

	owned     *torchmods.Store // dropped by Close when LoadCrossEncoder made it
	numLabels int

	mu     sync.RWMutex // read: a scoring call; write: Close
	closed bool

	cacheMu  sync.Mutex
	cache    map[string][]int64
	cacheMax int
}

var _ Reranker = (*CrossEncoder)(nil)

// NewCrossEncoder wraps a sequence classifier (with one or two outputs) and
// its tokenizer; docs may be nil for Score alone. The limits are checked
// here, after MaxLen is cut to the model's positions, so that a
// configuration that leaves no room for a passage fails at start-up.
func NewCrossEncoder(m *torchmods.BertForSequenceClassification, tok *mlm.Tokenizer, docs DocLookup, o CrossEncoderOptions) (*CrossEncoder, error) {
	if m == nil || tok == nil {
		return nil, errors.New("ir: a cross-encoder needs a model and a tokenizer")
	}
	if n := m.Classifier.Weight.MustSize()[0]; n != 1 && n != 2 {
		return nil, fmt.Errorf("ir: a classifier with %d outputs: a cross-encoder scores with 1 (a relevance logit) or 2 (not relevant, relevant)", n)
	}
	if tok.Size > m.Bert.Cfg.VocabSize {
		return nil, fmt.Errorf("ir: the tokenizer has %d tokens, the model's vocabulary %d", tok.Size, m.Bert.Cfg.VocabSize)
	}
	ce := &CrossEncoder{Model: m, Tok: tok, Docs: docs, MaxQueryLen: o.MaxQueryLen, MaxLen: o.MaxLen, Batch: o.Batch,
		numLabels: int(m.Classifier.Weight.MustSize()[0])}
	if ce.MaxQueryLen == 0 {
		ce.MaxQueryLen = DefaultMaxQueryLen
	}
	if ce.MaxLen == 0 {
		ce.MaxLen = DefaultMaxPairLen
	}
	if ce.Batch == 0 {
		ce.Batch = DefaultRerankBatch
	}
	if pos := int(m.Bert.Cfg.MaxPositionEmbeddings); ce.MaxLen > pos {
		if o.W != nil {
			fmt.Fprintf(o.W, "cross-encoder: pairs cut to the model's max_position_embeddings %d tokens (asked %d)\n", pos, ce.MaxLen)
		}
		ce.MaxLen = pos
	}
	if err := checkPairLens(ce.MaxQueryLen, ce.MaxLen); err != nil {
		return nil, err
	}
	if ce.Batch < 1 {
		return nil, fmt.Errorf("ir: cross-encoder batch %d, want >= 1", ce.Batch)
	}
	ce.cacheMax = o.DocCache
	if ce.cacheMax == 0 {
		ce.cacheMax = DefaultDocCache
	}
	return ce, nil
}

// NumLabels is the classifier's number of outputs, 1 or 2.
func (ce *CrossEncoder) NumLabels() int {
	if ce.numLabels == 0 { // a CrossEncoder not made by NewCrossEncoder
		return int(ce.Model.Classifier.Weight.MustSize()[0])
	}
	return ce.numLabels
}

// errCrossEncoderClosed is what scoring calls return after Close.
var errCrossEncoderClosed = errors.New("ir: cross-encoder is closed")

// Close waits for the scoring calls in progress, then frees the
// parameters of a cross-encoder that LoadCrossEncoder made (one wrapped by
// NewCrossEncoder belongs to its caller's store, which keeps them). Either
// way, Rerank, Score and ScoreEncoded return an error afterwards.
func (ce *CrossEncoder) Close() {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if ce.owned != nil {
		ce.owned.Drop()
		ce.owned = nil
	}
	ce.closed = true
}

// Logits runs the classifier on a batch: logits [N, NumLabels] (tensor
// code, for training; train turns dropout on).
func (ce *CrossEncoder) Logits(b PairBatch, train bool) *ts.Tensor {
	ids, types, mask := b.Tensors(ce.Model.Bert.Word.Weight.MustDevice())
	return ce.Model.Forward(ids, types, mask, train)
}

// QueryTokens tokenises a query (without [CLS] and [SEP]).
func (ce *CrossEncoder) QueryTokens(q string) ([]int64, error) { return textTokens(ce.Tok, q) }

// PassageTokens tokenises a document's passage, looked up through Docs,
// keeping up to DocCache of them. Safe for concurrent use.
func (ce *CrossEncoder) PassageTokens(docid string) ([]int64, error) {
	if ce.cacheMax > 0 {
		ce.cacheMu.Lock()
		t, ok := ce.cache[docid]
		ce.cacheMu.Unlock()
		if ok {
			return t, nil
		}
	}
	if ce.Docs == nil {
		return nil, errors.New("ir: the cross-encoder has no document lookup")
	}
	text, err := ce.Docs(docid)
	if err != nil {
		return nil, err
	}
	t, err := textTokens(ce.Tok, text)
	if err != nil {
		return nil, fmt.Errorf("document %q: %w", docid, err)
	}
	if ce.cacheMax > 0 {
		ce.cacheMu.Lock()
		if ce.cache == nil || len(ce.cache) >= ce.cacheMax {
			ce.cache = make(map[string][]int64) // all out at once: simpler than LRU, and a re-ranker's working set is small
		}
		ce.cache[docid] = t
		ce.cacheMu.Unlock()
	}
	return t, nil
}

// Pair assembles a pair from token ids under the encoder's limits.
func (ce *CrossEncoder) Pair(query, passage []int64) PairEncoding {
	return pairFromTokens(ce.Tok.CLS, ce.Tok.SEP, query, passage, ce.MaxQueryLen, ce.MaxLen)
}

// Score scores pairs (queries[i], passages[i]).
func (ce *CrossEncoder) Score(ctx context.Context, queries, passages []string) ([]float64, error) {
	ce.mu.RLock()
	defer ce.mu.RUnlock()
	if ce.closed {
		return nil, errCrossEncoderClosed
	}
	if len(queries) != len(passages) {
		return nil, fmt.Errorf("ir: %d queries and %d passages", len(queries), len(passages))
	}
	enc := make([]PairEncoding, len(queries))
	for i := range queries {
		var err error
		if enc[i], err = EncodePair(ce.Tok, queries[i], passages[i], ce.MaxQueryLen, ce.MaxLen); err != nil {
			return nil, err
		}
	}
	return ce.scoreEncoded(ctx, enc)
}

// ScoreEncoded scores encoded pairs in forward passes of Batch pairs. The
// pairs are taken in order of length, so that each pass pads little; the
// scores come back in the pairs' order. ctx is checked between passes.
func (ce *CrossEncoder) ScoreEncoded(ctx context.Context, enc []PairEncoding) ([]float64, error) {
	ce.mu.RLock()
	defer ce.mu.RUnlock()
	if ce.closed {
		return nil, errCrossEncoderClosed
	}
	return ce.scoreEncoded(ctx, enc)
}

// scoreEncoded is ScoreEncoded; the caller holds ce.mu for reading.
func (ce *CrossEncoder) scoreEncoded(ctx context.Context, enc []PairEncoding) ([]float64, error) {
	order := make([]int, len(enc))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(enc[a].IDs), len(enc[b].IDs)) })
	out := make([]float64, len(enc))
	dev := ce.Model.Bert.Word.Weight.MustDevice()
	for lo := 0; lo < len(order); lo += ce.Batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		idx := order[lo:min(lo+ce.Batch, len(order))]
		chunk := make([]PairEncoding, len(idx))
		for i, k := range idx {
			chunk[i] = enc[k]
		}
		b := PadPairs(chunk, ce.Tok.PAD)
		var scores []float64
		err := torchmods.Try(func() {
			sc := ts.NewScope()
			defer sc.Close()
			ts.NoGrad(func() {
				ids, types, mask := b.Tensors(dev)
				s := RelevanceScores(ce.Model.Forward(ids, types, mask, false))
				scores = s.MustTo(gotch.CPU, false).MustTotype(gotch.Double, true).Float64Values()
			})
		})
		if err != nil {
			return nil, fmt.Errorf("ir: cross-encoder: %w", err)
		}
		for i, k := range idx {
			out[k] = scores[i]
		}
	}
	return out, nil
}

// Rerank scores every candidate of every query with the cross-encoder and
// returns each query's best k in trec_eval's order (score descending, ties
// by doc id descending), the candidates' first-stage scores replaced. All
// the batch's pairs share forward passes. A candidate whose passage cannot
// be found is an error naming it.
func (ce *CrossEncoder) Rerank(ctx context.Context, queries []string, candidates [][]Result, k int) ([][]Result, error) {
	if len(candidates) != len(queries) {
		return nil, fmt.Errorf("ir: %d candidate lists for %d queries", len(candidates), len(queries))
	}
	if k < 1 {
		return nil, fmt.Errorf("ir: re-rank k = %d, want >= 1", k)
	}
	ce.mu.RLock()
	defer ce.mu.RUnlock()
	if ce.closed {
		return nil, errCrossEncoderClosed
	}
	var enc []PairEncoding
	for i, q := range queries {
		if len(candidates[i]) == 0 {
			continue
		}
		qt, err := ce.QueryTokens(q)
		if err != nil {
			return nil, err
		}
		for _, c := range candidates[i] {
			pt, err := ce.PassageTokens(c.DocID)
			if err != nil {
				return nil, err
			}
			enc = append(enc, ce.Pair(qt, pt))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	scores, err := ce.scoreEncoded(ctx, enc)
	if err != nil {
		return nil, err
	}
	out := make([][]Result, len(queries))
	next := 0
	for i, cs := range candidates {
		out[i] = rerankResults(cs, scores[next:next+len(cs)], k)
		next += len(cs)
	}
	return out, nil
}

// rerankResults gives candidates their new scores and keeps the best k in
// trec_eval's order, so that the list a service returns is the ranking
// trec_eval evaluates, ties included.
func rerankResults(cands []Result, scores []float64, k int) []Result {
	rs := make([]Result, len(cands))
	for j, c := range cands {
		rs[j] = Result{DocID: c.DocID, Score: scores[j]}
	}
	SortTREC(rs)
	return rs[:min(k, len(rs))]
}

// CrossEncoderSource is what a cross-encoder's weights spec resolved to:
// the weight file, the BERT's sizes, the tokenizer and, for a fine-tuned
// classifier, its head.
type CrossEncoderSource struct {
	Spec string
	// Kind says what the spec is, for messages: "HF cross-encoder",
	// "HF BERT", "repro run (mlm.pretrain)", "weight file", "from scratch".
	Kind      string
	Weights   string // the weight file; "" to start from scratch
	Config    torchmods.BertConfig
	Tokenizer string
	// Head is the number of outputs of the checkpoint's classifier (a
	// BertForSequenceClassification folder, an ir.rerank run), 0 when the
	// checkpoint is an encoder and a new head is needed.
	Head int
	run  bool // sizes from a repro run's config.toml or the config's [model]: pad id from the tokenizer
}

// ResolveCrossEncoder finds the weights, sizes and tokenizer behind spec:
//
//   - a HF folder or hf:ORG/NAME whose config.json is a BERT
//     (model_type "bert"): with architectures BertForSequenceClassification
//     it is a cross-encoder and keeps its head (castorini/
//     monobert-large-msmarco, 2 labels; cross-encoder/ms-marco-MiniLM-L-6-v2,
//     1 label); any other BERT (BertForMaskedLM, BertForPreTraining,
//     BertModel) is an encoder that gets a new head;
//   - a run folder with config.json at its root and weights in its
//     checkpoints (an ir.rerank or text.classify run), the same way;
//   - a repro run whose config.toml has a BERT [model] table (mlm.pretrain,
//     metapt.pretrain), with the tokenizer its data.vocab names;
//   - a bare weight file, with model giving the sizes and tokenizer set;
//   - "": no weights (training from scratch), with model and tokenizer.
//
// tokenizer, when set, overrides the tokenizer found beside the weights;
// model must be the zero BertConfig whenever the weights carry their own
// sizes, so that two descriptions of one model cannot disagree.
func ResolveCrossEncoder(spec, tokenizer string, model torchmods.BertConfig) (*CrossEncoderSource, error) {
	src := &CrossEncoderSource{Spec: spec, Tokenizer: tokenizer, Config: model, Kind: "from scratch", run: true}
	hasModel := model != (torchmods.BertConfig{})
	if spec == "" {
		if !hasModel || tokenizer == "" {
			return nil, errors.New("ir: a cross-encoder from scratch needs the model's sizes and a tokenizer")
		}
		return src, nil
	}
	ws, err := torchmods.Resolve(spec)
	if err != nil {
		return nil, err
	}
	src.Weights = ws.File
	hfConfig := ws.Config
	isDir := false
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		isDir = true
		if p := filepath.Join(spec, "config.json"); hfConfig == "" && fileExists(p) {
			hfConfig = p // an ir.rerank or text.classify run: config.json at its root, weights in checkpoints/
		}
	}
	switch {
	case hfConfig != "":
		if hasModel {
			return nil, fmt.Errorf("ir: %s gives the model's sizes; leave [model] out (it is for weights without a config)", hfConfig)
		}
		cfg, err := torchmods.ReadHFConfig(hfConfig)
		if err != nil {
			return nil, err
		}
		if cfg.ModelType != torchmods.BertFamily.ModelType {
			return nil, fmt.Errorf("ir: %s: model_type %q: the cross-encoder is a BERT (model_type \"bert\")", hfConfig, cfg.ModelType)
		}
		if src.Config, err = torchmods.BertConfigFromHF(cfg); err != nil {
			return nil, err
		}
		if src.Head, err = hfHead(cfg); err != nil {
			return nil, err
		}
		src.run = false
		src.Kind = "HF BERT"
		if src.Head > 0 {
			src.Kind = fmt.Sprintf("HF cross-encoder, %d label(s)", src.Head)
		}
		if src.Tokenizer == "" {
			if src.Tokenizer, err = torchmods.FindTokenizer(spec, filepath.Dir(hfConfig)); err != nil {
				return nil, err
			}
		}
	case isDir && fileExists(filepath.Join(spec, "config.toml")):
		var rc struct {
			Task  string               `toml:"task"`
			Model torchmods.BertConfig `toml:"model"`
			Data  struct {
				Vocab string `toml:"vocab"`
			} `toml:"data"`
		}
		if _, err := toml.DecodeFile(filepath.Join(spec, "config.toml"), &rc); err != nil {
			return nil, fmt.Errorf("ir: %s: %w", spec, err)
		}
		if rc.Model.HiddenSize == 0 {
			return nil, fmt.Errorf("ir: %s: its config.toml (task %q) has no BERT [model] table", spec, rc.Task)
		}
		if hasModel {
			return nil, fmt.Errorf("ir: %s/config.toml gives the model's sizes; leave [model] out", spec)
		}
		src.Config, src.Kind = rc.Model, fmt.Sprintf("repro run (%s)", rc.Task)
		if src.Tokenizer == "" {
			if rc.Data.Vocab == "" {
				return nil, fmt.Errorf("ir: %s: its config.toml names no data.vocab; set the tokenizer", spec)
			}
			if !fileExists(rc.Data.Vocab) {
				return nil, fmt.Errorf("ir: %s: its tokenizer %s (data.vocab, relative to this directory) is not there; set the tokenizer", spec, rc.Data.Vocab)
			}
			src.Tokenizer = rc.Data.Vocab
		}
	default:
		if !hasModel || src.Tokenizer == "" {
			return nil, fmt.Errorf("ir: %s: weights without a config.json or run config.toml: give the model's sizes and a tokenizer", spec)
		}
		src.Kind = "weight file"
	}
	return src, nil
}

// hfHead is the number of outputs of a BertForSequenceClassification's
// classifier: the size of id2label, which save_pretrained writes, else
// num_labels, which older configs wrote, else HF's default 2. Other
// architectures have no head (0).
func hfHead(cfg *torchmods.HFConfig) (int, error) {
	if !slices.Contains(cfg.Architectures, "BertForSequenceClassification") {
		return 0, nil
	}
	n := 0
	if raw, ok := cfg.Raw("id2label"); ok {
		if m, ok := raw.(map[string]any); ok {
			n = len(m)
		}
	}
	if n == 0 {
		v, err := cfg.Int("num_labels", 2)
		if err != nil {
			return 0, err
		}
		n = int(v)
	}
	if n != 1 && n != 2 {
		return 0, fmt.Errorf("ir: %s: a classifier of %d labels: a cross-encoder has 1 (a relevance logit) or 2 (not relevant, relevant)", cfg.Path, n)
	}
	return n, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Build registers a BertForSequenceClassification with numLabels outputs
// under store's root with HF's names (bert.*, classifier.*) and, with
// load, reads the source's weights into it. numLabels 0 takes the
// checkpoint's head, else 2 (monoBERT's). A checkpoint's head is kept
// whole: a missing classifier tensor is an error naming it, never a head
// left at random (which is what from_pretrained would do, with a warning
// that is easy to miss). An encoder's checkpoint gets a new classifier,
// and a new pooler when it has none (an MLM-only checkpoint), both
// initialised as HF does. The vocabulary defaults to the tokenizer's and,
// for sizes from a repro config, pad_token_id to its [PAD].
func (src *CrossEncoderSource) Build(store *torchmods.Store, tok *mlm.Tokenizer, numLabels int, load bool, w io.Writer) (*torchmods.BertForSequenceClassification, error) {
	if w == nil {
		w = io.Discard
	}
	switch {
	case numLabels == 0 && src.Head > 0:
		numLabels = src.Head
	case numLabels == 0:
		numLabels = 2
	case numLabels != 1 && numLabels != 2:
		return nil, fmt.Errorf("ir: num_labels %d: a cross-encoder has 1 (a relevance logit) or 2 (not relevant, relevant)", numLabels)
	case src.Head > 0 && numLabels != src.Head:
		return nil, fmt.Errorf("ir: %s has a classifier of %d outputs, not the %d asked for (num_labels 0 keeps it)", src.Spec, src.Head, numLabels)
	}
	c := src.Config
	if c.VocabSize == 0 {
		c.VocabSize = tok.Size
	}
	if src.run {
		c.PadTokenID = tok.PAD
	}
	if c.VocabSize < tok.Size {
		return nil, fmt.Errorf("ir: the model's vocabulary of %d is smaller than the tokenizer's %d tokens", c.VocabSize, tok.Size)
	}
	var m *torchmods.BertForSequenceClassification
	if err := torchmods.Try(func() { m = torchmods.NewBertForSequenceClassification(store.Root(), c, int64(numLabels)) }); err != nil {
		return nil, err
	}
	if !load || src.Weights == "" {
		return m, nil
	}
	o := torchmods.LoadOptions{}
	if src.Head == 0 {
		o.NewParams = []string{"classifier.", "bert.pooler."}
	}
	if _, err := torchmods.BertFamily.LoadHFWeights(store, src.Weights, o, w); err != nil {
		return nil, err
	}
	return m, nil
}

// LoadCrossEncoderOptions say how LoadCrossEncoder builds a model.
type LoadCrossEncoderOptions struct {
	CrossEncoderOptions
	// Tokenizer overrides the one found beside the weights.
	Tokenizer string
	// NumLabels is the head's outputs: 0 keeps a cross-encoder's head, or
	// gives an encoder a new head of 2 (which then scores at random until
	// trained).
	NumLabels int
	Device    gotch.Device // the zero value is the CPU
}

// LoadCrossEncoder opens a cross-encoder for inference from anything
// ResolveCrossEncoder accepts, in a store of its own that Close frees;
// docs looks up the candidates' passages (nil for Score alone).
func LoadCrossEncoder(spec string, docs DocLookup, o LoadCrossEncoderOptions) (*CrossEncoder, error) {
	src, err := ResolveCrossEncoder(spec, o.Tokenizer, torchmods.BertConfig{})
	if err != nil {
		return nil, err
	}
	tok, err := mlm.LoadTokenizer(src.Tokenizer)
	if err != nil {
		return nil, err
	}
	dev := o.Device
	if dev.Name == "" {
		dev = gotch.CPU
	}
	store := torchmods.NewStore(dev)
	m, err := src.Build(store, tok, o.NumLabels, true, o.W)
	if err != nil {
		store.Drop()
		return nil, err
	}
	ce, err := NewCrossEncoder(m, tok, docs, o.CrossEncoderOptions)
	if err != nil {
		store.Drop()
		return nil, err
	}
	ce.owned, ce.Source = store, src.Weights
	return ce, nil
}

// WriteCrossEncoderFiles writes what makes a folder of trained weights a
// HF cross-encoder folder: config.json (BertForSequenceClassification with
// the sizes and id2label: "LABEL_0" for one output, "not_relevant" and
// "relevant" for two) and a copy of the tokenizer (as vocab.txt or
// tokenizer.json). An ir.rerank run writes them at its root, so that the
// run opens with LoadCrossEncoder and its checkpoints with transformers.
func WriteCrossEncoderFiles(dir string, m *torchmods.BertForSequenceClassification, tokenizer string) error {
	cfg := m.Bert.Cfg.HFConfig()
	cfg["model_type"] = torchmods.BertFamily.ModelType
	cfg["architectures"] = []string{"BertForSequenceClassification"}
	n := int(m.Classifier.Weight.MustSize()[0])
	names := []string{"LABEL_0"}
	if n == 2 {
		names = []string{"not_relevant", "relevant"}
	}
	id2label, label2id := map[string]string{}, map[string]int{}
	for i, l := range names {
		id2label[strconv.Itoa(i)], label2id[l] = l, i
	}
	cfg["id2label"], cfg["label2id"] = id2label, label2id
	if err := torchmods.WriteHFConfig(filepath.Join(dir, "config.json"), cfg); err != nil {
		return err
	}
	name := "vocab.txt"
	if filepath.Ext(tokenizer) == ".json" {
		name = "tokenizer.json"
	}
	b, err := os.ReadFile(tokenizer)
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, name)
	if err := os.WriteFile(dst+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
