package train

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate at a step (0-based).
type Schedule func(step int64) float64

// WarmupSchedule is a per-iteration linear warm-up from 0 to base over
// warmup steps, then "cosine" (to 0 at total), "linear" (to 0 at total) or
// "constant" decay.
func WarmupSchedule(base float64, warmup, total int64, decay string) (Schedule, error) {
	if total <= 0 || warmup < 0 || warmup > total {
		return nil, fmt.Errorf("schedule: warmup %d and total %d steps", warmup, total)
	}
	switch decay {
	case "cosine", "linear", "constant":
	default:
		return nil, fmt.Errorf("schedule: decay %q, want cosine, linear or constant", decay)
	}
	return func(step int64) float64 {
		if step < warmup {
			return base * float64(step+1) / float64(warmup)
		}
		frac := float64(step-warmup) / math.Max(1, float64(total-warmup))
		switch decay {
		case "cosine":
			return base * 0.5 * (1 + math.Cos(math.Pi*frac))
		case "linear":
			return base * (1 - frac)
		}
		return base
	}, nil
}

// NoamSchedule is the schedule of "Attention Is All You Need":
// factor · d_model^-0.5 · min(n^-0.5, n · warmup^-1.5) for the n-th update (n = step+1).
func NoamSchedule(factor float64, dModel, warmup int64) (Schedule, error) {
	if dModel <= 0 || warmup <= 0 {
		return nil, fmt.Errorf("noam schedule: d_model %d and warmup %d must be positive", dModel, warmup)
	}
	return func(step int64) float64 {
		n := float64(step + 1)
		return factor / math.Sqrt(float64(dModel)) * math.Min(1/math.Sqrt(n), n*math.Pow(float64(warmup), -1.5))
	}, nil
}
