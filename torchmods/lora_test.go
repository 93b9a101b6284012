package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

func TestLoRAParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	var lora *LoRALinear
	parity(t, ref, "lora", func(p Path) { lora = NewLoRALinear(p, LoRAOptions{In: 6, Out: 5, Rank: 4, Alpha: 8}) }, func(x *ts.Tensor) *ts.Tensor { return lora.Forward(x, true) })
}

func TestLoRAStartsAtBaseAndMergesExactly(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	l := NewLoRALinear(store.Root(), LoRAOptions{In: 6, Out: 5, Rank: 2})
	x := ts.MustRandn([]int64{3, 6}, gotch.Float, gotch.CPU)
	testutil.Close(t, l.Forward(x, false), l.Base.Forward(x), 1e-7, "B starts at zero")
	assert.False(t, l.Base.Weight.MustRequiresGrad(), "base frozen")
	assert.True(t, l.A.MustRequiresGrad())

	ts.NoGrad(func() { l.B.MustNormal_(0, 0.5) })
	before := l.Forward(x, false)
	w0 := l.Base.Weight.Float64Values()
	l.Merge()
	l.Merge() // idempotent
	testutil.Close(t, l.Forward(x, false), before, 1e-6, "merged output equals the unmerged one")
	l.Unmerge()
	testutil.Close(t, l.Forward(x, false), before, 1e-6)
	assert.InDeltaSlice(t, w0, l.Base.Weight.Float64Values(), 1e-6, "unmerge restores the base weight")
}
