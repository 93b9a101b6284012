// Package parity reads the PyTorch parity fixtures that repro's tests
// compare with: a safetensors file of named tensors that a generator
// (testdata/gen_*.py) wrote by running the official code, its inputs under
// "in." and outputs under "out." (possibly after a prefix), weights and
// gradients under names of their own.
//
// It is a package apart from internal/testutil because it needs
// torchmods (to make libtorch tensors), whose own tests import testutil.
// Like testutil it imports "testing" and is for _test.go files only:
// importing it into a program panics at start.
package parity

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

func init() {
	if !testing.Testing() {
		panic("internal/testutil/parity is for tests only, and this program is not a test")
	}
}

// Fixture is a fixture file read for one test: its accessors stop that
// test when a name is missing or a tensor cannot be made.
type Fixture struct {
	*safetensors.File
	t testing.TB
}

// Read reads the fixture at path (typically "testdata/…_parity.safetensors")
// for t, stopping t if it cannot.
func Read(t testing.TB, path string) Fixture {
	t.Helper()
	f, err := safetensors.Read(path)
	require.NoError(t, err)
	return Fixture{f, t}
}

// Tensor is the named tensor, on the CPU, in the caller's scope.
func (x Fixture) Tensor(name string) *ts.Tensor {
	x.t.Helper()
	st, ok := x.Get(name)
	require.True(x.t, ok, name)
	out, err := torchmods.FromSafetensors(st, gotch.CPU)
	require.NoError(x.t, err, name)
	return out
}

// Floats is the named tensor's values as float64s.
func (x Fixture) Floats(name string) []float64 {
	x.t.Helper()
	return x.Tensor(name).MustTotype(gotch.Double, true).Float64Values()
}

// StateDict is the fixture's tensors under prefix, with the prefix taken
// off, as they are in the file (in its order): the official weights, for
// a loader of state dicts. The inputs and outputs under the prefix (names
// that go on with "in." or "out.") are not weights and are left out.
func (x Fixture) StateDict(prefix string) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, st := range x.Tensors {
		rest, ok := strings.CutPrefix(st.Name, prefix)
		if ok && !strings.HasPrefix(rest, "in.") && !strings.HasPrefix(rest, "out.") {
			st.Name = rest
			out = append(out, st)
		}
	}
	return out
}

// Weights is StateDict(prefix) as libtorch tensors by name, for
// torchmods.Store.Load.
func (x Fixture) Weights(prefix string) map[string]*ts.Tensor {
	x.t.Helper()
	w := map[string]*ts.Tensor{}
	for _, st := range x.StateDict(prefix) {
		out, err := torchmods.FromSafetensors(st, gotch.CPU)
		require.NoError(x.t, err, prefix+st.Name)
		w[st.Name] = out
	}
	return w
}
