package causal

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
)

// An objective that goes non-finite stops the fit with an error naming the
// iteration; no estimate is returned as if it were one.
func TestNonFiniteObjectiveIsAnError(t *testing.T) {
	x := [][][]float64{{{1e160, 2}, {3, -1e160}, {5, 6}}}
	o := DefaultSolver()
	o.Iters = 5
	est, err := Fit(x, o, gotch.CPU)
	require.ErrorContains(t, err, "iteration 1: the objective is not finite")
	require.Nil(t, est)
}
