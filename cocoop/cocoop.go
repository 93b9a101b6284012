package cocoop

import (
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// This file is CoCoOp (trainers/cocoop.py at ff61507c): a PromptLearner
// whose context is shifted, image by image, by a Meta-Net's output on the
// image's normalised feature, and CustomCLIP, which scores every image
// against its own prompts.

// CoCoOpPromptLearner is cocoop.py's PromptLearner: prompt_learner.ctx
// [n_ctx, dim], the Meta-Net prompt_learner.meta_net.linear1 (vis_dim to
// vis_dim/16) and linear2 (to dim) with a ReLU between (its Sequential's
// names, so the released state dicts load), and the token_prefix and
// token_suffix buffers.
type CoCoOpPromptLearner struct {
	*promptBase
	Ctx              *ts.Tensor
	Linear1, Linear2 *torchmods.Linear
}

// NewCoCoOpPromptLearner builds CoCoOp's prompt learner for classnames
// under p. o's CSC and Position do not apply (CoCoOp has one context, the
// class name last); NewCoCoOpPromptLearner ignores them.
func NewCoCoOpPromptLearner(p torchmods.Path, clip *torchmods.CLIP, tok Tokenizer, classnames []string, o PromptOptions) (*CoCoOpPromptLearner, error) {
	o.CSC, o.Position = false, PositionEnd
	t, err := tokensFor(tok, classnames, o, int(clip.Cfg.ContextLength))
	if err != nil {
		return nil, err
	}
	l := &CoCoOpPromptLearner{}
	err = torchmods.Try(func() {
		dim, vis := clip.Cfg.TransformerWidth, clip.Cfg.EmbedDim
		l.Ctx = p.New("ctx", []int64{t.nCtx, dim}, ctxInit(clip, t), false)
		// nn.Linear's own initialisation, as the official Sequential gets.
		l.Linear1 = torchmods.NewLinear(p.Sub("meta_net.linear1"), torchmods.LinearOptions{In: vis, Out: max(vis/16, 1)})
		l.Linear2 = torchmods.NewLinear(p.Sub("meta_net.linear2"), torchmods.LinearOptions{In: max(vis/16, 1), Out: dim})
		l.promptBase = newPromptBase(p, clip, t)
	})
	return l, err
}

// MetaNet is meta_net(im_features): Linear, ReLU, Linear, [B, dim].
func (l *CoCoOpPromptLearner) MetaNet(imFeatures *ts.Tensor) *ts.Tensor {
	return l.Linear2.Forward(l.Linear1.Forward(imFeatures).MustRelu(true))
}

// Forward is PromptLearner.forward(im_features): bias = meta_net(f) added
// to every context vector (ctx_shifted [B, n_ctx, dim]), then each image's
// prompts [n_cls, L, dim] with its own context, stacked to [B, n_cls, L,
// dim].
func (l *CoCoOpPromptLearner) Forward(imFeatures *ts.Tensor) *ts.Tensor {
	b, n, dim := imFeatures.MustSize()[0], l.NCls(), l.Dim
	shifted := l.Ctx.MustUnsqueeze(0, false).MustAdd(l.MetaNet(imFeatures).MustUnsqueeze(1, true), true) // [B, n_ctx, dim]
	ctx := shifted.MustUnsqueeze(1, true).MustExpand([]int64{b, n, l.NCtx(), dim}, false, true)
	l2 := l.TokenSuffix.MustSize()[1]
	prefix := l.TokenPrefix.MustUnsqueeze(0, false).MustExpand([]int64{b, n, 1, dim}, false, true)
	suffix := l.TokenSuffix.MustUnsqueeze(0, false).MustExpand([]int64{b, n, l2, dim}, false, true)
	return ts.MustCat([]*ts.Tensor{prefix, ctx, suffix}, 2)
}

// CoCoOpLogits is CustomCLIP.forward in evaluation (the logits [B, n_cls]):
// the normalised image features condition the prompts, and image i is
// scored against its own prompts' normalised text features. The official
// code loops over the images; chunk images at a time run through the
// text encoder together (the same numbers, fewer calls; at least 1).
func CoCoOpLogits(clip *torchmods.CLIP, l *CoCoOpPromptLearner, images *ts.Tensor, chunk int64) *ts.Tensor {
	return cocoopLogitsFrom(clip, l, normalize(clip.EncodeImage(images, false)), chunk)
}

// cocoopLogitsFrom is CoCoOpLogits from normalised image features [B, embed].
func cocoopLogitsFrom(clip *torchmods.CLIP, l *CoCoOpPromptLearner, img *ts.Tensor, chunk int64) *ts.Tensor {
	b, n := img.MustSize()[0], l.NCls()
	chunk = max(chunk, 1)
	prompts := l.Forward(img) // [B, n_cls, L, dim]
	scale := clip.LogitScale.MustExp(false)
	var parts []*ts.Tensor
	for start := int64(0); start < b; start += chunk {
		c := min(chunk, b-start)
		pts := prompts.MustNarrow(0, start, c, false)
		sz := pts.MustSize()
		eot := l.EOT.MustRepeat([]int64{c}, false)
		txt := encodePrompts(clip, pts.MustReshape([]int64{c * n, sz[2], sz[3]}, true), eot)
		txt = normalize(txt.MustView([]int64{c, n, -1}, true)) // [c, n_cls, embed]
		imf := img.MustNarrow(0, start, c, false).MustMul(scale, true).MustUnsqueeze(1, true)
		parts = append(parts, imf.MustBmm(txt.MustTranspose(1, 2, true), true).MustSqueezeDim(1, true))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return ts.MustCat(parts, 0)
}

// CoCoOpLoss is CustomCLIP.forward in training: F.cross_entropy(logits,
// label), the mean over the batch.
func CoCoOpLoss(clip *torchmods.CLIP, l *CoCoOpPromptLearner, images, labels *ts.Tensor) *ts.Tensor {
	b := images.MustSize()[0]
	return torchmods.CrossEntropy(CoCoOpLogits(clip, l, images, b), labels, torchmods.CEOptions{})
}
