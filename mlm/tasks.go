package mlm

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// MaskingConfig is the condition under study.
type MaskingConfig struct {
	Mode  string  `toml:"mode"`  // a schedule of Modes: "constant" (fixed ratio), "cosine" or "linear" (MRD), or an ablation
	Ratio float64 `toml:"ratio"` // the base ratio p (0.15)
	PTW   bool    `toml:"ptw"`   // POS-tagging weighted whole-word masking
	// OnlyWWM (with ptw) is the official --only_wwm baseline: whole-word
	// masking with every tag's weight 1.
	OnlyWWM bool  `toml:"only_wwm"`
	Warmup  int64 `toml:"warmup"` // lin_warm_decay's warm-up steps (80,000, the official hard-coded value)
}

func (m MaskingConfig) validate() error {
	if _, err := Ratio(m.Mode, m.Ratio, 0, 1, max(m.Warmup, 1)); err != nil {
		return config.Field("masking.mode", "%v", err)
	}
	switch {
	case m.Ratio <= 0 || m.Ratio >= 0.5:
		return config.Field("masking.ratio", "must be in (0, 0.5), got %v", m.Ratio)
	case m.Warmup < 0:
		return config.Field("masking.warmup", "must not be negative, got %d", m.Warmup)
	case m.OnlyWWM && !m.PTW:
		return config.Field("masking.only_wwm", "is PTW's whole-word masking with all weights 1 and needs ptw = true, as the official --only_wwm needs --pos_wt")
	}
	return nil
}

// OptimConfig is the papers' AdamW recipe: linear warm-up, linear decay
// (cosine for PTW with cosine MRD, as bert_ptw_pretrain.py), decoupled
// weight decay off biases and LayerNorms, gradient clipping.
type OptimConfig struct {
	LR          float64 `toml:"lr"`
	Warmup      int64   `toml:"warmup"`       // steps (10,000 in the paper)
	WeightDecay float64 `toml:"weight_decay"` // 0.01
	Clip        float64 `toml:"clip"`         // global gradient norm (1.0); 0 for none
}

func (o OptimConfig) validate() error {
	switch {
	case o.LR <= 0:
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case o.Warmup < 0 || o.WeightDecay < 0 || o.Clip < 0:
		return config.Field("optim.warmup", "warmup, weight_decay and clip must not be negative")
	}
	return nil
}

// PretrainConfig is the "mlm.pretrain" task's config.
type PretrainConfig struct {
	train.Base
	Model   torchmods.BertConfig `toml:"model"` // vocab_size 0 takes the tokenizer's
	Masking MaskingConfig        `toml:"masking"`
	Optim   OptimConfig          `toml:"optim"`
	Data    DataConfig           `toml:"data"`
	// Init, if set, starts from a HF BERT (a folder with config.json and
	// model.safetensors or pytorch_model.bin), as the MRD script continues
	// from bert-base-uncased; empty trains from scratch, as the PTW script.
	Init string `toml:"init"`
}

// Validate checks the task's sections, naming the key.
func (c *PretrainConfig) Validate() error {
	if c.Trainer.MaxSteps < 1 {
		return config.Field("trainer.max_steps", "must be set: the masking schedules run over a known number of steps")
	}
	m := c.Model
	if m.VocabSize == 0 {
		m.VocabSize = 1000
	}
	if err := m.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	if err := c.Masking.validate(); err != nil {
		return err
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	return c.Data.Validate()
}

// PretrainTask is "mlm.pretrain".
var PretrainTask = train.TaskSpec[*PretrainConfig, *PretrainResult]{
	Name: "mlm.pretrain",
	Doc:  "BERT masked-LM pre-training with fixed, MRD-scheduled or PTW masking",
	Default: func() *PretrainConfig {
		return &PretrainConfig{Base: train.Base{Task: "mlm.pretrain", Trainer: train.DefaultTrainer()}, Model: torchmods.BertBase(),
			Masking: MaskingConfig{Mode: "constant", Ratio: 0.15, Warmup: LinWarmDecayWarmup}, Optim: OptimConfig{LR: 1e-4, Warmup: 10000, WeightDecay: 0.01, Clip: 1}}
	},
	Run: Pretrain,
	// Keys added after the first runs, with what their absence meant: a
	// document per sequence, and no whole-word baseline.
	Added: torchmods.BertAddedKeys(map[string]any{"data.packing": "", "masking.only_wwm": false}),
}

// FinetuneTask is "mlm.finetune".
var FinetuneTask = train.TaskSpec[*FinetuneConfig, *FinetuneResult]{
	Name: "mlm.finetune",
	Doc:  "BERT sequence classification: WordNet glosses into their 45 lexicographer files",
	Default: func() *FinetuneConfig {
		return &FinetuneConfig{Base: train.Base{Task: "mlm.finetune", Trainer: train.DefaultTrainer()}, Model: torchmods.BertBase(),
			Optim: OptimConfig{LR: 1e-4, WeightDecay: 0.01, Clip: 1}}
	},
	Run:   Finetune,
	Added: torchmods.BertAddedKeys(map[string]any{"data.packing": ""}), // a gloss per sequence, before the key existed
}

// PretrainResult is what a pre-training run reports.
type PretrainResult struct {
	HeldoutLoss float64   `json:"heldout_mlm_loss"` // at a fixed 15% token masking, fixed masks
	Steps       int64     `json:"steps"`
	Seconds     float64   `json:"seconds"`
	PTWTags     []string  `json:"ptw_tags,omitempty"` // the order of ptw_loss and ptw_weights (Tags)
	PTWLoss     []float64 `json:"ptw_loss,omitempty"`
	PTWWeights  []float64 `json:"ptw_weights,omitempty"`
}

// docLoader hands out shuffled batches of the given document indices.
func docLoader(docs []int, batch int, seed int64) (*data.Loader[[]int], error) {
	return data.NewLoader(data.LoaderOptions{N: len(docs), Batch: batch, Shuffle: true, DropLast: true, Seed: uint64(seed)},
		func(b data.Batch) ([]int, error) {
			out := make([]int, len(b.Indices))
			for i, k := range b.Indices {
				out[i] = docs[k]
			}
			return out, nil
		})
}

// batchTensors pads sequences to the batch's longest: ids, attention mask
// and labels as [B, L] tensors.
func batchTensors(inputs, labels [][]int64, pad int64, dev gotch.Device) (ids, mask, lab *ts.Tensor) {
	l := 0
	for _, s := range inputs {
		l = max(l, len(s))
	}
	b := len(inputs)
	fi, fm, fl := make([]int64, b*l), make([]int64, b*l), make([]int64, b*l)
	for i, s := range inputs {
		for j := range l {
			fi[i*l+j], fl[i*l+j] = pad, Ignore
			if j < len(s) {
				fi[i*l+j], fm[i*l+j] = s[j], 1
				if labels != nil {
					fl[i*l+j] = labels[i][j]
				}
			}
		}
	}
	shape := []int64{int64(b), int64(l)}
	ids = torchmods.FromSlice(fi, shape, dev)
	mask = torchmods.FromSlice(fm, shape, dev)
	lab = torchmods.FromSlice(fl, shape, dev)
	return ids, mask, lab
}

// maskedLoss runs the model and returns the cross-entropy of every masked
// token [M] (computing the vocabulary projection at masked positions only,
// which gives the same loss as projecting every position).
func maskedLoss(m *torchmods.BertForMaskedLM, ids, mask, labels *ts.Tensor, train bool) (*ts.Tensor, int64) {
	hidden := m.Bert.Forward(ids, nil, mask, train)
	flat := labels.MustView([]int64{-1}, false)
	pos := flat.MustNe(ts.IntScalar(Ignore), false).MustNonzero(true).MustView([]int64{-1}, true)
	n := pos.MustSize()[0]
	h := hidden.MustView([]int64{-1, m.Bert.Cfg.HiddenSize}, false).MustIndexSelect(0, pos, false)
	logits := m.Logits(h)
	return torchmods.CrossEntropy(logits, flat.MustIndexSelect(0, pos, false), torchmods.CEOptions{Reduction: torchmods.ReduceNone, Ignore: torchmods.IgnoreIndex(Ignore)}), n
}

// Pretrain runs the masked-LM pre-training of the configured condition.
func Pretrain(s *train.Session, c *PretrainConfig) (*PretrainResult, error) {
	w := s.W
	tok, prep, err := Prepare(c.Data, w)
	if err != nil {
		return nil, err
	}
	trainIdx, heldIdx := prep.Split(false)
	if c.Model.VocabSize == 0 {
		c.Model.VocabSize = tok.Size
	}
	if c.Model.VocabSize < tok.Size {
		return nil, fmt.Errorf("model.vocab_size %d is smaller than the tokenizer's %d tokens", c.Model.VocabSize, tok.Size)
	}
	c.Model.PadTokenID = tok.PAD
	var model *torchmods.BertForMaskedLM
	if err := torchmods.Try(func() { model = torchmods.NewBertForMaskedLM(s.Store.Root(), c.Model) }); err != nil {
		return nil, err
	}
	if c.Init != "" && !s.Resuming() {
		if err := LoadHF(s.Store, c.Init, w); err != nil {
			return nil, err
		}
	}
	loader, err := docLoader(trainIdx, c.Data.Batch, c.Trainer.Seed)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	steps := c.Trainer.MaxSteps
	perEpoch := loader.PerEpoch() / c.Trainer.Accumulate
	opt := train.NewAdamW(s.Store, 0.9, 0.999, 1e-8, c.Optim.WeightDecay)
	decay := "linear"
	if c.Masking.PTW && c.Masking.Mode == "cosine" {
		decay = "cosine" // bert_ptw_pretrain.py: lr_scheduler_type cosine with cosine masking
	}
	sched, err := train.WarmupSchedule(c.Optim.LR, min(c.Optim.Warmup, steps), steps, decay)
	if err != nil {
		return nil, err
	}
	ptw := NewPTW(len(Tags))
	ptw.OnlyWWM = c.Masking.OnlyWWM
	var stepLosses StepLosses // the step's masked tokens, folded into ptw once per optimizer step
	special := func(id int64) bool { return tok.IsSpecial(id) }
	var ratio float64
	var weights []float64
	fmt.Fprintf(w, "mlm pretrain: %d training and %d held-out sequences (packing %s), vocabulary %d, %d steps, masking %s p=%.2f ptw=%v only_wwm=%v\n",
		len(trainIdx), len(heldIdx), c.Data.packing(), tok.Size, steps, c.Masking.Mode, c.Masking.Ratio, c.Masking.PTW, c.Masking.OnlyWWM)
	var rng *rand.Rand
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		BeforeStep: func(step int64) error {
			ratio, _ = Ratio(c.Masking.Mode, c.Masking.Ratio, step, steps, c.Masking.Warmup)
			weights = ptw.Weights()
			rng = rand.New(rand.NewPCG(uint64(c.Trainer.Seed), uint64(step)))
			return nil
		},
		Loss: func(int64, int) (*ts.Tensor, error) {
			idx, err := loader.Next()
			if err != nil {
				return nil, err
			}
			inputs, labels := make([][]int64, len(idx)), make([][]int64, len(idx))
			for i, d := range idx {
				q := prep.Seqs[d]
				if c.Masking.PTW {
					inputs[i], labels[i] = WholeWordMask(q.IDs, q.Words, q.WordTags, weights, ratio, tok.MASK, tok.Size, special, rng)
				} else {
					inputs[i], labels[i] = MaskTokens(q.IDs, ratio, tok.MASK, tok.Size, special, rng)
				}
			}
			ids, mask, lab := batchTensors(inputs, labels, tok.PAD, s.Device)
			per, n := maskedLoss(model, ids, mask, lab, true)
			if n == 0 { // nothing masked (a ratio near 0): a zero loss that keeps gradients defined
				return model.Bias.MustSum(gotch.Float, false).MustMulScalar(ts.FloatScalar(0), true), nil
			}
			if c.Masking.PTW { // this micro-batch's masked tokens, for the step's update of the per-tag loss
				var tags []int
				for i, d := range idx {
					q := prep.Seqs[d]
					for j, l := range labels[i] {
						if l != Ignore {
							tags = append(tags, q.WordTags[q.Words[j]])
						}
					}
				}
				stepLosses.Add(tags, per.Float64Values())
			}
			return per.MustMean(gotch.Float, true), nil
		},
		AfterStep: func(int64) error {
			stepLosses.Flush(ptw)
			return nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader), "ptw": train.Float64s(ptw.Loss)},
		Eval: func(step int64) (map[string]float64, error) {
			l, err := heldoutLoss(model, prep, heldIdx, tok, c.Data.Batch, c.Trainer.Seed, s.Device)
			m := map[string]float64{"heldout_mlm_loss": l, "mask_ratio": ratio}
			for i, t := range Tags {
				if c.Masking.PTW {
					m["ptw_weight_"+t] = weights[i]
				}
			}
			return m, err
		},
	})
	if err != nil {
		return nil, err
	}
	res := &PretrainResult{Steps: steps}
	if res.HeldoutLoss, err = heldoutLoss(model, prep, heldIdx, tok, c.Data.Batch, c.Trainer.Seed, s.Device); err != nil {
		return nil, err
	}
	res.Seconds = s.Elapsed().Seconds()
	if c.Masking.PTW {
		res.PTWTags, res.PTWLoss, res.PTWWeights = Tags, ptw.Loss, ptw.Weights()
	}
	if c.Masking.PTW && !c.Masking.OnlyWWM { // only_wwm's weights are all 1: nothing to plot
		if err := plotPTW(filepath.Join(s.Out, "metrics.jsonl"), filepath.Join(s.Out, "ptw_weights.png")); err != nil {
			fmt.Fprintf(w, "ptw plot: %v\n", err)
		}
	}
	fmt.Fprintf(w, "held-out MLM loss at 15%%: %.4f, %d steps in %.0f s\n", res.HeldoutLoss, steps, res.Seconds)
	return res, nil
}

// heldoutLoss is the mean cross-entropy over held-out tokens masked at a
// fixed 15% (token-level, 80/10/10) with masks from a fixed generator,
// whatever the training condition. It is repro's own metric: the official
// scripts pass no evaluation set to the Trainer, and the paper reports
// downstream scores.
func heldoutLoss(m *torchmods.BertForMaskedLM, prep *Prepared, held []int, tok *Tokenizer, batch int, seed int64, dev gotch.Device) (float64, error) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xe7a1))
	special := func(id int64) bool { return tok.IsSpecial(id) }
	var sum float64
	var count int64
	err := data.Sequential(len(held), batch, func(idx []int) error {
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				inputs, labels := make([][]int64, len(idx)), make([][]int64, len(idx))
				for i, k := range idx {
					inputs[i], labels[i] = MaskTokens(prep.Seqs[held[k]].IDs, 0.15, tok.MASK, tok.Size, special, rng)
				}
				ids, mask, lab := batchTensors(inputs, labels, tok.PAD, dev)
				per, n := maskedLoss(m, ids, mask, lab, false)
				if n > 0 {
					sum += per.MustSum(gotch.Float, false).Float64Values()[0]
					count += n
				}
			})
		})
	})
	if count == 0 {
		return 0, fmt.Errorf("no held-out tokens were masked")
	}
	return sum / float64(count), err
}

// FinetuneConfig is "mlm.finetune": classify a WordNet gloss into its
// synset's lexicographer file (45 classes), held-out synsets for testing.
type FinetuneConfig struct {
	train.Base
	Model      torchmods.BertConfig `toml:"model"`
	Pretrained string               `toml:"pretrained"` // a mlm.pretrain run or HF BERT folder; "" from scratch
	Optim      OptimConfig          `toml:"optim"`
	Data       DataConfig           `toml:"data"`
}

// Validate checks the task's sections, naming the key.
func (c *FinetuneConfig) Validate() error {
	m := c.Model
	if m.VocabSize == 0 {
		m.VocabSize = 1000
	}
	if err := m.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	if c.Data.Corpus != "wordnet" {
		return config.Field("data.corpus", `the lexname task needs "wordnet", got %q`, c.Data.Corpus)
	}
	if c.Data.official() {
		return config.Field("data.packing", `the lexname task classifies single glosses; use "document"`)
	}
	return c.Data.Validate()
}

// FinetuneResult is what a fine-tuning run reports.
type FinetuneResult struct {
	TestAccuracy float64 `json:"test_accuracy"`
	Train        int     `json:"train_glosses"`
	Test         int     `json:"test_glosses"`
	Steps        int64   `json:"steps"`
	Seconds      float64 `json:"seconds"`
}

// Finetune trains BertForSequenceClassification on the glosses.
func Finetune(s *train.Session, c *FinetuneConfig) (*FinetuneResult, error) {
	w := s.W
	tok, prep, err := Prepare(c.Data, w)
	if err != nil {
		return nil, err
	}
	trainIdx, testIdx := prep.Split(true)
	if c.Model.VocabSize == 0 {
		c.Model.VocabSize = tok.Size
	}
	c.Model.PadTokenID = tok.PAD
	classes := int64(len(data.WordNetLexNames))
	var model *torchmods.BertForSequenceClassification
	if err := torchmods.Try(func() { model = torchmods.NewBertForSequenceClassification(s.Store.Root(), c.Model, classes) }); err != nil {
		return nil, err
	}
	if c.Pretrained != "" && !s.Resuming() {
		if err := LoadHF(s.Store, c.Pretrained, w); err != nil {
			return nil, err
		}
	}
	loader, err := docLoader(trainIdx, c.Data.Batch, c.Trainer.Seed)
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	opt := train.NewAdamW(s.Store, 0.9, 0.999, 1e-8, c.Optim.WeightDecay)
	sched, err := train.WarmupSchedule(c.Optim.LR, min(c.Optim.Warmup, steps), steps, "linear")
	if err != nil {
		return nil, err
	}
	batch := func(idx []int) (ids, mask, y *ts.Tensor) {
		inputs := make([][]int64, len(idx))
		labels := make([]int64, len(idx))
		for i, d := range idx {
			inputs[i], labels[i] = prep.Seqs[d].IDs, int64(prep.Docs[d].Lexname)
		}
		ids, mask, _ = batchTensors(inputs, nil, tok.PAD, s.Device)
		return ids, mask, torchmods.FromSlice(labels, []int64{int64(len(labels))}, s.Device)
	}
	accuracy := func() (float64, error) {
		var correct float64
		err := data.Sequential(len(testIdx), 256, func(k []int) error {
			sc := ts.NewScope()
			defer sc.Close()
			return torchmods.Try(func() {
				ts.NoGrad(func() {
					idx := make([]int, len(k))
					for i, j := range k {
						idx[i] = testIdx[j]
					}
					ids, mask, y := batch(idx)
					correct += float64(torchmods.CountCorrect(model.Forward(ids, nil, mask, false), y))
				})
			})
		})
		return correct / float64(len(testIdx)), err
	}
	fmt.Fprintf(w, "mlm finetune: %d training and %d test glosses (held-out synsets), %d classes, %d steps\n", len(trainIdx), len(testIdx), classes, steps)
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(int64, int) (*ts.Tensor, error) {
			idx, err := loader.Next()
			if err != nil {
				return nil, err
			}
			ids, mask, y := batch(idx)
			return torchmods.CrossEntropy(model.Forward(ids, nil, mask, true), y, torchmods.CEOptions{}), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(int64) (map[string]float64, error) {
			a, err := accuracy()
			return map[string]float64{"test_accuracy": a}, err
		},
	})
	if err != nil {
		return nil, err
	}
	res := &FinetuneResult{Train: len(trainIdx), Test: len(testIdx), Steps: steps}
	if res.TestAccuracy, err = accuracy(); err != nil {
		return nil, err
	}
	res.Seconds = s.Elapsed().Seconds()
	fmt.Fprintf(w, "lexname test accuracy %.2f%% (%d held-out glosses), %d steps in %.0f s\n", 100*res.TestAccuracy, len(testIdx), steps, res.Seconds)
	return res, nil
}

// plotPTW draws the PTW weight of every tag over training from metrics.jsonl.
func plotPTW(metrics, png string) error {
	f, err := os.Open(metrics)
	if err != nil {
		return err
	}
	defer f.Close()
	series := map[string][][2]float64{}
	dec := json.NewDecoder(f)
	for dec.More() {
		var row map[string]float64
		if err := dec.Decode(&row); err != nil {
			break
		}
		for _, t := range Tags {
			if v, ok := row["ptw_weight_"+t]; ok {
				series[t] = append(series[t], [2]float64{row["step"], v})
			}
		}
	}
	return linePlot(png, "PTW tag weights", "step", "weight", Tags, series)
}
