package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

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
	err := Try(func() { t = FromSlice(out, []int64{rows, dim}, gotch.CPU) })
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

// T5Bucket is HF T5's _relative_position_bucket for one relative position
// (memory - query). Its logarithmic part is computed in float32, as PyTorch
// does, so the buckets agree exactly.
func T5Bucket(rel int64, bidirectional bool, numBuckets, maxDistance int64) int64 {
	var bucket int64
	if bidirectional {
		numBuckets /= 2
		if rel > 0 {
			bucket += numBuckets
		}
		if rel < 0 {
			rel = -rel
		}
	} else if rel > 0 {
		rel = 0
	} else {
		rel = -rel
	}
	maxExact := numBuckets / 2
	if rel < maxExact {
		return bucket + rel
	}
	r := float32(rel) / float32(maxExact)
	l := float32(math.Log(float64(r)))
	l = l / float32(math.Log(float64(maxDistance)/float64(maxExact)))
	large := maxExact + int64(l*float32(numBuckets-maxExact))
	if large > numBuckets-1 {
		large = numBuckets - 1
	}
	return bucket + large
}

// T5Bias is T5's learned relative position bias: one embedding row per
// bucket, one column per head. Name: relative_attention_bias.weight.
type T5Bias struct {
	Weight                      *ts.Tensor
	Buckets, MaxDistance, Heads int64
	Bidirectional               bool
}

// T5BiasOptions configures NewT5Bias (T5: 32 buckets, max distance 128,
// bidirectional in the encoder).
type T5BiasOptions struct {
	Heads, Buckets, MaxDistance int64
	Bidirectional               bool
}

// NewT5Bias registers relative_attention_bias.weight [Buckets, Heads].
func NewT5Bias(p Path, o T5BiasOptions) *T5Bias {
	return &T5Bias{
		Weight:  p.Sub("relative_attention_bias").New("weight", []int64{o.Buckets, o.Heads}, Normal(1), false),
		Buckets: o.Buckets, MaxDistance: o.MaxDistance, Heads: o.Heads, Bidirectional: o.Bidirectional,
	}
}

// Forward gives the bias [1, Heads, qLen, kLen] to add to attention scores.
func (b *T5Bias) Forward(qLen, kLen int64) *ts.Tensor {
	ids := make([]int64, qLen*kLen)
	for i := int64(0); i < qLen; i++ {
		for j := int64(0); j < kLen; j++ {
			ids[i*kLen+j] = T5Bucket(j-i, b.Bidirectional, b.Buckets, b.MaxDistance)
		}
	}
	t := FromSlice(ids, []int64{qLen, kLen}, b.Weight.MustDevice())
	v := ts.MustEmbedding(b.Weight, t, -1, false, false) // [q, k, H]
	return v.MustPermute([]int64{2, 0, 1}, true).MustUnsqueeze(0, true)
}
