package torchmods

import (
	"fmt"

	"github.com/sugarme/gotch/ts"
)

// LoRALinear is a frozen Linear plus a trainable low-rank update (Hu et
// al. 2021, as PEFT implements it): y = x Wᵀ + b + dropout(x) Aᵀ Bᵀ · alpha/r,
// with A [r, in] initialised like a Linear weight and B [out, r] zero, so
// training starts from the base model. Names: weight, bias, lora_A.weight,
// lora_B.weight.
type LoRALinear struct {
	Base        *Linear
	A, B        *ts.Tensor
	Rank        int64
	Alpha, Drop float64
	merged      bool
}

// LoRAOptions configures a LoRA adapter.
type LoRAOptions struct {
	In, Out int64
	Rank    int64
	Alpha   float64 // alpha/Rank scales the update; 0 means Alpha = Rank
	Dropout float64
	NoBias  bool
}

// NewLoRALinear registers the frozen base weight and the adapters under p.
func NewLoRALinear(p Path, o LoRAOptions) *LoRALinear {
	in, out := o.In, o.Out
	if o.Rank <= 0 {
		panic(fmt.Errorf("LoRALinear: rank must be positive, got %d", o.Rank))
	}
	if o.Alpha == 0 {
		o.Alpha = float64(o.Rank)
	}
	l := &LoRALinear{Base: NewLinear(p, LinearOptions{In: in, Out: out, NoBias: o.NoBias}), Rank: o.Rank, Alpha: o.Alpha, Drop: o.Dropout}
	l.Base.Weight.MustRequiresGrad_(false)
	if l.Base.Bias != nil {
		l.Base.Bias.MustRequiresGrad_(false)
	}
	l.A = p.Sub("lora_A").New("weight", []int64{o.Rank, in}, FanInUniform(in), false)
	l.B = p.Sub("lora_B").New("weight", []int64{out, o.Rank}, Const(0), false)
	return l
}

func (l *LoRALinear) scale() float64 { return l.Alpha / float64(l.Rank) }

// Forward applies base plus update (only the base once merged).
func (l *LoRALinear) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	y := l.Base.Forward(x)
	if l.merged {
		return y
	}
	u := Dropout(x, l.Drop, train).MustMatmul(l.A.MustT(false), false).MustMatmul(l.B.MustT(false), false)
	return y.MustAdd(u.MustMulScalar(ts.FloatScalar(l.scale()), true), true)
}

// Delta is the update alone, dropout(x) Aᵀ Bᵀ · alpha/r, in x's dtype
// (A and B converted for the call when they are stored in another): what
// LlamaInput.Adapt adds to a frozen projection's output. It ignores Merge.
func (l *LoRALinear) Delta(x *ts.Tensor, train bool) *ts.Tensor {
	a, b := l.A, l.B
	if a.DType() != x.DType() {
		a, b = a.MustTotype(x.DType(), false), b.MustTotype(x.DType(), false)
	}
	u := Dropout(x, l.Drop, train).MustMatmul(a.MustT(false), false).MustMatmul(b.MustT(false), false)
	return u.MustMulScalar(ts.FloatScalar(l.scale()), true)
}

// Merge folds B·A·alpha/r into the base weight, for inference at base cost.
func (l *LoRALinear) Merge() { l.fold(1) }

// Unmerge takes the update back out of the base weight.
func (l *LoRALinear) Unmerge() { l.fold(-1) }

func (l *LoRALinear) fold(sign float64) {
	if l.merged == (sign > 0) {
		return
	}
	ts.NoGrad(func() {
		d := l.B.MustMatmul(l.A, false).MustMulScalar(ts.FloatScalar(sign*l.scale()), true)
		l.Base.Weight.MustAdd_(d)
		d.MustDrop()
	})
	l.merged = sign > 0
}
