package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"
)

// PatchEmbed is timm's PatchEmbed: a Conv2d with kernel and stride equal to
// the patch size, flattened to [B, patches, Dim]. Names: proj.weight, proj.bias.
type PatchEmbed struct {
	Weight, Bias                 *ts.Tensor
	Patch, InChans, Dim, ImgSize int64
}

// PatchEmbedOptions configures NewPatchEmbed.
type PatchEmbedOptions struct{ ImgSize, Patch, InChans, Dim int64 }

// NewPatchEmbed registers proj.weight [Dim, InChans, Patch, Patch] and
// proj.bias, initialised as PyTorch's Conv2d (U(±1/sqrt(fan_in))).
func NewPatchEmbed(p Path, o PatchEmbedOptions) *PatchEmbed {
	if o.Patch <= 0 || o.ImgSize%o.Patch != 0 {
		panic(fmt.Errorf("PatchEmbed: image size %d is not a multiple of patch size %d", o.ImgSize, o.Patch))
	}
	fanIn := o.InChans * o.Patch * o.Patch
	pp := p.Sub("proj")
	return &PatchEmbed{
		Weight: pp.New("weight", []int64{o.Dim, o.InChans, o.Patch, o.Patch}, FanInUniform(fanIn), false),
		Bias:   pp.New("bias", []int64{o.Dim}, FanInUniform(fanIn), true),
		Patch:  o.Patch, InChans: o.InChans, Dim: o.Dim, ImgSize: o.ImgSize,
	}
}

// NumPatches is (ImgSize/Patch)².
func (e *PatchEmbed) NumPatches() int64 { g := e.ImgSize / e.Patch; return g * g }

// Forward maps images [B, InChans, ImgSize, ImgSize] to [B, NumPatches, Dim].
func (e *PatchEmbed) Forward(x *ts.Tensor) *ts.Tensor {
	s := x.MustSize()
	if len(s) != 4 || s[1] != e.InChans || s[2] != e.ImgSize || s[3] != e.ImgSize {
		panic(fmt.Errorf("PatchEmbed: input shape %v, want [B, %d, %d, %d]", s, e.InChans, e.ImgSize, e.ImgSize))
	}
	y := ts.MustConv2d(x, e.Weight, e.Bias, []int64{e.Patch, e.Patch}, []int64{0, 0}, []int64{1, 1}, 1)
	return y.MustFlatten(2, -1, true).MustTranspose(1, 2, true)
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
	t := ts.MustOfSlice(ids).MustView([]int64{qLen, kLen}, true).MustTo(b.Weight.MustDevice(), true)
	v := ts.MustEmbedding(b.Weight, t, -1, false, false) // [q, k, H]
	return v.MustPermute([]int64{2, 0, 1}, true).MustUnsqueeze(0, true)
}
