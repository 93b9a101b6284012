package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func TestDropout(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(4)
	x := ts.MustOnes([]int64{10000}, gotch.Float, gotch.CPU)
	assert.Same(t, x, Dropout(x, 0.3, false), "identity in evaluation")
	zeros := 0
	for _, v := range Dropout(x, 0.3, true).Float64Values() {
		switch v {
		case 0:
			zeros++
		case float64(float32(1 / 0.7)):
		default:
			t.Fatalf("value %v: kept elements are scaled by 1/(1-p)", v)
		}
	}
	assert.InDelta(t, 3000, zeros, 200)
}

func TestDropPath(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(3)
	x := ts.MustOnes([]int64{4000, 3}, gotch.Float, gotch.CPU)
	assert.Same(t, x, DropPath(x, 0.25, false), "identity in evaluation")
	assert.Same(t, x, DropPath(x, 0, true), "identity at p = 0")
	y := DropPath(x, 0.25, true).Float64Values()
	kept := 0
	for i := 0; i < 4000; i++ {
		row := y[3*i : 3*i+3]
		switch row[0] {
		case 0:
		case float64(float32(1 / 0.75)): // float32 tensors
			kept++
		default:
			t.Fatalf("row %d = %v: a sample is dropped whole or scaled by 1/keep", i, row)
		}
		assert.Equal(t, row[0], row[1], "row %d drops as one", i)
		assert.Equal(t, row[0], row[2], "row %d drops as one", i)
	}
	assert.InDelta(t, 3000, kept, 150, "about 75%% of samples kept")
}
