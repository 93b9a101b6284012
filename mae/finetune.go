package mae

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// FinetuneConfig is the "mae.finetune" task's config (main_finetune.py).
type FinetuneConfig struct {
	train.Base
	Model      Options     `toml:"model"`       // the encoder's sizes (decoder keys are ignored)
	DropPath   float64     `toml:"drop_path"`   // stochastic depth (B 0.1, L 0.2, H 0.3)
	GlobalPool bool        `toml:"global_pool"` // mean-pool the patch tokens through fc_norm (the recipe) instead of the cls token
	Pretrained string      `toml:"pretrained"`  // checkpoint to start from; "" trains from scratch
	LayerDecay float64     `toml:"layer_decay"` // layer-wise lr decay (B 0.65, L and H 0.75)
	Smoothing  float64     `toml:"smoothing"`   // label smoothing (0.1)
	Mixup      float64     `toml:"mixup"`       // mixup's Beta alpha (0.8); 0 turns it off
	Cutmix     float64     `toml:"cutmix"`      // cutmix's Beta alpha (1.0); 0 turns it off
	MixupProb  float64     `toml:"mixup_prob"`  // chance a batch is mixed at all (1.0)
	SwitchProb float64     `toml:"switch_prob"` // chance of cutmix rather than mixup when both are on (0.5)
	Optim      OptimConfig `toml:"optim"`
	Data       DataConfig  `toml:"data"`

	// RandAugment is timm's RandAugment spec (--aa), run on the 8-bit
	// image after the crop and flip: "rand-m9-mstd0.5-inc1" is 2 ops of
	// the increasing set, each with chance 0.5, at magnitude N(9, 0.5)
	// clipped to [0, 10]. "" turns it off.
	RandAugment string `toml:"rand_augment"`
	// Reprob is random erasing's chance per image (--reprob 0.25), run on
	// the normalised image; 0 turns it off. Remode is what fills the box
	// ("pixel": per-pixel normal noise, "rand", "const") and Recount the
	// most boxes per image (1).
	Reprob  float64 `toml:"reprob"`
	Remode  string  `toml:"remode"`
	Recount int     `toml:"recount"`
}

// DefaultFinetune is main_finetune.py's recipe for ViT-B, its augmentation
// included: RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25 "pixel".
func DefaultFinetune() *FinetuneConfig {
	return &FinetuneConfig{Base: train.Base{Task: "mae.finetune", Trainer: train.DefaultTrainer()}, Model: ViTBase16(), DropPath: 0.1, GlobalPool: true,
		LayerDecay: 0.65, Smoothing: 0.1, Mixup: 0.8, Cutmix: 1.0, MixupProb: 1, SwitchProb: 0.5,
		RandAugment: "rand-m9-mstd0.5-inc1", Reprob: 0.25, Remode: "pixel", Recount: 1,
		Optim: OptimConfig{BLR: 5e-4, MinLR: 1e-6, WeightDecay: 0.05, Betas: [2]float64{0.9, 0.999}, WarmupEpochs: 5},
		Data:  DataConfig{Kind: "fashion_mnist", Batch: 64, Scale: [2]float64{0.08, 1}, Flip: true, Crop: "retry"}}
}

// extras are the training transform's RandAugment and random erasing.
func (c *FinetuneConfig) extras() trainExtras {
	return trainExtras{randAugment: c.RandAugment, reprob: c.Reprob, remode: c.Remode, recount: c.Recount}
}

// Validate checks the task's sections, naming the key.
func (c *FinetuneConfig) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	switch {
	case c.DropPath < 0 || c.DropPath >= 1:
		return config.Field("drop_path", "must be in [0, 1), got %v", c.DropPath)
	case c.LayerDecay <= 0 || c.LayerDecay > 1:
		return config.Field("layer_decay", "must be in (0, 1], got %v", c.LayerDecay)
	case c.Smoothing < 0 || c.Smoothing >= 1:
		return config.Field("smoothing", "must be in [0, 1), got %v", c.Smoothing)
	case c.Mixup < 0 || c.Cutmix < 0:
		return config.Field("mixup", "mixup and cutmix alphas must not be negative")
	case c.MixupProb < 0 || c.MixupProb > 1 || c.SwitchProb < 0 || c.SwitchProb > 1:
		return config.Field("mixup_prob", "mixup_prob and switch_prob must be in [0, 1]")
	case c.Reprob < 0 || c.Reprob > 1:
		return config.Field("reprob", "must be in [0, 1], got %v", c.Reprob)
	case c.Remode != "pixel" && c.Remode != "rand" && c.Remode != "const":
		return config.Field("remode", `must be "pixel", "rand" or "const", got %q`, c.Remode)
	case c.Recount < 1:
		return config.Field("recount", "must be at least 1, got %d", c.Recount)
	}
	if c.RandAugment != "" {
		if _, err := data.ParseRandAugment(c.RandAugment, data.ImageNetMean, data.Bicubic); err != nil {
			return config.Field("rand_augment", "%v", err)
		}
	}
	if err := c.Optim.Validate(); err != nil {
		return err
	}
	return c.Data.validate()
}

// FinetuneTask is "mae.finetune".
var FinetuneTask = train.TaskSpec[*FinetuneConfig, *ClassifyResult]{
	Name:    "mae.finetune",
	Doc:     "MAE fine-tuning (or training from scratch) of a ViT classifier: layer-wise lr decay, drop path, label smoothing, mixup/cutmix, RandAugment, random erasing",
	Default: DefaultFinetune,
	Run:     Finetune,
	// Keys added after the first runs, with what their absence meant: the
	// ten-try crop, and neither RandAugment nor random erasing.
	Added: map[string]any{"data.crop": "retry", "rand_augment": "", "reprob": 0.0, "remode": "pixel", "recount": 1},
	Eval: func(c *FinetuneConfig, checkpoint string, w io.Writer) error {
		dev, err := train.DeviceOf(c.Trainer)
		if err != nil {
			return err
		}
		test, err := openImages(c.Data, "test", c.Model.ImgSize, c.Model.InChans, trainExtras{})
		if err != nil {
			return err
		}
		store := torchmods.NewStore(dev)
		defer store.Drop()
		vit, err := newClassifier(store, c, int64(test.classes))
		if err != nil {
			return err
		}
		if err := torchmods.LoadModel(checkpoint, store); err != nil {
			return err
		}
		acc, loss, err := classify(vit, test, dev)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: test accuracy %.2f%%, test loss %.4f\n", checkpoint, 100*acc, loss)
		return nil
	},
}

func newClassifier(store *torchmods.Store, c *FinetuneConfig, classes int64) (vit *torchmods.ViT, err error) {
	err = torchmods.Try(func() {
		vit = torchmods.NewViT(store.Root(), torchmods.ViTOptions{ImgSize: c.Model.ImgSize, Patch: c.Model.Patch, InChans: c.Model.InChans,
			Dim: c.Model.Dim, Depth: c.Model.Depth, Heads: c.Model.Heads, MLPRatio: c.Model.MLPRatio, Eps: c.Model.Eps,
			DropPath: c.DropPath, GlobalPool: c.GlobalPool, Classes: classes})
	})
	return vit, err
}

// classify measures test accuracy and mean cross-entropy.
func classify(vit *torchmods.ViT, set *imageSet, dev gotch.Device) (acc, loss float64, err error) {
	var correct, lossSum float64
	err = torchmods.Try(func() {
		ts.NoGrad(func() {
			if err := set.eachEval(500, dev, func(x, y *ts.Tensor) {
				logits := vit.Forward(x, false)
				lossSum += torchmods.CrossEntropy(logits, y, torchmods.CEOptions{Reduction: torchmods.ReduceSum}).Float64Values()[0]
				correct += float64(torchmods.CountCorrect(logits, y))
			}); err != nil {
				panic(err)
			}
		})
	})
	return correct / float64(set.n), lossSum / float64(set.n), err
}

// Finetune trains the ViT classifier, from a pretrained checkpoint or from
// scratch, with main_finetune.py's recipe: AdamW over layer-wise-decayed
// parameter groups (no decay on 1-D parameters, cls_token and pos_embed),
// the per-iteration schedule, drop path, RandAugment and random erasing in
// the training transform, and mixup/cutmix with smoothed soft targets (or
// label-smoothed cross-entropy when mixing is off).
func Finetune(s *train.Session, c *FinetuneConfig) (*ClassifyResult, error) {
	w := s.W
	trainSet, testSet, err := openSplits(c.Data, c.Model, c.extras())
	if err != nil {
		return nil, err
	}
	classes := int64(trainSet.classes)
	vit, err := newClassifier(s.Store, c, classes)
	if err != nil {
		return nil, err
	}
	if c.Pretrained != "" && !s.Resuming() {
		if _, err := LoadInto(s.Store, c.Pretrained, c.Model, false, w); err != nil {
			return nil, err
		}
	} else if c.Pretrained == "" {
		fmt.Fprintln(w, "training from scratch (no pretrained checkpoint)")
	}
	opt := train.NewAdamW(s.Store, c.Optim.Betas[0], c.Optim.Betas[1], 1e-8, c.Optim.WeightDecay)
	opt.LRScale = torchmods.ViTLayerDecay(s.Store, int(c.Model.Depth), c.LayerDecay)
	mix := mixer{mixup: c.Mixup, cutmix: c.Cutmix, prob: c.MixupProb, switchProb: c.SwitchProb, smoothing: c.Smoothing, classes: int(classes)}
	loader, err := data.NewLoader(data.LoaderOptions{N: trainSet.n, Batch: int(c.Data.Batch), Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed), Workers: c.Data.Workers},
		func(b data.Batch) (imageBatch, error) {
			rng := b.Rand()
			ib, err := trainSet.batch(b.Indices, rng, true)
			if err == nil && mix.active() {
				mix.apply(&ib, rng)
			}
			return ib, err
		})
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
	fmt.Fprintf(w, "mae finetune: %d train images, %d steps (%.1f epochs), lr %.3g, RandAugment %q, random erasing %g\n",
		trainSet.n, steps, float64(steps)/float64(perEpoch), lr, c.RandAugment, c.Reprob)
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched,
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			x, y := b.tensors(s.Device)
			logits := vit.Forward(x, true)
			if b.soft != nil { // mixup/cutmix's soft targets
				return torchmods.SoftTargetCrossEntropy(logits, torchmods.FromSlice(b.soft, []int64{int64(len(b.labels)), classes}, s.Device)), nil
			}
			return torchmods.CrossEntropy(logits, y, torchmods.CEOptions{LabelSmoothing: c.Smoothing}), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(int64) (map[string]float64, error) {
			acc, l, err := classify(vit, testSet, s.Device)
			return map[string]float64{"test_accuracy": acc, "test_loss": l}, err
		},
	})
	if err != nil {
		return nil, err
	}
	res := &ClassifyResult{Pretrained: c.Pretrained, Steps: steps}
	if res.TestAccuracy, res.TestLoss, err = classify(vit, testSet, s.Device); err != nil {
		return nil, err
	}
	res.Seconds = s.Elapsed().Seconds()
	fmt.Fprintf(w, "fine-tune: test accuracy %.2f%%, test loss %.4f, %d steps in %.0f s\n", 100*res.TestAccuracy, res.TestLoss, steps, res.Seconds)
	return res, nil
}

// mixer is timm's Mixup in "batch" mode, as main_finetune.py sets it up:
// with probability prob a batch is mixed, by cutmix with probability
// switchProb when both are on, else mixup; lambda ~ Beta(alpha, alpha);
// image k is mixed with image n-1-k (the batch flipped), cutmix's lambda is
// corrected to the pasted box's area, and the targets are smoothed one-hot
// vectors mixed by the same lambda.
type mixer struct {
	mixup, cutmix, prob, switchProb, smoothing float64
	classes                                    int
}

func (m mixer) active() bool { return (m.mixup > 0 || m.cutmix > 0) && m.prob > 0 }

func (m mixer) apply(b *imageBatch, rng *rand.Rand) {
	n, c, h, w := int(b.shape[0]), int(b.shape[1]), int(b.shape[2]), int(b.shape[3])
	lam := 1.0
	useCutmix := false
	if rng.Float64() < m.prob {
		switch {
		case m.mixup > 0 && m.cutmix > 0:
			useCutmix = rng.Float64() < m.switchProb
			if useCutmix {
				lam = sampleBeta(rng, m.cutmix)
			} else {
				lam = sampleBeta(rng, m.mixup)
			}
		case m.mixup > 0:
			lam = sampleBeta(rng, m.mixup)
		default:
			useCutmix, lam = true, sampleBeta(rng, m.cutmix)
		}
	}
	per := c * h * w
	orig := append([]float32(nil), b.pixels...)
	if useCutmix && lam < 1 {
		y0, y1, x0, x1 := cutBox(h, w, lam, rng)
		for k := range n {
			src := orig[(n-1-k)*per:]
			dst := b.pixels[k*per:]
			for ch := range c {
				for y := y0; y < y1; y++ {
					copy(dst[ch*h*w+y*w+x0:ch*h*w+y*w+x1], src[ch*h*w+y*w+x0:ch*h*w+y*w+x1])
				}
			}
		}
		lam = 1 - float64((y1-y0)*(x1-x0))/float64(h*w)
	} else if lam < 1 {
		l := float32(lam)
		for k := range n {
			for i := range per {
				b.pixels[k*per+i] = orig[k*per+i]*l + orig[(n-1-k)*per+i]*(1-l)
			}
		}
	}
	off := m.smoothing / float64(m.classes)
	on := 1 - m.smoothing + off
	b.soft = make([]float32, n*m.classes)
	for k := range n {
		for j := range m.classes {
			t := off
			if int64(j) == b.labels[k] {
				t = on
			}
			u := off
			if int64(j) == b.labels[n-1-k] {
				u = on
			}
			b.soft[k*m.classes+j] = float32(t*lam + u*(1-lam))
		}
	}
}

// cutBox is timm's rand_bbox: a box of side sqrt(1-lam) of the image's,
// centred uniformly at random and clipped to the image.
func cutBox(h, w int, lam float64, rng *rand.Rand) (y0, y1, x0, x1 int) {
	ratio := math.Sqrt(1 - lam)
	ch, cw := int(float64(h)*ratio), int(float64(w)*ratio)
	cy, cx := rng.IntN(h), rng.IntN(w)
	clip := func(v, hi int) int { return max(0, min(v, hi)) }
	return clip(cy-ch/2, h), clip(cy+ch/2, h), clip(cx-cw/2, w), clip(cx+cw/2, w)
}
