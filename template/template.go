// Package template is the smallest complete task; copy it to start a paper.
// An MLP on two generated spirals shows every part: a config embedding train.Base,
// a TaskSpec, a loader, a Plan whose Loss is one micro-batch's loss, a result.
package template

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Config is "template.spirals": train.Base brings `task` and [trainer].
type Config struct {
	train.Base
	Hidden int64   `toml:"hidden"` // the MLP's width
	LR     float64 `toml:"lr"`     // AdamW's peak learning rate, cosine-decayed
	Points int     `toml:"points"` // points per spiral (half for testing)
	Noise  float64 `toml:"noise"`  // Gaussian jitter of each point
	Batch  int     `toml:"batch"`
}

// Validate checks the task's own keys; errors name the key.
func (c *Config) Validate() error {
	switch {
	case c.Hidden < 1 || c.Points < 2 || c.Batch < 1:
		return config.Field("hidden", "hidden, batch and points (at least 2) must be positive")
	case !(c.LR > 0) || !(c.Noise >= 0): // also refuses NaN
		return config.Field("lr", "lr must be positive and noise not negative, got %v and %v", c.LR, c.Noise)
	}
	return nil
}

// Result is written to results.json.
type Result struct {
	TestAccuracy float64 `json:"test_accuracy"`
}

// Task is the task spec; papers/papers.go registers it.
var Task = train.TaskSpec[*Config, *Result]{
	Name: "template.spirals",
	Doc:  "the template task: an MLP on two generated spirals",
	Default: func() *Config {
		return &Config{Base: train.Base{Task: "template.spirals", Trainer: train.DefaultTrainer()},
			Hidden: 64, LR: 1e-2, Points: 500, Noise: 0.2, Batch: 64}
	},
	Run: Run,
}

// Run trains the MLP and reports its test accuracy.
func Run(s *train.Session, c *Config) (*Result, error) {
	xTrain, yTrain := spirals(c.Points, c.Noise, uint64(c.Trainer.Seed))
	xTest, yTest := spirals(c.Points/2, c.Noise, uint64(c.Trainer.Seed)+1)
	loader, err := data.NewLoader(data.LoaderOptions{N: len(yTrain), Batch: c.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) ([]int, error) { return b.Indices, nil })
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	mlp := torchmods.NewMLP(s.Store.Root().Sub("mlp"), torchmods.MLPOptions{In: 2, Hidden: c.Hidden, Out: 2, Act: torchmods.ReLU})
	lr, err := train.WarmupSchedule(c.LR, 0, steps, "cosine")
	if err != nil {
		return nil, err
	}
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, LR: lr, Opt: train.NewAdamW(s.Store, 0.9, 0.999, 1e-8, 0),
		Loss: func(step int64, micro int) (*ts.Tensor, error) {
			idx, err := loader.Next()
			if err != nil {
				return nil, err
			}
			x, y := gather(xTrain, yTrain, idx)
			return torchmods.CrossEntropy(mlp.Forward(torchmods.FromSlice(x, []int64{int64(len(y)), 2}, s.Device), true),
				torchmods.FromSlice(y, []int64{int64(len(y))}, s.Device), torchmods.CEOptions{}), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
	})
	if err != nil {
		return nil, err
	}
	res := &Result{}
	err = torchmods.Try(func() {
		ts.NoGrad(func() {
			logits := mlp.Forward(torchmods.FromSlice(xTest, []int64{int64(len(yTest)), 2}, s.Device), false)
			correct := torchmods.CountCorrect(logits, torchmods.FromSlice(yTest, []int64{int64(len(yTest))}, s.Device))
			res.TestAccuracy = float64(correct) / float64(len(yTest))
		})
	})
	fmt.Fprintf(s.W, "test accuracy %.2f%% after %d steps\n", 100*res.TestAccuracy, steps)
	return res, err
}

// spirals draws n points of each of two interleaved spirals, jittered.
func spirals(n int, noise float64, seed uint64) (x []float32, y []int64) {
	rng := rand.New(rand.NewPCG(seed, 0x5b1a))
	for i := range 2 * n {
		r := 3 * math.Sqrt(rng.Float64())
		a := 2*r + math.Pi*float64(i%2)
		x = append(x, float32(r*math.Cos(a)+noise*rng.NormFloat64()), float32(r*math.Sin(a)+noise*rng.NormFloat64()))
		y = append(y, int64(i%2))
	}
	return x, y
}

func gather(x []float32, y []int64, idx []int) (bx []float32, by []int64) {
	for _, i := range idx {
		bx, by = append(bx, x[2*i], x[2*i+1]), append(by, y[i])
	}
	return bx, by
}
