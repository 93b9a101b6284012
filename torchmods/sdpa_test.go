package torchmods

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/torchinfo"
)

// The fused op is chosen exactly when the prepared libtorch has it.
func TestAttentionPathFollowsTheManifest(t *testing.T) {
	m, err := torchinfo.ReadManifest()
	require.NoError(t, err)
	if t.Setenv("REPRO_ATTENTION", ""); FusedAttention() == slices.Contains(m.Stubbed, fusedOp) {
		t.Fatalf("FusedAttention() = %v with %s stubbed = %v", FusedAttention(), fusedOp, slices.Contains(m.Stubbed, fusedOp))
	}
}

// The fused path gives the matmul path's outputs and gradients within
// 1e-5, for Attention and MultiheadAttention, with no mask, a bool mask
// (causal) and an additive mask. It runs where libtorch has the fused op
// (2.x); Debian's 1.13 stubs it, so there the test says so and skips.
func TestFusedAttentionMatchesTheMatmulPath(t *testing.T) {
	if !FusedAttention() {
		t.Skipf("this libtorch has no fused %s (stubbed at preparation), so attention always takes the matmul path; the fused path's parity runs on libtorch 2.x", fusedOp)
	}
	sc := ts.NewScope()
	defer sc.Close()
	devices := []gotch.Device{gotch.CPU}
	if gotch.CUDA.IsAvailable() { // the flash and memory-efficient kernels
		devices = append(devices, gotch.CudaBuilder(0))
	}
	for _, dev := range devices {
		fusedMatchesMatmul(t, dev)
	}
}

func fusedMatchesMatmul(t *testing.T, dev gotch.Device) {
	const b, l, d, h = 2, 5, 16, 4
	causal := ts.MustOnes([]int64{l, l}, gotch.Bool, dev).MustTriu(1, true) // true above the diagonal: not allowed
	additive := ts.MustRandn([]int64{1, 1, l, l}, gotch.Float, dev)
	for _, c := range []struct {
		name string
		mask *ts.Tensor
	}{{"no mask", nil}, {"causal bool mask", causal}, {"additive mask", additive}} {
		for _, layer := range []string{"Attention", "MultiheadAttention"} {
			run := func(math bool) (out []float64, grads [][]float64) {
				mathOnly = math
				defer func() { mathOnly = false }()
				ts.ManualSeed(3)
				store := NewStore(dev)
				defer store.Drop()
				x := ts.MustRandn([]int64{b, l, d}, gotch.Float, dev)
				x.MustRequiresGrad_(true)
				var y *ts.Tensor
				if layer == "Attention" {
					a := NewAttention(store.Root(), AttentionOptions{Dim: d, Heads: h})
					y = a.Forward(AttentionInput{Query: x, Mask: c.mask}, false)
				} else {
					a := NewMultiheadAttention(store.Root(), MultiheadAttentionOptions{Dim: d, Heads: h})
					y = a.Forward(x, x, x, c.mask, false)
				}
				require.NoError(t, y.MustSum(gotch.Float, false).Backward())
				for _, p := range store.Params() {
					grads = append(grads, p.Tensor.MustGrad(false).Float64Values())
				}
				grads = append(grads, x.MustGrad(false).Float64Values())
				return y.Float64Values(), grads
			}
			wantOut, wantGrads := run(true)
			gotOut, gotGrads := run(false)
			require.Less(t, sliceRelErr(gotOut, wantOut), 1e-5, "%s, %s, %s: output", dev.Name, layer, c.name)
			for i := range wantGrads {
				require.Less(t, sliceRelErr(gotGrads[i], wantGrads[i]), 1e-5, "%s, %s, %s: gradient %d", dev.Name, layer, c.name, i)
			}
		}
	}
}

// sliceRelErr is max|got-want| / max|want|.
func sliceRelErr(got, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, scale float64
	for i := range want {
		diff, scale = math.Max(diff, math.Abs(got[i]-want[i])), math.Max(scale, math.Abs(want[i]))
	}
	return diff / math.Max(scale, 1e-30)
}
