package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Linear is y = x Wᵀ + b, with PyTorch's names (weight [out, in], bias [out])
// and initialisation.
type Linear struct {
	Weight, Bias *ts.Tensor
	In, Out      int64
}

// LinearOptions configures NewLinear.
type LinearOptions struct {
	In, Out int64
	NoBias  bool
}

// NewLinear registers weight and bias under p.
func NewLinear(p Path, o LinearOptions) *Linear {
	l := &Linear{In: o.In, Out: o.Out}
	l.Weight = p.New("weight", []int64{o.Out, o.In}, FanInUniform(o.In), false)
	if !o.NoBias {
		l.Bias = p.New("bias", []int64{o.Out}, FanInUniform(o.In), true)
	}
	return l
}

// Forward applies the layer to x [..., In].
func (l *Linear) Forward(x *ts.Tensor) *ts.Tensor {
	mustLastDim("Linear", x, l.In)
	return linear(x, l.Weight, l.Bias)
}

func linear(x, w, b *ts.Tensor) *ts.Tensor {
	if b == nil {
		return x.MustMatmul(w.MustT(false), false)
	}
	return ts.MustLinear(x, w, b)
}

// LayerNorm normalises the last dimension, with PyTorch's names (weight, bias).
type LayerNorm struct {
	Weight, Bias *ts.Tensor
	Dim          int64
	Eps          float64
}

// NormOptions configures LayerNorm and RMSNorm.
type NormOptions struct {
	Dim int64
	Eps float64 // 1e-5 for LayerNorm and 1e-6 for RMSNorm when 0
}

// NewLayerNorm registers weight (ones) and bias (zeros) under p.
func NewLayerNorm(p Path, o NormOptions) *LayerNorm {
	if o.Eps == 0 {
		o.Eps = 1e-5
	}
	return &LayerNorm{
		Weight: p.New("weight", []int64{o.Dim}, Const(1), true),
		Bias:   p.New("bias", []int64{o.Dim}, Const(0), true),
		Dim:    o.Dim, Eps: o.Eps,
	}
}

// Forward normalises x [..., Dim].
func (n *LayerNorm) Forward(x *ts.Tensor) *ts.Tensor {
	mustLastDim("LayerNorm", x, n.Dim)
	return ts.MustLayerNorm(x, []int64{n.Dim}, n.Weight, n.Bias, n.Eps, false)
}

// Dropout zeroes elements with probability P in training and scales the
// rest by 1/(1-P); it is the identity in evaluation or when P is 0.
func Dropout(x *ts.Tensor, p float64, train bool) *ts.Tensor {
	if !train || p == 0 {
		return x
	}
	return ts.MustDropout(x, p, true)
}

// Activation names a pointwise non-linearity.
type Activation string

// The activations torchmods knows.
const (
	ReLU      Activation = "relu"
	GELU      Activation = "gelu"      // exact, erf-based
	GELUTanh  Activation = "gelu_tanh" // tanh approximation
	QuickGELU Activation = "quick_gelu"
	SiLU      Activation = "silu"
)

// Apply applies the activation.
func (a Activation) Apply(x *ts.Tensor) *ts.Tensor {
	switch a {
	case ReLU, "":
		return x.MustRelu(false)
	case GELU:
		return x.MustGelu("none", false)
	case GELUTanh:
		return x.MustGelu("tanh", false)
	case QuickGELU: // x * sigmoid(1.702 x), as OpenAI's CLIP
		return x.MustMul(x.MustMulScalar(ts.FloatScalar(1.702), false).MustSigmoid(true), false)
	case SiLU:
		return x.MustSilu(false)
	}
	panic(fmt.Errorf("torchmods: unknown activation %q", string(a)))
}

func mustLastDim(layer string, x *ts.Tensor, want int64) {
	shape := x.MustSize()
	if len(shape) == 0 || shape[len(shape)-1] != want {
		panic(fmt.Errorf("%s: input shape %v, want last dimension %d", layer, shape, want))
	}
}

// MultiheadAttention is PyTorch's nn.MultiheadAttention (batch first) with
// its names: in_proj_weight [3D, D], in_proj_bias [3D], out_proj.{weight,bias}.
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
	q := proj(query, 0, l).MustMulScalar(ts.FloatScalar(1/math.Sqrt(float64(hd))), true)
	k, v := proj(key, 1, sl), proj(value, 2, sl)
	scores := q.MustBmm(k.MustTranspose(1, 2, true), true) // [B*H, L, S]
	if mask != nil {
		full := mask.MustExpand([]int64{b, h, l, sl}, false, false).MustReshape([]int64{b * h, l, sl}, true)
		if mask.DType() == gotch.Bool {
			scores = scores.MustMaskedFill(full, ts.FloatScalar(math.Inf(-1)), true)
		} else {
			scores = scores.MustAdd(full, true)
		}
	}
	att := Dropout(scores.MustSoftmax(-1, gotch.Float, true), m.Dropout, train)
	o := att.MustBmm(v, true).MustTranspose(0, 1, true).MustContiguous(true).MustView([]int64{l * b, d}, true)
	return m.OutProj.Forward(o).MustView([]int64{l, b, d}, true).MustTranspose(0, 1, true)
}

// EncoderLayerOptions configures a transformer encoder layer.
type EncoderLayerOptions struct {
	Dim, Heads, FF int64
	Dropout        float64
	Activation     Activation
	NormFirst      bool    // pre-norm; PyTorch's norm_first
	Eps            float64 // LayerNorm eps, 1e-5 when 0
}

// EncoderLayer is PyTorch's nn.TransformerEncoderLayer (batch_first=True)
// with its names: self_attn, linear1, linear2, norm1, norm2.
type EncoderLayer struct {
	SelfAttn         *MultiheadAttention
	Linear1, Linear2 *Linear
	Norm1, Norm2     *LayerNorm
	Opt              EncoderLayerOptions
}

// NewEncoderLayer registers the layer's parameters under p.
func NewEncoderLayer(p Path, o EncoderLayerOptions) *EncoderLayer {
	return &EncoderLayer{
		SelfAttn: NewMultiheadAttention(p.Sub("self_attn"), MultiheadAttentionOptions{Dim: o.Dim, Heads: o.Heads, Dropout: o.Dropout}),
		Linear1:  NewLinear(p.Sub("linear1"), LinearOptions{In: o.Dim, Out: o.FF}),
		Linear2:  NewLinear(p.Sub("linear2"), LinearOptions{In: o.FF, Out: o.Dim}),
		Norm1:    NewLayerNorm(p.Sub("norm1"), NormOptions{Dim: o.Dim, Eps: o.Eps}),
		Norm2:    NewLayerNorm(p.Sub("norm2"), NormOptions{Dim: o.Dim, Eps: o.Eps}),
		Opt:      o,
	}
}

// Forward runs the layer on x [B, L, Dim] with an optional attention mask
// (see MultiheadAttention.Forward).
func (e *EncoderLayer) Forward(x, mask *ts.Tensor, train bool) *ts.Tensor {
	sa := func(x *ts.Tensor) *ts.Tensor {
		return Dropout(e.SelfAttn.Forward(x, x, x, mask, train), e.Opt.Dropout, train)
	}
	ff := func(x *ts.Tensor) *ts.Tensor {
		h := Dropout(e.Opt.Activation.Apply(e.Linear1.Forward(x)), e.Opt.Dropout, train)
		return Dropout(e.Linear2.Forward(h), e.Opt.Dropout, train)
	}
	if e.Opt.NormFirst {
		x = x.MustAdd(sa(e.Norm1.Forward(x)), false)
		return x.MustAdd(ff(e.Norm2.Forward(x)), false)
	}
	x = e.Norm1.Forward(x.MustAdd(sa(x), false))
	return e.Norm2.Forward(x.MustAdd(ff(x), false))
}
