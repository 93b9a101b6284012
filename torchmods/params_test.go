package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

func TestStrictLoadReportsAndChangesNothing(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	l := NewLinear(store.Root().Sub("fc"), LinearOptions{In: 3, Out: 2})
	before := l.Weight.Float64Values()
	weights := map[string]*ts.Tensor{
		"fc.weight": ts.MustOnes([]int64{2, 4}, gotch.Float, gotch.CPU), // wrong shape
		"fc.extra":  ts.MustOnes([]int64{1}, gotch.Float, gotch.CPU),
	}
	r, err := store.Load(weights, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing (1): fc.bias")
	assert.Contains(t, err.Error(), "unexpected (1): fc.extra")
	assert.Contains(t, err.Error(), "fc.weight: model [2 3] weights [2 4]")
	assert.Equal(t, before, l.Weight.Float64Values(), "a refused load changes nothing")

	weights["fc.bias"] = ts.MustZeros([]int64{2}, gotch.Float, gotch.CPU)
	r, err = store.Load(weights, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"fc.bias"}, r.Loaded, "partial load copies what matches")
	assert.Equal(t, []float64{0, 0}, l.Bias.Float64Values())
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
	testutil.Close(t, outer.MustView([]int64{1}, false), ref["maml.outer"], 1e-6)

	require.NoError(t, outer.Backward())
	testutil.Close(t, lin.Weight.MustGrad(false), ref["maml.grad.weight"], 1e-5, "second-order gradient of the weight")
	testutil.Close(t, lin.Bias.MustGrad(false), ref["maml.grad.bias"], 1e-5)

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

// A config with an absurd size is refused before anything is allocated,
// naming the parameter; a size left at 0 is refused too.
func TestAbsurdSizesAreRefusedBeforeAllocating(t *testing.T) {
	store := NewStore(gotch.CPU)
	defer store.Drop()
	require.Positive(t, store.MaxBytes, "a CPU store is bounded by the memory available")
	store.MaxBytes = 1 << 20
	live := frozenLive(t)
	err := Try(func() { NewLinear(store.Root().Sub("fc"), LinearOptions{In: 1_000_000_000, Out: 1_000_000_000}) })
	require.ErrorContains(t, err, `parameter "fc.weight" of shape [1000000000 1000000000] would bring the model to 4e+09 GB`)
	err = Try(func() { NewLinear(store.Root().Sub("big"), LinearOptions{In: 1 << 40, Out: 1 << 40}) })
	require.ErrorContains(t, err, "is too large to exist")
	err = Try(func() { NewLinear(store.Root().Sub("zero"), LinearOptions{In: 0, Out: 4}) })
	require.ErrorContains(t, err, `parameter "zero.weight" would have shape [4 0]: every dimension must be positive`)
	require.Equal(t, live, ts.LiveTensors(), "nothing was allocated")
	require.NoError(t, Try(func() { NewLinear(store.Root().Sub("ok"), LinearOptions{In: 16, Out: 16}) }))
}
