package vampnet

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Coarse-to-fine over one chunk is one generate call on the codes with
// the conditioning codebooks unmasked; over chunks of 3 frames it pads 7
// frames to 9, generates each chunk alone, and cuts back to 7, keeping
// every position the mask leaves alone.
func TestCoarseToFineChunks(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, ref, codebooks := loadParity(t)
	z, mask := ref["gen.in.codes"], ref["gen.in.mask"]
	o := SampleOptions{Steps: 4, Temperature: 1, MaskTemperature: 10.5, SampleCutoff: 1}

	ts.ManualSeed(9)
	whole, err := CoarseToFine(m, z, mask, codebooks, 7, o)
	require.NoError(t, err)
	ts.ManualSeed(9)
	want := m.Generate(z, mask, codebooks, o)
	assert.Equal(t, want.Int64Values(), whole.Int64Values())

	ts.ManualSeed(9)
	chunked, err := CoarseToFine(m, z, nil, codebooks, 3, o)
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 3, 7}, chunked.MustSize())
	g, c := chunked.Int64Values(), z.Int64Values()
	for i := range 7 { // codebook 0 conditions: kept
		assert.Equal(t, c[i], g[i], "conditioning frame %d", i)
	}
	for i, v := range g {
		assert.Less(t, v, int64(10), "position %d left MASK", i)
	}

	_, err = CoarseToFine(m, ts.MustZeros([]int64{1, 5, 7}, gotch.Int64, gotch.CPU), nil, codebooks, 3, o)
	assert.ErrorContains(t, err, "codebooks")
}

// Coarse vamp regenerates the coarse model's codebooks and passes the
// finer ones through; too long an excerpt is an error, not an assert.
func TestCoarseVamp(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, ref, codebooks := loadParity(t)
	z, mask := ref["gen.in.codes"], ref["gen.in.mask"]
	fine := ts.MustFull([]int64{1, 2, 7}, ts.IntScalar(4), gotch.Int64, gotch.CPU)
	zz := ts.MustCat([]*ts.Tensor{z, fine}, 1)
	mm := ts.MustCat([]*ts.Tensor{mask, fine.MustOnesLike(false)}, 1)
	o := SampleOptions{Steps: 3, Temperature: 1, MaskTemperature: 10.5, SampleCutoff: 1}
	ts.ManualSeed(2)
	out, err := CoarseVamp(m, zz, mm, codebooks, 10, o)
	require.NoError(t, err)
	ts.ManualSeed(2)
	want := m.Generate(z, mask, codebooks, o)
	assert.Equal(t, want.Int64Values(), out.MustNarrow(1, 0, 3, false).MustContiguous(true).Int64Values())
	assert.Equal(t, fine.Int64Values(), out.MustNarrow(1, 3, 2, false).MustContiguous(true).Int64Values())
	_, err = CoarseVamp(m, zz, mm, codebooks, 5, o)
	assert.ErrorContains(t, err, "chunk is 5 frames")
}
