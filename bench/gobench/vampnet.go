package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/train"
	"github.com/reprolab/repro/vampnet"
)

// The training recipe of VampNet's scripts/exp/train.py (ismir-2023) and
// conf/vampnet.yml: CrossEntropyLoss(label_smoothing=0.1) over the masked
// positions, clip_grad_norm_ at grad_clip_val 5, AdamW(model.parameters())
// with PyTorch's defaults (betas 0.9/0.999, eps 1e-8, weight decay 0.01 on
// every parameter) and the NoamScheduler (factor 2, warmup 10,000, d_model
// the width), which sets the learning rate before the first step and after
// every step.
const (
	vampnetSmoothing = 0.1
	vampnetClip      = 5.0
	vampnetNoam      = 2.0
	vampnetWarmup    = 10000
)

// vampnetSizes is the VampNet the vampnet_step workload trains, its batch,
// frames and steps per repetition. On CUDA the paper's coarse model
// (conf/vampnet.yml: 20 layers of width 1280, 20 heads, 4 codebooks of
// 1024, latent 8) at train.py's batch 8 of 10 s excerpts, 574 frames at
// 44.1 kHz and hop 768, 10 steps. On the CPU a small model of the same
// structure whose step takes about a second: 4 layers of width 256, 8
// heads, the same codebooks and frames, batch 1, 1 step (574 frames make
// attention the largest cost: at batch 2 a step took about 3 CPU seconds
// on the 2-core benchmark machine, at batch 1 about 1.3). Both with
// conf/vampnet.yml's dropout 0.1 and loralib's rank 8 with frozen base
// weights, as the official model trains.
func vampnetSizes(dev gotch.Device) (cfg vampnet.Config, batch, frames int64, steps int) {
	cfg = vampnet.CoarseConfig()
	if dev.IsCuda() {
		return cfg, 8, 574, 10
	}
	cfg.NLayers, cfg.EmbeddingDim, cfg.NHeads = 4, 256, 8
	return cfg, 1, 574, 1
}

// noamClipped is train.py's update after backward: clip_grad_norm_ over
// the model's parameters at max, the AdamW step at the NoamScheduler's
// learning rate, which counts from 1 at the first update (load() steps the
// scheduler once before training). It ignores the lr timedSteps passes.
type noamClipped struct {
	store *torchmods.Store
	max   float64
	opt   *train.AdamW
	lr    train.Schedule
}

func (c noamClipped) Step(float64) error {
	if _, err := train.ClipGradNorm(c.store, c.max); err != nil {
		return err
	}
	return c.opt.Step(c.lr(c.opt.Steps()))
}

// vampnetStep: one training step of VampNet's coarse transformer as
// train.py's train_loop runs it after the codec: the codes with the
// training mask applied (mask.py's apply_mask, the MASK token 1024), the
// latents looked up in the codec's codebooks (CodebookEmbedding.from_codes;
// random tables [1024, 8] stand in for the codec, and, as the codec's
// weights in train.py, they require grad: their gradients accumulate,
// never stepped), the model forward in train mode (dropout 0.1), the
// label-smoothed cross-entropy over the masked positions only, backward,
// gradient clipping at 5 and AdamW at the Noam learning rate (noamClipped).
// The codes are uniform over the vocabulary and the mask is mask.py's
// random at r drawn from SobolEngine(1, scramble=True, seed=0) as
// train.py draws it, both fixed for the run; the Go side is vampnet.New,
// FromCodes, Forward and Loss. Sizes: vampnetSizes. The codes, mask and
// codebooks go to inputs (if set) for bench/torch_bench.py --inputs, which
// runs the official transformer.py; with weights set the initial
// parameters (the frozen LoRA bases too) go there, and the step-0 loss,
// with dropout off on both sides, is printed to stderr.
func vampnetStep(dev gotch.Device, check *float64, inputs, weights string) func() float64 {
	cfg, batch, frames, steps := vampnetSizes(dev)
	C := cfg.NCodebooks
	// train.py's r: rng.draw(n_batch)[:, 0] of a scrambled Sobol engine
	// (seed 0); NewSobol reseeds libtorch's generator, so it comes first.
	sob := vampnet.NewSobol(0)
	rs := sob.Draw(int(batch))
	ts.ManualSeed(0)
	codes := ts.MustRandint(cfg.VocabSize, []int64{batch, C, frames}, gotch.Int64, gotch.CPU)
	mask, err := vampnet.Random(codes, torchmods.FromSlice(rs, []int64{batch}, gotch.CPU), rand.New(rand.NewPCG(0, 13)))
	if err != nil {
		panic(err)
	}
	if cfg.NConditioningCodebooks > 0 {
		if mask, err = vampnet.CodebookUnmask(mask, cfg.NConditioningCodebooks); err != nil {
			panic(err)
		}
	}
	codebooks := make([]*ts.Tensor, C)
	for i := range codebooks {
		codebooks[i] = ts.MustRandn([]int64{cfg.VocabSize, cfg.LatentDim}, gotch.Float, gotch.CPU)
	}
	if inputs != "" {
		tensors := []safetensors.Tensor{i64("codes", codes.Int64Values(), batch, C, frames), i64("mask", mask.Int64Values(), batch, C, frames)}
		for i, cb := range codebooks {
			t, err := torchmods.ToSafetensors(fmt.Sprint("codebook.", i), cb, gotch.Float)
			if err != nil {
				panic(err)
			}
			tensors = append(tensors, t)
		}
		if err := safetensors.Write(inputs, tensors, map[string]string{"workload": "vampnet_step"}); err != nil {
			panic(err)
		}
	}
	codes, mask = codes.MustTo(dev, true), mask.MustTo(dev, true)
	for i, cb := range codebooks {
		codebooks[i] = cb.MustTo(dev, true)
		codebooks[i].MustRequiresGrad_(true)
	}
	store := torchmods.NewStore(dev)
	m := vampnet.New(store.Root(), cfg)
	if weights != "" {
		writeStoreWeights(store, weights)
	}
	sched, err := train.NoamSchedule(vampnetNoam, cfg.EmbeddingDim, vampnetWarmup)
	if err != nil {
		panic(err)
	}
	opt := noamClipped{store, vampnetClip, train.NewAdamWDecayAll(store, 0.9, 0.999, 1e-8, 0.01), sched}
	loss := func() *ts.Tensor {
		zMask, err := vampnet.ApplyMask(codes, mask, cfg.MaskToken())
		if err != nil {
			panic(err)
		}
		logits := m.Forward(m.FromCodes(zMask, codebooks), true)
		return m.Loss(logits, codes, mask, vampnetSmoothing)
	}
	if weights != "" {
		drop := m.Cfg.Dropout
		m.Cfg.Dropout = 0
		step0("vampnet_step", fmt.Sprintf("batch %d x %d codebooks x %d frames, %d layers of width %d", batch, C, frames, cfg.NLayers, cfg.EmbeddingDim), loss)
		m.Cfg.Dropout = drop
	}
	return timedSteps(steps, check, opt, loss)
}
