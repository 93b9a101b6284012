package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

func TestAttentionParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	var gqa *Attention
	parity(t, ref, "gqa", func(p Path) {
		gqa = NewAttention(p, AttentionOptions{Dim: 16, Heads: 4, KVHeads: 2, Names: LlamaNames, Rotary: &Rotary{HeadDim: 4, Base: 10000}})
	}, func(x *ts.Tensor) *ts.Tensor {
		causal := ts.MustOnes([]int64{6, 6}, gotch.Bool, gotch.CPU).MustTriu(1, true)
		return gqa.Forward(AttentionInput{Query: x, Mask: causal}, true)
	})
	var timm *Attention
	parity(t, ref, "timm_attn", func(p Path) {
		timm = NewAttention(p, AttentionOptions{Dim: 16, Heads: 4, Bias: true, Names: TimmNames})
	}, func(x *ts.Tensor) *ts.Tensor {
		return timm.Forward(AttentionInput{Query: x, Bias: ref["timm_attn.input_bias"]}, true)
	})
}

// TestMultiheadAttentionParity: cross-attention through PyTorch's
// nn.MultiheadAttention names (the encoder layer's test covers self-attention).
func TestMultiheadAttentionParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	var cross *MultiheadAttention
	parity(t, ref, "cross", func(p Path) {
		cross = NewMultiheadAttention(p, MultiheadAttentionOptions{Dim: 8, Heads: 2, Dropout: 0})
	}, func(x *ts.Tensor) *ts.Tensor {
		return cross.Forward(x, ref["cross.input_context"], ref["cross.input_context"], nil, true)
	})
}

// TestKVCacheDecodingMatchesFullForward decodes a sequence one token at a
// time through a KV cache, each step in its own scope as a generation loop
// would run, and compares with one causal forward over the whole sequence.
func TestKVCacheDecodingMatchesFullForward(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(5)
	store := NewStore(gotch.CPU)
	defer store.Drop()
	a := NewAttention(store.Root(), AttentionOptions{Dim: 16, Heads: 4, KVHeads: 2, Names: LlamaNames, Rotary: &Rotary{HeadDim: 4, Base: 10000}})
	const L = 7
	x := ts.MustRandn([]int64{2, L, 16}, gotch.Float, gotch.CPU)
	var full *ts.Tensor
	ts.NoGrad(func() {
		causal := ts.MustOnes([]int64{L, L}, gotch.Bool, gotch.CPU).MustTriu(1, true)
		full = a.Forward(AttentionInput{Query: x, Mask: causal}, false)
	})

	cache := &KVCache{}
	defer cache.Drop()
	live := frozenLive(t)
	for i := int64(0); i < L; i++ {
		step := ts.NewScope()
		var y *ts.Tensor
		ts.NoGrad(func() {
			y = a.Forward(AttentionInput{Query: x.MustNarrow(1, i, 1, false), Cache: cache}, false)
		})
		testutil.Close(t, y, full.MustNarrow(1, i, 1, false), 1e-5, "token %d", i)
		step.Close()
		assert.Equal(t, i+1, cache.Len())
		assert.Equal(t, live+2, ts.LiveTensors(), "only the cache's two tensors outlive a step")
		live = ts.LiveTensors() - 2
	}
}

func TestAttentionConfigErrors(t *testing.T) {
	store := NewStore(gotch.CPU)
	defer store.Drop()
	err := Try(func() { NewAttention(store.Root(), AttentionOptions{Dim: 16, Heads: 4, KVHeads: 3, Names: LlamaNames}) })
	assert.ErrorContains(t, err, "key/value heads")
	err = Try(func() { NewAttention(store.Root(), AttentionOptions{Dim: 16, Heads: 4, KVHeads: 2, Names: TimmNames}) })
	assert.ErrorContains(t, err, "fused qkv projection cannot have grouped")
}
