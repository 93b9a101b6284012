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
		if rest, ok := strings.CutPrefix(name, c+"."); ok && !strings.HasPrefix(rest, "grad.") && rest != "x" && rest != "y" && rest != "g" && rest != "pos" {
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
	parity(t, ref, "rmsnorm", func(p Path) { rms = NewRMSNorm(p, 8, 1e-6) }, func(x *ts.Tensor) *ts.Tensor { return rms.Forward(x) })
	var emb *Embedding
	parity(t, ref, "embedding", func(p Path) { emb = NewEmbedding(p, 10, 4) }, func(x *ts.Tensor) *ts.Tensor { return emb.Forward(x) })
	var mlp *MLP
	parity(t, ref, "mlp", func(p Path) { mlp = NewMLP(p, 6, 12, 5, GELU, 0) }, func(x *ts.Tensor) *ts.Tensor { return mlp.Forward(x, true) })
	var geglu *GEGLU
	parity(t, ref, "geglu", func(p Path) { geglu = NewGEGLU(p, 6, 7) }, func(x *ts.Tensor) *ts.Tensor { return geglu.Forward(x) })
	var swiglu *SwiGLU
	parity(t, ref, "swiglu", func(p Path) { swiglu = NewSwiGLU(p, 6, 10) }, func(x *ts.Tensor) *ts.Tensor { return swiglu.Forward(x) })
	parity(t, ref, "rotary", func(Path) {}, func(x *ts.Tensor) *ts.Tensor { return Rotary{HeadDim: 8, Base: 10000}.Apply(x, ref["rotary.pos"]) })
	var lora *LoRALinear
	parity(t, ref, "lora", func(p Path) { lora = NewLoRALinear(p, 6, 5, LoRAOptions{Rank: 4, Alpha: 8}) }, func(x *ts.Tensor) *ts.Tensor { return lora.Forward(x, true) })
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
	l := NewLoRALinear(store.Root(), 6, 5, LoRAOptions{Rank: 2})
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
	e := NewEmbedding(store.Root(), 10, 4)
	err := Try(func() { e.Forward(ts.MustOfSlice([]int64{3, 10})) })
	assert.ErrorContains(t, err, "id 10 out of range [0, 10)")
	err = Try(func() { e.Forward(ts.MustOfSlice([]float32{1})) })
	assert.ErrorContains(t, err, "ids must be int64")
}
