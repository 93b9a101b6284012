package icae

import (
	"fmt"
	"math"
	"slices"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
)

// EvalSet is held-out text for evaluation: contexts of equal length, each
// with the continuation that follows it in its stream.
type EvalSet struct {
	Contexts, Conts [][]int64
}

// EvalWindows cuts a stream into n consecutive, non-overlapping windows of
// ctx+cont tokens (fewer when the stream is short): the same set for
// every run on the same data.
func EvalWindows(stream []int64, ctx, cont, n int) EvalSet {
	var e EvalSet
	for _, w := range Chunks(stream, ctx+cont) {
		if len(e.Contexts) == n {
			break
		}
		e.Contexts, e.Conts = append(e.Contexts, w[:ctx]), append(e.Conts, w[ctx:])
	}
	return e
}

// EvalOptions say what Evaluate measures.
type EvalOptions struct {
	Batch int
	// Generate decodes the reconstructions and the truncation baseline
	// greedily (token accuracy and BLEU); otherwise only the
	// teacher-forced numbers are measured.
	Generate       bool
	LMSpecialToken bool // the slots condition puts [LM] after the slots, as training's LM examples do
	BOS, EOS       int64
}

// Evaluate measures, over the set:
//
//   - ae_loss, ae_tf_token_acc: the AE objective's loss and the share of
//     context tokens (and EOS) the decoder predicts right, teacher-forced,
//     from [slots; AE];
//   - recon_token_acc, recon_bleu4: the greedy reconstruction from
//     [slots; AE], as many tokens as the context, against the context
//     (TokenAccuracy, BLEU);
//   - trunc_token_acc, trunc_bleu4: the baseline of the same budget, the
//     context cut to as many tokens as it has slots and continued greedily
//     by the LLM to the context's length;
//   - ppl_full, ppl_slots, ppl_none: the perplexity of the continuation
//     given the whole context as tokens, given the slots (the LM
//     objective's input), and given only BOS;
//   - ppl_copy: the frozen LLM's perplexity of the context's second copy
//     in [context; context], the tokens in view: how well the decoder can
//     copy text at all, a ceiling on what reconstruction through it can
//     reach (a small LLM may have learnt no copying);
//   - ae_loss_other, ae_tf_token_acc_other, ppl_slots_other: the AE loss,
//     its accuracy and the continuation's perplexity with the slots of
//     another context of the batch (the next one), the control that says
//     whether the slots carry their own context or act as a learned prompt
//     that helps any text. Over batches of two or more contexts; absent
//     when there is none.
func (m *Model) Evaluate(set EvalSet, o EvalOptions) (map[string]float64, error) {
	if len(set.Contexts) == 0 {
		return nil, fmt.Errorf("evaluation: no held-out windows")
	}
	var aeSum, aeN, aeHit, full, slotsCE, none, contN float64
	var otherAE, otherAEN, otherHit, otherCE, otherContN, copyCE, copyN float64
	var recon, trunc, refs [][]int64
	err := data.Sequential(len(set.Contexts), o.Batch, func(idx []int) error {
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				ctxs := set.Contexts[idx[0] : idx[len(idx)-1]+1]
				conts := set.Conts[idx[0] : idx[len(idx)-1]+1]
				slots, counts := m.Compress(ctxs, false)
				// AE, teacher-forced.
				var ae []Sample
				for _, c := range ctxs {
					ans := append(slices.Clone(c), o.EOS)
					p := m.PrefixIDs(len(c), m.Layout.AE())
					ae = append(ae, Sample{Context: c, PromptAnswer: append(slices.Clone(p), ans...), Labels: append(ignored(len(p)), ans...)})
				}
				bt := m.NewBatch(ae)
				logits := m.Decode(bt, slots)
				loss, hit, n := scoreLabels(logits, bt.Labels, bt.B, bt.L)
				aeSum, aeHit, aeN = aeSum+loss, aeHit+hit, aeN+n
				// Continuations under the three conditions.
				var withSlots, withCtx, alone []Sample
				for i, c := range ctxs {
					k := conts[i]
					after := []int64{}
					if o.LMSpecialToken {
						after = append(after, m.Layout.LM())
					}
					p := m.PrefixIDs(len(c), after...)
					withSlots = append(withSlots, Sample{Context: c, PromptAnswer: append(slices.Clone(p), k...), Labels: append(ignored(len(p)), k...)})
					withCtx = append(withCtx, Sample{Context: c, PromptAnswer: append(slices.Clone(c), k...), Labels: append(ignored(len(c)), k...)})
					alone = append(alone, Sample{Context: c, PromptAnswer: append([]int64{o.BOS}, k...), Labels: append(ignored(1), k...)})
					contN += float64(len(k))
				}
				bs := m.NewBatch(withSlots)
				l, _, _ := scoreLabels(m.Decode(bs, slots), bs.Labels, bs.B, bs.L)
				slotsCE += l
				if len(ctxs) > 1 {
					other := m.otherSlots(slots, counts)
					l, hit, n := scoreLabels(m.Decode(bt, other), bt.Labels, bt.B, bt.L)
					otherAE, otherHit, otherAEN = otherAE+l, otherHit+hit, otherAEN+n
					l, _, n = scoreLabels(m.Decode(bs, other), bs.Labels, bs.B, bs.L)
					otherCE, otherContN = otherCE+l, otherContN+n
				}
				full += m.lmScore(withCtx)
				none += m.lmScore(alone)
				var twice []Sample
				for _, c := range ctxs {
					twice = append(twice, Sample{Context: c, PromptAnswer: append(slices.Clone(c), c...), Labels: append(ignored(len(c)), c...)})
					copyN += float64(len(c))
				}
				copyCE += m.lmScore(twice)
				if !o.Generate {
					return
				}
				// Greedy reconstruction and the truncation baseline.
				p := m.PrefixIDs(len(ctxs[0]), m.Layout.AE())
				var prefixIDs []int64
				for range ctxs {
					prefixIDs = append(prefixIDs, p...)
				}
				prefix := m.Embed(prefixIDs, int64(len(ctxs)), int64(len(p)), slots)
				// Exactly as many tokens as the context: a packed context
				// holds EOS tokens of its own, so stopping at EOS, as the
				// official inference does for whole documents, would end
				// reconstructions early.
				gen := m.GenerateFrom(prefix, torchmods.GenerateOptions{MaxNewTokens: len(ctxs[0])})
				recon = append(recon, gen...)
				refs = append(refs, ctxs...)
				trunc = append(trunc, m.truncated(ctxs)...)
			})
		})
	})
	if err != nil {
		return nil, err
	}
	out := map[string]float64{
		"ae_loss": aeSum / aeN, "ae_tf_token_acc": aeHit / aeN,
		"ppl_full": math.Exp(full / contN), "ppl_slots": math.Exp(slotsCE / contN), "ppl_none": math.Exp(none / contN),
		"ppl_copy": math.Exp(copyCE / copyN),
	}
	if otherAEN > 0 {
		out["ae_loss_other"], out["ae_tf_token_acc_other"] = otherAE/otherAEN, otherHit/otherAEN
		out["ppl_slots_other"] = math.Exp(otherCE / otherContN)
	}
	if o.Generate {
		out["recon_token_acc"], out["recon_bleu4"] = TokenAccuracy(recon, refs), BLEU(recon, refs)
		out["trunc_token_acc"], out["trunc_bleu4"] = TokenAccuracy(trunc, refs), BLEU(trunc, refs)
	}
	return out, nil
}

// otherSlots gives each context the slots of the next one (the last gets
// the first's): slots is Compress's [Σ counts, hidden], context by
// context. Swapping needs one slot count for all, as EvalSet's contexts
// of one length have; other counts are refused, naming them.
func (m *Model) otherSlots(slots *ts.Tensor, counts []int) *ts.Tensor {
	if i := slices.IndexFunc(counts, func(c int) bool { return c != counts[0] }); i >= 0 {
		panic(fmt.Errorf("icae: evaluation contexts with %d and %d slots; the set's windows share one length", counts[0], counts[i]))
	}
	b, k := int64(len(counts)), int64(counts[0])
	idx := make([]int64, 0, b*k)
	for i := range b {
		from := (i + 1) % b
		for j := range k {
			idx = append(idx, from*k+j)
		}
	}
	return slots.MustIndexSelect(0, torchmods.FromSlice(idx, []int64{int64(len(idx))}, slots.MustDevice()), false)
}

// truncated is the baseline's reconstruction of each context (all of one
// length): its first k tokens, k its slot count, then the LLM's greedy
// continuation to the context's length.
func (m *Model) truncated(ctxs [][]int64) [][]int64 {
	n := len(ctxs[0])
	k := min(m.SlotCount(n), n)
	if k == n {
		return ctxs
	}
	var flat []int64
	for _, c := range ctxs {
		if len(c) != n {
			panic(fmt.Errorf("icae: evaluation contexts of %d and %d tokens; the set's windows share one length", n, len(c)))
		}
		flat = append(flat, c[:k]...)
	}
	ids := torchmods.FromSlice(flat, []int64{int64(len(ctxs)), int64(k)}, m.Memory.MustDevice())
	res, err := m.LM.Generate(ids, nil, torchmods.GenerateOptions{MaxNewTokens: n - k})
	if err != nil {
		panic(err)
	}
	out := make([][]int64, len(ctxs))
	for i, c := range ctxs {
		out[i] = append(slices.Clone(c[:k]), res.Tokens[i]...)
	}
	return out
}

// lmScore is the summed cross-entropy of the LLM itself (no slots) on the
// samples' labels, their decoder ids read as ordinary tokens.
func (m *Model) lmScore(samples []Sample) float64 {
	bt := m.NewBatch(samples)
	ids := torchmods.FromSlice(bt.IDs, []int64{bt.B, bt.L}, m.Memory.MustDevice())
	l, _, _ := scoreLabels(m.LM.Forward(torchmods.LlamaInput{IDs: ids}, false), bt.Labels, bt.B, bt.L)
	return l
}

// scoreLabels is the summed shifted cross-entropy over the labelled
// positions, how many of them the argmax predicts, and their number.
func scoreLabels(logits *ts.Tensor, labels []int64, b, l int64) (sum, hit, n float64) {
	lab := torchmods.FromSlice(labels, []int64{b, l}, logits.MustDevice())
	mean := torchmods.LlamaLoss(logits, lab).Float64Values()[0]
	pred := logits.MustNarrow(1, 0, l-1, false).MustArgmax([]int64{-1}, false, true).Int64Values(true)
	for r := range b {
		for i := range l - 1 {
			t := labels[r*l+i+1]
			if t == IgnoreLabel {
				continue
			}
			n++
			if pred[r*(l-1)+i] == t {
				hit++
			}
		}
	}
	return mean * n, hit, n
}
