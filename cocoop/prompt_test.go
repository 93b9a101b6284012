package cocoop

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// testWords is the tiny CLIPs' vocabulary in these tests.
var testWords = []string{"a", "photo", "of", "x", ".", ",", "red", "blue", "green", "circle", "square", "striped", "big", "dark", "triangle"}

// tinyCLIP is a small random CLIP (context 12, text width 16, embedding
// 32) in a store of its own, frozen as the tasks freeze it, with a word
// tokenizer over testWords.
func tinyCLIP(t *testing.T) (*torchmods.CLIP, *torchmods.Store, *WordTokenizer) {
	t.Helper()
	tok, err := NewWordTokenizer(testWords)
	require.NoError(t, err)
	store := torchmods.NewStore(gotch.CPU)
	t.Cleanup(store.Drop)
	ts.ManualSeed(1)
	m := torchmods.NewCLIP(store.Root(), torchmods.CLIPConfig{EmbedDim: 32, ImageResolution: 16, VisionLayers: []int64{1}, VisionWidth: 16,
		VisionPatchSize: 8, VisionHeads: 2, ContextLength: 12, VocabSize: tok.VocabSize(), TransformerWidth: 16, TransformerHeads: 2, TransformerLayers: 1})
	store.Freeze()
	return m, store, tok
}

// rows reads a float tensor [..., d] as rows of d values.
func rowsOf(x *ts.Tensor) [][]float64 {
	s := x.MustSize()
	d := s[len(s)-1]
	v := x.MustContiguous(false).Float64Values()
	out := make([][]float64, len(v)/int(d))
	for i := range out {
		out[i] = v[i*int(d) : (i+1)*int(d)]
	}
	return out
}

var testClasses = []string{"red circle", "blue_striped square", "green big dark triangle"}

// The prompts of every class token position, with a shared and a
// class-specific context, have shape [n_cls, L, dim] and hold, row by
// row, the start token, the context and the class tokens in the order the
// position says, then ".", the end token and the padding: each row
// checked against the token embeddings and the context by index.
func TestCoOpPromptLayouts(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	clip, _, tok := tinyCLIP(t)
	emb := rowsOf(clip.TokenEmbedding.Weight)
	for _, pos := range []string{PositionEnd, PositionMiddle, PositionFront} {
		for _, csc := range []bool{false, true} {
			store := torchmods.NewStore(gotch.CPU)
			l, err := NewCoOpPromptLearner(store.Root().Sub("prompt_learner"), clip, tok, testClasses, PromptOptions{NCtx: 4, CSC: csc, Position: pos})
			require.NoError(t, err)
			require.Equal(t, []int64{2, 3, 4}, l.NameLens(), "name lengths count the name's tokens")
			want := []int64{4, 16}
			if csc {
				want = []int64{3, 4, 16}
			}
			require.Equal(t, want, l.Ctx.MustSize(), "ctx shape (csc %v)", csc)
			p := l.Forward()
			require.Equal(t, []int64{3, 12, 16}, p.MustSize(), "%s csc=%v", pos, csc)
			ctx := rowsOf(l.Ctx)
			for i := range 3 {
				ids := l.tok.tokenized[i]
				got := rowsOf(p.MustSelect(0, int64(i), false))
				ctxRow := func(k int) []float64 {
					if csc {
						return ctx[i*4+k]
					}
					return ctx[k]
				}
				nl := int(l.NameLens()[i])
				// the expected sequence: where each of the 12 rows comes from
				var exp [][]float64
				exp = append(exp, emb[ids[0]]) // start token
				cls := func() {
					for j := range nl {
						exp = append(exp, emb[ids[5+j]]) // the class tokens follow "X X X X" in the tokenized prompt
					}
				}
				switch pos {
				case PositionEnd:
					for k := range 4 {
						exp = append(exp, ctxRow(k))
					}
					cls()
				case PositionMiddle:
					exp = append(exp, ctxRow(0), ctxRow(1))
					cls()
					exp = append(exp, ctxRow(2), ctxRow(3))
				case PositionFront:
					cls()
					for k := range 4 {
						exp = append(exp, ctxRow(k))
					}
				}
				for j := 5 + nl; j < 12; j++ {
					exp = append(exp, emb[ids[j]]) // ".", end token, padding
				}
				require.Len(t, exp, 12)
				for j := range 12 {
					assert.InDeltaSlice(t, exp[j], got[j], 0, "%s csc=%v class %d row %d", pos, csc, i, j)
				}
			}
			store.Drop()
		}
	}
}

// token_prefix is the start token's embedding and token_suffix the
// embeddings of the tokenized prompt after the context, for the ids of
// "X X X X <name>." exactly; ctx_init's context is the phrase's token
// embeddings, and its count sets n_ctx.
func TestPromptBuffersAreTheTokenEmbeddings(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	clip, _, tok := tinyCLIP(t)
	emb := rowsOf(clip.TokenEmbedding.Weight)
	id := func(w string) int64 { x, err := tok.Encode(w); require.NoError(t, err); return x[0] }
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	l, err := NewCoOpPromptLearner(store.Root().Sub("prompt_learner"), clip, tok, testClasses, PromptOptions{NCtx: 4, Position: PositionEnd})
	require.NoError(t, err)
	assert.Equal(t, []string{"X X X X red circle.", "X X X X blue striped square.", "X X X X green big dark triangle."}, l.Prompts())
	x, dot := id("x"), id(".")
	wantIDs := [][]int64{
		{tok.SOT(), x, x, x, x, id("red"), id("circle"), dot, tok.EOT(), 0, 0, 0},
		{tok.SOT(), x, x, x, x, id("blue"), id("striped"), id("square"), dot, tok.EOT(), 0, 0},
		{tok.SOT(), x, x, x, x, id("green"), id("big"), id("dark"), id("triangle"), dot, tok.EOT(), 0},
	}
	assert.Equal(t, wantIDs, l.tok.tokenized)
	assert.Equal(t, []int64{8, 9, 10}, l.EOT.Int64Values(), "features are pooled at the end token")
	require.Equal(t, []int64{3, 1, 16}, l.TokenPrefix.MustSize())
	require.Equal(t, []int64{3, 7, 16}, l.TokenSuffix.MustSize())
	pre, suf := rowsOf(l.TokenPrefix), rowsOf(l.TokenSuffix)
	for i := range 3 {
		assert.Equal(t, emb[tok.SOT()], pre[i])
		for j := range 7 {
			assert.Equal(t, emb[wantIDs[i][5+j]], suf[i*7+j], "class %d suffix %d", i, j)
		}
	}
	for _, p := range store.Params() {
		if p.Name == "prompt_learner.token_prefix" || p.Name == "prompt_learner.token_suffix" {
			assert.False(t, p.Tensor.MustRequiresGrad(), "%s is a buffer", p.Name)
		}
	}

	store2 := torchmods.NewStore(gotch.CPU)
	defer store2.Drop()
	li, err := NewCoOpPromptLearner(store2.Root().Sub("prompt_learner"), clip, tok, testClasses, PromptOptions{NCtx: 16, CtxInit: "a_photo of a", Position: PositionEnd})
	require.NoError(t, err)
	assert.Equal(t, int64(4), li.NCtx(), "n_ctx is the init phrase's word count")
	assert.Equal(t, "a photo of a red circle.", li.Prompts()[0])
	ctx := rowsOf(li.Ctx)
	for k, w := range []string{"a", "photo", "of", "a"} {
		assert.Equal(t, emb[id(w)], ctx[k], "ctx %d is the embedding of %q", k, w)
	}
	assert.Equal(t, []int64{3, 7, 16}, li.TokenSuffix.MustSize())

	store3 := torchmods.NewStore(gotch.CPU)
	defer store3.Drop()
	_, err = NewCoOpPromptLearner(store3.Root().Sub("prompt_learner"), clip, tok, []string{"purple circle"}, PromptOptions{NCtx: 4, Position: PositionEnd})
	assert.ErrorContains(t, err, `the word "purple" is not in the CLIP's vocabulary`)
	_, err = NewCoOpPromptLearner(store3.Root().Sub("prompt_learner"), clip, tok, []string{"red red red red red red circle"}, PromptOptions{NCtx: 4, Position: PositionEnd})
	assert.ErrorContains(t, err, "more than the context length 12")
}

// The Meta-Net's output for image b is added to every context vector of
// every class's prompt for that image, and to nothing else.
func TestCoCoOpMetaNetShiftsEveryContextToken(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	clip, _, tok := tinyCLIP(t)
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	l, err := NewCoCoOpPromptLearner(store.Root().Sub("prompt_learner"), clip, tok, testClasses, PromptOptions{CtxInit: "a photo of a"})
	require.NoError(t, err)
	require.Equal(t, []int64{2, 32}, l.Linear1.Weight.MustSize(), "linear1: vis_dim -> vis_dim/16")
	require.Equal(t, []int64{16, 2}, l.Linear2.Weight.MustSize(), "linear2: vis_dim/16 -> ctx_dim")
	names := map[string]bool{}
	for _, p := range store.Params() {
		names[p.Name] = true
	}
	assert.Equal(t, map[string]bool{"prompt_learner.ctx": true, "prompt_learner.meta_net.linear1.weight": true, "prompt_learner.meta_net.linear1.bias": true,
		"prompt_learner.meta_net.linear2.weight": true, "prompt_learner.meta_net.linear2.bias": true,
		"prompt_learner.token_prefix": true, "prompt_learner.token_suffix": true}, names, "the official state dict's names")
	imf := ts.MustRandn([]int64{2, 32}, gotch.Float, gotch.CPU)
	p := l.Forward(imf)
	require.Equal(t, []int64{2, 3, 12, 16}, p.MustSize())
	bias := rowsOf(l.MetaNet(imf))
	ctx, pre, suf := rowsOf(l.Ctx), rowsOf(l.TokenPrefix), rowsOf(l.TokenSuffix)
	for b := range 2 {
		for c := range 3 {
			got := rowsOf(p.MustSelect(0, int64(b), false).MustSelect(0, int64(c), true))
			assert.Equal(t, pre[c], got[0])
			for k := range 4 {
				for d := range 16 {
					assert.InDelta(t, ctx[k][d]+bias[b][d], got[1+k][d], 1e-6, "image %d class %d ctx %d dim %d", b, c, k, d)
				}
			}
			for j := range 7 {
				assert.Equal(t, suf[c*7+j], got[5+j])
			}
		}
	}
	// Each image is scored against its own prompts: the logits of a batch
	// are those of each image alone.
	images := ts.MustRandn([]int64{3, 3, 16, 16}, gotch.Float, gotch.CPU)
	all := CoCoOpLogits(clip, l, images, 2)
	require.Equal(t, []int64{3, 3}, all.MustSize())
	for b := range int64(3) {
		one := CoCoOpLogits(clip, l, images.MustNarrow(0, b, 1, false), 1)
		assert.InDeltaSlice(t, one.Float64Values(), all.MustSelect(0, b, false).Float64Values(), 1e-5)
	}
}

// Only the prompt learner trains: after backward through CoOp's and
// CoCoOp's losses every CLIP parameter (logit_scale included) has no
// gradient, while every parameter of the prompt learner has a non-zero
// one and its buffers none; the optimizer holds the learner's parameters
// only.
func TestOnlyThePromptLearnerGetsGradients(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	clip, clipStore, tok := tinyCLIP(t)
	images := ts.MustRandn([]int64{2, 3, 16, 16}, gotch.Float, gotch.CPU)
	labels := torchmods.FromSlice([]int64{0, 2}, []int64{2}, gotch.CPU)
	for _, method := range []string{"coop", "cocoop"} {
		store := torchmods.NewStore(gotch.CPU)
		var loss *ts.Tensor
		if method == "coop" {
			l, err := NewCoOpPromptLearner(store.Root().Sub("prompt_learner"), clip, tok, testClasses, PromptOptions{NCtx: 4, Position: PositionEnd})
			require.NoError(t, err)
			loss = torchmods.CrossEntropy(CoOpLogits(clip, l, images), labels, torchmods.CEOptions{})
		} else {
			l, err := NewCoCoOpPromptLearner(store.Root().Sub("prompt_learner"), clip, tok, testClasses, PromptOptions{CtxInit: "a photo of a"})
			require.NoError(t, err)
			loss = CoCoOpLoss(clip, l, images, labels)
		}
		opt := NewDasslSGD(store, 0.9, 5e-4)
		require.NoError(t, loss.Backward())
		for _, p := range clipStore.Params() {
			assert.False(t, p.Tensor.MustRequiresGrad(), "%s: %s is frozen", method, p.Name)
			assert.False(t, p.Tensor.MustGrad(false).MustDefined(), "%s: %s has no gradient", method, p.Name)
		}
		trained := 0
		for _, p := range store.Params() {
			g := p.Tensor.MustGrad(false)
			if !p.Tensor.MustRequiresGrad() {
				assert.False(t, g.MustDefined(), "%s: buffer %s has no gradient", method, p.Name)
				continue
			}
			trained++
			require.True(t, g.MustDefined(), "%s: %s has a gradient", method, p.Name)
			assert.Greater(t, g.MustAbs(false).MustMax(true).Float64Values()[0], 0.0, "%s: %s's gradient is not zero", method, p.Name)
		}
		before := map[string][]float64{}
		for _, p := range store.Params() {
			before[p.Name] = p.Tensor.Float64Values()
		}
		clipBefore := clip.TextProjection.Float64Values()
		require.NoError(t, opt.Step(0.1))
		names, _ := opt.State()
		assert.Len(t, names, trained, "%s: the optimizer holds the learner's %d parameters and nothing else", method, trained)
		for _, n := range names {
			assert.Contains(t, n, "prompt_learner.")
		}
		for _, p := range store.Params() {
			changed := !assert.ObjectsAreEqual(before[p.Name], p.Tensor.Float64Values())
			assert.Equal(t, p.Tensor.MustRequiresGrad(), changed, "%s: %s moves iff it trains", method, p.Name)
		}
		assert.Equal(t, clipBefore, clip.TextProjection.Float64Values(), "the CLIP does not move")
		store.Drop()
	}
}

// The Dassl schedule: epoch 0 at the constant warm-up rate, then the
// cosine restarted after it, one rate per epoch.
func TestDasslScheduleIsEpochWise(t *testing.T) {
	sched, err := DasslSchedule(0.002, 1e-5, 1, 10, 3)
	require.NoError(t, err)
	for step := range int64(3) {
		assert.Equal(t, 1e-5, sched(step))
	}
	assert.Equal(t, 0.002, sched(3))
	assert.Equal(t, 0.002, sched(5))
	assert.InDelta(t, 0.002*(1+math.Cos(math.Pi/10))/2, sched(6), 1e-15)
	assert.InDelta(t, 0.002*(1+math.Cos(8*math.Pi/10))/2, sched(29), 1e-15, "the last epoch of ten")
}

// NewDasslSGD is torch.optim.SGD(momentum 0.9, weight_decay wd) on every
// parameter, the 1-D ones included: two steps by hand.
func TestDasslSGDDecaysEveryParameter(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	b := store.Root().New("bias", []int64{2}, torchmods.Const(1), true)
	opt := NewDasslSGD(store, 0.9, 0.5)
	p, buf := 1.0, 0.0
	for range 2 {
		require.NoError(t, b.MustMulScalar(ts.FloatScalar(3), false).MustSum(gotch.Float, true).Backward())
		require.NoError(t, opt.Step(0.1))
		d := 3 + 0.5*p
		if buf == 0 {
			buf = d
		} else {
			buf = 0.9*buf + d
		}
		p -= 0.1 * buf
	}
	assert.InDeltaSlice(t, []float64{p, p}, b.Float64Values(), 1e-6)
}

// With CLIP's own BPE tokenizer and context of 77: the ids of "a photo
// of a" initialise the context (simple_tokenizer's 320, 1125, 539, 320),
// "X X X X" is four tokens, a class name counts its BPE tokens, and
// features are pooled at <|endoftext|>, 49407.
func TestPromptsWithCLIPsBPE(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	tok, err := LoadTokenizer("bpe", t.TempDir())
	require.NoError(t, err)
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	clip := torchmods.NewCLIP(store.Root(), torchmods.CLIPConfig{EmbedDim: 16, ImageResolution: 16, VisionLayers: []int64{1}, VisionWidth: 16,
		VisionPatchSize: 8, VisionHeads: 2, ContextLength: 77, VocabSize: 49408, TransformerWidth: 16, TransformerHeads: 2, TransformerLayers: 1})
	store.Freeze()
	classes := []string{"golden_retriever", "Abyssinian"}
	ls := torchmods.NewStore(gotch.CPU)
	defer ls.Drop()
	l, err := NewCoCoOpPromptLearner(ls.Root().Sub("prompt_learner"), clip, tok, classes, PromptOptions{CtxInit: "a photo of a"})
	require.NoError(t, err)
	assert.Equal(t, []int64{49406, 320, 1125, 539, 320, 49407, 0}, l.tok.ctxIDs[:7])
	assert.Equal(t, []string{"a photo of a golden retriever.", "a photo of a Abyssinian."}, l.Prompts())
	// openai/CLIP's simple_tokenizer (d05afc4), run on the two names:
	// golden</w> retriever</w> (3878, 28394) and aby ss inian</w>
	// (16342, 690, 36638).
	assert.Equal(t, []int64{2, 3}, l.NameLens())
	eot := l.EOT.Int64Values()
	for i, row := range l.tok.tokenized {
		assert.Equal(t, int64(49407), row[eot[i]], "pooled at the end token")
	}
	assert.Equal(t, []int64{2, 77, 16}, l.Forward(ts.MustRandn([]int64{2, 16}, gotch.Float, gotch.CPU)).MustSize()[1:])
	lr, err := NewCoOpPromptLearner(ls.Root().Sub("coop"), clip, tok, classes, PromptOptions{NCtx: 4, Position: PositionEnd})
	require.NoError(t, err)
	assert.Equal(t, int64(4), lr.NCtx())
	assert.Equal(t, "X X X X golden retriever.", lr.Prompts()[0])
}
