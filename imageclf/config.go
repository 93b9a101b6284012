package imageclf

import (
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/train"
)

// Config is the "image.classify" task's config.
type Config struct {
	train.Base
	// Pretrained is the checkpoint to start from: a repro run
	// (mae.pretrain, mae.finetune, image.classify) or checkpoint, MAE's
	// official .pth files, a timm ViT state_dict, a HF ViT or ViTMAE folder,
	// hf:ORG/NAME; "" trains from scratch ([model] set).
	Pretrained string `toml:"pretrained"`
	// Recipe is "mae" (main_finetune.py: layer-wise lr decay, drop path,
	// label smoothing, global pooling; the default) or "simple" (the cls
	// token's head, no layer decay, drop path or smoothing). Both use AdamW
	// with a per-iteration warm-up and half-cosine schedule.
	Recipe string `toml:"recipe"`
	// Labels are the class names in class-id order; empty takes the
	// training set's (an image folder's subfolders, a CSV's labels), sorted.
	Labels []string  `toml:"labels"`
	Model  ViTConfig `toml:"model"`
	// MAE is the "mae" recipe's regularisation; refused with "simple".
	MAE   MAEConfig       `toml:"mae"`
	Optim mae.OptimConfig `toml:"optim"`
	Data  DataConfig      `toml:"data"`
}

// ViTConfig sizes the ViT. Keys left 0 come from the checkpoint (its
// config.json, its run's config, or its tensors' shapes); a key set here
// overrides the checkpoint's (img_size to fine-tune at another resolution:
// the position table is interpolated). Training from scratch needs them all.
type ViTConfig struct {
	ImgSize  int64   `toml:"img_size" json:"img_size"`
	Patch    int64   `toml:"patch" json:"patch"`
	InChans  int64   `toml:"in_chans" json:"in_chans"`
	Dim      int64   `toml:"dim" json:"dim"`
	Depth    int64   `toml:"depth" json:"depth"`
	Heads    int64   `toml:"heads" json:"heads"`
	MLPRatio float64 `toml:"mlp_ratio" json:"mlp_ratio"`
	Eps      float64 `toml:"eps" json:"eps"`
}

// MAEConfig is main_finetune.py's regularisation.
type MAEConfig struct {
	GlobalPool bool    `toml:"global_pool"` // mean of the patch tokens through fc_norm (true), else the cls token
	DropPath   float64 `toml:"drop_path"`   // stochastic depth of the last block (0.1)
	LayerDecay float64 `toml:"layer_decay"` // layer-wise lr decay (0.75)
	Smoothing  float64 `toml:"smoothing"`   // label smoothing (0.1)
}

// DataConfig names the images and their preprocessing.
type DataConfig struct {
	// Dir is an ImageNet-style folder: Dir/train/<class>/*.{jpg,png} and
	// Dir/val/<class>/*. Train and Eval, when set, override its halves,
	// each a folder of class subfolders or a CSV of paths and labels.
	Dir   string `toml:"dir"`
	Train string `toml:"train"`
	Eval  string `toml:"eval"`
	// PathColumn and LabelColumn are a CSV's columns (header names);
	// relative paths are relative to the CSV's folder.
	PathColumn  string `toml:"path_column"`
	LabelColumn string `toml:"label_column"`
	Batch       int    `toml:"batch"`      // images per micro-batch
	EvalBatch   int    `toml:"eval_batch"` // images per evaluation batch
	Workers     int    `toml:"workers"`    // loader goroutines (0: up to 4)
	// TrainLimit uses N training images, evenly spaced in file order (so
	// every class of a folder keeps its share); 0 for all.
	TrainLimit int `toml:"train_limit"`
	// Scale is RandomResizedCrop's area range for training images
	// (main_finetune.py's 0.08 to 1); [1, 1] keeps whole images.
	Scale [2]float64 `toml:"scale"`
	Flip  bool       `toml:"flip"` // random horizontal flips while training
	// CropPct is the evaluation's centre crop: images are resized so the
	// shorter side is img_size/crop_pct (0.875, 224 from 256); 1 keeps
	// whole images.
	CropPct float64 `toml:"crop_pct"`
	// Mean and Std normalise each channel (in_chans values, on [0, 1]);
	// empty takes ImageNet's, or for grey images their channel means.
	Mean []float64 `toml:"mean"`
	Std  []float64 `toml:"std"`
}

// Default is main_finetune.py's recipe (its defaults: layer decay 0.75,
// drop path 0.1, smoothing 0.1, blr 1e-3, weight decay 0.05, 5 warm-up
// epochs) on an ImageNet-style folder; epochs 50 as the paper's ViT-L.
func Default() *Config {
	t := train.DefaultTrainer()
	t.Epochs = 50
	return &Config{Base: train.Base{Task: "image.classify", Trainer: t}, Recipe: "mae",
		MAE:   DefaultMAE(),
		Optim: mae.OptimConfig{BLR: 1e-3, MinLR: 1e-6, WeightDecay: 0.05, Betas: [2]float64{0.9, 0.999}, WarmupEpochs: 5},
		Data:  DataConfig{PathColumn: "path", LabelColumn: "label", Batch: 64, EvalBatch: 256, Scale: [2]float64{0.08, 1}, Flip: true, CropPct: 0.875}}
}

// DefaultMAE is main_finetune.py's regularisation.
func DefaultMAE() MAEConfig {
	return MAEConfig{GlobalPool: true, DropPath: 0.1, LayerDecay: 0.75, Smoothing: 0.1}
}

// Validate checks the keys, naming them; files are only read by a run.
func (c *Config) Validate() error {
	switch c.Recipe {
	case "mae":
		m := c.MAE
		switch {
		case m.DropPath < 0 || m.DropPath >= 1:
			return config.Field("mae.drop_path", "must be in [0, 1), got %v", m.DropPath)
		case m.LayerDecay <= 0 || m.LayerDecay > 1:
			return config.Field("mae.layer_decay", "must be in (0, 1], got %v", m.LayerDecay)
		case m.Smoothing < 0 || m.Smoothing >= 1:
			return config.Field("mae.smoothing", "must be in [0, 1), got %v", m.Smoothing)
		}
	case "simple":
		if c.MAE != DefaultMAE() {
			return config.Field("mae", `is the "mae" recipe's table; recipe "simple" has no layer decay, drop path or smoothing: remove it`)
		}
	default:
		return config.Field("recipe", `must be "mae" or "simple", got %q`, c.Recipe)
	}
	if err := c.Optim.Validate(); err != nil {
		return err
	}
	m := c.Model
	if m.ImgSize < 0 || m.Patch < 0 || m.InChans < 0 || m.Dim < 0 || m.Depth < 0 || m.Heads < 0 || m.MLPRatio < 0 || m.Eps < 0 {
		return config.Field("model", "sizes must not be negative")
	}
	if c.Pretrained == "" {
		if err := m.complete().validate(); err != nil {
			return config.Field("model", "%v (training from scratch needs [model]: img_size, patch, in_chans, dim, depth, heads)", err)
		}
	}
	seen := map[string]bool{}
	for _, l := range c.Labels {
		if seen[l] || l == "" {
			return config.Field("labels", "labels must be distinct and not empty, got %q", c.Labels)
		}
		seen[l] = true
	}
	d := c.Data
	switch {
	case d.Dir == "" && (d.Train == "" || d.Eval == ""):
		return config.Field("data.dir", "set dir (with train/ and val/), or both data.train and data.eval")
	case d.Batch < 1 || d.EvalBatch < 1:
		return config.Field("data.batch", "batch and eval_batch must be positive")
	case d.TrainLimit < 0:
		return config.Field("data.train_limit", "must not be negative, got %d", d.TrainLimit)
	case d.Scale[0] <= 0 || d.Scale[0] > d.Scale[1] || d.Scale[1] > 1:
		return config.Field("data.scale", "must satisfy 0 < scale[0] <= scale[1] <= 1, got %v", d.Scale)
	case d.CropPct <= 0 || d.CropPct > 1:
		return config.Field("data.crop_pct", "must be in (0, 1], got %v", d.CropPct)
	case len(d.Mean) != len(d.Std):
		return config.Field("data.std", "mean and std need a value per channel each, got %d and %d", len(d.Mean), len(d.Std))
	}
	for _, s := range d.Std {
		if !(s > 0) {
			return config.Field("data.std", "must be positive, got %v", d.Std)
		}
	}
	return nil
}

// complete fills the keys with defaults that every ViT shares (MLP ratio
// 4, eps 1e-6 as MAE and timm).
func (v ViTConfig) complete() ViTConfig {
	if v.MLPRatio == 0 {
		v.MLPRatio = 4
	}
	if v.Eps == 0 {
		v.Eps = 1e-6
	}
	return v
}

func (v ViTConfig) validate() error {
	o := mae.Options{ImgSize: v.ImgSize, Patch: v.Patch, InChans: v.InChans, Dim: v.Dim, Depth: v.Depth, Heads: v.Heads,
		DecoderDim: v.Dim, DecoderDepth: 1, DecoderHeads: v.Heads, MLPRatio: v.MLPRatio, Eps: v.Eps}
	return o.Validate()
}

// over returns v with the keys set in o (non-zero) taking o's values.
func (v ViTConfig) over(o ViTConfig) ViTConfig {
	set := func(dst *int64, src int64) {
		if src != 0 {
			*dst = src
		}
	}
	set(&v.ImgSize, o.ImgSize)
	set(&v.Patch, o.Patch)
	set(&v.InChans, o.InChans)
	set(&v.Dim, o.Dim)
	set(&v.Depth, o.Depth)
	set(&v.Heads, o.Heads)
	if o.MLPRatio != 0 {
		v.MLPRatio = o.MLPRatio
	}
	if o.Eps != 0 {
		v.Eps = o.Eps
	}
	return v
}
