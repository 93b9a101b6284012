package train

import (
	"github.com/reprolab/repro/internal/config"
)

// TrainerConfig is the [trainer] table every training config has.
type TrainerConfig struct {
	Seed            int64  `toml:"seed"`             // seeds libtorch and Go's generators (default 0)
	MaxSteps        int64  `toml:"max_steps"`        // total steps; 0 means derive from epochs
	Epochs          int64  `toml:"epochs"`           // passes over the training data (default 1)
	LogEvery        int64  `toml:"log_every"`        // steps between progress lines and metrics rows (default 50)
	EvalEvery       int64  `toml:"eval_every"`       // steps between evaluations; 0 means at the end only
	CheckpointEvery int64  `toml:"checkpoint_every"` // steps between checkpoints; 0 means at the end only
	KeepCheckpoints int64  `toml:"keep_checkpoints"` // checkpoints kept (default 3)
	Device          string `toml:"device"`           // "cpu" or "cuda" (default "cpu")
	Accumulate      int64  `toml:"accumulate"`       // micro-batches per optimizer step, for gradient accumulation (default 1)
	Precision       string `toml:"precision"`        // "fp32" (default), "bf16" (autocast to bfloat16) or "fp16" (autocast to float16 with dynamic loss scaling, CUDA only)
	TensorBoard     bool   `toml:"tensorboard"`      // also write metrics as TensorBoard event files beside metrics.jsonl (default true)
}

// DefaultTrainer holds the documented defaults.
func DefaultTrainer() TrainerConfig {
	return TrainerConfig{Epochs: 1, LogEvery: 50, KeepCheckpoints: 3, Device: "cpu", Accumulate: 1, Precision: "fp32", TensorBoard: true}
}

// Validate checks the ranges, naming the key.
func (t TrainerConfig) Validate() error {
	switch {
	case t.MaxSteps < 0:
		return config.Field("trainer.max_steps", "must not be negative, got %d", t.MaxSteps)
	case t.Epochs <= 0 && t.MaxSteps == 0:
		return config.Field("trainer.epochs", "must be positive when max_steps is 0, got %d", t.Epochs)
	case t.LogEvery <= 0:
		return config.Field("trainer.log_every", "must be positive, got %d", t.LogEvery)
	case t.EvalEvery < 0:
		return config.Field("trainer.eval_every", "must not be negative, got %d", t.EvalEvery)
	case t.CheckpointEvery < 0:
		return config.Field("trainer.checkpoint_every", "must not be negative, got %d", t.CheckpointEvery)
	case t.KeepCheckpoints < 1:
		return config.Field("trainer.keep_checkpoints", "must be at least 1, got %d", t.KeepCheckpoints)
	case t.Device != "cpu" && t.Device != "cuda":
		return config.Field("trainer.device", `must be "cpu" or "cuda", got %q`, t.Device)
	case t.Accumulate < 1:
		return config.Field("trainer.accumulate", "must be at least 1, got %d", t.Accumulate)
	case t.Precision != "fp32" && t.Precision != "bf16" && t.Precision != "fp16":
		return config.Field("trainer.precision", `must be "fp32", "bf16" or "fp16", got %q`, t.Precision)
	case t.Precision == "fp16" && t.Device != "cuda":
		// libtorch 1.13's CPU autocast takes bfloat16 only (setting float16
		// throws "AutocastCPU only support Bfloat16"), and PyTorch's
		// GradScaler is CUDA-only there too; refusing here names the key
		// instead of failing at the first forward pass.
		return config.Field("trainer.precision", "fp16 autocast needs CUDA; use bf16 or fp32 on the CPU")
	}
	return nil
}
