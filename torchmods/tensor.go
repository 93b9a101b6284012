package torchmods

import (
	"fmt"
	"reflect"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Element is a Go type that FromSlice copies into a tensor of the dtype
// beside it: float32 (Float), float64 (Double), int64 (Int64), int32 (Int),
// int16, int8, uint8 and bool.
type Element interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~int16 | ~int8 | ~uint8 | ~bool
}

// FromSlice copies data into a new tensor of the given shape (row-major)
// on dev. A shape with no dimensions is a scalar of one value. It panics,
// naming the shape, when the data do not fill the shape exactly (callers
// turn that into an error with Try). It exists so that paper code need not
// chain MustOfSlice, MustView and MustTo for every batch it uploads.
func FromSlice[T Element](data []T, shape []int64, dev gotch.Device) *ts.Tensor {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Errorf("FromSlice: shape %v has a negative dimension", shape))
		}
		n *= d
	}
	if n != int64(len(data)) {
		panic(fmt.Errorf("FromSlice: %d values for shape %v, which holds %d", len(data), shape, n))
	}
	if n == 0 {
		dt, err := gotch.GoKind2DType(reflect.TypeFor[T]().Kind())
		if err != nil {
			panic(err)
		}
		return ts.MustEmpty(shape, dt, dev)
	}
	t := ts.MustOfSlice(data) // [n]
	if len(shape) == 0 {
		t = t.MustSqueeze(true) // gotch's view takes no empty shape
	} else {
		t = t.MustView(shape, true)
	}
	if dev != gotch.CPU {
		t = t.MustTo(dev, true)
	}
	return t
}

func mustLastDim(layer string, x *ts.Tensor, want int64) {
	shape := x.MustSize()
	if len(shape) == 0 || shape[len(shape)-1] != want {
		panic(fmt.Errorf("%s: input shape %v, want last dimension %d", layer, shape, want))
	}
}
