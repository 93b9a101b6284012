package textclf

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Task is "text.classify"; papers/papers.go registers it.
var Task = train.TaskSpec[*Config, *Result]{
	Name:    "text.classify",
	Doc:     "fine-tune a BERT-family checkpoint to classify or score texts and pairs (CSV, TSV, JSONL, GLUE), as HF's run_glue.py",
	Default: Default,
	Run:     Run,
	Eval:    Eval,
	Added:   torchmods.BertAddedKeys(nil),
}

// Result is what a run reports: each evaluation file's metrics, at the
// top level of results.json as "<file>_<metric>" (dev_accuracy,
// test_matthews), beside the run's facts.
type Result struct {
	Metrics     map[string]float64 `json:"-"`
	Labels      []string           `json:"labels,omitempty"`
	Train       int                `json:"train_examples"`
	Skipped     int                `json:"skipped_rows,omitempty"`
	Steps       int64              `json:"steps"`
	Seconds     float64            `json:"seconds"`
	Predictions []string           `json:"predictions"` // files written, relative to the run directory
}

// MarshalJSON puts the metrics beside the other fields, so `repro exp`
// and scripts read "dev_accuracy" as they read mlm.finetune's
// "test_accuracy".
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return train.JSONWithMetrics(plain(r), r.Metrics)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	if err := json.Unmarshal(b, (*plain)(r)); err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	r.Metrics = map[string]float64{}
	for k, v := range m {
		switch k {
		case "labels", "train_examples", "skipped_rows", "steps", "seconds", "predictions":
			continue
		}
		switch v := v.(type) {
		case float64:
			r.Metrics[k] = v
		case nil:
			r.Metrics[k] = math.NaN()
		}
	}
	return nil
}

// dataset is one file read and tokenised.
type dataset struct {
	key     string // the file's metric prefix
	path    string
	ex      []Example
	enc     []Encoded
	y       []int64   // class ids (classification)
	v       []float32 // targets (regression)
	labeled bool
}

// prepared is everything a run or an evaluation reads before the model.
type prepared struct {
	plan    *plan
	src     *source
	tok     *mlm.Tokenizer
	labels  []string
	pair    bool
	train   *dataset
	eval    []*dataset
	predict []*dataset
	skipped int
}

// prepare reads the files and tokenises them. The training file gives the
// labels when neither the config nor GLUE does; an evaluation label
// outside them is an error, since the model could never predict it.
func prepare(c *Config, w io.Writer) (*prepared, error) {
	p, err := c.resolve()
	if err != nil {
		return nil, err
	}
	src, err := resolveSource(c.Pretrained, c.Tokenizer, c.Model)
	if err != nil {
		return nil, err
	}
	tok, err := mlm.LoadTokenizer(src.tokenizer)
	if err != nil {
		return nil, err
	}
	pr := &prepared{plan: p, src: src, tok: tok, pair: p.layout.Pair != ""}
	trainEx, skipped, err := ReadExamples(p.train, p.layout, true)
	if err != nil {
		return nil, err
	}
	pr.skipped = skipped
	if !p.regression {
		pr.labels = p.fixedLabels
		if pr.labels == nil {
			pr.labels = sortedLabels(trainEx)
			if len(pr.labels) < 2 {
				return nil, fmt.Errorf("%s: one label (%q) in the training data: nothing to classify", p.train, pr.labels)
			}
		}
	}
	maxLen := min(c.MaxLen, int(src.maxPositions()))
	if maxLen < c.MaxLen {
		fmt.Fprintf(w, "max_len %d cut to the model's max_position_embeddings %d\n", c.MaxLen, maxLen)
	}
	if pr.train, err = pr.dataset(p.train, trainEx, true, maxLen); err != nil {
		return nil, err
	}
	for _, f := range p.eval {
		ex, n, err := ReadExamples(f, p.layout, true)
		if err != nil {
			return nil, err
		}
		pr.skipped += n
		d, err := pr.dataset(f, ex, true, maxLen)
		if err != nil {
			return nil, err
		}
		pr.eval = append(pr.eval, d)
	}
	for _, f := range p.predict {
		ex, n, err := ReadExamples(f, p.test, false)
		if err != nil {
			return nil, err
		}
		pr.skipped += n
		labeled := p.test.Label != ""
		for _, e := range ex {
			labeled = labeled && e.Label != ""
		}
		d, err := pr.dataset(f, ex, labeled, maxLen)
		if err != nil {
			return nil, err
		}
		pr.predict = append(pr.predict, d)
	}
	if pr.skipped > 0 {
		fmt.Fprintf(w, "skipped %d bad rows (data.skip_bad_rows)\n", pr.skipped)
	}
	return pr, nil
}

// maxPositions is the model's longest sequence.
func (s *source) maxPositions() int64 {
	if s.bert.MaxPositionEmbeddings > 0 {
		return s.bert.MaxPositionEmbeddings
	}
	return 512
}

// dataset tokenises examples and maps their labels to class ids (or
// values).
func (pr *prepared) dataset(path string, ex []Example, labeled bool, maxLen int) (*dataset, error) {
	d := &dataset{key: FileKey(path), path: path, ex: ex, labeled: labeled, enc: make([]Encoded, len(ex))}
	ids := map[string]int64{}
	for i, l := range pr.labels {
		ids[l] = int64(i)
	}
	if err := encodeAll(pr.tok, ex, pr.pair, maxLen, d.enc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, e := range ex {
		if !labeled {
			continue
		}
		if pr.plan.regression {
			v, err := strconv.ParseFloat(e.Label, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: example %d: label %q is not a number (a regression)", path, i+1, e.Label)
			}
			d.v = append(d.v, float32(v))
			continue
		}
		id, ok := ids[e.Label]
		if !ok {
			return nil, fmt.Errorf("%s: example %d: label %q is not one of %q", path, i+1, e.Label, pr.labels)
		}
		d.y = append(d.y, id)
	}
	return d, nil
}

// encodeAll tokenises examples into enc on every CPU: the tokenizer is
// safe for concurrent use, and a GLUE-sized file takes minutes on one core.
func encodeAll(tok *mlm.Tokenizer, ex []Example, pair bool, maxLen int, enc []Encoded) error {
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ex); i += workers {
				var err error
				if enc[i], err = EncodeExample(tok, ex[i], pair, maxLen); err != nil {
					errs[w] = fmt.Errorf("example %d: %w", i+1, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run fine-tunes the model: AdamW (no decay on biases and LayerNorms),
// linear warm-up and decay, gradient clipping, batches padded to their
// longest example, evaluation on each eval file; at the end the metrics,
// predictions for every eval and predict file, and the files `repro
// predict` and Open need (config.json and the tokenizer) in the run.
func Run(s *train.Session, c *Config) (*Result, error) {
	w := s.W
	pr, err := prepare(c, w)
	if err != nil {
		return nil, err
	}
	m, err := build(s.Store, pr.src, pr.tok, pr.labels, pr.plan.regression, true)
	if err != nil {
		return nil, err
	}
	m.MaxLen = min(c.MaxLen, int(m.Bert.Cfg.MaxPositionEmbeddings))
	if !s.Resuming() {
		if err := m.load(pr.src, true, w); err != nil {
			return nil, err
		}
		if err := m.WriteFiles(s.Out); err != nil {
			return nil, err
		}
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(pr.train.ex), Batch: c.Data.Batch, Shuffle: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) ([]int, error) { return b.Indices, nil })
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
		warmup = int64(math.Ceil(c.Optim.WarmupRatio * float64(steps))) // Trainer.get_warmup_steps
	}
	sched, err := train.WarmupSchedule(c.Optim.LR, min(warmup, steps), steps, "linear")
	if err != nil {
		return nil, err
	}
	opt := train.NewAdamW(s.Store, c.Optim.Betas[0], c.Optim.Betas[1], c.Optim.Eps, c.Optim.WeightDecay)
	fmt.Fprintf(w, "text.classify: %d training examples, %s, %d steps (%.2f epochs), weights %s (%s)\n",
		len(pr.train.ex), pr.describe(), steps, float64(steps)/float64(perEpoch), orNone(c.Pretrained), pr.src.kind)
	final := map[*dataset]*evaluation{}
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(int64, int) (*ts.Tensor, error) {
			idx, err := loader.Next()
			if err != nil {
				return nil, err
			}
			return m.loss(pr.train, idx, true), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(step int64) (map[string]float64, error) {
			out := map[string]float64{}
			for _, d := range pr.eval {
				r, err := m.evaluate(d, c.Data.EvalBatch, pr.plan.metrics)
				if err != nil {
					return nil, err
				}
				if step == steps-1 {
					final[d] = r
				}
				maps.Copy(out, r.metrics)
			}
			return out, nil
		},
	})
	if err != nil {
		return nil, err
	}
	res := &Result{Metrics: map[string]float64{}, Labels: pr.labels, Train: len(pr.train.ex), Skipped: pr.skipped, Steps: steps}
	for _, d := range append(slices.Clone(pr.eval), pr.predict...) {
		r := final[d] // evaluated by Train after the last step, unless the run had none left
		if r == nil {
			if r, err = m.evaluate(d, c.Data.EvalBatch, pr.plan.metrics); err != nil {
				return nil, err
			}
		}
		maps.Copy(res.Metrics, r.metrics)
		name := filepath.Join("predictions", d.key+".tsv")
		if err := m.writePredictions(filepath.Join(s.Out, name), r.preds); err != nil {
			return nil, err
		}
		res.Predictions = append(res.Predictions, name)
	}
	res.Seconds = s.Elapsed().Seconds()
	for _, k := range slices.Sorted(maps.Keys(res.Metrics)) {
		fmt.Fprintf(w, "%s %.4f\n", k, res.Metrics[k])
	}
	return res, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (pr *prepared) describe() string {
	if pr.plan.regression {
		return "regression"
	}
	return fmt.Sprintf("%d classes", len(pr.labels))
}

// batch pads the examples at idx of d and makes their tensors.
func (m *Model) batch(d *dataset, idx []int) (ids, types, mask *ts.Tensor) {
	enc := make([]Encoded, len(idx))
	for i, k := range idx {
		enc[i] = d.enc[k]
	}
	return Pad(enc, m.Tok.PAD).Tensors(m.Store.Device)
}

// loss is the mean loss of the examples at idx: cross-entropy, or for a
// regression the mean squared error of the single output (HF's
// problem_type "regression").
func (m *Model) loss(d *dataset, idx []int, train bool) *ts.Tensor {
	ids, types, mask := m.batch(d, idx)
	out := m.Forward(ids, types, mask, train)
	dev := m.Store.Device
	if m.Regression {
		v := make([]float32, len(idx))
		for i, k := range idx {
			v[i] = d.v[k]
		}
		diff := out.MustView([]int64{-1}, false).MustSub(torchmods.FromSlice(v, []int64{int64(len(v))}, dev), true)
		return diff.MustMul(diff, false).MustMean(gotch.Float, true)
	}
	y := make([]int64, len(idx))
	for i, k := range idx {
		y[i] = d.y[k]
	}
	return torchmods.CrossEntropy(out, torchmods.FromSlice(y, []int64{int64(len(y))}, dev), torchmods.CEOptions{})
}

// evaluation is a file's predictions and, when it has labels, metrics.
type evaluation struct {
	preds   []Prediction
	metrics map[string]float64
}

// evaluate predicts every example of d in batches of n and computes the
// metrics (prefixed by the file's key) and the mean loss when it has labels.
func (m *Model) evaluate(d *dataset, n int, metrics []string) (*evaluation, error) {
	var out []float64
	classes := 0
	var lossSum float64
	err := data.Sequential(len(d.ex), n, func(idx []int) error {
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				ids, types, mask := m.batch(d, idx)
				logits := m.Forward(ids, types, mask, false)
				classes = int(logits.MustSize()[1])
				if d.labeled {
					lossSum += m.loss(d, idx, false).Float64Values()[0] * float64(len(idx))
				}
				if !m.Regression {
					logits = logits.MustSoftmax(-1, gotch.Double, false)
				}
				out = append(out, logits.MustTo(gotch.CPU, false).MustTotype(gotch.Double, true).Float64Values()...)
			})
		})
	})
	if err != nil {
		return nil, err
	}
	ev := &evaluation{preds: m.predictions(out, classes, len(d.ex)), metrics: map[string]float64{}}
	if !d.labeled {
		return ev, nil
	}
	sc := Scores{Classes: len(m.Labels)}
	for i, p := range ev.preds {
		if m.Regression {
			sc.Value, sc.Target = append(sc.Value, p.Value), append(sc.Target, float64(d.v[i]))
		} else {
			sc.Pred, sc.Label = append(sc.Pred, p.Class), append(sc.Label, int(d.y[i]))
		}
	}
	r, err := sc.Compute(metrics)
	if err != nil {
		return nil, err
	}
	for k, v := range r {
		ev.metrics[d.key+"_"+k] = v
	}
	ev.metrics[d.key+"_loss"] = lossSum / float64(len(d.ex))
	return ev, nil
}

// writePredictions writes GLUE's submission format, as run_glue.py's
// predict_results file: a header "index\tprediction", then a row per
// example, the label's name or the value to 3 decimals.
func (m *Model) writePredictions(path string, preds []Prediction) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := WritePredictions(bw, preds, m.Regression); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// WritePredictions writes predictions as "index\tprediction" rows after
// that header (GLUE's submission format).
func WritePredictions(w io.Writer, preds []Prediction, regression bool) error {
	if _, err := fmt.Fprintln(w, "index\tprediction"); err != nil {
		return err
	}
	for i, p := range preds {
		v := p.Label
		if regression {
			v = fmt.Sprintf("%3.3f", p.Value)
		}
		if _, err := fmt.Fprintf(w, "%d\t%s\n", i, v); err != nil {
			return err
		}
	}
	return nil
}

// WriteFiles writes what makes a run directory loadable by Open and
// `repro predict` without the weights it started from: config.json (HF's
// BertForSequenceClassification config: sizes, id2label, problem_type,
// so transformers loads the checkpoint's model.safetensors beside it too)
// and a copy of the tokenizer.
func (m *Model) WriteFiles(dir string) error {
	cfg := m.Bert.Cfg.HFConfig()
	cfg["model_type"] = "bert"
	cfg["architectures"] = []string{"BertForSequenceClassification"}
	id2label, label2id := map[string]string{}, map[string]int{}
	if m.Regression {
		cfg["problem_type"] = "regression"
		cfg["num_labels"] = 1
		id2label["0"], label2id["LABEL_0"] = "LABEL_0", 0
	} else {
		cfg["problem_type"] = "single_label_classification"
		cfg["num_labels"] = len(m.Labels)
		for i, l := range m.Labels {
			id2label[strconv.Itoa(i)], label2id[l] = l, i
		}
	}
	cfg["id2label"], cfg["label2id"] = id2label, label2id
	if err := torchmods.WriteHFConfig(filepath.Join(dir, "config.json"), cfg); err != nil {
		return err
	}
	return copyFile(m.TokPath, filepath.Join(dir, tokenizerName(m.TokPath)))
}

// tokenizerName is the name a tokenizer file is copied under: the name
// findTokenizer looks for.
func tokenizerName(path string) string {
	if filepath.Ext(path) == ".json" {
		return "tokenizer.json"
	}
	return "vocab.txt"
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

// Eval evaluates trained weights (a run, checkpoint or weight file) on the
// config's eval files, as `repro eval` calls it.
func Eval(c *Config, checkpoint string, w io.Writer) error {
	pr, err := prepare(c, w)
	if err != nil {
		return err
	}
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return err
	}
	store := torchmods.NewStore(dev)
	defer store.Drop()
	m, err := build(store, pr.src, pr.tok, pr.labels, pr.plan.regression, true)
	if err != nil {
		return err
	}
	m.MaxLen = min(c.MaxLen, int(m.Bert.Cfg.MaxPositionEmbeddings))
	file, err := torchmods.ResolveWeights(checkpoint)
	if err != nil {
		return err
	}
	if _, err := torchmods.BertFamily.LoadHFWeights(store, file, torchmods.LoadOptions{}, w); err != nil {
		return err
	}
	for _, d := range pr.eval {
		ev, err := m.evaluate(d, c.Data.EvalBatch, pr.plan.metrics)
		if err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(ev.metrics)) {
			fmt.Fprintf(w, "%s %.4f\n", k, ev.metrics[k])
		}
	}
	return nil
}
