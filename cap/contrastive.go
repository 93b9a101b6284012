package cap

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Bank is a memory bank of the training examples' L2-normalised
// representations, on the CPU as in the official code: Reps [N, R, H] holds
// R representations of each of the N examples (R = 1 for the pre-trained
// and fine-tuned banks, one per snapshot for SnC), Labels [N] their labels.
// A nil *Bank is a bank switched off.
type Bank struct {
	Reps   *ts.Tensor // [N, R, H] float32, CPU
	Labels *ts.Tensor // [N] int64, CPU
}

// Rows is N, the examples in the bank.
func (b *Bank) Rows() int64 { return b.Reps.MustSize()[0] }

// Append adds one snapshot's representations reps [N, H] as a new column:
// SnC's torch.cat((bank, reps.unsqueeze(1)), dim=1).
func (b *Bank) Append(reps *ts.Tensor) {
	col := reps.MustUnsqueeze(1, false)
	next := ts.MustCat([]*ts.Tensor{b.Reps, col}, 1)
	ts.Persist(next)
	b.Reps.MustDrop()
	b.Reps = next
}

// NewBank makes a bank of one column from reps [N, H] and labels [N],
// moved to the CPU and kept beyond any scope.
func NewBank(reps, labels *ts.Tensor) *Bank {
	b := &Bank{Reps: reps.MustTo(gotch.CPU, false).MustUnsqueeze(1, true), Labels: labels.MustTo(gotch.CPU, false)}
	ts.Persist(b.Reps)
	ts.Persist(b.Labels)
	return b
}

// Drop frees the bank.
func (b *Bank) Drop() {
	if b != nil {
		b.Reps.MustDrop()
		b.Labels.MustDrop()
	}
}

// ContrastiveOptions are calculate_contrastive_loss's settings.
type ContrastiveOptions struct {
	Temperature float64 // contrastive_temperature, 0.1
	Unsup, Sup  float64 // cl_unsupervised_loss_weight, cl_supervised_loss_weight
	// Normalise is how the positives' log-probabilities are averaged:
	// "code" (the official code: each anchor's positives divided by their
	// number, then the sum over anchors divided by the number of
	// positives over all anchors) or "paper" (each anchor's mean over its
	// positives, averaged over the anchors, as the paper's equations 2 and
	// 3 read). See doc.go.
	Normalise string
}

// ContrastiveLoss is PruneBertForSequenceClassification.
// calculate_contrastive_loss for one bank: the weighted unsupervised and
// supervised terms for the anchors z [B, H] (raw pooled or mean-pooled
// states; normalised here), examples idx and labels [B] (int64, any
// device), the bank's rows for those examples and for extraIdx, the
// randomly drawn extra rows (random.sample in the official code; see
// DrawExtra). Candidates are the batch's own normalised states (detached),
// the bank's R rows of each batch example and R rows of each extra
// example; an anchor's own detached state is masked out with -1e6.
// Positives share the anchor's example (unsupervised) or label
// (supervised). It returns both weighted terms.
func ContrastiveLoss(z, idx, labels *ts.Tensor, bank *Bank, extraIdx []int64, o ContrastiveOptions) (unsup, sup *ts.Tensor) {
	dev := z.MustDevice()
	s := z.MustSize()
	if len(s) != 2 {
		panic(fmt.Errorf("cap: contrastive anchors of shape %v, want [batch, hidden]", s))
	}
	bsz, hid := s[0], s[1]
	bs := bank.Reps.MustSize()
	if len(bs) != 3 || bs[2] != hid {
		panic(fmt.Errorf("cap: memory bank of shape %v for anchors of width %d, want [examples, representations, %d]", bs, hid, hid))
	}
	rep := bs[1]
	cpuIdx := idx.MustTo(gotch.CPU, false)
	reps := bank.Reps.MustIndexSelect(0, cpuIdx, false).MustTo(dev, true).MustTotype(z.DType(), true) // [B, R, H]
	anchor := normalize(z)
	cand := ts.MustCat([]*ts.Tensor{anchor.MustDetach(false).MustUnsqueeze(1, true), reps}, 1).MustReshape([]int64{bsz * (rep + 1), hid}, true)
	extra := torchmods.FromSlice(extraIdx, []int64{int64(len(extraIdx))}, gotch.CPU)
	extraReps := bank.Reps.MustIndexSelect(0, extra, false).MustView([]int64{-1, hid}, true).MustTo(dev, true).MustTotype(z.DType(), true)
	extraLabels := bank.Labels.MustIndexSelect(0, extra, false).MustTo(dev, true)
	cand = ts.MustCat([]*ts.Tensor{cand, extraReps}, 0)
	score := anchor.MustMm(cand.MustT(false), false).MustDivScalar(ts.FloatScalar(o.Temperature), true) // [B, C]
	// The anchor's own detached state: column i*(R+1) of row i.
	nc := bsz*(rep+1) + int64(len(extraIdx))*rep
	selfCol := ts.MustArange(ts.IntScalar(bsz), gotch.Int64, dev).MustMulScalar(ts.IntScalar(rep+1), true)
	self := ts.MustZeros([]int64{bsz, nc}, gotch.Float, dev).MustScatterValue(1, selfCol.MustUnsqueeze(1, true), ts.FloatScalar(1), true).MustEq(ts.FloatScalar(1), true)
	score = score.MustMaskedFill(self, ts.FloatScalar(-1e6), true).MustLogSoftmax(-1, gotch.Float, true)
	// Every candidate's example index and label.
	idxD, labD := idx.MustTo(dev, false), labels.MustTo(dev, false)
	each := func(x *ts.Tensor, n int64) *ts.Tensor { // x.unsqueeze(1).repeat(1, n).view(-1)
		return x.MustUnsqueeze(1, false).MustRepeat([]int64{1, n}, true).MustView([]int64{-1}, true)
	}
	allIdx := ts.MustCat([]*ts.Tensor{each(idxD, rep+1), each(extra.MustTo(dev, false), rep)}, 0)
	allLab := ts.MustCat([]*ts.Tensor{each(labD, rep+1), each(extraLabels, rep)}, 0)
	term := func(key, all *ts.Tensor, w float64) *ts.Tensor {
		pos := key.MustUnsqueeze(1, false).MustEqTensor(all.MustUnsqueeze(0, false), true) // [B, C]
		keep := pos.MustLogicalAnd(self.MustLogicalNot(false), false)
		masked := score.MustMul(keep.MustTotype(score.DType(), false), false)
		n := pos.MustSumDimIntlist([]int64{1}, true, score.DType(), false).MustSubScalar(ts.IntScalar(1), true) // positives besides the anchor
		if o.Normalise == "paper" {
			perAnchor := masked.MustSumDimIntlist([]int64{1}, false, score.DType(), true).MustDiv(n.MustSqueezeDim(1, true).MustClampMin(ts.FloatScalar(1), true), true)
			return perAnchor.MustMean(score.DType(), true).MustMulScalar(ts.FloatScalar(-w), true)
		}
		// The official division: by each row's count, then by the number
		// of nonzero (positive, not self) entries in the whole matrix.
		count := masked.MustNe(ts.FloatScalar(0), false).MustSum(score.DType(), true)
		return masked.MustDiv(n, true).MustSum(score.DType(), true).MustDiv(count, true).MustMulScalar(ts.FloatScalar(-w), true)
	}
	return term(idxD, allIdx, o.Unsup), term(labD, allLab, o.Sup)
}

// normalize is F.normalize(x, p=2, dim=-1): x / max(|x|, 1e-12).
func normalize(x *ts.Tensor) *ts.Tensor {
	n := x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{-1}, true, false).MustClampMin(ts.FloatScalar(1e-12), true)
	return x.MustDiv(n, false)
}

// DrawExtra draws extra_examples / R distinct bank rows without
// replacement, as random.sample(range(N), k) does in the official code
// (with Go's generator: the draw is the same in law, not in values).
func DrawExtra(rng *rand.Rand, rows, reps, extraExamples int64) ([]int64, error) {
	k := extraExamples / reps
	if k > rows {
		return nil, fmt.Errorf("cap: contrastive.extra_examples %d / %d representations = %d extra rows, more than the bank's %d examples (random.sample would fail too)", extraExamples, reps, k, rows)
	}
	// A partial Fisher-Yates shuffle over a sparse map: k draws, not a
	// permutation of the whole bank (364,000 rows on QQP) every step.
	swapped := make(map[int64]int64, k)
	at := func(i int64) int64 {
		if v, ok := swapped[i]; ok {
			return v
		}
		return i
	}
	out := make([]int64, k)
	for i := range k {
		j := i + rng.Int64N(rows-i)
		out[i] = at(j)
		swapped[j] = at(i)
	}
	return out, nil
}

// bankState checkpoints a bank set: the tensors by name, nil banks as
// absent names.
type bankState struct{ banks map[string]**Bank }

func (s bankState) SaveState() (any, map[string]*ts.Tensor, error) {
	t := map[string]*ts.Tensor{}
	var present []string
	for name, b := range s.banks {
		if *b == nil {
			continue
		}
		present = append(present, name)
		t[name+".reps"], t[name+".labels"] = (*b).Reps, (*b).Labels
	}
	return present, t, nil
}

func (s bankState) LoadState(raw json.RawMessage, tensors map[string]*ts.Tensor) error {
	var present []string
	if err := json.Unmarshal(raw, &present); err != nil {
		return err
	}
	for _, name := range present {
		b, ok := s.banks[name]
		if !ok {
			return fmt.Errorf("checkpoint has a memory bank %q this run does not use", name)
		}
		reps, labels := tensors[name+".reps"], tensors[name+".labels"]
		if reps == nil || labels == nil {
			return fmt.Errorf("checkpoint lacks the tensors of memory bank %q", name)
		}
		(*b).Drop()
		nb := &Bank{Reps: reps.MustTo(gotch.CPU, false), Labels: labels.MustTo(gotch.CPU, false)}
		ts.Persist(nb.Reps)
		ts.Persist(nb.Labels)
		*b = nb
	}
	return nil
}
