package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func TestFromSlice(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := FromSlice([]float32{1, 2, 3, 4, 5, 6}, []int64{2, 3}, gotch.CPU)
	assert.Equal(t, []int64{2, 3}, x.MustSize())
	assert.Equal(t, gotch.Float, x.DType())
	assert.Equal(t, []float64{4, 5, 6}, x.MustSelect(0, 1, false).Float64Values(), "row-major")

	for _, c := range []struct {
		t    *ts.Tensor
		want gotch.DType
	}{
		{FromSlice([]float64{1, 2}, []int64{2}, gotch.CPU), gotch.Double},
		{FromSlice([]int64{1, 2}, []int64{2, 1}, gotch.CPU), gotch.Int64},
		{FromSlice([]int32{1, 2}, []int64{2}, gotch.CPU), gotch.Int},
		{FromSlice([]uint8{1, 2}, []int64{2}, gotch.CPU), gotch.Uint8},
		{FromSlice([]bool{true, false}, []int64{2}, gotch.CPU), gotch.Bool},
	} {
		assert.Equal(t, c.want, c.t.DType())
	}
	type label int64
	y := FromSlice([]label{7, 8, 9}, []int64{3}, gotch.CPU)
	assert.Equal(t, []int64{7, 8, 9}, y.Int64Values(), "named element types")
	assert.Equal(t, []bool{true, false}, FromSlice([]bool{true, false}, []int64{2}, gotch.CPU).Vals().([]bool))

	scalar := FromSlice([]float32{2.5}, []int64{}, gotch.CPU)
	assert.Empty(t, scalar.MustSize())
	assert.Equal(t, []float64{2.5}, scalar.Float64Values())
	empty := FromSlice([]int64{}, []int64{0, 3}, gotch.CPU)
	assert.Equal(t, []int64{0, 3}, empty.MustSize())
	assert.Equal(t, gotch.Int64, empty.DType())

	assert.ErrorContains(t, Try(func() { FromSlice([]float32{1, 2, 3, 4, 5}, []int64{2, 3}, gotch.CPU) }), "FromSlice: 5 values for shape [2 3], which holds 6")
	assert.ErrorContains(t, Try(func() { FromSlice([]float32{1, 2}, []int64{-1, 2}, gotch.CPU) }), "shape [-1 2] has a negative dimension")
}
