package testutil

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func vec(v ...float32) *ts.Tensor { return ts.MustOfSlice(v) }

func TestRelErr(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	assert.Equal(t, 0.25, RelErr(vec(1, 2.5), vec(1, 2)), "max|diff| 0.5 over max|want| 2")
	assert.Equal(t, 0.0, RelErr(vec(3, -4), vec(3, -4)))
	assert.Equal(t, 0.5/1e-12, RelErr(vec(0.5), vec(0)), "the scale is at least 1e-12")
	assert.True(t, math.IsInf(RelErr(vec(1, 2), vec(1, 2, 3)), 1), "shapes differ")
	assert.True(t, math.IsInf(RelErr(nil, vec(1)), 1))
	assert.True(t, math.IsInf(RelErr(ts.NewTensor(), vec(1)), 1), "undefined")
}

// recorder is a testing.TB that keeps the failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestParityNamesEachInconsistency(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	frozen := ts.MustOnes([]int64{2}, gotch.Float, gotch.CPU)
	got := map[string]*ts.Tensor{
		"a":        vec(1, 2),
		"b":        vec(1, 2),
		"close":    vec(1, 2.000001),
		"far":      vec(1, 3),
		"shape":    vec(1, 2),
		"frozen":   frozen.MustGrad(false), // undefined: no grad was ever made
		"nil":      nil,
		"goOnly":   vec(1),
		"inBothNo": ts.NewTensor(),
	}
	want := map[string]*ts.Tensor{
		"a":         vec(1, 2),
		"b":         vec(1, 2),
		"close":     vec(1, 2),
		"far":       vec(1, 2),
		"shape":     vec(1, 2, 3),
		"nil":       vec(1),
		"refOnly":   vec(1),
		"frozenToo": vec(1),
	}
	r := &recorder{TB: t}
	n := Parity(r, got, want, 1e-5, "case %d", 3)
	assert.Equal(t, 4, n, "a, b, close and far compared")
	assert.ElementsMatch(t, []string{
		"case 3: far: relative error 0.5, want < 1e-05",
		"case 3: shape: shape [2] in Go, [3] in the fixture",
		"case 3: nil: in the fixture but undefined in Go",
		"case 3: goOnly: defined in Go but absent from the fixture",
		"case 3: refOnly: in the fixture but undefined in Go",
		"case 3: frozenToo: in the fixture but undefined in Go",
	}, r.errs)

	r = &recorder{TB: t}
	assert.Equal(t, 0, Parity(r, map[string]*ts.Tensor{"frozen": frozen.MustGrad(false)}, map[string]*ts.Tensor{}, 1e-5))
	assert.Empty(t, r.errs, "undefined in Go and absent from the fixture is consistent")
}

func TestSub(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	a, b := vec(1), vec(2)
	got := Sub(map[string]*ts.Tensor{"mlp.grad.fc1.weight": a, "mlp.grad.x": b, "mlp.y": vec(3), "other.grad.x": vec(4)}, "mlp.grad.")
	assert.Equal(t, map[string]*ts.Tensor{"fc1.weight": a, "x": b}, got)
}

func TestClose(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	assert.True(t, Close(t, vec(1, 2), vec(1, 2), 1e-9))
	r := &recorder{TB: t}
	assert.False(t, Close(r, vec(1, 3), vec(1, 2), 1e-5, "x"))
	assert.Len(t, r.errs, 1)
}

func TestCloseFloats(t *testing.T) {
	r := &recorder{TB: t}
	assert.InDelta(t, 0.5e-5, CloseFloats(r, []float64{2, -1}, []float64{2, -1.00001}, 1e-5, "ok"), 1e-12)
	assert.Empty(t, r.errs)
	CloseFloats(r, []float64{2, 1}, []float64{2, 1.1}, 1e-5, "far")
	CloseFloats(r, []float64{2, 1}, []float64{math.NaN(), 1}, 1e-5, "nan")
	require.Len(t, r.errs, 2)
	assert.Contains(t, r.errs[0], "far: element 1")
	assert.Contains(t, r.errs[1], "nan: element 0")
}
