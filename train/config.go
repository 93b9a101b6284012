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
}

// DefaultTrainer holds the documented defaults.
func DefaultTrainer() TrainerConfig {
	return TrainerConfig{Epochs: 1, LogEvery: 50, KeepCheckpoints: 3, Device: "cpu"}
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
	}
	return nil
}
