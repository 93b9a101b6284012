package torchmods

import (
	"github.com/sugarme/gotch/ts"
)

// Dropout zeroes elements with probability P in training and scales the
// rest by 1/(1-P); it is the identity in evaluation or when P is 0.
func Dropout(x *ts.Tensor, p float64, train bool) *ts.Tensor {
	if !train || p == 0 {
		return x
	}
	return ts.MustDropout(x, p, true)
}

// DropPath is stochastic depth as timm defines it: in training, each
// sample's whole residual branch is zeroed with probability p and the kept
// ones are scaled by 1/(1-p); identity in evaluation or when p is 0.
func DropPath(x *ts.Tensor, p float64, train bool) *ts.Tensor {
	if !train || p == 0 {
		return x
	}
	keep := 1 - p
	shape := x.MustSize()
	mshape := make([]int64, len(shape))
	mshape[0] = shape[0]
	for i := 1; i < len(mshape); i++ {
		mshape[i] = 1
	}
	mask := ts.MustEmpty(mshape, x.DType(), x.MustDevice())
	mask.MustBernoulliFloat_(keep)
	return x.MustMul(mask.MustDivScalar(ts.FloatScalar(keep), true), false)
}
