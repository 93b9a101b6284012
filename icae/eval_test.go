package icae

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// logProbs is log-softmax over the vocabulary of logits [1, L, V], as
// float64 rows.
func logProbs(logits *ts.Tensor) [][]float64 {
	sz := logits.MustSize()
	flat := logits.MustLogSoftmax(-1, gotch.Double, false).Float64Values(true)
	out := make([][]float64, sz[1])
	for i := range out {
		out[i] = flat[int64(i)*sz[2] : int64(i+1)*sz[2]]
	}
	return out
}

// nllOfTail is the summed negative log-likelihood of the last len(tail)
// ids of a row, each predicted from the position before it.
func nllOfTail(lp [][]float64, ids []int64, tail int) float64 {
	var s float64
	for i := len(ids) - tail; i < len(ids); i++ {
		s -= lp[i-1][ids[i]]
	}
	return s
}

func argmaxLast(lp [][]float64) int64 {
	row := lp[len(lp)-1]
	return int64(slices.Index(row, slices.Max(row)))
}

// Evaluate's numbers, each recomputed here one context at a time, without
// a cache and without batching: the perplexity of the continuation given
// the context as tokens, given the slots, and given BOS alone; the
// reconstruction, greedy from [slots; AE] for as many tokens as the
// context; and the truncation baseline, the context's first SlotCount
// tokens continued greedily by the LLM alone.
func TestEvaluateAgainstDirectComputation(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	m, _ := tinyICAE(t) // 4 slots per segment of up to 8 tokens
	rng := rand.New(rand.NewPCG(3, 4))
	const ctxLen, contLen, bos, eos = 8, 5, 1, 2
	var set EvalSet
	for range 3 {
		set.Contexts = append(set.Contexts, randomIDs(rng, ctxLen, 50))
		set.Conts = append(set.Conts, randomIDs(rng, contLen, 50))
	}
	got, err := m.Evaluate(set, EvalOptions{Batch: 2, Generate: true, BOS: bos, EOS: eos})
	require.NoError(t, err)

	k := m.SlotCount(ctxLen)
	require.Equal(t, 4, k)
	var full, slotsNLL, none, n, copyNLL float64
	var recon, trunc [][]int64
	ts.NoGrad(func() {
		lmLogProbs := func(ids []int64) [][]float64 {
			return logProbs(m.LM.Forward(torchmods.LlamaInput{IDs: torchmods.FromSlice(ids, []int64{1, int64(len(ids))}, gotch.CPU)}, false))
		}
		for i, c := range set.Contexts {
			cont := set.Conts[i]
			slots, _ := m.Compress([][]int64{c}, false)
			decLogProbs := func(ids []int64) [][]float64 {
				return logProbs(m.Decode(m.NewBatch([]Sample{{Context: c, PromptAnswer: ids, Labels: ignored(len(ids))}}), slots))
			}
			withCtx := append(slices.Clone(c), cont...)
			full += nllOfTail(lmLogProbs(withCtx), withCtx, contLen)
			alone := append([]int64{bos}, cont...)
			none += nllOfTail(lmLogProbs(alone), alone, contLen)
			withSlots := append(m.PrefixIDs(ctxLen), cont...)
			slotsNLL += nllOfTail(decLogProbs(withSlots), withSlots, contLen)
			n += contLen
			twice := append(slices.Clone(c), c...)
			copyNLL += nllOfTail(lmLogProbs(twice), twice, ctxLen)

			dec := m.PrefixIDs(ctxLen, m.Layout.AE())
			for range ctxLen {
				dec = append(dec, argmaxLast(decLogProbs(dec)))
			}
			recon = append(recon, dec[len(dec)-ctxLen:])
			tr := slices.Clone(c[:k])
			for len(tr) < ctxLen {
				tr = append(tr, argmaxLast(lmLogProbs(tr)))
			}
			trunc = append(trunc, tr)
		}
	})
	assert.InEpsilon(t, math.Exp(full/n), got["ppl_full"], 1e-4)
	assert.InEpsilon(t, math.Exp(slotsNLL/n), got["ppl_slots"], 1e-4)
	assert.InEpsilon(t, math.Exp(none/n), got["ppl_none"], 1e-4)
	assert.InEpsilon(t, math.Exp(copyNLL/float64(len(set.Contexts)*ctxLen)), got["ppl_copy"], 1e-4)
	assert.Equal(t, TokenAccuracy(recon, set.Contexts), got["recon_token_acc"])
	assert.Equal(t, BLEU(recon, set.Contexts), got["recon_bleu4"])
	assert.Equal(t, TokenAccuracy(trunc, set.Contexts), got["trunc_token_acc"])
	assert.Equal(t, BLEU(trunc, set.Contexts), got["trunc_bleu4"])
	assert.GreaterOrEqual(t, got["trunc_token_acc"], float64(k)/ctxLen, "the baseline keeps the first k tokens")
	for _, key := range []string{"ae_loss", "ae_tf_token_acc"} {
		assert.Contains(t, got, key)
	}

	// The control: each context decoded with the next one's slots within
	// its batch (batches {0, 1} and {2}: 0 takes 1's, 1 takes 0's, and 2,
	// alone, is left out).
	var otherNLL float64
	ts.NoGrad(func() {
		for i, j := range []int{1, 0} {
			c, slots := set.Contexts[i], func() *ts.Tensor { s, _ := m.Compress([][]int64{set.Contexts[j]}, false); return s }()
			withSlots := append(m.PrefixIDs(ctxLen), set.Conts[i]...)
			lp := logProbs(m.Decode(m.NewBatch([]Sample{{Context: c, PromptAnswer: withSlots, Labels: ignored(len(withSlots))}}), slots))
			otherNLL += nllOfTail(lp, withSlots, contLen)
		}
	})
	assert.InEpsilon(t, math.Exp(otherNLL/(2*contLen)), got["ppl_slots_other"], 1e-4)
	assert.NotEqual(t, got["ppl_slots"], got["ppl_slots_other"])
	assert.Contains(t, got, "ae_loss_other")
}

// With every context the same, another context's slots are its own: the
// control's numbers equal the model's.
func TestEvaluateOtherSlotsOfIdenticalContexts(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	m, _ := tinyICAE(t)
	rng := rand.New(rand.NewPCG(5, 6))
	c, k := randomIDs(rng, 8, 50), randomIDs(rng, 5, 50)
	set := EvalSet{Contexts: [][]int64{c, c, c}, Conts: [][]int64{k, k, k}}
	got, err := m.Evaluate(set, EvalOptions{Batch: 3, BOS: 1, EOS: 2})
	require.NoError(t, err)
	assert.InDelta(t, got["ae_loss"], got["ae_loss_other"], 1e-6)
	assert.InDelta(t, got["ae_tf_token_acc"], got["ae_tf_token_acc_other"], 1e-12)
	assert.InEpsilon(t, got["ppl_slots"], got["ppl_slots_other"], 1e-6)
}

// The compression is the context's length over its slots, segments times
// memory.size: memory.size alone does not set it. 64 tokens at size 8 and
// compression 4 make two segments of 32 tokens, 16 slots (4x); 8x needs
// compression 8 as well.
func TestCompressionNeedsSizeAndRate(t *testing.T) {
	for _, c := range []struct{ size, rate, slots int }{{32, 2, 32}, {16, 4, 16}, {8, 8, 8}, {8, 4, 16}, {32, 4, 32}} {
		assert.Equal(t, c.slots, NumSegments(64, c.size, c.rate)*c.size, "size %d, compression %d", c.size, c.rate)
	}
}

// Contexts of different slot counts cannot swap slots: Evaluate says so
// instead of pairing a context with part of another's slots.
func TestEvaluateRefusesMixedSlotCounts(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	m, _ := tinyICAE(t) // 4 slots per segment of up to 8 tokens
	rng := rand.New(rand.NewPCG(7, 8))
	set := EvalSet{Contexts: [][]int64{randomIDs(rng, 8, 50), randomIDs(rng, 16, 50)}, Conts: [][]int64{randomIDs(rng, 3, 50), randomIDs(rng, 3, 50)}}
	_, err := m.Evaluate(set, EvalOptions{Batch: 2, BOS: 1, EOS: 2})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "contexts with 4 and 8 slots")
}
