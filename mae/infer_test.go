package mae

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// A 2.9 KB file with one tensor named blocks.100000000.norm1.weight must
// not make a model of a hundred million blocks: the depth read from names
// is bounded by the blocks the file holds, and a gap is an error.
func TestInferredDepthIsBoundedByTheFile(t *testing.T) {
	base := []safetensors.Tensor{
		{Name: "patch_embed.proj.weight", Shape: []int64{64, 3, 16, 16}},
		{Name: "pos_embed", Shape: []int64{1, 5, 64}},
	}
	bomb := append(append([]safetensors.Tensor{}, base...), safetensors.Tensor{Name: "blocks.100000000.norm1.weight", Shape: []int64{64}})
	_, _, err := InferOptions(bomb)
	require.ErrorContains(t, err, "holds 1 of them and blocks.0 is missing")

	gap := append(append([]safetensors.Tensor{}, base...),
		safetensors.Tensor{Name: "blocks.0.norm1.weight", Shape: []int64{64}}, safetensors.Tensor{Name: "blocks.2.norm1.weight", Shape: []int64{64}})
	_, _, err = InferOptions(gap)
	require.ErrorContains(t, err, "blocks.1 is missing")

	huge := append(append([]safetensors.Tensor{}, base...), safetensors.Tensor{Name: "blocks.99999999999999999999.norm1.weight", Shape: []int64{64}})
	_, _, err = InferOptions(huge)
	require.ErrorContains(t, err, "out of range")

	ok := append(append([]safetensors.Tensor{}, base...),
		safetensors.Tensor{Name: "blocks.0.norm1.weight", Shape: []int64{64}}, safetensors.Tensor{Name: "blocks.1.norm1.weight", Shape: []int64{64}})
	o, _, err := InferOptions(ok)
	require.NoError(t, err)
	require.Equal(t, int64(2), o.Depth)
}

// A grid written over a directory is refused, and leaves no DIR.tmp behind.
func TestWriteGridOverADirectoryLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	x := ts.MustZeros([]int64{1, 1, 4, 4}, gotch.Float, gotch.CPU)
	defer x.MustDrop()
	err := WriteGrid(dir, Panels{x, x, x, x}, []float32{0}, []float32{1}, 1)
	require.ErrorContains(t, err, "is a directory")
	_, err = os.Stat(dir + ".tmp")
	require.True(t, os.IsNotExist(err))
}
