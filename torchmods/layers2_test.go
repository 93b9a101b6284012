package torchmods

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// parity loads case c of layer_parity.safetensors into a store built by
// build, runs forward on the case's input, and compares the output and the
// gradients of the input and of every parameter with PyTorch's.
func parity(t *testing.T, ref map[string]*ts.Tensor, c string, build func(Path), forward func(x *ts.Tensor) *ts.Tensor) {
	t.Helper()
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	build(store.Root())
	weights := map[string]*ts.Tensor{}
	for name, x := range ref {
		if rest, ok := strings.CutPrefix(name, c+"."); ok && !strings.HasPrefix(rest, "grad.") && rest != "x" && rest != "y" && rest != "g" && rest != "pos" && !strings.HasPrefix(rest, "input_") {
			weights[rest] = x
		}
	}
	_, err := store.Load(weights, true)
	require.NoError(t, err)
	x := ref[c+".x"].MustDetach(false)
	floatIn := x.DType() == gotch.Float
	if floatIn {
		x.MustRequiresGrad_(true)
	}
	var y *ts.Tensor
	require.NoError(t, Try(func() { y = forward(x) }))
	assert.Less(t, relErr(t, y, ref[c+".y"]), 1e-5, "%s output", c)
	require.NoError(t, y.MustMul(ref[c+".g"], false).MustSum(gotch.Float, true).Backward())
	if floatIn {
		assert.Less(t, relErr(t, x.MustGrad(false), ref[c+".grad.x"]), 1e-5, "%s grad of the input", c)
	}
	for _, p := range store.Params() {
		want, ok := ref[c+".grad."+p.Name]
		if !ok {
			continue // frozen in PyTorch too (LoRA's base)
		}
		assert.Less(t, relErr(t, p.Tensor.MustGrad(false), want), 1e-5, "%s grad of %s", c, p.Name)
	}
}

func TestLayerParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/layer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)

	var rms *RMSNorm
	parity(t, ref, "rmsnorm", func(p Path) { rms = NewRMSNorm(p, NormOptions{Dim: 8, Eps: 1e-6}) }, func(x *ts.Tensor) *ts.Tensor { return rms.Forward(x) })
	var emb *Embedding
	parity(t, ref, "embedding", func(p Path) { emb = NewEmbedding(p, EmbeddingOptions{Num: 10, Dim: 4}) }, func(x *ts.Tensor) *ts.Tensor { return emb.Forward(x) })
	var mlp *MLP
	parity(t, ref, "mlp", func(p Path) { mlp = NewMLP(p, MLPOptions{In: 6, Hidden: 12, Out: 5, Act: GELU, Dropout: 0}) }, func(x *ts.Tensor) *ts.Tensor { return mlp.Forward(x, true) })
	var geglu *GEGLU
	parity(t, ref, "geglu", func(p Path) { geglu = NewGEGLU(p, GLUOptions{In: 6, Hidden: 7}) }, func(x *ts.Tensor) *ts.Tensor { return geglu.Forward(x) })
	var swiglu *SwiGLU
	parity(t, ref, "swiglu", func(p Path) { swiglu = NewSwiGLU(p, GLUOptions{In: 6, Hidden: 10}) }, func(x *ts.Tensor) *ts.Tensor { return swiglu.Forward(x) })
	parity(t, ref, "rotary", func(Path) {}, func(x *ts.Tensor) *ts.Tensor { return Rotary{HeadDim: 8, Base: 10000}.Apply(x, ref["rotary.pos"]) })
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
	for c, act := range map[string]Activation{"act_gelu_tanh": GELUTanh, "act_quick_gelu": QuickGELU, "act_silu": SiLU} {
		parity(t, ref, c, func(Path) {}, act.Apply)
	}
	var cross *MultiheadAttention
	parity(t, ref, "cross", func(p Path) {
		cross = NewMultiheadAttention(p, MultiheadAttentionOptions{Dim: 8, Heads: 2, Dropout: 0})
	}, func(x *ts.Tensor) *ts.Tensor {
		return cross.Forward(x, ref["cross.input_context"], ref["cross.input_context"], nil, true)
	})
	var lora *LoRALinear
	parity(t, ref, "lora", func(p Path) { lora = NewLoRALinear(p, LoRAOptions{In: 6, Out: 5, Rank: 4, Alpha: 8}) }, func(x *ts.Tensor) *ts.Tensor { return lora.Forward(x, true) })
}

func TestSinCos2DMatchesMAE(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/layer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	got, err := SinCos2D(8, 4, true)
	require.NoError(t, err)
	assert.Equal(t, []int64{17, 8}, got.MustSize())
	assert.Less(t, relErr(t, got, ref["sincos2d.y"]), 1e-6)
	// Row 1 is patch (h=0, w=0): sin(0)=0 and cos(0)=1 in each half.
	assert.Equal(t, []float64{0, 0, 1, 1, 0, 0, 1, 1}, got.MustSelect(0, 1, false).Float64Values())
	_, err = SinCos2D(6, 4, false)
	assert.ErrorContains(t, err, "multiple of 4")
}

func TestDropout(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(4)
	x := ts.MustOnes([]int64{10000}, gotch.Float, gotch.CPU)
	assert.Same(t, x, Dropout(x, 0.3, false), "identity in evaluation")
	zeros := 0
	for _, v := range Dropout(x, 0.3, true).Float64Values() {
		switch v {
		case 0:
			zeros++
		case float64(float32(1 / 0.7)):
		default:
			t.Fatalf("value %v: kept elements are scaled by 1/(1-p)", v)
		}
	}
	assert.InDelta(t, 3000, zeros, 200)
}

func TestDropPath(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(3)
	x := ts.MustOnes([]int64{4000, 3}, gotch.Float, gotch.CPU)
	assert.Same(t, x, DropPath(x, 0.25, false), "identity in evaluation")
	assert.Same(t, x, DropPath(x, 0, true), "identity at p = 0")
	y := DropPath(x, 0.25, true).Float64Values()
	kept := 0
	for i := 0; i < 4000; i++ {
		row := y[3*i : 3*i+3]
		switch row[0] {
		case 0:
		case float64(float32(1 / 0.75)): // float32 tensors
			kept++
		default:
			t.Fatalf("row %d = %v: a sample is dropped whole or scaled by 1/keep", i, row)
		}
		assert.Equal(t, row[0], row[1], "row %d drops as one", i)
		assert.Equal(t, row[0], row[2], "row %d drops as one", i)
	}
	assert.InDelta(t, 3000, kept, 150, "about 75%% of samples kept")
}

func TestLoRAStartsAtBaseAndMergesExactly(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	l := NewLoRALinear(store.Root(), LoRAOptions{In: 6, Out: 5, Rank: 2})
	x := ts.MustRandn([]int64{3, 6}, gotch.Float, gotch.CPU)
	assert.Less(t, relErr(t, l.Forward(x, false), l.Base.Forward(x)), 1e-7, "B starts at zero")
	assert.False(t, l.Base.Weight.MustRequiresGrad(), "base frozen")
	assert.True(t, l.A.MustRequiresGrad())

	ts.NoGrad(func() { l.B.MustNormal_(0, 0.5) })
	before := l.Forward(x, false)
	w0 := l.Base.Weight.Float64Values()
	l.Merge()
	l.Merge() // idempotent
	assert.Less(t, relErr(t, l.Forward(x, false), before), 1e-6, "merged output equals the unmerged one")
	l.Unmerge()
	assert.Less(t, relErr(t, l.Forward(x, false), before), 1e-6)
	assert.InDeltaSlice(t, w0, l.Base.Weight.Float64Values(), 1e-6, "unmerge restores the base weight")
}

func TestEmbeddingRefusesBadIDs(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	e := NewEmbedding(store.Root(), EmbeddingOptions{Num: 10, Dim: 4})
	err := Try(func() { e.Forward(ts.MustOfSlice([]int64{3, 10})) })
	assert.ErrorContains(t, err, "id 10 out of range [0, 10)")
	err = Try(func() { e.Forward(ts.MustOfSlice([]float32{1})) })
	assert.ErrorContains(t, err, "ids must be int64")
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
	live := ts.LiveTensors()
	for i := int64(0); i < L; i++ {
		step := ts.NewScope()
		var y *ts.Tensor
		ts.NoGrad(func() {
			y = a.Forward(AttentionInput{Query: x.MustNarrow(1, i, 1, false), Cache: cache}, false)
		})
		assert.Less(t, relErr(t, y, full.MustNarrow(1, i, 1, false)), 1e-5, "token %d", i)
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

func TestPatchEmbedParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/layer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	var pe *PatchEmbed
	parity(t, ref, "patch", func(p Path) { pe = NewPatchEmbed(p, PatchEmbedOptions{ImgSize: 8, Patch: 4, InChans: 3, Dim: 6}) }, func(x *ts.Tensor) *ts.Tensor { return pe.Forward(x) })
	assert.Equal(t, int64(4), pe.NumPatches())
	err = Try(func() { pe.Forward(ts.MustOnes([]int64{1, 3, 9, 9}, gotch.Float, gotch.CPU)) })
	assert.ErrorContains(t, err, "want [B, 3, 8, 8]")
}

func TestT5BucketsMatchHF(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/layer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	rel := ref["t5.rel"].Int64Values()
	bi, uni := ref["t5.bucket_bi"].Int64Values(), ref["t5.bucket_uni"].Int64Values()
	for i, r := range rel {
		require.Equal(t, bi[i], T5Bucket(r, true, 32, 128), "bidirectional, relative position %d", r)
		require.Equal(t, uni[i], T5Bucket(r, false, 32, 128), "unidirectional, relative position %d", r)
	}
	store := NewStore(gotch.CPU)
	defer store.Drop()
	b := NewT5Bias(store.Root().Sub("t5bias"), T5BiasOptions{Heads: 4, Buckets: 32, MaxDistance: 128, Bidirectional: true})
	_, err = store.Load(map[string]*ts.Tensor{"t5bias.relative_attention_bias.weight": ref["t5bias.relative_attention_bias.weight"]}, true)
	require.NoError(t, err)
	assert.Less(t, relErr(t, b.Forward(5, 7), ref["t5bias.y"]), 1e-7)
}

// TestFastWeightsSecondOrder reproduces one MAML step against PyTorch: an
// inner SGD step whose gradient keeps its graph (ts.Grad with createGraph),
// the outer loss computed by the same Linear run with the fast weights
// (Store.WithParams), and the outer gradient reaching the initial weights
// through the inner step.
func TestFastWeightsSecondOrder(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/layer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	store := NewStore(gotch.CPU)
	defer store.Drop()
	lin := NewLinear(store.Root(), LinearOptions{In: 3, Out: 2})
	_, err = store.Load(map[string]*ts.Tensor{"weight": ref["maml.weight"], "bias": ref["maml.bias"]}, true)
	require.NoError(t, err)
	mse := func(a, b *ts.Tensor) *ts.Tensor { return a.MustMseLoss(b, 1, false) }

	inner := mse(lin.Forward(ref["maml.input_xi"]), ref["maml.input_yi"])
	g, err := ts.Grad([]*ts.Tensor{inner}, []*ts.Tensor{lin.Weight, lin.Bias}, true)
	require.NoError(t, err)
	lr := ts.FloatScalar(0.1)
	fast := map[string]*ts.Tensor{
		"weight": lin.Weight.MustSub(g[0].MustMulScalar(lr, false), false),
		"bias":   lin.Bias.MustSub(g[1].MustMulScalar(lr, false), false),
	}
	before := lin.Weight.Float64Values()
	var outer *ts.Tensor
	require.NoError(t, store.WithParams(fast, func() { outer = mse(lin.Forward(ref["maml.input_xo"]), ref["maml.input_yo"]) }))
	assert.Equal(t, before, lin.Weight.Float64Values(), "parameters restored after WithParams")
	assert.Less(t, relErr(t, outer.MustView([]int64{1}, false), ref["maml.outer"]), 1e-6)

	require.NoError(t, outer.Backward())
	assert.Less(t, relErr(t, lin.Weight.MustGrad(false), ref["maml.grad.weight"]), 1e-5, "second-order gradient of the weight")
	assert.Less(t, relErr(t, lin.Bias.MustGrad(false), ref["maml.grad.bias"]), 1e-5)

	assert.ErrorContains(t, store.WithParams(map[string]*ts.Tensor{"nope": fast["bias"]}, func() {}), `no parameter "nope"`)
	assert.ErrorContains(t, store.WithParams(map[string]*ts.Tensor{"bias": fast["weight"]}, func() {}), "fast weight [2 3]")
}

func TestGroupsSplitDecay(t *testing.T) {
	store := NewStore(gotch.CPU)
	defer store.Drop()
	NewEncoderLayer(store.Root(), EncoderLayerOptions{Dim: 8, Heads: 2, FF: 16})
	NewLoRALinear(store.Root().Sub("lora"), LoRAOptions{In: 4, Out: 4, Rank: 2})
	decay, noDecay := store.Groups()
	var d, n []string
	for _, p := range decay {
		d = append(d, p.Name)
	}
	for _, p := range noDecay {
		n = append(n, p.Name)
	}
	assert.ElementsMatch(t, []string{"self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight", "lora.lora_A.weight", "lora.lora_B.weight"}, d)
	assert.ElementsMatch(t, []string{"self_attn.in_proj_bias", "self_attn.out_proj.bias", "linear1.bias", "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}, n, "biases and norms, and not the frozen LoRA base")
}
