package mae

import (
	"fmt"
	"io"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// OptimConfig is the learning-rate recipe shared by the three tasks, as the
// official scripts take it: the absolute lr is blr * effective batch / 256
// unless lr is given, with a linear warm-up over warmup_epochs and a
// half-cycle cosine to min_lr, updated every iteration (util/lr_sched.py).
type OptimConfig struct {
	BLR          float64    `toml:"blr"`           // base learning rate
	LR           float64    `toml:"lr"`            // absolute learning rate; 0 derives it from blr
	MinLR        float64    `toml:"min_lr"`        // the cosine's floor
	WeightDecay  float64    `toml:"weight_decay"`  // decoupled (AdamW) or LARS weight decay
	Betas        [2]float64 `toml:"betas"`         // AdamW's betas
	WarmupEpochs float64    `toml:"warmup_epochs"` // linear warm-up length in epochs
}

// Validate checks the keys under [optim], naming the one at fault.
func (o OptimConfig) Validate() error {
	switch {
	case o.BLR <= 0 && o.LR <= 0:
		return config.Field("optim.blr", "must be positive (or set optim.lr), got %v", o.BLR)
	case o.LR < 0 || o.MinLR < 0:
		return config.Field("optim.min_lr", "learning rates must not be negative")
	case o.WeightDecay < 0:
		return config.Field("optim.weight_decay", "must not be negative, got %v", o.WeightDecay)
	case o.Betas[0] < 0 || o.Betas[0] >= 1 || o.Betas[1] < 0 || o.Betas[1] >= 1:
		return config.Field("optim.betas", "must be in [0, 1), got %v", o.Betas)
	case o.WarmupEpochs < 0:
		return config.Field("optim.warmup_epochs", "must not be negative, got %v", o.WarmupEpochs)
	}
	return nil
}

// AbsLR is the learning rate for an effective batch (micro-batch x accumulation).
func (o OptimConfig) AbsLR(effBatch int64) float64 {
	if o.LR > 0 {
		return o.LR
	}
	return o.BLR * float64(effBatch) / 256
}

// Schedule is util/lr_sched.adjust_learning_rate at the fractional epoch
// step/perEpoch: lr*epoch/warmup during warm-up, then
// min + (lr-min)/2 * (1 + cos(pi (epoch-warmup)/(epochs-warmup))).
func Schedule(lr, minLR, warmupEpochs, epochs float64, perEpoch int64) train.Schedule {
	return func(step int64) float64 {
		epoch := float64(step) / float64(perEpoch)
		if epoch < warmupEpochs {
			return lr * epoch / warmupEpochs
		}
		return minLR + (lr-minLR)*0.5*(1+math.Cos(math.Pi*(epoch-warmupEpochs)/(epochs-warmupEpochs)))
	}
}

// PretrainConfig is the "mae.pretrain" task's config.
type PretrainConfig struct {
	train.Base
	Model     Options     `toml:"model"`
	MaskRatio float64     `toml:"mask_ratio"` // fraction of patches removed (0.75)
	Optim     OptimConfig `toml:"optim"`
	Data      DataConfig  `toml:"data"`
}

// DefaultPretrain is the paper's ViT-B recipe on Fashion-MNIST-sized
// defaults; the configs in configs/mae set every value.
func DefaultPretrain() *PretrainConfig {
	return &PretrainConfig{Base: train.Base{Task: "mae.pretrain", Trainer: train.DefaultTrainer()}, Model: ViTBase16(), MaskRatio: 0.75,
		Optim: OptimConfig{BLR: 1.5e-4, WeightDecay: 0.05, Betas: [2]float64{0.9, 0.95}, WarmupEpochs: 40},
		Data:  DataConfig{Kind: "fashion_mnist", Batch: 64, Scale: [2]float64{0.2, 1}, Flip: true, Crop: "retry"}}
}

// Validate checks the task's sections, naming the key.
func (c *PretrainConfig) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	if c.MaskRatio < 0 || c.MaskRatio >= 1 {
		return config.Field("mask_ratio", "must be in [0, 1), got %v", c.MaskRatio)
	}
	if KeepCount(c.Model.NumPatches(), c.MaskRatio) == c.Model.NumPatches() {
		return config.Field("mask_ratio", "%v removes no patch of %d", c.MaskRatio, c.Model.NumPatches())
	}
	if err := c.Optim.Validate(); err != nil {
		return err
	}
	return c.Data.validate()
}

// NumPatches is L for these options.
func (o Options) NumPatches() int64 { g := o.ImgSize / o.Patch; return g * g }

// PretrainResult is what a pre-training run reports.
type PretrainResult struct {
	TestMaskedLoss    float64 `json:"test_masked_loss"`    // the loss on the test set's removed patches (fixed masks)
	PatchMeanBaseline float64 `json:"patch_mean_baseline"` // the same loss when each removed patch is predicted by its own mean
	Steps             int64   `json:"steps"`
	Seconds           float64 `json:"seconds"`
}

// PretrainTask is "mae.pretrain".
var PretrainTask = train.TaskSpec[*PretrainConfig, *PretrainResult]{
	Name:    "mae.pretrain",
	Doc:     "MAE pre-training: mask 75% of patches, encode the rest, reconstruct the pixels",
	Default: DefaultPretrain,
	Run:     Pretrain,
	Added:   map[string]any{"data.crop": "retry"}, // the ten-try crop, before the key existed
	Eval: func(c *PretrainConfig, checkpoint string, w io.Writer) error {
		dev, err := train.DeviceOf(c.Trainer)
		if err != nil {
			return err
		}
		store := torchmods.NewStore(dev)
		defer store.Drop()
		m, err := New(store.Root(), c.Model)
		if err != nil {
			return err
		}
		if _, err := LoadInto(store, checkpoint, c.Model, true, w); err != nil {
			return err
		}
		test, err := openImages(c.Data, "test", c.Model.ImgSize, c.Model.InChans, trainExtras{})
		if err != nil {
			return err
		}
		r, err := maskedLoss(m, test, c.MaskRatio, c.Trainer.Seed, dev)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "test masked-patch loss %.4f (patch-mean baseline %.4f)\n", r.TestMaskedLoss, r.PatchMeanBaseline)
		return nil
	},
}

// Pretrain runs main_pretrain.py's loop: AdamW (no decay on biases and 1-D
// parameters), the per-iteration schedule, random masking each step.
func Pretrain(s *train.Session, c *PretrainConfig) (*PretrainResult, error) {
	trainSet, testSet, err := openSplits(c.Data, c.Model, trainExtras{})
	if err != nil {
		return nil, err
	}
	loader, err := trainSet.loader(c.Data, c.Trainer.Seed)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	m, err := New(s.Store.Root(), c.Model)
	if err != nil {
		return nil, err
	}
	// main_pretrain.py's optim_factory.add_weight_decay exempts only 1-D
	// parameters and biases: cls_token and mask_token are decayed.
	for _, name := range []string{"cls_token", "mask_token"} {
		p, _ := s.Store.Param(name)
		p.NoDecay = false
	}
	opt := train.NewAdamW(s.Store, c.Optim.Betas[0], c.Optim.Betas[1], 1e-8, c.Optim.WeightDecay)
	lr := c.Optim.AbsLR(c.Data.Batch * c.Trainer.Accumulate * int64(s.WorldSize())) // main_*.py: eff_batch_size = batch_size * accum_iter * world_size
	sched := Schedule(lr, c.Optim.MinLR, c.Optim.WarmupEpochs, float64(steps)/float64(perEpoch), perEpoch)
	fmt.Fprintf(s.W, "mae pretrain: %d train images, %d steps (%.1f epochs), lr %.3g, %d of %d patches visible\n",
		trainSet.n, steps, float64(steps)/float64(perEpoch), lr, KeepCount(c.Model.NumPatches(), c.MaskRatio), c.Model.NumPatches())
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched,
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			x, _ := b.tensors(s.Device)
			return m.Forward(x, c.MaskRatio, nil, true).Loss, nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(int64) (map[string]float64, error) {
			r, err := maskedLoss(m, testSet, c.MaskRatio, c.Trainer.Seed, s.Device)
			if err != nil {
				return nil, err
			}
			return map[string]float64{"test_masked_loss": r.TestMaskedLoss, "patch_mean_baseline": r.PatchMeanBaseline}, nil
		},
	})
	if err != nil {
		return nil, err
	}
	res, err := maskedLoss(m, testSet, c.MaskRatio, c.Trainer.Seed, s.Device)
	if err != nil {
		return nil, err
	}
	res.Steps, res.Seconds = steps, s.Elapsed().Seconds()
	fmt.Fprintf(s.W, "test masked-patch loss %.4f (patch-mean baseline %.4f), %d steps in %.0f s\n", res.TestMaskedLoss, res.PatchMeanBaseline, steps, res.Seconds)
	return res, nil
}

// maskedLoss measures the reconstruction loss on the test set's removed
// patches with masks drawn from a fixed seed (the same every evaluation),
// and the baseline that predicts every removed patch by its own mean
// value: 0 in norm_pix_loss's normalised space, the patch's mean pixel
// otherwise.
func maskedLoss(m *Model, set *imageSet, ratio float64, seed int64, dev gotch.Device) (*PretrainResult, error) {
	var lossSum, baseSum, n float64
	gen := newNoise(seed) // the same masks at every evaluation
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			err := set.eachEval(500, dev, func(x, _ *ts.Tensor) {
				b := x.MustSize()[0]
				noise := gen.next(b, m.NumPatches(), dev)
				out := m.Forward(x, ratio, noise, false)
				target := m.Target(x)
				base := target.MustMeanDim([]int64{-1}, true, gotch.Float, false).MustExpandAs(target, true)
				baseLoss := m.Loss(x, base, out.Mask)
				lossSum += out.Loss.Float64Values()[0] * float64(b)
				baseSum += baseLoss.Float64Values()[0] * float64(b)
				n += float64(b)
			})
			if err != nil {
				panic(err)
			}
		})
	})
	if err != nil {
		return nil, err
	}
	return &PretrainResult{TestMaskedLoss: lossSum / n, PatchMeanBaseline: baseSum / n}, nil
}

// noiseGen makes masking noise from its own Go generator, so evaluation
// masks are fixed and do not disturb libtorch's generator (and so a resumed
// run stays bit-exact).
type noiseGen struct{ seed uint64 }

func newNoise(seed int64) *noiseGen { return &noiseGen{seed: uint64(seed)} }

func (g *noiseGen) next(n, l int64, dev gotch.Device) *ts.Tensor {
	r := newRand(g.seed)
	g.seed++
	v := make([]float32, n*l)
	for i := range v {
		v[i] = r.Float32()
	}
	return torchmods.FromSlice(v, []int64{n, l}, dev)
}
