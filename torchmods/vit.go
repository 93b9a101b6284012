package torchmods

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Block is timm's ViT block, pre-norm: x + drop_path(attn(norm1(x))), then
// x + drop_path(mlp(norm2(x))). Names: norm1, attn.qkv, attn.proj, norm2,
// mlp.fc1, mlp.fc2.
type Block struct {
	Norm1, Norm2 *LayerNorm
	Attn         *Attention
	MLP          *MLP
	DropPath     float64
}

// BlockOptions configures NewBlock.
type BlockOptions struct {
	Dim, Heads int64
	MLPRatio   float64 // hidden = Dim*MLPRatio (default 4)
	Eps        float64 // LayerNorm eps (default 1e-6, as MAE and timm ViTs)
	DropPath   float64 // stochastic depth of this block
}

// NewBlock registers a block under p.
func NewBlock(p Path, o BlockOptions) *Block {
	if o.MLPRatio == 0 {
		o.MLPRatio = 4
	}
	if o.Eps == 0 {
		o.Eps = 1e-6
	}
	return &Block{
		Norm1:    NewLayerNorm(p.Sub("norm1"), NormOptions{Dim: o.Dim, Eps: o.Eps}),
		Attn:     NewAttention(p.Sub("attn"), AttentionOptions{Dim: o.Dim, Heads: o.Heads, Bias: true, Names: TimmNames}),
		Norm2:    NewLayerNorm(p.Sub("norm2"), NormOptions{Dim: o.Dim, Eps: o.Eps}),
		MLP:      NewMLP(p.Sub("mlp"), MLPOptions{In: o.Dim, Hidden: int64(float64(o.Dim) * o.MLPRatio), Out: o.Dim, Act: GELU}),
		DropPath: o.DropPath,
	}
}

// Forward applies the block to x [B, L, Dim]. It runs in a scope of its
// own and keeps only its output, so that a block's intermediates are freed
// when it is done, not when the caller's scope closes: autograd keeps its
// own references to what backward needs (see Bert's layer).
func (b *Block) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	sc := ts.NewScope()
	defer sc.Close()
	h := b.Attn.Forward(AttentionInput{Query: b.Norm1.Forward(x)}, train)
	x = x.MustAdd(DropPath(h, b.DropPath, train), false)
	h = b.MLP.Forward(b.Norm2.Forward(x), train)
	out := x.MustAdd(DropPath(h, b.DropPath, train), false)
	sc.Keep(out)
	return out
}

// ViTOptions configures NewViT.
type ViTOptions struct {
	ImgSize, Patch, InChans int64
	Dim, Depth, Heads       int64
	MLPRatio                float64 // default 4
	Eps                     float64 // LayerNorm eps (default 1e-6)
	DropPath                float64 // stochastic depth rate of the last block; block i gets DropPath*i/(Depth-1)
	// FixedPos makes pos_embed MAE's fixed 2D sin-cos table (not trained);
	// otherwise it is a learned parameter (timm's trunc_normal(.02) init).
	FixedPos bool
	// GlobalPool pools the patch tokens' mean through fc_norm (MAE's
	// fine-tuning head) instead of taking the cls token after norm.
	GlobalPool bool
	Classes    int64 // a linear head with this many outputs; 0 for none
}

// ViT is timm's VisionTransformer as MAE's models_vit.py configures it,
// with timm's parameter names: patch_embed.proj, cls_token, pos_embed,
// blocks.N.*, norm (or fc_norm with global pooling) and head.
type ViT struct {
	PatchEmbed *PatchEmbed
	ClsToken   *ts.Tensor // [1, 1, Dim]
	PosEmbed   *ts.Tensor // [1, 1+NumPatches, Dim]
	Blocks     []*Block
	Norm       *LayerNorm // norm, or fc_norm with GlobalPool
	Head       *Linear    // nil without classes
	Opt        ViTOptions
}

// NewViT registers a ViT under p, initialised as MAE does (xavier-uniform
// Linear weights with zero biases, the patch projection xavier-uniform on
// its [Dim, C*p*p] view, cls_token N(0, .02²)). The head, when there is
// one, is trunc_normal(std 2e-5) with a zero bias, as MAE's fine-tuning.
func NewViT(p Path, o ViTOptions) *ViT {
	if o.Eps == 0 {
		o.Eps = 1e-6
	}
	v := &ViT{Opt: o}
	v.PatchEmbed = NewPatchEmbed(p.Sub("patch_embed"), PatchEmbedOptions{ImgSize: o.ImgSize, Patch: o.Patch, InChans: o.InChans, Dim: o.Dim})
	v.ClsToken = p.New("cls_token", []int64{1, 1, o.Dim}, Normal(0.02), true)
	n := v.PatchEmbed.NumPatches()
	if o.FixedPos {
		v.PosEmbed = p.NewBuffer("pos_embed", []int64{1, n + 1, o.Dim}, func(_ []int64, dev gotch.Device) *ts.Tensor {
			t, err := SinCos2D(o.Dim, o.ImgSize/o.Patch, true)
			if err != nil {
				panic(err)
			}
			return t.MustUnsqueeze(0, true).MustTo(dev, true)
		})
	} else {
		v.PosEmbed = p.New("pos_embed", []int64{1, n + 1, o.Dim}, TruncNormal(0.02), true)
	}
	for i := range o.Depth {
		dp := 0.0
		if o.Depth > 1 {
			dp = o.DropPath * float64(i) / float64(o.Depth-1)
		}
		v.Blocks = append(v.Blocks, NewBlock(p.Sub(fmt.Sprintf("blocks.%d", i)), BlockOptions{Dim: o.Dim, Heads: o.Heads, MLPRatio: o.MLPRatio, Eps: o.Eps, DropPath: dp}))
	}
	norm := "norm"
	if o.GlobalPool {
		norm = "fc_norm"
	}
	v.Norm = NewLayerNorm(p.Sub(norm), NormOptions{Dim: o.Dim, Eps: o.Eps})
	XavierInit(v.PatchEmbed, v.Blocks)
	if o.Classes > 0 {
		v.Head = NewLinear(p.Sub("head"), LinearOptions{In: o.Dim, Out: o.Classes})
		ts.NoGrad(func() {
			v.Head.Weight.Copy_(TruncNormal(2e-5)(v.Head.Weight.MustSize(), v.Head.Weight.MustDevice()))
			v.Head.Bias.MustZero_()
		})
	}
	return v
}

// XavierInit re-initialises as MAE's initialize_weights: the patch
// projection's weight xavier-uniform as if it were a [Dim, C*p*p] Linear,
// every block Linear's weight xavier-uniform and bias zero. (The patch
// projection's bias keeps Conv2d's default; LayerNorms are already 1 and 0.)
func XavierInit(pe *PatchEmbed, blocks []*Block) {
	ts.NoGrad(func() {
		if pe != nil {
			s := pe.Weight.MustSize()
			xavier(pe.Weight, s[1]*s[2]*s[3], s[0])
		}
		for _, b := range blocks {
			for _, l := range []*Linear{b.Attn.QKV, b.Attn.Out, b.MLP.FC1, b.MLP.FC2} {
				XavierLinear(l)
			}
		}
	})
}

// Embed maps images to tokens with positions added: [B, NumPatches, Dim]
// (no cls token yet; MAE masks at this point).
func (v *ViT) Embed(x *ts.Tensor) *ts.Tensor {
	n := v.PatchEmbed.NumPatches()
	return v.PatchEmbed.Forward(x).MustAdd(v.PosEmbed.MustNarrow(1, 1, n, false), true)
}

// WithCls prepends cls_token + pos_embed[:, :1] to tokens [B, L, Dim].
func (v *ViT) WithCls(x *ts.Tensor) *ts.Tensor {
	b := x.MustSize()[0]
	cls := v.ClsToken.MustAdd(v.PosEmbed.MustNarrow(1, 0, 1, false), false).MustExpand([]int64{b, 1, v.Opt.Dim}, false, true)
	return ts.MustCat([]*ts.Tensor{cls, x}, 1)
}

// Features runs the encoder on images [B, C, H, W] and returns the pooled
// feature [B, Dim]: the cls token after norm, or with GlobalPool the mean
// of the patch tokens through fc_norm (models_vit.forward_features).
func (v *ViT) Features(x *ts.Tensor, train bool) *ts.Tensor {
	h := v.WithCls(v.Embed(x))
	for _, b := range v.Blocks {
		h = b.Forward(h, train)
	}
	if v.Opt.GlobalPool {
		l := h.MustSize()[1]
		return v.Norm.Forward(h.MustNarrow(1, 1, l-1, false).MustMeanDim([]int64{1}, false, gotch.Float, false))
	}
	return v.Norm.Forward(h).MustSelect(1, 0, false)
}

// Forward is the head applied to Features (the features without a head).
func (v *ViT) Forward(x *ts.Tensor, train bool) *ts.Tensor {
	f := v.Features(x, train)
	if v.Head == nil {
		return f
	}
	return v.Head.Forward(f)
}

// InterpolatePosEmbed resizes a [1, 1+g*g, D] position table (with its cls
// row) to a new grid, bicubic without corner alignment, as MAE's
// interpolate_pos_embed, so a checkpoint trained at one image size loads
// into a model for another. Tables already the right size are returned as is.
func InterpolatePosEmbed(pos *ts.Tensor, newGrid int64) (*ts.Tensor, error) {
	var out *ts.Tensor
	err := Try(func() {
		s := pos.MustSize()
		if len(s) != 3 || s[0] != 1 {
			panic(fmt.Errorf("pos_embed shape %v, want [1, 1+grid², dim]", s))
		}
		old := int64(math.Round(math.Sqrt(float64(s[1] - 1))))
		if old*old != s[1]-1 {
			panic(fmt.Errorf("pos_embed has %d patch rows, not a square grid", s[1]-1))
		}
		if old == newGrid {
			out = pos
			return
		}
		d := s[2]
		cls := pos.MustNarrow(1, 0, 1, false)
		grid := pos.MustNarrow(1, 1, old*old, false).MustReshape([]int64{1, old, old, d}, false).MustPermute([]int64{0, 3, 1, 2}, true)
		grid = grid.MustUpsampleBicubic2d([]int64{newGrid, newGrid}, false, nil, nil, true)
		grid = grid.MustPermute([]int64{0, 2, 3, 1}, true).MustReshape([]int64{1, newGrid * newGrid, d}, true)
		out = ts.MustCat([]*ts.Tensor{cls, grid}, 1)
	})
	return out, err
}

// ViTLayerDecay is the layer-wise learning-rate decay of MAE's fine-tuning
// (util/lr_decay.py, after BEiT): with L = depth+1, parameters named
// cls_token, pos_embed or patch_embed.* are layer 0, blocks.i.* layer i+1,
// everything else (final norm, head) layer L; layer l's learning rate is
// scaled by decay^(L-l). It returns the scale of every parameter of store
// (train's optimizers take it as LRScale). It lives here, beside ViT,
// because it knows ViT's parameter names.
func ViTLayerDecay(store *Store, depth int, decay float64) map[string]float64 {
	L := depth + 1
	scales := map[string]float64{}
	for _, p := range store.Params() {
		scales[p.Name] = math.Pow(decay, float64(L-vitLayerID(p.Name, L)))
	}
	return scales
}

func vitLayerID(name string, numLayers int) int {
	switch {
	case name == "cls_token" || name == "pos_embed" || strings.HasPrefix(name, "patch_embed"):
		return 0
	case strings.HasPrefix(name, "blocks."):
		if i, err := strconv.Atoi(strings.SplitN(name, ".", 3)[1]); err == nil {
			return i + 1
		}
	}
	return numLayers
}
