package torchmods

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"
)

// This file is clip/model.py's ModifiedResNet, the image encoder of
// OpenAI's RN50, RN101, RN50x4, ... models, with its state-dict names
// (visual.conv1.weight, visual.layer1.0.bn1.running_mean,
// visual.attnpool.q_proj.weight, ...). Its BatchNorm2d layers are
// BatchNorm1d over the flattened spatial positions: the same statistics,
// the same names and buffers.

// ModifiedResNetOptions configures NewModifiedResNet (model.py's
// ModifiedResNet(layers, output_dim, heads, input_resolution, width)).
type ModifiedResNetOptions struct {
	Layers     []int64 // the Bottleneck count of each of the four stages
	OutputDim  int64   // the embedding width
	Heads      int64   // of the attention pool (build_model: width*32/64)
	Resolution int64   // input images are Resolution², a multiple of 32
	Width      int64   // the stem's output channels; stage i has Width·2^i·4
}

// ModifiedResNet differs from torchvision's ResNet as model.py says: a
// stem of three 3×3 convolutions (the first strided) and an average pool
// instead of one 7×7 convolution and a max pool; anti-aliased strided
// Bottlenecks (an average pool after the 3×3 convolution, and before the
// 1×1 convolution of the downsampling path, instead of strides); and an
// attention pool (AttentionPool2d) instead of the global average pool.
type ModifiedResNet struct {
	Conv1, Conv2, Conv3 *ts.Tensor // the stem, no biases
	Bn1, Bn2, Bn3       *BatchNorm1d
	Layers              [4][]*CLIPBottleneck // layer1 ... layer4
	AttnPool            *AttentionPool2d
	Opt                 ModifiedResNetOptions
}

// NewModifiedResNet registers the encoder under p with PyTorch's default
// initialisation, and initialize_parameters' for the attention pool
// (N(0, C^-½)) and the last BatchNorm of every Bottleneck (weight 0).
func NewModifiedResNet(p Path, o ModifiedResNetOptions) *ModifiedResNet {
	if len(o.Layers) != 4 || o.Width <= 0 || o.Resolution <= 0 || o.Resolution%32 != 0 {
		panic(fmt.Errorf("ModifiedResNet: layers %v, width %d, resolution %d: want four stages, a positive width and a resolution that is a multiple of 32", o.Layers, o.Width, o.Resolution))
	}
	w := o.Width
	r := &ModifiedResNet{Opt: o}
	r.Conv1 = newConv(p.Sub("conv1"), 3, w/2, 3)
	r.Bn1 = NewBatchNorm1d(p.Sub("bn1"), BatchNormOptions{Dim: w / 2})
	r.Conv2 = newConv(p.Sub("conv2"), w/2, w/2, 3)
	r.Bn2 = NewBatchNorm1d(p.Sub("bn2"), BatchNormOptions{Dim: w / 2})
	r.Conv3 = newConv(p.Sub("conv3"), w/2, w, 3)
	r.Bn3 = NewBatchNorm1d(p.Sub("bn3"), BatchNormOptions{Dim: w})
	inplanes := w
	for i := range 4 {
		planes, stride := w<<i, int64(2)
		if i == 0 {
			stride = 1
		}
		for j := range o.Layers[i] {
			s := stride
			if j > 0 {
				s = 1
			}
			r.Layers[i] = append(r.Layers[i], newCLIPBottleneck(p.Sub(fmt.Sprintf("layer%d.%d", i+1, j)), inplanes, planes, s))
			inplanes = planes * 4
		}
	}
	r.AttnPool = newAttentionPool2d(p.Sub("attnpool"), o.Resolution/32, w*32, o.Heads, o.OutputDim)
	return r
}

// newConv registers a bias-free Conv2d weight [out, in, k, k] under p
// with PyTorch's default initialisation.
func newConv(p Path, in, out, k int64) *ts.Tensor {
	return p.New("weight", []int64{out, in, k, k}, FanInUniform(in*k*k), false)
}

func conv2d(x, w *ts.Tensor, stride, pad int64) *ts.Tensor {
	return ts.MustConv2d(x, w, ts.None, []int64{stride, stride}, []int64{pad, pad}, []int64{1, 1}, 1)
}

// batchNorm2d is n over [N, C, H, W], as nn.BatchNorm2d.
func batchNorm2d(n *BatchNorm1d, x *ts.Tensor, train bool) *ts.Tensor {
	s := x.MustSize()
	if len(s) != 4 {
		panic(fmt.Errorf("BatchNorm2d: input shape %v, want [N, C, H, W]", s))
	}
	return n.Forward(x.MustView([]int64{s[0], s[1], s[2] * s[3]}, false), train).MustView(s, true)
}

// avgPool is nn.AvgPool2d(k): kernel and stride k, no padding.
func avgPool(x *ts.Tensor, k int64) *ts.Tensor {
	return x.MustAvgPool2d([]int64{k, k}, []int64{k, k}, []int64{0, 0}, false, true, nil, false)
}

// Forward maps images [B, 3, R, R] to features [B, OutputDim]. train
// runs the BatchNorms on the batch's statistics (and updates the running
// ones); CLIP is used in eval mode.
func (r *ModifiedResNet) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	s := x.MustSize()
	if res := r.Opt.Resolution; len(s) != 4 || s[1] != 3 || s[2] != res || s[3] != res {
		panic(fmt.Errorf("ModifiedResNet: images of shape %v, want [B, 3, %d, %d]", s, res, res))
	}
	h := batchNorm2d(r.Bn1, conv2d(x, r.Conv1, 2, 1), train).MustRelu(true)
	h = batchNorm2d(r.Bn2, conv2d(h, r.Conv2, 1, 1), train).MustRelu(true)
	h = batchNorm2d(r.Bn3, conv2d(h, r.Conv3, 1, 1), train).MustRelu(true)
	h = avgPool(h, 2)
	for _, stage := range r.Layers {
		for _, b := range stage {
			h = b.Forward(h, train)
		}
	}
	return r.AttnPool.Forward(h)
}

// CLIPBottleneck is model.py's Bottleneck: 1×1, 3×3 and 1×1 convolutions
// (conv1..3, bn1..3) with every convolution of stride 1 and an average
// pool after the 3×3 one when stride > 1; the shortcut (downsample.0 a
// 1×1 convolution, downsample.1 its BatchNorm, after an average pool) when
// the stride or the width changes.
type CLIPBottleneck struct {
	Conv1, Conv2, Conv3 *ts.Tensor
	Bn1, Bn2, Bn3       *BatchNorm1d
	DownConv            *ts.Tensor   // downsample.0.weight; nil without a downsampling shortcut
	DownBn              *BatchNorm1d // downsample.1
	Stride              int64
}

func newCLIPBottleneck(p Path, inplanes, planes, stride int64) *CLIPBottleneck {
	b := &CLIPBottleneck{Stride: stride}
	b.Conv1 = newConv(p.Sub("conv1"), inplanes, planes, 1)
	b.Bn1 = NewBatchNorm1d(p.Sub("bn1"), BatchNormOptions{Dim: planes})
	b.Conv2 = newConv(p.Sub("conv2"), planes, planes, 3)
	b.Bn2 = NewBatchNorm1d(p.Sub("bn2"), BatchNormOptions{Dim: planes})
	b.Conv3 = newConv(p.Sub("conv3"), planes, planes*4, 1)
	b.Bn3 = NewBatchNorm1d(p.Sub("bn3"), BatchNormOptions{Dim: planes * 4})
	ts.NoGrad(func() { b.Bn3.Weight.MustZero_() }) // initialize_parameters zeroes every bn3.weight
	if stride > 1 || inplanes != planes*4 {
		b.DownConv = newConv(p.Sub("downsample.0"), inplanes, planes*4, 1)
		b.DownBn = NewBatchNorm1d(p.Sub("downsample.1"), BatchNormOptions{Dim: planes * 4})
	}
	return b
}

// Forward applies the block to x [N, C, H, W]. It runs in a scope of its
// own and keeps only its output, so that a block's intermediates (the
// convolutions' and BatchNorms' outputs, the shortcut) are freed when it
// returns, not when the caller's scope closes, which would hold every
// block's at once: autograd keeps its own references to what backward
// needs, and the BatchNorms update their running statistics in place, so
// training is unchanged (see Bert's layer).
func (b *CLIPBottleneck) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	sc := ts.NewScope()
	defer sc.Close()
	out := batchNorm2d(b.Bn1, conv2d(x, b.Conv1, 1, 0), train).MustRelu(true)
	out = batchNorm2d(b.Bn2, conv2d(out, b.Conv2, 1, 1), train).MustRelu(true)
	if b.Stride > 1 {
		out = avgPool(out, b.Stride)
	}
	out = batchNorm2d(b.Bn3, conv2d(out, b.Conv3, 1, 0), train)
	identity := x
	if b.DownConv != nil {
		if b.Stride > 1 {
			identity = avgPool(identity, b.Stride)
		}
		identity = batchNorm2d(b.DownBn, conv2d(identity, b.DownConv, 1, 0), train)
	}
	out = out.MustAdd(identity, true).MustRelu(true)
	sc.Keep(out)
	return out
}

// AttentionPool2d is model.py's attention pooling: the feature map's
// positions and their mean, plus positional_embedding [HW+1, C], are the
// keys and values of one query, the mean, in multi-head attention with
// separate q_proj, k_proj, v_proj [C, C] and an output projection c_proj
// [out, C] (F.multi_head_attention_forward with use_separate_proj_weight).
type AttentionPool2d struct {
	PositionalEmbedding *ts.Tensor // [spatial²+1, C]
	Q, K, V, C          *Linear    // q_proj, k_proj, v_proj, c_proj
	Heads, Dim          int64
}

func newAttentionPool2d(p Path, spatial, dim, heads, out int64) *AttentionPool2d {
	if heads <= 0 || dim%heads != 0 {
		panic(fmt.Errorf("AttentionPool2d: width %d is not divisible by %d heads", dim, heads))
	}
	a := &AttentionPool2d{Heads: heads, Dim: dim}
	a.PositionalEmbedding = p.New("positional_embedding", []int64{spatial*spatial + 1, dim}, Normal(math.Pow(float64(dim), -0.5)), false)
	a.K = NewLinear(p.Sub("k_proj"), LinearOptions{In: dim, Out: dim})
	a.Q = NewLinear(p.Sub("q_proj"), LinearOptions{In: dim, Out: dim})
	a.V = NewLinear(p.Sub("v_proj"), LinearOptions{In: dim, Out: dim})
	a.C = NewLinear(p.Sub("c_proj"), LinearOptions{In: dim, Out: out})
	std := math.Pow(float64(dim), -0.5)
	ts.NoGrad(func() {
		for _, l := range []*Linear{a.Q, a.K, a.V, a.C} {
			l.Weight.Copy_(Normal(std)(l.Weight.MustSize(), l.Weight.MustDevice()))
		}
	})
	return a
}

// Forward pools x [N, C, H, W] to [N, out].
func (a *AttentionPool2d) Forward(x *ts.Tensor) *ts.Tensor {
	s := x.MustSize()
	if n := a.PositionalEmbedding.MustSize()[0]; len(s) != 4 || s[1] != a.Dim || s[2]*s[3]+1 != n {
		panic(fmt.Errorf("AttentionPool2d: feature map of shape %v, want [N, %d, H, W] with H·W = %d", s, a.Dim, n-1))
	}
	h := x.MustFlatten(2, -1, false).MustTranspose(1, 2, true) // [N, HW, C]
	mean := h.MustMeanDim([]int64{1}, true, h.DType(), false)
	h = ts.MustCat([]*ts.Tensor{mean, h}, 1).MustAdd(a.PositionalEmbedding, true) // [N, HW+1, C]
	hd := a.Dim / a.Heads
	heads := func(t *ts.Tensor) *ts.Tensor { // [N, T, C] -> [N, H, T, hd]
		sz := t.MustSize()
		return t.MustView([]int64{sz[0], sz[1], a.Heads, hd}, true).MustTranspose(1, 2, true)
	}
	q := heads(a.Q.Forward(h.MustNarrow(1, 0, 1, false)))
	k, v := heads(a.K.Forward(h)), heads(a.V.Forward(h))
	o := scaledDotProduct(q, k, v, nil, nil, 0, false) // [N, H, 1, hd]
	o = o.MustTranspose(1, 2, true).MustReshape([]int64{s[0], a.Dim}, true)
	return a.C.Forward(o)
}
