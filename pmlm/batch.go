package pmlm

import (
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// row is one example as the model takes it: ids, explicit positions and
// segments, and a square attention mask (row = query, true = may attend).
// Layout, a truncated Layout and S2SLayout all become rows, so one
// function pads and stacks them.
type row struct {
	IDs, Positions, TypeIDs []int64
	Mask                    []bool // len(IDs)², row-major
	// AE and PAR are the targets of the two objectives (Ignore where none;
	// nil for none at all): the [M] slots' and the [P]s' original tokens.
	// A fine-tuning example's pseudo slots are PAR targets.
	AE, PAR []int64
}

// packedRow is the full pseudo-masked input with the targets of the
// objectives trained (ae, par).
func packedRow(l *Layout, ae, par bool) row {
	r := row{IDs: l.IDs, Positions: l.Positions, TypeIDs: l.TypeIDs, Mask: l.AttnMask}
	if ae {
		r.AE = l.AELabels
	}
	if par {
		r.PAR = l.PARLabels
	}
	return r
}

// corruptedRow is the first SeqLen tokens of the packed input: the
// corrupted sequence alone, with the AE labels. Context and [M] attend
// only to each other (w = 0) in the packed mask, so their outputs, and the
// AE loss, are the same with or without the appended part; AE-only
// training skips it.
func corruptedRow(l *Layout) row {
	n, L := l.SeqLen, l.Len
	mask := make([]bool, n*n)
	for i := range n {
		copy(mask[i*n:(i+1)*n], l.AttnMask[i*L:i*L+n])
	}
	return row{IDs: l.IDs[:n], Positions: l.Positions[:n], TypeIDs: l.TypeIDs[:n], Mask: mask, AE: l.AELabels[:n]}
}

// s2sRow is a fine-tuning example.
func s2sRow(l *S2SLayout) row {
	return row{IDs: l.IDs, Positions: l.Positions, TypeIDs: l.TypeIDs, Mask: l.AttnMask, PAR: l.Labels}
}

// batch holds rows padded to the longest and stacked.
type batch struct {
	in      torchmods.BertInput
	ae, par *ts.Tensor // [B*L] int64 targets, Ignore where nothing is predicted
}

// stack pads rows to the longest: pad ids, position and segment 0, and a
// padding row that attends to itself only (no real row attends to it), so
// every softmax row has a key and padding changes no real output.
func stack(rows []row, pad int64, dev gotch.Device) batch {
	L := 0
	for _, r := range rows {
		L = max(L, len(r.IDs))
	}
	B := len(rows)
	ids, pos, typ := make([]int64, B*L), make([]int64, B*L), make([]int64, B*L)
	ae, par := make([]int64, B*L), make([]int64, B*L)
	mask := make([]int64, B*L*L)
	for b, r := range rows {
		m := len(r.IDs)
		for j := range L {
			k := b*L + j
			ae[k], par[k] = Ignore, Ignore
			if j >= m {
				ids[k] = pad
				mask[(b*L+j)*L+j] = 1
				continue
			}
			ids[k], pos[k], typ[k] = r.IDs[j], r.Positions[j], r.TypeIDs[j]
			if r.AE != nil {
				ae[k] = r.AE[j]
			}
			if r.PAR != nil {
				par[k] = r.PAR[j]
			}
			for i := range m {
				if r.Mask[j*m+i] {
					mask[(b*L+j)*L+i] = 1
				}
			}
		}
	}
	shape := []int64{int64(B), int64(L)}
	return batch{
		in: torchmods.BertInput{IDs: torchmods.FromSlice(ids, shape, dev), Positions: torchmods.FromSlice(pos, shape, dev),
			TypeIDs: torchmods.FromSlice(typ, shape, dev), Mask: torchmods.FromSlice(mask, []int64{int64(B), int64(L), int64(L)}, dev)},
		ae:  torchmods.FromSlice(ae, []int64{int64(B * L)}, dev),
		par: torchmods.FromSlice(par, []int64{int64(B * L)}, dev),
	}
}

// labelled projects to the vocabulary only the positions that have a
// target (the others' logits are never used): logits [n, V] and the
// targets [n] (n may be 0).
func labelled(m *torchmods.BertForMaskedLM, hidden, labels *ts.Tensor) (logits, targets *ts.Tensor) {
	pos := labels.MustNe(ts.IntScalar(Ignore), false).MustNonzero(true).MustView([]int64{-1}, true)
	h := hidden.MustView([]int64{-1, m.Bert.Cfg.HiddenSize}, false).MustIndexSelect(0, pos, false)
	return m.Logits(h), labels.MustIndexSelect(0, pos, false)
}

// SmoothedLoss is s2s-ft's LabelSmoothingLoss followed by its
// loss_mask_and_normalize, on the labelled positions: per token the
// KL divergence from q to the model's distribution, where q gives the
// target 1-ε, the pad token 0 and every other token ε/(V-2); the sum over
// tokens is divided by their count + 1e-5. With ε = 0 it is the official
// plain cross-entropy path, normalised the same way. The KL's entropy
// term is a constant, kept so that the loss is the official number.
func SmoothedLoss(logits, targets *ts.Tensor, eps float64, pad int64) *ts.Tensor {
	n := float64(targets.MustSize()[0])
	logp := logits.MustLogSoftmax(-1, gotch.Float, false)
	lpT := logp.MustGather(1, targets.MustUnsqueeze(1, false), false, false).MustSqueezeDim(1, true)
	var tok *ts.Tensor
	if eps == 0 {
		tok = lpT.MustNeg(true)
	} else {
		v := float64(logits.MustSize()[1])
		s := eps / (v - 2)
		entropy := (1-eps)*logOrZero(1-eps) + eps*logOrZero(s)
		// Σ over c ∉ {pad, target} of log p_c
		rest := logp.MustSumDimIntlist([]int64{1}, false, gotch.Float, false).MustSub(logp.MustSelect(1, pad, false), true).MustSub(lpT, true)
		tok = lpT.MustMulScalar(ts.FloatScalar(-(1-eps)), false).MustSub(rest.MustMulScalar(ts.FloatScalar(s), true), true).MustAddScalar(ts.FloatScalar(entropy), true)
	}
	return tok.MustSum(gotch.Float, true).MustDivScalar(ts.FloatScalar(n+1e-5), true)
}

func logOrZero(x float64) float64 {
	if x <= 0 {
		return 0 // x log x -> 0, as kl_div's xlogy
	}
	return math.Log(x)
}
