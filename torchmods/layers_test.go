package torchmods

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// relErr is max|got-want| / max(max|want|, 1e-12).
func relErr(t *testing.T, got, want *ts.Tensor) float64 {
	t.Helper()
	require.Equal(t, want.MustSize(), got.MustSize())
	g, w := got.Float64Values(), want.Float64Values()
	var diff, scale float64
	for i := range w {
		diff = math.Max(diff, math.Abs(g[i]-w[i]))
		scale = math.Max(scale, math.Abs(w[i]))
	}
	return diff / math.Max(scale, 1e-12)
}

// TestEncoderLayerParity loads the state dicts of two PyTorch
// nn.TransformerEncoderLayer (made by testdata/gen_encoder_parity.py) into
// torchmods' EncoderLayer and compares the output and every gradient. It
// covers Linear, LayerNorm, MultiheadAttention (with and without a mask),
// ReLU, exact GELU, post-norm and pre-norm.
func TestEncoderLayerParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/encoder_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	for _, c := range []struct {
		name      string
		normFirst bool
		act       Activation
		causal    bool
	}{{"post", false, ReLU, false}, {"pre", true, GELU, true}} {
		t.Run(c.name, func(t *testing.T) {
			// A subtest runs on its own goroutine, outside the parent's scope.
			s := ts.NewScope()
			defer s.Close()
			store := NewStore(gotch.CPU)
			defer store.Drop()
			layer := NewEncoderLayer(store.Root(), EncoderLayerOptions{Dim: 16, Heads: 4, FF: 32, Activation: c.act, NormFirst: c.normFirst})
			weights := map[string]*ts.Tensor{}
			for name, x := range ref {
				rest, ok := strings.CutPrefix(name, c.name+".")
				if ok && !strings.HasPrefix(rest, "grad.") && rest != "x" && rest != "y" && rest != "g" {
					weights[rest] = x
				}
			}
			report, err := store.Load(weights, true)
			require.NoError(t, err)
			assert.Len(t, report.Loaded, 12)

			x := ref[c.name+".x"].MustDetach(false)
			x.MustRequiresGrad_(true)
			var mask *ts.Tensor
			if c.causal {
				mask = ts.MustOnes([]int64{5, 5}, gotch.Bool, gotch.CPU).MustTriu(1, true)
			}
			y := layer.Forward(x, mask, true)
			assert.Less(t, relErr(t, y, ref[c.name+".y"]), 1e-5, "output")

			require.NoError(t, y.MustMul(ref[c.name+".g"], false).MustSum(gotch.Float, true).Backward())
			assert.Less(t, relErr(t, x.MustGrad(false), ref[c.name+".grad.x"]), 1e-5, "grad of the input")
			for _, p := range store.Params() {
				e := relErr(t, p.Tensor.MustGrad(false), ref[c.name+".grad."+p.Name])
				assert.Less(t, e, 1e-5, "grad of %s", p.Name)
			}
		})
	}
}

// TestTorchSaveLoadsIntoEncoderLayer: a state dict that PyTorch wrote with
// torch.save (testdata/encoder_post.pt, the "post" layer of the parity
// fixture) loads by name into EncoderLayer, which then gives PyTorch's output.
func TestTorchSaveLoadsIntoEncoderLayer(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	weights, err := LoadWeights("testdata/encoder_post.pt", gotch.CPU)
	require.NoError(t, err)
	ref, err := LoadWeights("testdata/encoder_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	store := NewStore(gotch.CPU)
	defer store.Drop()
	layer := NewEncoderLayer(store.Root(), EncoderLayerOptions{Dim: 16, Heads: 4, FF: 32, Activation: ReLU})
	report, err := store.Load(weights, true)
	require.NoError(t, err, "strict load of a torch.save state dict")
	assert.Len(t, report.Loaded, 12)
	var y *ts.Tensor
	ts.NoGrad(func() { y = layer.Forward(ref["post.x"], nil, false) })
	assert.Less(t, relErr(t, y, ref["post.y"]), 1e-5)
}

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

func TestShapeMistakeIsAnErrorNotACrash(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	l := NewLinear(store.Root(), LinearOptions{In: 3, Out: 2})
	err := Try(func() { l.Forward(ts.MustOnes([]int64{4, 5}, gotch.Float, gotch.CPU)) })
	assert.ErrorContains(t, err, "Linear: input shape [4 5], want last dimension 3")
	// A libtorch error inside a Must op is recovered too.
	err = Try(func() {
		ts.MustOnes([]int64{2, 3}, gotch.Float, gotch.CPU).MustMm(ts.MustOnes([]int64{2, 3}, gotch.Float, gotch.CPU), false)
	})
	assert.Error(t, err)
}
