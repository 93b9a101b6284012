package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// This file is OpenAI's CLIP as clip/model.py (github.com/openai/CLIP)
// defines it, with its state-dict names, so that a released state dict
// loads as it is: the text transformer, the vision transformer, and
// encode_image, encode_text and forward. The ModifiedResNet backbone is in
// clip_resnet.go, the config and its inference from a state dict in
// clip_config.go, loading in clip_load.go, HF's CLIPModel names in
// clip_hf.go.

// CLIP is clip/model.py's CLIP. Its parameters are registered under
// OpenAI's names: visual.* (CLIPVisionTransformer or ModifiedResNet),
// transformer.resblocks.N.*, token_embedding.weight, positional_embedding,
// ln_final, text_projection [width, embed] and logit_scale (a scalar:
// the logits are scaled by its exp, log(1/0.07) at initialisation).
type CLIP struct {
	Cfg                 CLIPConfig
	Visual              CLIPVisual
	Transformer         *CLIPTransformer // the text transformer, causal
	TokenEmbedding      *Embedding
	PositionalEmbedding *ts.Tensor // [context, width]
	LnFinal             *LayerNorm
	TextProjection      *ts.Tensor // [width, embed]: features are x @ TextProjection
	LogitScale          *ts.Tensor // []
}

// CLIPVisual is an image encoder of CLIP: images [B, 3, R, R] to features
// [B, embed]. train matters to the ResNet's BatchNorms only.
type CLIPVisual interface {
	Forward(x *ts.Tensor, train bool) *ts.Tensor
}

// NewCLIP registers a CLIP under p, initialised as model.py's
// initialize_parameters (what a model to be loaded starts from does not
// matter; one trained from scratch starts where OpenAI's did). The config
// is validated first: a bad one panics with Validate's error.
func NewCLIP(p Path, c CLIPConfig) *CLIP {
	if err := c.Validate(); err != nil {
		panic(err)
	}
	m := &CLIP{Cfg: c}
	if c.IsResNet() {
		m.Visual = NewModifiedResNet(p.Sub("visual"), ModifiedResNetOptions{
			Layers: c.VisionLayers, OutputDim: c.EmbedDim, Heads: c.VisionHeads, Resolution: c.ImageResolution, Width: c.VisionWidth})
	} else {
		m.Visual = NewCLIPVisionTransformer(p.Sub("visual"), CLIPVisionOptions{
			Resolution: c.ImageResolution, Patch: c.VisionPatchSize, Width: c.VisionWidth, Layers: c.VisionLayers[0],
			Heads: c.VisionHeads, OutputDim: c.EmbedDim, MLP: c.VisionMLP, Act: c.VisionAct, Eps: c.VisionEps})
	}
	w := c.TransformerWidth
	m.Transformer = NewCLIPTransformer(p.Sub("transformer"), CLIPTransformerOptions{
		Width: w, Layers: c.TransformerLayers, Heads: c.TransformerHeads, MLP: c.TextMLP, Act: c.TextAct, Eps: c.TextEps})
	m.TokenEmbedding = &Embedding{Weight: p.Sub("token_embedding").New("weight", []int64{c.VocabSize, w}, Normal(0.02), false),
		Num: c.VocabSize, Dim: w, PaddingIdx: -1}
	m.PositionalEmbedding = p.New("positional_embedding", []int64{c.ContextLength, w}, Normal(0.01), false)
	m.LnFinal = NewLayerNorm(p.Sub("ln_final"), NormOptions{Dim: w, Eps: c.TextEps})
	m.TextProjection = p.New("text_projection", []int64{w, c.EmbedDim}, Normal(math.Pow(float64(w), -0.5)), false)
	m.LogitScale = p.New("logit_scale", []int64{}, scalarInit(math.Log(1/0.07)), true)
	m.Transformer.initText()
	return m
}

// scalarInit fills a parameter of no dimensions (logit_scale) with v;
// gotch makes no tensor of shape [] directly.
func scalarInit(v float64) Init {
	return func(_ []int64, dev gotch.Device) *ts.Tensor {
		return ts.MustFull([]int64{1}, ts.FloatScalar(v), gotch.Float, dev).MustSqueeze(true)
	}
}

// EncodeImage is encode_image: images [B, 3, R, R] (float) to features
// [B, embed], not normalised.
func (m *CLIP) EncodeImage(image *ts.Tensor, train bool) *ts.Tensor {
	return m.Visual.Forward(image, train)
}

// EncodeText is encode_text: token ids [B, L] (int64 or int32, as
// clip.tokenize returns; L at most the context length) to features
// [B, embed], not normalised, taken at each row's end-of-text token
// (EOTPositions).
func (m *CLIP) EncodeText(ids *ts.Tensor) *ts.Tensor {
	ids = clipIDs(ids)
	return m.EncodeTokens(m.TokenEmbedding.Forward(ids), m.EOTPositions(ids))
}

// EncodeTokens is encode_text from the token embeddings on: x [B, L,
// width] (token_embedding's output, or prompts with learned context
// vectors in it, as CoOp's TextEncoder) gets the positional embedding,
// the causal transformer and ln_final, and the row of each example at eot
// [B] (int64 positions) is projected to [B, embed].
func (m *CLIP) EncodeTokens(x, eot *ts.Tensor) *ts.Tensor {
	s := x.MustSize()
	w := m.Cfg.TransformerWidth
	if len(s) != 3 || s[2] != w || s[1] > m.Cfg.ContextLength || s[1] == 0 {
		panic(fmt.Errorf("CLIP text: token embeddings of shape %v, want [B, L ≤ %d, %d]", s, m.Cfg.ContextLength, w))
	}
	if es := eot.MustSize(); len(es) != 1 || es[0] != s[0] || eot.DType() != gotch.Int64 {
		panic(fmt.Errorf("CLIP text: end-of-text positions of shape %v and dtype %v, want [%d] int64", es, eot.DType(), s[0]))
	}
	l := s[1]
	h := x.MustAdd(m.PositionalEmbedding.MustNarrow(0, 0, l, false), false)
	mask := ts.MustOnes([]int64{l, l}, gotch.Bool, x.MustDevice()).MustTriu(1, true) // true above the diagonal: not allowed
	h = m.LnFinal.Forward(m.Transformer.Forward(h, mask, false))
	idx := eot.MustView([]int64{s[0], 1, 1}, false).MustExpand([]int64{s[0], 1, w}, false, true)
	return h.MustGather(1, idx, false, true).MustSqueezeDim(1, true).MustMatmul(m.TextProjection, true)
}

// TextHidden is the text transformer's output after ln_final, [B, L,
// width], every position (EncodeText projects the end-of-text row of it).
func (m *CLIP) TextHidden(ids *ts.Tensor) *ts.Tensor {
	ids = clipIDs(ids)
	x := m.TokenEmbedding.Forward(ids)
	l := x.MustSize()[1]
	if l > m.Cfg.ContextLength {
		panic(fmt.Errorf("CLIP text: %d tokens, more than the context length %d", l, m.Cfg.ContextLength))
	}
	x = x.MustAdd(m.PositionalEmbedding.MustNarrow(0, 0, l, false), true)
	mask := ts.MustOnes([]int64{l, l}, gotch.Bool, x.MustDevice()).MustTriu(1, true)
	return m.LnFinal.Forward(m.Transformer.Forward(x, mask, false))
}

// EOTPositions is where each row of ids [B, L] ends: model.py's
// text.argmax(dim=-1), the first position of the row's largest id (the
// end-of-text token is the vocabulary's last). With Cfg.EOSTokenID set
// (HF's eos_token_id, other than its legacy 2) it is the first position
// holding that id instead, as HF's CLIPTextTransformer pools; the two
// agree on CLIP's tokenizer's output.
func (m *CLIP) EOTPositions(ids *ts.Tensor) *ts.Tensor {
	ids = clipIDs(ids)
	if s := ids.MustSize(); len(s) != 2 {
		panic(fmt.Errorf("CLIP text: token ids of shape %v, want [B, L]", s))
	}
	if e := m.Cfg.EOSTokenID; e != 0 && e != 2 {
		return ids.MustEq(ts.IntScalar(e), false).MustTotype(gotch.Int64, true).MustArgmax([]int64{-1}, false, true)
	}
	return ids.MustArgmax([]int64{-1}, false, false)
}

// clipIDs takes int32 ids (clip.tokenize's, for torch 1.8 and later) as int64.
func clipIDs(ids *ts.Tensor) *ts.Tensor {
	if ids.DType() == gotch.Int64 {
		return ids
	}
	if ids.DType() != gotch.Int {
		panic(fmt.Errorf("CLIP text: token ids of dtype %v, want int64 or int32", ids.DType()))
	}
	return ids.MustTotype(gotch.Int64, false)
}

// Logits is the end of forward: both features normalised to unit length,
// logit_scale.exp() * image @ textᵀ, [images, texts] (logits_per_image;
// its transpose is logits_per_text).
func (m *CLIP) Logits(image, text *ts.Tensor) *ts.Tensor {
	img := image.MustDiv(image.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false), false)
	txt := text.MustDiv(text.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false), false)
	return img.MustMatmul(txt.MustT(true), true).MustMul(m.LogitScale.MustExp(false), true)
}

// Forward is CLIP.forward: logits_per_image [images, texts] and
// logits_per_text, its transpose.
func (m *CLIP) Forward(image, ids *ts.Tensor, train bool) (logitsPerImage, logitsPerText *ts.Tensor) {
	l := m.Logits(m.EncodeImage(image, train), m.EncodeText(ids))
	return l, l.MustT(false)
}

// CLIPTransformerOptions configures NewCLIPTransformer.
type CLIPTransformerOptions struct {
	Width, Layers, Heads int64
	MLP                  int64      // the MLP's hidden width; 0 means 4 × Width, as model.py
	Act                  Activation // "" means QuickGELU, as model.py
	Eps                  float64    // LayerNorm eps; 0 means 1e-5
}

// CLIPTransformer is model.py's Transformer: resblocks.N, pre-norm
// residual attention blocks, sequence-first in model.py and batch-first
// here (the same numbers).
type CLIPTransformer struct {
	Blocks []*CLIPResidualBlock
	Opt    CLIPTransformerOptions
}

// NewCLIPTransformer registers resblocks.0 ... under p.
func NewCLIPTransformer(p Path, o CLIPTransformerOptions) *CLIPTransformer {
	if o.MLP == 0 {
		o.MLP = 4 * o.Width
	}
	if o.Act == "" {
		o.Act = QuickGELU
	}
	if o.Eps == 0 {
		o.Eps = 1e-5
	}
	t := &CLIPTransformer{Opt: o}
	for i := range o.Layers {
		t.Blocks = append(t.Blocks, newCLIPResidualBlock(p.Sub(fmt.Sprintf("resblocks.%d", i)), o))
	}
	return t
}

// Forward runs the blocks on x [B, L, Width]; mask, if not nil, is as
// MultiheadAttention takes it ([L, L] bool, true where not allowed).
func (t *CLIPTransformer) Forward(x, mask *ts.Tensor, train bool) *ts.Tensor {
	for _, b := range t.Blocks {
		x = b.Forward(x, mask, train)
	}
	return x
}

// initText is initialize_parameters for the text transformer: in_proj
// N(0, width^-½), out_proj and c_proj N(0, width^-½ (2 layers)^-½), c_fc
// N(0, (2 width)^-½). (The vision transformer keeps PyTorch's defaults.)
func (t *CLIPTransformer) initText() {
	w, l := float64(t.Opt.Width), float64(t.Opt.Layers)
	attn, proj, fc := math.Pow(w, -0.5), math.Pow(w, -0.5)*math.Pow(2*l, -0.5), math.Pow(2*w, -0.5)
	ts.NoGrad(func() {
		for _, b := range t.Blocks {
			for _, c := range []struct {
				w   *ts.Tensor
				std float64
			}{{b.Attn.InProjWeight, attn}, {b.Attn.OutProj.Weight, proj}, {b.CFc.Weight, fc}, {b.CProj.Weight, proj}} {
				c.w.Copy_(Normal(c.std)(c.w.MustSize(), c.w.MustDevice()))
			}
		}
	})
}

// CLIPResidualBlock is model.py's ResidualAttentionBlock: x + attn(ln_1(x)),
// then x + mlp(ln_2(x)) with mlp = c_proj(QuickGELU(c_fc(x))). attn is
// nn.MultiheadAttention, whose packed in_proj_weight [3W, W] and
// in_proj_bias [3W] MultiheadAttention keeps under the same names.
type CLIPResidualBlock struct {
	Attn       *MultiheadAttention
	Ln1, Ln2   *LayerNorm
	CFc, CProj *Linear // mlp.c_fc, mlp.c_proj
	Act        Activation
}

func newCLIPResidualBlock(p Path, o CLIPTransformerOptions) *CLIPResidualBlock {
	b := &CLIPResidualBlock{Act: o.Act}
	b.Attn = NewMultiheadAttention(p.Sub("attn"), MultiheadAttentionOptions{Dim: o.Width, Heads: o.Heads})
	b.Ln1 = NewLayerNorm(p.Sub("ln_1"), NormOptions{Dim: o.Width, Eps: o.Eps})
	b.CFc = NewLinear(p.Sub("mlp.c_fc"), LinearOptions{In: o.Width, Out: o.MLP})
	b.CProj = NewLinear(p.Sub("mlp.c_proj"), LinearOptions{In: o.MLP, Out: o.Width})
	b.Ln2 = NewLayerNorm(p.Sub("ln_2"), NormOptions{Dim: o.Width, Eps: o.Eps})
	return b
}

// Forward applies the block to x [B, L, W]. It runs in a scope of its own
// and keeps only its output, so that a block's intermediates (attention
// scores and probabilities, the MLP's 4W-wide activations) are freed when
// it returns, not when the caller's scope closes, which would hold every
// block's at once: autograd keeps its own references to what backward
// needs, so training is unchanged (see Bert's layer).
func (b *CLIPResidualBlock) Forward(x, mask *ts.Tensor, train bool) *ts.Tensor {
	sc := ts.NewScope()
	defer sc.Close()
	h := b.Ln1.Forward(x)
	x = x.MustAdd(b.Attn.Forward(h, h, h, mask, train), false)
	h = b.CProj.Forward(b.Act.Apply(b.CFc.Forward(b.Ln2.Forward(x))))
	out := x.MustAdd(h, false)
	sc.Keep(out)
	return out
}

// CLIPVisionOptions configures NewCLIPVisionTransformer.
type CLIPVisionOptions struct {
	Resolution, Patch, Width, Layers, Heads, OutputDim int64
	MLP                                                int64      // 0: 4 × Width
	Act                                                Activation // "": QuickGELU
	Eps                                                float64    // 0: 1e-5
}

// CLIPVisionTransformer is model.py's VisionTransformer: conv1 (patches,
// no bias), class_embedding [W], positional_embedding [grid²+1, W],
// ln_pre, transformer.resblocks.N, ln_post on the class token, and proj
// [W, embed] applied as x @ proj.
type CLIPVisionTransformer struct {
	Conv1               *ts.Tensor // [W, 3, patch, patch]
	ClassEmbedding      *ts.Tensor // [W]
	PositionalEmbedding *ts.Tensor // [grid²+1, W]
	LnPre, LnPost       *LayerNorm
	Transformer         *CLIPTransformer
	Proj                *ts.Tensor // [W, embed]
	Opt                 CLIPVisionOptions
}

// NewCLIPVisionTransformer registers the encoder under p with model.py's
// initialisation (class and positional embeddings and proj scaled N(0, 1)
// by W^-½, conv1 as PyTorch's Conv2d).
func NewCLIPVisionTransformer(p Path, o CLIPVisionOptions) *CLIPVisionTransformer {
	if o.Patch <= 0 || o.Resolution%o.Patch != 0 {
		panic(fmt.Errorf("CLIP vision transformer: resolution %d is not a multiple of patch size %d", o.Resolution, o.Patch))
	}
	g := o.Resolution / o.Patch
	scale := math.Pow(float64(o.Width), -0.5)
	v := &CLIPVisionTransformer{Opt: o}
	v.Conv1 = p.Sub("conv1").New("weight", []int64{o.Width, 3, o.Patch, o.Patch}, FanInUniform(3*o.Patch*o.Patch), false)
	v.ClassEmbedding = p.New("class_embedding", []int64{o.Width}, Normal(scale), true)
	v.PositionalEmbedding = p.New("positional_embedding", []int64{g*g + 1, o.Width}, Normal(scale), false)
	v.LnPre = NewLayerNorm(p.Sub("ln_pre"), NormOptions{Dim: o.Width, Eps: o.Eps})
	v.Transformer = NewCLIPTransformer(p.Sub("transformer"), CLIPTransformerOptions{Width: o.Width, Layers: o.Layers, Heads: o.Heads, MLP: o.MLP, Act: o.Act, Eps: o.Eps})
	v.LnPost = NewLayerNorm(p.Sub("ln_post"), NormOptions{Dim: o.Width, Eps: o.Eps})
	v.Proj = p.New("proj", []int64{o.Width, o.OutputDim}, Normal(scale), false)
	return v
}

// Tokens is the transformer's output [B, grid²+1, W] for images [B, 3,
// R, R], the class token first, before ln_post.
func (v *CLIPVisionTransformer) Tokens(x *ts.Tensor, train bool) *ts.Tensor {
	o := v.Opt
	s := x.MustSize()
	if len(s) != 4 || s[1] != 3 || s[2] != o.Resolution || s[3] != o.Resolution {
		panic(fmt.Errorf("CLIP vision transformer: images of shape %v, want [B, 3, %d, %d]", s, o.Resolution, o.Resolution))
	}
	h := ts.MustConv2d(x, v.Conv1, ts.None, []int64{o.Patch, o.Patch}, []int64{0, 0}, []int64{1, 1}, 1) // [B, W, g, g]
	h = h.MustFlatten(2, -1, true).MustTranspose(1, 2, true)                                            // [B, g², W]
	cls := v.ClassEmbedding.MustView([]int64{1, 1, o.Width}, false).MustExpand([]int64{s[0], 1, o.Width}, false, true)
	h = ts.MustCat([]*ts.Tensor{cls, h}, 1).MustAdd(v.PositionalEmbedding, true)
	return v.Transformer.Forward(v.LnPre.Forward(h), nil, train)
}

// Forward is VisionTransformer.forward: ln_post of the class token, @ proj.
func (v *CLIPVisionTransformer) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	return v.LnPost.Forward(v.Tokens(x, train).MustSelect(1, 0, true)).MustMatmul(v.Proj, true)
}
