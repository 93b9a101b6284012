package icae

import (
	"fmt"
	"io"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// ObjectiveConfig is pretrain.py's data settings (TrainingArguments).
type ObjectiveConfig struct {
	MaxLen         int     `toml:"max_len"`             // model_max_length: the extraction window and the LM continuation's cap
	LMRatio        float64 `toml:"lm_ratio"`            // share of texts drawn as LM examples (the code's default 0: AE only)
	MinTokensForLM int     `toml:"min_tokens_for_lm"`   // an LM draw with a continuation this short or shorter becomes AE
	LeaveTokens    int     `toml:"leave_tokens_for_lm"` // continuation tokens without loss
	LMSpecialToken bool    `toml:"lm_special_token"`    // add_special_token_for_lm: [LM] after the slots
}

func (o ObjectiveConfig) validate() error {
	switch {
	case o.MaxLen < 1:
		return config.Field("objective.max_len", "must be positive, got %d", o.MaxLen)
	case !(o.LMRatio >= 0 && o.LMRatio <= 1):
		return config.Field("objective.lm_ratio", "must be in [0, 1], got %v", o.LMRatio)
	case o.LeaveTokens < 0 || o.MinTokensForLM < 0:
		return config.Field("objective.leave_tokens_for_lm", "leave_tokens_for_lm and min_tokens_for_lm must not be negative")
	case o.LeaveTokens > o.MinTokensForLM:
		// pretrain.py asserts it.
		return config.Field("objective.leave_tokens_for_lm", "%d is more than min_tokens_for_lm %d", o.LeaveTokens, o.MinTokensForLM)
	case o.LeaveTokens > o.MaxLen:
		return config.Field("objective.leave_tokens_for_lm", "%d is more than max_len %d, the longest continuation", o.LeaveTokens, o.MaxLen)
	}
	return nil
}

// EvalConfig is the held-out evaluation.
type EvalConfig struct {
	Samples  int  `toml:"samples"`  // held-out windows of objective.max_len + cont_len tokens
	ContLen  int  `toml:"cont_len"` // continuation tokens whose perplexity is measured
	Generate bool `toml:"generate"` // decode reconstructions and the truncation baseline (greedy)
}

func (e EvalConfig) validate() error {
	if e.Samples < 1 || e.ContLen < 1 {
		return config.Field("eval.samples", "eval.samples and eval.cont_len must be positive, got %d and %d", e.Samples, e.ContLen)
	}
	return nil
}

// Config is "icae.pretrain".
type Config struct {
	train.Base
	// LLM is the frozen LLM: a HF Llama or Mistral folder (config.json
	// and safetensors, sharded or not: icae.lm's export, a
	// save_pretrained folder) or hf:ORG/NAME.
	LLM string `toml:"base"`
	// BaseDType is the LLM's parameter dtype: "float32", "bfloat16",
	// "float16" or "auto" (config.json's torch_dtype). The trainable
	// parameters are float32 whatever it is.
	BaseDType string `toml:"base_dtype"`
	// Pretrained, if set, starts from a trained ICAE's LoRA and memory
	// table (a run or checkpoint folder, or its model.safetensors), as
	// restore_from does.
	Pretrained string          `toml:"pretrained"`
	Memory     MemoryConfig    `toml:"memory"`
	LoRA       LoRAConfig      `toml:"lora"`
	Objective  ObjectiveConfig `toml:"objective"`
	Optim      OptimConfig     `toml:"optim"`
	Data       DataConfig      `toml:"data"`
	Eval       EvalConfig      `toml:"eval"`
}

// Validate checks the task's keys, naming the key.
func (c *Config) Validate() error {
	if c.LLM == "" {
		return config.Field("base", "must name the frozen LLM: a HF Llama or Mistral folder, or hf:ORG/NAME")
	}
	if _, err := torchmods.ParseLlamaDType(c.BaseDType); err != nil && c.BaseDType != "auto" {
		return config.Field("base_dtype", "%v (or \"auto\")", err)
	}
	for _, err := range []error{c.Memory.validate(), c.LoRA.validate(), c.Objective.validate(), c.Optim.validate(), c.Data.validate(false, true), c.Eval.validate()} {
		if err != nil {
			return err
		}
	}
	return nil
}

// Result is what icae.pretrain reports: the final evaluation (Evaluate's
// metrics) and the run's size.
type Result struct {
	Metrics   map[string]float64 `json:"metrics"`
	Steps     int64              `json:"steps"`
	Trainable int64              `json:"trainable_params"`
	LLMParams int64              `json:"llm_params"`
	AEShare   float64            `json:"ae_share"` // of the training samples drawn, the share that were AE
	Samples   int                `json:"eval_samples"`
	// ContextTokens is the evaluation contexts' length (objective.max_len),
	// Slots the slots each is compressed to (segments times memory.size,
	// also the truncation baseline's kept tokens), and Ratio their
	// quotient: the compression the numbers are measured at.
	ContextTokens int     `json:"context_tokens"`
	Slots         int     `json:"slots"`
	Ratio         float64 `json:"compression_ratio"`
}

func pretrainDefaults() *Config {
	return &Config{Base: train.Base{Task: "icae.pretrain", Trainer: train.DefaultTrainer()}, BaseDType: "float32",
		Memory:    MemoryConfig{Size: 16, Compression: 4, InitStd: 1},
		LoRA:      LoRAConfig{Enabled: true, Rank: 8, Alpha: 32, Targets: []string{"q_proj", "v_proj"}},
		Objective: ObjectiveConfig{MaxLen: 64, MinTokensForLM: 16, LeaveTokens: 8},
		Optim:     defaultOptim(1e-4, 0),
		Data:      DataConfig{Corpus: "wordnet", Heldout: 0.05, DocLen: 192, Batch: 16},
		Eval:      EvalConfig{Samples: 256, ContLen: 32, Generate: true}}
}

// PretrainTask is "icae.pretrain".
var PretrainTask = train.TaskSpec[*Config, *Result]{
	Name:    "icae.pretrain",
	Doc:     "ICAE pre-training (Ge et al., ICLR 2024): LoRA encoder and memory slots for a frozen LLM, AE and LM objectives",
	Default: pretrainDefaults,
	Run:     Pretrain,
}

// session is what both ICAE tasks build first: the frozen LLM in its own
// store, the ICAE module in the session's, the tokenizer.
type session struct {
	m        *Model
	llmStore *torchmods.Store
	tok      Tokenizer
	vocab    string
	bos, eos int64
	llm      int64 // the LLM's parameter count
}

// open loads the base LLM, wraps it, loads pretrained ICAE weights and the
// tokenizer. The caller drops llmStore.
func open(s *train.Session, base, dtype, pretrained, vocab string, o Options) (*session, error) {
	ll, err := torchmods.OpenLlama(base, torchmods.LlamaLoadOptions{DType: dtype, Device: s.Device}, s.W)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	se := &session{llmStore: ll.Store}
	for _, p := range ll.Store.Params() {
		se.llm += int64(p.Tensor.Numel())
	}
	fail := func(err error) (*session, error) {
		ll.Store.Drop()
		return nil, err
	}
	c := ll.Model.Cfg
	if c.BOSTokenID < 0 || len(ll.EOS) == 0 {
		return fail(fmt.Errorf("base %s: config.json names no bos_token_id or eos_token_id, which the AE and LM samples need", base))
	}
	se.bos, se.eos = c.BOSTokenID, ll.EOS[0]
	if err := torchmods.Try(func() { se.m = NewModel(s.Store.Root(), ll.Model, o) }); err != nil {
		return fail(err)
	}
	if pretrained != "" {
		if err := torchmods.LoadModel(pretrained, s.Store); err != nil {
			return fail(fmt.Errorf("pretrained: %w", err))
		}
	}
	se.vocab = vocab
	if se.vocab == "" {
		if se.vocab, err = FindTokenizer(ll.Source.Dir); err != nil {
			return fail(fmt.Errorf("data.vocab: %w", err))
		}
	}
	if se.tok, err = LoadTokenizer(se.vocab); err != nil {
		return fail(err)
	}
	if se.tok.Size() > c.VocabSize {
		return fail(fmt.Errorf("data.vocab %s has %d tokens, more than the base's vocab_size %d: not the base's tokenizer", se.vocab, se.tok.Size(), c.VocabSize))
	}
	return se, nil
}

func (se *session) trainable(s *train.Session) int64 {
	var n int64
	for _, p := range s.Store.Params() {
		n += int64(p.Tensor.Numel())
	}
	return n
}

// Pretrain trains the ICAE's LoRA and memory table with the AE and LM
// objectives on texts of data.doc_len tokens from the corpus, the base LLM
// frozen, and evaluates it on held-out windows.
func Pretrain(s *train.Session, c *Config) (*Result, error) {
	se, err := open(s, c.LLM, c.BaseDType, c.Pretrained, c.Data.Vocab, options(c.Memory, c.LoRA))
	if err != nil {
		return nil, err
	}
	defer se.llmStore.Drop()
	m := se.m
	dc := c.Data
	dc.Vocab = se.vocab
	st, err := LoadStreams(dc, se.vocab, se.tok, se.bos, se.eos, s.W)
	if err != nil {
		return nil, err
	}
	texts := st.Texts(c.Data.DocLen)
	set := EvalWindows(st.Heldout, c.Objective.MaxLen, c.Eval.ContLen, c.Eval.Samples)
	if len(texts) == 0 || len(set.Contexts) == 0 {
		return nil, fmt.Errorf("data: %d training texts of %d tokens and %d held-out windows of %d+%d: the corpus is too small (data.doc_len, objective.max_len, eval.cont_len)",
			len(texts), c.Data.DocLen, len(set.Contexts), c.Objective.MaxLen, c.Eval.ContLen)
	}
	po := PretrainOptions{MaxLen: c.Objective.MaxLen, LMRatio: c.Objective.LMRatio, MinTokensForLM: c.Objective.MinTokensForLM,
		LeaveTokens: c.Objective.LeaveTokens, LMSpecialToken: c.Objective.LMSpecialToken, Compression: int(c.Memory.Compression), EOS: se.eos}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(texts), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) ([]Sample, error) {
			rng := b.Rand()
			out := make([]Sample, len(b.Indices))
			for i, k := range b.Indices {
				out[i] = PretrainSample(texts[k], po, m.Layout, rng)
			}
			return out, nil
		})
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	rp, err := c.Optim.plan(s, loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	perEpoch, steps, opt, sched := rp.perEpoch, rp.steps, rp.opt, rp.sched
	slots := m.SlotCount(c.Objective.MaxLen)
	res := &Result{Steps: steps, Trainable: se.trainable(s), LLMParams: se.llm, Samples: len(set.Contexts),
		ContextTokens: c.Objective.MaxLen, Slots: slots, Ratio: float64(c.Objective.MaxLen) / float64(slots)}
	what := fmt.Sprintf("%d training texts of %d tokens", len(texts), c.Data.DocLen)
	if c.Data.DocLen == 0 {
		what = fmt.Sprintf("%d training documents", len(texts))
	}
	fmt.Fprintf(s.W, "icae.pretrain: %s; %d slots per segment of up to %d tokens; LoRA %s; %d trainable parameters (%.2f%% of the LLM's %d); %s, contexts of up to %d tokens (%d slots, %gx), lm_ratio %g; %d steps\n",
		se.m.LM.Cfg.Summary(), c.Memory.Size, c.Memory.Size*c.Memory.Compression, loraSummary(c.LoRA), res.Trainable,
		100*float64(res.Trainable)/float64(se.llm), se.llm, what, c.Objective.MaxLen, slots, res.Ratio, c.Objective.LMRatio, steps)
	// counts holds the AE and LM samples drawn, for the checkpoint.
	counts := make([]float64, 2)
	eo := EvalOptions{Batch: c.Data.Batch, Generate: c.Eval.Generate, LMSpecialToken: c.Objective.LMSpecialToken, BOS: se.bos, EOS: se.eos}
	var last map[string]float64
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(int64, int) (*ts.Tensor, error) {
			samples, err := loader.Next()
			if err != nil {
				return nil, err
			}
			for _, x := range samples {
				if x.Objective == ObjectiveAE {
					counts[0]++
				} else {
					counts[1]++
				}
			}
			return m.Loss(m.NewBatch(samples), true), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader), "objectives": train.Float64s(counts)},
		Eval: func(int64) (map[string]float64, error) {
			r, err := m.Evaluate(set, eo)
			last = r
			return r, err
		},
	})
	if err != nil {
		return nil, err
	}
	if last == nil {
		if err := torchmods.Try(func() { ts.NoGrad(func() { last, err = m.Evaluate(set, eo) }) }); err != nil {
			return nil, err
		}
		if err != nil {
			return nil, err
		}
	}
	res.Metrics = last
	if n := counts[0] + counts[1]; n > 0 {
		res.AEShare = counts[0] / n
	}
	report(s.W, last)
	return res, nil
}

func loraSummary(l LoRAConfig) string {
	if !l.Enabled {
		return "off (memory embeddings only)"
	}
	return fmt.Sprintf("r %d, alpha %g, dropout %g on %s", l.Rank, l.Alpha, l.Dropout, strings.Join(l.Targets, ", "))
}

// report prints the evaluation as the comparisons it makes.
func report(w io.Writer, m map[string]float64) {
	fmt.Fprintf(w, "AE loss %.4f, teacher-forced token accuracy %.2f%%\n", m["ae_loss"], 100*m["ae_tf_token_acc"])
	if _, ok := m["recon_token_acc"]; ok {
		fmt.Fprintf(w, "reconstruction from the slots: token accuracy %.2f%%, BLEU-4 %.4f; truncating to as many tokens: %.2f%%, %.4f\n",
			100*m["recon_token_acc"], m["recon_bleu4"], 100*m["trunc_token_acc"], m["trunc_bleu4"])
	}
	fmt.Fprintf(w, "continuation perplexity: full context %.3f, slots %.3f, no context %.3f\n", m["ppl_full"], m["ppl_slots"], m["ppl_none"])
	fmt.Fprintf(w, "the LLM copying the context with it in view: perplexity %.3f\n", m["ppl_copy"])
	if _, ok := m["ae_loss_other"]; ok {
		fmt.Fprintf(w, "with another context's slots: AE loss %.4f, teacher-forced token accuracy %.2f%%, continuation perplexity %.3f\n",
			m["ae_loss_other"], 100*m["ae_tf_token_acc_other"], m["ppl_slots_other"])
	}
}
