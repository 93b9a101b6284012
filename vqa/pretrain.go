package vqa

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// ObjectiveConfig picks the pre-training losses. MUMC is all three
// losses with the unimodal contrastive terms (unimodal 0.5) and masked
// images; the ALBEF-style baseline is ita + itm + mlm with unimodal 0 and
// image_mask_ratio 0.
type ObjectiveConfig struct {
	ITA bool `toml:"ita"`
	ITM bool `toml:"itm"`
	MLM bool `toml:"mlm"`
	// Unimodal weighs the image-image and text-text terms inside L_ita:
	// (i2t + t2i + unimodal·(i2i + t2t)) / 2; 0.5 in the official code.
	Unimodal float64 `toml:"unimodal"`
	// ImageMaskRatio is the share of patches each image loses, drawn
	// independently for the online and the momentum encoder; 0.15 in the
	// official code (model_pretrain.py). See doc.go on the paper's value.
	ImageMaskRatio float64 `toml:"image_mask_ratio"`
	QueueSize      int64   `toml:"queue_size"`        // 65,536
	Momentum       float64 `toml:"momentum"`          // 0.995
	Temp           float64 `toml:"temp"`              // the temperature's start, 0.07; clamped to [0.001, 0.5]
	Alpha          float64 `toml:"alpha"`             // distillation weight, 0.4
	AlphaRamp      float64 `toml:"alpha_ramp"`        // epochs over which alpha rises linearly from 0: 2 in pretrain.py
	MLMProbability float64 `toml:"mlm_probability"`   // 0.15
	MaxTextLen     int     `toml:"max_text_len"`      // tokens, with [CLS] and [SEP]: 25
	MaxCaptionWord int     `toml:"max_caption_words"` // pre_caption's max_words: 30
}

// OptimConfig is pretrain.py's: AdamW, a linear warm-up within the first
// epoch from warmup_lr to lr over warmup_steps, then lr·decay_rate^epoch
// (never under min_lr), set at each epoch's start.
type OptimConfig struct {
	LR          float64 `toml:"lr"`
	MinLR       float64 `toml:"min_lr"`
	WarmupLR    float64 `toml:"warmup_lr"`
	WarmupSteps int64   `toml:"warmup_steps"`
	DecayRate   float64 `toml:"decay_rate"`
	WeightDecay float64 `toml:"weight_decay"`
}

// PretrainConfig is "vqa.pretrain".
type PretrainConfig struct {
	train.Base
	Model     ModelConfig     `toml:"model"`
	Objective ObjectiveConfig `toml:"objective"`
	Optim     OptimConfig     `toml:"optim"`
	Data      DataConfig      `toml:"data"`
	// VisionInit initialises visual_encoder from MAE weights (the paper's
	// ViT-B from MAE): a repro mae.pretrain run, the official
	// mae_pretrain_vit_base.pth, or HF ViTMAE weights. "" starts random.
	VisionInit string `toml:"vision_init"`
	// TextInit initialises text_encoder from a BERT checkpoint
	// (bert-base-uncased: MUMC's from_pretrained); the cross-attention
	// layers it lacks start random. "" starts random.
	TextInit string `toml:"text_init"`
	// Checkpoint then loads a whole pre-training state dict over those, as
	// pretrain.py's --checkpoint (ALBEF.pth by default there; or MUMC's
	// med_pretrain_NN.pth, or a vqa.pretrain run): every tensor whose name
	// and shape match, the image position tables interpolated, the rest
	// reported (load_checkpoint).
	Checkpoint string `toml:"checkpoint"`
}

// Validate checks every section, naming the key.
func (c *PretrainConfig) Validate() error {
	o := c.Objective
	switch {
	case c.Trainer.Accumulate > 1:
		return config.Field("trainer.accumulate", "must be 1: the momentum update, the enqueue and the alpha ramp happen once per forward pass, as in pretrain.py, which has no accumulation")
	case !o.ITA && !o.ITM && !o.MLM:
		return config.Field("objective.ita", "at least one of ita, itm and mlm must be on")
	case o.Unimodal < 0 || !(o.ImageMaskRatio >= 0 && o.ImageMaskRatio < 1):
		return config.Field("objective.image_mask_ratio", "unimodal must not be negative and image_mask_ratio must be in [0, 1), got %v and %v", o.Unimodal, o.ImageMaskRatio)
	case o.QueueSize <= 0 || o.QueueSize%c.Data.Batch != 0:
		return config.Field("objective.queue_size", "must be a positive multiple of data.batch %d (the official code asserts it), got %d", c.Data.Batch, o.QueueSize)
	case !(o.Momentum >= 0 && o.Momentum <= 1) || !(o.Alpha >= 0 && o.Alpha <= 1) || o.AlphaRamp < 0:
		return config.Field("objective.momentum", "momentum and alpha must be in [0, 1] and alpha_ramp not negative")
	case !(o.Temp >= 0.001 && o.Temp <= 0.5):
		return config.Field("objective.temp", "must be in [0.001, 0.5], where it is clamped, got %v", o.Temp)
	case !(o.MLMProbability > 0 && o.MLMProbability < 1) || o.MaxTextLen < 3 || o.MaxCaptionWord < 1:
		return config.Field("objective.mlm_probability", "mlm_probability in (0, 1), max_text_len at least 3, max_caption_words positive")
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	if err := c.Data.validate(false); err != nil {
		return err
	}
	return c.Model.Validate()
}

func (o OptimConfig) validate() error {
	switch {
	case !(o.LR > 0) || o.MinLR < 0 || o.WarmupLR < 0 || o.WeightDecay < 0 || o.WarmupSteps < 0:
		return config.Field("optim.lr", "lr must be positive; min_lr, warmup_lr, warmup_steps and weight_decay not negative")
	case !(o.DecayRate > 0 && o.DecayRate <= 1):
		return config.Field("optim.decay_rate", "must be in (0, 1], got %v", o.DecayRate)
	}
	return nil
}

// pretrainSchedule is pretrain.py's learning rate at each step: within
// epoch 0, min(lr, warmup_lr + (lr - warmup_lr)·i/warmup_steps); from
// epoch e on, max(min_lr, lr·decay_rate^e).
func (o OptimConfig) pretrainSchedule(perEpoch int64) train.Schedule {
	return func(step int64) float64 {
		e := step / perEpoch
		if e == 0 {
			if o.WarmupSteps == 0 {
				return o.LR
			}
			return math.Min(o.LR, o.WarmupLR+(o.LR-o.WarmupLR)*float64(step)/float64(o.WarmupSteps))
		}
		return math.Max(o.MinLR, o.LR*math.Pow(o.DecayRate, float64(e)))
	}
}

// PretrainResult is results.json: the losses on held-out pairs at the end.
type PretrainResult struct {
	ITA   float64 `json:"heldout_ita"`
	ITM   float64 `json:"heldout_itm"`
	MLM   float64 `json:"heldout_mlm"`
	Steps int64   `json:"steps"`
	Pairs int     `json:"pairs"`
}

// PretrainTask is "vqa.pretrain".
var PretrainTask = train.TaskSpec[*PretrainConfig, *PretrainResult]{
	Name:    "vqa.pretrain",
	Doc:     "MUMC pre-training on image-caption pairs: contrastive (with unimodal terms), matching and masked-LM losses with momentum encoders",
	Default: DefaultPretrain,
	Run:     Pretrain,
}

// tinyModel is the CPU experiment's model: a 2-block ViT and a 4-layer
// BERT (2 text, 2 fusion layers), as ../shared/papers/vqa.md sizes it.
func tinyModel() ModelConfig {
	t := torchmods.BertBase()
	t.HiddenSize, t.NumHiddenLayers, t.NumAttentionHeads, t.IntermediateSize, t.MaxPositionEmbeddings = 64, 4, 4, 256, 64
	t.VocabSize, t.CrossAttention, t.FusionLayer, t.EncoderWidth = 0, true, 2, 64
	return ModelConfig{ImageRes: 64, Patch: 8, InChans: 3, VisionWidth: 64, VisionDepth: 2, VisionHeads: 4, Text: t, DecoderLayers: 2, EmbedDim: 32}
}

// DefaultPretrain is the small synthetic experiment with MUMC's objective.
func DefaultPretrain() *PretrainConfig {
	return &PretrainConfig{Base: train.Base{Task: "vqa.pretrain", Trainer: train.DefaultTrainer()},
		Model: tinyModel(),
		Objective: ObjectiveConfig{ITA: true, ITM: true, MLM: true, Unimodal: 0.5, ImageMaskRatio: 0.15, QueueSize: 256, Momentum: 0.995,
			Temp: 0.07, Alpha: 0.4, AlphaRamp: 2, MLMProbability: 0.15, MaxTextLen: 25, MaxCaptionWord: 30},
		Optim: OptimConfig{LR: 3e-4, MinLR: 1e-6, WarmupLR: 1e-6, WarmupSteps: 100, DecayRate: 0.9, WeightDecay: 0.05},
		Data:  DefaultData()}
}

// textBatch is a batch of texts tokenised and padded to the longest.
type textBatch struct {
	ids, mask [][]int64
}

// tokenize is HF's BertTokenizer on texts, as the pre-training calls it:
// [CLS] text [SEP], cut at maxLen tokens, padded to the longest.
func tokenize(tok *mlm.Tokenizer, texts []string, maxLen int) (textBatch, error) {
	var rows [][]int64
	for _, t := range texts {
		e, err := tok.Encode(t, maxLen)
		if err != nil {
			return textBatch{}, fmt.Errorf("tokenizing %q: %w", t, err)
		}
		rows = append(rows, e.IDs)
	}
	return padded(rows, tok.PAD), nil
}

// padded pads rows of ids to the longest with pad, with the attention
// mask (1 on the ids, 0 on the padding).
func padded(rows [][]int64, pad int64) textBatch {
	longest := 0
	for _, r := range rows {
		longest = max(longest, len(r))
	}
	var b textBatch
	for _, r := range rows {
		ids, m := make([]int64, longest), make([]int64, longest)
		copy(ids, r)
		for j := range ids {
			if j < len(r) {
				m[j] = 1
			} else {
				ids[j] = pad
			}
		}
		b.ids, b.mask = append(b.ids, ids), append(b.mask, m)
	}
	return b
}

func matrix(rows [][]int64, dev gotch.Device) *ts.Tensor {
	var flat []int64
	for _, r := range rows {
		flat = append(flat, r...)
	}
	return torchmods.FromSlice(flat, []int64{int64(len(rows)), int64(len(rows[0]))}, dev)
}

// pairBatch is one batch of pre-training pairs, images transformed.
type pairBatch struct {
	pixels   []float32
	captions []string
}

// losses computes MUMC_Pretrain.forward on one batch: the three losses
// (nil where the objective leaves one out). train false is the held-out
// measurement: no dropout, no enqueue, no momentum update.
func (m *PretrainModel) losses(c *PretrainConfig, tok *mlm.Tokenizer, imgs *ts.Tensor, text textBatch, alpha float64, rng *rand.Rand, train bool) (ita, itm, mlmLoss *ts.Tensor, err error) {
	o := c.Objective
	dev := imgs.MustDevice()
	ts.NoGrad(func() { m.Temp.MustClamp_(ts.FloatScalar(0.001), ts.FloatScalar(0.5)) })
	ids, mask := matrix(text.ids, dev), matrix(text.mask, dev)
	b := imgs.MustSize()[0]
	patches := m.Visual.PatchEmbed.NumPatches()
	noise := func() *ts.Tensor {
		if o.ImageMaskRatio == 0 {
			return nil
		}
		return MaskNoise(rng, b, patches, dev)
	}
	imageEmbeds := ImageTokens(m.Visual, imgs, o.ImageMaskRatio, noise(), train)
	imageFeat := Normalize(m.VisionProj.Forward(imageEmbeds.MustSelect(1, 0, false)), -1)
	tf, tt := textLayers(m.Cfg.Text)
	textEmbeds := m.Text.Bert.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask, From: tf, To: tt}, train)
	textFeat := Normalize(m.TextProj.Forward(textEmbeds.MustSelect(1, 0, false)), -1)
	var imageEmbedsM, imageFeatM, textFeatM *ts.Tensor
	ts.NoGrad(func() {
		imageEmbedsM = ImageTokens(m.VisualM, imgs, o.ImageMaskRatio, noise(), train)
		imageFeatM = Normalize(m.VisionProjM.Forward(imageEmbedsM.MustSelect(1, 0, false)), -1)
		tm := m.TextM.Bert.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask, From: tf, To: tt}, train)
		textFeatM = Normalize(m.TextProjM.Forward(tm.MustSelect(1, 0, false)), -1)
		if train {
			// As the official forward: after the momentum features, before
			// the MLM's momentum logits (get_contrastive_loss updates).
			m.Momentum.Update()
		}
	})
	if o.ITA {
		ita = ContrastiveLoss(imageFeat, textFeat, imageFeatM, textFeatM, m.Queue, m.Temp, alpha, o.Unimodal)
	}
	if train {
		m.Queue.Enqueue(imageFeatM, textFeatM)
	}
	if o.ITM {
		if itm, err = MatchingLoss(m.Text.Bert, m.ITM, imageEmbeds, imageFeat, textEmbeds, mask, textFeat, m.Temp, rng, train); err != nil {
			return nil, nil, nil, err
		}
	}
	if o.MLM {
		in, labels := MaskTokens(text.ids, o.MLMProbability, m.Cfg.Text.VocabSize, Special{PAD: tok.PAD, CLS: tok.CLS, MASK: tok.MASK}, rng)
		inT, labelsT := matrix(in, dev), matrix(labels, dev)
		var soft *ts.Tensor
		ts.NoGrad(func() {
			soft = m.TextM.ForwardInput(torchmods.BertInput{IDs: inT, Mask: mask, Context: imageEmbedsM}, train).MustSoftmax(-1, gotch.Float, true)
		})
		logits := m.Text.ForwardInput(torchmods.BertInput{IDs: inT, Mask: mask, Context: imageEmbeds}, train)
		mlmLoss = MLMLoss(logits, labelsT, soft, alpha)
	}
	return ita, itm, mlmLoss, nil
}

// Pretrain runs MUMC's pre-training and measures the losses on held-out
// pairs at the end.
func Pretrain(s *train.Session, c *PretrainConfig) (*PretrainResult, error) {
	w := s.W
	ds, tok, err := openData(c.Data, &c.Model, false, w)
	if err != nil {
		return nil, err
	}
	heldout := heldoutPairs(ds.Pairs, int(c.Data.Batch))
	trainPairs := ds.Pairs[:len(ds.Pairs)-len(heldout)]
	if int64(len(trainPairs)) < c.Data.Batch {
		return nil, config.Field("data.batch", "%d is more than the %d training pairs (of %d, %d held out)", c.Data.Batch, len(trainPairs), len(ds.Pairs), len(heldout))
	}
	aug, err := c.Data.augment(c.Model.ImageRes)
	if err != nil {
		return nil, err
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(trainPairs), Batch: int(c.Data.Batch), Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed), Workers: c.Data.Workers},
		func(b data.Batch) (pairBatch, error) {
			var pb pairBatch
			var names []string
			rng := b.Rand()
			for _, i := range b.Indices {
				names = append(names, trainPairs[i].Image)
				pb.captions = append(pb.captions, trainPairs[i].Caption(rng))
			}
			px, err := imageBatch(ds.Images, names, aug, true, rng)
			pb.pixels = px
			return pb, err
		})
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	m, err := NewPretrainModel(s.Store.Root(), c.Model, c.Objective.Temp, c.Objective.Momentum, c.Objective.QueueSize)
	if err != nil {
		return nil, err
	}
	if s.WorldSize() > 1 {
		return nil, fmt.Errorf("vqa.pretrain runs on one process: the official code gathers every rank's momentum features into the queues (concat_all_gather), which is not implemented")
	}
	if !s.Resuming() {
		if err := initEncoders(s, m, c); err != nil {
			return nil, err
		}
	}
	shape := []int64{c.Data.Batch, 3, c.Model.ImageRes, c.Model.ImageRes}
	o := c.Objective
	var sums [3]float64
	var count int
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, LR: c.Optim.pretrainSchedule(perEpoch),
		Opt: train.NewAdamWDecayAll(s.Store, 0.9, 0.999, 1e-8, c.Optim.WeightDecay), // AdamW(model.parameters()): biases and norms decay too
		Loss: func(step int64, micro int) (*ts.Tensor, error) {
			pb, err := loader.Next()
			if err != nil {
				return nil, err
			}
			text, err := tokenize(tok, pb.captions, o.MaxTextLen)
			if err != nil {
				return nil, err
			}
			alpha := o.Alpha
			if o.AlphaRamp > 0 {
				alpha *= math.Min(1, float64(step)/(o.AlphaRamp*float64(perEpoch)))
			}
			rng := rand.New(rand.NewPCG(uint64(c.Trainer.Seed), uint64(step)<<8|uint64(micro)))
			ita, itm, ml, err := m.losses(c, tok, torchmods.FromSlice(pb.pixels, shape, s.Device), text, alpha, rng, true)
			if err != nil {
				return nil, err
			}
			var loss *ts.Tensor
			for i, l := range []*ts.Tensor{ml, ita, itm} {
				if l == nil {
					continue
				}
				sums[i] += l.Float64Values()[0]
				if loss == nil {
					loss = l
				} else {
					loss = loss.MustAdd(l, false)
				}
			}
			count++
			return loss, nil
		},
		Eval: func(int64) (map[string]float64, error) {
			out := map[string]float64{}
			if count > 0 {
				for i, k := range []string{"train_mlm", "train_ita", "train_itm"} {
					out[k] = sums[i] / float64(count)
				}
			}
			sums, count = [3]float64{}, 0
			return out, nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
	})
	if err != nil {
		return nil, err
	}
	res := &PretrainResult{Steps: steps, Pairs: len(heldout)}
	res.ITA, res.ITM, res.MLM, err = m.heldout(c, tok, ds.Images, heldout, aug, s.Device)
	fmt.Fprintf(w, "held-out losses on %d pairs: ita %.4f, itm %.4f, mlm %.4f\n", len(heldout), res.ITA, res.ITM, res.MLM)
	return res, err
}

// heldoutPairs is the last tenth of the pairs, at least one batch and
// at most 512 pairs, never trained on.
func heldoutPairs(p []Pair, batch int) []Pair {
	n := min(512, max(len(p)/10, batch))
	return p[len(p)-n:]
}

// heldout measures the losses on the held-out pairs, batch by batch
// (each batch's mean weighted by its size), with
// fixed masks and negatives (seeded by batch), full alpha, and no change
// to the queues or the momentum copies.
func (m *PretrainModel) heldout(c *PretrainConfig, tok *mlm.Tokenizer, src images, pairs []Pair, aug data.Augment, dev gotch.Device) (ita, itm, ml float64, err error) {
	b := int(c.Data.Batch)
	var n float64
	batch := func(start int) {
		sc := ts.NewScope()
		defer sc.Close()
		end := min(start+b, len(pairs))
		var names, caps []string
		for _, p := range pairs[start:end] {
			names, caps = append(names, p.Image), append(caps, p.Caption(nil))
		}
		px, err := imageBatch(src, names, aug, false, nil)
		if err != nil {
			panic(err)
		}
		text, err := tokenize(tok, caps, c.Objective.MaxTextLen)
		if err != nil {
			panic(err)
		}
		rng := rand.New(rand.NewPCG(7, uint64(start)))
		a, i, l, err := m.losses(c, tok, torchmods.FromSlice(px, []int64{int64(end - start), 3, c.Model.ImageRes, c.Model.ImageRes}, dev), text, c.Objective.Alpha, rng, false)
		if err != nil {
			panic(err)
		}
		w := float64(end - start) // weighted by the batch's size: the mean over pairs
		for _, x := range []struct {
			t   *ts.Tensor
			dst *float64
		}{{a, &ita}, {i, &itm}, {l, &ml}} {
			if x.t != nil {
				*x.dst += w * x.t.Float64Values()[0]
			}
		}
		n += w
	}
	err = torchmods.Try(func() {
		ts.NoGrad(func() {
			for start := 0; start < len(pairs); start += b {
				if len(pairs)-start >= 2 { // matching needs a negative
					batch(start)
				}
			}
		})
	})
	if n > 0 {
		ita, itm, ml = ita/n, itm/n, ml/n
	}
	return ita, itm, ml, err
}
