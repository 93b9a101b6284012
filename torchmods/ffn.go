package torchmods

import (
	"fmt"

	"github.com/sugarme/gotch/ts"
)

// Activation names a pointwise non-linearity.
type Activation string

// The activations torchmods knows.
const (
	ReLU      Activation = "relu"
	GELU      Activation = "gelu"      // exact, erf-based
	GELUTanh  Activation = "gelu_tanh" // tanh approximation
	QuickGELU Activation = "quick_gelu"
	SiLU      Activation = "silu"
)

// Apply applies the activation.
func (a Activation) Apply(x *ts.Tensor) *ts.Tensor {
	switch a {
	case ReLU, "":
		return x.MustRelu(false)
	case GELU:
		return x.MustGelu("none", false)
	case GELUTanh:
		return x.MustGelu("tanh", false)
	case QuickGELU: // x * sigmoid(1.702 x), as OpenAI's CLIP
		return x.MustMul(x.MustMulScalar(ts.FloatScalar(1.702), false).MustSigmoid(true), false)
	case SiLU:
		return x.MustSilu(false)
	}
	panic(fmt.Errorf("torchmods: unknown activation %q", string(a)))
}

// MLP is timm's Mlp: fc2(drop(act(fc1(x)))), names fc1 and fc2.
type MLP struct {
	FC1, FC2 *Linear
	Act      Activation
	Drop     float64
}

// MLPOptions configures NewMLP.
type MLPOptions struct {
	In, Hidden, Out int64
	Act             Activation
	Dropout         float64
}

// NewMLP registers fc1 [Hidden, In] and fc2 [Out, Hidden] under p.
func NewMLP(p Path, o MLPOptions) *MLP {
	return &MLP{
		FC1: NewLinear(p.Sub("fc1"), LinearOptions{In: o.In, Out: o.Hidden}),
		FC2: NewLinear(p.Sub("fc2"), LinearOptions{In: o.Hidden, Out: o.Out}),
		Act: o.Act, Drop: o.Dropout,
	}
}

// Forward applies the MLP.
func (m *MLP) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	h := Dropout(m.Act.Apply(m.FC1.Forward(x)), m.Drop, train)
	return Dropout(m.FC2.Forward(h), m.Drop, train)
}

// GEGLU is the gated GELU of Shazeer (2020) as diffusers writes it: proj
// maps to 2*hidden, split into (h, gate), output h * gelu(gate).
type GEGLU struct{ Proj *Linear }

// GLUOptions configures the gated feed-forwards GEGLU and SwiGLU.
type GLUOptions struct{ In, Hidden int64 }

// NewGEGLU registers proj [2*Hidden, In] under p.
func NewGEGLU(p Path, o GLUOptions) *GEGLU {
	return &GEGLU{Proj: NewLinear(p.Sub("proj"), LinearOptions{In: o.In, Out: 2 * o.Hidden})}
}

// Forward gives [..., hidden].
func (g *GEGLU) Forward(x *ts.Tensor) *ts.Tensor {
	parts := g.Proj.Forward(x).MustChunk(2, -1, true)
	return parts[0].MustMul(parts[1].MustGelu("none", false), false)
}

// SwiGLU is Llama's MLP: down_proj(silu(gate_proj(x)) * up_proj(x)), without biases.
type SwiGLU struct{ Gate, Up, Down *Linear }

// NewSwiGLU registers gate_proj, up_proj and down_proj under p (no biases).
func NewSwiGLU(p Path, o GLUOptions) *SwiGLU {
	lin := func(name string, in, out int64) *Linear {
		return NewLinear(p.Sub(name), LinearOptions{In: in, Out: out, NoBias: true})
	}
	return &SwiGLU{Gate: lin("gate_proj", o.In, o.Hidden), Up: lin("up_proj", o.In, o.Hidden), Down: lin("down_proj", o.Hidden, o.In)}
}

// Forward applies the gated feed-forward.
func (s *SwiGLU) Forward(x *ts.Tensor) *ts.Tensor {
	return s.Down.Forward(s.Gate.Forward(x).MustSilu(true).MustMul(s.Up.Forward(x), true))
}
