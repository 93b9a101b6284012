// Package mae is Masked Autoencoders Are Scalable Vision Learners (He et
// al., CVPR 2022), following facebookresearch/mae: the model of
// models_mae.py in this file, its pre-training, linear-probe and
// fine-tuning recipes as trainer tasks (tasks.go), and loading of the
// official and Hugging Face checkpoints (weights.go).
package mae

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Options sizes a MaskedAutoencoderViT.
type Options struct {
	ImgSize      int64   `toml:"img_size"`      // input images are ImgSize x ImgSize
	Patch        int64   `toml:"patch"`         // patch size
	InChans      int64   `toml:"in_chans"`      // image channels (3; 1 for Fashion-MNIST)
	Dim          int64   `toml:"dim"`           // encoder width
	Depth        int64   `toml:"depth"`         // encoder blocks
	Heads        int64   `toml:"heads"`         // encoder attention heads
	DecoderDim   int64   `toml:"decoder_dim"`   // decoder width (512 in the paper)
	DecoderDepth int64   `toml:"decoder_depth"` // decoder blocks (8)
	DecoderHeads int64   `toml:"decoder_heads"` // decoder heads (16)
	MLPRatio     float64 `toml:"mlp_ratio"`     // MLP hidden width over model width (4)
	NormPixLoss  bool    `toml:"norm_pix_loss"` // normalise each target patch (the paper's recipe)
	Eps          float64 `toml:"eps"`           // LayerNorm eps: 1e-6 (MAE); HF ViTMAE configs use 1e-12
}

// The paper's three sizes (Table in section 4 and models_mae.py), with the
// shared 512-wide, 8-deep, 16-head decoder and normalised-pixel targets.
func ViTBase16() Options  { return sized(16, 768, 12, 12) }
func ViTLarge16() Options { return sized(16, 1024, 24, 16) }
func ViTHuge14() Options  { return sized(14, 1280, 32, 16) }

func sized(patch, dim, depth, heads int64) Options {
	return Options{ImgSize: 224, Patch: patch, InChans: 3, Dim: dim, Depth: depth, Heads: heads,
		DecoderDim: 512, DecoderDepth: 8, DecoderHeads: 16, MLPRatio: 4, NormPixLoss: true, Eps: 1e-6}
}

// Validate checks the sizes fit together.
func (o Options) Validate() error {
	switch {
	case o.ImgSize <= 0 || o.Patch <= 0 || o.ImgSize%o.Patch != 0:
		return fmt.Errorf("img_size %d must be a positive multiple of patch %d", o.ImgSize, o.Patch)
	case o.InChans <= 0:
		return fmt.Errorf("in_chans must be positive, got %d", o.InChans)
	case o.Depth <= 0 || o.DecoderDepth <= 0:
		return fmt.Errorf("depth %d and decoder_depth %d must be positive", o.Depth, o.DecoderDepth)
	case o.Heads <= 0 || o.Dim%o.Heads != 0 || o.Dim%4 != 0:
		return fmt.Errorf("dim %d must be a multiple of 4 and of heads %d", o.Dim, o.Heads)
	case o.DecoderHeads <= 0 || o.DecoderDim%o.DecoderHeads != 0 || o.DecoderDim%4 != 0:
		return fmt.Errorf("decoder_dim %d must be a multiple of 4 and of decoder_heads %d", o.DecoderDim, o.DecoderHeads)
	case o.MLPRatio <= 0:
		return fmt.Errorf("mlp_ratio must be positive, got %v", o.MLPRatio)
	}
	return nil
}

// Model is MaskedAutoencoderViT with the official parameter names: the
// encoder's patch_embed, cls_token, pos_embed, blocks and norm at the top
// level, then decoder_embed, mask_token, decoder_pos_embed, decoder_blocks,
// decoder_norm and decoder_pred.
type Model struct {
	Encoder       *torchmods.ViT
	DecoderEmbed  *torchmods.Linear
	MaskToken     *ts.Tensor // [1, 1, DecoderDim]
	DecoderPos    *ts.Tensor // [1, 1+L, DecoderDim], fixed sin-cos
	DecoderBlocks []*torchmods.Block
	DecoderNorm   *torchmods.LayerNorm
	DecoderPred   *torchmods.Linear
	Opt           Options
}

// New builds the model under p with the official initialisation:
// fixed 2D sin-cos position tables (cls row zero), xavier-uniform Linear
// weights and the patch projection on its [D, C*p*p] view, zero biases,
// N(0, .02²) for cls_token and mask_token.
func New(p torchmods.Path, o Options) (m *Model, err error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("mae model: %w", err)
	}
	err = torchmods.Try(func() {
		m = &Model{Opt: o}
		m.Encoder = torchmods.NewViT(p, torchmods.ViTOptions{ImgSize: o.ImgSize, Patch: o.Patch, InChans: o.InChans,
			Dim: o.Dim, Depth: o.Depth, Heads: o.Heads, MLPRatio: o.MLPRatio, Eps: o.Eps, FixedPos: true})
		grid := o.ImgSize / o.Patch
		m.DecoderEmbed = torchmods.NewLinear(p.Sub("decoder_embed"), torchmods.LinearOptions{In: o.Dim, Out: o.DecoderDim})
		m.MaskToken = p.New("mask_token", []int64{1, 1, o.DecoderDim}, torchmods.Normal(0.02), true)
		m.DecoderPos = p.NewBuffer("decoder_pos_embed", []int64{1, grid*grid + 1, o.DecoderDim}, func(_ []int64, dev gotch.Device) *ts.Tensor {
			t, err := torchmods.SinCos2D(o.DecoderDim, grid, true)
			if err != nil {
				panic(err)
			}
			return t.MustUnsqueeze(0, true).MustTo(dev, true)
		})
		for i := range o.DecoderDepth {
			m.DecoderBlocks = append(m.DecoderBlocks, torchmods.NewBlock(p.Sub(fmt.Sprintf("decoder_blocks.%d", i)),
				torchmods.BlockOptions{Dim: o.DecoderDim, Heads: o.DecoderHeads, MLPRatio: o.MLPRatio, Eps: o.Eps}))
		}
		m.DecoderNorm = torchmods.NewLayerNorm(p.Sub("decoder_norm"), torchmods.NormOptions{Dim: o.DecoderDim, Eps: o.Eps})
		m.DecoderPred = torchmods.NewLinear(p.Sub("decoder_pred"), torchmods.LinearOptions{In: o.DecoderDim, Out: o.Patch * o.Patch * o.InChans})
		torchmods.XavierInit(nil, m.DecoderBlocks)
		torchmods.XavierLinear(m.DecoderEmbed)
		torchmods.XavierLinear(m.DecoderPred)
	})
	return m, err
}

// NumPatches is L, the number of patches per image.
func (m *Model) NumPatches() int64 { g := m.Opt.ImgSize / m.Opt.Patch; return g * g }

// Patchify maps images [N, C, H, W] to patches [N, L, p*p*C], each patch's
// values ordered (row, column, channel): the official einsum nchpwq->nhwpqc.
func (m *Model) Patchify(imgs *ts.Tensor) *ts.Tensor {
	s := imgs.MustSize()
	p, c := m.Opt.Patch, m.Opt.InChans
	if len(s) != 4 || s[1] != c || s[2] != m.Opt.ImgSize || s[3] != m.Opt.ImgSize {
		panic(fmt.Errorf("mae: images of shape %v, want [N, %d, %d, %d]", s, c, m.Opt.ImgSize, m.Opt.ImgSize))
	}
	h := s[2] / p
	x := imgs.MustReshape([]int64{s[0], c, h, p, h, p}, false)
	x = x.MustPermute([]int64{0, 2, 4, 3, 5, 1}, true)
	return x.MustReshape([]int64{s[0], h * h, p * p * c}, true)
}

// Unpatchify inverts Patchify.
func (m *Model) Unpatchify(x *ts.Tensor) *ts.Tensor {
	s := x.MustSize()
	p, c := m.Opt.Patch, m.Opt.InChans
	h := m.Opt.ImgSize / p
	y := x.MustReshape([]int64{s[0], h, h, p, p, c}, false)
	y = y.MustPermute([]int64{0, 5, 1, 3, 2, 4}, true)
	return y.MustReshape([]int64{s[0], c, h * p, h * p}, true)
}

// KeepCount is how many of L patches the encoder sees at ratio r:
// int(L*(1-r)), as the official code rounds down.
func KeepCount(l int64, ratio float64) int64 { return int64(float64(l) * (1 - ratio)) }

// RandomMasking is the official per-sample random masking by sorting
// noise: the patches with the smallest noise are kept. x is [N, L, D] and
// noise [N, L] (nil draws torch.rand). It returns the kept tokens
// [N, keep, D], the mask [N, L] (1 = removed, 0 = kept) and ids_restore
// [N, L], which puts shuffled tokens back in order.
func RandomMasking(x *ts.Tensor, ratio float64, noise *ts.Tensor) (kept, mask, idsRestore *ts.Tensor) {
	s := x.MustSize()
	n, l, d := s[0], s[1], s[2]
	keep := KeepCount(l, ratio)
	if noise == nil {
		noise = ts.MustRand([]int64{n, l}, gotch.Float, x.MustDevice())
	}
	idsShuffle := noise.MustArgsort(1, false, false)
	idsRestore = idsShuffle.MustArgsort(1, false, false)
	idsKeep := idsShuffle.MustNarrow(1, 0, keep, false)
	kept = x.MustGather(1, idsKeep.MustUnsqueeze(-1, false).MustExpand([]int64{n, keep, d}, false, true), false, false)
	mask = ts.MustOnes([]int64{n, l}, gotch.Float, x.MustDevice())
	mask.MustNarrow(1, 0, keep, false).MustFill_(ts.FloatScalar(0))
	mask = mask.MustGather(1, idsRestore, false, true)
	return kept, mask, idsRestore
}

// ForwardEncoder embeds the patches, masks them, and runs the encoder on
// the visible ones only (with the cls token): latent [N, 1+keep, D].
func (m *Model) ForwardEncoder(imgs *ts.Tensor, ratio float64, noise *ts.Tensor, train bool) (latent, mask, idsRestore *ts.Tensor) {
	x, mask, idsRestore := RandomMasking(m.Encoder.Embed(imgs), ratio, noise)
	x = m.Encoder.WithCls(x)
	for _, b := range m.Encoder.Blocks {
		x = b.Forward(x, train)
	}
	return m.Encoder.Norm.Forward(x), mask, idsRestore
}

// ForwardDecoder fills the removed positions with the mask token, restores
// the patch order, and predicts every patch's pixels: [N, L, p*p*C].
func (m *Model) ForwardDecoder(latent, idsRestore *ts.Tensor, train bool) *ts.Tensor {
	x := m.DecoderEmbed.Forward(latent)
	s := x.MustSize()
	n, t, d := s[0], s[1], s[2]
	l := idsRestore.MustSize()[1]
	masks := m.MaskToken.MustExpand([]int64{n, l + 1 - t, d}, false, false)
	rest := ts.MustCat([]*ts.Tensor{x.MustNarrow(1, 1, t-1, false), masks}, 1)
	rest = rest.MustGather(1, idsRestore.MustUnsqueeze(-1, false).MustExpand([]int64{n, l, d}, false, true), false, true)
	x = ts.MustCat([]*ts.Tensor{x.MustNarrow(1, 0, 1, false), rest}, 1).MustAdd(m.DecoderPos, true)
	for _, b := range m.DecoderBlocks {
		x = b.Forward(x, train)
	}
	x = m.DecoderPred.Forward(m.DecoderNorm.Forward(x))
	return x.MustNarrow(1, 1, l, true)
}

// Target is the reconstruction target: the patches, each normalised by its
// own mean and unbiased variance (+1e-6) when NormPixLoss is on.
func (m *Model) Target(imgs *ts.Tensor) *ts.Tensor {
	t := m.Patchify(imgs)
	if !m.Opt.NormPixLoss {
		return t
	}
	k := t.MustSize()[2]
	mean := t.MustMeanDim([]int64{-1}, true, gotch.Float, false)
	c := t.MustSub(mean, true)
	// var(unbiased) written out: libtorch 1.13's var.correction is stubbed.
	v := c.MustMul(c, false).MustSumDimIntlist([]int64{-1}, true, gotch.Float, true).MustDivScalar(ts.FloatScalar(float64(k-1)), true)
	return c.MustDiv(v.MustAddScalar(ts.FloatScalar(1e-6), true).MustSqrt(true), true)
}

// Loss is the mean squared error per patch, averaged over removed patches only.
func (m *Model) Loss(imgs, pred, mask *ts.Tensor) *ts.Tensor {
	d := pred.MustSub(m.Target(imgs), false)
	perPatch := d.MustMul(d, true).MustMeanDim([]int64{-1}, false, gotch.Float, true)
	return perPatch.MustMul(mask, true).MustSum(gotch.Float, true).MustDiv(mask.MustSum(gotch.Float, false), true)
}

// Output is what Forward returns.
type Output struct {
	Loss *ts.Tensor // scalar
	Pred *ts.Tensor // [N, L, p*p*C], in the (normalised) target space
	Mask *ts.Tensor // [N, L], 1 = removed
}

// Forward is MaskedAutoencoderViT.forward: masking at ratio (0.75 in the
// paper), encoder, decoder, loss. noise fixes the masking (nil for random).
func (m *Model) Forward(imgs *ts.Tensor, ratio float64, noise *ts.Tensor, train bool) Output {
	latent, mask, ids := m.ForwardEncoder(imgs, ratio, noise, train)
	pred := m.ForwardDecoder(latent, ids, train)
	return Output{Loss: m.Loss(imgs, pred, mask), Pred: pred, Mask: mask}
}
