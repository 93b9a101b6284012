package cocoop

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The fixture is testdata/gen_prompt_parity.py's: a transcription of
// trainers/coop.py and trainers/cocoop.py (KaiyangZhou/CoOp at ff61507c)
// on OpenAI's clip/model.py (at d05afc4), in float64.

type parityCase struct {
	method string
	opts   PromptOptions
}

var parityCases = map[string]parityCase{
	"coop_end_init":    {"coop", PromptOptions{NCtx: 4, CtxInit: "a photo of a", Position: PositionEnd}},
	"coop_middle_rand": {"coop", PromptOptions{NCtx: 3, Position: PositionMiddle}},
	"coop_front_csc":   {"coop", PromptOptions{NCtx: 4, CSC: true, Position: PositionFront}},
	"coop_end_csc":     {"coop", PromptOptions{NCtx: 2, CSC: true, Position: PositionEnd}},
	"cocoop_init":      {"cocoop", PromptOptions{CtxInit: "a photo of a"}},
	"cocoop_rand":      {"cocoop", PromptOptions{NCtx: 2}},
}

// Prompts, logits, the loss and every gradient of the prompt learner's
// parameters match the official code's within 1e-5 (relative to each
// tensor's largest reference value, as every parity test here), for every
// class token position, shared and class-specific contexts, random and
// phrase initialisation, and CoCoOp with its Meta-Net. The buffers Go
// computes from the CLIP's token embedding equal the official ones
// exactly, and the official state dict loads strictly under
// prompt_learner.*.
func TestPromptLearnerParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	f, err := safetensors.Read("testdata/prompt_parity.safetensors")
	require.NoError(t, err)
	ref, err := torchmods.LoadWeights("testdata/prompt_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	var words, classnames []string
	require.NoError(t, json.Unmarshal([]byte(f.Metadata["words"]), &words))
	require.NoError(t, json.Unmarshal([]byte(f.Metadata["classnames"]), &classnames))
	tok, err := NewWordTokenizer(words)
	require.NoError(t, err)

	clipStore := torchmods.NewStore(gotch.CPU)
	defer clipStore.Drop()
	clip := torchmods.NewCLIP(clipStore.Root(), torchmods.CLIPConfig{EmbedDim: 48, ImageResolution: 16, VisionLayers: []int64{1}, VisionWidth: 32,
		VisionPatchSize: 8, VisionHeads: 2, ContextLength: 16, VocabSize: tok.VocabSize(), TransformerWidth: 32, TransformerHeads: 2, TransformerLayers: 2})
	_, err = clipStore.Load(testutil.Sub(ref, "sd."), true)
	require.NoError(t, err)
	clipStore.Freeze()
	image, labels := ref["image"], ref["labels"]

	worstOut, worstGrad := 0.0, 0.0
	for name, c := range parityCases {
		store := torchmods.NewStore(gotch.CPU)
		p := store.Root().Sub("prompt_learner")
		sd := testutil.Sub(ref, name+".sd.")
		var prompts, logits, loss *ts.Tensor
		var buffers map[string]*ts.Tensor
		if c.method == "coop" {
			l, err := NewCoOpPromptLearner(p, clip, tok, classnames, c.opts)
			require.NoError(t, err, name)
			buffers = map[string]*ts.Tensor{"token_prefix": l.TokenPrefix, "token_suffix": l.TokenSuffix, "ctx": l.Ctx}
			loadLearner(t, store, sd, name, buffers, c.opts.CtxInit != "")
			prompts = l.Forward()
			logits = CoOpLogits(clip, l, image)
			loss = torchmods.CrossEntropy(logits, labels, torchmods.CEOptions{})
		} else {
			l, err := NewCoCoOpPromptLearner(p, clip, tok, classnames, c.opts)
			require.NoError(t, err, name)
			buffers = map[string]*ts.Tensor{"token_prefix": l.TokenPrefix, "token_suffix": l.TokenSuffix, "ctx": l.Ctx}
			loadLearner(t, store, sd, name, buffers, c.opts.CtxInit != "")
			ts.NoGrad(func() { prompts = l.Forward(normalize(clip.EncodeImage(image, false))) })
			ts.NoGrad(func() { logits = CoCoOpLogits(clip, l, image, 1) })
			loss = CoCoOpLoss(clip, l, image, labels)
		}
		for what, got := range map[string]*ts.Tensor{"prompts": prompts, "logits": logits, "loss": loss.MustReshape([]int64{1}, false)} {
			testutil.Close(t, got, ref[name+"."+what], 1e-5, "%s %s", name, what)
			worstOut = math.Max(worstOut, testutil.RelErr(got, ref[name+"."+what]))
		}
		require.NoError(t, loss.Backward())
		got := map[string]*ts.Tensor{}
		for _, prm := range store.Params() {
			if prm.Tensor.MustRequiresGrad() {
				got[strings.TrimPrefix(prm.Name, "prompt_learner.")] = prm.Tensor.MustGrad(false)
			}
		}
		want := testutil.Sub(ref, name+".grad.")
		n := testutil.Parity(t, got, want, 1e-5, name+" grad")
		assert.Equal(t, len(want), n, "%s: every parameter's gradient compared", name)
		for k, g := range got {
			worstGrad = math.Max(worstGrad, testutil.RelErr(g, want[k]))
		}
		store.Drop()
	}
	t.Logf("prompt learner parity over %d cases: prompts, logits and losses max relative error %.2g; gradients %.2g", len(parityCases), worstOut, worstGrad)
}

// loadLearner checks the learner's own buffers (and its phrase-initialised
// context) against the official ones, bit for bit, then loads the
// official state dict strictly, names prefixed with prompt_learner.
func loadLearner(t *testing.T, store *torchmods.Store, sd map[string]*ts.Tensor, name string, own map[string]*ts.Tensor, phraseInit bool) {
	t.Helper()
	for k, x := range own {
		if k == "ctx" && !phraseInit {
			continue // drawn from torch's generator there
		}
		assert.Equal(t, sd[k].Float64Values(), x.Float64Values(), "%s: %s computed from the CLIP's token embedding", name, k)
	}
	w := map[string]*ts.Tensor{}
	for k, x := range sd {
		w["prompt_learner."+k] = x
	}
	_, err := store.Load(w, true)
	require.NoError(t, err, "%s: the official state dict loads strictly", name)
}
