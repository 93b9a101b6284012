package cocoop

import (
	"slices"
	"strings"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/train"
)

// This file is the configs of cocoop.coop, cocoop.cocoop and
// cocoop.zeroshot: the official yaml's keys under TOML names (INPUT.* and
// DATALOADER.* in [data], TRAINER.COOP.* and TRAINER.COCOOP.* in
// [prompt], OPTIM.* in [optim] and [trainer]), with the defaults of the
// configs CoCoOp's base-to-new scripts run.

// CLIPSource is the frozen CLIP: what LoadFrozenCLIP loads.
type CLIPSource struct {
	// Path is OpenAI's released archive (ViT-B-16.pt: MODEL.BACKBONE.NAME
	// "ViT-B/16" downloads it), a HF CLIPModel folder (hf:openai/clip-vit-
	// base-patch16), or a cocoop.pretrain run.
	Path string `toml:"path"`
	// Tokenizer is "" (the pretrain run's vocabulary, else CLIP's BPE),
	// "bpe", "bpe:PATH" or "words:PATH" (LoadTokenizer).
	Tokenizer string `toml:"tokenizer"`
	// VisionHeads and TextHeads replace the head counts build_model infers
	// (width/64) for an OpenAI state dict of other heads; 0 keeps them (a
	// pretrain run's clip.json gives its own).
	VisionHeads int64 `toml:"vision_heads"`
	TextHeads   int64 `toml:"text_heads"`
}

func (c CLIPSource) validate() error {
	switch {
	case c.Path == "":
		return config.Field("clip.path", "is empty: give ViT-B-16.pt (OpenAI's archive), a HF CLIPModel folder or a cocoop.pretrain run")
	case c.VisionHeads < 0 || c.TextHeads < 0:
		return config.Field("clip.vision_heads", "head counts must not be negative")
	}
	return nil
}

// EvalTarget is a dataset of the cross-dataset protocol: evaluated on its
// test split with all its classes.
type EvalTarget struct {
	Dataset string `toml:"dataset"`
	Root    string `toml:"root"` // "" takes data.root
}

// ScenesData is the generated dataset (data.dataset = "Scenes"): one-object
// images of every composition of the listed attributes, a pool of
// train_per_class per class to draw the shots from and test_per_class
// test images, all from seed (apart from the trainer's seed, which draws
// the shots as Dassl's SEED does).
type ScenesData struct {
	Size          int      `toml:"size"`
	Colours       []string `toml:"colours"`
	Textures      []string `toml:"textures"`
	Shapes        []string `toml:"shapes"`
	Noise         float64  `toml:"noise"`
	Seed          int64    `toml:"seed"`
	TrainPerClass int      `toml:"train_per_class"`
	TestPerClass  int      `toml:"test_per_class"`
}

// Options are the generator's options for these classes.
func (s ScenesData) Options() SceneOptions {
	return SceneOptions{Size: s.Size, Colours: s.Colours, Textures: s.Textures, Shapes: s.Shapes, MaxObjects: 1, Noise: s.Noise}
}

// The protocols of data.protocol.
const (
	ProtocolBase2New = "base2new" // train on the base half, test on base and on new (the CVPR'22 Table 1)
	ProtocolAll      = "all"      // train and test on every class (CoOp's few-shot runs; the cross-dataset source)
)

// DataConfig is the dataset, its sampling and its transforms.
type DataConfig struct {
	Dataset string `toml:"dataset"` // DATASET.NAME (DatasetNames)
	Root    string `toml:"root"`    // DATASET.ROOT ($DATA)
	Shots   int    `toml:"shots"`   // DATASET.NUM_SHOTS; below 1 for all the training data
	// Protocol: "base2new" (DATASET.SUBSAMPLE_CLASSES base for training,
	// then base and new for testing) or "all".
	Protocol  string `toml:"protocol"`
	Batch     int    `toml:"batch"`      // DATALOADER.TRAIN_X.BATCH_SIZE
	TestBatch int    `toml:"test_batch"` // DATALOADER.TEST.BATCH_SIZE
	Workers   int    `toml:"workers"`    // DATALOADER.NUM_WORKERS (decoding goroutines); 0 for the loader's default
	// Size is INPUT.SIZE; 0 takes the CLIP's resolution, which the official
	// code asserts it equals.
	Size        int       `toml:"size"`
	Transforms  []string  `toml:"transforms"`   // INPUT.TRANSFORMS
	RRCropScale []float64 `toml:"rrcrop_scale"` // INPUT.RRCROP_SCALE
	PixelMean   []float64 `toml:"pixel_mean"`   // INPUT.PIXEL_MEAN
	PixelStd    []float64 `toml:"pixel_std"`    // INPUT.PIXEL_STD
	// TestPerClass, when positive, keeps the first so many test images of
	// each class: for smoke runs; 0 tests on the whole split.
	TestPerClass int          `toml:"test_per_class"`
	Eval         []EvalTarget `toml:"eval"`   // cross-dataset targets
	Scenes       ScenesData   `toml:"scenes"` // for dataset "Scenes"
}

func (d DataConfig) validate(training bool) error {
	if !slices.Contains(DatasetNames(), d.Dataset) {
		return config.Field("data.dataset", "%q is not one of %s", d.Dataset, strings.Join(DatasetNames(), ", "))
	}
	if d.Dataset != ScenesDataset && d.Root == "" {
		return config.Field("data.root", "is empty: the folder holding the datasets (CoOp's $DATA)")
	}
	if _, test := imageNetVariants[d.Dataset]; test && training {
		return config.Field("data.dataset", "%s is a test-only dataset: train on another and list it in data.eval", d.Dataset)
	}
	switch {
	case d.Protocol != ProtocolBase2New && d.Protocol != ProtocolAll:
		return config.Field("data.protocol", `must be "base2new" or "all", got %q`, d.Protocol)
	case d.Batch < 1 || d.TestBatch < 1:
		return config.Field("data.batch", "batch and test_batch must be positive")
	case d.Workers < 0 || d.Size < 0 || d.TestPerClass < 0:
		return config.Field("data.workers", "workers, size and test_per_class must not be negative")
	case len(d.RRCropScale) != 2 || !(d.RRCropScale[0] > 0 && d.RRCropScale[0] <= d.RRCropScale[1] && d.RRCropScale[1] <= 1):
		return config.Field("data.rrcrop_scale", "must be [lo, hi] with 0 < lo <= hi <= 1, got %v", d.RRCropScale)
	case len(d.PixelMean) != 3 || len(d.PixelStd) != 3:
		return config.Field("data.pixel_mean", "pixel_mean and pixel_std must have 3 values")
	}
	for _, s := range d.PixelStd {
		if !(s > 0) {
			return config.Field("data.pixel_std", "must be positive, got %v", d.PixelStd)
		}
	}
	for i, t := range d.Transforms {
		if t != TransformRandomResizedCrop && t != TransformRandomFlip && t != TransformNormalize || slices.Index(d.Transforms, t) != i {
			return config.Field("data.transforms", "%q is unknown or listed twice (known: random_resized_crop, random_flip, normalize)", t)
		}
	}
	for i, e := range d.Eval {
		if !slices.Contains(DatasetNames(), e.Dataset) || e.Dataset == ScenesDataset {
			return config.Field("data.eval", "entry %d: %q is not one of the datasets read from disk (%s)", i, e.Dataset, strings.Join(DatasetNames(), ", "))
		}
		if e.Root == "" && d.Root == "" {
			return config.Field("data.eval", "entry %d (%s) has no root and data.root is empty", i, e.Dataset)
		}
	}
	if d.Dataset == ScenesDataset {
		s := d.Scenes
		if err := s.Options().Validate("data.scenes"); err != nil {
			return err
		}
		if s.TrainPerClass < 1 || s.TestPerClass < 1 {
			return config.Field("data.scenes.train_per_class", "train_per_class and test_per_class must be positive")
		}
	}
	return nil
}

// transform is the image pipeline of size.
func (d DataConfig) transform(size int) Transform {
	return Transform{Size: size, Transforms: d.Transforms, Scale: [2]float64{d.RRCropScale[0], d.RRCropScale[1]},
		Mean: f32x3(d.PixelMean), Std: f32x3(d.PixelStd)}
}

// PromptConfig is TRAINER.COOP / TRAINER.COCOOP, and the learner to start
// from.
type PromptConfig struct {
	NCtx               int64  `toml:"n_ctx"`                // N_CTX; with ctx_init, its word count (0 or that count)
	CtxInit            string `toml:"ctx_init"`             // CTX_INIT
	CSC                bool   `toml:"csc"`                  // CoOp's CSC
	ClassTokenPosition string `toml:"class_token_position"` // CoOp's CLASS_TOKEN_POSITION
	// Init loads a trained prompt learner before training (MODEL.
	// INIT_WEIGHTS): CoOp's released model.pth.tar-N, or a repro run or
	// checkpoint of this task. token_prefix and token_suffix are dropped
	// as the official load_model drops them.
	Init string `toml:"init"`
}

func (p PromptConfig) validate(task string) error {
	if p.CtxInit != "" {
		words := int64(len(strings.Split(strings.ReplaceAll(p.CtxInit, "_", " "), " ")))
		if p.NCtx != 0 && p.NCtx != words {
			return config.Field("prompt.n_ctx", "is %d but ctx_init %q is %d words, and the official code takes n_ctx from ctx_init: set %d or 0", p.NCtx, p.CtxInit, words, words)
		}
		if p.CSC {
			return config.Field("prompt.csc", "coop.py makes one shared context when ctx_init is set, whatever CSC says: set ctx_init = \"\" for class-specific contexts")
		}
	} else if p.NCtx < 1 {
		return config.Field("prompt.n_ctx", "must be positive with random initialisation (ctx_init empty), got %d", p.NCtx)
	}
	if task == cocoopName && p.CSC {
		return config.Field("prompt.csc", "CoCoOp has one context shared by the classes (cocoop.py has no CSC): set false")
	}
	if task == cocoopName && p.ClassTokenPosition != PositionEnd {
		return config.Field("prompt.class_token_position", "CoCoOp puts the class name last (cocoop.py has no other position): set \"end\", got %q", p.ClassTokenPosition)
	}
	switch p.ClassTokenPosition {
	case PositionEnd, PositionMiddle, PositionFront:
	default:
		return config.Field("prompt.class_token_position", `must be "end", "middle" or "front", got %q`, p.ClassTokenPosition)
	}
	return nil
}

func (p PromptConfig) options() PromptOptions {
	return PromptOptions{NCtx: p.NCtx, CtxInit: p.CtxInit, CSC: p.CSC, Position: p.ClassTokenPosition}
}

// OptimConfig is OPTIM: SGD, and Dassl's cosine schedule after a constant
// warm-up (OPTIM.MAX_EPOCH is trainer.epochs).
type OptimConfig struct {
	LR           float64 `toml:"lr"`            // LR
	Momentum     float64 `toml:"momentum"`      // MOMENTUM (Dassl's default 0.9)
	WeightDecay  float64 `toml:"weight_decay"`  // WEIGHT_DECAY (Dassl's default 5e-4)
	WarmupEpochs int64   `toml:"warmup_epochs"` // WARMUP_EPOCH
	WarmupLR     float64 `toml:"warmup_lr"`     // WARMUP_CONS_LR
}

func (o OptimConfig) validate() error {
	switch {
	case !(o.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case !(o.Momentum >= 0 && o.Momentum < 1):
		return config.Field("optim.momentum", "must be in [0, 1), got %v", o.Momentum)
	case !(o.WeightDecay >= 0):
		return config.Field("optim.weight_decay", "must not be negative, got %v", o.WeightDecay)
	case o.WarmupEpochs < 0 || !(o.WarmupLR > 0):
		return config.Field("optim.warmup_epochs", "warmup_epochs must not be negative and warmup_lr must be positive")
	}
	return nil
}

// Config is the config of cocoop.coop and cocoop.cocoop.
type Config struct {
	train.Base
	CLIP   CLIPSource   `toml:"clip"`
	Data   DataConfig   `toml:"data"`
	Prompt PromptConfig `toml:"prompt"`
	Optim  OptimConfig  `toml:"optim"`
}

// Validate checks the task's keys, naming them.
func (c *Config) Validate() error {
	if err := c.CLIP.validate(); err != nil {
		return err
	}
	if err := c.Data.validate(true); err != nil {
		return err
	}
	if err := c.Prompt.validate(c.Task); err != nil {
		return err
	}
	if c.Prompt.CSC && c.Data.Protocol == ProtocolBase2New {
		return config.Field("prompt.csc", "class-specific contexts cannot be used for classes not trained on: use data.protocol = \"all\"")
	}
	if c.Prompt.CSC && len(c.Data.Eval) > 0 {
		return config.Field("prompt.csc", "class-specific contexts cannot be used for another dataset's classes: remove data.eval")
	}
	return c.Optim.validate()
}

// ZeroShotOptions is zero-shot CLIP's choice of prompts.
type ZeroShotOptions struct {
	Ensemble bool   `toml:"ensemble"` // ZeroshotCLIP2: IMAGENET_TEMPLATES_SELECT plus the custom template
	Template string `toml:"template"` // replaces CUSTOM_TEMPLATES[dataset] when not ""
}

// ZeroShotConfig is the config of cocoop.zeroshot.
type ZeroShotConfig struct {
	train.Base
	CLIP     CLIPSource      `toml:"clip"`
	Data     DataConfig      `toml:"data"`
	ZeroShot ZeroShotOptions `toml:"zeroshot"`
}

// Validate checks the task's keys, naming them.
func (c *ZeroShotConfig) Validate() error {
	if err := c.CLIP.validate(); err != nil {
		return err
	}
	if err := c.Data.validate(false); err != nil {
		return err
	}
	if _, err := Templates(c.Data.Dataset, c.ZeroShot.Ensemble, c.ZeroShot.Template); err != nil {
		return config.Field("zeroshot.template", "%v", err)
	}
	return nil
}

// The tasks' names.
const (
	coopName     = "cocoop.coop"
	cocoopName   = "cocoop.cocoop"
	zeroshotName = "cocoop.zeroshot"
)

// defaultData is the CoOp configs' INPUT and DATALOADER, 16 shots, the
// base-to-new protocol.
func defaultData(batch int) DataConfig {
	return DataConfig{Dataset: "ImageNet", Shots: 16, Protocol: ProtocolBase2New, Batch: batch, TestBatch: 100, Workers: 4,
		Transforms:  []string{TransformRandomResizedCrop, TransformRandomFlip, TransformNormalize},
		RRCropScale: []float64{0.08, 1}, PixelMean: slices.Clone(CLIPPixelMean), PixelStd: slices.Clone(CLIPPixelStd),
		Scenes: ScenesData{Size: 32, Noise: 0.03, TrainPerClass: 64, TestPerClass: 50}}
}

// DefaultCoCoOp is configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml
// with Dassl's defaults.
func DefaultCoCoOp() *Config {
	c := &Config{Base: train.Base{Task: cocoopName, Trainer: train.DefaultTrainer()}, Data: defaultData(1),
		Prompt: PromptConfig{NCtx: 4, CtxInit: "a photo of a", ClassTokenPosition: PositionEnd},
		Optim:  OptimConfig{LR: 0.002, Momentum: 0.9, WeightDecay: 5e-4, WarmupEpochs: 1, WarmupLR: 1e-5}}
	c.Trainer.Epochs = 10
	return c
}

// DefaultCoOp is configs/trainers/CoOp/vit_b16_ctxv1.yaml, what CoCoOp's
// base-to-new script runs CoOp with (200 epochs, batch 32, "a photo of a").
func DefaultCoOp() *Config {
	c := DefaultCoCoOp()
	c.Task, c.Data.Batch, c.Trainer.Epochs = coopName, 32, 200
	return c
}

// DefaultZeroShot is zero-shot CLIP on the base-to-new split.
func DefaultZeroShot() *ZeroShotConfig {
	return &ZeroShotConfig{Base: train.Base{Task: zeroshotName, Trainer: train.DefaultTrainer()}, Data: defaultData(1)}
}
