package cocoop

import (
	"math"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// interpret_prompt.py's reading of a learned context: each context
// vector's nearest token embeddings by Euclidean distance, nearest first,
// checked against a brute-force sort in float64.
func TestNearestTokens(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const vocab, width = 50, 8
	emb := ts.MustRandn([]int64{vocab, width}, gotch.Float, gotch.CPU)
	// Context vectors near rows 7 and 3 of the embedding.
	ctx := ts.MustStack([]*ts.Tensor{
		emb.MustSelect(0, 7, false).MustAddScalar(ts.FloatScalar(0.01), true),
		emb.MustSelect(0, 3, false),
	}, 0)
	got := NearestTokens(ctx, emb, 4)
	require.Len(t, got, 2)
	assert.Equal(t, int64(7), got[0][0].ID)
	assert.InDelta(t, 0.01*math.Sqrt(width), got[0][0].Distance, 1e-5)
	assert.Equal(t, int64(3), got[1][0].ID)
	assert.InDelta(t, 0, got[1][0].Distance, 1e-3)

	e, c := emb.Float64Values(), ctx.Float64Values()
	for m := range 2 {
		type pair struct {
			id int
			d  float64
		}
		var all []pair
		for i := range vocab {
			var d2 float64
			for j := range width {
				x := c[m*width+j] - e[i*width+j]
				d2 += x * x
			}
			all = append(all, pair{i, math.Sqrt(d2)})
		}
		sort.SliceStable(all, func(a, b int) bool { return all[a].d < all[b].d })
		for r := range 4 {
			assert.Equal(t, int64(all[r].id), got[m][r].ID, "context %d, rank %d", m, r)
			assert.InDelta(t, all[r].d, got[m][r].Distance, 1e-4)
		}
	}
	assert.Panics(t, func() { NearestTokens(ctx, emb.MustNarrow(1, 0, 4, false), 1) })
	assert.Panics(t, func() { NearestTokens(ctx, emb, vocab+1) })
}

// ReadContext finds the context in a repro file and in an official
// checkpoint's nesting, and refuses a class-specific one by name.
func TestReadContext(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	dir := t.TempDir()
	ctx := ts.MustOfSlice([]float32{1, 2, 3, 4, 5, 6}).MustView([]int64{2, 3}, true)
	for name, file := range map[string]string{"prompt_learner.ctx": "repro.safetensors", "state_dict.ctx": "official.safetensors"} {
		p := filepath.Join(dir, file)
		require.NoError(t, torchmods.SaveTensors(p, []string{name, "prompt_learner.meta_net.linear1.weight"}, []*ts.Tensor{ctx, ctx}, "", nil))
		got, err := ReadContext(p)
		require.NoError(t, err, file)
		assert.Equal(t, []float64{1, 2, 3, 4, 5, 6}, got.Float64Values(), file)
	}
	p := filepath.Join(dir, "csc.safetensors")
	require.NoError(t, torchmods.SaveTensors(p, []string{"prompt_learner.ctx"}, []*ts.Tensor{ctx.MustView([]int64{1, 2, 3}, false)}, "", nil))
	_, err := ReadContext(p)
	assert.ErrorContains(t, err, "class-specific context")
	p = filepath.Join(dir, "none.safetensors")
	require.NoError(t, torchmods.SaveTensors(p, []string{"w"}, []*ts.Tensor{ctx}, "", nil))
	_, err = ReadContext(p)
	assert.ErrorContains(t, err, "no learned context")
}
