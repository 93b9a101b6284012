package parity

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
)

func f32(v ...float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// A fixture as the generators write it: inputs and outputs under "m.in."
// and "m.out.", weights under "m.", a gradient elsewhere.
func TestFixtureAccessors(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	path := filepath.Join(t.TempDir(), "parity.safetensors")
	require.NoError(t, safetensors.Write(path, []safetensors.Tensor{
		{Name: "m.in.x", DType: "F32", Shape: []int64{2}, Data: f32(1, 2)},
		{Name: "m.out.y", DType: "F32", Shape: []int64{}, Data: f32(3)},
		{Name: "m.fc.weight", DType: "F32", Shape: []int64{1, 2}, Data: f32(0.5, -1)},
		{Name: "m.fc.bias", DType: "F32", Shape: []int64{1}, Data: f32(0.25)},
		{Name: "grad.m.fc.bias", DType: "F32", Shape: []int64{1}, Data: f32(1)},
	}, nil))
	x := Read(t, path)
	assert.Equal(t, []int64{1, 2}, x.Tensor("m.fc.weight").MustSize())
	assert.Equal(t, []float64{1, 2}, x.Floats("m.in.x"))
	assert.Equal(t, []float64{3}, x.Floats("m.out.y"), "a scalar")
	var names []string
	for _, st := range x.StateDict("m.") {
		names = append(names, st.Name)
	}
	assert.ElementsMatch(t, []string{"fc.weight", "fc.bias"}, names, "inputs and outputs are not weights")
	w := x.Weights("m.")
	require.Len(t, w, 2)
	assert.Equal(t, []float64{0.5, -1}, w["fc.weight"].Float64Values())
	assert.Equal(t, []float64{0.25}, w["fc.bias"].Float64Values())
}
