package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

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
