package textclf

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
)

// Model is a BERT with its tokenizer: an encoder only, or a sequence
// classifier (HF's BertForSequenceClassification: pooler, dropout and a
// linear head, one output for a regression). text.classify trains one; a
// Go program opens one to embed or classify text.
//
// Its methods that return Go values (Embed, Predict) run each call in its
// own tensor scope with gradients off and only read the parameters, so a
// Model may serve several goroutines at once, as long as nothing trains
// it meanwhile.
type Model struct {
	Bert       *torchmods.Bert
	Classifier *torchmods.Linear // nil for an encoder only
	Tok        *mlm.Tokenizer
	TokPath    string   // the tokenizer's file (tokenizer.json or vocab.txt)
	Labels     []string // class names by class id; nil for a regression or an encoder
	Regression bool
	MaxLen     int // tokens per example, [CLS] and [SEP] included
	Store      *torchmods.Store
	// Source is the weight file the model was loaded from, for messages.
	Source string
	owned  bool // Close drops the store
}

// OpenOptions say how Open builds a model.
type OpenOptions struct {
	// Tokenizer overrides the one found beside the weights.
	Tokenizer string
	// Weights overrides the weight file found from spec: a checkpoint
	// folder of a run, say, rather than its newest.
	Weights string
	// Labels, when set, adds a new classification head with these classes
	// (to fine-tune from an encoder); Regression a new one-output head.
	// Otherwise a fine-tuned classifier (a text.classify run, a HF folder
	// whose config.json names BertForSequenceClassification) keeps its
	// own head and labels, and anything else opens as an encoder.
	Labels     []string
	Regression bool
	// MaxLen bounds the tokens per example; 0 takes a text.classify run's
	// max_len, else 128; never more than max_position_embeddings.
	MaxLen int
	Device gotch.Device
	// Store, if set, receives the model's parameters (a training
	// session's, so that its checkpoints hold them) and Close leaves it to
	// its owner; nil makes a store of the model's own.
	Store *torchmods.Store
	// W receives the load report; nil discards it.
	W io.Writer
}

// Open loads a BERT-family model from a HF folder, hf:ORG/NAME, or a repro
// run (text.classify, or mlm.pretrain and other runs whose config.toml has
// a BERT [model]), with its tokenizer, for inference. Close frees it.
func Open(spec string, o OpenOptions) (*Model, error) {
	if o.W == nil {
		o.W = io.Discard
	}
	src, err := resolveSource(spec, o.Tokenizer, torchmods.BertConfig{})
	if err != nil {
		return nil, err
	}
	if o.Weights != "" {
		if src.weights, err = torchmods.ResolveWeights(o.Weights); err != nil {
			return nil, err
		}
	}
	tok, err := mlm.LoadTokenizer(src.tokenizer)
	if err != nil {
		return nil, err
	}
	labels, regression := src.labels, src.regression
	head := src.head
	if o.Labels != nil || o.Regression {
		labels, regression, head = o.Labels, o.Regression, true
	}
	if o.Device.Name == "" {
		o.Device = gotch.CPU
	}
	store, owned := o.Store, o.Store == nil
	if owned {
		store = torchmods.NewStore(o.Device)
	}
	drop := func() {
		if owned {
			store.Drop()
		}
	}
	m, err := build(store, src, tok, labels, regression, head)
	if err != nil {
		drop()
		return nil, err
	}
	m.owned = owned
	m.MaxLen = o.MaxLen
	if m.MaxLen == 0 {
		m.MaxLen = 128
		var rc runConfig
		if _, err := toml.DecodeFile(filepath.Join(spec, "config.toml"), &rc); err == nil && rc.MaxLen > 0 {
			m.MaxLen = rc.MaxLen // what the run trained with
		}
	}
	m.MaxLen = min(m.MaxLen, int(m.Bert.Cfg.MaxPositionEmbeddings))
	if err := m.load(src, head && !src.head, o.W); err != nil {
		drop()
		return nil, err
	}
	return m, nil
}

// Close frees the parameters of a model Open made.
func (m *Model) Close() {
	if m.owned {
		m.Store.Drop()
	}
}

// source is what a pretrained spec resolved to: the weight file, the
// BERT's sizes, the tokenizer and, for a fine-tuned classifier, its head.
type source struct {
	spec       string
	weights    string // "" to train from scratch
	bert       torchmods.BertConfig
	tokenizer  string
	head       bool     // the weights include a classifier
	labels     []string // its classes, nil for a regression
	regression bool
	run        bool   // sizes from a repro run's config.toml
	kind       string // for messages
}

// runConfig is the part of a repro run's config.toml that describes a
// BERT: the [model] table and the tokenizer its data used (and, for a
// text.classify run, its max_len).
type runConfig struct {
	Task   string               `toml:"task"`
	MaxLen int                  `toml:"max_len"` // a text.classify run's
	Model  torchmods.BertConfig `toml:"model"`
	Data   struct {
		Vocab string `toml:"vocab"`
	} `toml:"data"`
}

// resolveSource finds the weights, sizes and tokenizer behind spec (see
// Config.Pretrained); model is the config's [model] table, used only when
// the weights carry no config of their own.
func resolveSource(spec, tokenizer string, model torchmods.BertConfig) (*source, error) {
	src := &source{spec: spec, tokenizer: tokenizer, bert: model, kind: "from scratch"}
	if spec == "" {
		if src.tokenizer == "" {
			return nil, fmt.Errorf("tokenizer: training from scratch needs a tokenizer (a tokenizer.json or vocab.txt)")
		}
		return src, nil
	}
	ws, err := torchmods.Resolve(spec)
	if err != nil {
		return nil, err
	}
	src.weights, src.kind = ws.File, ws.Kind
	isDir := false
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		isDir = true
	}
	hfConfig := ws.Config
	if hfConfig == "" && isDir && exists(filepath.Join(spec, "config.json")) {
		hfConfig = filepath.Join(spec, "config.json") // a text.classify run: config.json at its root, weights in checkpoints/
	}
	hasModel := model != (torchmods.BertConfig{})
	switch {
	case hfConfig != "":
		if hasModel {
			return nil, fmt.Errorf("model: %s gives the model's sizes; remove [model] (it is for weights without a config)", hfConfig)
		}
		cfg, err := torchmods.ReadHFConfig(hfConfig)
		if err != nil {
			return nil, err
		}
		if cfg.ModelType != "" && cfg.ModelType != torchmods.BertFamily.ModelType {
			return nil, fmt.Errorf("%s: model_type %q: text.classify builds BERT (model_type \"bert\")", hfConfig, cfg.ModelType)
		}
		if src.bert, err = torchmods.BertConfigFromHF(cfg); err != nil {
			return nil, err
		}
		if err := headFromHF(cfg, src); err != nil {
			return nil, err
		}
		if src.tokenizer == "" {
			src.tokenizer, err = torchmods.FindTokenizer(spec, filepath.Dir(hfConfig))
			if err != nil {
				return nil, err
			}
		}
	case isDir && exists(filepath.Join(spec, "config.toml")):
		var rc runConfig
		if _, err := toml.DecodeFile(filepath.Join(spec, "config.toml"), &rc); err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		if rc.Model.HiddenSize == 0 {
			return nil, fmt.Errorf("%s: its config.toml (task %q) has no BERT [model] table", spec, rc.Task)
		}
		if hasModel {
			return nil, fmt.Errorf("model: %s/config.toml gives the model's sizes; remove [model]", spec)
		}
		src.bert, src.kind, src.run = rc.Model, fmt.Sprintf("repro run (%s)", rc.Task), true
		if src.tokenizer == "" {
			if rc.Data.Vocab == "" {
				return nil, fmt.Errorf("%s: its config.toml names no data.vocab; set tokenizer", spec)
			}
			if !exists(rc.Data.Vocab) {
				return nil, fmt.Errorf("%s: its tokenizer %s (data.vocab) is not there, relative to this directory; set tokenizer", spec, rc.Data.Vocab)
			}
			src.tokenizer = rc.Data.Vocab
		}
	default:
		if !hasModel {
			return nil, fmt.Errorf("%s: weights without a config.json or run config.toml: set [model] to the BERT's sizes", spec)
		}
		if src.tokenizer == "" {
			return nil, fmt.Errorf("%s: weights without a tokenizer beside them: set tokenizer", spec)
		}
	}
	return src, nil
}

// headFromHF reads a fine-tuned classifier's head from config.json: a
// BertForSequenceClassification has id2label (one entry for a
// regression, with problem_type "regression").
func headFromHF(cfg *torchmods.HFConfig, src *source) error {
	isClassifier := false
	for _, a := range cfg.Architectures {
		isClassifier = isClassifier || a == "BertForSequenceClassification"
	}
	if !isClassifier {
		return nil
	}
	src.head = true
	pt, err := cfg.String("problem_type", "")
	if err != nil {
		return err
	}
	raw, _ := cfg.Raw("id2label")
	m, _ := raw.(map[string]any)
	if pt == "regression" {
		src.regression = true
		return nil
	}
	if len(m) == 0 {
		return fmt.Errorf("%s: a BertForSequenceClassification without id2label", cfg.Path)
	}
	src.labels = make([]string, len(m))
	for k, v := range m {
		i, err := strconv.Atoi(k)
		s, ok := v.(string)
		if err != nil || i < 0 || i >= len(m) || !ok {
			return fmt.Errorf("%s: id2label: entry %q: %v is not a class name at an id below %d", cfg.Path, k, v, len(m))
		}
		src.labels[i] = s
	}
	if len(src.labels) == 1 { // HF's single-output head without problem_type: a regression
		src.labels, src.regression = nil, true
	}
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// build registers the model in store: as HF's BertForSequenceClassification
// with a head, else the encoder alone, both under HF's names. The
// vocabulary size defaults to the tokenizer's and pad_token_id to its
// [PAD], as mlm's tasks do.
func build(store *torchmods.Store, src *source, tok *mlm.Tokenizer, labels []string, regression, head bool) (*Model, error) {
	c := src.bert
	if c.VocabSize == 0 {
		c.VocabSize = tok.Size
	}
	if src.weights == "" || src.run {
		c.PadTokenID = tok.PAD // a HF config.json says its own; mlm's runs take the tokenizer's
	}
	if c.VocabSize < tok.Size {
		return nil, fmt.Errorf("the model's vocabulary of %d is smaller than the tokenizer's %d tokens", c.VocabSize, tok.Size)
	}
	m := &Model{Tok: tok, TokPath: src.tokenizer, Labels: labels, Regression: regression, Store: store, Source: src.weights}
	err := torchmods.Try(func() {
		if head {
			classes := int64(len(labels))
			if regression {
				classes = 1
			}
			if classes < 1 {
				panic(fmt.Errorf("a classification head needs labels"))
			}
			sc := torchmods.NewBertForSequenceClassification(store.Root(), c, classes)
			m.Bert, m.Classifier = sc.Bert, sc.Classifier
		} else {
			m.Bert = torchmods.NewBert(store.Root().Sub("bert"), c, false)
		}
	})
	return m, err
}

// load reads the source's weights into the model through BERT's HF names.
// newHead allows the pooler and classifier to be missing (they keep their
// initialisation, as from_pretrained does for a new task head); anything
// else missing, or a shape mismatch, is an error.
func (m *Model) load(src *source, newHead bool, w io.Writer) error {
	if src.weights == "" {
		return nil
	}
	o := torchmods.LoadOptions{}
	if newHead {
		o.NewParams = []string{"classifier.", "bert.pooler."}
	}
	_, err := torchmods.BertFamily.LoadHFWeights(m.Store, src.weights, o, w)
	return err
}

// Batch is examples tokenised and padded to the longest, in Go memory:
// row-major [N, L] token ids, token types and attention mask.
type Batch struct {
	IDs, Types, Mask []int64
	N, L             int
}

// Tensors makes the batch's tensors on dev.
func (b *Batch) Tensors(dev gotch.Device) (ids, types, mask *ts.Tensor) {
	shape := []int64{int64(b.N), int64(b.L)}
	return torchmods.FromSlice(b.IDs, shape, dev), torchmods.FromSlice(b.Types, shape, dev), torchmods.FromSlice(b.Mask, shape, dev)
}

// Encoded is one example's tokens: [CLS] text [SEP] (pair [SEP]), with
// token types 0 for the first segment and 1 for the second.
type Encoded struct {
	IDs, Types []int64
}

// Encode tokenises one example, truncated to the model's MaxLen.
func (m *Model) Encode(e Example, pair bool) (Encoded, error) {
	return EncodeExample(m.Tok, e, pair, m.MaxLen)
}

// EncodeExample tokenises an example as BERT's tokenizer does with
// truncation to maxLen tokens: a single text is [CLS] tokens [SEP], cut
// to maxLen-2 tokens; a pair is [CLS] a [SEP] b [SEP] with the longer of
// a and b shortened one token at a time (HF's "longest_first", the second
// text on a tie), token types 0 then 1.
func EncodeExample(tok *mlm.Tokenizer, e Example, pair bool, maxLen int) (Encoded, error) {
	a, err := tokens(tok, e.Text)
	if err != nil {
		return Encoded{}, err
	}
	if !pair {
		a = a[:min(len(a), max(maxLen-2, 0))]
		out := Encoded{IDs: make([]int64, 0, len(a)+2), Types: make([]int64, len(a)+2)}
		out.IDs = append(append(append(out.IDs, tok.CLS), a...), tok.SEP)
		return out, nil
	}
	b, err := tokens(tok, e.Pair)
	if err != nil {
		return Encoded{}, err
	}
	for len(a)+len(b) > maxLen-3 && len(a)+len(b) > 0 {
		if len(a) > len(b) {
			a = a[:len(a)-1]
		} else {
			b = b[:len(b)-1]
		}
	}
	out := Encoded{}
	out.IDs = append(append(append(append(append(out.IDs, tok.CLS), a...), tok.SEP), b...), tok.SEP)
	out.Types = make([]int64, len(out.IDs))
	for i := len(a) + 2; i < len(out.IDs); i++ {
		out.Types[i] = 1
	}
	return out, nil
}

// tokens are text's token ids without the [CLS] and [SEP] the tokenizer
// adds.
func tokens(tok *mlm.Tokenizer, text string) ([]int64, error) {
	e, err := tok.Encode(text, math.MaxInt32)
	if err != nil {
		return nil, fmt.Errorf("tokenizing %q: %w", text, err)
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

// Pad makes a batch of encoded examples, padded to the longest with [PAD]
// (mask 0, type 0): run_glue.py's padding per batch.
func Pad(enc []Encoded, pad int64) *Batch {
	b := &Batch{N: len(enc)}
	for _, e := range enc {
		b.L = max(b.L, len(e.IDs))
	}
	b.IDs, b.Types, b.Mask = make([]int64, b.N*b.L), make([]int64, b.N*b.L), make([]int64, b.N*b.L)
	for i, e := range enc {
		for j := range b.L {
			k := i*b.L + j
			b.IDs[k] = pad
			if j < len(e.IDs) {
				b.IDs[k], b.Types[k], b.Mask[k] = e.IDs[j], e.Types[j], 1
			}
		}
	}
	return b
}

// Batch tokenises and pads examples (pairs when any has a Pair).
func (m *Model) Batch(ex []Example) (*Batch, error) {
	pair := false
	for _, e := range ex {
		pair = pair || e.Pair != ""
	}
	enc := make([]Encoded, len(ex))
	for i, e := range ex {
		var err error
		if enc[i], err = m.Encode(e, pair); err != nil {
			return nil, err
		}
	}
	return Pad(enc, m.Tok.PAD), nil
}

// Hidden runs the encoder: hidden states [B, L, H].
func (m *Model) Hidden(ids, types, mask *ts.Tensor, train bool) *ts.Tensor {
	return m.Bert.Forward(ids, types, mask, train)
}

// Forward is the classifier's logits [B, classes] (or [B, 1] for a
// regression), as BertForSequenceClassification: the pooled [CLS] state,
// dropout, the linear head.
func (m *Model) Forward(ids, types, mask *ts.Tensor, train bool) *ts.Tensor {
	if m.Classifier == nil {
		panic(fmt.Errorf("textclf: the model has no classification head (opened as an encoder)"))
	}
	pooled := m.Bert.Pool(m.Bert.Forward(ids, types, mask, train))
	return m.Classifier.Forward(torchmods.Dropout(pooled, m.Bert.Cfg.HiddenDropout, train))
}

// MeanPool averages hidden states [B, L, H] over the real tokens of mask
// [B, L] (sentence-transformers' mean pooling): a sentence embedding [B, H].
func MeanPool(hidden, mask *ts.Tensor) *ts.Tensor {
	m := mask.MustUnsqueeze(-1, false).MustTotype(hidden.DType(), true)
	sum := hidden.MustMul(m, false).MustSumDimIntlist([]int64{1}, false, hidden.DType(), true)
	n := m.MustSumDimIntlist([]int64{1}, false, hidden.DType(), true).MustClampMin(ts.FloatScalar(1e-9), true)
	return sum.MustDiv(n, true)
}

// Embed returns a sentence embedding per text: the mean of the encoder's
// last hidden states over the text's tokens. Each call runs in its own
// scope with gradients off, so goroutines may call it at once.
func (m *Model) Embed(texts []string) ([][]float32, error) {
	ex := make([]Example, len(texts))
	for i, t := range texts {
		ex[i].Text = t
	}
	b, err := m.Batch(ex)
	if err != nil {
		return nil, err
	}
	var flat []float32
	err = torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			ids, types, mask := b.Tensors(m.Store.Device)
			e := MeanPool(m.Hidden(ids, types, mask, false), mask)
			for _, v := range e.MustTo(gotch.CPU, false).Float64Values() {
				flat = append(flat, float32(v))
			}
		})
	})
	if err != nil {
		return nil, err
	}
	h := int(m.Bert.Cfg.HiddenSize)
	out := make([][]float32, len(texts))
	for i := range out {
		out[i] = flat[i*h : (i+1)*h]
	}
	return out, nil
}

// Prediction is one example's prediction: the class and its label with
// every class's probability, or a regression's value.
type Prediction struct {
	Class int       `json:"class"`
	Label string    `json:"label,omitempty"`
	Probs []float64 `json:"probs,omitempty"`
	Value float64   `json:"value"` // a regression's output; for a classifier the top probability
}

// Predict classifies (or scores) examples. Each call runs in its own scope
// with gradients off, so goroutines may call it at once.
func (m *Model) Predict(ex []Example) ([]Prediction, error) {
	b, err := m.Batch(ex)
	if err != nil {
		return nil, err
	}
	var logits []float64
	var classes int
	err = torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			ids, types, mask := b.Tensors(m.Store.Device)
			out := m.Forward(ids, types, mask, false)
			classes = int(out.MustSize()[1])
			if !m.Regression {
				out = out.MustSoftmax(-1, gotch.Double, false)
			}
			logits = out.MustTo(gotch.CPU, false).MustTotype(gotch.Double, true).Float64Values()
		})
	})
	if err != nil {
		return nil, err
	}
	return m.predictions(logits, classes, len(ex)), nil
}

// predictions turns rows of probabilities (or values) into Predictions.
func (m *Model) predictions(out []float64, classes, n int) []Prediction {
	preds := make([]Prediction, n)
	for i := range preds {
		row := out[i*classes : (i+1)*classes]
		if m.Regression {
			preds[i] = Prediction{Value: row[0]}
			continue
		}
		best := 0
		for k := range row {
			if row[k] > row[best] {
				best = k
			}
		}
		preds[i] = Prediction{Class: best, Probs: row, Value: row[best]}
		if best < len(m.Labels) {
			preds[i].Label = m.Labels[best]
		}
	}
	return preds
}

// sortedLabels are the distinct labels of examples, sorted (run_glue.py's
// label_list for a dataset without declared labels).
func sortedLabels(ex []Example) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range ex {
		if !seen[e.Label] {
			seen[e.Label] = true
			out = append(out, e.Label)
		}
	}
	sort.Strings(out)
	return out
}
