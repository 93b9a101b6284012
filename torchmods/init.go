package torchmods

import (
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Init fills a new parameter of the given shape.
type Init func(shape []int64, dev gotch.Device) *ts.Tensor

// Uniform draws from U(-bound, bound).
func Uniform(bound float64) Init {
	return func(shape []int64, dev gotch.Device) *ts.Tensor {
		t := ts.MustEmpty(shape, gotch.Float, dev)
		t.MustUniform_(-bound, bound)
		return t
	}
}

// Const fills with v (LayerNorm's ones and zeros). A shape with no
// dimensions makes a 0-d tensor (a learned temperature), which gotch's
// full cannot: it is made as [1] and squeezed.
func Const(v float64) Init {
	return func(shape []int64, dev gotch.Device) *ts.Tensor {
		if len(shape) == 0 {
			return ts.MustFull([]int64{1}, ts.FloatScalar(v), gotch.Float, dev).MustSqueeze(true)
		}
		return ts.MustFull(shape, ts.FloatScalar(v), gotch.Float, dev)
	}
}

// FanInUniform is PyTorch's default for Linear weights and biases,
// kaiming_uniform(a=sqrt(5)), which is U(±1/sqrt(fan_in)).
func FanInUniform(fanIn int64) Init { return Uniform(1 / math.Sqrt(float64(fanIn))) }

// Normal draws from N(0, std²).
func Normal(std float64) Init {
	return func(shape []int64, dev gotch.Device) *ts.Tensor {
		return ts.MustRandn(shape, gotch.Float, dev).MustMulScalar(ts.FloatScalar(std), true)
	}
}

// TruncNormal draws from N(0, std²) truncated to [-2, 2] (absolute, as
// timm's trunc_normal_ defaults), which for small std is the plain normal
// with a vanishing tail cut.
func TruncNormal(std float64) Init {
	return func(shape []int64, dev gotch.Device) *ts.Tensor {
		t := ts.MustRandn(shape, gotch.Float, dev).MustMulScalar(ts.FloatScalar(std), true)
		return t.MustClamp(ts.FloatScalar(-2), ts.FloatScalar(2), true)
	}
}

// XavierLinear sets l's weight xavier-uniform and its bias zero.
func XavierLinear(l *Linear) {
	ts.NoGrad(func() {
		xavier(l.Weight, l.In, l.Out)
		if l.Bias != nil {
			l.Bias.MustZero_()
		}
	})
}

func xavier(w *ts.Tensor, fanIn, fanOut int64) {
	a := math.Sqrt(6 / float64(fanIn+fanOut))
	w.MustUniform_(-a, a)
}
