package cocoop

import (
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// This file is what CoOp's and CoCoOp's PromptLearner share
// (trainers/coop.py and trainers/cocoop.py at ff61507c, PromptLearner.
// __init__): the context's initialisation, the prompts "X X X X name."
// and their token ids, and the frozen token_prefix (the start token's
// embedding) and token_suffix (the class name, ".", the end token and the
// padding) buffers, computed from the frozen CLIP's token embedding. The
// learners are in coop.go and cocoop.go.

// The class token positions of TRAINER.COOP.CLASS_TOKEN_POSITION.
const (
	PositionEnd    = "end"
	PositionMiddle = "middle"
	PositionFront  = "front"
)

// PromptOptions are TRAINER.COOP's and TRAINER.COCOOP's prompt settings.
type PromptOptions struct {
	// NCtx is N_CTX, the number of context vectors, used with random
	// initialisation; with CtxInit the count is CtxInit's number of
	// words, as the official code sets n_ctx = len(ctx_init.split(" ")).
	NCtx int64
	// CtxInit is CTX_INIT: a phrase ("a photo of a", "_" read as a space)
	// whose token embeddings initialise the context; "" for random
	// initialisation, N(0, 0.02).
	CtxInit string
	// CSC is CoOp's class-specific context (random initialisation only:
	// with CtxInit the official code makes one shared context whatever
	// CSC says).
	CSC bool
	// Position is CoOp's CLASS_TOKEN_POSITION: end, middle or front.
	// CoCoOp's prompts always end with the class.
	Position string
}

// promptTokens are the token-level parts of a PromptLearner.
type promptTokens struct {
	nCls, nCtx int64
	names      []string // the class names with "_" read as " "
	nameLens   []int64  // len(_tokenizer.encode(name)) per class
	prefix     string   // prompt_prefix: CtxInit, or "X" n_ctx times
	prompts    []string // prompt_prefix + " " + name + "."
	ctxIDs     []int64  // clip.tokenize(ctx_init)[0]: the init phrase's row, nil for random init
	tokenized  [][]int64
}

// tokensFor tokenises the prompts of classnames as PromptLearner.__init__
// does, for a context of context tokens.
func tokensFor(tok Tokenizer, classnames []string, o PromptOptions, context int) (*promptTokens, error) {
	if len(classnames) == 0 {
		return nil, fmt.Errorf("prompt learner: no class names")
	}
	t := &promptTokens{nCls: int64(len(classnames)), nCtx: o.NCtx}
	if o.CtxInit != "" {
		init := strings.ReplaceAll(o.CtxInit, "_", " ")
		t.nCtx = int64(len(strings.Split(init, " ")))
		rows, err := tok.Tokenize([]string{init}, context)
		if err != nil {
			return nil, fmt.Errorf("prompt learner: ctx_init: %w", err)
		}
		ids, err := tok.Encode(init)
		if err != nil {
			return nil, fmt.Errorf("prompt learner: ctx_init: %w", err)
		}
		if int64(len(ids)) != t.nCtx {
			// The official code takes n_ctx embeddings after the start
			// token, one per space-separated word: a word of two tokens
			// would initialise the context with half a phrase.
			return nil, fmt.Errorf("prompt learner: ctx_init %q is %d words but %d tokens: the official initialisation needs one token per word", init, t.nCtx, len(ids))
		}
		t.ctxIDs, t.prefix = rows[0], init
	} else {
		if t.nCtx < 1 {
			return nil, fmt.Errorf("prompt learner: n_ctx must be positive with random initialisation, got %d", t.nCtx)
		}
		t.prefix = strings.TrimSpace(strings.Repeat("X ", int(t.nCtx)))
	}
	for _, c := range classnames {
		name := strings.ReplaceAll(c, "_", " ")
		ids, err := tok.Encode(name)
		if err != nil {
			return nil, fmt.Errorf("prompt learner: class name: %w", err)
		}
		t.names = append(t.names, name)
		t.nameLens = append(t.nameLens, int64(len(ids)))
		t.prompts = append(t.prompts, t.prefix+" "+name+".")
	}
	var err error
	if t.tokenized, err = tok.Tokenize(t.prompts, context); err != nil {
		return nil, fmt.Errorf("prompt learner: %w", err)
	}
	// The learners replace tokens 1..n_ctx by the context: they must be the
	// prefix's n_ctx tokens, which "X" (one BPE token) and the init phrase
	// (checked above) are.
	xs, err := tok.Encode(t.prefix)
	if err != nil {
		return nil, fmt.Errorf("prompt learner: %w", err)
	}
	if int64(len(xs)) != t.nCtx {
		return nil, fmt.Errorf("prompt learner: the prompt prefix %q is %d tokens, not n_ctx = %d", t.prefix, len(xs), t.nCtx)
	}
	return t, nil
}

// flat is the tokenized prompts as one int64 slice, row after row.
func (t *promptTokens) flat() []int64 {
	var out []int64
	for _, r := range t.tokenized {
		out = append(out, r...)
	}
	return out
}

// promptBase is the state both learners hold: the token ids, the end
// positions the text encoder pools at, and the frozen buffers.
type promptBase struct {
	tok *promptTokens
	// Tokenized is tokenized_prompts [n_cls, L], int64.
	Tokenized *ts.Tensor
	// EOT is tokenized_prompts.argmax(-1) [n_cls]: where TextEncoder takes
	// each prompt's feature.
	EOT *ts.Tensor
	// TokenPrefix [n_cls, 1, dim] and TokenSuffix [n_cls, L-1-n_ctx, dim]
	// are the registered buffers token_prefix and token_suffix.
	TokenPrefix, TokenSuffix *ts.Tensor
	Dim                      int64
}

// NCls is the number of classes.
func (b *promptBase) NCls() int64 { return b.tok.nCls }

// NCtx is the number of context vectors.
func (b *promptBase) NCtx() int64 { return b.tok.nCtx }

// Prompts are the prompt texts, "X X X X name." or "a photo of a name.".
func (b *promptBase) Prompts() []string { return b.tok.prompts }

// NameLens are the class names' token counts.
func (b *promptBase) NameLens() []int64 { return b.tok.nameLens }

// newPromptBase registers token_prefix and token_suffix under p, computed
// under no_grad from the CLIP's token embedding of the tokenized prompts,
// as the official code does (they are saved with the learner and dropped
// when one is loaded: LoadPromptLearner).
func newPromptBase(p torchmods.Path, clip *torchmods.CLIP, t *promptTokens) *promptBase {
	dev := clip.PositionalEmbedding.MustDevice()
	l := int64(len(t.tokenized[0]))
	b := &promptBase{tok: t, Dim: clip.Cfg.TransformerWidth}
	b.Tokenized = torchmods.FromSlice(t.flat(), []int64{t.nCls, l}, dev)
	ts.Persist(b.Tokenized)
	b.EOT = b.Tokenized.MustArgmax([]int64{-1}, false, false)
	ts.Persist(b.EOT)
	var emb *ts.Tensor
	ts.NoGrad(func() { emb = clip.TokenEmbedding.Forward(b.Tokenized) })
	b.TokenPrefix = p.NewBuffer("token_prefix", []int64{t.nCls, 1, b.Dim}, copyInit(emb.MustNarrow(1, 0, 1, false)))
	b.TokenSuffix = p.NewBuffer("token_suffix", []int64{t.nCls, l - 1 - t.nCtx, b.Dim}, copyInit(emb.MustNarrow(1, 1+t.nCtx, l-1-t.nCtx, false)))
	return b
}

// ctxInit is the context's initialisation: the init phrase's token
// embeddings (embedding[0, 1:1+n_ctx]) or N(0, 0.02), for shape.
func ctxInit(clip *torchmods.CLIP, t *promptTokens) torchmods.Init {
	if t.ctxIDs == nil {
		return torchmods.Normal(0.02)
	}
	return func(shape []int64, dev gotch.Device) *ts.Tensor {
		ids := torchmods.FromSlice(t.ctxIDs, []int64{1, int64(len(t.ctxIDs))}, dev)
		emb := clip.TokenEmbedding.Forward(ids)
		return copyInit(emb.MustSelect(0, 0, true).MustNarrow(0, 1, t.nCtx, true))(shape, dev)
	}
}

// copyInit initialises a tensor with a copy of x (its own storage, not a
// view of x's).
func copyInit(x *ts.Tensor) torchmods.Init {
	return func(shape []int64, dev gotch.Device) *ts.Tensor {
		out := ts.MustZeros(shape, x.DType(), dev)
		out.Copy_(x.MustDetach(false).MustReshape(shape, true))
		return out
	}
}

// encodePrompts is TextEncoder.forward: the prompts' embeddings [N, L,
// dim] through the frozen CLIP's text transformer, pooled at eot [N], to
// features [N, embed].
func encodePrompts(clip *torchmods.CLIP, prompts, eot *ts.Tensor) *ts.Tensor {
	return clip.EncodeTokens(prompts, eot)
}

// normalize is x / x.norm(dim=-1, keepdim=True).
func normalize(x *ts.Tensor) *ts.Tensor {
	return x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{-1}, true, false), false)
}
