package torchmods

import (
	"fmt"

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
