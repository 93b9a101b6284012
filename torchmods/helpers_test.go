package torchmods

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// relErr is testutil.RelErr after a required shape check. The tests of
// this package use testutil.Close; weights_test.go still calls relErr.
func relErr(t *testing.T, got, want *ts.Tensor) float64 {
	t.Helper()
	require.Equal(t, want.MustSize(), got.MustSize())
	return testutil.RelErr(got, want)
}

// grads maps every parameter of store to its gradient, undefined where it
// has none (frozen, or not reached), for testutil.Parity.
func grads(store *Store) map[string]*ts.Tensor {
	g := map[string]*ts.Tensor{}
	for _, p := range store.Params() {
		g[p.Name] = p.Tensor.MustGrad(false)
	}
	return g
}

// loadRef loads a fixture of testdata onto the CPU.
func loadRef(t *testing.T, file string) map[string]*ts.Tensor {
	t.Helper()
	ref, err := LoadWeights("testdata/"+file, gotch.CPU)
	require.NoError(t, err)
	return ref
}

// parity loads case c of layer_parity.safetensors into a store built by
// build, runs forward on the case's input, and compares the output and the
// gradients of the input and of every parameter with PyTorch's: a gradient
// PyTorch did not make (LoRA's frozen base) must be undefined here too.
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
	testutil.Close(t, y, ref[c+".y"], 1e-5, "%s output", c)
	require.NoError(t, y.MustMul(ref[c+".g"], false).MustSum(gotch.Float, true).Backward())
	got := grads(store)
	if floatIn {
		got["x"] = x.MustGrad(false)
	}
	testutil.Parity(t, got, testutil.Sub(ref, c+".grad."), 1e-5, "%s grad", c)
}
