// Package basics holds the experiments that prove the trainer on real data
// before any paper: softmax regression and an MLP classifier on
// Fashion-MNIST (configs/basics/). Fashion-MNIST's own benchmark puts
// logistic regression at about 84% and an MLP at about 87-88% test accuracy.
package basics

import (
	"fmt"
	"io"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Config is the "basics.fashion_mnist" task's config.
type Config struct {
	train.Base
	Model ModelConfig `toml:"model"`
	Optim OptimConfig `toml:"optim"`
	Data  DataConfig  `toml:"data"`
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
		Base:  train.Base{Task: "basics.fashion_mnist", Trainer: train.DefaultTrainer()},
		Model: ModelConfig{Kind: "softmax", Hidden: 256},
		Optim: OptimConfig{LR: 1e-3, Decay: "cosine"},
		Data:  DataConfig{Batch: 128},
	}
}

// Validate checks the task's sections (the framework checks [trainer]).
func (c *Config) Validate() error {
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

// Task is "basics.fashion_mnist".
var Task = train.TaskSpec[*Config, *Result]{
	Name:    "basics.fashion_mnist",
	Doc:     "softmax regression or an MLP on Fashion-MNIST",
	Default: Default,
	Run:     Run,
	Eval: func(c *Config, checkpoint string, w io.Writer) error {
		_, err := Eval(c, checkpoint, w)
		return err
	},
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

// Run trains and evaluates in the session's run directory. Resumed, it
// ends with the same weights and numbers as an uninterrupted run.
func Run(s *train.Session, c *Config) (*Result, error) {
	trainSet, err := data.FashionMNIST(c.Data.Dir, "train")
	if err != nil {
		return nil, err
	}
	testSet, err := data.FashionMNIST(c.Data.Dir, "test")
	if err != nil {
		return nil, err
	}
	n := trainSet.N
	if c.Data.TrainLimit > 0 && int(c.Data.TrainLimit) < n {
		n = int(c.Data.TrainLimit)
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: n, Batch: int(c.Data.Batch), Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) (pixelBatch, error) { return makeBatch(trainSet, b.Indices), nil })
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	model := newClassifier(s.Store, c.Model)
	sched, err := train.WarmupSchedule(c.Optim.LR, c.Optim.Warmup, steps, c.Optim.Decay)
	if err != nil {
		return nil, fmt.Errorf("optim: %w (optim.warmup must not exceed the run's steps)", err)
	}
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, LR: sched,
		Opt: train.NewAdamW(s.Store, 0.9, 0.999, 1e-8, c.Optim.WeightDecay),
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			x, y := b.tensors(s.Device)
			return torchmods.CrossEntropy(model.forward(x, true), y, torchmods.CEOptions{}), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
	})
	if err != nil {
		return nil, err
	}
	res, err := evaluate(model, testSet, s.Device)
	if err != nil {
		return nil, err
	}
	res.Steps, res.Seconds = steps, s.Elapsed().Seconds()
	fmt.Fprintf(s.W, "test accuracy %.2f%%, test loss %.4f, %d steps in %.0f s\n", 100*res.TestAccuracy, res.TestLoss, steps, res.Seconds)
	return res, nil
}

func newClassifier(store *torchmods.Store, m ModelConfig) classifier {
	const in, classes = 28 * 28, 10
	if m.Kind == "softmax" {
		return classifier{fc: torchmods.NewLinear(store.Root().Sub("fc"), torchmods.LinearOptions{In: in, Out: classes})}
	}
	return classifier{mlp: torchmods.NewMLP(store.Root().Sub("mlp"), torchmods.MLPOptions{In: in, Hidden: m.Hidden, Out: classes, Act: torchmods.ReLU, Dropout: m.Dropout})}
}

// pixelBatch is a batch as the loader's workers make it: normalised pixels
// and labels in Go slices, turned into tensors on the training goroutine.
type pixelBatch struct {
	pixels []float32
	labels []int64
}

func makeBatch(set *data.Images, idx []int) pixelBatch {
	in := set.Rows * set.Cols
	b := pixelBatch{pixels: make([]float32, len(idx)*in), labels: make([]int64, len(idx))}
	for k, i := range idx {
		for j, v := range set.Image(i) {
			b.pixels[k*in+j] = (float32(v)/255 - pixelMean) / pixelStd
		}
		b.labels[k] = int64(set.Labels[i])
	}
	return b
}

func (b pixelBatch) tensors(dev gotch.Device) (x, y *ts.Tensor) {
	n := int64(len(b.labels))
	x = torchmods.FromSlice(b.pixels, []int64{n, int64(len(b.pixels)) / n}, dev)
	y = torchmods.FromSlice(b.labels, []int64{int64(len(b.labels))}, dev)
	return x, y
}

// evaluate measures accuracy and mean loss on the whole set.
func evaluate(model classifier, set *data.Images, dev gotch.Device) (*Result, error) {
	var correct, lossSum float64
	err := data.Sequential(set.N, 1000, func(idx []int) error {
		s := ts.NewScope()
		defer s.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				x, y := makeBatch(set, idx).tensors(dev)
				logits := model.forward(x, false)
				lossSum += torchmods.CrossEntropy(logits, y, torchmods.CEOptions{Reduction: torchmods.ReduceSum}).Float64Values()[0]
				correct += float64(torchmods.CountCorrect(logits, y))
			})
		})
	})
	if err != nil {
		return nil, err
	}
	return &Result{TestAccuracy: correct / float64(set.N), TestLoss: lossSum / float64(set.N)}, nil
}

// Eval loads a checkpoint's (or any weight file's) parameters into the
// config's model and evaluates it on the test set.
func Eval(c *Config, checkpoint string, w io.Writer) (*Result, error) {
	testSet, err := data.FashionMNIST(c.Data.Dir, "test")
	if err != nil {
		return nil, err
	}
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return nil, err
	}
	store := torchmods.NewStore(dev)
	defer store.Drop()
	model := newClassifier(store, c.Model)
	if err := torchmods.LoadModel(checkpoint, store); err != nil {
		return nil, err
	}
	res, err := evaluate(model, testSet, dev)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "%s: test accuracy %.2f%%, test loss %.4f\n", checkpoint, 100*res.TestAccuracy, res.TestLoss)
	return res, nil
}
