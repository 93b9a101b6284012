package mae

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// ClassifyResult is what a linear-probe or fine-tuning run reports.
type ClassifyResult struct {
	TestAccuracy float64 `json:"test_accuracy"`
	TestLoss     float64 `json:"test_loss"`
	Pretrained   string  `json:"pretrained"` // "" for a randomly initialised encoder
	Steps        int64   `json:"steps"`
	Seconds      float64 `json:"seconds"`
}

// LinprobeConfig is the "mae.linprobe" task's config (main_linprobe.py).
type LinprobeConfig struct {
	train.Base
	Model      Options     `toml:"model"`      // the encoder's sizes (decoder keys are ignored)
	Pretrained string      `toml:"pretrained"` // checkpoint to probe; "" probes a randomly initialised encoder
	Optim      OptimConfig `toml:"optim"`      // LARS: blr 0.1, weight_decay 0, warmup 10 of 90 epochs
	Data       DataConfig  `toml:"data"`
	// CacheFeatures computes the frozen encoder's features once instead
	// of every step. It gives the same numbers as the per-step encoder
	// when the training transform is deterministic (Fashion-MNIST without
	// flips), and is refused otherwise.
	CacheFeatures bool `toml:"cache_features"`
}

// DefaultLinprobe is main_linprobe.py's recipe for ViT-B, with its
// training crop: MAE's util/crop.RandomResizedCrop (data.crop "clamped").
func DefaultLinprobe() *LinprobeConfig {
	return &LinprobeConfig{Base: train.Base{Task: "mae.linprobe", Trainer: train.DefaultTrainer()}, Model: ViTBase16(),
		Optim: OptimConfig{BLR: 0.1, Betas: [2]float64{0.9, 0.999}, WarmupEpochs: 10},
		Data:  DataConfig{Kind: "fashion_mnist", Batch: 256, Scale: [2]float64{0.08, 1}, Flip: true, Crop: "clamped"}}
}

// Validate checks the task's sections, naming the key.
func (c *LinprobeConfig) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	if err := c.Optim.Validate(); err != nil {
		return err
	}
	if c.CacheFeatures && (c.Data.Kind != "fashion_mnist" || c.Data.Flip) {
		return config.Field("cache_features", "needs a deterministic training transform (data.kind fashion_mnist with data.flip false)")
	}
	return c.Data.validate()
}

// probeHead is main_linprobe.py's head: BatchNorm1d(affine=False, eps
// 1e-6) then Linear (trunc_normal std .01), named head.0.* and head.1.*.
type probeHead struct {
	bn *torchmods.BatchNorm1d
	fc *torchmods.Linear
}

func newProbeHead(p torchmods.Path, dim, classes int64) *probeHead {
	h := &probeHead{
		bn: torchmods.NewBatchNorm1d(p.Sub("0"), torchmods.BatchNormOptions{Dim: dim, Eps: 1e-6, NoAffine: true}),
		fc: torchmods.NewLinear(p.Sub("1"), torchmods.LinearOptions{In: dim, Out: classes}),
	}
	ts.NoGrad(func() {
		h.fc.Weight.Copy_(torchmods.TruncNormal(0.01)(h.fc.Weight.MustSize(), h.fc.Weight.MustDevice()))
		h.fc.Bias.MustZero_()
	})
	return h
}

func (h *probeHead) forward(f *ts.Tensor, train bool) *ts.Tensor {
	return h.fc.Forward(h.bn.Forward(f, train))
}

// LinprobeTask is "mae.linprobe".
var LinprobeTask = train.TaskSpec[*LinprobeConfig, *ClassifyResult]{
	Name:    "mae.linprobe",
	Doc:     "MAE linear probe: BatchNorm + linear head on the frozen encoder's cls token, LARS",
	Default: DefaultLinprobe,
	Run:     Linprobe,
	// The probe took the ten-try crop before data.crop existed (its
	// default is now MAE's clamped crop, so such runs differ).
	Added: map[string]any{"data.crop": "retry"},
}

// Linprobe trains the probe head on the frozen encoder and reports test accuracy.
func Linprobe(s *train.Session, c *LinprobeConfig) (*ClassifyResult, error) {
	w := s.W
	trainSet, testSet, err := openSplits(c.Data, c.Model, trainExtras{})
	if err != nil {
		return nil, err
	}
	var vit *torchmods.ViT
	if err := torchmods.Try(func() {
		vit = torchmods.NewViT(s.Store.Root(), torchmods.ViTOptions{ImgSize: c.Model.ImgSize, Patch: c.Model.Patch, InChans: c.Model.InChans,
			Dim: c.Model.Dim, Depth: c.Model.Depth, Heads: c.Model.Heads, MLPRatio: c.Model.MLPRatio, Eps: c.Model.Eps})
	}); err != nil {
		return nil, err
	}
	if c.Pretrained != "" {
		if _, err := LoadInto(s.Store, c.Pretrained, c.Model, false, w); err != nil {
			return nil, err
		}
	} else {
		fmt.Fprintln(w, "probing a randomly initialised encoder (no pretrained checkpoint)")
	}
	s.Store.Freeze() // the whole encoder; the head is made after
	head := newProbeHead(s.Store.Root().Sub("head"), c.Model.Dim, int64(trainSet.classes))
	opt := train.NewLARS(s.Store, 0.9, c.Optim.WeightDecay, 0.001)

	// The features: cached once, or the frozen encoder every step.
	var trainFeat, testFeat *ts.Tensor
	features := func(x *ts.Tensor) *ts.Tensor { return vit.Features(x, false).MustDetach(true) }
	if c.CacheFeatures {
		fmt.Fprintf(w, "computing the frozen encoder's features of %d + %d images once\n", trainSet.n, testSet.n)
		if trainFeat, err = cacheFeatures(trainSet, features, s.Device); err != nil {
			return nil, err
		}
		defer trainFeat.MustDrop()
	}
	if testFeat, err = cacheFeatures(testSet, features, s.Device); err != nil {
		return nil, err
	}
	defer testFeat.MustDrop()

	var loader *data.Loader[imageBatch]
	if c.CacheFeatures {
		loader, err = data.NewLoader(data.LoaderOptions{N: trainSet.n, Batch: int(c.Data.Batch), Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
			func(b data.Batch) (imageBatch, error) { return indexBatch(b.Indices, trainSet), nil })
	} else {
		loader, err = trainSet.loader(c.Data, c.Trainer.Seed)
	}
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	lr := c.Optim.AbsLR(c.Data.Batch * c.Trainer.Accumulate * int64(s.WorldSize())) // main_*.py: eff_batch_size = batch_size * accum_iter * world_size
	sched := Schedule(lr, c.Optim.MinLR, c.Optim.WarmupEpochs, float64(steps)/float64(perEpoch), perEpoch)
	evaluate := func() (float64, float64) {
		var correct, lossSum float64
		ts.NoGrad(func() {
			labels := indexBatch(seq(testSet.n), testSet).labels
			y := torchmods.FromSlice(labels, []int64{int64(len(labels))}, s.Device)
			logits := head.forward(testFeat, false)
			lossSum = torchmods.CrossEntropy(logits, y, torchmods.CEOptions{Reduction: torchmods.ReduceSum}).Float64Values()[0]
			correct = float64(torchmods.CountCorrect(logits, y))
		})
		return correct / float64(testSet.n), lossSum / float64(testSet.n)
	}
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched,
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			var f, y *ts.Tensor
			if c.CacheFeatures {
				f = trainFeat.MustIndexSelect(0, torchmods.FromSlice(b.indices, []int64{int64(len(b.indices))}, s.Device), false)
				y = torchmods.FromSlice(b.labels, []int64{int64(len(b.labels))}, s.Device)
			} else {
				var x *ts.Tensor
				x, y = b.tensors(s.Device)
				ts.NoGrad(func() { f = features(x) })
			}
			return torchmods.CrossEntropy(head.forward(f, true), y, torchmods.CEOptions{}), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(int64) (map[string]float64, error) {
			acc, l := evaluate()
			return map[string]float64{"test_accuracy": acc, "test_loss": l}, nil
		},
	})
	if err != nil {
		return nil, err
	}
	res := &ClassifyResult{Pretrained: c.Pretrained, Steps: steps}
	if err := torchmods.Try(func() { res.TestAccuracy, res.TestLoss = evaluate() }); err != nil {
		return nil, err
	}
	res.Seconds = s.Elapsed().Seconds()
	fmt.Fprintf(w, "linear probe: test accuracy %.2f%%, test loss %.4f, %d steps in %.0f s\n", 100*res.TestAccuracy, res.TestLoss, steps, res.Seconds)
	return res, nil
}

// indexBatch is a cached-feature batch: the examples' indices and labels.
func indexBatch(idx []int, set *imageSet) imageBatch {
	b := imageBatch{labels: make([]int64, len(idx)), indices: make([]int64, len(idx))}
	for k, i := range idx {
		b.labels[k], b.indices[k] = set.label(i), int64(i)
	}
	return b
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// cacheFeatures runs f over the whole split in evaluation mode: [N, Dim].
func cacheFeatures(set *imageSet, f func(*ts.Tensor) *ts.Tensor, dev gotch.Device) (*ts.Tensor, error) {
	var parts []*ts.Tensor
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			err := set.eachEval(500, dev, func(x, _ *ts.Tensor) {
				p := f(x)
				ts.Persist(p)
				parts = append(parts, p)
			})
			if err != nil {
				panic(err)
			}
		})
	})
	defer func() {
		for _, p := range parts {
			p.MustDrop()
		}
	}()
	if err != nil {
		return nil, err
	}
	var all *ts.Tensor
	err = torchmods.Try(func() { all = ts.MustCat(parts, 0); ts.Persist(all) })
	return all, err
}

// sampleBeta draws from Beta(a, a) through two gamma draws.
func sampleBeta(rng *rand.Rand, a float64) float64 {
	x, y := sampleGamma(rng, a), sampleGamma(rng, a)
	return x / (x + y)
}

// sampleGamma draws from Gamma(a, 1) by Marsaglia and Tsang's method
// (with the a < 1 boost).
func sampleGamma(rng *rand.Rand, a float64) float64 {
	if a < 1 {
		return sampleGamma(rng, a+1) * math.Pow(rng.Float64(), 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}
