package vqa

import (
	"fmt"
	"image"
	"io"
	"sort"
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

// Answer ranks the candidate answers for each question about img as the
// run's evaluation does (rank_answer with its k_test, capped at the
// number of candidates) and returns the best show of each, most probable
// first.
func (a *Answerer) Answer(img image.Image, questions []string, show int64) ([][]Ranked, error) {
	if len(questions) == 0 {
		return nil, fmt.Errorf("vqa: no question to answer")
	}
	k := min(a.cfg.KTest, int64(len(a.answers)))
	show = min(max(show, 1), k)
	var qs []string
	for _, q := range questions {
		qs = append(qs, PreQuestion(q, 50))
	}
	q, err := albefTokens(a.tok, qs, a.cfg.MaxLen, false)
	if err != nil {
		return nil, err
	}
	px := a.aug.Squash(img) // the evaluation transform, as the task's
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
				for j := range show {
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
	// One call per image, with all its questions (the model sees the
	// image once per question either way; this only batches them).
	preds := make([]Prediction, len(items))
	byImage := map[string][]int{}
	var order []string
	for i, it := range items {
		if _, seen := byImage[it.Image]; !seen {
			order = append(order, it.Image)
		}
		byImage[it.Image] = append(byImage[it.Image], i)
	}
	for _, name := range order {
		img, err := ds.Images.Image(name)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
		var qs []string
		for _, i := range byImage[name] {
			qs = append(qs, items[i].Question)
		}
		r, err := a.Answer(img, qs, 1)
		if err != nil {
			return nil, err
		}
		for j, i := range byImage[name] {
			preds[i] = Prediction{QID: items[i].QID, Answer: r[j][0].Answer}
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

// BreakdownTable is a Markdown table of breakdowns, a row per run: the
// accuracy overall, on the held-out-site images and the others (when
// the data are the synthetic scans), and by question type.
func BreakdownTable(bs []*Breakdown) string {
	types := map[string]bool{}
	for _, b := range bs {
		for t := range b.All.PerQuestionType {
			types[t] = true
		}
	}
	var cols []string
	for t := range types {
		cols = append(cols, t)
	}
	sort.Strings(cols)
	var w strings.Builder
	fmt.Fprintf(&w, "| run | overall | held-out-site images | other images | %s |\n", strings.Join(cols, " | "))
	fmt.Fprintf(&w, "|---|---|---|---|%s\n", strings.Repeat("---|", len(cols)))
	cell := func(a *Accuracy) string {
		if a == nil {
			return "—"
		}
		return fmt.Sprintf("%.2f (%d)", a.Overall, a.N)
	}
	for _, b := range bs {
		fmt.Fprintf(&w, "| %s | %s | %s | %s |", b.Weights, cell(&b.All), cell(b.HeldOut), cell(b.Others))
		for _, t := range cols {
			fmt.Fprintf(&w, " %.2f |", b.All.PerQuestionType[t])
		}
		w.WriteString("\n")
	}
	return w.String()
}
