package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func TestShapeMistakeIsAnErrorNotACrash(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	l := NewLinear(store.Root(), LinearOptions{In: 3, Out: 2})
	err := Try(func() { l.Forward(ts.MustOnes([]int64{4, 5}, gotch.Float, gotch.CPU)) })
	assert.ErrorContains(t, err, "Linear: input shape [4 5], want last dimension 3")
	// A libtorch error inside a Must op is recovered too.
	err = Try(func() {
		ts.MustOnes([]int64{2, 3}, gotch.Float, gotch.CPU).MustMm(ts.MustOnes([]int64{2, 3}, gotch.Float, gotch.CPU), false)
	})
	assert.Error(t, err)
}
