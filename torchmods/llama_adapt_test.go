package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// inputs_embeds: the embeddings of the ids give the ids' hidden states,
// and gradients reach the embeddings. Adapt adds LoRA's update to the
// projections it names, per call: the result is the model with merged
// weights, and a call without Adapt is the model itself.
func TestLlamaEmbedsAndAdapters(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	c := LlamaConfig{ModelType: "llama", VocabSize: 50, HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 8, RMSNormEps: 1e-5, Rope: LlamaRope{Type: "default", Theta: 10000},
		InitializerRange: 0.2, BOSTokenID: 1, PadTokenID: -1, EOSTokenIDs: []int64{2}}
	store := NewStore(gotch.CPU)
	defer store.Drop()
	m := NewLlamaForCausalLM(store.Root(), c, LlamaBuild{})
	ids := FromSlice([]int64{3, 9, 4, 17, 8, 30, 2, 11}, []int64{2, 4}, gotch.CPU)
	want := m.Hidden(LlamaInput{IDs: ids}, false)
	x := m.Embed.Forward(ids).MustDetach(false)
	x.MustRequiresGrad_(true)
	got := m.Hidden(LlamaInput{Embeds: x}, false)
	testutil.Close(t, got, want, 1e-7, "inputs_embeds")
	got.MustSum(gotch.Float, false).MustBackward()
	assert.True(t, x.MustGrad(false).MustDefined())

	lora := map[string]*LoRALinear{}
	for _, name := range []string{"q_proj", "v_proj", "o_proj"} {
		base := map[string]*Linear{"q_proj": m.Layers[1].Attn.Q, "v_proj": m.Layers[1].Attn.V, "o_proj": m.Layers[1].Attn.O}[name]
		lora[name] = &LoRALinear{Base: base, A: ts.MustRandn([]int64{2, base.In}, gotch.Float, gotch.CPU),
			B: ts.MustRandn([]int64{base.Out, 2}, gotch.Float, gotch.CPU), Rank: 2, Alpha: 4}
	}
	adapt := func(layer int, name string, h *ts.Tensor, train bool) *ts.Tensor {
		if l, ok := lora[name]; ok && layer == 1 {
			return l.Delta(h, train)
		}
		return nil
	}
	ts.NoGrad(func() {
		adapted := m.Hidden(LlamaInput{IDs: ids, Adapt: adapt}, false)
		for _, l := range lora {
			l.Merge()
		}
		merged := m.Hidden(LlamaInput{IDs: ids}, false)
		for _, l := range lora {
			l.Unmerge()
		}
		testutil.Close(t, adapted, merged, 1e-5, "Adapt = merged LoRA")
		testutil.Close(t, m.Hidden(LlamaInput{IDs: ids}, false), want, 1e-6, "without Adapt, the model itself")
		require.Greater(t, testutil.RelErr(adapted, want), 1e-3)
	})
}
