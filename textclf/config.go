package textclf

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Config is the "text.classify" task's config: fine-tuning a BERT-family
// checkpoint to classify (or score) single texts or pairs, with the recipe
// of HF's run_glue.py.
type Config struct {
	train.Base
	// Pretrained is the checkpoint to start from: a HF folder (config.json
	// beside the weights), hf:ORG/NAME[@REV], a repro run whose config.toml
	// has a BERT [model] (mlm.pretrain, mlm.finetune, text.classify), or a
	// weight file with [model] set; "" trains from scratch ([model] set).
	Pretrained string `toml:"pretrained"`
	// Tokenizer is a HF tokenizer.json or a vocab.txt; "" takes the one
	// beside the weights (a HF folder's tokenizer.json or vocab.txt, a
	// repro run's data.vocab).
	Tokenizer string `toml:"tokenizer"`
	// Model is the BERT's sizes, for weights that carry none (a bare
	// weight file, or none at all); leave it out otherwise: the sizes come
	// from the checkpoint's own config.
	Model torchmods.BertConfig `toml:"model"`
	// Problem is "classification" or "regression" (one output, mean
	// squared error, as HF's problem_type regression); "" is the GLUE
	// task's, else classification.
	Problem string `toml:"problem"`
	// Labels are the class names in class-id order; empty takes the GLUE
	// task's, else the training labels sorted, as run_glue.py does.
	Labels []string `toml:"labels"`
	// Metrics to report; empty takes the GLUE task's, else accuracy
	// (classification) or pearson and spearman (regression).
	Metrics []string `toml:"metrics"`
	// MaxLen is the most tokens per example, [CLS] and [SEP] included
	// (run_glue.py's max_seq_length); longer ones are truncated, a pair
	// longest text first. Batches are padded to their longest example.
	MaxLen int         `toml:"max_len"`
	Optim  OptimConfig `toml:"optim"`
	Data   DataConfig  `toml:"data"`
}

// OptimConfig is run_glue.py's optimisation (HF Trainer's defaults):
// AdamW without weight decay on biases and LayerNorm weights, linear
// warm-up then linear decay to 0, gradient clipping.
type OptimConfig struct {
	LR          float64    `toml:"lr"`           // peak learning rate (Trainer's default 5e-5)
	Warmup      int64      `toml:"warmup"`       // warm-up steps (warmup_steps)
	WarmupRatio float64    `toml:"warmup_ratio"` // or warm-up as a share of all steps (warmup_ratio); set one of the two
	WeightDecay float64    `toml:"weight_decay"` // decoupled weight decay (0)
	Clip        float64    `toml:"clip"`         // global gradient norm (max_grad_norm 1.0); 0 for none
	Betas       [2]float64 `toml:"betas"`        // (0.9, 0.999)
	Eps         float64    `toml:"eps"`          // 1e-8
}

// DataConfig names the files and their columns.
type DataConfig struct {
	// GLUE names a GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli,
	// rte, wnli): its files' columns, labels and metrics as GLUE defines
	// them. With Dir (the task's folder of glue_data) the files follow.
	GLUE string `toml:"glue"`
	Dir  string `toml:"dir"`
	// Train is the training file; Eval the files evaluated during and
	// after training (metrics are named by file: a dev.tsv's accuracy is
	// dev_accuracy); Predict files are predicted at the end, labels or
	// not. Paths are relative to Dir when it is set.
	Train   string   `toml:"train"`
	Eval    []string `toml:"eval"`
	Predict []string `toml:"predict"`
	// Format is csv, tsv or jsonl ("" from each file's extension).
	Format   string `toml:"format"`
	NoHeader bool   `toml:"no_header"` // csv/tsv files without a header line (columns are then indices)
	// Text, Pair and Label are the columns: header names or 0-based
	// indices (jsonl: keys). Pair is "" for single texts.
	Text  string `toml:"text"`
	Pair  string `toml:"pair"`
	Label string `toml:"label"`
	// SkipBadRows skips rows with missing columns or labels (counted and
	// reported) instead of refusing the file.
	SkipBadRows bool `toml:"skip_bad_rows"`
	Batch       int  `toml:"batch"`      // examples per micro-batch (per_device_train_batch_size)
	EvalBatch   int  `toml:"eval_batch"` // examples per evaluation batch
}

// Default is run_glue.py's defaults: lr 5e-5, no warm-up or weight decay,
// clipping at 1.0, batch 8, max length 128, 3 epochs.
func Default() *Config {
	t := train.DefaultTrainer()
	t.Epochs = 3
	return &Config{Base: train.Base{Task: "text.classify", Trainer: t}, MaxLen: 128,
		Optim: OptimConfig{LR: 5e-5, Clip: 1, Betas: [2]float64{0.9, 0.999}, Eps: 1e-8},
		Data:  DataConfig{Text: "sentence", Label: "label", Batch: 8, EvalBatch: 64}}
}

// Validate checks the task's keys, naming them; files are read at the
// start of a run, not here, so `repro config check` works anywhere.
func (c *Config) Validate() error {
	var g *GLUETask
	if c.Data.GLUE != "" {
		var ok bool
		if g, ok = GLUE(c.Data.GLUE); !ok {
			return config.Field("data.glue", "unknown GLUE task %q; one of %s", c.Data.GLUE, strings.Join(GLUENames(), ", "))
		}
	}
	switch c.Problem {
	case "", "classification", "regression":
	default:
		return config.Field("problem", `must be "classification" or "regression", got %q`, c.Problem)
	}
	if g != nil && c.Problem != "" && (c.Problem == "regression") != g.Regression() {
		return config.Field("problem", "GLUE's %s is %s", g.Name, map[bool]string{true: "regression", false: "classification"}[g.Regression()])
	}
	regression := c.Problem == "regression" || (c.Problem == "" && g != nil && g.Regression())
	if regression && len(c.Labels) > 0 {
		return config.Field("labels", "a regression has no labels")
	}
	seen := map[string]bool{}
	for _, l := range c.Labels {
		if seen[l] || l == "" {
			return config.Field("labels", "labels must be distinct and not empty, got %q", c.Labels)
		}
		seen[l] = true
	}
	if len(c.Labels) == 1 {
		return config.Field("labels", "a classification needs at least 2 labels")
	}
	for _, m := range c.Metrics {
		if regression && !regressionMetrics[m] || !regression && !classMetrics[m] {
			kind := "classification: accuracy, f1, f1_macro, matthews"
			if regression {
				kind = "regression: pearson, spearman"
			}
			return config.Field("metrics", "%q is not a metric of a %s", m, kind)
		}
	}
	if c.MaxLen < 3 {
		return config.Field("max_len", "must be at least 3 ([CLS] a token [SEP]), got %d", c.MaxLen)
	}
	if c.Pretrained == "" || c.Model != (torchmods.BertConfig{}) {
		m := c.Model
		if m.VocabSize == 0 {
			m.VocabSize = 1000 // the tokenizer's, known at run time
		}
		if err := m.Validate(); err != nil {
			return config.Field("model", "%v (training from scratch, or from a bare weight file, needs [model])", err)
		}
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	return c.Data.validate(g)
}

func (o OptimConfig) validate() error {
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
	case o.Betas[0] < 0 || o.Betas[0] >= 1 || o.Betas[1] < 0 || o.Betas[1] >= 1:
		return config.Field("optim.betas", "must be in [0, 1), got %v", o.Betas)
	case !(o.Eps > 0):
		return config.Field("optim.eps", "must be positive, got %v", o.Eps)
	}
	return nil
}

func (d DataConfig) validate(g *GLUETask) error {
	switch {
	case d.Train == "" && (g == nil || d.Dir == ""):
		return config.Field("data.train", "must name the training file (or set data.glue and data.dir)")
	case d.Format != "" && !slices.Contains([]string{"csv", "tsv", "jsonl"}, d.Format):
		return config.Field("data.format", `must be "csv", "tsv" or "jsonl" ("" from the extension), got %q`, d.Format)
	case g == nil && d.Text == "":
		return config.Field("data.text", "must name the text's column")
	case d.Batch < 1 || d.EvalBatch < 1:
		return config.Field("data.batch", "batch and eval_batch must be positive")
	}
	names := map[string]bool{}
	for _, f := range d.Eval {
		n := FileKey(f)
		if names[n] {
			return config.Field("data.eval", "two evaluation files named %q: metrics are named by file", n)
		}
		names[n] = true
	}
	return nil
}

// FileKey is the name a data file's metrics and predictions go by: its
// base name without extension ("dev" for glue_data/MRPC/dev.tsv).
func FileKey(path string) string {
	b := filepath.Base(path)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// plan is a config resolved against its GLUE task: files, layouts, the
// problem, the metrics.
type plan struct {
	glue          *GLUETask
	train         string
	eval, predict []string
	layout, test  Layout
	regression    bool
	metrics       []string
	fixedLabels   []string // the config's or GLUE's labels; nil to take the training set's
}

// resolve applies the GLUE task's defaults and Dir to the config.
func (c *Config) resolve() (*plan, error) {
	p := &plan{fixedLabels: c.Labels, metrics: c.Metrics, regression: c.Problem == "regression"}
	d := c.Data
	p.layout = Layout{Format: d.Format, NoHeader: d.NoHeader, Text: d.Text, Pair: d.Pair, Label: d.Label, SkipBadRows: d.SkipBadRows}
	p.test = p.layout
	p.train, p.eval, p.predict = d.Train, d.Eval, d.Predict
	if d.GLUE != "" {
		g, _ := GLUE(d.GLUE)
		p.glue = g
		p.layout, p.test = g.Train, g.Test
		p.layout.SkipBadRows, p.test.SkipBadRows = d.SkipBadRows, d.SkipBadRows
		p.regression = g.Regression()
		if p.fixedLabels == nil {
			p.fixedLabels = g.Labels
		}
		if p.metrics == nil {
			p.metrics = g.Metrics
		}
		if d.Dir != "" {
			if p.train == "" {
				p.train = "train.tsv"
			}
			if p.eval == nil {
				p.eval = g.Eval
			}
			if p.predict == nil {
				p.predict = g.Predict
			}
		}
	}
	if p.metrics == nil {
		p.metrics = []string{MetricAccuracy}
		if p.regression {
			p.metrics = []string{MetricPearson, MetricSpearman}
		}
	}
	if d.Dir != "" {
		join := func(f string) string {
			if filepath.IsAbs(f) {
				return f
			}
			return filepath.Join(d.Dir, f)
		}
		p.train = join(p.train)
		p.eval = mapStrings(p.eval, join)
		p.predict = mapStrings(p.predict, join)
	}
	if p.train == "" {
		return nil, fmt.Errorf("data.train: no training file")
	}
	return p, nil
}

func mapStrings(s []string, f func(string) string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}

// DataPlan is what a config's data keys resolve to against its GLUE task:
// the files, their layouts, the fixed labels (nil to take the training
// set's, sorted), the metrics and whether the task is a regression. Tasks
// that fine-tune on text.classify's data formats (cap.prune) read their
// data through it.
type DataPlan struct {
	Train        string
	Eval         []string
	Layout, Test Layout // the training file's layout, the evaluation files'
	Labels       []string
	Metrics      []string
	Regression   bool
}

// DataPlan resolves the config's [data], labels, metrics and problem.
func (c *Config) DataPlan() (*DataPlan, error) {
	p, err := c.resolve()
	if err != nil {
		return nil, err
	}
	return &DataPlan{Train: p.train, Eval: p.eval, Layout: p.layout, Test: p.test, Labels: p.fixedLabels, Metrics: p.metrics, Regression: p.regression}, nil
}
