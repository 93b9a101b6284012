package torchmods

import (
	"fmt"
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
				if math {
					mathDepth.Add(1)
					defer mathDepth.Add(-1)
				}
				ts.ManualSeed(3)
				store := NewStore(dev)
				defer store.Drop()
				x := ts.MustRandn([]int64{b, l, d}, gotch.Float, dev)
				x.MustRequiresGrad_(true)
				var y *ts.Tensor
				if layer == "Attention" {
					a := NewAttention(store.Root(), AttentionOptions{Dim: d, Heads: h, Names: LlamaNames})
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

// LlamaForCausalLM's attention on the fused op gives the matmul path's
// logits and every gradient within 1e-5: causal, and with Mistral's
// sliding window, for a batch with no padding and a right-padded one
// (whose padding keys are masked but no query row is all masked). A
// left-padded batch has fully masked rows, which send the CPU back to the
// matmul path (fusedFor): libtorch 2.6's CPU kernel gets their gradients
// wrong. TestLlamaParity covers that batch against PyTorch.
func TestLlamaFusedAttentionMatchesTheMatmulPath(t *testing.T) {
	if !FusedAttention() {
		t.Skipf("this libtorch has no fused %s (stubbed at preparation)", fusedOp)
	}
	sc := ts.NewScope()
	defer sc.Close()
	for _, window := range []int64{0, 3} {
		c := LlamaConfig{ModelType: "llama", VocabSize: 50, HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
			NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 8, RMSNormEps: 1e-5, Rope: LlamaRope{Type: "default", Theta: 10000},
			InitializerRange: 0.2, BOSTokenID: 1, PadTokenID: -1, EOSTokenIDs: []int64{2}, SlidingWindow: window}
		ids := FromSlice([]int64{3, 9, 4, 17, 8, 30, 2, 11, 5, 6, 7, 12}, []int64{2, 6}, gotch.CPU)
		rightPadded := FromSlice([]int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, []int64{2, 6}, gotch.CPU)
		for _, mask := range []*ts.Tensor{nil, rightPadded} {
			run := func(math bool) (logits []float64, g map[string][]float64) {
				if math {
					mathDepth.Add(1)
					defer mathDepth.Add(-1)
				}
				ts.ManualSeed(5)
				store := NewStore(gotch.CPU)
				defer store.Drop()
				m := NewLlamaForCausalLM(store.Root(), c, LlamaBuild{})
				out := m.Forward(LlamaInput{IDs: ids, Mask: mask}, true)
				require.NoError(t, out.MustSum(gotch.Float, false).Backward())
				g = map[string][]float64{}
				for _, p := range store.Params() {
					g[p.Name] = p.Tensor.MustGrad(false).Float64Values()
				}
				return out.Float64Values(), g
			}
			wantLogits, wantGrads := run(true)
			gotLogits, gotGrads := run(false)
			name := fmt.Sprintf("window %d, padded %v", window, mask != nil)
			require.Less(t, sliceRelErr(gotLogits, wantLogits), 1e-5, "%s: logits", name)
			require.Len(t, gotGrads, len(wantGrads))
			for p, want := range wantGrads {
				require.Less(t, sliceRelErr(gotGrads[p], want), 1e-5, "%s: gradient of %s", name, p)
			}
		}
	}
}

// On the CPU a mask with a fully masked row (left padding) takes the
// matmul path, and one without takes the fused op.
func TestLlamaFusedFallsBackOnFullyMaskedRows(t *testing.T) {
	if !FusedAttention() {
		t.Skipf("this libtorch has no fused %s (stubbed at preparation)", fusedOp)
	}
	sc := ts.NewScope()
	defer sc.Close()
	a := &LlamaAttention{}
	left := llamaMask(FromSlice([]int64{0, 1, 1, 1, 1, 1}, []int64{2, 3}, gotch.CPU), 2, 3, 0, 0, gotch.Float, gotch.CPU)
	right := llamaMask(FromSlice([]int64{1, 1, 0, 1, 1, 1}, []int64{2, 3}, gotch.CPU), 2, 3, 0, 0, gotch.Float, gotch.CPU)
	require.False(t, a.fusedFor(left, true), "left padding: a fully masked row")
	require.True(t, a.fusedFor(right, true), "right padding: no fully masked row")
	require.True(t, a.fusedFor(nil, true), "no mask")
}

// MathAttention turns the fused op off while its function runs, nested
// calls included, and only then.
func TestMathAttentionIsScoped(t *testing.T) {
	MathAttention(func() {
		require.False(t, useFused(nil, 0, false))
		MathAttention(func() { require.False(t, useFused(nil, 0, false)) })
		require.False(t, useFused(nil, 0, false), "after a nested call")
	})
	require.Equal(t, FusedAttention(), useFused(nil, 0, false), "after MathAttention")
}
