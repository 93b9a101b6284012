package torchmods

import (
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
