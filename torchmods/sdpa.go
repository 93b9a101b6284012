package torchmods

import (
	"os"
	"sync"
	"sync/atomic"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/torchinfo"
)

// Attention's core, softmax(q kᵀ/√d + mask) v, has two implementations:
// the matmul/softmax path written here, and libtorch's fused
// scaled_dot_product_attention (2.0 and later; flash and memory-efficient
// kernels on CUDA), which PyTorch's own modules use. The fused op is used
// when the prepared libtorch has it (it is stubbed against Debian's 1.13)
// and nothing asks for what it cannot do the same way: an additive bias
// beside a mask, or dropout while training (its dropout draws from
// libtorch's generator in its own order). The choice is made once, from
// the preparation manifest; REPRO_ATTENTION=math forces the matmul path.

const fusedOp = "atg_scaled_dot_product_attention"

var fused = sync.OnceValue(func() bool {
	if os.Getenv("REPRO_ATTENTION") == "math" {
		return false
	}
	m, err := torchinfo.ReadManifest()
	return err == nil && m.HasOp(fusedOp)
})

// FusedAttention says whether attention runs libtorch's fused
// scaled_dot_product_attention (else the matmul/softmax path); repro info
// prints it.
func FusedAttention() bool { return fused() }

// mathDepth counts the MathAttention calls under way: while it is not 0,
// useFused says no.
var mathDepth atomic.Int32

// MathAttention runs f with every attention on the matmul path. A
// computation that differentiates through attention twice needs it:
// gradients taken with create_graph and then differentiated again (MAML's
// second order, metapt), because libtorch's fused kernels have no double
// backward ("derivative for
// aten::_scaled_dot_product_flash_attention_for_cpu_backward is not
// implemented"); the forward pass is what must run inside f, since the op
// is chosen there. Like PyTorch's sdpa_kernel(SDPBackend.MATH) it holds
// for the whole process while f runs, so attention on other goroutines
// meanwhile takes the matmul path too, which agrees with the fused one
// within 1e-5. On a libtorch without the fused op it changes nothing.
func MathAttention(f func()) {
	mathDepth.Add(1)
	defer mathDepth.Add(-1)
	f()
}

// useFused is whether an attention call goes to the fused op.
func useFused(bias *ts.Tensor, dropout float64, train bool) bool {
	return mathDepth.Load() == 0 && fused() && bias == nil && (dropout == 0 || !train)
}

// fusedSDPA is scaled_dot_product_attention on unscaled q [..., L, d],
// k and v [..., S, d]; mask as this package takes it (a bool mask true
// where attention is NOT allowed, or a float mask added to the scores),
// broadcastable to [..., L, S].
func fusedSDPA(q, k, v, mask *ts.Tensor) *ts.Tensor {
	attnMask := ts.None
	if mask != nil {
		attnMask = mask
		if mask.DType() == gotch.Bool { // the fused op's bool mask is true where attention IS allowed
			attnMask = mask.MustLogicalNot(false)
		}
	}
	return ts.MustScaledDotProductAttention(q, k, v, attnMask, 0, false, nil)
}
