package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

func TestRotaryParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	parity(t, ref, "rotary", func(Path) {}, func(x *ts.Tensor) *ts.Tensor { return Rotary{HeadDim: 8, Base: 10000}.Apply(x, ref["rotary.pos"]) })
}

func TestSinCos2DMatchesMAE(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/layer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	got, err := SinCos2D(8, 4, true)
	require.NoError(t, err)
	assert.Equal(t, []int64{17, 8}, got.MustSize())
	testutil.Close(t, got, ref["sincos2d.y"], 1e-6)
	// Row 1 is patch (h=0, w=0): sin(0)=0 and cos(0)=1 in each half.
	assert.Equal(t, []float64{0, 0, 1, 1, 0, 0, 1, 1}, got.MustSelect(0, 1, false).Float64Values())
	_, err = SinCos2D(6, 4, false)
	assert.ErrorContains(t, err, "multiple of 4")
}

func TestT5BucketsMatchHF(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/layer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	rel := ref["t5.rel"].Int64Values()
	bi, uni := ref["t5.bucket_bi"].Int64Values(), ref["t5.bucket_uni"].Int64Values()
	for i, r := range rel {
		require.Equal(t, bi[i], T5Bucket(r, true, 32, 128), "bidirectional, relative position %d", r)
		require.Equal(t, uni[i], T5Bucket(r, false, 32, 128), "unidirectional, relative position %d", r)
	}
	store := NewStore(gotch.CPU)
	defer store.Drop()
	b := NewT5Bias(store.Root().Sub("t5bias"), T5BiasOptions{Heads: 4, Buckets: 32, MaxDistance: 128, Bidirectional: true})
	_, err = store.Load(map[string]*ts.Tensor{"t5bias.relative_attention_bias.weight": ref["t5bias.relative_attention_bias.weight"]}, true)
	require.NoError(t, err)
	testutil.Close(t, b.Forward(5, 7), ref["t5bias.y"], 1e-7)
}
