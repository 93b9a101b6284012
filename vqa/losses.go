package vqa

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// ContrastiveLoss is MUMC's L_ita (MUMCBASE.get_contrastive_loss):
// features [B, D] (unit rows) of this batch's images and texts from the
// online and the momentum encoders, the queues of earlier momentum
// features as more negatives, and the temperature temp (0-d). The
// cross-modal terms (image-to-text, text-to-image) use soft targets,
// alpha·softmax(momentum similarities) + (1-alpha)·one-hot; the unimodal
// terms (image-to-image, text-to-text: each online feature against the
// momentum features of its own modality, itself the positive) use the
// one-hot targets. L = (i2t + t2i + unimodal·(i2i + t2t)) / 2, unimodal
// 0.5 in MUMC and 0 for ALBEF's ITA. The official function then
// enqueues the momentum features; here the caller does (Queue.Enqueue),
// so that a held-out measurement can leave the queue alone.
func ContrastiveLoss(imageFeat, textFeat, imageFeatM, textFeatM *ts.Tensor, q *Queue, temp *ts.Tensor, alpha, unimodal float64) *ts.Tensor {
	b := imageFeat.MustSize()[0]
	var imageAll, textAll, i2tTargets, t2iTargets, hard *ts.Tensor
	ts.NoGrad(func() {
		imageAll = ts.MustCat([]*ts.Tensor{imageFeatM.MustT(false), q.Image}, 1)
		textAll = ts.MustCat([]*ts.Tensor{textFeatM.MustT(false), q.Text}, 1)
		n := imageAll.MustSize()[1]
		hard = ts.MustEye(b, gotch.Float, imageFeat.MustDevice()).MustConstantPadNd([]int64{0, n - b}, true)
		soft := func(feat, all *ts.Tensor) *ts.Tensor {
			p := feat.MustMatmul(all, false).MustDiv(temp, true).MustSoftmax(1, gotch.Float, true)
			return p.MustMulScalar(ts.FloatScalar(alpha), true).MustAdd(hard.MustMulScalar(ts.FloatScalar(1-alpha), false), true)
		}
		i2tTargets, t2iTargets = soft(imageFeatM, textAll), soft(textFeatM, imageAll)
	})
	term := func(feat, all, targets *ts.Tensor) *ts.Tensor {
		logp := feat.MustMatmul(all, false).MustDiv(temp, true).MustLogSoftmax(1, gotch.Float, true)
		return logp.MustMul(targets, true).MustSumDimIntlist([]int64{1}, false, gotch.Float, true).MustMean(gotch.Float, true).MustNeg(true)
	}
	loss := term(imageFeat, textAll, i2tTargets).MustAdd(term(textFeat, imageAll, t2iTargets), true)
	if unimodal != 0 {
		uni := term(imageFeat, imageAll, hard).MustAdd(term(textFeat, textAll, hard), true)
		loss = loss.MustAdd(uni.MustMulScalar(ts.FloatScalar(unimodal), true), true)
	}
	return loss.MustDivScalar(ts.FloatScalar(2), true)
}

// HardNegatives draws, for each row of weights [B][B] (the softmax of a
// batch's similarities), one column other than the row's own: the
// diagonal is zeroed after adding 1e-4 to every weight, as
// get_matching_loss does before torch.multinomial, so every other
// example stays possible and the positive never is.
func HardNegatives(weights [][]float64, rng *rand.Rand) ([]int, error) {
	out := make([]int, len(weights))
	for i, row := range weights {
		if len(row) != len(weights) {
			return nil, fmt.Errorf("vqa: hard-negative weights row %d has %d entries for a batch of %d", i, len(row), len(weights))
		}
		if len(row) < 2 {
			return nil, fmt.Errorf("vqa: image-text matching needs a batch of at least 2 for negatives, got %d", len(row))
		}
		var total float64
		w := make([]float64, len(row))
		for j, v := range row {
			if j != i {
				w[j] = v + 1e-4
				total += w[j]
			}
		}
		r := rng.Float64() * total
		pick := -1
		for j := range w {
			if j == i {
				continue
			}
			pick = j
			if r < w[j] {
				break
			}
			r -= w[j]
		}
		out[i] = pick
	}
	return out, nil
}

// MatchingLoss is L_itm (get_matching_loss): the fusion layers run on the
// B matched pairs and on 2B mismatched ones, each text with a hard
// negative image and each image with a hard negative text, drawn from the
// similarities of the online features; the ITM head classifies the [CLS]
// states, 1 for the matched. textEmbeds are the text layers' output.
func MatchingLoss(bert *torchmods.Bert, itm *ITMHead, imageEmbeds, imageFeat, textEmbeds, textMask, textFeat, temp *ts.Tensor, rng *rand.Rand, train bool) (*ts.Tensor, error) {
	b := imageEmbeds.MustSize()[0]
	from, to := fusionLayers(bert.Cfg)
	fuse := func(text, mask, image *ts.Tensor) *ts.Tensor {
		return bert.ForwardInput(torchmods.BertInput{Embeds: text, Mask: mask, Context: image, From: from, To: to}, train).MustSelect(1, 0, false)
	}
	pos := fuse(textEmbeds, textMask, imageEmbeds)
	var wi2t, wt2i [][]float64
	ts.NoGrad(func() {
		rows := func(x *ts.Tensor) [][]float64 {
			v := x.MustDiv(temp, false).MustSoftmax(1, gotch.Float, true).Float64Values()
			out := make([][]float64, b)
			for i := range out {
				out[i] = v[int64(i)*b : int64(i+1)*b]
			}
			return out
		}
		wi2t = rows(imageFeat.MustMatmul(textFeat.MustT(false), false))
		wt2i = rows(textFeat.MustMatmul(imageFeat.MustT(false), false))
	})
	negImage, err := HardNegatives(wt2i, rng) // a negative image for each text
	if err != nil {
		return nil, err
	}
	negText, err := HardNegatives(wi2t, rng) // a negative text for each image
	if err != nil {
		return nil, err
	}
	dev := imageEmbeds.MustDevice()
	idx := func(v []int) *ts.Tensor {
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return torchmods.FromSlice(out, []int64{int64(len(v))}, dev)
	}
	ni, nt := idx(negImage), idx(negText)
	textAll := ts.MustCat([]*ts.Tensor{textEmbeds, textEmbeds.MustIndexSelect(0, nt, false)}, 0)
	maskAll := ts.MustCat([]*ts.Tensor{textMask, textMask.MustIndexSelect(0, nt, false)}, 0)
	imageAll := ts.MustCat([]*ts.Tensor{imageEmbeds.MustIndexSelect(0, ni, false), imageEmbeds}, 0)
	neg := fuse(textAll, maskAll, imageAll)
	logits := itm.Forward(ts.MustCat([]*ts.Tensor{pos, neg}, 0))
	labels := make([]int64, 3*b)
	for i := range b {
		labels[i] = 1
	}
	return torchmods.CrossEntropy(logits, torchmods.FromSlice(labels, []int64{3 * b}, dev), torchmods.CEOptions{}), nil
}

// Special holds the token ids masking needs.
type Special struct{ PAD, CLS, MASK int64 }

// MaskTokens is MUMCBASE.mask for MLM: each token is chosen with
// probability prob, except [PAD] and [CLS] ([SEP] can be chosen, as in
// the official code); labels are the chosen tokens' ids and -100
// elsewhere. A chosen token becomes [MASK] with probability 0.8, else a
// uniformly random id of the whole vocabulary with probability 0.5, else
// stays. ids is [B][L]; the result is new slices.
func MaskTokens(ids [][]int64, prob float64, vocab int64, sp Special, rng *rand.Rand) (input, labels [][]int64) {
	input, labels = make([][]int64, len(ids)), make([][]int64, len(ids))
	for i, row := range ids {
		input[i], labels[i] = append([]int64(nil), row...), make([]int64, len(row))
		for j, id := range row {
			labels[i][j] = -100
			chosen := rng.Float64() < prob
			if !chosen || id == sp.PAD || id == sp.CLS {
				continue
			}
			labels[i][j] = id
			switch {
			case rng.Float64() < 0.8:
				input[i][j] = sp.MASK
			case rng.Float64() < 0.5:
				input[i][j] = rng.Int64N(vocab)
			}
		}
	}
	return input, labels
}

// MLMLoss is BertForMaskedLM's loss with momentum distillation: the mean
// cross-entropy of logits [B, L, V] over the labelled positions (labels
// [B, L], -100 elsewhere), mixed with the cross-entropy against the
// momentum model's probabilities soft [B, L, V] over the same positions,
// (1-alpha)·CE + alpha·distill. soft nil is plain MLM.
func MLMLoss(logits, labels, soft *ts.Tensor, alpha float64) *ts.Tensor {
	v := logits.MustSize()[2]
	flat := logits.MustView([]int64{-1, v}, false)
	ce := torchmods.CrossEntropy(flat, labels.MustView([]int64{-1}, false), torchmods.CEOptions{})
	if soft == nil {
		return ce
	}
	d := flat.MustLogSoftmax(-1, gotch.Float, false).MustMul(soft.MustView([]int64{-1, v}, false), true).MustSumDimIntlist([]int64{-1}, false, gotch.Float, true).MustNeg(true)
	d = d.MustMaskedSelect(labels.MustView([]int64{-1}, false).MustNe(ts.IntScalar(-100), true), true).MustMean(gotch.Float, true)
	return ce.MustMulScalar(ts.FloatScalar(1-alpha), true).MustAdd(d.MustMulScalar(ts.FloatScalar(alpha), true), true)
}

// DecoderLoss is BertLMHeadModel's loss with reduction 'none': for each
// sequence, the summed next-token cross-entropy of the decoder's logits
// [B, L, V] against labels [B, L] (-100 at padding; the first token, the
// [CLS] start, is never predicted), mixed with the distillation term
// against soft [B, L-1, V] (the momentum decoder's shifted probabilities)
// as (1-alpha)·CE + alpha·distill; soft nil is plain CE. Returns [B].
func DecoderLoss(logits, labels, soft *ts.Tensor, alpha float64) *ts.Tensor {
	s := logits.MustSize()
	shifted := logits.MustNarrow(1, 0, s[1]-1, false)
	target := labels.MustNarrow(1, 1, s[1]-1, false)
	ce := torchmods.CrossEntropy(shifted.MustReshape([]int64{-1, s[2]}, false), target.MustReshape([]int64{-1}, false), torchmods.CEOptions{Reduction: torchmods.ReduceNone})
	loss := ce.MustView([]int64{s[0], -1}, true).MustSumDimIntlist([]int64{1}, false, gotch.Float, true)
	if soft == nil {
		return loss
	}
	d := shifted.MustLogSoftmax(-1, gotch.Float, false).MustMul(soft, true).MustSumDimIntlist([]int64{-1}, false, gotch.Float, true).MustNeg(true)
	d = d.MustMul(target.MustNe(ts.IntScalar(-100), false).MustTotype(gotch.Float, true), true).MustSumDimIntlist([]int64{1}, false, gotch.Float, true)
	return loss.MustMulScalar(ts.FloatScalar(1-alpha), true).MustAdd(d.MustMulScalar(ts.FloatScalar(alpha), true), true)
}

// DecoderLogits runs the answer decoder on ids [B, L] (mask [B, L], nil
// for all) over the question's states [B, Lq, H] (mask [B, Lq]): causal
// self-attention, cross-attention in every layer. Returns [B, L, V].
func DecoderLogits(dec *torchmods.BertForMaskedLM, ids, mask, question, questionMask *ts.Tensor, train bool) *ts.Tensor {
	return dec.ForwardInput(torchmods.BertInput{IDs: ids, Mask: mask, Context: question, ContextMask: questionMask, Causal: true}, train)
}

// RankAnswers is MUMC_VQA.rank_answer: each question's states [Q, Lq, H]
// (mask [Q, Lq]) score every candidate answer's first token after the
// start token (answers [A, La], each [CLS] tokens [SEP] ..., mask
// [A, La]); the k best by that probability are rescored by their whole
// log-likelihood, log p(first) - the decoder's summed loss on the answer,
// and returned in order with their softmax over the k: ids [Q, k] into
// the answer list, probabilities [Q, k].
func RankAnswers(dec *torchmods.BertForMaskedLM, question, questionMask, answers, answerMask *ts.Tensor, k int64, pad int64) (ids, probs *ts.Tensor) {
	q := question.MustSize()[0]
	a := answers.MustSize()
	if k > a[0] {
		panic(fmt.Errorf("vqa: k_test %d is more than the %d candidate answers", k, a[0]))
	}
	start := answers.MustSelect(1, 0, false).MustNarrow(0, 0, 1, true).MustRepeat([]int64{q, 1}, true) // [Q, 1]
	first := DecoderLogits(dec, start, nil, question, questionMask, false).MustSelect(1, 0, true)      // [Q, V]
	pFirst := first.MustSoftmax(1, gotch.Float, true).MustIndexSelect(1, answers.MustSelect(1, 1, false), true)
	topP, topIDs := pFirst.MustTopk(k, 1, true, true, true)
	flat := topIDs.MustView([]int64{-1}, false)
	ids0 := answers.MustIndexSelect(0, flat, false)
	atts := answerMask.MustIndexSelect(0, flat, false)
	targets := ids0.MustMaskedFill(ids0.MustEq(ts.IntScalar(pad), false), ts.IntScalar(-100), false)
	rep := func(x *ts.Tensor) *ts.Tensor { return x.MustRepeatInterleaveSelfInt(k, []int64{0}, []int64{}, false) } // tile(x, 0, k)
	logits := DecoderLogits(dec, ids0, atts, rep(question), rep(questionMask), false)
	answerLoss := DecoderLoss(logits, targets, nil, 0) // [Q*k]
	logp := topP.MustView([]int64{-1}, false).MustLog(true).MustSub(answerLoss, true).MustView([]int64{q, k}, true)
	p := logp.MustSoftmax(-1, gotch.Float, true)
	probs, rerank := p.MustTopk(k, 1, true, true, true)
	return topIDs.MustGather(1, rerank, false, false), probs
}
