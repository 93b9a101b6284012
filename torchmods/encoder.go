package torchmods

import (
	"github.com/sugarme/gotch/ts"
)

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
// (see MultiheadAttention.Forward). It runs in a scope of its own and
// keeps only its output, so that the layer's intermediates (attention
// scores and probabilities, the feed-forward's activations, dropout masks)
// are freed when it returns, not when the caller's scope closes, which in
// a stack of layers would hold every layer's at once: autograd keeps its
// own references to what backward needs, so training is unchanged (see
// Bert's layer).
func (e *EncoderLayer) Forward(x, mask *ts.Tensor, train bool) *ts.Tensor {
	sc := ts.NewScope()
	defer sc.Close()
	out := e.forward(x, mask, train)
	sc.Keep(out)
	return out
}

// forward is Forward inside its scope.
func (e *EncoderLayer) forward(x, mask *ts.Tensor, train bool) *ts.Tensor {
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
