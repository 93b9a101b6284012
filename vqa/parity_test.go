package vqa

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/internal/testutil/parity"
	"github.com/reprolab/repro/torchmods"
)

// The fixtures come from testdata/gen_vqa_parity.py, which RUNS the
// official code (pengfeiliHEU/MUMC at 27b544d: models/xbert.py's
// BertForMaskedLM and BertLMHeadModel, MUMCBASE.get_contrastive_loss,
// MUMC_VQA.rank_answer) on Debian's torch 1.13, with stubs standing in
// for the transformers and timm imports that compute nothing here.

const parityTol = 1e-5

func readParity(t *testing.T) parity.Fixture {
	return parity.Read(t, "testdata/vqa_parity.safetensors")
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
func loadMLM(t *testing.T, x parity.Fixture) (*torchmods.Store, *torchmods.BertForMaskedLM) {
	store := torchmods.NewStore(gotch.CPU)
	m := torchmods.NewBertForMaskedLM(store.Root(), parityBert(4, 2, 12))
	_, err := store.Load(x.Weights("mlm."), true)
	require.NoError(t, err)
	return store, m
}

// assertGrads compares every parameter's gradient with the fixture's; a
// parameter the computation did not reach has none here and zeros there.
func assertGrads(t *testing.T, x parity.Fixture, store *torchmods.Store, prefix string) {
	for _, p := range store.Params() {
		want := x.Floats(prefix + p.Name)
		g := p.Tensor.MustGrad(false)
		if !g.MustDefined() {
			assertClose(t, want, make([]float64, len(want)), p.Name)
			continue
		}
		assertClose(t, want, floats(g), p.Name)
	}
}

// assertClose checks got against want within parityTol of want's scale
// (testutil.CloseFloats).
func assertClose(t *testing.T, want, got []float64, msg string) {
	t.Helper()
	testutil.CloseFloats(t, want, got, parityTol, msg)
}

// The fusion BERT in ALBEF's three modes (text layers only; the fusion
// layers on the text layers' output with the image; all layers) and as a
// causal decoder over the image, outputs and every gradient.
func TestFusionBertMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	store, m := loadMLM(t, x)
	ids, mask, atts := x.Tensor("mlm.in.input_ids"), x.Tensor("mlm.in.attention_mask"), x.Tensor("mlm.in.image_atts")
	img := x.Tensor("mlm.in.image_embeds")
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
		assertClose(t, x.Floats("mlm.out."+o.name), floats(o.out), o.name)
		term := o.out.MustMul(x.Tensor("mlm.in."+o.w), false).MustSum(gotch.Float, true)
		if sum == nil {
			sum = term
		} else {
			sum = sum.MustAdd(term, true)
		}
	}
	assert.InDelta(t, x.Floats("mlm.out.sum")[0], floats(sum)[0], 1e-4)
	sum.MustBackward()
	assertGrads(t, x, store, "grad.mlm.")
	assertClose(t, x.Floats("grad.mlm.in.image_embeds"), floats(img.MustGrad(false)), "")
}

// The masked-LM loss distilled from the momentum model's probabilities.
func TestMLMLossMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	store, m := loadMLM(t, x)
	img := x.Tensor("mlm.in.image_embeds")
	img.MustRequiresGrad_(true)
	logits := m.ForwardInput(torchmods.BertInput{IDs: x.Tensor("mlm.in.input_ids"), Mask: x.Tensor("mlm.in.attention_mask"),
		Context: img, ContextMask: x.Tensor("mlm.in.image_atts")}, false)
	soft := x.Tensor("mlm.in.logits_m").MustSoftmax(-1, gotch.Float, true)
	loss := MLMLoss(logits, x.Tensor("mlm.in.labels"), soft, x.Floats("mlm.in.alpha")[0])
	assert.InDelta(t, x.Floats("mlm.out.mlm_loss")[0], floats(loss)[0], parityTol)
	loss.MustBackward()
	assertGrads(t, x, store, "gradmlm.mlm.")
	assertClose(t, x.Floats("gradmlm.mlm.in.image_embeds"), floats(img.MustGrad(false)), "")
}

// L_ita with the queue, soft cross-modal targets and the unimodal terms,
// its gradients (the temperature's too) and the enqueue that wraps the
// pointer to 0.
func TestContrastiveLossMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	leaf := func(name string) *ts.Tensor {
		v := x.Tensor(name)
		v.MustRequiresGrad_(true)
		return v
	}
	imageFeat, textFeat, temp := leaf("ita.in.image_feat"), leaf("ita.in.text_feat"), leaf("ita.in.temp")
	q := &Queue{Image: x.Tensor("ita.in.image_queue"), Text: x.Tensor("ita.in.text_queue"), Ptr: x.Tensor("ita.in.queue_ptr"), Size: 12}
	loss := ContrastiveLoss(imageFeat, textFeat, x.Tensor("ita.in.image_feat_m"), x.Tensor("ita.in.text_feat_m"), q, temp, x.Floats("ita.in.alpha")[0], 0.5)
	assert.InDelta(t, x.Floats("ita.out.loss")[0], floats(loss)[0], parityTol)
	q.Enqueue(x.Tensor("ita.in.image_feat_m"), x.Tensor("ita.in.text_feat_m"))
	loss.MustBackward()
	assertClose(t, x.Floats("ita.grad.image_feat"), floats(imageFeat.MustGrad(false)), "")
	assertClose(t, x.Floats("ita.grad.text_feat"), floats(textFeat.MustGrad(false)), "")
	assertClose(t, x.Floats("ita.grad.temp"), floats(temp.MustGrad(false)), "temp")
	assert.InDeltaSlice(t, x.Floats("ita.out.image_queue"), floats(q.Image), 0)
	assert.InDeltaSlice(t, x.Floats("ita.out.text_queue"), floats(q.Text), 0)
	assert.Equal(t, x.Tensor("ita.out.queue_ptr").Int64Values(), q.Ptr.Int64Values())
}

// The answer decoder: rank_answer's top-k and probabilities, and the
// distilled training loss per question with every gradient.
func TestAnswerDecoderMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readParity(t)
	store := torchmods.NewStore(gotch.CPU)
	dec := torchmods.NewBertForMaskedLM(store.Root(), parityBert(2, 0, 16))
	_, err := store.Load(x.Weights("dec."), true)
	require.NoError(t, err)
	question, qmask := x.Tensor("dec.in.question_states"), x.Tensor("dec.in.question_atts")
	var ids, probs *ts.Tensor
	ts.NoGrad(func() {
		ids, probs = RankAnswers(dec, question, qmask, x.Tensor("dec.in.answer_ids"), x.Tensor("dec.in.answer_atts"), x.Tensor("dec.in.k").Int64Values()[0], 0)
	})
	assert.Equal(t, x.Tensor("dec.out.topk_ids").Int64Values(), ids.Int64Values())
	assertClose(t, x.Floats("dec.out.topk_probs"), floats(probs), "")

	question.MustRequiresGrad_(true)
	trainIDs := x.Tensor("dec.in.train_ids")
	labels := trainIDs.MustMaskedFill(trainIDs.MustEq(ts.IntScalar(0), false), ts.IntScalar(-100), false)
	logits := DecoderLogits(dec, trainIDs, x.Tensor("dec.in.train_atts"), question, qmask, false)
	loss := DecoderLoss(logits, labels, x.Tensor("dec.in.logits_m").MustSoftmax(-1, gotch.Float, true), 0.4)
	assertClose(t, x.Floats("dec.out.train_loss"), floats(loss), "")
	loss.MustSum(gotch.Float, true).MustDivScalar(ts.FloatScalar(2), true).MustBackward()
	assertGrads(t, x, store, "grad.dec.")
	assertClose(t, x.Floats("grad.dec.in.question_states"), floats(question.MustGrad(false)), "")
}
