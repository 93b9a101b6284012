package torchmods

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
)

func TestViTLayerDecayAsMAE(t *testing.T) {
	store := NewStore(gotch.CPU)
	defer store.Drop()
	root := store.Root()
	for _, name := range []string{"cls_token", "pos_embed"} {
		root.New(name, []int64{1, 2}, Const(0), false)
	}
	NewLinear(root.Sub("patch_embed").Sub("proj"), LinearOptions{In: 2, Out: 2})
	for _, b := range []string{"0", "1", "11"} {
		NewLinear(root.Sub("blocks").Sub(b).Sub("mlp"), LinearOptions{In: 2, Out: 2})
	}
	NewLinear(root.Sub("head"), LinearOptions{In: 2, Out: 2})
	s := ViTLayerDecay(store, 12, 0.75) // ViT-B: 12 blocks, MAE's layer decay 0.75 (B uses 0.65)
	pow := func(e float64) float64 { return math.Pow(0.75, e) }
	assert.Equal(t, pow(13), s["cls_token"])
	assert.Equal(t, pow(13), s["patch_embed.proj.weight"])
	assert.Equal(t, pow(12), s["blocks.0.mlp.weight"])
	assert.Equal(t, pow(11), s["blocks.1.mlp.bias"])
	assert.Equal(t, pow(1), s["blocks.11.mlp.weight"])
	assert.Equal(t, 1.0, s["head.weight"])
}
