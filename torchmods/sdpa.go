package torchmods

import (
	"os"
	"sync"

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

// mathOnly makes useFused say no: the parity tests compare the two paths
// in one process.
var mathOnly bool

// useFused is whether an attention call goes to the fused op.
func useFused(bias *ts.Tensor, dropout float64, train bool) bool {
	return !mathOnly && fused() && bias == nil && (dropout == 0 || !train)
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
