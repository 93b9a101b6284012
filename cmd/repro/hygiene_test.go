package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// -strip-prefix never makes a tensor with an empty name.
func TestStripPrefixRefusesAnEmptyName(t *testing.T) {
	in := filepath.Join(t.TempDir(), "w.safetensors")
	require.NoError(t, safetensors.Write(in, []safetensors.Tensor{
		{Name: "model.w", DType: "F32", Shape: []int64{1}, Data: make([]byte, 4)},
		{Name: "model.", DType: "F32", Shape: []int64{1}, Data: make([]byte, 4)},
	}, nil))
	_, stderr, code := runRepro(t, "weights", "convert", "-strip-prefix", "model.", in, filepath.Join(t.TempDir(), "out.safetensors"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `-strip-prefix "model." leaves tensor "model." with an empty name`)
}
