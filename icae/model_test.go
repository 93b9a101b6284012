package icae

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
)

// tinyLM is a 2-layer grouped-query Llama of width 32 over 50 tokens,
// frozen once NewModel wraps it.
func tinyLM(t *testing.T) *torchmods.LlamaForCausalLM {
	t.Helper()
	c := torchmods.LlamaConfig{ModelType: "llama", VocabSize: 50, HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 8, RMSNormEps: 1e-5, Rope: torchmods.LlamaRope{Type: "default", Theta: 10000},
		MaxPositionEmbeddings: 256, InitializerRange: 0.2, BOSTokenID: 1, PadTokenID: 0, EOSTokenIDs: []int64{2}}
	store := torchmods.NewStore(gotch.CPU)
	t.Cleanup(store.Drop)
	return torchmods.NewLlamaForCausalLM(store.Root(), c, torchmods.LlamaBuild{})
}

// tinyICAE wraps tinyLM with 4 slots per segment at 2x compression and
// LoRA on q_proj and v_proj whose B is random (PEFT starts B at zero,
// which would make the adapters invisible to these tests).
func tinyICAE(t *testing.T, targets ...string) (*Model, *torchmods.Store) {
	t.Helper()
	store := torchmods.NewStore(gotch.CPU)
	t.Cleanup(store.Drop)
	if targets == nil {
		targets = []string{"q_proj", "v_proj"}
	}
	m := NewModel(store.Root(), tinyLM(t), Options{MemSize: 4, Compression: 2, Rank: 2, Alpha: 4, Targets: targets, MemoryInitStd: 1})
	ts.NoGrad(func() {
		for _, layer := range m.LoRA {
			for _, a := range layer {
				a.B.MustNormal_(0, 0.5)
			}
		}
	})
	return m, store
}

func randomIDs(rng *rand.Rand, n int, vocab int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = 3 + rng.Int64N(vocab-3)
	}
	return out
}

// The slots are the last hidden states, after the final RMSNorm, at the
// memory positions of [context; memory tokens], from one encoder pass. The
// check runs the LLM through its public token-id API: the memory rows are
// set to the embeddings of 4 ordinary tokens and LoRA's B to zero, so the
// encoder is the plain LLM on [context; those tokens].
func TestSlotsAreTheFinalHiddenStatesAtTheMemoryPositions(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, _ := tinyICAE(t)
	rng := rand.New(rand.NewPCG(1, 2))
	stand := []int64{7, 11, 13, 17}
	ts.NoGrad(func() {
		for j, id := range stand {
			m.Memory.MustSelect(0, int64(j), false).Copy_(m.LM.Embed.Weight.MustSelect(0, id, false))
		}
		for _, layer := range m.LoRA {
			for _, a := range layer {
				a.B.MustZero_()
			}
		}
	})
	ctx := randomIDs(rng, 6, 50)
	var slots, want *ts.Tensor
	ts.NoGrad(func() {
		slots, _ = m.Compress([][]int64{ctx}, false)
		ids := append(append([]int64{}, ctx...), stand...)
		h := m.LM.Hidden(torchmods.LlamaInput{IDs: torchmods.FromSlice(ids, []int64{1, 10}, gotch.CPU)}, false)
		want = h.MustNarrow(1, 6, 4, false).MustReshape([]int64{4, -1}, true)
	})
	testutil.Close(t, slots, want, 1e-6, "slots = hidden states at positions 6..9 of [context; memory]")
	// Not the positions before them.
	ts.NoGrad(func() {
		ids := append(append([]int64{}, ctx...), stand...)
		h := m.LM.Hidden(torchmods.LlamaInput{IDs: torchmods.FromSlice(ids, []int64{1, 10}, gotch.CPU)}, false)
		assert.Greater(t, testutil.RelErr(slots, h.MustNarrow(1, 5, 4, false).MustReshape([]int64{4, -1}, true)), 1e-2)
	})
}

// A long context is cut into segments, each with its own slots, and the
// contexts of a batch are left-padded: every context's slots are what it
// compresses to alone, and a two-segment context's slots are its two
// segments' slots, in order.
func TestMultiSpanSlotsAndPaddedBatches(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, _ := tinyICAE(t)
	rng := rand.New(rand.NewPCG(3, 4))
	long := randomIDs(rng, 13, 50) // 2 segments of at most 8: [0, 7) and [7, 13)
	short := randomIDs(rng, 5, 50)
	require.Equal(t, [][2]int{{0, 7}, {7, 13}}, Segments(13, 4, 2))
	ts.NoGrad(func() {
		batch, counts := m.Compress([][]int64{short, long}, false)
		assert.Equal(t, []int{4, 8}, counts)
		require.Equal(t, []int64{12, 32}, batch.MustSize())
		alone, _ := m.Compress([][]int64{short}, false)
		testutil.Close(t, batch.MustNarrow(0, 0, 4, false), alone, 1e-5, "the short context, padded in the batch")
		longSlots, _ := m.Compress([][]int64{long}, false)
		testutil.Close(t, batch.MustNarrow(0, 4, 8, false), longSlots, 1e-5, "the long context")
		first, _ := m.Compress([][]int64{long[:7]}, false)
		second, _ := m.Compress([][]int64{long[7:]}, false)
		testutil.Close(t, longSlots.MustNarrow(0, 0, 4, false), first, 1e-6, "segment 1's slots")
		testutil.Close(t, longSlots.MustNarrow(0, 4, 4, false), second, 1e-6, "segment 2's slots")
	})
}

// The decoder's input: slots where the placeholders are (in order), the
// memory table's rows for [AE], [LM], [FT], embed_tokens for the rest.
func TestDecoderInputPlacesSlotsAndSpecialEmbeddings(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, _ := tinyICAE(t)
	l := m.Layout
	ids := []int64{l.MemID(0), l.MemID(0), l.AE(), 5, 2, l.LM(), l.FT(), 9}
	slots := ts.MustRandn([]int64{2, 32}, gotch.Float, gotch.CPU)
	ts.NoGrad(func() {
		x := m.Embed(ids, 1, int64(len(ids)), slots).MustSelect(0, 0, true)
		at := func(i int64) *ts.Tensor { return x.MustSelect(0, i, false) }
		testutil.Close(t, at(0), slots.MustSelect(0, 0, false), 1e-7, "slot 1")
		testutil.Close(t, at(1), slots.MustSelect(0, 1, false), 1e-7, "slot 2")
		testutil.Close(t, at(2), m.Memory.MustSelect(0, 4, false), 1e-7, "[AE] is memory row mem+0")
		testutil.Close(t, at(5), m.Memory.MustSelect(0, 5, false), 1e-7, "[LM] is memory row mem+1")
		testutil.Close(t, at(6), m.Memory.MustSelect(0, 6, false), 1e-7, "[FT] is memory row mem+2")
		testutil.Close(t, at(3), m.LM.Embed.Weight.MustSelect(0, 5, false), 1e-7, "a token")
		testutil.Close(t, at(7), m.LM.Embed.Weight.MustSelect(0, 9, false), 1e-7, "a token")
	})
	assert.Panics(t, func() { m.Embed(ids, 1, int64(len(ids)), slots.MustNarrow(0, 0, 1, false)) }, "one slot for two placeholders")
}

// The decoder is the frozen LLM: fed ordinary tokens' embeddings it gives
// the LLM's own logits, adapters or not. The encoder with its adapters
// computes what a LoRA layer (torchmods.LoRALinear) computes.
func TestDecoderIsTheFrozenLLMAndTheEncoderAppliesLoRA(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, _ := tinyICAE(t)
	ids := randomIDs(rand.New(rand.NewPCG(5, 6)), 9, 50)
	ts.NoGrad(func() {
		want := m.LM.Forward(torchmods.LlamaInput{IDs: torchmods.FromSlice(ids, []int64{1, 9}, gotch.CPU)}, false)
		x := m.Embed(ids, 1, 9, nil)
		testutil.Close(t, m.LM.Logits(m.Hidden(x, nil, false, false)), want, 1e-6, "decoder = the LLM")
		assert.Greater(t, testutil.RelErr(m.LM.Logits(m.Hidden(x, nil, true, false)), want), 1e-3, "the encoder's adapters change it")

		// The encoder is the LLM with each adapter merged into its base.
		enc := m.LM.Logits(m.Hidden(x, nil, true, false))
		for _, layer := range m.LoRA {
			for _, a := range layer {
				a.Merge()
			}
		}
		merged := m.LM.Forward(torchmods.LlamaInput{IDs: torchmods.FromSlice(ids, []int64{1, 9}, gotch.CPU)}, false)
		for _, layer := range m.LoRA {
			for _, a := range layer {
				a.Unmerge()
			}
		}
		testutil.Close(t, enc, merged, 1e-5, "encoder = the LLM with LoRA merged")
		assert.Same(t, m.LM.Layers[1].Attn.V, m.LoRA[1]["v_proj"].Base, "the adapter's base is the LLM's own projection")
		assert.NotContains(t, m.LoRA[1], "k_proj", "k_proj is not targeted")
	})
}

// Switching LoRA off in the encoder changes the slots.
func TestEncoderWithoutLoRAGivesOtherSlots(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, _ := tinyICAE(t)
	ctx := randomIDs(rand.New(rand.NewPCG(7, 8)), 8, 50)
	ts.NoGrad(func() {
		on, _ := m.Compress([][]int64{ctx}, false)
		saved := m.Opt.Targets
		m.Opt.Targets = nil // HasLoRA false: the encoder is the frozen LLM
		off, _ := m.Compress([][]int64{ctx}, false)
		m.Opt.Targets = saved
		assert.Greater(t, testutil.RelErr(off, on), 1e-3)
	})
}

func aeBatch(m *Model, rng *rand.Rand) Batch {
	o := PretrainOptions{MaxLen: 8, MinTokensForLM: 4, LeaveTokens: 2, Compression: 2, EOS: 2}
	return m.NewBatch([]Sample{
		PretrainSample(randomIDs(rng, 8, 50), o, m.Layout, rng),
		PretrainSample(randomIDs(rng, 5, 50), o, m.Layout, rng),
	})
}

func grad(t *torchmods.Param) *ts.Tensor {
	if g := t.Tensor.MustGrad(false); g.MustDefined() {
		return g
	}
	return nil
}

// Gradients prove where LoRA acts. The frozen LLM's parameters get none;
// LoRA and the memory table get nonzero gradients from the AE loss; with
// the slots cut off from the decoder (detached), the LoRA matrices get
// none at all: the decoder pass never uses them. The memory table's rows
// are reached as the objective says: the memory tokens through the
// encoder, [AE] through the decoder, [LM] and [FT] not at all.
func TestGradientsReachLoRAOnlyThroughTheEncoder(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, store := tinyICAE(t)
	rng := rand.New(rand.NewPCG(9, 10))
	bt := aeBatch(m, rng)
	require.NoError(t, torchmods.Try(func() { m.Loss(bt, true).MustBackward() }))

	llm := m.LM
	frozen := []*ts.Tensor{llm.Embed.Weight, llm.Norm.Weight, llm.LMHead.Weight}
	for _, l := range llm.Layers {
		frozen = append(frozen, l.Attn.Q.Weight, l.Attn.V.Weight, l.Attn.K.Weight, l.MLP.Up.Weight, l.InputNorm.Weight)
	}
	for i, p := range frozen {
		assert.False(t, p.MustRequiresGrad(), "LLM tensor %d frozen", i)
		assert.False(t, p.MustGrad(false).MustDefined(), "LLM tensor %d has no gradient", i)
	}
	for _, p := range store.Params() {
		g := grad(p)
		require.NotNil(t, g, p.Name)
		if p.Name == "memory_token_embed.weight" {
			rows := g.MustAbs(false).MustSumDimIntlist([]int64{1}, false, gotch.Double, true).Float64Values()
			for j := range 5 { // memory tokens 0..3 and [AE]
				assert.Greater(t, rows[j], 0.0, "memory row %d", j)
			}
			assert.Equal(t, []float64{0, 0}, rows[5:], "[LM] and [FT] unused by AE")
			continue
		}
		assert.Greater(t, g.MustAbs(false).MustMax(true).Float64Values()[0], 0.0, p.Name)
	}

	// The decoder alone: slots computed, then detached.
	for _, p := range store.Params() {
		p.Tensor.MustGrad(false).MustZero_()
	}
	require.NoError(t, torchmods.Try(func() {
		slots, _ := m.Compress(bt.Contexts, true)
		m.DecodeLoss(bt, slots.MustDetach(false)).MustBackward()
	}))
	for _, p := range store.Params() {
		g := grad(p)
		if p.Name == "memory_token_embed.weight" {
			rows := g.MustAbs(false).MustSumDimIntlist([]int64{1}, false, gotch.Double, true).Float64Values()
			assert.Equal(t, []float64{0, 0, 0, 0}, rows[:4], "memory tokens reach the loss through the encoder only")
			assert.Greater(t, rows[4], 0.0, "[AE] is a decoder input")
			continue
		}
		assert.Equal(t, 0.0, g.MustAbs(false).MustMax(true).Float64Values()[0], "%s: no gradient through the decoder", p.Name)
	}
}

// The memory table trains even without LoRA (the ablation), and then the
// store holds nothing else.
func TestMemoryOnlyAblation(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, store := tinyICAE(t, []string{}...)
	require.Len(t, store.Params(), 1)
	bt := aeBatch(m, rand.New(rand.NewPCG(11, 12)))
	require.NoError(t, torchmods.Try(func() { m.Loss(bt, true).MustBackward() }))
	g := grad(store.Params()[0])
	require.NotNil(t, g)
	assert.Greater(t, g.MustAbs(false).MustMax(true).Float64Values()[0], 0.0)
}

// LoRA's dropout acts on the encoder in training only: two training
// passes differ, evaluation passes agree.
func TestLoRADropoutOnlyInTraining(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, _ := tinyICAE(t)
	for _, layer := range m.LoRA {
		for _, a := range layer {
			a.Drop = 0.5
		}
	}
	ctx := randomIDs(rand.New(rand.NewPCG(13, 14)), 8, 50)
	ts.NoGrad(func() {
		a, _ := m.Compress([][]int64{ctx}, true)
		b, _ := m.Compress([][]int64{ctx}, true)
		assert.Greater(t, testutil.RelErr(a, b), 1e-4, "dropout in training")
		c, _ := m.Compress([][]int64{ctx}, false)
		d, _ := m.Compress([][]int64{ctx}, false)
		testutil.Close(t, c, d, 1e-9, "none in evaluation")
	})
}
