package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// AttentionNames are the parameter names of one model family's attention.
// Fused layouts have one QKV projection; separate ones have Q, K and V.
type AttentionNames struct{ Q, K, V, QKV, Out string }

// Name sets for the families torchmods' models load.
var (
	LlamaNames = AttentionNames{Q: "q_proj", K: "k_proj", V: "v_proj", Out: "o_proj"} // HF Llama, Mistral
	TimmNames  = AttentionNames{QKV: "qkv", Out: "proj"}                              // timm ViT, MAE
)

// AttentionOptions configures Attention.
type AttentionOptions struct {
	Dim, Heads int64
	KVHeads    int64 // fewer than Heads: grouped-query attention; 0 means Heads
	Bias       bool  // biases on the projections
	Names      AttentionNames
	Dropout    float64 // on the attention weights
	Rotary     *Rotary // rotary position embedding on q and k, if set
	// HeadDim is each head's width; 0 means Dim/Heads. A BERT with pruned
	// heads (HF's prune_heads) keeps the head width while the heads fall,
	// so its projections are Heads*HeadDim wide, not Dim.
	HeadDim int64
	// ContextDim is the width of the context that cross-attention reads
	// keys and values from; 0 means Dim. ALBEF's fusion layers attend from
	// text of one width to image tokens of another (encoder_width).
	ContextDim int64
}

// contextDim is ContextDim, or Dim when unset.
func (o AttentionOptions) contextDim() int64 {
	if o.ContextDim > 0 {
		return o.ContextDim
	}
	return o.Dim
}

// headDim is HeadDim, or Dim/Heads when unset.
func (o AttentionOptions) headDim() int64 {
	if o.HeadDim > 0 {
		return o.HeadDim
	}
	return o.Dim / o.Heads
}

// Attention is multi-head attention in the layouts of Llama (separate,
// grouped-query, rotary) and timm (fused qkv), with optional masks,
// additive biases (relative positions) and a key/value cache.
//
// Why there are two attentions: Attention's projections are Linear
// sub-modules, named by AttentionNames ("q_proj.weight", "attn.qkv.weight",
// BERT's "attention.self.query.weight", ...), the layout of HF and timm
// checkpoints. PyTorch's own nn.MultiheadAttention (and so
// nn.TransformerEncoderLayer) stores its input projection as bare tensors,
// in_proj_weight and in_proj_bias, that no Linear name can spell, and uses
// that one fused projection for cross-attention too (Attention's fused qkv
// is self-attention only). MultiheadAttention keeps that layout and its
// sequence-first computation so that torch.save'd state dicts of those
// modules load unchanged (see TestTorchSaveLoadsIntoEncoderLayer); use
// Attention for everything else.
type Attention struct {
	Q, K, V, QKV, Out *Linear
	Opt               AttentionOptions
}

// NewAttention registers the projections under p with the configured names.
func NewAttention(p Path, o AttentionOptions) *Attention {
	if o.KVHeads == 0 {
		o.KVHeads = o.Heads
	}
	if o.Heads <= 0 || (o.HeadDim == 0 && o.Dim%o.Heads != 0) || o.HeadDim < 0 || o.Heads%o.KVHeads != 0 {
		panic(fmt.Errorf("Attention: width %d, %d heads, %d key/value heads: heads must divide the width and key/value heads the heads", o.Dim, o.Heads, o.KVHeads))
	}
	hd := o.headDim()
	a := &Attention{Opt: o}
	if o.Names.QKV != "" {
		if o.KVHeads != o.Heads || o.Heads*hd != o.Dim || o.contextDim() != o.Dim {
			panic(fmt.Errorf("Attention: a fused qkv projection cannot have grouped key/value heads, heads narrower than the width or a context of another width"))
		}
		a.QKV = NewLinear(p.Sub(o.Names.QKV), LinearOptions{In: o.Dim, Out: 3 * o.Dim, NoBias: !o.Bias})
	} else {
		a.Q = NewLinear(p.Sub(o.Names.Q), LinearOptions{In: o.Dim, Out: o.Heads * hd, NoBias: !o.Bias})
		a.K = NewLinear(p.Sub(o.Names.K), LinearOptions{In: o.contextDim(), Out: o.KVHeads * hd, NoBias: !o.Bias})
		a.V = NewLinear(p.Sub(o.Names.V), LinearOptions{In: o.contextDim(), Out: o.KVHeads * hd, NoBias: !o.Bias})
	}
	a.Out = NewLinear(p.Sub(o.Names.Out), LinearOptions{In: o.Heads * hd, Out: o.Dim, NoBias: !o.Bias})
	return a
}

// KVCache holds the keys and values of earlier positions for decoding one
// token at a time. Its tensors outlive the scopes of the steps that fill it;
// Drop frees them.
type KVCache struct{ K, V *ts.Tensor }

// Len is the number of cached positions.
func (c *KVCache) Len() int64 {
	if c == nil || c.K == nil {
		return 0
	}
	return c.K.MustSize()[2]
}

// Drop frees the cache.
func (c *KVCache) Drop() {
	for _, t := range []*ts.Tensor{c.K, c.V} {
		if t != nil {
			t.MustDrop()
		}
	}
	c.K, c.V = nil, nil
}

func (c *KVCache) append(k, v *ts.Tensor) (*ts.Tensor, *ts.Tensor) {
	if c.K != nil {
		k, v = ts.MustCat([]*ts.Tensor{c.K, k}, 2), ts.MustCat([]*ts.Tensor{c.V, v}, 2)
		c.Drop()
	}
	c.K, c.V = k, v
	ts.Persist(k)
	ts.Persist(v)
	return k, v
}

// AttentionInput is what one call attends with.
type AttentionInput struct {
	Query   *ts.Tensor // [B, L, Dim]
	Context *ts.Tensor // [B, S, ContextDim] for cross-attention; nil for self-attention
	// Mask broadcasts to [B, Heads, L, S]: bool true = not allowed, float = added.
	Mask *ts.Tensor
	// Bias is added to the scores, broadcasting to [B, Heads, L, S] (T5's relative positions).
	Bias *ts.Tensor
	// Positions [L] (int64) for the rotary embedding; 0..L-1 (after the cache) when nil.
	Positions *ts.Tensor
	// Cache, if not nil, receives this call's keys and values and supplies earlier ones.
	Cache *KVCache
	// HeadMask [Heads], if set, multiplies each head's output: HF's
	// head_mask, which multiplies the attention probabilities, the same
	// product since a head's output is its probabilities times its values.
	// Pruning reads its gradient as the heads' importance (CAP, Michel et
	// al. 2019).
	HeadMask *ts.Tensor
}

// Forward attends and projects back to [B, L, Dim].
func (a *Attention) Forward(in AttentionInput, train bool) *ts.Tensor {
	o := a.Opt
	hd := o.headDim()
	mustLastDim("Attention", in.Query, o.Dim)
	ctx := in.Context
	if ctx == nil {
		if o.contextDim() != o.Dim {
			panic(fmt.Errorf("Attention: built for a context of width %d (cross-attention) but given none", o.contextDim()))
		}
		ctx = in.Query
	} else {
		mustLastDim("Attention context", ctx, o.contextDim())
	}
	heads := func(x *ts.Tensor, n int64) *ts.Tensor { // [B, T, n*hd] -> [B, n, T, hd]
		s := x.MustSize()
		return x.MustView([]int64{s[0], s[1], n, hd}, true).MustTranspose(1, 2, true)
	}
	var q, k, v *ts.Tensor
	if a.QKV != nil {
		if in.Context != nil {
			panic(fmt.Errorf("Attention: a fused qkv projection is self-attention only"))
		}
		parts := a.QKV.Forward(in.Query).MustChunk(3, -1, true)
		q, k, v = heads(parts[0], o.Heads), heads(parts[1], o.Heads), heads(parts[2], o.Heads)
	} else {
		q = heads(a.Q.Forward(in.Query), o.Heads)
		k = heads(a.K.Forward(ctx), o.KVHeads)
		v = heads(a.V.Forward(ctx), o.KVHeads)
	}
	if o.Rotary != nil {
		pos := in.Positions
		if pos == nil {
			start := in.Cache.Len()
			pos = ts.MustArange(ts.IntScalar(start+in.Query.MustSize()[1]), gotch.Int64, in.Query.MustDevice()).MustNarrow(0, start, in.Query.MustSize()[1], true)
		}
		q, k = o.Rotary.Apply(q, pos), o.Rotary.Apply(k, pos)
	}
	if in.Cache != nil {
		k, v = in.Cache.append(k, v)
	}
	if rep := o.Heads / o.KVHeads; rep > 1 { // HF repeat_kv: each key/value head serves rep query heads
		k, v = repeatKV(k, rep), repeatKV(v, rep)
	}
	att := scaledDotProduct(q, k, v, in.Mask, in.Bias, o.Dropout, train) // [B, H, L, hd]
	if in.HeadMask != nil {
		if hs := in.HeadMask.MustSize(); len(hs) != 1 || hs[0] != o.Heads {
			panic(fmt.Errorf("Attention: head mask of shape %v, want [%d]", hs, o.Heads))
		}
		att = att.MustMul(in.HeadMask.MustView([]int64{1, o.Heads, 1, 1}, false), true)
	}
	s := att.MustSize()
	out := att.MustTranspose(1, 2, true).MustContiguous(true).MustView([]int64{s[0], s[2], o.Heads * hd}, true)
	return a.Out.Forward(out)
}

func repeatKV(x *ts.Tensor, rep int64) *ts.Tensor {
	s := x.MustSize() // [B, KVH, T, hd]
	return x.MustUnsqueeze(2, false).MustExpand([]int64{s[0], s[1], rep, s[2], s[3]}, false, true).MustReshape([]int64{s[0], s[1] * rep, s[2], s[3]}, true)
}

// scaledDotProduct is softmax(q kᵀ / sqrt(d) + bias + mask) v on [B, H, T, d].
func scaledDotProduct(q, k, v, mask, bias *ts.Tensor, dropout float64, train bool) *ts.Tensor {
	if useFused(bias, dropout, train) {
		return fusedSDPA(q, k, v, mask)
	}
	d := q.MustSize()[3]
	scores := q.MustMulScalar(ts.FloatScalar(1/math.Sqrt(float64(d))), false).MustMatmul(k.MustTranspose(-2, -1, false), true)
	if bias != nil {
		scores = scores.MustAdd(bias, true)
	}
	if mask != nil {
		if mask.DType() == gotch.Bool {
			scores = scores.MustMaskedFill(mask, ts.FloatScalar(math.Inf(-1)), true)
		} else {
			scores = scores.MustAdd(mask, true)
		}
	}
	att := Dropout(scores.MustSoftmax(-1, gotch.Float, true), dropout, train)
	return att.MustMatmul(v, true)
}

// MultiheadAttention is PyTorch's nn.MultiheadAttention (batch first) with
// its names: in_proj_weight [3D, D], in_proj_bias [3D], out_proj.{weight,bias}.
// It exists beside Attention only for those names and that layout (the
// fused in_proj_weight, which Attention cannot name, serving self- and
// cross-attention alike), which the state dicts of nn.MultiheadAttention
// and nn.TransformerEncoderLayer have; EncoderLayer is built on it. It has
// no grouped-query heads, rotary positions, additive bias or cache: models
// in other layouts use Attention (see there).
type MultiheadAttention struct {
	InProjWeight, InProjBias *ts.Tensor
	OutProj                  *Linear
	Dim, Heads               int64
	Dropout                  float64
}

// MultiheadAttentionOptions configures NewMultiheadAttention.
type MultiheadAttentionOptions struct {
	Dim, Heads int64
	Dropout    float64 // on the attention weights
}

// NewMultiheadAttention registers the parameters under p, initialised as
// PyTorch does (xavier_uniform in-projection, zero biases).
func NewMultiheadAttention(p Path, o MultiheadAttentionOptions) *MultiheadAttention {
	dim, heads := o.Dim, o.Heads
	if heads <= 0 || dim%heads != 0 {
		panic(fmt.Errorf("MultiheadAttention: width %d is not divisible by %d heads", dim, heads))
	}
	m := &MultiheadAttention{Dim: dim, Heads: heads, Dropout: o.Dropout}
	m.InProjWeight = p.New("in_proj_weight", []int64{3 * dim, dim}, Uniform(math.Sqrt(6/float64(dim+3*dim))), false)
	m.InProjBias = p.New("in_proj_bias", []int64{3 * dim}, Const(0), true)
	m.OutProj = NewLinear(p.Sub("out_proj"), LinearOptions{In: dim, Out: dim})
	ts.NoGrad(func() { m.OutProj.Bias.MustZero_() })
	return m
}

// Forward attends from query [B, L, D] to key and value [B, S, D] (pass
// the same tensor for self-attention). mask, if not nil, broadcasts to
// [B, Heads, L, S]: a bool mask is true where attention is NOT allowed (as
// PyTorch's attn_mask), a float mask is added to the scores.
func (m *MultiheadAttention) Forward(query, key, value, mask *ts.Tensor, train bool) *ts.Tensor {
	for _, x := range []*ts.Tensor{query, key, value} {
		mustLastDim("MultiheadAttention", x, m.Dim)
	}
	// PyTorch's layout: sequence-first, so [T, B*H, hd] is a free view and bmm
	// takes the transposed operands without the copies 4-D matmuls make.
	d, h := m.Dim, m.Heads
	hd := d / h
	b, l, sl := query.MustSize()[0], query.MustSize()[1], key.MustSize()[1]
	proj := func(x *ts.Tensor, i int64, t int64) *ts.Tensor {
		w := m.InProjWeight.MustNarrow(0, i*d, d, false)
		bias := m.InProjBias.MustNarrow(0, i*d, d, false)
		y := linear(x.MustTranspose(0, 1, false), w, bias)                                            // [T, B, D]
		return y.MustContiguous(true).MustView([]int64{t, b * h, hd}, true).MustTranspose(0, 1, true) // [B*H, T, hd]
	}
	q := proj(query, 0, l)
	k, v := proj(key, 1, sl), proj(value, 2, sl)
	var full *ts.Tensor
	if mask != nil {
		full = mask.MustExpand([]int64{b, h, l, sl}, false, false).MustReshape([]int64{b * h, l, sl}, true)
	}
	var o *ts.Tensor
	if useFused(nil, m.Dropout, train) {
		o = fusedSDPA(q, k, v, full) // [B*H, L, hd]
	} else {
		q = q.MustMulScalar(ts.FloatScalar(1/math.Sqrt(float64(hd))), true)
		scores := q.MustBmm(k.MustTranspose(1, 2, true), true) // [B*H, L, S]
		if full != nil {
			if mask.DType() == gotch.Bool {
				scores = scores.MustMaskedFill(full, ts.FloatScalar(math.Inf(-1)), true)
			} else {
				scores = scores.MustAdd(full, true)
			}
		}
		att := Dropout(scores.MustSoftmax(-1, gotch.Float, true), m.Dropout, train)
		o = att.MustBmm(v, true)
	}
	o = o.MustTranspose(0, 1, true).MustContiguous(true).MustView([]int64{l * b, d}, true)
	return m.OutProj.Forward(o).MustView([]int64{l, b, d}, true).MustTranspose(0, 1, true)
}
