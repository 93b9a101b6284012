package pmlm

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// ObjectiveConfig picks the pre-training loss: L_AE at the [M] slots plus
// L_PAR at the [P]s (the paper's PMLM), or either alone for its ablation
// (Table 6: "- PAR" is AE only, "- AE" PAR only).
type ObjectiveConfig struct {
	AE  bool `toml:"ae"`
	PAR bool `toml:"par"`
	// PseudoToken is the vocabulary entry used as [P]. The paper draws
	// [P] and [M] as two tokens, but the released models come with BERT's
	// vocabulary, which has no [P], and s2s-ft fine-tunes with [MASK] in
	// the pseudo slots; "[MASK]" (the default) keeps pre-training and
	// fine-tuning consistent. Another name must be in the vocabulary.
	PseudoToken string `toml:"pseudo_token"`
}

// OptimConfig is the paper's pre-training optimizer (Adam β = (0.9,
// 0.98), ε = 1e-6, weight decay 0.01, linear warm-up then linear decay)
// or s2s-ft's fine-tuning one (transformers' AdamW, ε 1e-8).
type OptimConfig struct {
	LR          float64 `toml:"lr"`
	Beta2       float64 `toml:"beta2"`
	Eps         float64 `toml:"eps"`
	Warmup      int64   `toml:"warmup"`
	WeightDecay float64 `toml:"weight_decay"`
	Clip        float64 `toml:"clip"` // global gradient norm; 0 for none
}

func (o OptimConfig) validate() error {
	switch {
	case !(o.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case !(o.Beta2 > 0 && o.Beta2 < 1):
		return config.Field("optim.beta2", "must be in (0, 1), got %v", o.Beta2)
	case !(o.Eps > 0):
		return config.Field("optim.eps", "must be positive, got %v", o.Eps)
	case o.Warmup < 0 || o.WeightDecay < 0 || o.Clip < 0:
		return config.Field("optim.warmup", "warmup, weight_decay and clip must not be negative")
	}
	return nil
}

func (o OptimConfig) plan(s *train.Session, steps int64) (*train.AdamW, train.Schedule, error) {
	sched, err := train.WarmupSchedule(o.LR, min(o.Warmup, steps), steps, "linear")
	return train.NewAdamW(s.Store, 0.9, o.Beta2, o.Eps, o.WeightDecay), sched, err
}

// PretrainConfig is "pmlm.pretrain".
type PretrainConfig struct {
	train.Base
	Model     torchmods.BertConfig `toml:"model"` // vocab_size 0 takes the tokenizer's; rel_pos_bins > 0 adds UniLMv2's relative position bias
	Masking   MaskOptions          `toml:"masking"`
	Objective ObjectiveConfig      `toml:"objective"`
	Optim     OptimConfig          `toml:"optim"`
	// Data is mlm's corpus section: WordNet's glosses and examples (or a
	// text file or folder), the WordPiece vocabulary trained on first use,
	// the held-out split of synsets.
	Data mlm.DataConfig `toml:"data"`
	// EvalSequences caps the held-out sequences the AE and PAR losses are
	// measured on (0: all).
	EvalSequences int `toml:"eval_sequences"`
}

// Validate checks the task's sections, naming the key.
func (c *PretrainConfig) Validate() error {
	if err := validateRun(c.Trainer.MaxSteps, c.Model); err != nil {
		return err
	}
	if err := c.Masking.Validate(); err != nil {
		return config.Field("masking", "%v", err)
	}
	if !c.Objective.AE && !c.Objective.PAR {
		return config.Field("objective.ae", "at least one of objective.ae and objective.par must be true")
	}
	if c.EvalSequences < 0 {
		return config.Field("eval_sequences", "must not be negative, got %d", c.EvalSequences)
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	return c.Data.Validate()
}

// validateRun checks what both tasks need: a step count for the linear
// schedule and a model config (its vocab_size may be 0, the tokenizer's).
func validateRun(maxSteps int64, m torchmods.BertConfig) error {
	if maxSteps < 1 {
		return config.Field("trainer.max_steps", "must be set: the learning-rate schedule runs over a known number of steps")
	}
	if m.VocabSize == 0 {
		m.VocabSize = 1000
	}
	if err := m.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	return nil
}

// PretrainTask is "pmlm.pretrain".
var PretrainTask = train.TaskSpec[*PretrainConfig, *PretrainResult]{
	Name:  "pmlm.pretrain",
	Added: torchmods.BertAddedKeys(nil), // an absent rel_pos_bins is 0 in any case (omitempty)
	Doc:   "UniLMv2 pseudo-masked LM pre-training: blockwise masking, a random factorisation order, L_AE + L_PAR in one pass",
	Default: func() *PretrainConfig {
		m := torchmods.BertBase()
		m.RelPosBins, m.MaxRelPos = 32, 128
		return &PretrainConfig{Base: train.Base{Task: "pmlm.pretrain", Trainer: train.DefaultTrainer()}, Model: m,
			Masking: DefaultMaskOptions(), Objective: ObjectiveConfig{AE: true, PAR: true, PseudoToken: "[MASK]"},
			Optim: OptimConfig{LR: 2e-4, Beta2: 0.98, Eps: 1e-6, Warmup: 10000, WeightDecay: 0.01, Clip: 1}}
	},
	Run: Pretrain,
}

// PretrainResult is what a pre-training run reports: the held-out losses
// of both objectives whatever the run trained, on the same masks.
type PretrainResult struct {
	HeldoutAE  float64 `json:"heldout_ae_loss"`  // cross-entropy at the [M] slots: the masked-LM loss
	HeldoutPAR float64 `json:"heldout_par_loss"` // cross-entropy at the [P]s
	Sequences  int     `json:"eval_sequences"`
	Steps      int64   `json:"steps"`
	Seconds    float64 `json:"seconds"`
}

// prepared is the tokenised corpus and what a pre-training step needs.
type prepared struct {
	tok      *mlm.Tokenizer
	prep     *mlm.Prepared
	sp       Specials
	train    []int
	held     []int
	maskable func(ids []int64) []bool
}

func prepare(c *PretrainConfig, w fmtWriter) (*prepared, error) {
	tok, prep, err := mlm.Prepare(c.Data, w)
	if err != nil {
		return nil, err
	}
	pseudo, ok := tok.ID(c.Objective.PseudoToken)
	if !ok {
		return nil, fmt.Errorf("objective.pseudo_token %q is not in the vocabulary %s", c.Objective.PseudoToken, c.Data.Vocab)
	}
	p := &prepared{tok: tok, prep: prep, sp: Specials{Mask: tok.MASK, Pseudo: pseudo, Pad: tok.PAD}}
	p.train, p.held = prep.Split(false)
	p.maskable = func(ids []int64) []bool {
		m := make([]bool, len(ids))
		for i, id := range ids {
			m[i] = !tok.IsSpecial(id)
		}
		return m
	}
	return p, nil
}

type fmtWriter interface{ Write([]byte) (int, error) }

// rows masks and packs sequences: the full pseudo-masked input, or the
// corrupted sequence alone when only AE is trained.
func (p *prepared) rows(idx []int, o MaskOptions, obj ObjectiveConfig, vocab int64, rng *rand.Rand) ([]row, error) {
	out := make([]row, 0, len(idx))
	for _, d := range idx {
		ids := p.prep.Seqs[d].IDs
		m, err := o.Sample(ids, p.maskable(ids), p.sp.Mask, vocab, rng)
		if err != nil {
			return nil, fmt.Errorf("sequence %d: %w", d, err)
		}
		l, err := Pack(ids, nil, m, p.sp, 0)
		if err != nil {
			return nil, fmt.Errorf("sequence %d: %w", d, err)
		}
		if obj.PAR {
			out = append(out, packedRow(l, obj.AE, obj.PAR))
		} else {
			out = append(out, corruptedRow(l))
		}
	}
	return out, nil
}

// Pretrain runs the configured objective.
func Pretrain(s *train.Session, c *PretrainConfig) (*PretrainResult, error) {
	w := s.W
	p, err := prepare(c, w)
	if err != nil {
		return nil, err
	}
	if c.Model.VocabSize == 0 {
		c.Model.VocabSize = p.tok.Size
	}
	if c.Model.VocabSize < p.tok.Size {
		return nil, fmt.Errorf("model.vocab_size %d is smaller than the tokenizer's %d tokens", c.Model.VocabSize, p.tok.Size)
	}
	c.Model.PadTokenID = p.tok.PAD
	var model *torchmods.BertForMaskedLM
	if err := torchmods.Try(func() { model = torchmods.NewBertForMaskedLM(s.Store.Root(), c.Model) }); err != nil {
		return nil, err
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(p.train), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) ([]int, error) {
			out := make([]int, len(b.Indices))
			for i, k := range b.Indices {
				out[i] = p.train[k]
			}
			return out, nil
		})
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	steps := c.Trainer.MaxSteps
	opt, sched, err := c.Optim.plan(s, steps)
	if err != nil {
		return nil, err
	}
	held := p.held
	if c.EvalSequences > 0 && len(held) > c.EvalSequences {
		held = spread(held, c.EvalSequences) // evenly through the corpus, not its first field
	}
	fmt.Fprintf(w, "pmlm pretrain: %d training and %d held-out sequences, vocabulary %d, %d steps, AE %v, PAR %v, [P] = %s\n",
		len(p.train), len(held), p.tok.Size, steps, c.Objective.AE, c.Objective.PAR, c.Objective.PseudoToken)
	var rng *rand.Rand
	lastEval, lastAE, lastPAR := int64(-1), 0.0, 0.0
	err = s.Train(train.Plan{Steps: steps, PerEpoch: loader.PerEpoch() / c.Trainer.Accumulate, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		BeforeStep: func(step int64) error {
			rng = rand.New(rand.NewPCG(uint64(c.Trainer.Seed), uint64(step)))
			return nil
		},
		Loss: func(int64, int) (*ts.Tensor, error) {
			idx, err := loader.Next()
			if err != nil {
				return nil, err
			}
			rows, err := p.rows(idx, c.Masking, c.Objective, c.Model.VocabSize, rng)
			if err != nil {
				return nil, err
			}
			return pretrainLoss(model, rows, p.tok.PAD, s.Device), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(step int64) (map[string]float64, error) {
			ae, par, err := heldoutLosses(model, p, held, c, s.Device)
			lastEval, lastAE, lastPAR = step, ae, par
			return map[string]float64{"heldout_ae_loss": ae, "heldout_par_loss": par}, err
		},
	})
	if err != nil {
		return nil, err
	}
	res := &PretrainResult{Steps: steps, Sequences: len(held), HeldoutAE: lastAE, HeldoutPAR: lastPAR}
	if lastEval != steps { // the trainer evaluates at the last step; a resumed, finished run did not
		if res.HeldoutAE, res.HeldoutPAR, err = heldoutLosses(model, p, held, c, s.Device); err != nil {
			return nil, err
		}
	}
	res.Seconds = s.Elapsed().Seconds()
	fmt.Fprintf(w, "held-out AE loss %.4f, PAR loss %.4f on %d sequences; %d steps in %.0f s\n", res.HeldoutAE, res.HeldoutPAR, len(held), steps, res.Seconds)
	return res, nil
}

// pretrainLoss is L_AE + L_PAR, each the mean cross-entropy over its own
// positions, from one forward pass. (The paper writes the sum of the two
// objectives; every masked token has one [M] and one [P], so the two
// means weigh them as the two sums do.)
func pretrainLoss(m *torchmods.BertForMaskedLM, rows []row, pad int64, dev gotch.Device) *ts.Tensor {
	b := stack(rows, pad, dev)
	hidden := m.Bert.ForwardInput(b.in, true)
	var total *ts.Tensor
	for _, lab := range []*ts.Tensor{b.ae, b.par} {
		logits, targets := labelled(m, hidden, lab)
		if targets.MustSize()[0] == 0 {
			continue // this objective is off
		}
		l := torchmods.CrossEntropy(logits, targets, torchmods.CEOptions{})
		if total == nil {
			total = l
		} else {
			total = total.MustAdd(l, true)
		}
	}
	if total == nil { // no sequence had a maskable token: a zero that keeps gradients defined
		total = m.Bias.MustSum(gotch.Float, false).MustMulScalar(ts.FloatScalar(0), true)
	}
	return total
}

// heldoutLosses are the mean AE and PAR cross-entropies over held-out
// sequences, masked and packed with a fixed generator, so that every
// condition and step is measured on the same masks and orders.
func heldoutLosses(m *torchmods.BertForMaskedLM, p *prepared, held []int, c *PretrainConfig, dev gotch.Device) (ae, par float64, err error) {
	rng := rand.New(rand.NewPCG(uint64(c.Trainer.Seed), 0x9a11))
	var sum [2]float64
	var count [2]int64
	both := ObjectiveConfig{AE: true, PAR: true}
	err = data.Sequential(len(held), c.Data.Batch, func(idx []int) error {
		seqs := make([]int, len(idx))
		for i, k := range idx {
			seqs[i] = held[k]
		}
		rows, err := p.rows(seqs, c.Masking, both, c.Model.VocabSize, rng)
		if err != nil {
			return err
		}
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				b := stack(rows, p.tok.PAD, dev)
				hidden := m.Bert.ForwardInput(b.in, false)
				for o, lab := range []*ts.Tensor{b.ae, b.par} {
					logits, targets := labelled(m, hidden, lab)
					n := targets.MustSize()[0]
					if n == 0 {
						continue
					}
					l := torchmods.CrossEntropy(logits, targets, torchmods.CEOptions{Reduction: torchmods.ReduceSum})
					sum[o] += l.Float64Values()[0]
					count[o] += n
				}
			})
		})
	})
	if count[0] > 0 {
		ae = sum[0] / float64(count[0])
	}
	if count[1] > 0 {
		par = sum[1] / float64(count[1])
	}
	return ae, par, err
}
