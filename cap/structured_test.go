package cap

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

func tinyBert(t *testing.T) (*torchmods.Store, *torchmods.Bert) {
	t.Helper()
	ts.ManualSeed(7)
	store := torchmods.NewStore(gotch.CPU)
	c := torchmods.BertConfig{VocabSize: 50, HiddenSize: 16, NumHiddenLayers: 3, NumAttentionHeads: 4, IntermediateSize: 10,
		HiddenAct: "gelu", MaxPositionEmbeddings: 12, TypeVocabSize: 2}
	b := torchmods.NewBert(store.Root().Sub("bert"), c, true)
	// Non-zero biases, so that a bias copied to the wrong rows shows.
	ts.NoGrad(func() {
		for _, p := range store.Params() {
			p.Tensor.MustAdd_(ts.MustRandn(p.Tensor.MustSize(), gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(0.05), true))
		}
	})
	return store, b
}

// A really pruned model computes what the masked model computes: every
// layer's kept heads and neurons moved into smaller matrices, one layer
// left with a single head and one with no feed-forward neuron at all.
func TestShrinkEqualsMasked(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store, b := tinyBert(t)
	defer store.Drop()
	head := [][]float64{{1, 0, 1, 1}, {0, 0, 1, 0}, {1, 1, 1, 1}}
	ffn := [][]float64{{1, 1, 0, 0, 1, 0, 1, 1, 0, 1}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 0, 0, 0, 0, 0, 1}}
	ids := torchmods.FromSlice([]int64{1, 5, 9, 33, 2, 0, 1, 7, 8, 40, 41, 2}, []int64{2, 6}, gotch.CPU)
	mask := torchmods.FromSlice([]int64{1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1}, []int64{2, 6}, gotch.CPU)
	in := torchmods.BertInput{IDs: ids, Mask: mask, HeadMask: maskTensor(head, gotch.CPU), FFNMask: maskTensor(ffn, gotch.CPU)}
	want := b.ForwardInput(in, false)
	wantPool := b.Pool(want)

	small := torchmods.NewStore(gotch.CPU)
	defer small.Drop()
	s, err := Shrink(small.Root().Sub("bert"), b, head, ffn)
	require.NoError(t, err)
	require.Equal(t, []int64{3, 1, 4}, []int64{s.Cfg.LayerHeads(0), s.Cfg.LayerHeads(1), s.Cfg.LayerHeads(2)})
	require.Equal(t, []int64{6, 0, 2}, s.Cfg.Pruned.Intermediate)
	require.Equal(t, []int64{12, 16}, s.Layers[0].Attn.Q.Weight.MustSize())
	require.Equal(t, []int64{16, 4}, s.Layers[1].Attn.Out.Weight.MustSize())
	got := s.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask}, false)
	require.InDeltaSlice(t, want.Float64Values(), got.Float64Values(), 1e-5)
	require.InDeltaSlice(t, wantPool.Float64Values(), s.Pool(got).Float64Values(), 1e-5)
	// Fewer parameters: 4 of 12 heads' q, k, v (rows and biases) and
	// output columns, and 22 of 30 neurons' rows, biases and columns gone.
	count := func(st *torchmods.Store) (n int64) {
		for _, p := range st.Params() {
			n += int64(p.Tensor.Numel())
		}
		return n
	}
	hd := int64(4)
	removed := 4*(3*hd*(16+1)+hd*16) + 22*(16+1+16)
	require.Equal(t, count(store)-removed, count(small))
}

// A layer that lost every head (as the official head protection allows)
// keeps its attention output's bias, and the pruned model still computes
// what the masked one does.
func TestShrinkLayerWithoutHeads(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store, b := tinyBert(t)
	defer store.Drop()
	head := [][]float64{{0, 0, 0, 0}, {1, 1, 0, 1}, {1, 1, 1, 1}}
	ids := torchmods.FromSlice([]int64{1, 5, 9, 33, 2, 0}, []int64{1, 6}, gotch.CPU)
	want := b.ForwardInput(torchmods.BertInput{IDs: ids, HeadMask: maskTensor(head, gotch.CPU), FFNMask: maskTensor(Ones(3, 10), gotch.CPU)}, false)
	small := torchmods.NewStore(gotch.CPU)
	defer small.Drop()
	s, err := Shrink(small.Root().Sub("bert"), b, head, Ones(3, 10))
	require.NoError(t, err)
	require.Nil(t, s.Layers[0].Attn)
	got := s.ForwardInput(torchmods.BertInput{IDs: ids}, false)
	require.InDeltaSlice(t, want.Float64Values(), got.Float64Values(), 1e-5)
}

func TestPruningSequence(t *testing.T) {
	h, f, err := PruningSequence([]float64{10, 20, 30, 40, 50, 60, 70, 80, 90}, 12, 12, 3072, 1)
	require.NoError(t, err)
	// int(144 * p / 100): 14, 28, 43, 57, 72, 86, 100, 115, 129
	require.Equal(t, []int64{14, 14, 15, 14, 15, 14, 14, 15, 14}, h)
	require.Equal(t, int64(33177), sum(f)) // int(36864 * 0.9)
	_, _, err = PruningSequence([]float64{50, 97}, 2, 4, 10, 1)
	require.ErrorContains(t, err, "at most 75% of heads")
}

func sum(v []int64) (s int64) {
	for _, x := range v {
		s += x
	}
	return s
}
