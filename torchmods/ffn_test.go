package torchmods

import (
	"testing"

	"github.com/sugarme/gotch/ts"
)

func TestMLPParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	var mlp *MLP
	parity(t, ref, "mlp", func(p Path) { mlp = NewMLP(p, MLPOptions{In: 6, Hidden: 12, Out: 5, Act: GELU, Dropout: 0}) }, func(x *ts.Tensor) *ts.Tensor { return mlp.Forward(x, true) })
}

func TestGLUParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	var geglu *GEGLU
	parity(t, ref, "geglu", func(p Path) { geglu = NewGEGLU(p, GLUOptions{In: 6, Hidden: 7}) }, func(x *ts.Tensor) *ts.Tensor { return geglu.Forward(x) })
	var swiglu *SwiGLU
	parity(t, ref, "swiglu", func(p Path) { swiglu = NewSwiGLU(p, GLUOptions{In: 6, Hidden: 10}) }, func(x *ts.Tensor) *ts.Tensor { return swiglu.Forward(x) })
}

func TestActivationParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "layer_parity.safetensors")
	for c, act := range map[string]Activation{"act_gelu_tanh": GELUTanh, "act_quick_gelu": QuickGELU, "act_silu": SiLU} {
		parity(t, ref, c, func(Path) {}, act.Apply)
	}
}
