package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func TestEmbeddingParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	var emb *Embedding
	parity(t, ref, "embedding", func(p Path) { emb = NewEmbedding(p, EmbeddingOptions{Num: 10, Dim: 4}) }, func(x *ts.Tensor) *ts.Tensor { return emb.Forward(x) })
}

func TestEmbeddingRefusesBadIDs(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	e := NewEmbedding(store.Root(), EmbeddingOptions{Num: 10, Dim: 4})
	err := Try(func() { e.Forward(ts.MustOfSlice([]int64{3, 10})) })
	assert.ErrorContains(t, err, "id 10 out of range [0, 10)")
	err = Try(func() { e.Forward(ts.MustOfSlice([]float32{1})) })
	assert.ErrorContains(t, err, "ids must be int64")
}
