package vqa

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/torchmods"
)

// ModelConfig is MUMC's architecture: a ViT image encoder, one BERT whose
// layers from fusion_layer on cross-attend to the image tokens, an answer
// decoder initialised from those multimodal layers, and the 256-d
// contrastive projections. The paper's model is BaseConfig().
type ModelConfig struct {
	ImageRes    int64 `toml:"image_res"`    // pixels per side: 256 pre-training, 384 VQA in the paper
	Patch       int64 `toml:"patch"`        // 16
	InChans     int64 `toml:"in_chans"`     // 3 (RGB); 1 for greyscale scans
	VisionWidth int64 `toml:"vision_width"` // 768
	VisionDepth int64 `toml:"vision_depth"` // 12
	VisionHeads int64 `toml:"vision_heads"` // 12
	// Text is the BERT (config_bert.json): bert-base with fusion_layer 6
	// and encoder_width 768. vocab_size 0 takes the tokenizer's size.
	Text torchmods.BertConfig `toml:"text"`
	// DecoderLayers is the answer decoder's depth; 0 means the number of
	// multimodal layers (num_hidden_layers - fusion_layer, 6), the layers
	// it is initialised from.
	DecoderLayers int64 `toml:"decoder_layers"`
	EmbedDim      int64 `toml:"embed_dim"` // the contrastive projections' width, 256
}

// BaseConfig is the paper's model: ViT-B/16 and bert-base-uncased with
// fusion_layer 6.
func BaseConfig() ModelConfig {
	t := torchmods.BertBase()
	t.CrossAttention, t.FusionLayer, t.EncoderWidth = true, 6, 768
	return ModelConfig{ImageRes: 256, Patch: 16, InChans: 3, VisionWidth: 768, VisionDepth: 12, VisionHeads: 12, Text: t, EmbedDim: 256}
}

// Validate checks the sizes fit together; errors name the key.
func (m *ModelConfig) Validate() error {
	t := &m.Text
	switch {
	case m.ImageRes <= 0 || m.Patch <= 0 || m.ImageRes%m.Patch != 0:
		return config.Field("model.image_res", "image_res %d must be a positive multiple of patch %d", m.ImageRes, m.Patch)
	case m.InChans != 1 && m.InChans != 3:
		return config.Field("model.in_chans", "must be 1 or 3, got %d", m.InChans)
	case m.VisionWidth <= 0 || m.VisionDepth <= 0 || m.VisionHeads <= 0 || m.VisionWidth%m.VisionHeads != 0:
		return config.Field("model.vision_width", "vision_width %d, vision_depth %d, vision_heads %d: positive, heads dividing the width", m.VisionWidth, m.VisionDepth, m.VisionHeads)
	case m.EmbedDim <= 0:
		return config.Field("model.embed_dim", "must be positive, got %d", m.EmbedDim)
	case !t.CrossAttention:
		return config.Field("model.text.add_cross_attention", "MUMC's BERT needs cross-attention layers: set fusion_layer (and add_cross_attention = true)")
	case t.FusionLayer < 1 || t.FusionLayer >= t.NumHiddenLayers:
		return config.Field("model.text.fusion_layer", "must leave at least one text layer and one multimodal layer: in [1, %d), got %d", t.NumHiddenLayers, t.FusionLayer)
	case t.ContextWidth() != m.VisionWidth:
		return config.Field("model.text.encoder_width", "the cross-attention reads the image tokens: encoder_width %d must equal vision_width %d", t.ContextWidth(), m.VisionWidth)
	case m.DecoderLayers < 0:
		return config.Field("model.decoder_layers", "must not be negative, got %d", m.DecoderLayers)
	}
	check := *t
	if check.VocabSize == 0 { // the tokenizer's size, filled in once it is loaded
		check.VocabSize = 1
	}
	if err := check.Validate(); err != nil {
		return config.Field("model.text", "%v", err)
	}
	return nil
}

// decoderConfig is the answer decoder's BERT: the text config with
// cross-attention in every layer (fusion_layer 0) reading the question's
// fused states, whose width is hidden_size (model_vqa.py's config_decoder).
func (m ModelConfig) decoderConfig() torchmods.BertConfig {
	d := m.Text
	d.NumHiddenLayers = m.DecoderLayers
	if d.NumHiddenLayers == 0 {
		d.NumHiddenLayers = m.Text.NumHiddenLayers - m.Text.FusionLayer
	}
	d.FusionLayer, d.EncoderWidth = 0, m.Text.HiddenSize
	return d
}

// vit is the image encoder's options: MAE's ViT with the fixed sin-cos
// table (mae_v2.py, pre-training) or ALBEF's with a learned one (vit.py,
// VQA).
func (m ModelConfig) vit(fixedPos bool) torchmods.ViTOptions {
	return torchmods.ViTOptions{ImgSize: m.ImageRes, Patch: m.Patch, InChans: m.InChans, Dim: m.VisionWidth, Depth: m.VisionDepth,
		Heads: m.VisionHeads, MLPRatio: 4, Eps: 1e-6, FixedPos: fixedPos}
}

// ImageTokens runs a ViT on images [B, C, H, W] and returns every token
// after the final norm, [B, 1+kept, D]. With ratio > 0 it first drops that
// share of the patches per image, as MUMC's masked ViT does
// (mae_v2.forward_encoder with mask_ratio; noise [B, patches] orders them,
// the lowest kept).
func ImageTokens(v *torchmods.ViT, imgs *ts.Tensor, ratio float64, noise *ts.Tensor, train bool) *ts.Tensor {
	x := v.Embed(imgs)
	if ratio > 0 {
		x, _, _ = mae.RandomMasking(x, ratio, noise)
	}
	x = v.WithCls(x)
	for _, b := range v.Blocks {
		x = b.Forward(x, train)
	}
	return v.Norm.Forward(x)
}

// MaskNoise draws the uniform noise [b, patches] that orders each image's
// patches for masking, from rng, so that a step's masks follow from its
// seed (and a resumed run draws the same ones).
func MaskNoise(rng *rand.Rand, b, patches int64, dev gotch.Device) *ts.Tensor {
	v := make([]float32, b*patches)
	for i := range v {
		v[i] = rng.Float32()
	}
	return torchmods.FromSlice(v, []int64{b, patches}, dev)
}

// ITMHead is MUMC's two-layer matching head (build_itm): itm_head.0
// Linear(h, 2h), .1 LayerNorm, .2 GELU, .3 Linear(2h, 2).
type ITMHead struct {
	FC1, FC2 *torchmods.Linear
	Norm     *torchmods.LayerNorm
}

// NewITMHead registers the head under p with nn.Sequential's names.
func NewITMHead(p torchmods.Path, width int64) *ITMHead {
	return &ITMHead{
		FC1:  torchmods.NewLinear(p.Sub("0"), torchmods.LinearOptions{In: width, Out: 2 * width}),
		Norm: torchmods.NewLayerNorm(p.Sub("1"), torchmods.NormOptions{Dim: 2 * width, Eps: 1e-5}),
		FC2:  torchmods.NewLinear(p.Sub("3"), torchmods.LinearOptions{In: 2 * width, Out: 2}),
	}
}

// Forward maps [N, h] to match/no-match logits [N, 2] (index 1 = match).
func (h *ITMHead) Forward(x *ts.Tensor) *ts.Tensor {
	return h.FC2.Forward(torchmods.GELU.Apply(h.Norm.Forward(h.FC1.Forward(x))))
}

// PretrainModel is MUMC_Pretrain with its state_dict names: the online
// encoders and projections (visual_encoder, text_encoder, vision_proj,
// text_proj), their momentum copies (the same names with _m), the
// temperature temp, itm_head, and the feature queues image_queue,
// text_queue and queue_ptr.
type PretrainModel struct {
	Visual, VisualM        *torchmods.ViT
	Text, TextM            *torchmods.BertForMaskedLM
	VisionProj, TextProj   *torchmods.Linear
	VisionProjM, TextProjM *torchmods.Linear
	Temp                   *ts.Tensor // 0-d, learned, clamped to [0.001, 0.5] before each step
	ITM                    *ITMHead
	Queue                  *Queue
	Momentum               *Momentum
	Cfg                    ModelConfig
}

// NewPretrainModel registers the model under p. The momentum copies start
// equal to the online modules and are never trained (copy_params); the
// queues start as random unit columns, as the official code's.
func NewPretrainModel(p torchmods.Path, c ModelConfig, temp, momentum float64, queueSize int64) (*PretrainModel, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if queueSize <= 0 {
		return nil, config.Field("objective.queue_size", "must be positive, got %d", queueSize)
	}
	m := &PretrainModel{Cfg: c}
	err := torchmods.Try(func() {
		m.Visual = torchmods.NewViT(p.Sub("visual_encoder"), c.vit(true))
		m.Text = torchmods.NewBertForMaskedLM(p.Sub("text_encoder"), c.Text)
		m.VisionProj = torchmods.NewLinear(p.Sub("vision_proj"), torchmods.LinearOptions{In: c.VisionWidth, Out: c.EmbedDim})
		m.TextProj = torchmods.NewLinear(p.Sub("text_proj"), torchmods.LinearOptions{In: c.Text.HiddenSize, Out: c.EmbedDim})
		m.Temp = p.New("temp", []int64{}, torchmods.Const(temp), true)
		m.VisualM = torchmods.NewViT(p.Sub("visual_encoder_m"), c.vit(true))
		m.TextM = torchmods.NewBertForMaskedLM(p.Sub("text_encoder_m"), c.Text)
		m.VisionProjM = torchmods.NewLinear(p.Sub("vision_proj_m"), torchmods.LinearOptions{In: c.VisionWidth, Out: c.EmbedDim})
		m.TextProjM = torchmods.NewLinear(p.Sub("text_proj_m"), torchmods.LinearOptions{In: c.Text.HiddenSize, Out: c.EmbedDim})
		m.Queue = NewQueue(p, c.EmbedDim, queueSize)
		m.ITM = NewITMHead(p.Sub("itm_head"), c.Text.HiddenSize)
	})
	if err != nil {
		return nil, err
	}
	var merr error
	m.Momentum, merr = NewMomentum(p, momentum, "visual_encoder", "vision_proj", "text_encoder", "text_proj")
	if merr != nil {
		return nil, merr
	}
	return m, nil
}

// TextLayers and FusionLayers are ALBEF's modes "text" and "fusion" as
// BertInput layer ranges.
func textLayers(c torchmods.BertConfig) (int, int) { return 0, int(c.FusionLayer) }

func fusionLayers(c torchmods.BertConfig) (int, int) {
	return int(c.FusionLayer), int(c.NumHiddenLayers)
}

// VQAModel is MUMC_VQA with its names: visual_encoder (a ViT with a
// learned position table), text_encoder (a BertModel, without the bert.
// prefix: text layers then multimodal layers over the image tokens),
// text_decoder (BertLMHeadModel: bert.* with cross-attention in every
// layer, over the question's fused states, and cls.*), and with
// distillation their momentum copies (_m).
type VQAModel struct {
	Visual, VisualM   *torchmods.ViT
	Text, TextM       *torchmods.Bert
	Decoder, DecoderM *torchmods.BertForMaskedLM
	Momentum          *Momentum // nil without distillation
	Cfg               ModelConfig
}

// NewVQAModel registers the model under p; distill adds the momentum copies.
func NewVQAModel(p torchmods.Path, c ModelConfig, distill bool, momentum float64) (*VQAModel, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &VQAModel{Cfg: c}
	dec := c.decoderConfig()
	err := torchmods.Try(func() {
		m.Visual = torchmods.NewViT(p.Sub("visual_encoder"), c.vit(false))
		albefViTInit(m.Visual)
		m.Text = torchmods.NewBert(p.Sub("text_encoder"), c.Text, false)
		m.Decoder = torchmods.NewBertForMaskedLM(p.Sub("text_decoder"), dec)
		if distill {
			m.VisualM = torchmods.NewViT(p.Sub("visual_encoder_m"), c.vit(false))
			m.TextM = torchmods.NewBert(p.Sub("text_encoder_m"), c.Text, false)
			m.DecoderM = torchmods.NewBertForMaskedLM(p.Sub("text_decoder_m"), dec)
		}
	})
	if err != nil {
		return nil, err
	}
	if distill {
		if m.Momentum, err = NewMomentum(p, momentum, "visual_encoder", "text_encoder", "text_decoder"); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// albefViTInit re-initialises a ViT as ALBEF's vit.py does, the VQA
// model's image encoder before any weights load: Linear weights
// trunc_normal(std .02) and biases zero, cls_token and pos_embed
// trunc_normal(.02), the patch projection PyTorch's Conv2d default
// (U(±1/sqrt(fan_in)) for weight and bias), where NewViT follows MAE.
func albefViTInit(v *torchmods.ViT) {
	ts.NoGrad(func() {
		for _, b := range v.Blocks {
			for _, l := range []*torchmods.Linear{b.Attn.QKV, b.Attn.Out, b.MLP.FC1, b.MLP.FC2} {
				l.Weight.Copy_(torchmods.TruncNormal(0.02)(l.Weight.MustSize(), l.Weight.MustDevice()))
				l.Bias.MustZero_()
			}
		}
		for _, t := range []*ts.Tensor{v.ClsToken, v.PosEmbed} {
			t.Copy_(torchmods.TruncNormal(0.02)(t.MustSize(), t.MustDevice()))
		}
		pe := v.PatchEmbed
		fanIn := pe.InChans * pe.Patch * pe.Patch
		pe.Weight.Copy_(torchmods.FanInUniform(fanIn)(pe.Weight.MustSize(), pe.Weight.MustDevice()))
		pe.Bias.Copy_(torchmods.FanInUniform(fanIn)(pe.Bias.MustSize(), pe.Bias.MustDevice()))
	})
}

// FuseQuestion runs the question [B, L] (mask [B, L]) through all the
// text encoder's layers, the multimodal ones attending to the image
// tokens: the states [B, L, H] the decoder reads.
func FuseQuestion(text *torchmods.Bert, ids, mask, image *ts.Tensor, train bool) *ts.Tensor {
	return text.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask, Context: image}, train)
}

// checkWidth panics, naming the tensor, when x's last dimension is not want.
func checkWidth(name string, x *ts.Tensor, want int64) {
	s := x.MustSize()
	if len(s) == 0 || s[len(s)-1] != want {
		panic(fmt.Errorf("vqa: %s of shape %v, want last dimension %d", name, s, want))
	}
}
