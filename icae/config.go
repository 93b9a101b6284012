package icae

import (
	"slices"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// OptimConfig is the optimizer: AdamW with a linear warm-up and a decay, as
// HF's Trainer runs the official scripts (adamw_torch, lr_scheduler_type
// linear by default, max_grad_norm 1).
type OptimConfig struct {
	LR          float64 `toml:"lr"`
	Warmup      int64   `toml:"warmup"` // steps of linear warm-up (at most the run's steps)
	Decay       string  `toml:"decay"`  // "linear" (HF's default), "cosine" or "constant"
	WeightDecay float64 `toml:"weight_decay"`
	Beta1       float64 `toml:"beta1"`
	Beta2       float64 `toml:"beta2"`
	Eps         float64 `toml:"eps"`
	Clip        float64 `toml:"clip"` // the gradients' global norm; 0 for none
}

func (o OptimConfig) validate() error {
	switch {
	case !(o.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case o.Warmup < 0:
		return config.Field("optim.warmup", "must not be negative, got %d", o.Warmup)
	case o.Decay != "linear" && o.Decay != "cosine" && o.Decay != "constant":
		return config.Field("optim.decay", `must be "linear", "cosine" or "constant", got %q`, o.Decay)
	case !(o.WeightDecay >= 0):
		return config.Field("optim.weight_decay", "must not be negative, got %v", o.WeightDecay)
	case !(o.Beta1 >= 0 && o.Beta1 < 1) || !(o.Beta2 >= 0 && o.Beta2 < 1):
		return config.Field("optim.beta1", "beta1 and beta2 must be in [0, 1), got %v and %v", o.Beta1, o.Beta2)
	case !(o.Eps > 0):
		return config.Field("optim.eps", "must be positive, got %v", o.Eps)
	case !(o.Clip >= 0):
		return config.Field("optim.clip", "must not be negative, got %v", o.Clip)
	}
	return nil
}

// runPlan is what every icae task derives from its loader and [optim]:
// the run's length, the optimizer and the schedule.
type runPlan struct {
	perEpoch, steps int64
	opt             *train.AdamW
	sched           train.Schedule
}

// plan sizes the run from batchesPerEpoch ([trainer]'s epochs or
// max_steps) and makes the optimizer and schedule for it.
func (o OptimConfig) plan(s *train.Session, batchesPerEpoch int64) (runPlan, error) {
	perEpoch, steps, err := s.Steps(batchesPerEpoch)
	if err != nil {
		return runPlan{}, err
	}
	sched, err := train.WarmupSchedule(o.LR, min(o.Warmup, steps), steps, o.Decay)
	if err != nil {
		return runPlan{}, err
	}
	return runPlan{perEpoch, steps, train.NewAdamW(s.Store, o.Beta1, o.Beta2, o.Eps, o.WeightDecay), sched}, nil
}

func defaultOptim(lr float64, warmup int64) OptimConfig {
	return OptimConfig{LR: lr, Warmup: warmup, Decay: "linear", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Clip: 1}
}

// MemoryConfig is the memory: slots per segment and the compression that
// sets the segment length.
type MemoryConfig struct {
	Size        int64   `toml:"size"`        // fixed_mem_size: slots per segment
	Compression int64   `toml:"compression"` // mean_compression_rate: a segment holds at most size·compression tokens
	InitStd     float64 `toml:"init_std"`    // memory_token_embed's N(0, init_std²) init (nn.Embedding: 1)
}

func (m MemoryConfig) validate() error {
	switch {
	case m.Size < 1:
		return config.Field("memory.size", "must be positive, got %d", m.Size)
	case m.Compression < 1:
		return config.Field("memory.compression", "must be positive, got %d", m.Compression)
	case !(m.InitStd > 0):
		return config.Field("memory.init_std", "must be positive, got %v", m.InitStd)
	}
	return nil
}

// LoRAConfig is the encoder's LoRA (PEFT's LoraConfig as the official
// scripts make it: bias "none", task CAUSAL_LM, whose default targets for
// Llama and Mistral are q_proj and v_proj).
type LoRAConfig struct {
	Enabled bool     `toml:"enabled"` // false: no adapters, only the memory embeddings train (the ablation)
	Rank    int64    `toml:"rank"`
	Alpha   float64  `toml:"alpha"`
	Dropout float64  `toml:"dropout"`
	Targets []string `toml:"targets"`
}

func (l LoRAConfig) validate() error {
	if !l.Enabled {
		return nil
	}
	switch {
	case l.Rank < 1:
		return config.Field("lora.rank", "must be positive, got %d", l.Rank)
	case !(l.Alpha > 0):
		return config.Field("lora.alpha", "must be positive, got %v", l.Alpha)
	case !(l.Dropout >= 0 && l.Dropout < 1):
		return config.Field("lora.dropout", "must be in [0, 1), got %v", l.Dropout)
	case len(l.Targets) == 0:
		return config.Field("lora.targets", "must list projections of %v (or set enabled = false)", Projections)
	}
	for i, t := range l.Targets {
		if !slices.Contains(Projections, t) || slices.Index(l.Targets, t) != i {
			return config.Field("lora.targets", "%q is not one of %v or is listed twice", t, Projections)
		}
	}
	return nil
}

// options are the model options the memory and LoRA sections make.
func options(mem MemoryConfig, l LoRAConfig) Options {
	o := Options{MemSize: mem.Size, Compression: mem.Compression, MemoryInitStd: mem.InitStd}
	if l.Enabled {
		o.Rank, o.Alpha, o.Dropout, o.Targets = l.Rank, l.Alpha, l.Dropout, l.Targets
	}
	return o
}

// ModelConfig is a Llama for icae.lm to pre-train: HF's LlamaConfig keys,
// the vocabulary and special ids taken from the tokenizer.
type ModelConfig struct {
	HiddenSize        int64   `toml:"hidden_size"`
	IntermediateSize  int64   `toml:"intermediate_size"`
	Layers            int64   `toml:"num_hidden_layers"`
	Heads             int64   `toml:"num_attention_heads"`
	KVHeads           int64   `toml:"num_key_value_heads"`
	RMSNormEps        float64 `toml:"rms_norm_eps"`
	RopeTheta         float64 `toml:"rope_theta"`
	TieWordEmbeddings bool    `toml:"tie_word_embeddings"`
	InitializerRange  float64 `toml:"initializer_range"`
	MaxPositions      int64   `toml:"max_position_embeddings"`
}

// llama is the torchmods config for a vocabulary of vocab tokens.
func (m ModelConfig) llama(vocab, pad, bos, eos int64) torchmods.LlamaConfig {
	c := torchmods.LlamaConfig{ModelType: "llama", VocabSize: vocab, HiddenSize: m.HiddenSize, IntermediateSize: m.IntermediateSize,
		NumHiddenLayers: m.Layers, NumAttentionHeads: m.Heads, NumKeyValueHeads: m.KVHeads, RMSNormEps: m.RMSNormEps,
		Rope: torchmods.LlamaRope{Type: "default", Theta: m.RopeTheta}, MaxPositionEmbeddings: m.MaxPositions,
		TieWordEmbeddings: m.TieWordEmbeddings, InitializerRange: m.InitializerRange, BOSTokenID: bos, PadTokenID: pad,
		EOSTokenIDs: []int64{eos}, TorchDType: "float32"}
	if m.Heads > 0 {
		c.HeadDim = m.HiddenSize / m.Heads
	}
	return c
}

func (m ModelConfig) validate() error {
	if m.Heads < 1 || m.HiddenSize%m.Heads != 0 {
		return config.Field("model.num_attention_heads", "must be positive and divide hidden_size %d, got %d", m.HiddenSize, m.Heads)
	}
	if err := m.llama(1000, 0, 2, 3).Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	if m.MaxPositions < 1 {
		return config.Field("model.max_position_embeddings", "must be positive, got %d", m.MaxPositions)
	}
	return nil
}
