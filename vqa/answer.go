package vqa

import (
	"fmt"
	"image"
	"io"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// Ranked is one candidate answer and its probability among the k re-ranked.
type Ranked struct {
	Answer string
	Prob   float64
}

// Answerer answers questions about images with a fine-tuned model: the
// run's config and weights, its tokenizer and candidate answers.
type Answerer struct {
	cfg     *FinetuneConfig
	model   *VQAModel
	tok     *mlm.Tokenizer
	answers []string
	tokens  textBatch
	aug     data.Augment
	dev     gotch.Device
}

// OpenAnswerer loads a vqa.finetune run's model (config c; weights: the
// run directory, the newest checkpoint, or one checkpoint folder) on dev,
// without its momentum copies, which only training uses. The load must
// be complete: anything missing or unexpected is an error naming it.
func OpenAnswerer(c *FinetuneConfig, weights string, dev gotch.Device, w io.Writer) (*Answerer, error) {
	ds, tok, err := openData(c.Data, &c.Model, true, io.Discard)
	if err != nil {
		return nil, err
	}
	store := torchmods.NewStore(dev)
	m, err := NewVQAModel(store.Root(), c.Model, false, c.Momentum)
	if err != nil {
		return nil, err
	}
	src, err := torchmods.Resolve(weights)
	if err != nil {
		return nil, err
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return nil, err
	}
	var keep []safetensors.Tensor
	for _, t := range wf.Tensors {
		if !strings.HasPrefix(t.Name, "visual_encoder_m.") && !strings.HasPrefix(t.Name, "text_encoder_m.") && !strings.HasPrefix(t.Name, "text_decoder_m.") {
			keep = append(keep, t)
		}
	}
	rep, err := loadPrefixed(store, keep, "", 0, w)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.File, err)
	}
	if len(rep.Missing)+len(rep.Unexpected)+len(rep.Mismatched) > 0 {
		return nil, fmt.Errorf("%s does not hold this run's VQA model: %s", src.File, rep)
	}
	fmt.Fprintf(w, "VQA model from %s: %s\n", src.File, rep)
	answers := ds.Answers
	at, err := answerTokens(tok, answers, c.Eos)
	if err != nil {
		return nil, err
	}
	aug, err := c.Data.augment(c.Model.ImageRes)
	if err != nil {
		return nil, err
	}
	return &Answerer{cfg: c, model: m, tok: tok, answers: answers, tokens: at, aug: aug, dev: dev}, nil
}

// Answer ranks the candidate answers for each question about img and
// returns the best k of each, most probable first (rank_answer with
// k_test; k above the number of candidates is capped).
func (a *Answerer) Answer(img image.Image, questions []string, k int64) ([][]Ranked, error) {
	if len(questions) == 0 {
		return nil, fmt.Errorf("vqa: no question to answer")
	}
	k = min(max(k, 1), int64(len(a.answers)))
	var qs []string
	for _, q := range questions {
		qs = append(qs, PreQuestion(q, 50))
	}
	q, err := albefTokens(a.tok, qs, a.cfg.MaxLen, false)
	if err != nil {
		return nil, err
	}
	px := a.aug.Eval(img)
	var out [][]Ranked
	err = torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			s := a.cfg.Model.ImageRes
			n := int64(len(qs))
			one := torchmods.FromSlice(px, []int64{1, 3, s, s}, a.dev)
			image := ImageTokens(a.model.Visual, one, 0, nil, false).MustRepeat([]int64{n, 1, 1}, true)
			mask := matrix(q.mask, a.dev)
			states := FuseQuestion(a.model.Text, matrix(q.ids, a.dev), mask, image, false)
			ids, probs := RankAnswers(a.model.Decoder, states, mask, matrix(a.tokens.ids, a.dev), matrix(a.tokens.mask, a.dev), k, a.tok.PAD)
			iv, pv := ids.Int64Values(), probs.Float64Values()
			for i := range n {
				var r []Ranked
				for j := range k {
					r = append(r, Ranked{Answer: a.answers[iv[i*k+j]], Prob: pv[i*k+j]})
				}
				out = append(out, r)
			}
		})
	})
	return out, err
}

// Breakdown is a split's accuracy by answer and question type, and, for
// the synthetic scans, on the images with a lesion at a site never seen
// in training (held out) against the others.
type Breakdown struct {
	Split   string    `json:"split"`
	Weights string    `json:"weights"`
	All     Accuracy  `json:"all"`
	HeldOut *Accuracy `json:"held_out_images,omitempty"`
	Others  *Accuracy `json:"other_images,omitempty"`
}

// Evaluate answers every question of the run's split ("val" or "test")
// and scores it; on the synthetic scans it also scores the questions
// about held-out-site images and the rest apart.
func (a *Answerer) Evaluate(split string) (*Breakdown, error) {
	ds, err := a.cfg.Data.Open(true)
	if err != nil {
		return nil, err
	}
	items := map[string][]Item{"val": ds.Val, "test": ds.Test}[split]
	if items == nil {
		return nil, fmt.Errorf("vqa: split %q: want val or test", split)
	}
	var preds []Prediction
	const batch = 64
	for start := 0; start < len(items); start += batch {
		end := min(start+batch, len(items))
		for _, it := range items[start:end] {
			img, err := ds.Images.Image(it.Image)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", it.Image, err)
			}
			r, err := a.Answer(img, []string{it.Question}, 1)
			if err != nil {
				return nil, err
			}
			preds = append(preds, Prediction{QID: it.QID, Answer: r[0][0].Answer})
		}
	}
	b := &Breakdown{Split: split}
	if b.All, err = Score(items, preds); err != nil {
		return nil, err
	}
	syn, ok := ds.Images.(synthImages)
	if !ok {
		return b, nil
	}
	var held, other []Item
	var heldP, otherP []Prediction
	for i, it := range items {
		if im, ok := syn.s.Image(it.Image); ok && im.HeldOut {
			held, heldP = append(held, it), append(heldP, preds[i])
		} else {
			other, otherP = append(other, it), append(otherP, preds[i])
		}
	}
	for _, g := range []struct {
		items []Item
		preds []Prediction
		dst   **Accuracy
	}{{held, heldP, &b.HeldOut}, {other, otherP, &b.Others}} {
		if len(g.items) == 0 {
			continue
		}
		acc, err := Score(g.items, g.preds)
		if err != nil {
			return nil, err
		}
		*g.dst = &acc
	}
	return b, nil
}
