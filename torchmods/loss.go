package torchmods

import (
	"fmt"

	"github.com/sugarme/gotch/ts"
)

// Reduction says how a loss reduces its per-target values, as PyTorch's
// reduction argument. The zero value is ReduceMean, PyTorch's default.
type Reduction int

// The reductions.
const (
	ReduceMean Reduction = iota // 'mean' (for CrossEntropy, over the targets not ignored)
	ReduceSum                   // 'sum'
	ReduceNone                  // 'none': one value per target, in the targets' shape
)

// aten is the value of at::Reduction that libtorch's losses take.
func (r Reduction) aten() int64 {
	switch r {
	case ReduceMean:
		return 1
	case ReduceSum:
		return 2
	case ReduceNone:
		return 0
	}
	panic(fmt.Errorf("torchmods: unknown reduction %d", int(r)))
}

// Ignore is the target value that CrossEntropy skips (PyTorch's
// ignore_index). Its zero value stands for -100, PyTorch's default, so that
// CEOptions{} is F.cross_entropy's defaults; IgnoreIndex makes any other.
type Ignore struct {
	index int64
	set   bool
}

// IgnoreIndex is an Ignore of target value i (IgnoreIndex(0) skips class 0).
func IgnoreIndex(i int64) Ignore { return Ignore{index: i, set: true} }

// Index is the target value skipped: -100 for the zero Ignore.
func (i Ignore) Index() int64 {
	if !i.set {
		return -100
	}
	return i.index
}

// CEOptions configures CrossEntropy. Its zero value is PyTorch's defaults:
// the mean over the targets not ignored, ignore_index -100, no smoothing.
type CEOptions struct {
	Reduction Reduction
	// Ignore is the target value that adds no loss and does not count in
	// the mean; the zero value is -100 (see Ignore).
	Ignore Ignore
	// LabelSmoothing ε mixes the one-hot target with the uniform
	// distribution: (1-ε)·nll + ε/C·Σ_c -log p_c, per target not ignored.
	LabelSmoothing float64
}

// CrossEntropy is torch.nn.functional.cross_entropy with class-index
// targets: logits [N, C] (or [N, C, d1, ...]) and int64 targets [N] (or
// [N, d1, ...]); for 1-D logits [C] a 0-D target. It calls libtorch's own
// cross_entropy_loss, so ignore_index, label smoothing (which also skips
// ignored targets) and the mean over the targets not ignored are PyTorch's
// exactly; a mean over only ignored targets is NaN, as in PyTorch. It
// exists so that paper code need not pass libtorch's positional reduction
// codes and ignore index by hand. Bad shapes or dtypes panic (callers use
// Try).
func CrossEntropy(logits, targets *ts.Tensor, o CEOptions) *ts.Tensor {
	if o.LabelSmoothing < 0 || o.LabelSmoothing > 1 {
		panic(fmt.Errorf("CrossEntropy: label smoothing %v outside [0, 1]", o.LabelSmoothing))
	}
	return logits.MustCrossEntropyLoss(targets, ts.None, o.Reduction.aten(), o.Ignore.Index(), o.LabelSmoothing, false)
}

// SoftTargetCrossEntropy is timm's SoftTargetCrossEntropy, the loss of
// mixup and cutmix: mean over the batch of Σ_c -target_c · log_softmax(logits)_c,
// for logits and target of the same shape [N, C]. It computes exactly what
// mae's fine-tuning wrote inline (the same operations in the same order),
// so it replaces it with identical numbers.
func SoftTargetCrossEntropy(logits, target *ts.Tensor) *ts.Tensor {
	ls, gs := logits.MustSize(), target.MustSize()
	if !equalShape(ls, gs) || len(ls) < 1 {
		panic(fmt.Errorf("SoftTargetCrossEntropy: logits %v and target %v, want the same shape [N, C]", ls, gs))
	}
	dt := logits.DType()
	return target.MustMul(logits.MustLogSoftmax(-1, dt, false), false).MustSumDimIntlist([]int64{-1}, false, dt, true).MustMean(dt, true).MustNeg(true)
}
