package metapt

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
)

// Objectives are the pre-training tasks a meta step samples from, by the
// names configs use: BERT's two unsupervised objectives.
var Objectives = []string{"mlm", "nsp"}

// Tensors is a batch on the device.
type Tensors struct {
	IDs, Types, Mask, Labels *ts.Tensor // [B, L]; Mask 1 for real tokens, Labels mlm.Ignore where not predicted
	NSP                      *ts.Tensor // [B]
}

// ToTensors pads the batch to its longest pair.
func ToTensors(b Batch, pad int64, dev gotch.Device) Tensors {
	l := 0
	for _, e := range b {
		l = max(l, len(e.Input))
	}
	n := len(b)
	ids, types, mask, labels := make([]int64, n*l), make([]int64, n*l), make([]int64, n*l), make([]int64, n*l)
	nsp := make([]int64, n)
	for i, e := range b {
		for j := range l {
			k := i*l + j
			ids[k], labels[k] = pad, mlm.Ignore
			if j < len(e.Input) {
				ids[k], types[k], mask[k], labels[k] = e.Input[j], e.Types[j], 1, e.Labels[j]
			}
		}
		nsp[i] = e.NSP
	}
	shape := []int64{int64(n), int64(l)}
	return Tensors{IDs: torchmods.FromSlice(ids, shape, dev), Types: torchmods.FromSlice(types, shape, dev),
		Mask: torchmods.FromSlice(mask, shape, dev), Labels: torchmods.FromSlice(labels, shape, dev),
		NSP: torchmods.FromSlice(nsp, []int64{int64(n)}, dev)}
}

// Model is BERT with both pre-training heads.
type Model struct{ *torchmods.BertForPreTraining }

// Loss is the sum of the named objectives' mean losses on one batch, in
// the order given, from one forward pass of the encoder: "mlm" is the
// cross-entropy averaged over the masked tokens, "nsp" over the pairs.
// With both it is BertForPreTraining's total_loss.
func (m Model) Loss(t Tensors, objectives []string, train bool) *ts.Tensor {
	hidden := m.Bert.Forward(t.IDs, t.Types, t.Mask, train)
	var total *ts.Tensor
	for _, o := range objectives {
		var l *ts.Tensor
		switch o {
		case "mlm":
			l, _ = m.mlmLoss(hidden, t.Labels, torchmods.ReduceMean)
		case "nsp":
			l = torchmods.CrossEntropy(m.NSPLogits(hidden), t.NSP, torchmods.CEOptions{})
		default:
			panic(fmt.Errorf("unknown objective %q (want one of %v)", o, Objectives))
		}
		if total == nil {
			total = l
		} else {
			total = total.MustAdd(l, true)
		}
	}
	return total
}

// mlmLoss projects the masked positions only (the same loss as projecting
// every position) and reduces their cross-entropy; it also returns how
// many there were. A batch with nothing masked gives a zero loss that
// keeps the graph (and so every gradient) defined.
func (m Model) mlmLoss(hidden, labels *ts.Tensor, r torchmods.Reduction) (*ts.Tensor, int64) {
	flat := labels.MustView([]int64{-1}, false)
	pos := flat.MustNe(ts.IntScalar(mlm.Ignore), false).MustNonzero(true).MustView([]int64{-1}, true)
	n := pos.MustSize()[0]
	if n == 0 {
		return hidden.MustSum(hidden.DType(), false).MustMulScalar(ts.FloatScalar(0), true), 0
	}
	h := hidden.MustView([]int64{-1, m.Bert.Cfg.HiddenSize}, false).MustIndexSelect(0, pos, false)
	return torchmods.CrossEntropy(m.MLMLogits(h), flat.MustIndexSelect(0, pos, false), torchmods.CEOptions{Reduction: r}), n
}

// Eval sums, over a batch without dropout, the masked tokens' loss and
// count and the pairs' NSP loss and correct predictions.
func (m Model) Eval(t Tensors) (mlmSum float64, masked int64, nspSum float64, correct int64) {
	hidden := m.Bert.Forward(t.IDs, t.Types, t.Mask, false)
	l, n := m.mlmLoss(hidden, t.Labels, torchmods.ReduceSum)
	logits := m.NSPLogits(hidden)
	nsp := torchmods.CrossEntropy(logits, t.NSP, torchmods.CEOptions{Reduction: torchmods.ReduceSum})
	return l.Float64Values()[0], n, nsp.Float64Values()[0], torchmods.CountCorrect(logits, t.NSP)
}
