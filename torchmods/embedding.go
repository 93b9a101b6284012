package torchmods

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Embedding maps ids to rows of weight [Num, Dim] (PyTorch's init, N(0, 1)).
type Embedding struct {
	Weight   *ts.Tensor
	Num, Dim int64
	// PaddingIdx, when not -1, is the row that gets no gradient, as
	// nn.Embedding(padding_idx=...) (BERT's [PAD]).
	PaddingIdx int64
}

// EmbeddingOptions configures NewEmbedding. Learned positional embeddings
// are an Embedding over position ids.
type EmbeddingOptions struct{ Num, Dim int64 }

// NewEmbedding registers weight under p.
func NewEmbedding(p Path, o EmbeddingOptions) *Embedding {
	return &Embedding{Weight: p.New("weight", []int64{o.Num, o.Dim}, Normal(1), false), Num: o.Num, Dim: o.Dim, PaddingIdx: -1}
}

// Forward looks up ids (int64, any shape), giving [..., Dim].
func (e *Embedding) Forward(ids *ts.Tensor) *ts.Tensor {
	if ids.DType() != gotch.Int64 {
		panic(fmt.Errorf("Embedding: ids must be int64, got %v", ids.DType()))
	}
	if ids.Numel() > 0 {
		lo, hi := ids.MustMin(false).Int64Values()[0], ids.MustMax(false).Int64Values()[0]
		if lo < 0 || hi >= e.Num {
			panic(fmt.Errorf("Embedding: id %d out of range [0, %d)", map[bool]int64{true: lo, false: hi}[lo < 0], e.Num))
		}
	}
	return ts.MustEmbedding(e.Weight, ids, e.PaddingIdx, false, false)
}
