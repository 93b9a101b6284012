// Package basics holds the experiments that prove the trainer on real data
// before any paper: softmax regression and an MLP classifier on
// Fashion-MNIST (configs/basics/). Fashion-MNIST's own benchmark puts
// logistic regression at about 84% and an MLP at about 87-88% test accuracy.
package basics

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Config is the "basics.fashion_mnist" task's config.
type Config struct {
	Task    string              `toml:"task"`
	Trainer train.TrainerConfig `toml:"trainer"`
	Model   ModelConfig         `toml:"model"`
	Optim   OptimConfig         `toml:"optim"`
	Data    DataConfig          `toml:"data"`
}

// ModelConfig picks the classifier.
type ModelConfig struct {
	Kind    string  `toml:"kind"`    // "softmax" (default) or "mlp"
	Hidden  int64   `toml:"hidden"`  // MLP hidden width (default 256)
	Dropout float64 `toml:"dropout"` // MLP dropout (default 0)
}

// OptimConfig is AdamW with a warm-up schedule.
type OptimConfig struct {
	LR          float64 `toml:"lr"`           // peak learning rate (default 1e-3)
	WeightDecay float64 `toml:"weight_decay"` // decoupled, not on biases (default 0)
	Warmup      int64   `toml:"warmup"`       // warm-up steps (default 0)
	Decay       string  `toml:"decay"`        // "cosine" (default), "linear" or "constant"
}

// DataConfig locates the data.
type DataConfig struct {
	Dir        string `toml:"dir"`         // Fashion-MNIST folder (default: Debian's)
	Batch      int64  `toml:"batch"`       // batch size (default 128)
	TrainLimit int64  `toml:"train_limit"` // use the first N training images; 0 for all
}

// Default returns the documented defaults.
func Default() *Config {
	return &Config{
		Task:    "basics.fashion_mnist",
		Trainer: train.DefaultTrainer(),
		Model:   ModelConfig{Kind: "softmax", Hidden: 256},
		Optim:   OptimConfig{LR: 1e-3, Decay: "cosine"},
		Data:    DataConfig{Batch: 128},
	}
}

// Validate checks every section.
func (c *Config) Validate() error {
	if err := c.Trainer.Validate(); err != nil {
		return err
	}
	switch {
	case c.Model.Kind != "softmax" && c.Model.Kind != "mlp":
		return config.Field("model.kind", `must be "softmax" or "mlp", got %q`, c.Model.Kind)
	case c.Model.Hidden <= 0:
		return config.Field("model.hidden", "must be positive, got %d", c.Model.Hidden)
	case c.Model.Dropout < 0 || c.Model.Dropout >= 1:
		return config.Field("model.dropout", "must be in [0, 1), got %v", c.Model.Dropout)
	case c.Optim.LR <= 0:
		return config.Field("optim.lr", "must be positive, got %v", c.Optim.LR)
	case c.Optim.WeightDecay < 0:
		return config.Field("optim.weight_decay", "must not be negative, got %v", c.Optim.WeightDecay)
	case c.Optim.Warmup < 0:
		return config.Field("optim.warmup", "must not be negative, got %d", c.Optim.Warmup)
	case c.Data.Batch <= 0:
		return config.Field("data.batch", "must be positive, got %d", c.Data.Batch)
	case c.Data.TrainLimit < 0:
		return config.Field("data.train_limit", "must not be negative, got %d", c.Data.TrainLimit)
	}
	switch c.Optim.Decay {
	case "cosine", "linear", "constant":
	default:
		return config.Field("optim.decay", `must be "cosine", "linear" or "constant", got %q`, c.Optim.Decay)
	}
	return nil
}

func init() {
	train.Register(train.Task{
		Name:   "basics.fashion_mnist",
		Doc:    "softmax regression or an MLP on Fashion-MNIST",
		Config: func() any { return Default() },
		Run: func(cfg any, out string, resume bool, w io.Writer) error {
			_, err := Run(cfg.(*Config), out, resume, w)
			return err
		},
	})
}

// Result is what a run reports (and writes to results.json).
type Result struct {
	TestAccuracy float64 `json:"test_accuracy"`
	TestLoss     float64 `json:"test_loss"`
	Steps        int64   `json:"steps"`
	Seconds      float64 `json:"seconds"`
}

// Fashion-MNIST's pixel mean and standard deviation over the training set, on [0, 1].
const pixelMean, pixelStd = 0.2860, 0.3530

type classifier struct {
	fc  *torchmods.Linear // softmax regression
	mlp *torchmods.MLP
}

func (c classifier) forward(x *ts.Tensor, train bool) *ts.Tensor {
	if c.fc != nil {
		return c.fc.Forward(x)
	}
	return c.mlp.Forward(x, train)
}

// loaderState is what a checkpoint needs of the data order: the current
// epoch's permutation and the Go generator that makes the next one.
type loaderState struct {
	Order []int  `json:"order"`
	RNG   []byte `json:"rng"`
}

// Run trains and evaluates, writing metrics.jsonl, checkpoints and
// results.json to out. With resume it continues from the newest checkpoint
// in out, and ends with the same weights and numbers as an uninterrupted run.
func Run(c *Config, out string, resume bool, w io.Writer) (*Result, error) {
	dev := gotch.CPU
	if c.Trainer.Device == "cuda" {
		if !gotch.CUDA.IsAvailable() {
			return nil, fmt.Errorf("trainer.device is cuda, but libtorch sees no CUDA device (see repro info)")
		}
		dev = gotch.CudaBuilder(0)
	}
	trainSet, err := data.FashionMNIST(c.Data.Dir, "train")
	if err != nil {
		return nil, err
	}
	testSet, err := data.FashionMNIST(c.Data.Dir, "test")
	if err != nil {
		return nil, err
	}
	n := int64(trainSet.N)
	if c.Data.TrainLimit > 0 && c.Data.TrainLimit < n {
		n = c.Data.TrainLimit
	}
	perEpoch := n / c.Data.Batch
	if perEpoch == 0 {
		return nil, fmt.Errorf("data.batch %d is larger than the %d training images", c.Data.Batch, n)
	}
	steps := c.Trainer.MaxSteps
	if steps == 0 {
		steps = c.Trainer.Epochs * perEpoch
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	ts.ManualSeed(c.Trainer.Seed)
	pcg := rand.NewPCG(uint64(c.Trainer.Seed), 0x5eed)
	rng := rand.New(pcg)
	store := torchmods.NewStore(dev)
	defer store.Drop()
	const in, classes = 28 * 28, 10
	var model classifier
	if c.Model.Kind == "softmax" {
		model.fc = torchmods.NewLinear(store.Root().Sub("fc"), torchmods.LinearOptions{In: in, Out: classes})
	} else {
		model.mlp = torchmods.NewMLP(store.Root().Sub("mlp"), torchmods.MLPOptions{In: in, Hidden: c.Model.Hidden, Out: classes, Act: torchmods.ReLU, Dropout: c.Model.Dropout})
	}
	opt := train.NewAdamW(store, 0.9, 0.999, 1e-8, c.Optim.WeightDecay)
	sched, err := train.WarmupSchedule(c.Optim.LR, c.Optim.Warmup, steps, c.Optim.Decay)
	if err != nil {
		return nil, fmt.Errorf("optim: %w (optim.warmup must not exceed the run's steps)", err)
	}

	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	var start0 int64
	if resume {
		ck, err := train.LatestCheckpoint(out)
		if err != nil {
			return nil, err
		}
		if ck == "" {
			return nil, fmt.Errorf("nothing to resume: %s has no checkpoint", out)
		}
		var ls loaderState
		if start0, err = train.LoadCheckpoint(ck, store, opt, &ls); err != nil {
			return nil, err
		}
		if int64(len(ls.Order)) != n {
			return nil, fmt.Errorf("%s: the checkpoint's data order has %d items, this config %d", ck, len(ls.Order), n)
		}
		order = ls.Order
		if err := pcg.UnmarshalBinary(ls.RNG); err != nil {
			return nil, fmt.Errorf("%s: %w", ck, err)
		}
		fmt.Fprintf(w, "resuming from %s at step %d\n", ck, start0)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resume {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	metrics, err := os.OpenFile(filepath.Join(out, "metrics.jsonl"), flags, 0o644)
	if err != nil {
		return nil, err
	}
	defer metrics.Close()
	batch := func(set *data.Images, idx []int) (*ts.Tensor, *ts.Tensor) {
		px := make([]float32, len(idx)*in)
		lb := make([]int64, len(idx))
		for b, i := range idx {
			for j, v := range set.Image(i) {
				px[b*in+j] = (float32(v)/255 - pixelMean) / pixelStd
			}
			lb[b] = int64(set.Labels[i])
		}
		x := ts.MustOfSlice(px).MustView([]int64{int64(len(idx)), in}, true).MustTo(dev, true)
		y := ts.MustOfSlice(lb).MustTo(dev, true)
		return x, y
	}
	start := time.Now()
	var trainLossSum float64 // over the current logging interval
	var trainLossN int
	loop := &train.Loop{Steps: steps, Step: func(step int64) (train.StepResult, error) {
		k := step % perEpoch
		if k == 0 { // a new epoch: reshuffle with the seeded generator
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		x, y := batch(trainSet, order[k*c.Data.Batch:(k+1)*c.Data.Batch])
		var loss float64
		err := torchmods.Try(func() {
			l := model.forward(x, true).MustCrossEntropyLoss(y, ts.None, 1, -100, 0, false)
			if err := l.Backward(); err != nil {
				panic(err)
			}
			loss = l.Float64Values()[0]
		})
		if err != nil {
			return train.StepResult{}, err
		}
		lr := sched(step)
		trainLossSum, trainLossN = trainLossSum+loss, trainLossN+1
		return train.StepResult{Loss: loss, LR: lr}, opt.Step(lr)
	}}
	loop.Add(train.Hook{Name: "metrics", Every: c.Trainer.LogEvery, Fn: func(step int64, r train.StepResult) error {
		mean := trainLossSum / float64(max(trainLossN, 1)) // the interval's mean training loss
		trainLossSum, trainLossN = 0, 0
		return json.NewEncoder(metrics).Encode(map[string]any{"step": step + 1, "epoch": float64(step+1) / float64(perEpoch), "lr": r.LR, "loss": mean,
			"steps_per_s": float64(step+1-start0) / time.Since(start).Seconds()})
	}})
	loop.Add(train.ProgressHook(w, c.Trainer.LogEvery, steps))
	loop.Add(train.Hook{Name: "checkpoint", Every: c.Trainer.CheckpointEvery, Fn: func(step int64, r train.StepResult) error {
		st, err := pcg.MarshalBinary()
		if err != nil {
			return err
		}
		return train.SaveCheckpoint(out, step+1, store, opt, loaderState{Order: order, RNG: st}, c.Trainer.KeepCheckpoints)
	}})
	if err := loop.Run(start0); err != nil {
		return nil, err
	}

	// Evaluate on the whole test set.
	var correct, lossSum float64
	idx := make([]int, 0, 1000)
	for i := 0; i < testSet.N; i += 1000 {
		idx = idx[:0]
		for j := i; j < i+1000 && j < testSet.N; j++ {
			idx = append(idx, j)
		}
		s := ts.NewScope()
		err := torchmods.Try(func() {
			ts.NoGrad(func() {
				x, y := batch(testSet, idx)
				logits := model.forward(x, false)
				lossSum += logits.MustCrossEntropyLoss(y, ts.None, 2, -100, 0, false).Float64Values()[0] // sum
				correct += logits.MustArgmax([]int64{1}, false, false).MustEqTensor(y, true).MustSum(gotch.Float, true).Float64Values()[0]
			})
		})
		s.Close()
		if err != nil {
			return nil, err
		}
	}
	res := &Result{TestAccuracy: correct / float64(testSet.N), TestLoss: lossSum / float64(testSet.N), Steps: steps, Seconds: time.Since(start).Seconds()}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "test accuracy %.2f%%, test loss %.4f, %d steps in %.0f s\n", 100*res.TestAccuracy, res.TestLoss, steps, res.Seconds)
	return res, nil
}
