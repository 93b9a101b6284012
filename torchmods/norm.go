package torchmods

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

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

// RMSNorm is Llama's (HF LlamaRMSNorm): x / sqrt(mean(x²) + eps) * weight,
// computed in float32 whatever the input dtype.
type RMSNorm struct {
	Weight *ts.Tensor
	Dim    int64
	Eps    float64
}

// NewRMSNorm registers weight (ones) under p.
func NewRMSNorm(p Path, o NormOptions) *RMSNorm {
	if o.Eps == 0 {
		o.Eps = 1e-6
	}
	return &RMSNorm{Weight: p.New("weight", []int64{o.Dim}, Const(1), true), Dim: o.Dim, Eps: o.Eps}
}

// Forward normalises x [..., Dim].
func (n *RMSNorm) Forward(x *ts.Tensor) *ts.Tensor {
	mustLastDim("RMSNorm", x, n.Dim)
	dt := x.DType()
	h := x.MustTotype(gotch.Float, false)
	ms := h.MustSquare(false).MustMeanDim([]int64{-1}, true, gotch.Float, true)
	h = h.MustMul(ms.MustAddScalar(ts.FloatScalar(n.Eps), true).MustRsqrt(true), true)
	return n.Weight.MustMul(h.MustTotype(dt, true), false)
}

// BatchNorm1d is PyTorch's nn.BatchNorm1d over [N, C] or [N, C, L] with its
// names: weight and bias (the affine part), and the buffers running_mean,
// running_var and num_batches_tracked. In training it normalises with the
// batch's statistics and updates the running ones (the variance unbiased,
// by momentum); in evaluation it normalises with the running ones. It
// exists so that paper code (MAE's linear probe) need not call
// ts.MustBatchNorm with its buffers by hand.
type BatchNorm1d struct {
	Weight, Bias            *ts.Tensor // nil with NoAffine
	RunningMean, RunningVar *ts.Tensor
	// NumBatchesTracked is an int64 scalar that counts training batches,
	// as PyTorch's; nil with NoBatchCount. (PyTorch reads it only for
	// momentum=None, the cumulative average, which BatchNorm1d does not
	// offer, so it changes no number here: it is kept for the state_dict.)
	NumBatchesTracked *ts.Tensor
	Dim               int64
	Eps, Momentum     float64
}

// BatchNormOptions configures NewBatchNorm1d. Its zero value (with Dim set)
// is nn.BatchNorm1d(Dim)'s defaults.
type BatchNormOptions struct {
	Dim      int64   // channels, C
	Eps      float64 // 1e-5 when 0
	Momentum float64 // weight of the batch in the running statistics; 0.1 when 0
	NoAffine bool    // affine=False: no weight and bias (MAE's linear probe)
	// NoBatchCount leaves out the num_batches_tracked buffer, for state
	// dicts written without it (the checkpoints of mae's linear probe
	// before it used BatchNorm1d have head.0.running_mean and
	// head.0.running_var only). PyTorch always writes it.
	NoBatchCount bool
}

// NewBatchNorm1d registers weight (ones) and bias (zeros) unless NoAffine,
// then the buffers running_mean (zeros), running_var (ones) and, unless
// NoBatchCount, num_batches_tracked (int64 0), in PyTorch's order.
func NewBatchNorm1d(p Path, o BatchNormOptions) *BatchNorm1d {
	if o.Eps == 0 {
		o.Eps = 1e-5
	}
	if o.Momentum == 0 {
		o.Momentum = 0.1
	}
	if o.Dim <= 0 {
		panic(fmt.Errorf("BatchNorm1d: %d channels, want a positive number", o.Dim))
	}
	n := &BatchNorm1d{Dim: o.Dim, Eps: o.Eps, Momentum: o.Momentum}
	if !o.NoAffine {
		n.Weight = p.New("weight", []int64{o.Dim}, Const(1), true)
		n.Bias = p.New("bias", []int64{o.Dim}, Const(0), true)
	}
	n.RunningMean = p.NewBuffer("running_mean", []int64{o.Dim}, Const(0))
	n.RunningVar = p.NewBuffer("running_var", []int64{o.Dim}, Const(1))
	if !o.NoBatchCount {
		n.NumBatchesTracked = p.NewBuffer("num_batches_tracked", []int64{}, func(_ []int64, dev gotch.Device) *ts.Tensor {
			return ts.MustZeros([]int64{1}, gotch.Int64, dev).MustSqueeze(true) // gotch makes no tensor of shape []
		})
	}
	return n
}

// Forward normalises x [N, Dim] or [N, Dim, L] over every dimension but
// the channels. In training it updates the running statistics (and counts
// the batch), and refuses a batch with one value per channel, as PyTorch.
func (n *BatchNorm1d) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	s := x.MustSize()
	if (len(s) != 2 && len(s) != 3) || s[1] != n.Dim {
		panic(fmt.Errorf("BatchNorm1d: input shape %v, want [N, %d] or [N, %d, L]", s, n.Dim, n.Dim))
	}
	if train {
		per := s[0]
		if len(s) == 3 {
			per *= s[2]
		}
		if per == 1 {
			panic(fmt.Errorf("BatchNorm1d: expected more than 1 value per channel when training, got input shape %v", s))
		}
		if n.NumBatchesTracked != nil {
			ts.NoGrad(func() { n.NumBatchesTracked.MustAddScalar_(ts.IntScalar(1)) })
		}
	}
	w, b := n.Weight, n.Bias
	if w == nil {
		w, b = ts.None, ts.None
	}
	return ts.MustBatchNorm(x, w, b, n.RunningMean, n.RunningVar, train, n.Momentum, n.Eps, true)
}
