package torchmods

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// TestEncoderLayerParity loads the state dicts of two PyTorch
// nn.TransformerEncoderLayer (made by testdata/gen_encoder_parity.py) into
// torchmods' EncoderLayer and compares the output and every gradient. It
// covers Linear, LayerNorm, MultiheadAttention (with and without a mask),
// ReLU, exact GELU, post-norm and pre-norm.
func TestEncoderLayerParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "encoder_parity.safetensors")
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
			testutil.Close(t, y, ref[c.name+".y"], 1e-5, "output")

			require.NoError(t, y.MustMul(ref[c.name+".g"], false).MustSum(gotch.Float, true).Backward())
			got := grads(store)
			got["x"] = x.MustGrad(false)
			n := testutil.Parity(t, got, testutil.Sub(ref, c.name+".grad."), 1e-5, "grad")
			assert.Equal(t, 13, n, "the gradients of the input and of the 12 parameters")
		})
	}
}

// TestTorchSaveLoadsIntoEncoderLayer: a state dict that PyTorch wrote with
// torch.save (testdata/encoder_post.pt, the "post" layer of the parity
// fixture) loads by name into EncoderLayer, which then gives PyTorch's output.
func TestTorchSaveLoadsIntoEncoderLayer(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	weights := loadRef(t, "encoder_post.pt")
	ref := loadRef(t, "encoder_parity.safetensors")
	store := NewStore(gotch.CPU)
	defer store.Drop()
	layer := NewEncoderLayer(store.Root(), EncoderLayerOptions{Dim: 16, Heads: 4, FF: 32, Activation: ReLU})
	report, err := store.Load(weights, true)
	require.NoError(t, err, "strict load of a torch.save state dict")
	assert.Len(t, report.Loaded, 12)
	var y *ts.Tensor
	ts.NoGrad(func() { y = layer.Forward(ref["post.x"], nil, false) })
	testutil.Close(t, y, ref["post.y"], 1e-5)
}
