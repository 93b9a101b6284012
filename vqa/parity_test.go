package vqa

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The fixtures come from testdata/gen_vqa_parity.py, which RUNS the
// official code (pengfeiliHEU/MUMC at 27b544d: models/xbert.py's
// BertForMaskedLM and BertLMHeadModel, MUMCBASE.get_contrastive_loss,
// MUMC_VQA.rank_answer) on Debian's torch 1.13, with stubs standing in
// for the transformers and timm imports that compute nothing here.

const parityTol = 1e-5

type fixture struct {
	t *testing.T
	f *safetensors.File
}

func readParity(t *testing.T) fixture {
	f, err := safetensors.Read("testdata/vqa_parity.safetensors")
	require.NoError(t, err)
	return fixture{t, f}
}

func (x fixture) tensor(name string) *ts.Tensor {
	st, ok := x.f.Get(name)
	require.True(x.t, ok, name)
	out, err := torchmods.FromSafetensors(st, gotch.CPU)
	require.NoError(x.t, err, name)
	return out
}

func (x fixture) floats(name string) []float64 {
	return x.tensor(name).MustTotype(gotch.Double, true).Float64Values()
}

// weights are the fixture's tensors under prefix, without it.
func (x fixture) weights(prefix string) map[string]*ts.Tensor {
	w := map[string]*ts.Tensor{}
	for _, st := range x.f.Tensors {
		name := st.Name
		if rest, ok := strings.CutPrefix(name, prefix); ok && !strings.HasPrefix(rest, "in.") && !strings.HasPrefix(rest, "out.") {
			w[rest] = x.tensor(name)
		}
	}
	return w
}

func floats(t *ts.Tensor) []float64 { return t.MustTotype(gotch.Double, false).Float64Values() }

// parityBert is the generator's fusion BERT: 4 layers, the last 2 with
// cross-attention to 12-wide image tokens.
func parityBert(layers, fusion, width int64) torchmods.BertConfig {
	return torchmods.BertConfig{VocabSize: 40, HiddenSize: 16, NumHiddenLayers: layers, NumAttentionHeads: 2, IntermediateSize: 24,
		HiddenAct: "gelu", MaxPositionEmbeddings: 16, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02,
		CrossAttention: true, FusionLayer: fusion, EncoderWidth: width}
}

// loadMLM builds the fusion BERT with its MLM head and loads the
// fixture's weights strictly: every official name is matched.
func loadMLM(t *testing.T, x fixture) (*torchmods.Store, *torchmods.BertForMaskedLM) {
	store := torchmods.NewStore(gotch.CPU)
	m := torchmods.NewBertForMaskedLM(store.Root(), parityBert(4, 2, 12))
	_, err := store.Load(x.weights("mlm."), true)
	require.NoError(t, err)
	return store, m
}

// assertGrads compares every parameter's gradient with the fixture's; a
// parameter the computation did not reach has none here and zeros there.
func assertGrads(t *testing.T, x fixture, store *torchmods.Store, prefix string) {
	for _, p := range store.Params() {
		want := x.floats(prefix + p.Name)
		g := p.Tensor.MustGrad(false)
		if !g.MustDefined() {
			assertClose(t, want, make([]float64, len(want)), p.Name)
			continue
		}
		assertClose(t, want, floats(g), p.Name)
	}
}

// assertClose checks got against want within parityTol times the
// tensor's scale, max(1, max |want|): absolute for tensors of values up to
// 1, relative to the largest value above, since float32 gradients summed
// from terms of size 10 differ from PyTorch's in the sixth digit (the
// order of the additions differs).
func assertClose(t *testing.T, want, got []float64, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	scale := 1.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	worst, at := 0.0, -1
	for i := range want {
		if d := math.Abs(want[i]-got[i]) / scale; d > worst {
			worst, at = d, i
		}
	}
	if worst > parityTol {
		t.Errorf("%s: element %d: want %v, got %v (difference %.2g of the scale %.3g, more than %g)", msg, at, want[at], got[at], worst, scale, parityTol)
	}
}

// The fusion BERT in ALBEF's three modes (text layers only; the fusion
// layers on the text layers' output with the image; all layers) and as a
// causal decoder over the image, outputs and every gradient.
func TestFusionBertMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	store, m := loadMLM(t, x)
	ids, mask, atts := x.tensor("mlm.in.input_ids"), x.tensor("mlm.in.attention_mask"), x.tensor("mlm.in.image_atts")
	img := x.tensor("mlm.in.image_embeds")
	img.MustRequiresGrad_(true)
	b := m.Bert
	text := b.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask, From: 0, To: 2}, false)
	fusion := b.ForwardInput(torchmods.BertInput{Embeds: text, Mask: mask, Context: img, ContextMask: atts, From: 2, To: 4}, false)
	mm := b.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask, Context: img, ContextMask: atts}, false)
	causal := b.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask, Context: img, ContextMask: atts, Causal: true}, false)
	var sum *ts.Tensor
	for _, o := range []struct {
		name string
		out  *ts.Tensor
		w    string
	}{{"text", text, "w_text"}, {"fusion", fusion, "w_fusion"}, {"mm", mm, "w_mm"}, {"causal", causal, "w_causal"}} {
		assertClose(t, x.floats("mlm.out."+o.name), floats(o.out), o.name)
		term := o.out.MustMul(x.tensor("mlm.in."+o.w), false).MustSum(gotch.Float, true)
		if sum == nil {
			sum = term
		} else {
			sum = sum.MustAdd(term, true)
		}
	}
	assert.InDelta(t, x.floats("mlm.out.sum")[0], floats(sum)[0], 1e-4)
	sum.MustBackward()
	assertGrads(t, x, store, "grad.mlm.")
	assertClose(t, x.floats("grad.mlm.in.image_embeds"), floats(img.MustGrad(false)), "")
}

// The masked-LM loss distilled from the momentum model's probabilities.
func TestMLMLossMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	store, m := loadMLM(t, x)
	img := x.tensor("mlm.in.image_embeds")
	img.MustRequiresGrad_(true)
	logits := m.ForwardInput(torchmods.BertInput{IDs: x.tensor("mlm.in.input_ids"), Mask: x.tensor("mlm.in.attention_mask"),
		Context: img, ContextMask: x.tensor("mlm.in.image_atts")}, false)
	soft := x.tensor("mlm.in.logits_m").MustSoftmax(-1, gotch.Float, true)
	loss := MLMLoss(logits, x.tensor("mlm.in.labels"), soft, x.floats("mlm.in.alpha")[0])
	assert.InDelta(t, x.floats("mlm.out.mlm_loss")[0], floats(loss)[0], parityTol)
	loss.MustBackward()
	assertGrads(t, x, store, "gradmlm.mlm.")
	assertClose(t, x.floats("gradmlm.mlm.in.image_embeds"), floats(img.MustGrad(false)), "")
}

// L_ita with the queue, soft cross-modal targets and the unimodal terms,
// its gradients (the temperature's too) and the enqueue that wraps the
// pointer to 0.
func TestContrastiveLossMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	leaf := func(name string) *ts.Tensor {
		v := x.tensor(name)
		v.MustRequiresGrad_(true)
		return v
	}
	imageFeat, textFeat, temp := leaf("ita.in.image_feat"), leaf("ita.in.text_feat"), leaf("ita.in.temp")
	q := &Queue{Image: x.tensor("ita.in.image_queue"), Text: x.tensor("ita.in.text_queue"), Ptr: x.tensor("ita.in.queue_ptr"), Size: 12}
	loss := ContrastiveLoss(imageFeat, textFeat, x.tensor("ita.in.image_feat_m"), x.tensor("ita.in.text_feat_m"), q, temp, x.floats("ita.in.alpha")[0], 0.5)
	assert.InDelta(t, x.floats("ita.out.loss")[0], floats(loss)[0], parityTol)
	q.Enqueue(x.tensor("ita.in.image_feat_m"), x.tensor("ita.in.text_feat_m"))
	loss.MustBackward()
	assertClose(t, x.floats("ita.grad.image_feat"), floats(imageFeat.MustGrad(false)), "")
	assertClose(t, x.floats("ita.grad.text_feat"), floats(textFeat.MustGrad(false)), "")
	assertClose(t, x.floats("ita.grad.temp"), floats(temp.MustGrad(false)), "temp")
	assert.InDeltaSlice(t, x.floats("ita.out.image_queue"), floats(q.Image), 0)
	assert.InDeltaSlice(t, x.floats("ita.out.text_queue"), floats(q.Text), 0)
	assert.Equal(t, x.tensor("ita.out.queue_ptr").Int64Values(), q.Ptr.Int64Values())
}

// The answer decoder: rank_answer's top-k and probabilities, and the
// distilled training loss per question with every gradient.
func TestAnswerDecoderMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	store := torchmods.NewStore(gotch.CPU)
	dec := torchmods.NewBertForMaskedLM(store.Root(), parityBert(2, 0, 16))
	_, err := store.Load(x.weights("dec."), true)
	require.NoError(t, err)
	question, qmask := x.tensor("dec.in.question_states"), x.tensor("dec.in.question_atts")
	var ids, probs *ts.Tensor
	ts.NoGrad(func() {
		ids, probs = RankAnswers(dec, question, qmask, x.tensor("dec.in.answer_ids"), x.tensor("dec.in.answer_atts"), x.tensor("dec.in.k").Int64Values()[0], 0)
	})
	assert.Equal(t, x.tensor("dec.out.topk_ids").Int64Values(), ids.Int64Values())
	assertClose(t, x.floats("dec.out.topk_probs"), floats(probs), "")

	question.MustRequiresGrad_(true)
	trainIDs := x.tensor("dec.in.train_ids")
	labels := trainIDs.MustMaskedFill(trainIDs.MustEq(ts.IntScalar(0), false), ts.IntScalar(-100), false)
	logits := DecoderLogits(dec, trainIDs, x.tensor("dec.in.train_atts"), question, qmask, false)
	loss := DecoderLoss(logits, labels, x.tensor("dec.in.logits_m").MustSoftmax(-1, gotch.Float, true), 0.4)
	assertClose(t, x.floats("dec.out.train_loss"), floats(loss), "")
	loss.MustSum(gotch.Float, true).MustDivScalar(ts.FloatScalar(2), true).MustBackward()
	assertGrads(t, x, store, "grad.dec.")
	assertClose(t, x.floats("grad.dec.in.question_states"), floats(question.MustGrad(false)), "")
}
