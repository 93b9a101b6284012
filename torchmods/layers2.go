package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// RMSNorm is Llama's (HF LlamaRMSNorm): x / sqrt(mean(x²) + eps) * weight,
// computed in float32 whatever the input dtype.
type RMSNorm struct {
	Weight *ts.Tensor
	Dim    int64
	Eps    float64
}

// NewRMSNorm registers weight (ones) under p.
func NewRMSNorm(p Path, o NormOptions) *RMSNorm {
	if o.Eps == 0 {
		o.Eps = 1e-6
	}
	return &RMSNorm{Weight: p.New("weight", []int64{o.Dim}, Const(1), true), Dim: o.Dim, Eps: o.Eps}
}

// Forward normalises x [..., Dim].
func (n *RMSNorm) Forward(x *ts.Tensor) *ts.Tensor {
	mustLastDim("RMSNorm", x, n.Dim)
	dt := x.DType()
	h := x.MustTotype(gotch.Float, false)
	ms := h.MustSquare(false).MustMeanDim([]int64{-1}, true, gotch.Float, true)
	h = h.MustMul(ms.MustAddScalar(ts.FloatScalar(n.Eps), true).MustRsqrt(true), true)
	return n.Weight.MustMul(h.MustTotype(dt, true), false)
}

// Embedding maps ids to rows of weight [Num, Dim] (PyTorch's init, N(0, 1)).
type Embedding struct {
	Weight   *ts.Tensor
	Num, Dim int64
	// PaddingIdx, when not -1, is the row that gets no gradient, as
	// nn.Embedding(padding_idx=...) (BERT's [PAD]).
	PaddingIdx int64
}

// EmbeddingOptions configures NewEmbedding. Learned positional embeddings
// are an Embedding over position ids.
type EmbeddingOptions struct{ Num, Dim int64 }

// NewEmbedding registers weight under p.
func NewEmbedding(p Path, o EmbeddingOptions) *Embedding {
	return &Embedding{Weight: p.New("weight", []int64{o.Num, o.Dim}, Normal(1), false), Num: o.Num, Dim: o.Dim, PaddingIdx: -1}
}

// Forward looks up ids (int64, any shape), giving [..., Dim].
func (e *Embedding) Forward(ids *ts.Tensor) *ts.Tensor {
	if ids.DType() != gotch.Int64 {
		panic(fmt.Errorf("Embedding: ids must be int64, got %v", ids.DType()))
	}
	if ids.Numel() > 0 {
		lo, hi := ids.MustMin(false).Int64Values()[0], ids.MustMax(false).Int64Values()[0]
		if lo < 0 || hi >= e.Num {
			panic(fmt.Errorf("Embedding: id %d out of range [0, %d)", map[bool]int64{true: lo, false: hi}[lo < 0], e.Num))
		}
	}
	return ts.MustEmbedding(e.Weight, ids, e.PaddingIdx, false, false)
}

// Normal draws from N(0, std²).
func Normal(std float64) Init {
	return func(shape []int64, dev gotch.Device) *ts.Tensor {
		return ts.MustRandn(shape, gotch.Float, dev).MustMulScalar(ts.FloatScalar(std), true)
	}
}

// DropPath is stochastic depth as timm defines it: in training, each
// sample's whole residual branch is zeroed with probability p and the kept
// ones are scaled by 1/(1-p); identity in evaluation or when p is 0.
func DropPath(x *ts.Tensor, p float64, train bool) *ts.Tensor {
	if !train || p == 0 {
		return x
	}
	keep := 1 - p
	shape := x.MustSize()
	mshape := make([]int64, len(shape))
	mshape[0] = shape[0]
	for i := 1; i < len(mshape); i++ {
		mshape[i] = 1
	}
	mask := ts.MustEmpty(mshape, x.DType(), x.MustDevice())
	mask.MustBernoulliFloat_(keep)
	return x.MustMul(mask.MustDivScalar(ts.FloatScalar(keep), true), false)
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

// SinCos1D is the fixed table of MAE's get_1d_sincos_pos_embed_from_grid:
// for position p and i < dim/2, [sin(p·ω_i) ..., cos(p·ω_i) ...] with
// ω_i = 1/10000^(i/(dim/2)). Rows follow positions.
func SinCos1D(dim int64, positions []float64) ([]float64, error) {
	if dim%2 != 0 {
		return nil, fmt.Errorf("SinCos1D: dim %d is odd", dim)
	}
	half := dim / 2
	out := make([]float64, int64(len(positions))*dim)
	for r, p := range positions {
		for i := int64(0); i < half; i++ {
			w := 1 / math.Pow(10000, float64(i)/float64(half))
			out[int64(r)*dim+i] = math.Sin(p * w)
			out[int64(r)*dim+half+i] = math.Cos(p * w)
		}
	}
	return out, nil
}

// SinCos2D is MAE's get_2d_sincos_pos_embed for a grid×grid patch grid:
// [grid², dim] (plus a leading zero row for the cls token). It reproduces the
// official channel order, where the first half of the channels encodes the
// w coordinate (np.meshgrid(grid_w, grid_h) puts w first) and the second h.
func SinCos2D(dim, grid int64, clsToken bool) (*ts.Tensor, error) {
	if dim%4 != 0 {
		return nil, fmt.Errorf("SinCos2D: dim %d is not a multiple of 4", dim)
	}
	n := grid * grid
	var wpos, hpos []float64
	for h := int64(0); h < grid; h++ {
		for w := int64(0); w < grid; w++ {
			wpos, hpos = append(wpos, float64(w)), append(hpos, float64(h))
		}
	}
	a, _ := SinCos1D(dim/2, wpos)
	b, _ := SinCos1D(dim/2, hpos)
	rows := n
	if clsToken {
		rows++
	}
	out := make([]float32, rows*dim)
	base := rows - n
	for r := int64(0); r < n; r++ {
		for c := int64(0); c < dim/2; c++ {
			out[(base+r)*dim+c] = float32(a[r*dim/2+c])
			out[(base+r)*dim+dim/2+c] = float32(b[r*dim/2+c])
		}
	}
	var t *ts.Tensor
	err := Try(func() { t = ts.MustOfSlice(out).MustView([]int64{rows, dim}, true) })
	return t, err
}

// Rotary is the rotary position embedding in HF's rotate-half convention
// (Llama): for head size d, inv_freq_i = 1/base^(2i/d), and
// x' = x·cos + rotate_half(x)·sin with rotate_half(x) = [-x2, x1].
type Rotary struct {
	HeadDim int64
	Base    float64
}

// Apply rotates x [B, H, T, HeadDim] for positions [T] (int64).
func (r Rotary) Apply(x, positions *ts.Tensor) *ts.Tensor {
	mustLastDim("Rotary", x, r.HeadDim)
	d := r.HeadDim
	dev := x.MustDevice()
	inv := ts.MustArange(ts.IntScalar(d/2), gotch.Float, dev).MustMulScalar(ts.FloatScalar(-2*math.Log(r.Base)/float64(d)), true).MustExp(true)
	freqs := positions.MustTotype(gotch.Float, false).MustUnsqueeze(1, true).MustMul(inv.MustUnsqueeze(0, true), true) // [T, d/2]
	emb := ts.MustCat([]*ts.Tensor{freqs, freqs}, -1)
	cos, sin := emb.MustCos(false).MustTotype(x.DType(), true), emb.MustSin(true).MustTotype(x.DType(), true)
	halves := x.MustChunk(2, -1, false)
	rot := ts.MustCat([]*ts.Tensor{halves[1].MustNeg(false), halves[0]}, -1)
	return x.MustMul(cos, false).MustAdd(rot.MustMul(sin, true), true)
}

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
