package ir

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// This file is the "ir.dense" task: training a bi-encoder as DPR does
// (facebookresearch/DPR, train_dense_encoder.py), evaluated as the survey's
// dense rows are, and the parts ir.ict shares with it: the model keys, the
// data, the evaluation.

// BiEncoderSetup are the model keys of ir.dense and ir.ict.
type BiEncoderSetup struct {
	// Pretrained is what both towers start from: a HF BERT folder or
	// hf:ORG/NAME, a DPR question (or context) encoder folder, a
	// sentence-transformers folder, an mlm.pretrain run (its bert.*
	// weights), an ir.ict or ir.dense run (one tower or two), or a weight
	// file with [model] set; "" trains from scratch ([model] set).
	Pretrained string `toml:"pretrained"`
	// PretrainedPassage, when set, is what the passage tower starts from
	// instead (DPR's context encoder beside its question encoder); it
	// needs separate towers.
	PretrainedPassage string `toml:"pretrained_passage"`
	// Tokenizer is a vocab.txt or tokenizer.json; "" takes the one beside
	// the pretrained weights. From scratch, a vocab.txt that does not
	// exist is trained (WordPiece, VocabSize tokens, words seen twice or
	// more) on the collection's documents and written there.
	Tokenizer string `toml:"tokenizer"`
	VocabSize int    `toml:"vocab_size"`
	// Model is the BERT's sizes, for weights that carry none (from
	// scratch, a bare weight file); leave it out otherwise.
	Model   torchmods.BertConfig `toml:"model"`
	Encoder EncoderKeys          `toml:"encoder"`
}

// EncoderKeys is the [encoder] table: the bi-encoder's architecture.
type EncoderKeys struct {
	// Shared uses one BERT for both towers (Tevatron's default); DPR and
	// ORQA's ICT train two.
	Shared bool `toml:"shared"`
	// Pooling ("cls", "mean") and Similarity ("dot", "cosine"): "" takes
	// the pretrained source's (DPR's cls and dot, sentence-transformers'
	// modules, an ir run's), else cls and dot.
	Pooling    string `toml:"pooling"`
	Similarity string `toml:"similarity"`
	// Temperature divides the scores in the loss (Tevatron's
	// temperature). 0 (or the key left out) takes the similarity's
	// default, DefaultTemperature: 1 for the dot product (DPR), 0.05 for
	// cosine, whose scores lie in [-1, 1] and would barely separate a
	// positive from its negatives undivided (sentence-transformers'
	// MultipleNegativesRankingLoss multiplies them by 20).
	Temperature   float64 `toml:"temperature"`
	QueryMaxLen   int     `toml:"query_max_len"`
	PassageMaxLen int     `toml:"passage_max_len"`
}

func (e EncoderKeys) validate() error {
	if e.Pooling != "" {
		if _, err := ParsePooling(e.Pooling); err != nil {
			return config.Field("encoder.pooling", "%v", err)
		}
	}
	if e.Similarity != "" {
		if _, err := ParseSimilarity(e.Similarity); err != nil {
			return config.Field("encoder.similarity", "%v", err)
		}
	}
	switch {
	case !(e.Temperature >= 0) || math.IsInf(e.Temperature, 0):
		return config.Field("encoder.temperature", "must be positive (or 0 for the similarity's default), got %v", e.Temperature)
	case e.QueryMaxLen < 3 || e.PassageMaxLen < 3:
		return config.Field("encoder.query_max_len", "query_max_len and passage_max_len must be at least 3 ([CLS] a token [SEP])")
	}
	return nil
}

func (b BiEncoderSetup) validate() error {
	if b.Pretrained == "" || b.Model != (torchmods.BertConfig{}) {
		m := b.Model
		if m.VocabSize == 0 {
			m.VocabSize = 1000 // the tokenizer's, known at run time
		}
		if err := m.Validate(); err != nil {
			return config.Field("model", "%v (training from scratch, or from a bare weight file, needs [model])", err)
		}
	}
	switch {
	case b.Pretrained == "" && b.Tokenizer == "":
		return config.Field("tokenizer", "training from scratch needs a tokenizer (a vocab.txt, trained and written there when missing)")
	case b.Pretrained == "" && b.VocabSize < 100 && filepath.Ext(b.Tokenizer) != ".json":
		return config.Field("vocab_size", "must be at least 100 (the size of a vocabulary trained when the tokenizer file is missing), got %d", b.VocabSize)
	case b.PretrainedPassage != "" && b.Encoder.Shared:
		return config.Field("pretrained_passage", "a second source for the passage tower needs encoder.shared = false")
	case b.PretrainedPassage != "" && b.Pretrained == "":
		return config.Field("pretrained_passage", "set pretrained too (the query tower's source)")
	}
	return b.Encoder.validate()
}

// DenseOptim is the optimisation: AdamW without weight decay on biases and
// LayerNorms, linear warm-up then linear decay to 0, gradient clipping,
// as DPR's (and HF's linear schedule).
type DenseOptim struct {
	LR          float64 `toml:"lr"`           // peak learning rate (DPR: 2e-5 for BERT-base)
	Warmup      int64   `toml:"warmup"`       // warm-up steps
	WarmupRatio float64 `toml:"warmup_ratio"` // or warm-up as a share of all steps (Tevatron's 0.1); set one of the two
	WeightDecay float64 `toml:"weight_decay"` // decoupled weight decay (DPR: 0)
	Clip        float64 `toml:"clip"`         // global gradient norm (DPR's max_grad_norm 2.0); 0 for none
	Eps         float64 `toml:"eps"`          // Adam's epsilon (1e-8)
}

func (o DenseOptim) validate() error {
	switch {
	case !(o.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case o.Warmup < 0:
		return config.Field("optim.warmup", "must not be negative, got %d", o.Warmup)
	case o.WarmupRatio < 0 || o.WarmupRatio > 1:
		return config.Field("optim.warmup_ratio", "must be in [0, 1], got %v", o.WarmupRatio)
	case o.Warmup > 0 && o.WarmupRatio > 0:
		return config.Field("optim.warmup_ratio", "set warmup (steps) or warmup_ratio, not both")
	case o.WeightDecay < 0 || o.Clip < 0:
		return config.Field("optim.weight_decay", "weight_decay and clip must not be negative")
	case !(o.Eps > 0):
		return config.Field("optim.eps", "must be positive, got %v", o.Eps)
	}
	return nil
}

// plan is the optimizer and the learning-rate schedule for steps steps.
func (o DenseOptim) plan(store *torchmods.Store, steps int64) (train.Optimizer, train.Schedule, error) {
	warmup := o.Warmup
	if o.WarmupRatio > 0 {
		warmup = int64(math.Ceil(o.WarmupRatio * float64(steps)))
	}
	sched, err := train.WarmupSchedule(o.LR, min(warmup, steps), steps, "linear")
	if err != nil {
		return nil, nil, err
	}
	return train.NewAdamW(store, 0.9, 0.999, o.Eps, o.WeightDecay), sched, nil
}

// DenseData is the [data] table: a benchmark, or files.
type DenseData struct {
	// Benchmark is "wordnet" (ir.WordNetBenchmark, built from WordNet's
	// dict folder, the key wordnet, "" for Debian's) or a benchmark
	// directory (collection.tsv, queries.<split>.tsv, qrels.<split>.txt,
	// as Benchmark.WriteDir writes it). Leave it "" to name files instead.
	Benchmark string `toml:"benchmark"`
	WordNet   string `toml:"wordnet"`
	// Collection ("docid<TAB>text"), TrainQueries and EvalQueries
	// ("qid<TAB>text") and TrainQrels and EvalQrels (TREC qrels), as MS
	// MARCO distributes them; queries without judgements are dropped.
	Collection   string `toml:"collection"`
	TrainQueries string `toml:"train_queries"`
	TrainQrels   string `toml:"train_qrels"`
	EvalQueries  string `toml:"eval_queries"`
	EvalQrels    string `toml:"eval_qrels"`
	// Batch is the queries (ir.dense) or documents (ir.ict) per
	// micro-batch: each one's positive is the others' in-batch negative.
	Batch int `toml:"batch"`
	// MaxTrainQueries, when positive, trains on that many training
	// queries, picked by a hash of their ids (the same ones every run).
	MaxTrainQueries int `toml:"max_train_queries"`
}

func (d DenseData) validate(needTrain bool) error {
	files := d.Collection != "" || d.TrainQueries != "" || d.TrainQrels != "" || d.EvalQueries != "" || d.EvalQrels != ""
	switch {
	case d.Benchmark != "" && files:
		return config.Field("data.benchmark", "name a benchmark or files (collection, queries, qrels), not both")
	case d.Benchmark == "" && d.Collection == "":
		return config.Field("data.collection", `set data.benchmark ("wordnet" or a benchmark directory) or data.collection`)
	case d.Benchmark == "" && needTrain && (d.TrainQueries == "" || d.TrainQrels == ""):
		return config.Field("data.train_queries", "training needs data.train_queries and data.train_qrels")
	case !needTrain && (d.TrainQueries != "" || d.TrainQrels != "" || d.MaxTrainQueries != 0):
		return config.Field("data.train_queries", "ir.ict trains on the collection alone; remove the training queries")
	case (d.EvalQueries == "") != (d.EvalQrels == ""):
		return config.Field("data.eval_queries", "set data.eval_queries and data.eval_qrels together")
	case d.Batch < 2:
		return config.Field("data.batch", "must be at least 2 (in-batch negatives), got %d", d.Batch)
	case d.MaxTrainQueries < 0:
		return config.Field("data.max_train_queries", "must not be negative, got %d", d.MaxTrainQueries)
	}
	return nil
}

// DenseEval is the [eval] table: how the trained bi-encoder is evaluated.
// The collection is encoded into a flat index in the run directory
// (passages.dense), the evaluated queries searched exactly, and the run
// (run.<split>.trec) scored with trec_eval's semantics (-c): MRR@10,
// nDCG@10 and Recall@100, the survey's measures.
type DenseEval struct {
	// Split is the benchmark's evaluated split ("dev" or "test"); with
	// data.eval_queries the files are evaluated. ir.ict evaluates nothing
	// when it is "".
	Split string `toml:"split"`
	// MaxQueries, when positive, evaluates that many queries, picked by a
	// hash of their ids.
	MaxQueries int `toml:"max_queries"`
	Batch      int `toml:"batch"`      // texts per encoder pass
	Depth      int `toml:"depth"`      // results per query (at least 100, for Recall@100)
	ChunkRows  int `toml:"chunk_rows"` // documents per matrix product (0: DefaultChunkRows)
}

func (e DenseEval) validate(d DenseData, optional bool) error {
	switch {
	case e.Split != "" && e.Split != SplitTrain && e.Split != SplitDev && e.Split != SplitTest:
		return config.Field("eval.split", "must be %q, %q or %q, got %q", SplitDev, SplitTest, SplitTrain, e.Split)
	case e.Split != "" && d.Benchmark == "":
		return config.Field("eval.split", "is a benchmark's split; with files, set data.eval_queries and data.eval_qrels")
	case !optional && d.Benchmark != "" && e.Split == "":
		return config.Field("eval.split", "name the evaluated split (%q or %q)", SplitDev, SplitTest)
	case !optional && d.Benchmark == "" && d.EvalQueries == "":
		return config.Field("data.eval_queries", "name the evaluated queries and qrels")
	case e.Batch < 1:
		return config.Field("eval.batch", "must be positive, got %d", e.Batch)
	case e.Depth < 100:
		return config.Field("eval.depth", "must be at least 100 (Recall@100), got %d", e.Depth)
	case e.MaxQueries < 0 || e.ChunkRows < 0:
		return config.Field("eval.max_queries", "max_queries and chunk_rows must not be negative")
	}
	return nil
}

// DenseNegatives is the [negatives] table: DPR's hard negatives.
type DenseNegatives struct {
	// Hard is the hard negatives per query in a batch (DPR: 1; 0: in-batch
	// negatives only).
	Hard int `toml:"hard"`
	// Depth is how many top-ranked non-relevant documents of each query
	// are kept as its hard negatives, Hard of them drawn at random for each
	// batch (Tevatron samples; DPR shuffles them).
	Depth int `toml:"depth"`
	// Run, when set, is a TREC run over the training queries to take them
	// from; "" mines them once with BM25 (Anserini's defaults) over the
	// collection, written to hard_negatives.trec in the run directory.
	Run string `toml:"run"`
}

func (n DenseNegatives) validate() error {
	switch {
	case n.Hard < 0:
		return config.Field("negatives.hard", "must not be negative, got %d", n.Hard)
	case n.Hard > 0 && n.Depth < n.Hard:
		return config.Field("negatives.depth", "must be at least negatives.hard = %d, got %d", n.Hard, n.Depth)
	}
	return nil
}

// DenseConfig is the "ir.dense" task's config.
type DenseConfig struct {
	train.Base
	BiEncoderSetup
	Negatives DenseNegatives `toml:"negatives"`
	Optim     DenseOptim     `toml:"optim"`
	Data      DenseData      `toml:"data"`
	Eval      DenseEval      `toml:"eval"`
}

// DefaultDense is DPR's recipe where it applies to any model: in-batch
// plus one BM25 hard negative per query, dot product on [CLS] (the
// temperature the similarity's: 1 for dot, 0.05 for cosine), lr 2e-5
// with linear warm-up (10% of the steps, as Tevatron) and decay, no weight
// decay, clipping at 2.0; Tevatron's lengths (32 and 128); the dev split.
func DefaultDense() *DenseConfig {
	return &DenseConfig{Base: train.Base{Task: "ir.dense", Trainer: train.DefaultTrainer()},
		BiEncoderSetup: BiEncoderSetup{VocabSize: 8000,
			Encoder: EncoderKeys{QueryMaxLen: DefaultQueryMaxLen, PassageMaxLen: DefaultPassageMaxLen}},
		Negatives: DenseNegatives{Hard: 1, Depth: 30},
		Optim:     DenseOptim{LR: 2e-5, WarmupRatio: 0.1, Clip: 2, Eps: 1e-8},
		Data:      DenseData{Batch: 32},
		Eval:      DenseEval{Split: SplitDev, Batch: 256, Depth: 100},
	}
}

// Validate checks the task's keys, naming them; files are read when the
// run starts.
func (c *DenseConfig) Validate() error {
	if err := c.BiEncoderSetup.validate(); err != nil {
		return err
	}
	if err := c.Negatives.validate(); err != nil {
		return err
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	if err := c.Data.validate(true); err != nil {
		return err
	}
	return c.Eval.validate(c.Data, false)
}

// DenseEvaluation is what evaluating a bi-encoder measures.
type DenseEvaluation struct {
	Split     string  `json:"split"`
	Queries   int     `json:"eval_queries"`
	MRR10     float64 `json:"mrr_10"`
	NDCG10    float64 `json:"ndcg_10"`
	Recall100 float64 `json:"recall_100"`
	Docs      int     `json:"docs"`
	// EncodeSeconds is the wall time of encoding the collection into the
	// index (tokenising, encoding, writing); IndexBytes the index's size.
	EncodeSeconds float64 `json:"encode_seconds"`
	IndexBytes    int64   `json:"index_bytes"`
	// SearchSeconds is the wall time of encoding and searching every
	// evaluated query in batches; MsPerQuery the same per query.
	SearchSeconds float64 `json:"search_seconds"`
	MsPerQuery    float64 `json:"ms_per_query"`
	Index         string  `json:"index,omitempty"` // relative to the run directory
	Run           string  `json:"run,omitempty"`
}

// DenseResult is what an ir.dense run reports (results.json).
type DenseResult struct {
	DenseEvaluation
	TrainQueries int `json:"train_queries"`
	// HardNegatives is the hard negatives per query and batch;
	// NoHardNegatives the training queries for which none was found (they
	// get random documents instead).
	HardNegatives   int     `json:"hard_negatives"`
	NoHardNegatives int     `json:"queries_without_hard_negatives"`
	MineSeconds     float64 `json:"mine_seconds"`
	Steps           int64   `json:"steps"`
	Seconds         float64 `json:"seconds"`
}

// DenseTask is "ir.dense"; papers/papers.go registers it.
var DenseTask = train.TaskSpec[*DenseConfig, *DenseResult]{
	Name:    "ir.dense",
	Doc:     "train a DPR bi-encoder (in-batch and BM25 hard negatives) and evaluate exact dense retrieval (MRR@10, nDCG@10, Recall@100)",
	Default: DefaultDense,
	Run:     RunDense,
	Eval:    EvalDense,
	Added:   torchmods.BertAddedKeys(nil),
}

// denseCorpus is a task's data, read and checked.
type denseCorpus struct {
	docs       []Document
	index      map[string]int // doc id -> position in docs
	train      []Query
	trainQrels Qrels
	eval       []Query
	evalQrels  Qrels
	evalName   string
}

// loadDenseData reads the collection and the queries a task needs.
func loadDenseData(d DenseData, e DenseEval, needTrain bool) (*denseCorpus, error) {
	c := &denseCorpus{}
	switch {
	case d.Benchmark != "":
		var b *Benchmark
		var err error
		if d.Benchmark == "wordnet" {
			b, err = WordNetBenchmark(d.WordNet, WordNetOptions{})
		} else {
			b, err = ReadBenchmarkDir(d.Benchmark)
		}
		if err != nil {
			return nil, err
		}
		c.docs = b.Docs
		if needTrain {
			c.train, c.trainQrels = b.QueryList(SplitTrain), b.Qrels[SplitTrain]
			if len(c.train) == 0 {
				return nil, fmt.Errorf("ir: benchmark %s has no %s queries", d.Benchmark, SplitTrain)
			}
		}
		if e.Split != "" {
			c.eval, c.evalQrels, c.evalName = b.QueryList(e.Split), b.Qrels[e.Split], e.Split
			if len(c.eval) == 0 {
				return nil, fmt.Errorf("ir: benchmark %s has no %s queries", d.Benchmark, e.Split)
			}
		}
	default:
		var err error
		if c.docs, err = LoadTSVCollection(d.Collection); err != nil {
			return nil, err
		}
		read := func(qf, rf string) ([]Query, Qrels, error) {
			qs, err := ReadTSVQueries(qf)
			if err != nil {
				return nil, nil, err
			}
			qrels, err := ReadQrelsFile(rf)
			if err != nil {
				return nil, nil, err
			}
			qs = FilterQueries(qs, qrels)
			if len(qs) == 0 {
				return nil, nil, fmt.Errorf("ir: no query of %s has judgements in %s", qf, rf)
			}
			return qs, qrels, nil
		}
		if needTrain {
			if c.train, c.trainQrels, err = read(d.TrainQueries, d.TrainQrels); err != nil {
				return nil, err
			}
		}
		if d.EvalQueries != "" {
			if c.eval, c.evalQrels, err = read(d.EvalQueries, d.EvalQrels); err != nil {
				return nil, err
			}
			c.evalName = strings.TrimSuffix(filepath.Base(d.EvalQueries), filepath.Ext(d.EvalQueries))
		}
	}
	if len(c.docs) == 0 {
		return nil, fmt.Errorf("ir: the collection is empty")
	}
	if d.Benchmark == "" && len(c.train) > 0 && len(c.eval) > 0 {
		// A benchmark's splits are disjoint by construction; files may
		// not be, and a query trained on would inflate its evaluation.
		train := make(map[string]bool, len(c.train))
		for _, q := range c.train {
			train[q.ID] = true
		}
		shared, first := 0, ""
		for _, q := range c.eval {
			if train[q.ID] {
				if shared++; first == "" {
					first = q.ID
				}
			}
		}
		if shared > 0 {
			return nil, fmt.Errorf("ir: %d evaluation queries of %s are also training queries of %s (query %s): evaluate on held-out queries",
				shared, d.EvalQueries, d.TrainQueries, first)
		}
	}
	c.index = make(map[string]int, len(c.docs))
	for i, doc := range c.docs {
		c.index[doc.ID] = i
	}
	c.train = denseSampleQueries(c.train, d.MaxTrainQueries)
	c.eval = denseSampleQueries(c.eval, e.MaxQueries)
	return c, nil
}

// docTexts are the documents' texts, what a vocabulary trained for a task
// is trained on: the same for ir.ict and ir.dense, so that the two share one
// vocabulary file whichever runs first, and free of any query.
func (c *denseCorpus) docTexts() []string {
	texts := make([]string, len(c.docs))
	for i, d := range c.docs {
		texts[i] = d.Text
	}
	return texts
}

// denseSampleQueries keeps n queries (all when n <= 0 or there are fewer),
// those with the smallest FNV-1a hash of their id, in their order: a
// subset that does not depend on how ids sort (WordNet's sort by part of
// speech) and is the same in every run.
func denseSampleQueries(qs []Query, n int) []Query {
	if n <= 0 || len(qs) <= n {
		return qs
	}
	type hq struct {
		h uint64
		i int
	}
	hs := make([]hq, len(qs))
	for i, q := range qs {
		h := fnv.New64a()
		h.Write([]byte(q.ID))
		hs[i] = hq{h.Sum64(), i}
	}
	sort.Slice(hs, func(a, b int) bool { return hs[a].h < hs[b].h || hs[a].h == hs[b].h && hs[a].i < hs[b].i })
	keep := make([]int, n)
	for i := range keep {
		keep[i] = hs[i].i
	}
	slices.Sort(keep)
	out := make([]Query, n)
	for i, k := range keep {
		out[i] = qs[k]
	}
	return out
}

// denseRelevant says whether doc is judged relevant (grade > 0) to qid.
func denseRelevant(q Qrels, qid, doc string) bool { return q[qid][doc] > 0 }

// setupBiEncoder builds a task's bi-encoder in the session's store: the
// sources, the tokenizer (trained on vocabTexts when it is to be made),
// the architecture; on a fresh run it loads the pretrained weights and
// writes BiEncoderFile and the tokenizer into the run directory.
func setupBiEncoder(s *train.Session, ms BiEncoderSetup, vocabTexts func() []string) (*BiEncoder, error) {
	w := s.W
	if own := filepath.Join(s.Out, BiEncoderFile); s.Resuming() && denseExists(own) {
		// A resumed run rebuilds the model it described when it started
		// (the checkpoint holds the weights), whatever became of its
		// pretrained source since.
		cfg, err := ReadBiEncoderFile(s.Out)
		if err != nil {
			return nil, err
		}
		tokPath := filepath.Join(s.Out, cfg.Tokenizer)
		tok, err := mlm.LoadTokenizer(tokPath)
		if err != nil {
			return nil, err
		}
		return NewBiEncoder(s.Store, *cfg, tok, tokPath)
	}
	var src, psrc *EncoderSource
	var err error
	tokPath := ms.Tokenizer
	hasModel := ms.Model != (torchmods.BertConfig{})
	if ms.Pretrained != "" {
		if src, err = ResolveEncoderSource(ms.Pretrained, ms.Tokenizer); err != nil {
			return nil, err
		}
		tokPath = src.Tokenizer
		switch {
		case src.Bert.HiddenSize == 0 && !hasModel:
			return nil, fmt.Errorf("ir: %s (%s) gives no sizes: set [model]", ms.Pretrained, src.Kind)
		case src.Bert.HiddenSize == 0:
			src.Bert = ms.Model
		case hasModel:
			// A config may keep its [model] when it describes the same
			// BERT (so one file serves from scratch and from a run);
			// different sizes would load nothing sensible.
			mm := ms.Model
			if mm.VocabSize == 0 {
				mm.VocabSize = src.Bert.VocabSize
			}
			mm.PadTokenID = src.Bert.PadTokenID
			if mm != src.Bert {
				return nil, fmt.Errorf("ir: [model] %+v differs from the sizes of %s (%s), %+v: remove [model] or make it match", mm, ms.Pretrained, src.Kind, src.Bert)
			}
		}
	}
	if ms.PretrainedPassage != "" {
		if psrc, err = ResolveEncoderSource(ms.PretrainedPassage, tokPath); err != nil {
			return nil, err
		}
		if psrc.Towers == 2 {
			return nil, fmt.Errorf("ir: pretrained_passage %s (%s) has two towers; name it as pretrained", ms.PretrainedPassage, psrc.Kind)
		}
		if psrc.Bert.HiddenSize == 0 {
			psrc.Bert = src.Bert
		}
	}
	if tokPath == "" {
		return nil, fmt.Errorf("ir: %s has no tokenizer beside it; set tokenizer", ms.Pretrained)
	}
	if !denseExists(tokPath) {
		if ms.Pretrained != "" || filepath.Ext(tokPath) == ".json" {
			return nil, fmt.Errorf("ir: tokenizer %s not found", tokPath)
		}
		texts := vocabTexts()
		fmt.Fprintf(w, "training a %d-token WordPiece vocabulary on %d texts into %s\n", ms.VocabSize, len(texts), tokPath)
		vocab, err := mlm.TrainWordPiece(texts, ms.VocabSize, 2)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(tokPath), 0o755); err != nil {
			return nil, err
		}
		if err := mlm.WriteVocab(tokPath+".tmp", vocab); err != nil {
			return nil, err
		}
		if err := os.Rename(tokPath+".tmp", tokPath); err != nil {
			return nil, err
		}
	}
	tok, err := mlm.LoadTokenizer(tokPath)
	if err != nil {
		return nil, err
	}
	cfg := BiEncoderConfig{Shared: ms.Encoder.Shared, Pooling: PoolCLS, Similarity: SimDot}
	if src != nil {
		cfg.Bert = src.BertFor(tok)
		if src.Pooling != "" {
			cfg.Pooling = src.Pooling
		}
		if src.Similarity != "" {
			cfg.Similarity = src.Similarity
		}
	} else {
		cfg.Bert = ms.Model
		if cfg.Bert.VocabSize == 0 {
			cfg.Bert.VocabSize = tok.Size
		}
		cfg.Bert.PadTokenID = tok.PAD
	}
	if ms.Encoder.Pooling != "" {
		if p := Pooling(ms.Encoder.Pooling); src != nil && src.Pooling != "" && p != src.Pooling {
			fmt.Fprintf(w, "note: %s was trained with %s pooling; encoder.pooling makes it %s\n", ms.Pretrained, src.Pooling, p)
		}
		cfg.Pooling = Pooling(ms.Encoder.Pooling)
	}
	if ms.Encoder.Similarity != "" {
		if m := Similarity(ms.Encoder.Similarity); src != nil && src.Similarity != "" && m != src.Similarity {
			fmt.Fprintf(w, "note: %s was trained for %s similarity; encoder.similarity makes it %s\n", ms.Pretrained, src.Similarity, m)
		}
		cfg.Similarity = Similarity(ms.Encoder.Similarity)
	}
	if cfg.Similarity == SimCosine && ms.Encoder.Temperature == 1 {
		fmt.Fprintf(w, "note: cosine similarity with encoder.temperature = 1 trains on scores in [-1, 1]; 0 takes cosine's default, %v\n", DefaultTemperature(SimCosine))
	}
	maxPos := int(cfg.Bert.MaxPositionEmbeddings)
	cfg.QueryMaxLen, cfg.PassageMaxLen = min(ms.Encoder.QueryMaxLen, maxPos), min(ms.Encoder.PassageMaxLen, maxPos)
	if psrc != nil && psrc.BertFor(tok) != cfg.Bert {
		return nil, fmt.Errorf("ir: %s and %s are BERTs of different sizes", ms.Pretrained, ms.PretrainedPassage)
	}
	m, err := NewBiEncoder(s.Store, cfg, tok, tokPath)
	if err != nil {
		return nil, err
	}
	if s.Resuming() {
		return m, nil
	}
	if src != nil {
		sides := BothSides
		if psrc != nil {
			sides = QuerySide
		}
		if !cfg.Shared && src.Towers == 1 && psrc == nil && strings.HasPrefix(src.Kind, "DPR") {
			fmt.Fprintf(w, "note: both towers start from %s (%s); set pretrained_passage to DPR's other encoder\n", ms.Pretrained, src.Kind)
		}
		if err := m.LoadSource(src, sides, w); err != nil {
			return nil, err
		}
		if psrc != nil {
			if err := m.LoadSource(psrc, PassageSide, w); err != nil {
				return nil, err
			}
		}
	}
	if err := m.WriteFiles(s.Out); err != nil {
		return nil, err
	}
	return m, nil
}

// describe is one line about the model, for the run's log.
func (m *BiEncoder) describe() string {
	towers := "separate query and passage towers"
	if m.Cfg.Shared {
		towers = "one shared tower"
	}
	c := m.Cfg.Bert
	return fmt.Sprintf("BERT %d layers x %d, %s, %s pooling, %s similarity, %d/%d tokens",
		c.NumHiddenLayers, c.HiddenSize, towers, m.Cfg.Pooling, m.Cfg.Similarity, m.Cfg.QueryMaxLen, m.Cfg.PassageMaxLen)
}

// denseExample is a training query: its relevant documents and its hard
// negatives, as positions in the collection.
type denseExample struct {
	qid, text string
	pos, neg  []int
}

// denseBatch is one micro-batch, tokenised by the loader: the queries, the
// passages in DPR's order (query i's positive, then its hard negatives,
// then query i+1's), each query's positive column, and the columns that
// are judged relevant to a query but stand as its negatives.
type denseBatch struct {
	q, p      [][]int64
	positives []int64
	exclude   []bool
}

// denseHardNegatives are the training queries' hard negatives: BM25's top
// non-relevant documents, mined once (or read from negatives.run), each
// query's in rank order.
func denseHardNegatives(c *denseCorpus, n DenseNegatives, out string, w io.Writer) (Run, float64, error) {
	start := time.Now()
	cached := filepath.Join(out, "hard_negatives.trec")
	var run Run
	var err error
	source := n.Run
	switch {
	case n.Run != "":
		if run, err = ReadRunFile(n.Run); err != nil {
			return nil, 0, err
		}
	case denseExists(cached):
		source = cached // a resumed run: the negatives it mined
		if run, err = ReadRunFile(cached); err != nil {
			return nil, 0, err
		}
	default:
		idx := filepath.Join(out, ".bm25-mining.idx")
		if _, err := BuildIndex(idx, c.docs, IndexOptions{}); err != nil {
			return nil, 0, err
		}
		defer os.Remove(idx)
		ix, err := OpenIndex(idx)
		if err != nil {
			return nil, 0, err
		}
		defer ix.Close()
		most := 0
		for _, q := range c.train {
			most = max(most, len(c.trainQrels[q.ID]))
		}
		opts := DefaultSearchOptions()
		opts.K = n.Depth + most
		fmt.Fprintf(w, "mining BM25 hard negatives: the top %d of %d training queries over %d documents\n", opts.K, len(c.train), len(c.docs))
		if run, err = ix.BatchSearch(c.train, opts); err != nil {
			return nil, 0, err
		}
	}
	neg := Run{}
	for _, q := range c.train {
		rs := slices.Clone(run[q.ID])
		SortTREC(rs)
		var keep []Result
		for _, r := range rs {
			if len(keep) == n.Depth {
				break
			}
			if _, ok := c.index[r.DocID]; !ok {
				return nil, 0, fmt.Errorf("ir: %s: query %s: document %q is not in the collection", source, q.ID, r.DocID)
			}
			if !denseRelevant(c.trainQrels, q.ID, r.DocID) {
				keep = append(keep, r)
			}
		}
		if len(keep) > 0 {
			neg[q.ID] = keep
		}
	}
	if n.Run == "" && source != cached {
		if err := WriteRunFile(cached, neg, "bm25"); err != nil {
			return nil, 0, err
		}
	}
	return neg, time.Since(start).Seconds(), nil
}

// denseExamples pairs each training query with its relevant documents and
// hard negatives; a query none of whose relevant documents is in the
// collection cannot be trained on and is left out.
func denseExamples(c *denseCorpus, neg Run) (ex []denseExample, noNeg, dropped int) {
	for _, q := range c.train {
		e := denseExample{qid: q.ID, text: q.Text}
		for d, g := range c.trainQrels[q.ID] {
			if i, ok := c.index[d]; ok && g > 0 {
				e.pos = append(e.pos, i)
			}
		}
		if len(e.pos) == 0 {
			dropped++
			continue
		}
		slices.Sort(e.pos)
		for _, r := range neg[q.ID] {
			e.neg = append(e.neg, c.index[r.DocID])
		}
		if len(e.neg) == 0 {
			noNeg++
		}
		ex = append(ex, e)
	}
	return ex, noNeg, dropped
}

// drawDocs draws up to want distinct documents of n (their positions)
// that ok accepts, at random with rng: by rejection while acceptable
// documents are easy to hit, then from a list of every acceptable one, so
// that it ends however few there are. It returns fewer than want only
// when fewer exist.
func drawDocs(rng *rand.Rand, n, want int, ok func(int) bool) []int {
	var out []int
	taken := map[int]bool{}
	for tries := 0; len(out) < want && tries < 8*want; tries++ {
		if d := rng.IntN(n); !taken[d] && ok(d) {
			taken[d] = true
			out = append(out, d)
		}
	}
	if len(out) == want {
		return out
	}
	var rest []int
	for d := range n {
		if !taken[d] && ok(d) {
			rest = append(rest, d)
		}
	}
	for len(out) < want && len(rest) > 0 {
		j := rng.IntN(len(rest))
		out = append(out, rest[j])
		rest[j] = rest[len(rest)-1]
		rest = rest[:len(rest)-1]
	}
	return out
}

// makeDenseBatch draws each query's positive and hard negatives with the
// batch's own generator (so a resumed run draws the same) and tokenises
// everything. A query with fewer hard negatives than asked for is topped
// up with random documents neither judged relevant to it nor already
// among its negatives; where the collection has too few of those (a query
// judged relevant to nearly every document) it trains with fewer, and
// RunDense reports how many such queries there are.
func makeDenseBatch(b data.Batch, ex []denseExample, c *denseCorpus, m *BiEncoder, hard int) (*denseBatch, error) {
	rng := b.Rand()
	var qTexts, pTexts []string
	var pDocs []int
	out := &denseBatch{}
	for _, i := range b.Indices {
		e := ex[i]
		qTexts = append(qTexts, e.text)
		out.positives = append(out.positives, int64(len(pDocs)))
		pDocs = append(pDocs, e.pos[rng.IntN(len(e.pos))])
		pick := slices.Clone(e.neg)
		for j := 0; j < hard && j < len(pick); j++ {
			k := j + rng.IntN(len(pick)-j)
			pick[j], pick[k] = pick[k], pick[j]
			pDocs = append(pDocs, pick[j])
		}
		if n := min(hard, len(pick)); n < hard {
			chosen := pick[:n]
			pDocs = append(pDocs, drawDocs(rng, len(c.docs), hard-n, func(d int) bool {
				return !slices.Contains(chosen, d) && !denseRelevant(c.trainQrels, e.qid, c.docs[d].ID)
			})...)
		}
	}
	cols := len(pDocs)
	out.exclude = make([]bool, len(b.Indices)*cols)
	for r, i := range b.Indices {
		for j, d := range pDocs {
			out.exclude[r*cols+j] = denseRelevant(c.trainQrels, ex[i].qid, c.docs[d].ID)
		}
	}
	for _, d := range pDocs {
		pTexts = append(pTexts, c.docs[d].Text)
	}
	var err error
	if out.q, err = m.Query.TokenizeAll(qTexts); err != nil {
		return nil, err
	}
	if out.p, err = m.Passage.TokenizeAll(pTexts); err != nil {
		return nil, err
	}
	return out, nil
}

// DefaultTemperature is the loss's temperature when encoder.temperature
// is 0: 1 for the dot product (DPR, Tevatron), 0.05 for cosine
// (sentence-transformers' scale of 20, SimCSE's 0.05).
func DefaultTemperature(sim Similarity) float64 {
	if sim == SimCosine {
		return 0.05
	}
	return 1
}

// loss is the batch's contrastive loss (tensor code). A temperature of 0
// is the similarity's default (DefaultTemperature).
func (m *BiEncoder) loss(q, p [][]int64, positives []int64, exclude []bool, temperature float64, train bool) *ts.Tensor {
	if temperature == 0 {
		temperature = DefaultTemperature(m.Cfg.Similarity)
	}
	qi, qm := m.Query.Batch(q)
	pi, pm := m.Passage.Batch(p)
	return ContrastiveLoss(ScoreMatrix(m.Query.Forward(qi, qm, train), m.Passage.Forward(pi, pm, train)), positives, exclude, temperature)
}

// RunDense trains the bi-encoder on the training queries with DPR's loss
// (each query's positive against the batch's other positives and every
// hard negative), then encodes the collection into a flat index in the run
// directory, searches the evaluated queries exactly and reports MRR@10,
// nDCG@10 and Recall@100 with the encoding time and the index's size.
func RunDense(s *train.Session, c *DenseConfig) (*DenseResult, error) {
	w := s.W
	corpus, err := loadDenseData(c.Data, c.Eval, true)
	if err != nil {
		return nil, err
	}
	m, err := setupBiEncoder(s, c.BiEncoderSetup, corpus.docTexts)
	if err != nil {
		return nil, err
	}
	res := &DenseResult{HardNegatives: c.Negatives.Hard}
	var neg Run
	if c.Negatives.Hard > 0 {
		if neg, res.MineSeconds, err = denseHardNegatives(corpus, c.Negatives, s.Out, w); err != nil {
			return nil, err
		}
	}
	ex, noNeg, dropped := denseExamples(corpus, neg)
	if len(ex) < c.Data.Batch {
		return nil, fmt.Errorf("ir: %d trainable queries, fewer than a batch of %d", len(ex), c.Data.Batch)
	}
	res.TrainQueries = len(ex)
	if c.Negatives.Hard > 0 {
		res.NoHardNegatives = noNeg
		short := 0
		for _, e := range ex {
			// e.pos holds every document judged relevant to the query.
			if len(corpus.docs)-len(e.pos) < c.Negatives.Hard {
				short++
			}
		}
		if short > 0 {
			fmt.Fprintf(w, "note: %d training queries have fewer than %d documents not judged relevant to them: they train with fewer negatives\n", short, c.Negatives.Hard)
		}
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(ex), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) (*denseBatch, error) { return makeDenseBatch(b, ex, corpus, m, c.Negatives.Hard) })
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	opt, sched, err := c.Optim.plan(s.Store, steps)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "ir.dense: %d training queries (%d without a relevant document in the collection left out), %d documents, %s; "+
		"batch %d with %d hard negatives each, %d steps (%.2f epochs), weights %s\n",
		len(ex), dropped, len(corpus.docs), m.describe(), c.Data.Batch, c.Negatives.Hard, steps, float64(steps)/float64(perEpoch), denseOrNone(c.Pretrained))
	var final *DenseEvaluation
	plan := train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			return m.loss(b.q, b.p, b.positives, b.exclude, c.Encoder.Temperature, true), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
	}
	if c.Trainer.EvalEvery > 0 {
		plan.Eval = func(step int64) (map[string]float64, error) {
			last := step == steps-1
			ev, err := evaluateBiEncoder(m, corpus, c.Eval, s.Out, last, w)
			if err != nil {
				return nil, err
			}
			if last {
				final = ev
			}
			return ev.metrics(), nil
		}
	}
	if err := s.Train(plan); err != nil {
		return nil, err
	}
	if final == nil {
		if final, err = evaluateBiEncoder(m, corpus, c.Eval, s.Out, true, w); err != nil {
			return nil, err
		}
	}
	res.DenseEvaluation = *final
	res.Steps, res.Seconds = steps, s.Elapsed().Seconds()
	return res, nil
}

func denseOrNone(s string) string {
	if s == "" {
		return "none (from scratch)"
	}
	return s
}

func (e *DenseEvaluation) metrics() map[string]float64 {
	return map[string]float64{"mrr_10": e.MRR10, "ndcg_10": e.NDCG10, "recall_100": e.Recall100}
}

// evaluateBiEncoder encodes the collection into dir/passages.dense, searches
// the evaluated queries exactly (depth results each) and scores the run
// with trec_eval's semantics, -c (a query the run lacks scores 0). With
// keep, the run is written to dir/run.<split>.trec and the index stays;
// otherwise the index is removed.
func evaluateBiEncoder(m *BiEncoder, c *denseCorpus, e DenseEval, dir string, keep bool, w io.Writer) (*DenseEvaluation, error) {
	if len(c.eval) == 0 {
		return nil, fmt.Errorf("ir: no queries to evaluate")
	}
	indexName := "passages.dense"
	indexPath := filepath.Join(dir, indexName)
	fmt.Fprintf(w, "encoding %d passages into %s\n", len(c.docs), indexPath)
	stats, err := EncodeCorpus(m.Passage, c.docs, indexPath, EncodeCorpusOptions{Batch: e.Batch, Progress: w})
	if err != nil {
		return nil, err
	}
	ix, err := OpenDenseIndex(indexPath)
	if err != nil {
		return nil, err
	}
	defer func() {
		ix.Close()
		if !keep {
			os.Remove(indexPath)
		}
	}()
	r, err := NewDenseRetriever(m.Query, ix, DenseRetrieverOptions{Batch: e.Batch, ChunkRows: e.ChunkRows})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	texts := make([]string, len(c.eval))
	qrels := Qrels{}
	for i, q := range c.eval {
		texts[i] = q.Text
		qrels[q.ID] = c.evalQrels[q.ID]
	}
	start := time.Now()
	res, err := r.Retrieve(context.Background(), texts, e.Depth)
	if err != nil {
		return nil, err
	}
	searchSec := time.Since(start).Seconds()
	run := Run{}
	for i, q := range c.eval {
		if len(res[i]) > 0 {
			run[q.ID] = res[i]
		}
	}
	metrics := []Metric{MRR10, NDCG10, Recall100}
	ev, err := Evaluate(run, qrels, metrics, EvalOptions{Complete: true})
	if err != nil {
		return nil, err
	}
	out := &DenseEvaluation{Split: c.evalName, Queries: len(c.eval), Docs: stats.Docs,
		EncodeSeconds: stats.Seconds, IndexBytes: stats.Bytes, SearchSeconds: searchSec,
		MsPerQuery: 1000 * searchSec / float64(len(c.eval))}
	out.MRR10, _ = ev.Value(MRR10)
	out.NDCG10, _ = ev.Value(NDCG10)
	out.Recall100, _ = ev.Value(Recall100)
	if keep {
		name := fmt.Sprintf("run.%s.trec", c.evalName)
		if err := WriteRunFile(filepath.Join(dir, name), run, "dense"); err != nil {
			return nil, err
		}
		out.Index, out.Run = indexName, name
	}
	fmt.Fprintf(w, "%s (%d queries): MRR@10 %.4f  nDCG@10 %.4f  Recall@100 %.4f; encoding %d passages %.1f s, index %d bytes; search %.2f ms/query\n",
		out.Split, out.Queries, out.MRR10, out.NDCG10, out.Recall100, out.Docs, out.EncodeSeconds, out.IndexBytes, out.MsPerQuery)
	return out, nil
}

// EvalDense evaluates a trained bi-encoder (an ir.dense or ir.ict run
// folder, or anything OpenBiEncoder opens) on the config's evaluated
// queries, as `repro eval` calls it. The index is written to a temporary
// folder and removed.
func EvalDense(c *DenseConfig, checkpoint string, w io.Writer) error {
	corpus, err := loadDenseData(c.Data, c.Eval, false)
	if err != nil {
		return err
	}
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return err
	}
	m, err := OpenBiEncoder(checkpoint, OpenBiEncoderOptions{Device: dev, W: w})
	if err != nil {
		return err
	}
	defer m.Close()
	dir, err := os.MkdirTemp("", "ir-dense-eval")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_, err = evaluateBiEncoder(m, corpus, c.Eval, dir, false, w)
	return err
}
