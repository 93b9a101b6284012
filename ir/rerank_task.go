package ir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// RerankTask is "ir.rerank": train a monoBERT cross-encoder on a
// benchmark's training queries, with negatives from BM25, and evaluate it
// re-ranking BM25's top candidates of the dev or test queries.
// papers/papers.go registers it.
var RerankTask = train.TaskSpec[*RerankConfig, *RerankResult]{
	Name:    "ir.rerank",
	Doc:     "train a monoBERT cross-encoder (pointwise or LCE loss, BM25 negatives) and evaluate it re-ranking BM25's top k (MRR@10, nDCG@10, Recall@100)",
	Default: DefaultRerankConfig,
	Run:     RunRerank,
	Eval:    EvalRerank,
	Added:   torchmods.BertAddedKeys(nil),
}

// RerankConfig is the "ir.rerank" task's config.
type RerankConfig struct {
	train.Base
	// Pretrained is where the cross-encoder starts (ResolveCrossEncoder):
	// a HF BERT folder or hf:ORG/NAME (a new classifier head), a HF
	// cross-encoder (BertForSequenceClassification: its head is kept), an
	// ir.rerank run, an mlm.pretrain or metapt.pretrain run, a bare weight
	// file with [model]; "" trains from scratch with [model].
	Pretrained string `toml:"pretrained"`
	// Tokenizer is a vocab.txt or tokenizer.json; "" takes the one beside
	// the weights. From scratch it is required, and when the file does not
	// exist a WordPiece vocabulary of VocabSize is trained on the
	// collection and the training queries and written there first.
	Tokenizer string `toml:"tokenizer"`
	VocabSize int    `toml:"vocab_size"`
	// Model is the BERT's sizes, for "" or a bare weight file only.
	Model torchmods.BertConfig `toml:"model"`
	// NumLabels is the head's outputs: 2 (monoBERT's "not relevant",
	// "relevant") or 1 (a relevance logit, as sentence-transformers'
	// cross-encoders and Tevatron's reranker); 0 keeps a cross-encoder
	// checkpoint's head, else takes 2 for the pointwise loss and 1 for LCE.
	NumLabels int `toml:"num_labels"`
	// Loss is LossPointwise (monoBERT) or LossLCE (Gao et al. 2021).
	Loss string `toml:"loss"`
	// MaxQueryLen bounds [CLS] query [SEP] and MaxLen the whole pair, in
	// tokens (monoBERT: 64 and 512); MaxLen is cut to the model's
	// max_position_embeddings.
	MaxQueryLen int         `toml:"max_query_len"`
	MaxLen      int         `toml:"max_len"`
	Optim       RerankOptim `toml:"optim"`
	Data        RerankData  `toml:"data"`
	Eval        RerankEval  `toml:"eval"`
}

// RerankOptim is BERT's fine-tuning recipe, as monoBERT used it: AdamW
// (no decay on biases and LayerNorms), linear warm-up then linear decay to
// 0, gradient clipping.
type RerankOptim struct {
	LR          float64    `toml:"lr"`           // peak learning rate (monoBERT: 3e-6 for BERT-large)
	Warmup      int64      `toml:"warmup"`       // warm-up steps
	WarmupRatio float64    `toml:"warmup_ratio"` // or warm-up as a share of the steps (monoBERT: 10k of 100k); set one
	WeightDecay float64    `toml:"weight_decay"` // decoupled weight decay (BERT: 0.01)
	Clip        float64    `toml:"clip"`         // global gradient norm (BERT: 1.0); 0 for none
	Betas       [2]float64 `toml:"betas"`
	Eps         float64    `toml:"eps"` // BERT's TensorFlow optimizer: 1e-6
}

// RerankData is the benchmark and the training examples.
type RerankData struct {
	// Benchmark is "wordnet" (WordNetBenchmark, the benchmark of
	// RESULTS.md) or a directory written by Benchmark.WriteDir.
	Benchmark string `toml:"benchmark"`
	// WordNet is WordNet's dict directory for "wordnet" ("": Debian's).
	WordNet string `toml:"wordnet"`
	// TrainQueries is the number of training queries used (0: all); the
	// sample is the first ones by a hash of the query id, the same for
	// every seed.
	TrainQueries int `toml:"train_queries"`
	// NegativesFile is a TREC run over the training queries (from `repro
	// ir search`, say) to draw negatives from; "" mines them with BM25
	// (Anserini's defaults) over the collection, once, at the start.
	NegativesFile string `toml:"negatives_file"`
	// NegativesDepth is the part of each query's ranking that negatives
	// come from: its top NegativesDepth minus the relevant documents
	// (monoBERT's MS MARCO triples: BM25's top 1000).
	NegativesDepth int `toml:"negatives_depth"`
	// Negatives is the number of negatives per query and step, drawn
	// anew each time (0: 1 for the pointwise loss, monoBERT's triples; 7
	// for LCE, a group of 8 as Tevatron's reranker). A query with fewer
	// gets random documents of the collection to make up the number.
	Negatives int `toml:"negatives"`
	// Batch is the number of queries per micro-batch; each brings its
	// positive and Negatives negatives, so a batch has Batch x (1 +
	// Negatives) pairs.
	Batch int `toml:"batch"`
}

// RerankEval says how the model is evaluated: re-ranking BM25's top
// RerankDepth for the queries of a split.
type RerankEval struct {
	Split string `toml:"split"` // "dev" (default) or "test"
	// Queries is the number of the split's queries evaluated (0: all),
	// the first ones by a hash of the query id; a cross-encoder reads
	// RerankDepth pairs per query, which on a CPU bounds how many queries
	// an evaluation can afford.
	Queries int `toml:"queries"`
	// RerankDepth is the number of BM25 candidates re-ranked per query
	// (DefaultRerankDepth); the re-ranked run holds these only, so below
	// 100 its Recall@100 is BM25's Recall@RerankDepth.
	RerankDepth int `toml:"rerank_depth"`
	Batch       int `toml:"batch"` // pairs per forward pass
}

// DefaultRerankConfig is monoBERT's recipe (lr 3e-6, 10% warm-up, batch of
// 128 pairs: 64 queries with a positive and a negative each, negatives from
// BM25's top 1000, 64 query and 512 pair tokens), evaluated on the dev
// queries re-ranking BM25's top 100.
func DefaultRerankConfig() *RerankConfig {
	return &RerankConfig{
		Base:        train.Base{Task: "ir.rerank", Trainer: train.DefaultTrainer()},
		VocabSize:   8000,
		Loss:        LossPointwise,
		MaxQueryLen: DefaultMaxQueryLen, MaxLen: DefaultMaxPairLen,
		Optim: RerankOptim{LR: 3e-6, WarmupRatio: 0.1, WeightDecay: 0.01, Clip: 1, Betas: [2]float64{0.9, 0.999}, Eps: 1e-6},
		Data:  RerankData{Benchmark: "wordnet", NegativesDepth: 1000, Batch: 64},
		Eval:  RerankEval{Split: SplitDev, RerankDepth: DefaultRerankDepth, Batch: DefaultRerankBatch},
	}
}

// Validate checks the task's keys, naming them; files are read when a run
// starts.
func (c *RerankConfig) Validate() error {
	switch {
	case c.Loss != LossPointwise && c.Loss != LossLCE:
		return config.Field("loss", "must be %q or %q, got %q", LossPointwise, LossLCE, c.Loss)
	case c.NumLabels < 0 || c.NumLabels > 2:
		return config.Field("num_labels", "must be 1, 2, or 0 (the checkpoint's head, else 2 for pointwise and 1 for lce), got %d", c.NumLabels)
	case c.MaxQueryLen < 3:
		return config.Field("max_query_len", "must be at least 3 ([CLS] a token [SEP]), got %d", c.MaxQueryLen)
	case c.MaxLen < c.MaxQueryLen+2:
		return config.Field("max_len", "must leave room for a passage: at least max_query_len + 2 = %d, got %d", c.MaxQueryLen+2, c.MaxLen)
	}
	hasModel := c.Model != (torchmods.BertConfig{})
	if c.Pretrained == "" || hasModel {
		m := c.Model
		if m.VocabSize == 0 {
			m.VocabSize = 1000 // the tokenizer's, known at run time
		}
		if err := m.Validate(); err != nil {
			return config.Field("model", "%v (training from scratch, or from a bare weight file, needs [model])", err)
		}
	}
	if c.Pretrained == "" {
		switch {
		case c.Tokenizer == "":
			return config.Field("tokenizer", "training from scratch needs a tokenizer (trained on the benchmark when the file does not exist)")
		case c.VocabSize < len(mlm.Specials)+1:
			return config.Field("vocab_size", "must be above %d, got %d", len(mlm.Specials), c.VocabSize)
		}
	}
	o := c.Optim
	switch {
	case !(o.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case o.Warmup < 0:
		return config.Field("optim.warmup", "must not be negative, got %d", o.Warmup)
	case !(o.WarmupRatio >= 0 && o.WarmupRatio <= 1):
		return config.Field("optim.warmup_ratio", "must be in [0, 1], got %v", o.WarmupRatio)
	case o.Warmup > 0 && o.WarmupRatio > 0:
		return config.Field("optim.warmup_ratio", "set warmup (steps) or warmup_ratio, not both")
	case !(o.WeightDecay >= 0) || !(o.Clip >= 0):
		return config.Field("optim.weight_decay", "weight_decay and clip must not be negative")
	case !(o.Betas[0] >= 0 && o.Betas[0] < 1 && o.Betas[1] >= 0 && o.Betas[1] < 1):
		return config.Field("optim.betas", "must be in [0, 1), got %v", o.Betas)
	case !(o.Eps > 0):
		return config.Field("optim.eps", "must be positive, got %v", o.Eps)
	}
	d := c.Data
	switch {
	case d.Benchmark == "":
		return config.Field("data.benchmark", `must be "wordnet" or a benchmark directory`)
	case d.TrainQueries < 0:
		return config.Field("data.train_queries", "must not be negative (0: all), got %d", d.TrainQueries)
	case d.NegativesDepth < 1:
		return config.Field("data.negatives_depth", "must be positive, got %d", d.NegativesDepth)
	case d.Negatives < 0:
		return config.Field("data.negatives", "must not be negative (0: 1 for pointwise, 7 for lce), got %d", d.Negatives)
	case d.Batch < 1:
		return config.Field("data.batch", "must be positive, got %d", d.Batch)
	}
	e := c.Eval
	switch {
	case e.Split != SplitDev && e.Split != SplitTest:
		return config.Field("eval.split", "must be %q or %q, got %q", SplitDev, SplitTest, e.Split)
	case e.Queries < 0:
		return config.Field("eval.queries", "must not be negative (0: all), got %d", e.Queries)
	case e.RerankDepth < 1:
		return config.Field("eval.rerank_depth", "must be positive, got %d", e.RerankDepth)
	case e.Batch < 1:
		return config.Field("eval.batch", "must be positive, got %d", e.Batch)
	}
	return nil
}

// negatives is the number of negatives per query and step.
func (c *RerankConfig) negatives() int {
	switch {
	case c.Data.Negatives > 0:
		return c.Data.Negatives
	case c.Loss == LossLCE:
		return 7
	}
	return 1
}

// numLabels is the head asked for: the config's, else 0 (a checkpoint's
// own head) resolved by the loss when there is none.
func (c *RerankConfig) numLabels(src *CrossEncoderSource) int {
	switch {
	case c.NumLabels > 0:
		return c.NumLabels
	case src.Head > 0:
		return src.Head
	case c.Loss == LossLCE:
		return 1
	}
	return 2
}

// RerankResult is what a run reports (results.json): the re-ranker's and
// BM25's metrics on the same queries, and the run's facts.
type RerankResult struct {
	Split       string `json:"split"`
	Queries     int    `json:"queries"`      // evaluated queries
	RerankDepth int    `json:"rerank_depth"` // BM25 candidates re-ranked per query
	// BM25 is the first stage alone (its top 100, for Recall@100);
	// Rerank is its top RerankDepth re-ranked, and its latency the
	// cross-encoder's alone, on top of BM25's.
	BM25   RerankMetrics `json:"bm25"`
	Rerank RerankMetrics `json:"rerank"`
	Loss   string        `json:"loss"`
	Labels int           `json:"num_labels"`
	// TrainQueries are the training queries used; NegativesPerQuery the
	// mean number of first-stage negatives they had to draw from.
	TrainQueries      int      `json:"train_queries"`
	NegativesPerQuery float64  `json:"negatives_per_query"`
	Steps             int64    `json:"steps"`
	Seconds           float64  `json:"seconds"`
	Runs              []string `json:"runs"` // TREC run files written, relative to the run directory
}

// RerankMetrics are one system's measures, trec_eval's with -c, and its
// latency per query (one query at a time, one goroutine).
type RerankMetrics struct {
	MRR10     float64 `json:"mrr10"`
	NDCG10    float64 `json:"ndcg10"`
	Recall100 float64 `json:"recall100"`
	LatencyMS float64 `json:"latency_ms"` // mean
	P50MS     float64 `json:"latency_p50_ms"`
	P95MS     float64 `json:"latency_p95_ms"`
}

// rerankMetrics are the survey's measures, in RerankMetrics' order.
var rerankMetrics = []Metric{MRR10, NDCG10, Recall100}

// trainQuery is a training query with its relevant documents and the
// first stage's non-relevant ones, best first.
type trainQuery struct {
	id, text string
	pos, neg []string
	rel      map[string]bool
}

// rerankData is what a run or an evaluation prepares before the model:
// the benchmark, a BM25 index over its collection, the evaluation queries
// with their BM25 candidates and, for training, the training queries with
// their negatives.
type rerankData struct {
	bench   *Benchmark
	docs    *DocStore
	ix      *Index
	tmp     string // the index's directory, removed by close
	src     *CrossEncoderSource
	tok     *mlm.Tokenizer
	evalQ   []Query
	qrels   Qrels // of evalQ only, so that -c counts no query that was not asked
	bm25    Run   // top max(RerankDepth, 100) of each evaluation query
	bm25Lat []time.Duration
	train   []trainQuery
	meanNeg float64
}

func (d *rerankData) close() {
	if d.ix != nil {
		d.ix.Close()
	}
	if d.tmp != "" {
		os.RemoveAll(d.tmp)
	}
}

// loadBenchmark reads the configured benchmark.
func loadBenchmark(c RerankData) (*Benchmark, error) {
	if c.Benchmark == "wordnet" {
		return WordNetBenchmark(c.WordNet, WordNetOptions{})
	}
	return ReadBenchmarkDir(c.Benchmark)
}

// sampleQueries keeps the first n queries by FNV-1a of their ids (all when
// n is 0 or more than there are), in their original order: a sample that
// depends on nothing but the ids, so that every run and seed sees the same
// queries, and that spreads over the parts of speech that the ids' order
// would group.
func sampleQueries(qs []Query, n int) []Query {
	if n <= 0 || n >= len(qs) {
		return qs
	}
	type keyed struct {
		key uint64
		id  string
	}
	ks := make([]keyed, len(qs))
	for i, q := range qs {
		h := fnv.New64a()
		h.Write([]byte(q.ID))
		ks[i] = keyed{h.Sum64(), q.ID}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	keep := make(map[string]bool, n)
	for _, k := range ks[:n] {
		keep[k.id] = true
	}
	out := make([]Query, 0, n)
	for _, q := range qs {
		if keep[q.ID] {
			out = append(out, q)
		}
	}
	return out
}

// prepareRerank reads the benchmark, resolves the model's source and
// tokenizer (training a vocabulary from scratch when asked), indexes the
// collection, retrieves the evaluation queries' BM25 candidates and, with
// training, the training queries' negatives.
func prepareRerank(c *RerankConfig, w io.Writer, training bool) (_ *rerankData, err error) {
	d := &rerankData{}
	defer func() {
		if err != nil {
			d.close() // the index and its directory
		}
	}()
	t := time.Now()
	if d.bench, err = loadBenchmark(c.Data); err != nil {
		return nil, err
	}
	if d.docs, err = NewDocStore(d.bench.Docs); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "ir.rerank: benchmark %s: %d documents, %d %s queries (%.1f s)\n", c.Data.Benchmark, len(d.bench.Docs),
		len(d.bench.Queries[c.Eval.Split]), c.Eval.Split, time.Since(t).Seconds())
	if c.Pretrained == "" && !fileExists(c.Tokenizer) {
		if err := trainVocab(c, d.bench, w); err != nil {
			return nil, err
		}
	}
	if d.src, err = ResolveCrossEncoder(c.Pretrained, c.Tokenizer, c.Model); err != nil {
		return nil, err
	}
	if d.tok, err = mlm.LoadTokenizer(d.src.Tokenizer); err != nil {
		return nil, err
	}
	t = time.Now()
	if d.tmp, err = os.MkdirTemp("", "ir-rerank-"); err != nil {
		return nil, err
	}
	path := filepath.Join(d.tmp, "bm25.index")
	if _, err := BuildIndex(path, d.bench.Docs, IndexOptions{}); err != nil {
		return nil, err
	}
	if d.ix, err = OpenIndex(path); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "ir.rerank: BM25 index built (%.1f s)\n", time.Since(t).Seconds())

	qs := sampleQueries(d.bench.QueryList(c.Eval.Split), c.Eval.Queries)
	if len(qs) == 0 {
		return nil, fmt.Errorf("ir: benchmark %s has no %s queries to evaluate", c.Data.Benchmark, c.Eval.Split)
	}
	all := d.bench.Qrels[c.Eval.Split]
	d.evalQ, d.qrels, d.bm25 = qs, Qrels{}, Run{}
	opts := SearchOptions{K: max(c.Eval.RerankDepth, Recall100.K), BM25: DefaultBM25()}
	for _, q := range qs {
		if j, ok := all[q.ID]; ok {
			d.qrels[q.ID] = j
		}
		t := time.Now()
		rs, err := d.ix.Search(q.Text, opts)
		if err != nil {
			return nil, err
		}
		d.bm25Lat = append(d.bm25Lat, time.Since(t))
		if len(rs) > 0 {
			d.bm25[q.ID] = rs
		}
	}
	if training {
		if err := d.trainingQueries(c, w); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// trainVocab trains a WordPiece vocabulary on the collection and the
// training queries (the texts a model from scratch will read; never an
// evaluation query) and writes it to c.Tokenizer.
func trainVocab(c *RerankConfig, b *Benchmark, w io.Writer) error {
	if filepath.Ext(c.Tokenizer) == ".json" {
		return fmt.Errorf("ir: tokenizer %s not found (only a vocab.txt is trained on first use)", c.Tokenizer)
	}
	texts := make([]string, 0, len(b.Docs)+len(b.Queries[SplitTrain]))
	for _, d := range b.Docs {
		texts = append(texts, d.Text)
	}
	for _, q := range b.QueryList(SplitTrain) {
		texts = append(texts, q.Text)
	}
	t := time.Now()
	vocab, err := mlm.TrainWordPiece(texts, c.VocabSize, 2)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.Tokenizer), 0o755); err != nil {
		return err
	}
	if err := mlm.WriteVocab(c.Tokenizer+".tmp", vocab); err != nil {
		return err
	}
	fmt.Fprintf(w, "ir.rerank: trained a %d-token WordPiece vocabulary on %d texts (%.1f s): %s\n", len(vocab), len(texts), time.Since(t).Seconds(), c.Tokenizer)
	return os.Rename(c.Tokenizer+".tmp", c.Tokenizer)
}

// trainingQueries picks the training queries and their negatives: the
// first stage's top NegativesDepth (BM25 mined here, or the run file)
// minus the relevant documents.
func (d *rerankData) trainingQueries(c *RerankConfig, w io.Writer) error {
	t := time.Now()
	qs := sampleQueries(d.bench.QueryList(SplitTrain), c.Data.TrainQueries)
	qrels := d.bench.Qrels[SplitTrain]
	var run Run
	var err error
	source := "BM25"
	if c.Data.NegativesFile != "" {
		if run, err = ReadRunFile(c.Data.NegativesFile); err != nil {
			return err
		}
		source = c.Data.NegativesFile
	} else if run, err = d.ix.BatchSearch(qs, SearchOptions{K: c.Data.NegativesDepth, BM25: DefaultBM25()}); err != nil {
		return err
	}
	noPos, noRun, negs := 0, 0, 0
	for _, q := range qs {
		tq := trainQuery{id: q.ID, text: q.Text, rel: map[string]bool{}}
		for id, g := range qrels[q.ID] {
			if g >= 1 {
				tq.rel[id] = true
				if _, err := d.docs.Text(id); err == nil {
					tq.pos = append(tq.pos, id)
				}
			}
		}
		if len(tq.pos) == 0 {
			noPos++
			continue
		}
		slices.Sort(tq.pos) // map order would make the draws differ between runs
		rs, ok := run[q.ID]
		if !ok {
			noRun++
		}
		rs = slices.Clone(rs)
		SortTREC(rs)
		for _, r := range rs[:min(len(rs), c.Data.NegativesDepth)] {
			if !tq.rel[r.DocID] {
				if _, err := d.docs.Text(r.DocID); err != nil {
					return fmt.Errorf("ir: %s, query %s: %w", source, q.ID, err)
				}
				tq.neg = append(tq.neg, r.DocID)
			}
		}
		// Every group has one positive and n negatives (LCE's softmax
		// needs them all), drawn from the documents not relevant to the
		// query: there must be n of them.
		relevant := 0
		for id := range tq.rel {
			if _, err := d.docs.Text(id); err == nil {
				relevant++
			}
		}
		if n, others := c.negatives(), len(d.bench.Docs)-relevant; others < n {
			return fmt.Errorf("data.negatives: %d per query, but training query %s is judged relevant to %d of the %d documents, leaving %d",
				n, q.ID, relevant, len(d.bench.Docs), others)
		}
		negs += len(tq.neg)
		d.train = append(d.train, tq)
	}
	if len(d.train) == 0 {
		return fmt.Errorf("ir: none of the %d training queries has a relevant document in the collection", len(qs))
	}
	d.meanNeg = float64(negs) / float64(len(d.train))
	fmt.Fprintf(w, "ir.rerank: %d training queries, negatives from %s's top %d: %.1f per query on average (%.1f s)\n",
		len(d.train), source, c.Data.NegativesDepth, d.meanNeg, time.Since(t).Seconds())
	if noPos > 0 {
		fmt.Fprintf(w, "ir.rerank: %d training queries skipped: no relevant document in the collection\n", noPos)
	}
	if noRun > 0 {
		why := "are not in " + source
		if c.Data.NegativesFile == "" {
			why = "match no document by BM25"
		}
		fmt.Fprintf(w, "ir.rerank: %d training queries %s: their negatives are random documents\n", noRun, why)
	}
	return nil
}

// rerankBatch is one micro-batch: for each query its positive then its
// negatives, and the pointwise labels.
type rerankBatch struct {
	pairs  PairBatch
	labels []int64
}

// makeBatch encodes the queries at idx, each with a positive and n
// negatives drawn with rng (the batch's own generator, so a resumed run
// draws the same): negatives without replacement from the query's list,
// made up with random non-relevant documents of the collection when the
// list is short. A query with fewer than n documents not relevant to it
// (which trainingQueries refuses) is an error naming it. It runs on the
// loader's goroutines and makes no tensor.
func (d *rerankData) makeBatch(ce *CrossEncoder, idx []int, n int, rng *rand.Rand) (rerankBatch, error) {
	var b rerankBatch
	enc := make([]PairEncoding, 0, len(idx)*(n+1))
	for _, k := range idx {
		q := d.train[k]
		qt, err := ce.QueryTokens(q.text)
		if err != nil {
			return b, err
		}
		ids := []string{q.pos[rng.IntN(len(q.pos))]}
		if len(q.neg) >= n {
			for _, j := range rng.Perm(len(q.neg))[:n] {
				ids = append(ids, q.neg[j])
			}
		} else {
			ids = append(ids, q.neg...)
			chosen := map[string]bool{}
			for _, id := range ids {
				chosen[id] = true
			}
			docs := d.bench.Docs
			more := drawDocs(rng, len(docs), n+1-len(ids), func(i int) bool { return !q.rel[docs[i].ID] && !chosen[docs[i].ID] })
			if len(ids)+len(more) < n+1 {
				return b, fmt.Errorf("ir: training query %s: %d negatives asked, only %d documents are not relevant to it", q.id, n, len(ids)-1+len(more))
			}
			for _, i := range more {
				ids = append(ids, docs[i].ID)
			}
		}
		for j, id := range ids {
			pt, err := ce.PassageTokens(id)
			if err != nil {
				return b, err
			}
			enc = append(enc, ce.Pair(qt, pt))
			label := int64(0)
			if j == 0 {
				label = 1 // the positive comes first
			}
			b.labels = append(b.labels, label)
		}
	}
	b.pairs = PadPairs(enc, ce.Tok.PAD)
	return b, nil
}

// rerankEvaluation is one evaluation: the re-ranked run and its metrics,
// the cross-encoder's latencies.
type rerankEvaluation struct {
	run     Run
	metrics RerankMetrics
}

// evaluate re-ranks each evaluation query's BM25 top depth, one query at a
// time as a search service would, timing each, and evaluates the run.
func (d *rerankData) evaluate(ce *CrossEncoder, depth int) (*rerankEvaluation, error) {
	ctx := context.Background()
	run := Run{}
	lat := make([]time.Duration, 0, len(d.evalQ))
	for _, q := range d.evalQ {
		cands := d.bm25[q.ID]
		cands = cands[:min(len(cands), depth)]
		t := time.Now()
		out, err := ce.Rerank(ctx, []string{q.Text}, [][]Result{cands}, depth)
		if err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t))
		if len(out[0]) > 0 {
			run[q.ID] = out[0]
		}
	}
	m, err := d.measure(run, lat)
	if err != nil {
		return nil, err
	}
	return &rerankEvaluation{run: run, metrics: m}, nil
}

// measure evaluates a run of the evaluation queries (trec_eval -c: a
// query without results scores 0) and summarises latencies.
func (d *rerankData) measure(run Run, lat []time.Duration) (RerankMetrics, error) {
	var m RerankMetrics
	if len(d.qrels) == 0 {
		return m, errors.New("ir: no evaluation query has judgements")
	}
	ev, err := Evaluate(run, d.qrels, rerankMetrics, EvalOptions{Complete: true})
	if err != nil {
		return m, err
	}
	m.MRR10, m.NDCG10, m.Recall100 = ev.Mean[0], ev.Mean[1], ev.Mean[2]
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	if len(lat) > 0 {
		m.LatencyMS = ms(sum) / float64(len(lat))
	}
	m.P50MS, m.P95MS = ms(Percentile(sorted, 50)), ms(Percentile(sorted, 95))
	return m, nil
}

// metricsRow names an evaluation's metrics for metrics.jsonl.
func metricsRow(split string, m RerankMetrics) map[string]float64 {
	return map[string]float64{split + "_mrr10": m.MRR10, split + "_ndcg10": m.NDCG10, split + "_recall100": m.Recall100,
		split + "_rerank_ms": m.LatencyMS}
}

// RunRerank trains the cross-encoder and evaluates it: AdamW with linear
// warm-up and decay and gradient clipping over batches of queries, each
// with its positive and negatives (LossPointwise or LossLCE); evaluation
// re-ranking BM25's top eval.rerank_depth of the evaluation queries every
// trainer.eval_every steps and at the end. The run folder gets
// config.json and the tokenizer (so that it opens as a HF cross-encoder)
// and the final BM25 and re-ranked TREC runs.
func RunRerank(s *train.Session, c *RerankConfig) (*RerankResult, error) {
	w := s.W
	d, err := prepareRerank(c, w, true)
	if err != nil {
		return nil, err
	}
	defer d.close()
	labels := c.numLabels(d.src)
	m, err := d.src.Build(s.Store, d.tok, labels, !s.Resuming(), w)
	if err != nil {
		return nil, err
	}
	ce, err := NewCrossEncoder(m, d.tok, d.docs.Text, CrossEncoderOptions{MaxQueryLen: c.MaxQueryLen, MaxLen: c.MaxLen, Batch: c.Eval.Batch, W: w})
	if err != nil {
		return nil, err
	}
	if !s.Resuming() {
		if err := WriteCrossEncoderFiles(s.Out, m, d.src.Tokenizer); err != nil {
			return nil, err
		}
	}
	n := c.negatives()
	loader, err := data.NewLoader(data.LoaderOptions{N: len(d.train), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) (rerankBatch, error) { return d.makeBatch(ce, b.Indices, n, b.Rand()) })
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	warmup := c.Optim.Warmup
	if c.Optim.WarmupRatio > 0 {
		warmup = int64(math.Ceil(c.Optim.WarmupRatio * float64(steps)))
	}
	sched, err := train.WarmupSchedule(c.Optim.LR, min(warmup, steps), steps, "linear")
	if err != nil {
		return nil, err
	}
	opt := train.NewAdamW(s.Store, c.Optim.Betas[0], c.Optim.Betas[1], c.Optim.Eps, c.Optim.WeightDecay)
	fmt.Fprintf(w, "ir.rerank: %s loss, %d label(s), %d queries x (1 + %d negatives) per batch, %d steps (%.2f epochs), pairs of at most %d tokens (query %d), weights %s (%s)\n",
		c.Loss, labels, c.Data.Batch, n, steps, float64(steps)/float64(perEpoch), ce.MaxLen, ce.MaxQueryLen, orNone(c.Pretrained), d.src.Kind)
	group := int64(n + 1)
	var final *rerankEvaluation
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			logits := ce.Logits(b.pairs, true)
			if c.Loss == LossLCE {
				return LCELoss(logits, group), nil
			}
			return PointwiseLoss(logits, torchmods.FromSlice(b.labels, []int64{int64(len(b.labels))}, s.Device)), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(step int64) (map[string]float64, error) {
			ev, err := d.evaluate(ce, c.Eval.RerankDepth)
			if err != nil {
				return nil, err
			}
			if step == steps-1 {
				final = ev
			}
			return metricsRow(c.Eval.Split, ev.metrics), nil
		},
	})
	if err != nil {
		return nil, err
	}
	if final == nil { // the run had no step left to take (resumed after its last)
		if final, err = d.evaluate(ce, c.Eval.RerankDepth); err != nil {
			return nil, err
		}
	}
	res, err := d.result(c, final, s.Out)
	if err != nil {
		return nil, err
	}
	res.Labels, res.Steps, res.Seconds = labels, steps, s.Elapsed().Seconds()
	res.TrainQueries, res.NegativesPerQuery = len(d.train), d.meanNeg
	printRerank(w, res)
	return res, nil
}

// result measures BM25 on the evaluation queries, writes both runs to out
// and makes the result.
func (d *rerankData) result(c *RerankConfig, ev *rerankEvaluation, out string) (*RerankResult, error) {
	bm, err := d.measure(d.bm25, d.bm25Lat)
	if err != nil {
		return nil, err
	}
	res := &RerankResult{Split: c.Eval.Split, Queries: len(d.evalQ), RerankDepth: c.Eval.RerankDepth, BM25: bm, Rerank: ev.metrics, Loss: c.Loss}
	if out == "" {
		return res, nil
	}
	for _, r := range []struct {
		name string
		run  Run
		tag  string
	}{{"bm25", d.bm25, "bm25"}, {"rerank", ev.run, "monobert"}} {
		name := fmt.Sprintf("%s.%s.trec", r.name, c.Eval.Split)
		if err := WriteRunFile(filepath.Join(out, name), r.run, r.tag); err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, name)
	}
	return res, nil
}

// printRerank prints the comparison table.
func printRerank(w io.Writer, r *RerankResult) {
	fmt.Fprintf(w, "%s, %d queries, BM25 top %d re-ranked:\n", r.Split, r.Queries, r.RerankDepth)
	fmt.Fprintf(w, "  %-16s %8s %8s %10s %14s\n", "", "MRR@10", "nDCG@10", "Recall@100", "ms/query (p95)")
	for _, row := range []struct {
		name string
		m    RerankMetrics
	}{{"BM25", r.BM25}, {"BM25 + monoBERT", r.Rerank}} {
		fmt.Fprintf(w, "  %-16s %8.4f %8.4f %10.4f %8.2f (%.2f)\n", row.name, row.m.MRR10, row.m.NDCG10, row.m.Recall100, row.m.LatencyMS, row.m.P95MS)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// EvalRerank evaluates trained weights for `repro eval`, as the config's
// eval table says. A checkpoint that describes itself - an ir.rerank run,
// a HF cross-encoder folder or hf:ORG/NAME (zero-shot:
// hf:cross-encoder/ms-marco-MiniLM-L-6-v2) - is opened with its own sizes,
// head and tokenizer; any other (a checkpoint folder, a weight file) is
// loaded, every tensor, into the model the config builds.
func EvalRerank(c *RerankConfig, checkpoint string, w io.Writer) error {
	cc := *c
	self := false
	if src, err := ResolveCrossEncoder(checkpoint, "", torchmods.BertConfig{}); err == nil && src.Head > 0 {
		cc.Pretrained, cc.Tokenizer, cc.Model, cc.NumLabels, self = checkpoint, "", torchmods.BertConfig{}, 0, true
	}
	d, err := prepareRerank(&cc, w, false)
	if err != nil {
		return err
	}
	defer d.close()
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return err
	}
	store := torchmods.NewStore(dev)
	defer store.Drop()
	m, err := d.src.Build(store, d.tok, cc.numLabels(d.src), self, w)
	if err != nil {
		return err
	}
	if !self {
		file, err := torchmods.ResolveWeights(checkpoint)
		if err != nil {
			return err
		}
		if _, err := torchmods.BertFamily.LoadHFWeights(store, file, torchmods.LoadOptions{}, w); err != nil {
			return err
		}
	}
	ce, err := NewCrossEncoder(m, d.tok, d.docs.Text, CrossEncoderOptions{MaxQueryLen: c.MaxQueryLen, MaxLen: c.MaxLen, Batch: c.Eval.Batch, W: w})
	if err != nil {
		return err
	}
	ev, err := d.evaluate(ce, c.Eval.RerankDepth)
	if err != nil {
		return err
	}
	res, err := d.result(&cc, ev, "")
	if err != nil {
		return err
	}
	printRerank(w, res)
	return nil
}
