package pmlm

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// tinyUniLM is an untrained UniLMv2 BERT with relative position bias and
// no dropout, for the correctness tests.
func tinyUniLM(t *testing.T, vocab int64) *torchmods.BertForMaskedLM {
	t.Helper()
	cfg := torchmods.BertConfig{VocabSize: vocab, HiddenSize: 32, NumHiddenLayers: 2, NumAttentionHeads: 4, IntermediateSize: 64,
		HiddenAct: "gelu", MaxPositionEmbeddings: 64, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.2,
		RelPosBins: 32, MaxRelPos: 128}
	// initializer_range 0.2, not 0.02: an untrained model with tiny
	// weights has nearly uniform attention, which would hide a leak.
	ts.ManualSeed(7)
	return torchmods.NewBertForMaskedLM(torchmods.NewStore(gotch.CPU).Root(), cfg)
}

// logitsAt runs one example and returns the logits of the given positions.
func logitsAt(m *torchmods.BertForMaskedLM, r row, at []int) [][]float64 {
	b := stack([]row{r}, 0, gotch.CPU)
	hidden := m.Bert.ForwardInput(b.in, false)
	idx := make([]int64, len(at))
	for i, a := range at {
		idx[i] = int64(a)
	}
	h := hidden.MustSelect(0, 0, false).MustIndexSelect(0, torchmods.FromSlice(idx, []int64{int64(len(idx))}, gotch.CPU), true)
	logits := m.Logits(h)
	v := logits.Float64Values()
	V := int(logits.MustSize()[1])
	out := make([][]float64, len(at))
	for i := range out {
		out[i] = v[i*V : (i+1)*V]
	}
	return out
}

// The key test: the packed one-pass forward gives, at every [P],
// the logits of a naive forward that predicts that block alone from only
// what it may see (the corrupted sequence, the true tokens of the blocks
// earlier in the order, its own [P]s), within 1e-5, for several random
// factorisation orders and maskings, on an untrained model with relative
// position bias. And the [M] slots' logits (AE) are those of the corrupted
// sequence alone, so that AE-only training may skip the appended part.
func TestPackedForwardEqualsNaivePerBlock(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const vocab = 60
	m := tinyUniLM(t, vocab)
	sp := Specials{Mask: 3, Pseudo: 4, Pad: 0}
	o := DefaultMaskOptions()
	o.MaskProb = 0.3 // more blocks per sequence
	orders := map[string]bool{}
	for seed, tested := 0, 0; tested < 8; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		n := 14 + rng.IntN(12)
		tokens := make([]int64, n)
		maskable := make([]bool, n)
		for i := range tokens {
			tokens[i] = 5 + rng.Int64N(vocab-5)
			maskable[i] = i > 0 && i < n-1
		}
		tokens[0], tokens[n-1] = 1, 2 // [CLS], [SEP]
		types := make([]int64, n)
		for i := n / 2; i < n; i++ {
			types[i] = 1
		}
		mk, err := o.Sample(tokens, maskable, sp.Mask, vocab, rng)
		require.NoError(t, err)
		if len(mk.Blocks) < 2 {
			continue // one block has a single order
		}
		tested++
		orders[fmtInts(mk.Order)] = true
		l, err := Pack(tokens, types, mk, sp, 0)
		require.NoError(t, err)
		naive, err := NaiveBlocks(tokens, types, mk, sp)
		require.NoError(t, err)
		require.Len(t, naive, len(mk.Blocks))

		var pseudo []int
		for i, k := range l.Kind {
			if k == KindPseudo {
				pseudo = append(pseudo, i)
			}
		}
		packed := logitsAt(m, row{IDs: l.IDs, Positions: l.Positions, TypeIDs: l.TypeIDs, Mask: l.AttnMask}, pseudo)
		byIndex := map[int][]float64{}
		for i, p := range pseudo {
			byIndex[p] = packed[i]
		}
		checked := 0
		for _, nv := range naive {
			got := logitsAt(m, row{IDs: nv.IDs, Positions: nv.Positions, TypeIDs: nv.TypeIDs, Mask: nv.AttnMask}, nv.Pseudo)
			for k, ni := range nv.Pseudo {
				want := byIndex[nv.PackedIndex[ni]]
				require.NotNil(t, want, "seed %d step %d: naive [P] %d has no packed [P]", seed, nv.Step, ni)
				require.Less(t, maxAbsDiff(got[k], want), 1e-5, "seed %d step %d slot %d", seed, nv.Step, k)
				checked++
			}
		}
		require.Equal(t, len(pseudo), checked, "every packed [P] is compared")

		// AE: the corrupted sequence alone gives the [M] slots' logits.
		var masked []int
		for i, k := range l.Kind {
			if k == KindMasked {
				masked = append(masked, i)
			}
		}
		full := logitsAt(m, row{IDs: l.IDs, Positions: l.Positions, TypeIDs: l.TypeIDs, Mask: l.AttnMask}, masked)
		alone := logitsAt(m, corruptedRow(l), masked)
		for i := range masked {
			require.Less(t, maxAbsDiff(full[i], alone[i]), 1e-5, "seed %d masked slot %d", seed, masked[i])
		}
	}
	require.Greater(t, len(orders), 4, "the seeds cover several factorisation orders")
}

// The test above can fail: a mask that lets the [P]s of a block see its
// own true tokens changes their logits beyond the tolerance.
func TestPackedForwardLeakIsVisible(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const vocab = 60
	m := tinyUniLM(t, vocab)
	sp := Specials{Mask: 3, Pseudo: 4, Pad: 0}
	tokens := []int64{1, 10, 11, 12, 13, 14, 15, 16, 2}
	mk := Masking{Blocks: []Block{{2, 4}, {6, 7}}, Order: []int{1, 0}}
	mk.Corrupted = append([]int64{}, tokens...)
	for _, b := range mk.Blocks {
		for i := b.Start; i < b.End; i++ {
			mk.Corrupted[i] = sp.Mask
		}
	}
	l, err := Pack(tokens, nil, mk, sp, 0)
	require.NoError(t, err)
	var pseudo []int
	for i, k := range l.Kind {
		if k == KindPseudo {
			pseudo = append(pseudo, i)
		}
	}
	r := row{IDs: l.IDs, Positions: l.Positions, TypeIDs: l.TypeIDs, Mask: l.AttnMask}
	before := logitsAt(m, r, pseudo)
	leaky := append([]bool{}, l.AttnMask...)
	for _, p := range pseudo {
		for j, k := range l.Kind {
			if k == KindTrue && l.Weight[j] == -l.Weight[p] {
				leaky[p*l.Len+j] = true
			}
		}
	}
	r.Mask = leaky
	after := logitsAt(m, r, pseudo)
	worst := 0.0
	for i := range pseudo {
		worst = math.Max(worst, maxAbsDiff(before[i], after[i]))
	}
	require.Greater(t, worst, 1e-3)
}

func maxAbsDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func fmtInts(x []int) string {
	b := make([]byte, 0, 2*len(x))
	for _, v := range x {
		b = append(b, byte('0'+v%10), ',')
	}
	return string(b)
}

func mathExp(x float64) float64 { return math.Exp(x) }
func mathLog(x float64) float64 { return math.Log(x) }

func smoothedLossOf(t *testing.T, logits [][]float64, targets []int64, eps float64, pad int64) float64 {
	t.Helper()
	s := ts.NewScope()
	defer s.Close()
	var flat []float64
	for _, l := range logits {
		flat = append(flat, l...)
	}
	x := torchmods.FromSlice(flat, []int64{int64(len(logits)), int64(len(logits[0]))}, gotch.CPU)
	y := torchmods.FromSlice(targets, []int64{int64(len(targets))}, gotch.CPU)
	return SmoothedLoss(x, y, eps, pad).Float64Values()[0]
}

// A checkpoint's position table is repeated to fill a longer model table
// (s2s-ft's reuse_position_embedding) and cut for a shorter one.
func TestResizePositions(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	for _, n := range []int64{10, 3} {
		store := torchmods.NewStore(gotch.CPU)
		cfg := torchmods.BertConfig{VocabSize: 20, HiddenSize: 4, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 8,
			HiddenAct: "gelu", MaxPositionEmbeddings: n, TypeVocabSize: 2}
		torchmods.NewBertForMaskedLM(store.Root(), cfg)
		old := make([]float32, 4*4)
		for i := range old {
			old[i] = float32(i / 4) // row r is all r
		}
		const name = "bert.embeddings.position_embeddings.weight"
		weights := map[string]*ts.Tensor{name: torchmods.FromSlice(old, []int64{4, 4}, gotch.CPU)}
		var log strings.Builder
		resizePositions(store, weights, &log)
		got := weights[name]
		require.Equal(t, []int64{n, 4}, got.MustSize())
		v := got.Float64Values()
		for r := range n {
			require.Equal(t, float64(r%4), v[r*4], "row %d", r)
		}
		require.Contains(t, log.String(), "4 positions in the checkpoint")
		store.Drop()
	}
}

// Decoding sees what training taught: the log-probabilities at the
// decoding input's [MASK] after a prefix equal those at the training
// layout's pseudo slot for the same position (target slots not dropped,
// pseudo ids [MASK]), on an untrained model with relative position bias.
// This pins decodeRow's positions, segments and mask to s2s-ft's.
func TestDecodeRowMatchesTrainingPseudoSlot(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const vocab = 60
	m := tinyUniLM(t, vocab)
	st := S2STokens{CLS: 1, SEP: 2, Pad: 0, Mask: 3, Vocab: vocab}
	o := DefaultS2SOptions()
	o.MaxSourceLen, o.MaxTargetLen = 12, 8
	source := []int64{10, 11, 12, 13, 14}
	target := []int64{20, 21, 22, 23}
	src, tgt := TruncateS2S(source, target, st, o)
	pseudo := make([]int64, len(tgt))
	for i := range pseudo {
		pseudo[i] = st.Mask
	}
	ex := S2SExample{Source: src, Target: tgt, Pseudo: pseudo, Labels: tgt}
	l, err := ex.Layout(st, o)
	require.NoError(t, err)
	var slots []int
	for k := range tgt {
		slots = append(slots, l.PseudoStart()+k)
	}
	train := logitsAt(m, s2sRow(l), slots)
	for k := range tgt {
		r := decodeRow(src, tgt[:k], st, o)
		got := logitsAt(m, r, []int{len(r.IDs) - 1})[0]
		require.Less(t, maxAbsDiff(got, train[k]), 1e-5, "target position %d", k)
	}
	// And the prefix matters: a different prefix changes the prediction.
	other := logitsAt(m, decodeRow(src, []int64{30, 31}, st, o), []int{len(src) + 2})[0]
	require.Greater(t, maxAbsDiff(other, train[2]), 1e-3)
}
