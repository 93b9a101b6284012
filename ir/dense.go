package ir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/hub"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// This file is dense retrieval's model: a bi-encoder as DPR
// (facebookresearch/DPR, BiEncoder) and Tevatron (DenseModel) define it.
// A query encoder and a passage encoder, each a BERT, map a text to one
// vector (the [CLS] token's last hidden state, or the mean over the
// tokens); relevance is the dot product or cosine of the two vectors.
// Because a passage's vector does not depend on the query, the whole
// collection is encoded once, offline, into a flat index (dense_index.go),
// and a query costs one encoder pass and one matrix product. The checkpoint
// loaders read DPR's HF encoders and BERT sentence embedders
// (sentence-transformers), so that a published model computes here what it
// computes in Python.

// Pooling is how an encoder turns BERT's hidden states into one vector.
type Pooling string

const (
	// PoolCLS takes the [CLS] token's last hidden state, without BERT's
	// pooler layer: DPR's HFBertEncoder (sequence_output[:, 0, :]) and
	// Tevatron's default.
	PoolCLS Pooling = "cls"
	// PoolMean averages the last hidden states over the real tokens (the
	// attention mask), as sentence-transformers' Pooling module with
	// pooling_mode_mean_tokens.
	PoolMean Pooling = "mean"
)

// ParsePooling reads "cls" or "mean", as configs spell them.
func ParsePooling(s string) (Pooling, error) {
	switch p := Pooling(s); p {
	case PoolCLS, PoolMean:
		return p, nil
	}
	return "", fmt.Errorf("ir: pooling %q: want \"cls\" or \"mean\"", s)
}

// Similarity is how a query vector and a passage vector are compared.
type Similarity string

const (
	// SimDot is the inner product, DPR's and Tevatron's default: the
	// vectors' lengths count, and the encoders learn to use them.
	SimDot Similarity = "dot"
	// SimCosine is the cosine: both vectors are L2-normalised when they
	// are made, so that search is still a dot product (on unit vectors),
	// as sentence-transformers' Normalize module and Tevatron's
	// --normalize do.
	SimCosine Similarity = "cosine"
)

// ParseSimilarity reads "dot" or "cosine".
func ParseSimilarity(s string) (Similarity, error) {
	switch m := Similarity(s); m {
	case SimDot, SimCosine:
		return m, nil
	}
	return "", fmt.Errorf("ir: similarity %q: want \"dot\" or \"cosine\"", s)
}

// PoolHidden pools hidden states [B, L, H] into vectors [B, H]: the first
// token's for PoolCLS, else the mean over the positions where mask [B, L]
// is nonzero (the sum divided by the count clamped at 1e-9, exactly as
// sentence-transformers computes it).
func PoolHidden(hidden, mask *ts.Tensor, p Pooling) *ts.Tensor {
	switch p {
	case PoolCLS:
		return hidden.MustSelect(1, 0, false)
	case PoolMean:
		dt := hidden.DType()
		m := mask.MustUnsqueeze(-1, false).MustTotype(dt, true)
		sum := hidden.MustMul(m, false).MustSumDimIntlist([]int64{1}, false, dt, true)
		n := m.MustSumDimIntlist([]int64{1}, false, dt, true).MustClampMin(ts.FloatScalar(1e-9), true)
		return sum.MustDiv(n, true)
	}
	panic(fmt.Errorf("ir: unknown pooling %q", p))
}

// NormalizeRows divides each row of x [B, H] by its L2 norm clamped at
// 1e-12: torch.nn.functional.normalize(x, p=2, dim=-1), which
// sentence-transformers' Normalize module applies.
func NormalizeRows(x *ts.Tensor) *ts.Tensor {
	n := x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{-1}, true, false).MustClampMin(ts.FloatScalar(1e-12), true)
	return x.MustDiv(n, true)
}

// ScoreMatrix is every query against every passage: q [B, H] times p
// [C, H] transposed, [B, C]. For cosine similarity the rows are already
// unit vectors (NormalizeRows), so it is a dot product in both cases.
func ScoreMatrix(q, p *ts.Tensor) *ts.Tensor {
	return q.MustMatmul(p.MustT(false), false)
}

// ContrastiveLoss is DPR's BiEncoderNllLoss (and Tevatron's loss): for
// query i, the softmax cross-entropy of its scores [B, C] divided by
// temperature, with its positive passage at column positives[i], averaged
// over the queries. Every other column is a negative: the other queries'
// positives (in-batch negatives) and all hard negatives. exclude, when not
// nil, is [B*C] row-major: columns that are true there get a score of -inf
// for that query, for a passage that is in the batch as a negative but is
// judged relevant to the query (a false negative DPR would train against).
// A query's own positive column is never excluded.
func ContrastiveLoss(scores *ts.Tensor, positives []int64, exclude []bool, temperature float64) *ts.Tensor {
	s := scores.MustSize()
	if len(s) != 2 || s[0] != int64(len(positives)) {
		panic(fmt.Errorf("ir: contrastive loss: scores %v for %d queries", s, len(positives)))
	}
	if !(temperature > 0) {
		panic(fmt.Errorf("ir: contrastive loss: temperature %v, want > 0", temperature))
	}
	for i, p := range positives {
		if p < 0 || p >= s[1] {
			panic(fmt.Errorf("ir: contrastive loss: query %d's positive is column %d of %d", i, p, s[1]))
		}
	}
	dev := scores.MustDevice()
	logits := scores
	if temperature != 1 {
		logits = logits.MustDivScalar(ts.FloatScalar(temperature), false)
	}
	if exclude != nil {
		if int64(len(exclude)) != s[0]*s[1] {
			panic(fmt.Errorf("ir: contrastive loss: exclusion mask of %d for scores %v", len(exclude), s))
		}
		ex := slices.Clone(exclude)
		for i, p := range positives {
			ex[int64(i)*s[1]+p] = false
		}
		mask := torchmods.FromSlice(ex, s, dev)
		logits = logits.MustMaskedFill(mask, ts.FloatScalar(math.Inf(-1)), false)
	}
	target := torchmods.FromSlice(positives, []int64{s[0]}, dev)
	return torchmods.CrossEntropy(logits.MustTotype(gotch.Float, false), target, torchmods.CEOptions{})
}

// DenseEncoder is one tower of a bi-encoder: a BERT, its pooling and,
// for cosine similarity, the normalisation, with the tokenizer and the
// length texts are cut to. The query and passage towers of a shared
// bi-encoder hold the same BERT and differ only in MaxLen.
//
// Encode runs each call in its own tensor scope with gradients off and only
// reads the parameters, so goroutines may encode at once as long as nothing
// trains the model meanwhile. A tower of a BiEncoder stops with an error
// once the BiEncoder is closed; Close waits for the forward passes in
// progress.
type DenseEncoder struct {
	Bert      *torchmods.Bert
	Pooling   Pooling
	Normalize bool
	MaxLen    int // tokens per text, [CLS] and [SEP] included
	Tok       *mlm.Tokenizer
	Device    gotch.Device

	life *modelLife // the BiEncoder's; nil for an encoder made otherwise
}

// modelLife guards a model's parameters against Close: forward passes
// hold it for reading, Close for writing.
type modelLife struct {
	mu     sync.RWMutex
	closed bool
}

// Dim is the size of the vectors.
func (e *DenseEncoder) Dim() int { return int(e.Bert.Cfg.HiddenSize) }

// Similarity is what the encoder's vectors are for: cosine when it
// normalises them.
func (e *DenseEncoder) Similarity() Similarity {
	if e.Normalize {
		return SimCosine
	}
	return SimDot
}

// Tokenize is text's token ids, [CLS] tokens [SEP], cut to MaxLen with
// [SEP] kept last (as DPR's tensorizer and HF's truncation do).
func (e *DenseEncoder) Tokenize(text string) ([]int64, error) {
	en, err := e.Tok.Encode(text, e.MaxLen)
	if err != nil {
		return nil, fmt.Errorf("ir: tokenizing %q: %w", text, err)
	}
	return en.IDs, nil
}

// TokenizeAll tokenizes texts on every CPU (the tokenizer is safe for
// concurrent use, and a corpus takes minutes on one core).
func (e *DenseEncoder) TokenizeAll(texts []string) ([][]int64, error) {
	out := make([][]int64, len(texts))
	workers := max(1, min(runtime.GOMAXPROCS(0), len(texts)))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(texts); i += workers {
				var err error
				if out[i], err = e.Tokenize(texts[i]); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Batch pads token sequences to the longest with [PAD] and makes the ids
// and attention mask [B, L] on the encoder's device.
func (e *DenseEncoder) Batch(seqs [][]int64) (ids, mask *ts.Tensor) {
	l := 0
	for _, s := range seqs {
		l = max(l, len(s))
	}
	fi, fm := make([]int64, len(seqs)*l), make([]int64, len(seqs)*l)
	for i, s := range seqs {
		for j := range l {
			fi[i*l+j] = e.Tok.PAD
			if j < len(s) {
				fi[i*l+j], fm[i*l+j] = s[j], 1
			}
		}
	}
	shape := []int64{int64(len(seqs)), int64(l)}
	return torchmods.FromSlice(fi, shape, e.Device), torchmods.FromSlice(fm, shape, e.Device)
}

// Forward is the vectors [B, H] of a padded batch: BERT, pooling, and the
// normalisation for cosine similarity.
func (e *DenseEncoder) Forward(ids, mask *ts.Tensor, train bool) *ts.Tensor {
	v := PoolHidden(e.Bert.Forward(ids, nil, mask, train), mask, e.Pooling)
	if e.Normalize {
		v = NormalizeRows(v)
	}
	return v
}

// Encode embeds texts, batch texts per forward pass, and returns one
// float32 vector per text, in order (the rows share one backing array).
// Texts are batched by length, longest first, so that batches pad little;
// the vectors do not depend on the batching beyond float rounding.
func (e *DenseEncoder) Encode(texts []string, batch int) ([][]float32, error) {
	return e.EncodeContext(context.Background(), texts, batch)
}

// EncodeContext is Encode that stops between batches once ctx is done.
func (e *DenseEncoder) EncodeContext(ctx context.Context, texts []string, batch int) ([][]float32, error) {
	seqs, err := e.TokenizeAll(texts)
	if err != nil {
		return nil, err
	}
	dim := e.Dim()
	flat := make([]float32, len(texts)*dim)
	err = e.encodeSeqs(ctx, seqs, batch, func(idx []int, vecs []float32) error {
		for i, j := range idx {
			copy(flat[j*dim:(j+1)*dim], vecs[i*dim:(i+1)*dim])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	for i := range out {
		out[i] = flat[i*dim : (i+1)*dim : (i+1)*dim]
	}
	return out, nil
}

// encodeSeqs runs the encoder over token sequences in batches sorted by
// length and hands each batch's vectors (len(idx) rows, row i for
// seqs[idx[i]]) to emit. A non-finite vector is an error.
func (e *DenseEncoder) encodeSeqs(ctx context.Context, seqs [][]int64, batch int, emit func(idx []int, vecs []float32) error) error {
	if batch < 1 {
		return fmt.Errorf("ir: encoding batch %d, want >= 1", batch)
	}
	order := make([]int, len(seqs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(seqs[order[a]]) > len(seqs[order[b]]) })
	dim := e.Dim()
	group := make([][]int64, 0, batch)
	for b0 := 0; b0 < len(order); b0 += batch {
		if ctx != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		idx := order[b0:min(b0+batch, len(order))]
		group = group[:0]
		for _, j := range idx {
			group = append(group, seqs[j])
		}
		vecs := make([]float32, len(idx)*dim)
		if err := e.forwardInto(group, vecs); err != nil {
			return err
		}
		for i, x := range vecs {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("ir: encoding text %d gave a non-finite vector (element %d is %v)", idx[i/dim], i%dim, x)
			}
		}
		if err := emit(idx, vecs); err != nil {
			return err
		}
	}
	return nil
}

// forwardInto encodes one batch into vecs, unless the encoder's
// BiEncoder is closed.
func (e *DenseEncoder) forwardInto(group [][]int64, vecs []float32) error {
	if e.life != nil {
		e.life.mu.RLock()
		defer e.life.mu.RUnlock()
		if e.life.closed {
			return errors.New("ir: encoding: the bi-encoder is closed")
		}
	}
	err := torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			ids, mask := e.Batch(group)
			v := e.Forward(ids, mask, false).MustTotype(gotch.Float, false).MustTo(gotch.CPU, true).MustContiguous(true)
			v.MustCopyData(vecs, uint(len(vecs)))
		})
	})
	if err != nil {
		return fmt.Errorf("ir: encoding: %w", err)
	}
	return nil
}

// The store names of a bi-encoder's BERTs. A shared encoder is a BertModel
// under bert. (as in BertForMaskedLM, so that its checkpoint loads as a
// BERT anywhere); separate encoders carry the names of HF's
// DPRQuestionEncoder and DPRContextEncoder, so that each half of a
// checkpoint is a DPR state dict.
const (
	SharedPrefix  = "bert."
	QueryPrefix   = "question_encoder.bert_model."
	PassagePrefix = "ctx_encoder.bert_model."
)

// BiEncoderFile is the file in a run directory (ir.dense, ir.ict) that
// describes its bi-encoder; OpenBiEncoder and a later run's pretrained
// read it.
const BiEncoderFile = "bi_encoder.json"

// BiEncoderConfig is a bi-encoder's architecture, as BiEncoderFile holds
// it.
type BiEncoderConfig struct {
	Bert torchmods.BertConfig `json:"bert"`
	// Shared uses one BERT for queries and passages (Tevatron's default,
	// sentence-transformers); DPR trains two.
	Shared     bool       `json:"shared"`
	Pooling    Pooling    `json:"pooling"`
	Similarity Similarity `json:"similarity"`
	// QueryMaxLen and PassageMaxLen are the tokens each side is cut to,
	// [CLS] and [SEP] included (Tevatron's q_max_len and p_max_len).
	QueryMaxLen   int `json:"query_max_len"`
	PassageMaxLen int `json:"passage_max_len"`
	// Tokenizer is the tokenizer file's name beside BiEncoderFile.
	Tokenizer string `json:"tokenizer,omitempty"`
}

// Validate checks that the parts fit together.
func (c BiEncoderConfig) Validate() error {
	if err := c.Bert.Validate(); err != nil {
		return err
	}
	if _, err := ParsePooling(string(c.Pooling)); err != nil {
		return err
	}
	if _, err := ParseSimilarity(string(c.Similarity)); err != nil {
		return err
	}
	for _, l := range []int{c.QueryMaxLen, c.PassageMaxLen} {
		if l < 3 || int64(l) > c.Bert.MaxPositionEmbeddings {
			return fmt.Errorf("ir: query_max_len %d and passage_max_len %d must be in [3, max_position_embeddings %d]",
				c.QueryMaxLen, c.PassageMaxLen, c.Bert.MaxPositionEmbeddings)
		}
	}
	return nil
}

// BiEncoder is a query tower and a passage tower (the same BERT when
// Cfg.Shared) with their tokenizer, in a store.
type BiEncoder struct {
	Cfg            BiEncoderConfig
	Query, Passage *DenseEncoder
	Tok            *mlm.Tokenizer
	TokPath        string // the tokenizer's file
	Store          *torchmods.Store
	owned          bool // Close drops the store
	life           *modelLife
}

// NewBiEncoder registers a bi-encoder in store under the names above,
// initialised as HF initialises BERT. A vocabulary size of 0 takes the
// tokenizer's.
func NewBiEncoder(store *torchmods.Store, cfg BiEncoderConfig, tok *mlm.Tokenizer, tokPath string) (*BiEncoder, error) {
	if cfg.Bert.VocabSize == 0 {
		cfg.Bert.VocabSize = tok.Size
	}
	if cfg.Bert.VocabSize < tok.Size {
		return nil, fmt.Errorf("ir: the model's vocabulary of %d is smaller than the tokenizer's %d tokens", cfg.Bert.VocabSize, tok.Size)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &BiEncoder{Cfg: cfg, Tok: tok, TokPath: tokPath, Store: store, life: &modelLife{}}
	err := torchmods.Try(func() {
		tower := func(prefix string, maxLen int, b *torchmods.Bert) *DenseEncoder {
			if b == nil {
				b = torchmods.NewBert(store.Root().Sub(strings.TrimSuffix(prefix, ".")), cfg.Bert, false)
			}
			return &DenseEncoder{Bert: b, Pooling: cfg.Pooling, Normalize: cfg.Similarity == SimCosine, MaxLen: maxLen, Tok: tok, Device: store.Device, life: m.life}
		}
		if cfg.Shared {
			m.Query = tower(SharedPrefix, cfg.QueryMaxLen, nil)
			m.Passage = tower(SharedPrefix, cfg.PassageMaxLen, m.Query.Bert)
		} else {
			m.Query = tower(QueryPrefix, cfg.QueryMaxLen, nil)
			m.Passage = tower(PassagePrefix, cfg.PassageMaxLen, nil)
		}
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Close waits for the towers' encoding passes in progress, then frees the
// parameters of a bi-encoder OpenBiEncoder made (one NewBiEncoder made
// belongs to its caller's store, which keeps them). Either way the towers'
// Encode and EncodeContext return an error afterwards, and so does a
// DenseRetriever searching with them.
func (m *BiEncoder) Close() {
	if m.life != nil {
		m.life.mu.Lock()
		defer m.life.mu.Unlock()
		if m.life.closed {
			return
		}
		m.life.closed = true
	}
	if m.owned {
		m.Store.Drop()
		m.owned = false
	}
}

// prefix is the store prefix of a side's BERT.
func (m *BiEncoder) prefix(s Side) string {
	switch {
	case m.Cfg.Shared:
		return SharedPrefix
	case s == QuerySide:
		return QueryPrefix
	}
	return PassagePrefix
}

// WriteFiles writes what makes a run directory loadable by OpenBiEncoder
// and as a later run's pretrained: BiEncoderFile and a copy of the
// tokenizer, so that the run does not depend on where its tokenizer was.
func (m *BiEncoder) WriteFiles(dir string) error {
	cfg := m.Cfg
	cfg.Tokenizer = "vocab.txt"
	if filepath.Ext(m.TokPath) == ".json" {
		cfg.Tokenizer = "tokenizer.json"
	}
	b, err := os.ReadFile(m.TokPath)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, cfg.Tokenizer), func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
		return err
	}
	j, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, BiEncoderFile), func(w io.Writer) error {
		_, err := w.Write(append(j, '\n'))
		return err
	})
}

// Side names a bi-encoder's towers, for LoadSource: a set, because one
// source may start both (DPR and Tevatron initialise both towers from one
// BERT) or only one (DPR's two published encoders, one per side).
type Side int

// The towers.
const (
	QuerySide   Side = 1
	PassageSide Side = 2
	BothSides        = QuerySide | PassageSide
)

// EncoderSource is what a pretrained spec resolved to: the weight file,
// the BERT's sizes, the tokenizer, what the source says about pooling and
// similarity, and how its tensors are named.
type EncoderSource struct {
	Spec string
	// Kind is for messages: "BERT (HF folder)", "DPR question encoder",
	// "sentence-transformers", "repro run (mlm.pretrain)", "ir run
	// (ir.ict)", "weight file".
	Kind string
	File string // the weight file
	// Bert is the sizes; the zero value for a bare weight file.
	Bert      torchmods.BertConfig
	Tokenizer string // "" when none was found
	// Pooling, Similarity and MaxLen are what the source says ("" and 0
	// when it says nothing): DPR's are cls and dot, sentence-transformers'
	// come from its modules, an ir run's from its BiEncoderFile.
	Pooling    Pooling
	Similarity Similarity
	MaxLen     int
	// Run is an ir run's bi-encoder, nil for other sources.
	Run *BiEncoderConfig
	// Towers is 2 for a source with a query and a passage encoder (an ir
	// run with separate encoders), else 1.
	Towers int
	// towerPrefix is, per side, the prefix of the tower's names in the
	// file: "" for BERT names (bert.*, or BertModel's without the prefix).
	towerPrefix [2]string
	padFromTok  bool // the sizes come from a repro config: pad_token_id is the tokenizer's [PAD]
}

func sideIndex(s Side) int {
	if s == PassageSide {
		return 1
	}
	return 0
}

// sentence-transformers' module types.
const (
	stTransformer = "sentence_transformers.models.Transformer"
	stPooling     = "sentence_transformers.models.Pooling"
	stNormalize   = "sentence_transformers.models.Normalize"
)

// ResolveEncoderSource finds the weights, sizes and tokenizer behind spec:
//
//   - an ir.dense or ir.ict run (BiEncoderFile at its root): its newest
//     checkpoint, one tower or two;
//   - a sentence-transformers folder (modules.json): its Transformer
//     module's BERT, pooling from the Pooling module's config.json (cls or
//     mean; max and the others are refused), cosine when a Normalize module
//     follows or config_sentence_transformers.json says so, and the
//     max_seq_length of sentence_bert_config.json;
//   - a HF folder or hf:ORG/NAME whose config.json is model_type "dpr"
//     (DPRQuestionEncoder, DPRContextEncoder: tensors
//     question_encoder.bert_model.* or ctx_encoder.bert_model.*, [CLS]
//     pooling, dot product) or "bert" (any BERT class: its encoder);
//   - a run whose config.json is at its root (text.classify);
//   - a repro run whose config.toml has a BERT [model] (mlm.pretrain,
//     metapt.pretrain), with the tokenizer its data.vocab names;
//   - a bare weight file (the sizes must then come from the caller).
//
// tokenizer, when set, overrides the tokenizer found beside the weights.
func ResolveEncoderSource(spec, tokenizer string) (*EncoderSource, error) {
	src := &EncoderSource{Spec: spec, Tokenizer: tokenizer, Towers: 1}
	isDir := false
	if !hub.IsSpec(spec) {
		st, err := os.Stat(spec)
		if err != nil {
			return nil, fmt.Errorf("ir: pretrained %s: %w", spec, err)
		}
		isDir = st.IsDir()
	}
	if isDir && denseExists(filepath.Join(spec, BiEncoderFile)) {
		return src, src.fromRun(spec)
	}
	if isDir && denseExists(filepath.Join(spec, "modules.json")) {
		return src, src.fromSentenceTransformers(spec)
	}
	ws, err := torchmods.Resolve(spec)
	if err != nil {
		return nil, err
	}
	src.File = ws.File
	hfConfig := ws.Config
	if p := filepath.Join(spec, "config.json"); hfConfig == "" && isDir && denseExists(p) {
		hfConfig = p // a text.classify run: config.json at its root, weights in checkpoints/
	}
	switch {
	case hfConfig != "":
		if err := src.fromHFConfig(hfConfig); err != nil {
			return nil, err
		}
		if src.Tokenizer == "" {
			src.Tokenizer, err = torchmods.FindTokenizer(spec, filepath.Dir(hfConfig))
			if err != nil {
				return nil, err
			}
		}
	case isDir && denseExists(filepath.Join(spec, "config.toml")):
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
		src.Bert, src.Kind, src.padFromTok = rc.Model, fmt.Sprintf("repro run (%s)", rc.Task), true
		if src.Tokenizer == "" {
			if rc.Data.Vocab == "" || !denseExists(rc.Data.Vocab) {
				return nil, fmt.Errorf("ir: %s: its tokenizer (data.vocab %q, relative to this directory) is not there; set the tokenizer", spec, rc.Data.Vocab)
			}
			src.Tokenizer = rc.Data.Vocab
		}
	default:
		src.Kind, src.padFromTok = "weight file", true
		if err := src.namesFromFile(); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// ReadBiEncoderFile reads the BiEncoderFile of an ir run directory.
func ReadBiEncoderFile(dir string) (*BiEncoderConfig, error) {
	path := filepath.Join(dir, BiEncoderFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg BiEncoderConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("ir: %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ir: %s: %w", path, err)
	}
	if cfg.Tokenizer == "" {
		return nil, fmt.Errorf("ir: %s names no tokenizer", path)
	}
	return &cfg, nil
}

// fromRun reads an ir run: its BiEncoderFile and newest checkpoint.
func (src *EncoderSource) fromRun(dir string) error {
	c, err := ReadBiEncoderFile(dir)
	if err != nil {
		return err
	}
	cfg := *c
	ws, err := torchmods.Resolve(dir)
	if err != nil {
		return err
	}
	task := "ir run"
	var rc struct {
		Task string `toml:"task"`
	}
	if _, err := toml.DecodeFile(filepath.Join(dir, "config.toml"), &rc); err == nil && rc.Task != "" {
		task = rc.Task
	}
	src.Kind, src.File, src.Run, src.Bert = fmt.Sprintf("ir run (%s)", task), ws.File, &cfg, cfg.Bert
	src.Pooling, src.Similarity = cfg.Pooling, cfg.Similarity
	if src.Tokenizer == "" {
		src.Tokenizer = filepath.Join(dir, cfg.Tokenizer)
	}
	if !cfg.Shared {
		src.Towers, src.towerPrefix = 2, [2]string{QueryPrefix, PassagePrefix}
	}
	return nil
}

// fromHFConfig reads a HF config.json: a DPR encoder or a BERT.
func (src *EncoderSource) fromHFConfig(path string) error {
	cfg, err := torchmods.ReadHFConfig(path)
	if err != nil {
		return err
	}
	if src.Bert, err = torchmods.BertConfigFromHF(cfg); err != nil {
		return err
	}
	switch cfg.ModelType {
	case "dpr":
		proj, err := cfg.Int("projection_dim", 0)
		if err != nil {
			return err
		}
		if proj > 0 {
			return fmt.Errorf("ir: %s: projection_dim %d: DPR's projection layer (encode_proj) is not implemented; the published DPR encoders have 0", path, proj)
		}
		switch {
		case slices.Contains(cfg.Architectures, "DPRQuestionEncoder"):
			src.Kind, src.towerPrefix = "DPR question encoder", [2]string{"question_encoder.bert_model.", "question_encoder.bert_model."}
		case slices.Contains(cfg.Architectures, "DPRContextEncoder"):
			src.Kind, src.towerPrefix = "DPR context encoder", [2]string{"ctx_encoder.bert_model.", "ctx_encoder.bert_model."}
		default:
			return fmt.Errorf("ir: %s: a DPR config with architectures %v: a bi-encoder loads DPRQuestionEncoder or DPRContextEncoder", path, cfg.Architectures)
		}
		src.Pooling, src.Similarity = PoolCLS, SimDot // DPR's HFBertEncoder: sequence_output[:, 0, :], dot product
	case "bert", "":
		src.Kind = "BERT (HF folder)"
	default:
		return fmt.Errorf("ir: %s: model_type %q: a bi-encoder here is a BERT (model_type \"bert\" or \"dpr\")", path, cfg.ModelType)
	}
	return nil
}

// fromSentenceTransformers reads a sentence-transformers folder: modules.json
// lists the modules in order; a Transformer (the BERT), a Pooling and
// optionally a Normalize are what a bi-encoder here computes.
func (src *EncoderSource) fromSentenceTransformers(dir string) error {
	path := filepath.Join(dir, "modules.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var mods []struct {
		Path string `json:"path"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &mods); err != nil {
		return fmt.Errorf("ir: %s: %w", path, err)
	}
	transformer, pooling, normalize := "", "", false
	for i, m := range mods {
		switch m.Type {
		case stTransformer:
			if i != 0 {
				return fmt.Errorf("ir: %s: the Transformer is module %d, want the first", path, i)
			}
			transformer = filepath.Join(dir, m.Path)
		case stPooling:
			pooling = filepath.Join(dir, m.Path)
		case stNormalize:
			normalize = true
		default:
			return fmt.Errorf("ir: %s: module %d is %s; a bi-encoder here computes a Transformer, a Pooling and a Normalize only", path, i, m.Type)
		}
	}
	if transformer == "" || pooling == "" {
		return fmt.Errorf("ir: %s: want a %s and a %s module", path, stTransformer, stPooling)
	}
	ws, err := torchmods.Resolve(transformer)
	if err != nil {
		return err
	}
	if ws.Config == "" {
		return fmt.Errorf("ir: %s: the Transformer module's folder %s has no config.json", path, transformer)
	}
	if err := src.fromHFConfig(ws.Config); err != nil {
		return err
	}
	src.File, src.Kind = ws.File, "sentence-transformers"
	pcfg := filepath.Join(pooling, "config.json")
	if src.Pooling, err = readSTPooling(pcfg); err != nil {
		return err
	}
	src.Similarity = SimCosine // sentence-transformers' default similarity_fn_name
	if st := filepath.Join(dir, "config_sentence_transformers.json"); denseExists(st) {
		var c struct {
			Similarity string `json:"similarity_fn_name"`
		}
		b, err := os.ReadFile(st)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("ir: %s: %w", st, err)
		}
		switch c.Similarity {
		case "", "cosine":
		case "dot", "dot_product":
			src.Similarity = SimDot
		default:
			return fmt.Errorf("ir: %s: similarity_fn_name %q: want cosine or dot", st, c.Similarity)
		}
	}
	if normalize {
		src.Similarity = SimCosine // unit vectors: cosine and dot product are one
	}
	if sb := filepath.Join(transformer, "sentence_bert_config.json"); denseExists(sb) {
		var c struct {
			MaxSeqLength int `json:"max_seq_length"`
		}
		b, err := os.ReadFile(sb)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("ir: %s: %w", sb, err)
		}
		src.MaxLen = c.MaxSeqLength
	}
	if src.Tokenizer == "" {
		if src.Tokenizer, err = torchmods.FindTokenizer(transformer, transformer); err != nil {
			return err
		}
	}
	return nil
}

// readSTPooling reads a sentence-transformers Pooling config: exactly one
// mode, CLS or mean, may be on.
func readSTPooling(path string) (Pooling, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("ir: %s: %w", path, err)
	}
	var on []string
	for k, v := range c {
		if strings.HasPrefix(k, "pooling_mode_") && v == true {
			on = append(on, k)
		}
	}
	sort.Strings(on)
	switch {
	case len(on) == 1 && on[0] == "pooling_mode_cls_token":
		return PoolCLS, nil
	case len(on) == 1 && on[0] == "pooling_mode_mean_tokens":
		return PoolMean, nil
	case len(on) == 0:
		return "", fmt.Errorf("ir: %s: no pooling_mode_* is true", path)
	}
	return "", fmt.Errorf("ir: %s: %s: only pooling_mode_cls_token or pooling_mode_mean_tokens alone is implemented", path, strings.Join(on, ", "))
}

// namesFromFile tells a bare weight file's towers from its names: DPR's
// question_encoder.bert_model.* and ctx_encoder.bert_model.*, else BERT.
func (src *EncoderSource) namesFromFile() error {
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return err
	}
	q, c := false, false
	for _, t := range wf.Tensors {
		q = q || strings.HasPrefix(t.Name, QueryPrefix)
		c = c || strings.HasPrefix(t.Name, PassagePrefix)
	}
	switch {
	case q && c:
		src.Towers, src.towerPrefix = 2, [2]string{QueryPrefix, PassagePrefix}
	case q:
		src.towerPrefix = [2]string{QueryPrefix, QueryPrefix}
	case c:
		src.towerPrefix = [2]string{PassagePrefix, PassagePrefix}
	}
	return nil
}

// BertFor is the source's sizes for tok: vocab_size 0 takes the
// tokenizer's, and sizes from a repro config take its [PAD] as
// pad_token_id (a HF config says its own).
func (src *EncoderSource) BertFor(tok *mlm.Tokenizer) torchmods.BertConfig {
	c := src.Bert
	if c.VocabSize == 0 {
		c.VocabSize = tok.Size
	}
	if src.padFromTok {
		c.PadTokenID = tok.PAD
	}
	return c
}

// canonicalBertName maps the older spellings of BERT's names onto
// bert.*: LayerNorm.gamma/beta to weight/bias, and BertModel's names
// without the bert. prefix.
func canonicalBertName(name string) string {
	n := torchmods.RenameLegacyBert([]string{name})[0]
	for _, p := range []string{"embeddings.", "encoder.", "pooler."} {
		if strings.HasPrefix(n, p) {
			return "bert." + n
		}
	}
	return n
}

// LoadSource loads the source's weights into the bi-encoder's towers on
// the given sides. A one-tower source (a BERT, a DPR encoder, a shared ir
// run) fills each side asked for, as DPR and Tevatron start both towers
// from one BERT; a two-tower source fills each side from its own tower and
// cannot go into a shared model. Every parameter of a tower must come from
// the file with its shape: a missing tensor, a shape mismatch, or a tensor
// under the tower's names that the model does not have is an error naming
// the file's tensor. What a bi-encoder does not use (BERT's pooler, MLM
// and classification heads, DPR's pooler, the position_ids buffer) is
// dropped and reported to w.
func (m *BiEncoder) LoadSource(src *EncoderSource, sides Side, w io.Writer) error {
	if w == nil {
		w = io.Discard
	}
	if src.Towers == 2 && m.Cfg.Shared {
		return fmt.Errorf("ir: %s (%s) has separate query and passage encoders; set encoder.shared = false to load it", src.Spec, src.Kind)
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, s := range []Side{QuerySide, PassageSide} {
		if sides&s == 0 || done[m.prefix(s)] {
			continue
		}
		done[m.prefix(s)] = true
		if err := m.loadTower(src, wf, s, w); err != nil {
			return err
		}
	}
	return nil
}

// loadTower loads one side of the source into one side of the model.
func (m *BiEncoder) loadTower(src *EncoderSource, wf *torchmods.Weights, s Side, w io.Writer) error {
	file := src.File
	from := src.towerPrefix[sideIndex(s)]
	dst := m.prefix(s)
	type named struct {
		t    safetensors.Tensor
		orig string
	}
	byTarget := map[string]named{}
	var dropped []string
	for _, t := range wf.Tensors {
		name := t.Name
		if from != "" {
			if !strings.HasPrefix(name, from) {
				tower, _, _ := strings.Cut(from, ".")
				switch {
				case strings.HasPrefix(name, tower+".encode_proj."):
					return fmt.Errorf("ir: %s: tensor %q: DPR's projection layer is not implemented", file, name)
				case strings.HasPrefix(name, QueryPrefix), strings.HasPrefix(name, PassagePrefix):
					continue // the other tower of a two-tower file
				}
				return fmt.Errorf("ir: %s: tensor %q is not under %s, the %s's names", file, name, from, src.Kind)
			}
			name = strings.TrimPrefix(name, from)
		}
		c := canonicalBertName(name)
		rest, isBert := strings.CutPrefix(c, "bert.")
		switch {
		case !isBert, strings.HasPrefix(rest, "pooler."), rest == "embeddings.position_ids", rest == "embeddings.token_type_ids":
			dropped = append(dropped, t.Name)
			continue
		}
		target := dst + rest
		if prev, dup := byTarget[target]; dup {
			return fmt.Errorf("ir: %s: tensors %q and %q are both %s", file, prev.orig, t.Name, target)
		}
		byTarget[target] = named{t, t.Name}
	}
	if len(byTarget) == 0 {
		var have []string
		for _, t := range wf.Tensors {
			have = append(have, t.Name)
		}
		sort.Strings(have)
		return fmt.Errorf("ir: %s: no BERT tensor for the %s tower (want names like %sembeddings.word_embeddings.weight; the file has %s)",
			file, denseSideName(s), denseOrBert(from), strings.Join(denseFirstN(have, 3), ", "))
	}
	weights := make(map[string]*ts.Tensor, len(byTarget))
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	for target, n := range byTarget {
		x, err := torchmods.FromSafetensors(n.t, m.Store.Device)
		if err != nil {
			return fmt.Errorf("ir: %s: %w", file, err)
		}
		weights[target] = x
	}
	rep, err := m.Store.Load(weights, false)
	if err != nil {
		return fmt.Errorf("ir: %s: %w", file, err)
	}
	var missing, unexpected, mismatched []string
	for _, name := range rep.Missing {
		if rest, ok := strings.CutPrefix(name, dst); ok {
			missing = append(missing, denseOrBert(from)+rest)
		}
	}
	for _, name := range rep.Unexpected {
		unexpected = append(unexpected, byTarget[name].orig)
	}
	for _, mm := range rep.Mismatched {
		name, shapes, _ := strings.Cut(mm, ": ")
		mismatched = append(mismatched, fmt.Sprintf("%s: %s", byTarget[name].orig, shapes))
	}
	sort.Strings(missing)
	sort.Strings(unexpected)
	sort.Strings(mismatched)
	switch {
	case len(mismatched) > 0:
		return fmt.Errorf("ir: %s: shapes differ from the %s tower's: %s", file, denseSideName(s), strings.Join(mismatched, "; "))
	case len(missing) > 0:
		return fmt.Errorf("ir: %s: the %s tower needs tensors the file lacks: %s", file, denseSideName(s), strings.Join(missing, ", "))
	case len(unexpected) > 0:
		return fmt.Errorf("ir: %s: tensors the %s tower does not have: %s", file, denseSideName(s), strings.Join(unexpected, ", "))
	}
	sort.Strings(dropped)
	line := fmt.Sprintf("%s tower (%s) <- %s (%s): %d tensors", denseSideName(s), strings.TrimSuffix(dst, "."), file, src.Kind, len(rep.Loaded))
	if len(dropped) > 0 {
		line += fmt.Sprintf("; not used by a bi-encoder: %s", strings.Join(denseFirstN(dropped, 8), ", "))
	}
	fmt.Fprintln(w, line)
	return nil
}

func denseSideName(s Side) string {
	switch s {
	case QuerySide:
		return "query"
	case PassageSide:
		return "passage"
	}
	return "query and passage"
}

func denseOrBert(prefix string) string {
	if prefix == "" {
		return "bert."
	}
	return prefix
}

func denseFirstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(slices.Clone(s[:n]), fmt.Sprintf("... (%d in all)", len(s)))
}

func denseExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Default lengths when neither the source nor the caller gives them:
// Tevatron's q_max_len and p_max_len.
const (
	DefaultQueryMaxLen   = 32
	DefaultPassageMaxLen = 128
)

// OpenBiEncoderOptions say how OpenBiEncoder builds a bi-encoder.
type OpenBiEncoderOptions struct {
	// Passage, when set, is a second source for the passage tower: a DPR
	// context encoder beside spec's question encoder. An ir run with a
	// shared encoder takes none (it is an error).
	Passage string
	// Tokenizer overrides the one found beside the weights.
	Tokenizer string
	// QueryMaxLen and PassageMaxLen override the lengths (0: an ir run's,
	// sentence-transformers' max_seq_length, else the defaults above),
	// never beyond max_position_embeddings.
	QueryMaxLen, PassageMaxLen int
	Device                     gotch.Device
	// W receives the load report; nil discards it.
	W io.Writer
}

// OpenBiEncoder loads a bi-encoder for inference from an ir.dense or
// ir.ict run, a sentence-transformers or BERT folder (one shared encoder),
// or a DPR question encoder with its context encoder as o.Passage. Close
// frees it.
func OpenBiEncoder(spec string, o OpenBiEncoderOptions) (*BiEncoder, error) {
	if o.W == nil {
		o.W = io.Discard
	}
	src, err := ResolveEncoderSource(spec, o.Tokenizer)
	if err != nil {
		return nil, err
	}
	var psrc *EncoderSource
	if o.Passage != "" {
		if psrc, err = ResolveEncoderSource(o.Passage, ""); err != nil {
			return nil, err
		}
	}
	if src.Tokenizer == "" {
		return nil, fmt.Errorf("ir: %s: no tokenizer found; set one", spec)
	}
	isDPR := strings.HasPrefix(src.Kind, "DPR")
	if isDPR && psrc == nil {
		return nil, fmt.Errorf("ir: %s is a %s: give the other DPR encoder as the passage source", spec, src.Kind)
	}
	if src.Bert.HiddenSize == 0 {
		return nil, fmt.Errorf("ir: %s: a bare weight file gives no sizes; open a folder or run with a config", spec)
	}
	tok, err := mlm.LoadTokenizer(src.Tokenizer)
	if err != nil {
		return nil, err
	}
	cfg := BiEncoderConfig{Bert: src.BertFor(tok), Shared: src.Towers == 1 && psrc == nil, Pooling: src.Pooling, Similarity: src.Similarity}
	if src.Run != nil {
		cfg.Shared, cfg.QueryMaxLen, cfg.PassageMaxLen = src.Run.Shared, src.Run.QueryMaxLen, src.Run.PassageMaxLen
	}
	if cfg.Shared && psrc != nil {
		// One BERT serves both sides: the passage source would load into
		// it and overwrite the query tower.
		return nil, fmt.Errorf("ir: %s (%s) has one shared encoder for queries and passages: it takes no passage source (%s)", spec, src.Kind, o.Passage)
	}
	if cfg.Pooling == "" {
		cfg.Pooling = PoolCLS
	}
	if cfg.Similarity == "" {
		cfg.Similarity = SimDot
	}
	pick := func(given, run, st, def int) int {
		switch {
		case given > 0:
			return given
		case run > 0:
			return run
		case st > 0:
			return st
		}
		return def
	}
	cfg.QueryMaxLen = min(pick(o.QueryMaxLen, cfg.QueryMaxLen, src.MaxLen, DefaultQueryMaxLen), int(cfg.Bert.MaxPositionEmbeddings))
	cfg.PassageMaxLen = min(pick(o.PassageMaxLen, cfg.PassageMaxLen, src.MaxLen, DefaultPassageMaxLen), int(cfg.Bert.MaxPositionEmbeddings))
	if psrc != nil {
		if pb := psrc.BertFor(tok); pb != cfg.Bert {
			return nil, fmt.Errorf("ir: %s and %s are BERTs of different sizes", spec, o.Passage)
		}
	}
	if o.Device.Name == "" {
		o.Device = gotch.CPU
	}
	store := torchmods.NewStore(o.Device)
	m, err := NewBiEncoder(store, cfg, tok, src.Tokenizer)
	if err != nil {
		store.Drop()
		return nil, err
	}
	m.owned = true
	sides := BothSides
	if psrc != nil {
		sides = QuerySide
	}
	err = m.LoadSource(src, sides, o.W)
	if err == nil && psrc != nil {
		err = m.LoadSource(psrc, PassageSide, o.W)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// DenseRetrieverOptions configure a DenseRetriever.
type DenseRetrieverOptions struct {
	// Batch is the queries per encoder pass (0: 64).
	Batch int
	// ChunkRows is the documents per matrix product (0: DefaultChunkRows).
	ChunkRows int
	// MaxResidentBytes bounds the index kept on the encoder's device
	// between calls (0: DefaultMaxResidentBytes; < 0: never). A larger
	// index is read from its memory map for every call: exact all the
	// same, slower.
	MaxResidentBytes int64
}

// DefaultMaxResidentBytes is the largest index a DenseRetriever keeps on
// its device by default: MS MARCO's 8.8M passages at 768 floats (27 GB)
// are streamed, the WordNet benchmark's 117,659 at 128 (60 MB) are not.
const DefaultMaxResidentBytes = 4 << 30

// DenseRetriever is the dense first stage: it encodes a batch of queries
// with the query tower and searches a flat index exactly, on the encoder's
// device. It implements Retriever, so the search service and Hybrid use it
// as they use BM25.
type DenseRetriever struct {
	enc      *DenseEncoder
	ix       *DenseIndex
	o        DenseRetrieverOptions
	mu       sync.RWMutex
	resident []*ts.Tensor
	closed   bool
}

var _ Retriever = (*DenseRetriever)(nil)

// NewDenseRetriever searches ix with queries encoded by enc (a
// bi-encoder's Query tower). The index must have been made for the same
// similarity and size of vector.
func NewDenseRetriever(enc *DenseEncoder, ix *DenseIndex, o DenseRetrieverOptions) (*DenseRetriever, error) {
	if enc == nil || ix == nil {
		return nil, errors.New("ir: a dense retriever needs a query encoder and an index")
	}
	if enc.Dim() != ix.Dim() {
		return nil, fmt.Errorf("ir: the query encoder makes %d-float vectors, the index %s holds %d", enc.Dim(), ix.Path(), ix.Dim())
	}
	if enc.Similarity() != ix.Similarity() {
		return nil, fmt.Errorf("ir: the query encoder is for %s similarity, the index %s for %s", enc.Similarity(), ix.Path(), ix.Similarity())
	}
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.ChunkRows <= 0 {
		o.ChunkRows = DefaultChunkRows
	}
	if o.MaxResidentBytes == 0 {
		o.MaxResidentBytes = DefaultMaxResidentBytes
	}
	r := &DenseRetriever{enc: enc, ix: ix, o: o}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return nil, fmt.Errorf("ir: dense index %s is closed", ix.Path())
	}
	if size := int64(ix.Len()) * int64(ix.Dim()) * 4; o.MaxResidentBytes > 0 && size <= o.MaxResidentBytes && ix.Len() > 0 {
		res, err := ix.residentChunks(enc.Device, o.ChunkRows)
		if err != nil {
			return nil, err
		}
		r.resident = res
	}
	return r, nil
}

// Retrieve encodes the queries and returns each one's top k documents,
// best first in trec_eval's order.
func (r *DenseRetriever) Retrieve(ctx context.Context, queries []string, k int) ([][]Result, error) {
	if k < 1 {
		return nil, fmt.Errorf("ir: search k = %d, want >= 1", k)
	}
	if len(queries) == 0 {
		return [][]Result{}, nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil, errors.New("ir: dense retriever is closed")
	}
	vecs, err := r.enc.EncodeContext(ctx, queries, r.o.Batch)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.ix.mu.RLock()
	defer r.ix.mu.RUnlock()
	return r.ix.searchContext(ctx, vecs, k, r.enc.Device, r.o.ChunkRows, r.resident)
}

// Close frees the index's copy on the device (not the index or the
// encoder, which the caller owns), after the searches in progress.
func (r *DenseRetriever) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.resident {
		t.MustDrop()
	}
	r.resident, r.closed = nil, true
	return nil
}
