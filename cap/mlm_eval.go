package cap

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/textclf"
	"github.com/reprolab/repro/torchmods"
)

// The paper's claim is that CAP keeps the pre-trained model's
// task-agnostic knowledge. mlmEval measures it as the masked-LM loss of
// the pruned encoder on held-out text, read through the pre-trained run's
// MLM head (cls.predictions, its decoder tied to the encoder's own word
// embeddings), beside the same loss of the pre-trained model itself and of
// the teacher. Every run masks the same tokens: share of each text's
// non-special tokens (at least one), all replaced by [MASK], drawn with a
// fixed seed.

// mlmSeed fixes the masked positions across runs and seeds.
const mlmSeed = 0x6d6c6d

// maskedText is one text's masked ids and its targets (-100 elsewhere).
type maskedText struct {
	ids, labels []int64
}

func (r *runner) mlmTexts() ([]maskedText, error) {
	c := r.c
	plan, err := c.textConfig().DataPlan()
	if err != nil {
		return nil, err
	}
	ex, _, err := textclf.ReadExamples(c.MLMEval.File, plan.Test, false)
	if err != nil {
		return nil, err
	}
	if c.MLMEval.Limit > 0 && len(ex) > c.MLMEval.Limit {
		ex = ex[:c.MLMEval.Limit]
	}
	rng := rand.New(rand.NewPCG(mlmSeed, 0))
	tok := r.student.Tok
	var out []maskedText
	for i, e := range ex {
		enc, err := r.student.Encode(textclf.Example{Text: e.Text}, false)
		if err != nil {
			return nil, fmt.Errorf("%s row %d: %w", c.MLMEval.File, i+1, err)
		}
		var cand []int
		for j, id := range enc.IDs {
			if !tok.IsSpecial(id) {
				cand = append(cand, j)
			}
		}
		if len(cand) == 0 {
			continue
		}
		n := max(1, int(math.Round(c.MLMEval.Share*float64(len(cand)))))
		rng.Shuffle(len(cand), func(a, b int) { cand[a], cand[b] = cand[b], cand[a] })
		m := maskedText{ids: append([]int64(nil), enc.IDs...), labels: make([]int64, len(enc.IDs))}
		for j := range m.labels {
			m.labels[j] = -100
		}
		for _, j := range cand[:n] {
			m.labels[j], m.ids[j] = m.ids[j], tok.MASK
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("mlm_eval.file %s: no text with a token to mask", c.MLMEval.File)
	}
	return out, nil
}

// mlmEval fills mlm_loss (the pruned model), mlm_loss_pretrained and
// mlm_loss_teacher.
func (r *runner) mlmEval(res *Result) error {
	texts, err := r.mlmTexts()
	if err != nil {
		return err
	}
	wfile, err := torchmods.ResolveWeights(r.c.Pretrained)
	if err != nil {
		return fmt.Errorf("mlm_eval: the pre-trained model's MLM head: %w", err)
	}
	store := torchmods.NewStore(r.s.Device)
	defer store.Drop()
	var mlm *torchmods.BertForMaskedLM
	cfg := r.student.Bert.Cfg
	if err := torchmods.Try(func() { mlm = torchmods.NewBertForMaskedLM(store.Root(), cfg) }); err != nil {
		return err
	}
	if _, err := torchmods.BertFamily.LoadHFWeights(store, wfile, torchmods.LoadOptions{}, io.Discard); err != nil {
		return fmt.Errorf("mlm_eval: %s has no complete MLM head (cls.predictions) for %s: %w", wfile, r.c.Pretrained, err)
	}
	loss := func(enc *torchmods.Bert, masked *Masked, pruned bool) (float64, error) {
		var sum, count float64
		outer := ts.NewScope()
		defer outer.Close()
		err := r.withMasks(masked, func(head, ffn *ts.Tensor) {
			if !pruned {
				head, ffn = nil, nil
			}
			eb := r.c.Data.EvalBatch
			for lo := 0; lo < len(texts); lo += eb {
				batch := texts[lo:min(lo+eb, len(texts))]
				func() {
					sc := ts.NewScope()
					defer sc.Close()
					ts.NoGrad(func() {
						encs := make([]textclf.Encoded, len(batch))
						labs := make([]textclf.Encoded, len(batch))
						for i, t := range batch {
							encs[i] = textclf.Encoded{IDs: t.ids, Types: make([]int64, len(t.ids))}
							labs[i] = textclf.Encoded{IDs: t.labels, Types: make([]int64, len(t.ids))}
						}
						b := textclf.Pad(encs, r.pad)
						lb := textclf.Pad(labs, -100)
						ids, types, mask := b.Tensors(r.s.Device)
						y := torchmods.FromSlice(lb.IDs, []int64{int64(lb.N * lb.L)}, r.s.Device)
						hidden := enc.ForwardInput(torchmods.BertInput{IDs: ids, TypeIDs: types, Mask: mask, HeadMask: head, FFNMask: ffn}, false)
						h := mlm.Norm.Forward(cfg.Activation().Apply(mlm.Transform.Forward(hidden)))
						logits := ts.MustLinear(h, enc.Word.Weight, mlm.Bias)
						l := torchmods.CrossEntropy(logits.MustView([]int64{-1, cfg.VocabSize}, false), y, torchmods.CEOptions{Reduction: torchmods.ReduceSum})
						sum += l.Float64Values()[0]
						count += y.MustNe(ts.IntScalar(-100), false).MustSum(gotch.Double, true).Float64Values()[0]
					})
				}()
			}
		})
		return sum / count, err
	}
	if res.Metrics["mlm_loss"], err = loss(r.student.Bert, r.masked, true); err != nil {
		return err
	}
	if res.Metrics["mlm_loss_pretrained"], err = loss(mlm.Bert, nil, false); err != nil {
		return err
	}
	if r.teacher != nil {
		if res.Metrics["mlm_loss_teacher"], err = loss(r.teacher.Bert, nil, false); err != nil {
			return err
		}
	}
	fmt.Fprintf(r.s.W, "cap: masked-LM loss on %d texts of %s: pruned %.4f, pre-trained %.4f, teacher %.4f\n", len(texts), r.c.MLMEval.File,
		res.Metrics["mlm_loss"], res.Metrics["mlm_loss_pretrained"], res.Metrics["mlm_loss_teacher"])
	return nil
}
