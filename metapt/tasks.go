package metapt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/internal/memstat"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// MetaConfig is the meta-learning step.
type MetaConfig struct {
	K       int64     `toml:"k"`        // meta-train depth: inner steps per meta step (0 = multi-task pre-training)
	Order   string    `toml:"order"`    // "first" or "second": the meta-gradient's order
	InnerLR float64   `toml:"inner_lr"` // α, the inner steps' plain SGD learning rate
	Tasks   []string  `toml:"tasks"`    // the objectives sampled from (Objectives)
	Weights []float64 `toml:"weights"`  // sampling weight per task; empty for uniform
	// Test is the meta-test loss: "sum" of every task's loss on one batch
	// (so that k = 0 is BERT's summed objective) or "sample", one more task
	// drawn as the inner ones are.
	Test string `toml:"test"`
	// InnerBatches: "own", a fresh batch for every inner step and for the
	// meta-test, or "shared", one batch for all k+1 losses.
	InnerBatches string `toml:"inner_batches"`
}

func (m MetaConfig) validate() error {
	switch {
	case m.K < 0 || m.K > 64:
		return config.Field("meta.k", "must be in [0, 64], got %d", m.K)
	case m.Order != "first" && m.Order != "second":
		return config.Field("meta.order", `must be "first" or "second", got %q`, m.Order)
	case m.K > 0 && !(m.InnerLR > 0):
		return config.Field("meta.inner_lr", "must be positive, got %v", m.InnerLR)
	case len(m.Tasks) == 0:
		return config.Field("meta.tasks", "must list at least one of %v", Objectives)
	case len(m.Weights) != 0 && len(m.Weights) != len(m.Tasks):
		return config.Field("meta.weights", "has %d weights for %d tasks (leave it empty for uniform)", len(m.Weights), len(m.Tasks))
	case m.Test != "sum" && m.Test != "sample":
		return config.Field("meta.test", `must be "sum" or "sample", got %q`, m.Test)
	case m.InnerBatches != "own" && m.InnerBatches != "shared":
		return config.Field("meta.inner_batches", `must be "own" or "shared", got %q`, m.InnerBatches)
	}
	for i, t := range m.Tasks {
		if !slices.Contains(Objectives, t) || slices.Index(m.Tasks, t) != i {
			return config.Field("meta.tasks", "%q is unknown or listed twice (tasks: %v)", t, Objectives)
		}
	}
	var total float64
	for _, w := range m.Weights {
		if !(w >= 0) {
			return config.Field("meta.weights", "must not be negative, got %v", w)
		}
		total += w
	}
	if len(m.Weights) > 0 && !(total > 0) {
		return config.Field("meta.weights", "must not all be 0")
	}
	return nil
}

// weights are the sampling weights, uniform when none are given.
func (m MetaConfig) weights() []float64 {
	if len(m.Weights) > 0 {
		return m.Weights
	}
	w := make([]float64, len(m.Tasks))
	for i := range w {
		w[i] = 1
	}
	return w
}

// OptimConfig is the outer optimizer (the meta-update, or the multi-task
// update when k = 0): linear warm-up then linear decay, clipping of the
// meta-gradient's global norm.
type OptimConfig struct {
	Name        string  `toml:"name"` // "adamw" (BERT's Adam with decoupled weight decay) or "sgd" (θ - β g, the update as written)
	LR          float64 `toml:"lr"`   // β, the outer learning rate at its peak
	Eps         float64 `toml:"eps"`  // AdamW's ε (BERT: 1e-6)
	Warmup      int64   `toml:"warmup"`
	WeightDecay float64 `toml:"weight_decay"` // off biases and LayerNorms
	Clip        float64 `toml:"clip"`         // global gradient norm; 0 for none
}

func (o OptimConfig) validate() error {
	switch {
	case o.Name != "adamw" && o.Name != "sgd":
		return config.Field("optim.name", `must be "adamw" or "sgd", got %q`, o.Name)
	case !(o.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case o.Name == "adamw" && !(o.Eps > 0):
		return config.Field("optim.eps", "must be positive, got %v", o.Eps)
	case o.Warmup < 0 || o.WeightDecay < 0 || o.Clip < 0:
		return config.Field("optim.warmup", "warmup, weight_decay and clip must not be negative")
	}
	return nil
}

// Config is the config of "metapt.pretrain" and "metapt.multitask".
type Config struct {
	train.Base
	Model   torchmods.BertConfig `toml:"model"` // vocab_size 0 takes the tokenizer's
	Meta    MetaConfig           `toml:"meta"`
	Optim   OptimConfig          `toml:"optim"`
	Masking struct {
		Ratio float64 `toml:"ratio"` // share of tokens masked (80% [MASK], 10% random, 10% kept)
	} `toml:"masking"`
	NSP struct {
		RandomNext float64 `toml:"random_next"` // share of pairs whose second sentence is random
	} `toml:"nsp"`
	Data DataConfig `toml:"data"`
}

// Validate checks the task's sections, naming the key.
func (c *Config) Validate() error {
	m := c.Model
	if m.VocabSize == 0 {
		m.VocabSize = 1000
	}
	if err := m.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	if m.TypeVocabSize < 2 {
		return config.Field("model.type_vocab_size", "sentence pairs need 2 token types, got %d", m.TypeVocabSize)
	}
	if c.Task == multitaskName && c.Meta.K != 0 {
		return config.Field("meta.k", "the plain multi-task path has no inner steps; set k = 0 or use task %q", pretrainName)
	}
	if err := c.Meta.validate(); err != nil {
		return err
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	if !(c.Masking.Ratio > 0 && c.Masking.Ratio < 1) {
		return config.Field("masking.ratio", "must be in (0, 1), got %v", c.Masking.Ratio)
	}
	if !(c.NSP.RandomNext >= 0 && c.NSP.RandomNext <= 1) {
		return config.Field("nsp.random_next", "must be in [0, 1], got %v", c.NSP.RandomNext)
	}
	return c.Data.validate()
}

// The tasks' names.
const (
	pretrainName  = "metapt.pretrain"
	multitaskName = "metapt.multitask"
)

func defaults(task string) *Config {
	c := &Config{Base: train.Base{Task: task, Trainer: train.DefaultTrainer()}, Model: torchmods.BertBase(),
		Meta:  MetaConfig{K: 1, Order: "first", InnerLR: 1e-2, Tasks: []string{"mlm", "nsp"}, Test: "sum", InnerBatches: "own"},
		Optim: OptimConfig{Name: "adamw", LR: 1e-4, Eps: 1e-6, Warmup: 10000, WeightDecay: 0.01, Clip: 1},
		Data:  DataConfig{MaxLen: 128, Batch: 32, VocabSize: 30522, Heldout: 0.01, EvalPairs: 4096}}
	c.Masking.Ratio, c.NSP.RandomNext = 0.15, 0.5
	if task == multitaskName {
		c.Meta.K = 0
	}
	return c
}

// PretrainTask is "metapt.pretrain": BERT pre-training by meta steps of
// depth meta.k (0: multi-task pre-training, BERT's summed objective).
var PretrainTask = train.TaskSpec[*Config, *Result]{
	Name:    pretrainName,
	Doc:     "BERT pre-training as meta-learning: k inner SGD steps on sampled tasks (MLM, NSP), first- or second-order meta-update",
	Default: func() *Config { return defaults(pretrainName) },
	Run:     func(s *train.Session, c *Config) (*Result, error) { return Pretrain(s, c, false) },
	Added:   torchmods.BertAddedKeys(nil),
}

// MultitaskTask is "metapt.multitask": the plain multi-task baseline, the
// summed loss of meta.tasks (MLM + NSP) on each batch with no
// meta-learning machinery (a separate code path, which a k = 0 meta step
// must match exactly).
var MultitaskTask = train.TaskSpec[*Config, *Result]{
	Name:    multitaskName,
	Doc:     "BERT multi-task pre-training (MLM + NSP summed), the k = 0 baseline without the meta-learning code path",
	Default: func() *Config { return defaults(multitaskName) },
	Run:     func(s *train.Session, c *Config) (*Result, error) { return Pretrain(s, c, true) },
	Added:   torchmods.BertAddedKeys(nil),
}

// Result is what a pre-training run reports.
type Result struct {
	HeldoutMLM   float64 `json:"heldout_mlm_loss"` // at 15% (the configured ratio), fixed masks, no dropout
	HeldoutNSP   float64 `json:"heldout_nsp_loss"`
	NSPAccuracy  float64 `json:"heldout_nsp_accuracy"`
	EvalPairs    int     `json:"eval_pairs"`
	Steps        int64   `json:"steps"`             // outer (optimizer) steps
	GradComps    int64   `json:"grad_computations"` // forward-backward passes on a batch: steps x accumulate x (k+1)
	TrainSeconds float64 `json:"train_seconds"`     // the training loop, evaluation excluded
	StepSeconds  float64 `json:"seconds_per_step"`
	// TrainCPU is the process's CPU time (user + system, all threads) in
	// the training loop, evaluation excluded: on a shared machine a
	// steadier measure of the work than wall-clock.
	TrainCPU float64 `json:"train_cpu_seconds"`
	StepCPU  float64 `json:"cpu_seconds_per_step"`
	Seconds  float64 `json:"seconds"` // the whole run, data preparation included
	PeakRSS  int64   `json:"peak_rss_bytes"`
	// TaskDraws counts the inner steps per task; InnerLoss is their mean
	// loss (at θ_{j-1}, before each inner update).
	TaskDraws map[string]int64   `json:"inner_task_draws,omitempty"`
	InnerLoss map[string]float64 `json:"inner_mean_loss,omitempty"`
}

// Pretrain runs the pre-training: meta steps, or with plain the multi-task
// baseline's summed loss.
func Pretrain(s *train.Session, c *Config, plain bool) (*Result, error) {
	w := s.W
	tok, corpus, err := LoadCorpus(c.Data, w)
	if err != nil {
		return nil, err
	}
	mc := c.Model // the config stays as given (a resume compares it with the run's)
	if mc.VocabSize == 0 {
		mc.VocabSize = tok.Size
	}
	if mc.VocabSize < tok.Size {
		return nil, fmt.Errorf("model.vocab_size %d is smaller than the tokenizer's %d tokens", mc.VocabSize, tok.Size)
	}
	mc.PadTokenID = tok.PAD
	order, err := ParseOrder(c.Meta.Order)
	if err != nil {
		return nil, err
	}
	trainDocs, heldDocs := corpus.Split(false), corpus.Split(true)
	trainAnchors, heldAnchors := corpus.Anchors(false), corpus.Anchors(true)
	if len(trainAnchors) == 0 || len(heldAnchors) == 0 {
		return nil, fmt.Errorf("data: %d training and %d held-out sentences with a next sentence: both splits need documents of two or more sentences",
			len(trainAnchors), len(heldAnchors))
	}
	var model Model
	if err := torchmods.Try(func() { model = Model{torchmods.NewBertForPreTraining(s.Store.Root(), mc)} }); err != nil {
		return nil, err
	}
	opts := PairOptions{MaxLen: c.Data.MaxLen, RandomNext: c.NSP.RandomNext, MaskRatio: c.Masking.Ratio, Tok: tok}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(trainAnchors), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) (Batch, error) {
			anchors := make([]Anchor, len(b.Indices))
			for i, k := range b.Indices {
				anchors[i] = trainAnchors[k]
			}
			return corpus.Examples(anchors, trainDocs, opts, b.Rand())
		})
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	held, err := heldoutBatches(corpus, heldAnchors, heldDocs, opts, c.Data, c.Trainer.Seed)
	if err != nil {
		return nil, err
	}

	k := c.Meta.K
	batchesPerMicro := k + 1
	if c.Meta.InnerBatches == "shared" {
		batchesPerMicro = 1
	}
	perEpoch, steps, err := s.Steps(loader.PerEpoch() / batchesPerMicro)
	if err != nil {
		return nil, err
	}
	var opt train.Optimizer = train.NewAdamW(s.Store, 0.9, 0.999, c.Optim.Eps, c.Optim.WeightDecay)
	if c.Optim.Name == "sgd" {
		opt = train.NewSGD(s.Store, 0, 0, c.Optim.WeightDecay, false)
	}
	sched, err := train.WarmupSchedule(c.Optim.LR, min(c.Optim.Warmup, steps), steps, "linear")
	if err != nil {
		return nil, err
	}
	sampler := Sampler{Weights: c.Meta.weights(), Seed: c.Trainer.Seed}
	// draws holds, per task, the inner steps drawn and the sum of their losses.
	draws := make([]float64, 2*len(c.Meta.Tasks))
	what := fmt.Sprintf("meta steps k=%d (%s order, inner lr %g, tasks %v, meta-test %s, %s inner batches)",
		k, order, c.Meta.InnerLR, c.Meta.Tasks, c.Meta.Test, c.Meta.InnerBatches)
	if plain {
		what = fmt.Sprintf("multi-task pre-training (the summed loss of %v, plain path)", c.Meta.Tasks)
	}
	fmt.Fprintf(w, "metapt: %s; %d training and %d held-out documents, %d training pairs per epoch, vocabulary %d, %d steps\n",
		what, len(trainDocs), len(heldDocs), len(trainAnchors), tok.Size, steps)

	next := func() (Tensors, error) {
		b, err := loader.Next()
		if err != nil {
			return Tensors{}, err
		}
		return ToTensors(b, tok.PAD, s.Device), nil
	}
	var loss func(step int64, micro int) (*ts.Tensor, error)
	if plain {
		loss = func(int64, int) (*ts.Tensor, error) {
			t, err := next()
			if err != nil {
				return nil, err
			}
			return model.Loss(t, c.Meta.Tasks, true), nil
		}
	} else {
		loss = func(step int64, micro int) (*ts.Tensor, error) {
			rng := sampler.Rand(step*c.Trainer.Accumulate + int64(micro))
			innerTasks := sampler.Draw(int(k), rng)
			testTasks := c.Meta.Tasks
			if c.Meta.Test == "sample" {
				testTasks = []string{c.Meta.Tasks[sampler.Draw(1, rng)[0]]}
			}
			var shared Tensors
			if c.Meta.InnerBatches == "shared" {
				var err error
				if shared, err = next(); err != nil {
					return nil, err
				}
			}
			batch := func() (Tensors, error) {
				if c.Meta.InnerBatches == "shared" {
					return shared, nil
				}
				return next()
			}
			inner := make([]LossFn, k)
			for j, task := range innerTasks {
				t, err := batch()
				if err != nil {
					return nil, err
				}
				name := c.Meta.Tasks[task]
				inner[j] = func() (*ts.Tensor, error) { return model.Loss(t, []string{name}, true), nil }
			}
			t, err := batch()
			if err != nil {
				return nil, err
			}
			l, innerLosses, err := MetaLoss(s.Store, inner, func() (*ts.Tensor, error) { return model.Loss(t, testTasks, true), nil }, c.Meta.InnerLR, order)
			if err != nil {
				return nil, err
			}
			for j, task := range innerTasks {
				draws[2*task]++
				draws[2*task+1] += innerLosses[j]
			}
			if c.Meta.Test == "sample" {
				l = touchAll(s.Store, l)
			}
			return l, nil
		}
	}
	var evalTime time.Duration
	var evalCPU float64
	var last map[string]float64 // the newest evaluation
	evaluate := func() (map[string]float64, error) {
		start, cpu := time.Now(), cpuSeconds()
		defer func() { evalTime, evalCPU = evalTime+time.Since(start), evalCPU+cpuSeconds()-cpu }()
		var err error
		last, err = evalHeldout(model, held, tok.PAD, s)
		return last, err
	}
	started, cpu := time.Now(), cpuSeconds()
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip, Loss: loss,
		State: map[string]train.State{"loader": train.LoaderState(loader), "draws": train.Float64s(draws)},
		Eval:  func(int64) (map[string]float64, error) { return evaluate() },
	})
	if err != nil {
		return nil, err
	}
	trainTime, trainCPU := time.Since(started)-evalTime, cpuSeconds()-cpu-evalCPU
	m := last // Train evaluates after the last step
	if m == nil {
		if m, err = evaluate(); err != nil {
			return nil, err
		}
	}
	res := &Result{HeldoutMLM: m["heldout_mlm_loss"], HeldoutNSP: m["heldout_nsp_loss"], NSPAccuracy: m["heldout_nsp_accuracy"],
		Steps: steps, GradComps: steps * c.Trainer.Accumulate * (k + 1),
		TrainSeconds: trainTime.Seconds(), TrainCPU: trainCPU, Seconds: s.Elapsed().Seconds()}
	for _, b := range held {
		res.EvalPairs += len(b)
	}
	res.StepSeconds, res.StepCPU = res.TrainSeconds/float64(steps), res.TrainCPU/float64(steps)
	res.PeakRSS, _ = memstat.PeakRSS()
	if k > 0 && !plain {
		res.TaskDraws, res.InnerLoss = map[string]int64{}, map[string]float64{}
		for i, t := range c.Meta.Tasks {
			res.TaskDraws[t] = int64(draws[2*i])
			if draws[2*i] > 0 {
				res.InnerLoss[t] = draws[2*i+1] / draws[2*i]
			}
		}
	}
	fmt.Fprintf(w, "held-out MLM loss %.4f, NSP loss %.4f, NSP accuracy %.2f%% (%d pairs); %d steps, %d gradient computations, %.3f s/step (%.3f s of CPU), peak RSS %.0f MiB\n",
		res.HeldoutMLM, res.HeldoutNSP, 100*res.NSPAccuracy, res.EvalPairs, steps, res.GradComps, res.StepSeconds, res.StepCPU, float64(res.PeakRSS)/(1<<20))
	return res, nil
}

// heldoutBatches are the evaluation's pairs: the first eval_pairs held-out
// anchors, paired and masked from a fixed generator, the same for every
// run of a seed whatever its condition.
func heldoutBatches(c *Corpus, anchors []Anchor, docs []int, o PairOptions, d DataConfig, seed int64) ([]Batch, error) {
	if d.EvalPairs > 0 && d.EvalPairs < len(anchors) {
		anchors = anchors[:d.EvalPairs]
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0xe7a1))
	var out []Batch
	err := data.Sequential(len(anchors), d.Batch, func(idx []int) error {
		b, err := c.Examples(anchors[idx[0]:idx[len(idx)-1]+1], docs, o, rng)
		out = append(out, b)
		return err
	})
	return out, err
}

// evalHeldout is the held-out MLM loss per masked token and NSP loss and
// accuracy per pair, without dropout.
func evalHeldout(m Model, held []Batch, pad int64, s *train.Session) (map[string]float64, error) {
	var mlmSum, nspSum float64
	var masked, correct, pairs int64
	for _, b := range held {
		err := func() error {
			sc := ts.NewScope()
			defer sc.Close()
			return torchmods.Try(func() {
				ts.NoGrad(func() {
					a, n, c, k := m.Eval(ToTensors(b, pad, s.Device))
					mlmSum, masked, nspSum, correct = mlmSum+a, masked+n, nspSum+c, correct+k
					pairs += int64(len(b))
				})
			})
		}()
		if err != nil {
			return nil, err
		}
	}
	if masked == 0 || pairs == 0 {
		return nil, fmt.Errorf("held-out evaluation: no masked tokens or no pairs")
	}
	return map[string]float64{"heldout_mlm_loss": mlmSum / float64(masked), "heldout_nsp_loss": nspSum / float64(pairs),
		"heldout_nsp_accuracy": float64(correct) / float64(pairs)}, nil
}

// cpuSeconds is the CPU time the process has used, user and system.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// touchAll adds 0 x the sum of every trainable parameter to l, so that
// every parameter has a gradient (zero where l does not reach it). A
// sampled meta-test task leaves the other task's head without one in some
// steps; train.AdamW skips a parameter whose gradient is undefined but
// updates it (momentum only) once it has been defined and zeroed, so
// without this a resumed run, whose gradients start undefined, would
// update such a head differently from the run straight through.
func touchAll(store *torchmods.Store, l *ts.Tensor) *ts.Tensor {
	for _, p := range store.Params() {
		if p.Tensor.MustRequiresGrad() {
			l = l.MustAdd(p.Tensor.MustSum(l.DType(), false).MustMulScalar(ts.FloatScalar(0), true), true)
		}
	}
	return l
}
