package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// LlamaForCausalLM is HF's LlamaForCausalLM, and MistralForCausalLM (the
// same network with a sliding-window mask), under HF's names:
// model.embed_tokens, model.layers.N.{self_attn.{q,k,v,o}_proj,
// mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm},
// model.norm and lm_head (absent when tied to embed_tokens). It computes
// what modeling_llama.py computes, in its order, so that logits and
// gradients agree with PyTorch to float32 rounding (gen_llama.py's
// fixtures):
//
//   - RMSNorm in float32, cast back to the input's dtype (RMSNorm);
//   - rotary positions in the rotate-half convention, cos and sin computed
//     in float32 from per-row position ids and cast to the activations'
//     dtype, with linear or Llama 3.1 frequency scaling (llamaInvFreq);
//   - grouped-query attention: scores q kᵀ·head_dim^-½ plus an additive mask
//     that holds the dtype's lowest value (not -inf) where a key is in the
//     future, padding, or outside the sliding window, softmax in float32;
//   - the SwiGLU MLP down(silu(gate(x))·up(x)).
//
// Dtypes: the parameters are stored in the dtype they were built with
// (LlamaBuild.DType). Activations compute in that dtype, as HF does with
// torch_dtype, except float16 on the CPU, which libtorch's CPU kernels do
// not compute (no Half matmul, softmax or silu in 1.13): there weights are
// converted per call and activations compute in float32. So float32 and
// bfloat16 compute in their own dtype everywhere, and float16 in float16 on
// CUDA and float32 on the CPU (ComputeDType).
type LlamaForCausalLM struct {
	Cfg    LlamaConfig
	Embed  *Embedding    // model.embed_tokens; PaddingIdx is pad_token_id
	Layers []*LlamaLayer // model.layers.N
	Norm   *RMSNorm      // model.norm
	LMHead *Linear       // lm_head; nil when tie_word_embeddings
	// invFreq is RoPE's inverse frequencies [HeadDim/2], float32 (HF's
	// non-persistent inv_freq buffer: not a parameter, not saved).
	invFreq *ts.Tensor
}

// LlamaLayer is HF's LlamaDecoderLayer: pre-norm attention and MLP, each
// added to the residual stream.
type LlamaLayer struct {
	Attn              *LlamaAttention // self_attn
	MLP               *SwiGLU         // mlp (gate_proj, up_proj, down_proj)
	InputNorm         *RMSNorm        // input_layernorm
	PostAttentionNorm *RMSNorm        // post_attention_layernorm
}

// LlamaAttention is HF's LlamaAttention with its eager attention. It is
// not torchmods' Attention, which has the same projection names
// (LlamaNames) and grouped-query heads, because a Llama checkpoint needs
// what Attention does not do: a head size that is not width / heads
// (head_dim, whose o_proj maps heads·head_dim back to the width), rotary
// positions per row (left-padded batches) with scaled frequencies, and
// HF's dtype handling (softmax in float32 cast back, masks holding the
// dtype's lowest value, so that a fully masked padding row is uniform
// rather than NaN). It keeps Attention's KVCache and repeat_kv.
type LlamaAttention struct {
	Q, K, V, O              *Linear // q_proj, k_proj, v_proj, o_proj
	Heads, KVHeads, HeadDim int64
	Dropout                 float64 // on the attention weights, in training
}

// LlamaBuild says how NewLlamaForCausalLM makes the parameters.
type LlamaBuild struct {
	// DType is the parameters' dtype as a torch_dtype name: "" or
	// "float32", "bfloat16", "float16". Each parameter is created in it,
	// so a half-precision model never exists in float32 as a whole.
	DType string
	// ForLoading fills the parameters with zeros instead of HF's
	// initialisation, for a model whose weights a checkpoint is about to
	// replace (drawing billions of normals only to overwrite them costs
	// seconds to minutes). A load that leaves any parameter out is an
	// error (Family.LoadHFWeights), so the zeros are never used.
	ForLoading bool
}

// NewLlamaForCausalLM registers the model under p (the store's root, for
// HF's names). Unless o.ForLoading, it initialises as HF's _init_weights:
// Linear and Embedding weights N(0, initializer_range²), biases zero, the
// padding row zero, RMSNorm weights one. An invalid config or dtype panics
// with the error (callers use Try; OpenLlama checks both first).
func NewLlamaForCausalLM(p Path, c LlamaConfig, o LlamaBuild) *LlamaForCausalLM {
	if err := c.Validate(); err != nil {
		panic(err)
	}
	dt, err := ParseLlamaDType(o.DType)
	if err != nil {
		panic(fmt.Errorf("%s: %w", c.ModelType, err))
	}
	weights := func(shape []int64, dev gotch.Device) *ts.Tensor {
		if o.ForLoading {
			return ts.MustZeros(shape, dt, dev)
		}
		return Normal(c.InitializerRange)(shape, dev).MustTotype(dt, true)
	}
	zeros := func(shape []int64, dev gotch.Device) *ts.Tensor { return ts.MustZeros(shape, dt, dev) }
	ones := func(shape []int64, dev gotch.Device) *ts.Tensor { return ts.MustOnes(shape, dt, dev) }
	linear := func(p Path, in, out int64, bias bool) *Linear {
		l := &Linear{In: in, Out: out, Weight: p.New("weight", []int64{out, in}, weights, false)}
		if bias {
			l.Bias = p.New("bias", []int64{out}, zeros, true)
		}
		return l
	}
	norm := func(p Path) *RMSNorm {
		return &RMSNorm{Weight: p.New("weight", []int64{c.HiddenSize}, ones, true), Dim: c.HiddenSize, Eps: c.RMSNormEps}
	}

	m := &LlamaForCausalLM{Cfg: c}
	base := p.Sub("model")
	m.Embed = &Embedding{Weight: base.Sub("embed_tokens").New("weight", []int64{c.VocabSize, c.HiddenSize}, weights, false),
		Num: c.VocabSize, Dim: c.HiddenSize, PaddingIdx: c.PadTokenID}
	if c.PadTokenID >= 0 && !o.ForLoading {
		ts.NoGrad(func() { m.Embed.Weight.MustSelect(0, c.PadTokenID, false).MustZero_() })
	}
	h, hd := c.HiddenSize, c.HeadDim
	for i := range c.NumHiddenLayers {
		l := base.Sub(fmt.Sprintf("layers.%d", i))
		a := l.Sub("self_attn")
		mlp := l.Sub("mlp")
		m.Layers = append(m.Layers, &LlamaLayer{
			Attn: &LlamaAttention{
				Q:     linear(a.Sub("q_proj"), h, c.NumAttentionHeads*hd, c.AttentionBias),
				K:     linear(a.Sub("k_proj"), h, c.NumKeyValueHeads*hd, c.AttentionBias),
				V:     linear(a.Sub("v_proj"), h, c.NumKeyValueHeads*hd, c.AttentionBias),
				O:     linear(a.Sub("o_proj"), c.NumAttentionHeads*hd, h, c.AttentionBias),
				Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: hd, Dropout: c.AttentionDropout,
			},
			MLP: &SwiGLU{
				Gate: linear(mlp.Sub("gate_proj"), h, c.IntermediateSize, c.MLPBias),
				Up:   linear(mlp.Sub("up_proj"), h, c.IntermediateSize, c.MLPBias),
				Down: linear(mlp.Sub("down_proj"), c.IntermediateSize, h, c.MLPBias),
			},
			InputNorm:         norm(l.Sub("input_layernorm")),
			PostAttentionNorm: norm(l.Sub("post_attention_layernorm")),
		})
	}
	m.Norm = norm(base.Sub("norm"))
	if !c.TieWordEmbeddings {
		m.LMHead = linear(p.Sub("lm_head"), h, c.VocabSize, false)
	}
	m.invFreq = llamaInvFreq(c.Rope, hd).MustTo(p.store.Device, true)
	ts.Persist(m.invFreq)
	return m
}

// llamaInvFreq is HF's rope_init_fn for the implemented types, computed on
// the CPU in float32 with the operations HF uses, in its order, so that the
// frequencies are the same bits (HF computes them at __init__, on the CPU,
// and moves them with the model):
//
//	default: 1 / base^(arange(0, dim, 2) / dim)
//	linear:  default / factor
//	llama3:  _compute_llama3_parameters (long wavelengths divided by
//	         factor, short ones kept, the middle band interpolated)
func llamaInvFreq(r LlamaRope, dim int64) *ts.Tensor {
	cpu := gotch.CPU
	ex := ts.MustArangeStartStep(ts.IntScalar(0), ts.IntScalar(dim), ts.IntScalar(2), gotch.Int64, cpu).
		MustTotype(gotch.Float, true).MustDivScalar(ts.IntScalar(dim), true)
	inv := ts.MustPowScalar(ts.FloatScalar(r.Theta), ex).MustReciprocal(true) // 1.0 / t is reciprocal(t) * 1.0 in PyTorch
	ex.MustDrop()
	switch r.Type {
	case "linear":
		inv = inv.MustDivScalar(ts.FloatScalar(r.Factor), true)
	case "llama3":
		lowWavelen := float64(r.OriginalMaxPositions) / r.LowFreqFactor
		highWavelen := float64(r.OriginalMaxPositions) / r.HighFreqFactor
		wavelen := inv.MustReciprocal(false).MustMulScalar(ts.FloatScalar(2*math.Pi), true) // 2π / inv_freq
		scaled := inv.MustDivScalar(ts.FloatScalar(r.Factor), false)
		llama := scaled.MustWhereSelf(wavelen.MustGt(ts.FloatScalar(lowWavelen), false), inv, false) // where(cond, scaled, inv)
		smooth := wavelen.MustReciprocal(false).MustMulScalar(ts.IntScalar(r.OriginalMaxPositions), true).
			MustSubScalar(ts.FloatScalar(r.LowFreqFactor), true).MustDivScalar(ts.FloatScalar(r.HighFreqFactor-r.LowFreqFactor), true)
		smoothed := smooth.MustRsubScalar(ts.IntScalar(1), false).MustMul(llama, true).MustDivScalar(ts.FloatScalar(r.Factor), true).
			MustAdd(smooth.MustMul(llama, false), true)
		medium := wavelen.MustLt(ts.FloatScalar(highWavelen), false).MustLogicalNot(true).
			MustLogicalAnd(wavelen.MustGt(ts.FloatScalar(lowWavelen), false).MustLogicalNot(true), true)
		out := smoothed.MustWhereSelf(medium, llama, false)
		for _, t := range []*ts.Tensor{inv, wavelen, scaled, llama, smooth, smoothed, medium} {
			t.MustDrop()
		}
		inv = out
	}
	return inv
}

// ComputeDType is the dtype the activations compute in: the parameters',
// except float16 on the CPU, which computes in float32 (see the type).
func (m *LlamaForCausalLM) ComputeDType() gotch.DType {
	w := m.Embed.Weight
	if dt := w.DType(); dt != gotch.Half || w.MustDevice().IsCuda() {
		return dt
	}
	return gotch.Float
}

// LlamaCache is the key/value cache of every layer, HF's DynamicCache: one
// KVCache (torchmods' attention cache) per layer, holding the rotated keys
// and the values of every position so far, [B, KVHeads, T, HeadDim]. Its
// tensors outlive the scopes of the steps that fill it; Drop frees them.
type LlamaCache struct{ Layers []KVCache }

// NewLlamaCache is an empty cache for m.
func NewLlamaCache(m *LlamaForCausalLM) *LlamaCache {
	return &LlamaCache{Layers: make([]KVCache, len(m.Layers))}
}

// Len is the number of cached positions (0 for a nil cache).
func (c *LlamaCache) Len() int64 {
	if c == nil || len(c.Layers) == 0 {
		return 0
	}
	return c.Layers[0].Len()
}

// Drop frees the cached tensors.
func (c *LlamaCache) Drop() {
	for i := range c.Layers {
		c.Layers[i].Drop()
	}
}

// LlamaInput is what one forward pass takes, named after HF's arguments.
type LlamaInput struct {
	IDs *ts.Tensor // input_ids [B, L], int64
	// Mask is attention_mask [B, past+L] (past: the cached positions): 1
	// for a token, 0 for padding (on the left, for generation). nil means
	// every position is a token.
	Mask *ts.Tensor
	// Positions are position_ids [B, L] or [1, L], int64, the rotary
	// positions; nil means past, past+1, ..., as HF's forward counts them
	// whatever the padding. Left-padded batches want LlamaPositionIDs.
	Positions *ts.Tensor
	// Cache, if not nil, supplies the keys and values of earlier
	// positions and receives this call's (past_key_values).
	Cache *LlamaCache
	// Embeds, if not nil, are the input embeddings [B, L, hidden] (HF's
	// inputs_embeds), used instead of looking IDs up; IDs is then unused
	// and may be nil. They are cast to the compute dtype.
	Embeds *ts.Tensor
	// Adapt, if not nil, adds to the attention projections' outputs for
	// this call: proj(x) + Adapt(layer, name, x, train), name one of
	// "q_proj", "k_proj", "v_proj", "o_proj", x the projection's input; a
	// nil result adds nothing. It is how adapters such as LoRA
	// (LoRALinear.Delta) act without changing the model, per call, as
	// PEFT's disable_adapter() switches them off.
	Adapt func(layer int, name string, x *ts.Tensor, train bool) *ts.Tensor
}

// LlamaPositionIDs are the position ids of a left-padded batch as HF's
// generate derives them from attention_mask [B, S]: mask.cumsum(-1) - 1,
// with 1 at the padding; so every row's first token is at position 0, as
// it would be without padding.
func LlamaPositionIDs(mask *ts.Tensor) *ts.Tensor {
	m := mask.MustTotype(gotch.Int64, false)
	pos := m.MustCumsum(-1, gotch.Int64, false).MustSubScalar(ts.IntScalar(1), true)
	return pos.MustMaskedFill(m.MustEq(ts.IntScalar(0), true), ts.IntScalar(1), true)
}

// Forward gives the logits [B, L, vocab] in the compute dtype.
func (m *LlamaForCausalLM) Forward(in LlamaInput, train bool) *ts.Tensor {
	return m.Logits(m.Hidden(in, train))
}

// Logits applies lm_head (or the tied embedding) to hidden states.
func (m *LlamaForCausalLM) Logits(hidden *ts.Tensor) *ts.Tensor {
	if m.LMHead != nil {
		return lin(m.LMHead, hidden)
	}
	w := m.Embed.Weight
	if w.DType() != hidden.DType() {
		w = w.MustTotype(hidden.DType(), false)
	}
	return linear(hidden, w, nil)
}

// Hidden runs the decoder (HF's LlamaModel): the final normed hidden
// states [B, L, hidden]. Shapes that do not fit panic with an error naming
// the input.
func (m *LlamaForCausalLM) Hidden(in LlamaInput, train bool) *ts.Tensor {
	var b, l int64
	if in.Embeds != nil {
		s := in.Embeds.MustSize()
		if len(s) != 3 || s[2] != m.Cfg.HiddenSize {
			panic(fmt.Errorf("%s: inputs_embeds of shape %v, want [batch, length, %d]", m.Cfg.ModelType, s, m.Cfg.HiddenSize))
		}
		b, l = s[0], s[1]
	} else {
		s := in.IDs.MustSize()
		if len(s) != 2 {
			panic(fmt.Errorf("%s: input_ids of shape %v, want [batch, length]", m.Cfg.ModelType, s))
		}
		b, l = s[0], s[1]
	}
	past := in.Cache.Len()
	if in.Cache != nil && len(in.Cache.Layers) != len(m.Layers) {
		panic(fmt.Errorf("%s: a cache of %d layers for a model of %d", m.Cfg.ModelType, len(in.Cache.Layers), len(m.Layers)))
	}
	if in.Mask != nil {
		if ms := in.Mask.MustSize(); !equalShape(ms, []int64{b, past + l}) {
			panic(fmt.Errorf("%s: attention_mask of shape %v, want [%d, %d] (batch, cached + new positions)", m.Cfg.ModelType, ms, b, past+l))
		}
	}
	var dev gotch.Device
	if in.Embeds != nil {
		dev = in.Embeds.MustDevice()
	} else {
		dev = in.IDs.MustDevice()
	}
	pos := in.Positions
	if pos == nil {
		pos = ts.MustArangeStart(ts.IntScalar(past), ts.IntScalar(past+l), gotch.Int64, dev).MustUnsqueeze(0, true)
	} else if ps := pos.MustSize(); len(ps) != 2 || (ps[0] != b && ps[0] != 1) || ps[1] != l {
		panic(fmt.Errorf("%s: position_ids of shape %v, want [%d, %d]", m.Cfg.ModelType, ps, b, l))
	}
	dt := m.ComputeDType()
	var x *ts.Tensor
	if in.Embeds != nil {
		x = in.Embeds.MustShallowClone() // a handle of its own: the layers below free the stream's
	} else {
		x = m.Embed.Forward(in.IDs)
	}
	if x.DType() != dt {
		x = x.MustTotype(dt, true)
	}
	cos, sin := m.rope(pos, dt)
	mask := llamaMask(in.Mask, b, l, past, m.Cfg.SlidingWindow, dt, dev)
	for i, layer := range m.Layers {
		x = m.layer(i, layer, x, cos, sin, mask, in, train)
	}
	return m.Norm.Forward(x)
}

// layer runs decoder layer i on the residual stream x in a scope of its
// own, keeping only its output: its intermediates (the normed inputs,
// queries, keys and values, attention scores and probabilities, the MLP's
// intermediate-wide activations) are freed when it returns, not when the
// caller's scope closes, which would hold every layer's at once. Autograd
// keeps its own references to what the backward pass needs, so training
// is unchanged (see Bert's layer). The keys and values it adds to a cache
// outlive the scope because KVCache.append persists them. x itself is
// freed here (the stream's handle, as before: MustAdd with del).
func (m *LlamaForCausalLM) layer(i int, layer *LlamaLayer, x, cos, sin, mask *ts.Tensor, in LlamaInput, train bool) *ts.Tensor {
	sc := ts.NewScope()
	defer sc.Close()
	var cache *KVCache
	if in.Cache != nil {
		cache = &in.Cache.Layers[i]
	}
	var adapt func(string, *ts.Tensor) *ts.Tensor
	if in.Adapt != nil {
		adapt = func(name string, h *ts.Tensor) *ts.Tensor { return in.Adapt(i, name, h, train) }
	}
	a := layer.Attn.forward(layer.InputNorm.Forward(x), cos, sin, mask, cache, train, adapt)
	x = x.MustAdd(a, true)
	x = x.MustAdd(layer.mlp(layer.PostAttentionNorm.Forward(x)), true)
	sc.Keep(x)
	return x
}

// mlp is SwiGLU.Forward through lin, so that float16 weights on the CPU
// compute in float32.
func (l *LlamaLayer) mlp(x *ts.Tensor) *ts.Tensor {
	s := l.MLP
	return lin(s.Down, lin(s.Gate, x).MustSilu(true).MustMul(lin(s.Up, x), true))
}

// rope is LlamaRotaryEmbedding.forward: cos and sin [B, 1, L, HeadDim] for
// positions [B, L], computed in float32 and cast to dt.
func (m *LlamaForCausalLM) rope(pos *ts.Tensor, dt gotch.DType) (cos, sin *ts.Tensor) {
	freqs := pos.MustTotype(gotch.Float, false).MustUnsqueeze(-1, true).MustMul(m.invFreq, true) // [B, L, d/2]
	emb := ts.MustCat([]*ts.Tensor{freqs, freqs}, -1)
	cos = emb.MustCos(false).MustTotype(dt, true).MustUnsqueeze(1, true)
	sin = emb.MustSin(true).MustTotype(dt, true).MustUnsqueeze(1, true)
	return cos, sin
}

// lowest is torch.finfo(dt).min, what HF's masks hold where attention is
// not allowed.
func lowest(dt gotch.DType) float64 {
	switch dt {
	case gotch.Double:
		return -math.MaxFloat64
	case gotch.BFloat16:
		return -3.3895313892515355e38
	case gotch.Half:
		return -65504
	}
	return -math.MaxFloat32
}

// llamaMask is HF's 4-D mask (_prepare_4d_causal_attention_mask_with_cache_position)
// as [B or 1, 1, L, past+L] in dt: 0 where query i (cache position past+i)
// may attend key j, the dtype's lowest value where j > past+i, where key j
// is padding (attn[b, j] == 0), or, with a sliding window w, where
// j <= past+i-w. A padding query row is then all lowest, which the softmax
// turns into uniform weights, as in HF (-inf would give NaN).
func llamaMask(attn *ts.Tensor, b, l, past, window int64, dt gotch.DType, dev gotch.Device) *ts.Tensor {
	s := past + l
	q := ts.MustArangeStart(ts.IntScalar(past), ts.IntScalar(s), gotch.Int64, dev).MustUnsqueeze(1, true) // [L, 1]
	k := ts.MustArange(ts.IntScalar(s), gotch.Int64, dev).MustUnsqueeze(0, true)                          // [1, S]
	bad := k.MustGtTensor(q, false)
	if window > 0 {
		bad = bad.MustLogicalOr(k.MustLeTensor(q.MustSubScalar(ts.IntScalar(window), false), false), true)
	}
	bad = bad.MustView([]int64{1, 1, l, s}, true)
	if attn != nil {
		pad := attn.MustEq(ts.IntScalar(0), false).MustView([]int64{b, 1, 1, s}, true)
		bad = bad.MustLogicalOr(pad, true)
	}
	return ts.MustZeros(bad.MustSize(), dt, dev).MustMaskedFill(bad, ts.FloatScalar(lowest(dt)), true)
}

// lin applies l to x in x's dtype, converting weights stored in another
// dtype for the call (float16 weights on the CPU, computing in float32).
func lin(l *Linear, x *ts.Tensor) *ts.Tensor {
	mustLastDim("Linear", x, l.In)
	w, b := l.Weight, l.Bias
	if w.DType() != x.DType() {
		w = w.MustTotype(x.DType(), false)
		if b != nil {
			b = b.MustTotype(x.DType(), false)
		}
	}
	return linear(x, w, b)
}

// Forward attends x [B, L, hidden] with the rotary tables cos and sin
// [B, 1, L, HeadDim] and the additive mask [B or 1, 1, L, past+L]; with a
// cache, earlier keys and values come from it and this call's are added.
func (a *LlamaAttention) Forward(x, cos, sin, mask *ts.Tensor, cache *KVCache, train bool) *ts.Tensor {
	return a.forward(x, cos, sin, mask, cache, train, nil)
}

// forward is Forward with adapt (nil: none) adding to the projections'
// outputs, adapt(name, input).
func (a *LlamaAttention) forward(x, cos, sin, mask *ts.Tensor, cache *KVCache, train bool, adapt func(string, *ts.Tensor) *ts.Tensor) *ts.Tensor {
	s := x.MustSize()
	b, l := s[0], s[1]
	heads := func(t *ts.Tensor, n int64) *ts.Tensor { // [B, L, n*hd] -> [B, n, L, hd]
		return t.MustView([]int64{b, l, n, a.HeadDim}, true).MustTranspose(1, 2, true)
	}
	proj := func(name string, p *Linear, x *ts.Tensor) *ts.Tensor {
		y := lin(p, x)
		if adapt != nil {
			if d := adapt(name, x); d != nil {
				y = y.MustAdd(d, true)
			}
		}
		return y
	}
	q := rotateHalfApply(heads(proj("q_proj", a.Q, x), a.Heads), cos, sin)
	k := rotateHalfApply(heads(proj("k_proj", a.K, x), a.KVHeads), cos, sin)
	v := heads(proj("v_proj", a.V, x), a.KVHeads)
	if cache != nil {
		k, v = cache.append(k, v) // the cache's tensors: not deleted below
	}
	if rep := a.Heads / a.KVHeads; rep > 1 {
		k, v = repeatKV(k, rep), repeatKV(v, rep)
	}
	var o *ts.Tensor
	if a.fusedFor(mask, train) {
		o = fusedSDPA(q, k, v, a.fusedMask(mask))
	} else {
		dt := q.DType()
		w := q.MustMatmul(k.MustTranspose(2, 3, false), true).MustMulScalar(ts.FloatScalar(math.Pow(float64(a.HeadDim), -0.5)), true)
		w = w.MustAdd(mask, true).MustSoftmax(-1, gotch.Float, true).MustTotype(dt, true)
		o = Dropout(w, a.Dropout, train).MustMatmul(v, true)
	}
	o = o.MustTranspose(1, 2, true).MustContiguous(true).MustView([]int64{b, l, a.Heads * a.HeadDim}, true)
	return proj("o_proj", a.O, o)
}

// fusedFor says whether this call goes to the fused op. On the CPU it
// does not when the mask has a fully masked row (a left-padded sequence's
// padding, all lowest): libtorch 2.6's CPU kernel gets that row's output
// right but not its gradients (q's off by 4x relative in a 2x2x5x8 check,
// in PyTorch itself), and the last padding position's logits predict the
// first real token, so the loss reaches them. The check is a reduction of
// the [B, 1, L, S] mask per layer, done only on the CPU.
func (a *LlamaAttention) fusedFor(mask *ts.Tensor, train bool) bool {
	if !useFused(nil, a.Dropout, train) {
		return false
	}
	if mask == nil || mask.MustDevice().IsCuda() {
		return true
	}
	return fullyMasked(mask).MustAny(true).Int64Values()[0] == 0
}

// fusedMask is the mask the fused op gets. HF's sdpa path, on CUDA only,
// lets fully masked rows attend everywhere
// (AttentionMaskConverter._unmask_unattended), which the memory-efficient
// kernel needs (pytorch#110213). No real token reads those rows; the last
// padding position's loss term (it predicts the first real token) then
// differs from the matmul path's, where such a row attends uniformly, as
// it does in HF.
func (a *LlamaAttention) fusedMask(mask *ts.Tensor) *ts.Tensor {
	if mask == nil || !mask.MustDevice().IsCuda() {
		return mask
	}
	return mask.MustMul(fullyMasked(mask).MustLogicalNot(true), false)
}

// fullyMasked is [..., L, 1]: whether each query row of an additive mask
// holds the dtype's lowest value at every key.
func fullyMasked(mask *ts.Tensor) *ts.Tensor {
	return mask.MustEq(ts.FloatScalar(lowest(mask.DType())), false).MustAllDim(-1, true, true)
}

// rotateHalfApply is apply_rotary_pos_emb for one of q and k:
// x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1].
func rotateHalfApply(x, cos, sin *ts.Tensor) *ts.Tensor {
	d := x.MustSize()[3]
	x1, x2 := x.MustNarrow(-1, 0, d/2, false), x.MustNarrow(-1, d/2, d/2, false)
	rot := ts.MustCat([]*ts.Tensor{x2.MustNeg(true), x1}, -1)
	return x.MustMul(cos, false).MustAdd(rot.MustMul(sin, true), true)
}

// LlamaLoss is LlamaForCausalLM's loss: the mean cross-entropy of the
// logits [B, L, V] (in float32) at each position but the last against the
// labels [B, L] one position later, skipping labels -100 (padding, and
// whatever the caller masks out).
func LlamaLoss(logits, labels *ts.Tensor) *ts.Tensor {
	s := logits.MustSize()
	if ls := labels.MustSize(); len(s) != 3 || !equalShape(ls, s[:2]) {
		panic(fmt.Errorf("LlamaLoss: logits %v and labels %v, want [B, L, V] and [B, L]", s, ls))
	}
	shifted := logits.MustTotype(gotch.Float, false).MustNarrow(1, 0, s[1]-1, true).MustContiguous(true).MustView([]int64{-1, s[2]}, true)
	targets := labels.MustNarrow(1, 1, s[1]-1, false).MustContiguous(true).MustView([]int64{-1}, true)
	return CrossEntropy(shifted, targets, CEOptions{})
}
