package cocoop

import (
	"fmt"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// This file is CoOp (trainers/coop.py at ff61507c): PromptLearner, whose
// context is shared by every class or, with CSC, learned per class, and
// CustomCLIP, whose logits are logit_scale.exp() times the cosine of the
// frozen image encoder's features and the prompts' text features.

// CoOpPromptLearner is coop.py's PromptLearner, registered as
// prompt_learner.ctx ([n_ctx, dim], or [n_cls, n_ctx, dim] with CSC) and
// the buffers prompt_learner.token_prefix and token_suffix: the names of
// the official state dict, whose released prompt files load into it.
type CoOpPromptLearner struct {
	*promptBase
	Ctx      *ts.Tensor
	Position string
}

// NewCoOpPromptLearner builds CoOp's prompt learner for classnames under
// p (the store's "prompt_learner"), from the frozen clip's token embedding.
// A class name or init phrase the tokenizer cannot take, or a prompt
// longer than the CLIP's context, is an error.
func NewCoOpPromptLearner(p torchmods.Path, clip *torchmods.CLIP, tok Tokenizer, classnames []string, o PromptOptions) (*CoOpPromptLearner, error) {
	switch o.Position {
	case PositionEnd, PositionMiddle, PositionFront:
	default:
		return nil, fmt.Errorf("prompt learner: class token position %q: want end, middle or front", o.Position)
	}
	t, err := tokensFor(tok, classnames, o, int(clip.Cfg.ContextLength))
	if err != nil {
		return nil, err
	}
	l := &CoOpPromptLearner{Position: o.Position}
	err = torchmods.Try(func() {
		shape := []int64{t.nCtx, clip.Cfg.TransformerWidth}
		if o.CSC && o.CtxInit == "" {
			shape = []int64{t.nCls, t.nCtx, clip.Cfg.TransformerWidth}
		}
		l.Ctx = p.New("ctx", shape, ctxInit(clip, t), false)
		l.promptBase = newPromptBase(p, clip, t)
	})
	return l, err
}

// Forward is PromptLearner.forward: the prompts' embeddings [n_cls, L,
// dim]. The start token comes first; then the context and the class name
// (with its "." and end token), in the order Position says. middle puts
// the first n_ctx/2 context vectors before the name and the rest after it.
func (l *CoOpPromptLearner) Forward() *ts.Tensor {
	n, dim := l.NCls(), l.Dim
	ctx := l.Ctx
	if ctx.Dim() == 2 {
		ctx = ctx.MustUnsqueeze(0, false).MustExpand([]int64{n, l.NCtx(), dim}, false, true)
	}
	prefix, suffix := l.TokenPrefix, l.TokenSuffix
	if l.Position == PositionEnd {
		return ts.MustCat([]*ts.Tensor{prefix, ctx, suffix}, 1)
	}
	half := l.NCtx() / 2
	rows := make([]*ts.Tensor, n)
	for i := range n {
		nl := l.NameLens()[i]
		prefixI := prefix.MustNarrow(0, i, 1, false)
		ctxI := ctx.MustNarrow(0, i, 1, false)
		sufI := suffix.MustNarrow(0, i, 1, false)
		classI := sufI.MustNarrow(1, 0, nl, false)
		restI := sufI.MustNarrow(1, nl, sufI.MustSize()[1]-nl, false)
		if l.Position == PositionMiddle {
			rows[i] = ts.MustCat([]*ts.Tensor{prefixI, ctxI.MustNarrow(1, 0, half, false), classI,
				ctxI.MustNarrow(1, half, l.NCtx()-half, false), restI}, 1)
		} else {
			rows[i] = ts.MustCat([]*ts.Tensor{prefixI, classI, ctxI, restI}, 1)
		}
	}
	return ts.MustCat(rows, 0)
}

// TextFeatures are the prompts' text features [n_cls, embed], not
// normalised.
func (l *CoOpPromptLearner) TextFeatures(clip *torchmods.CLIP) *ts.Tensor {
	return encodePrompts(clip, l.Forward(), l.EOT)
}

// CoOpLogits is CustomCLIP.forward: logit_scale.exp() * normalised image
// features @ normalised text featuresᵀ, [B, n_cls], for images [B, 3, R,
// R]. The CLIP is frozen (its image encoder in eval mode, as build_model
// leaves it and Dassl's set_model_mode does not change it).
func CoOpLogits(clip *torchmods.CLIP, l *CoOpPromptLearner, images *ts.Tensor) *ts.Tensor {
	img := normalize(clip.EncodeImage(images, false))
	return coopLogitsFrom(clip, img, normalize(l.TextFeatures(clip)))
}

// coopLogitsFrom is logit_scale * image_features @ text_features.t(),
// evaluated left to right as Python does: the scale multiplies the image
// features first.
func coopLogitsFrom(clip *torchmods.CLIP, img, txt *ts.Tensor) *ts.Tensor {
	return img.MustMul(clip.LogitScale.MustExp(false), false).MustMatmul(txt.MustT(false), true)
}
