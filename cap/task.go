package cap

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/textclf"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Task is "cap.prune"; papers/papers.go registers it.
var Task = train.TaskSpec[*Config, *Result]{
	Name:    "cap.prune",
	Doc:     "prune a pre-trained BERT while fine-tuning it, distilled from a teacher, with CAP's contrastive terms (Xu et al., AAAI 2022)",
	Default: Default,
	Run:     Run,
}

// Round is one structured round's outcome: the sparsity it reached and
// the evaluation after its retraining.
type Round struct {
	Percent     float64            `json:"percent"`      // neurons' target, percent
	HeadPercent float64            `json:"head_percent"` // heads' target
	HeadsKept   int64              `json:"heads_kept"`
	FFNKept     int64              `json:"ffn_kept"`
	Metrics     map[string]float64 `json:"metrics"`
}

// Result is what a run reports. Metrics sit at the top level of
// results.json, for repro exp: each evaluation file's metrics
// ("test_accuracy"), the teacher's ("teacher_test_accuracy"), the ratio
// ("relative_test_accuracy"), per structured round
// ("test_accuracy_at_50"), the masked-LM losses.
type Result struct {
	Metrics map[string]float64 `json:"-"`
	Method  string             `json:"method"`
	Rounds  []Round            `json:"rounds,omitempty"`
	// Heads, FFN and linear weights kept of the encoder, and in all.
	HeadsKept    int64   `json:"heads_kept"`
	Heads        int64   `json:"heads"`
	FFNKept      int64   `json:"ffn_kept"`
	FFN          int64   `json:"ffn"`
	WeightsKept  float64 `json:"weights_kept"` // share of the encoder's linear weights kept (unstructured)
	EncoderParam int64   `json:"encoder_params"`
	// Every run writes its pruned model to pruned/: a structured run's
	// really pruned (smaller) BERT with its encoder's parameters, an
	// unstructured run's with the masks applied to the weights
	// (bertarize.py); and the largest difference between its logits and
	// the masked model's on a fixed batch.
	PrunedDir     string  `json:"pruned_dir,omitempty"`
	PrunedParams  int64   `json:"pruned_encoder_params,omitempty"`
	PrunedMaxDiff float64 `json:"pruned_max_abs_diff,omitempty"`
	Train         int     `json:"train_examples"`
	Steps         int64   `json:"steps"`
	Seconds       float64 `json:"seconds"`
}

// MarshalJSON puts the metrics beside the other fields.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return train.JSONWithMetrics(plain(r), r.Metrics)
}

// dataset is one file's encoded examples and class ids.
type dataset struct {
	name string // metric prefix: the file's base name
	enc  []textclf.Encoded
	y    []int64
}

// runner holds a run's models, data and pruning state.
type runner struct {
	s        *train.Session
	c        *Config
	student  *textclf.Model
	teacher  *textclf.Model
	train    dataset
	evals    []dataset
	labels   []string
	pad      int64
	metrics  []string
	masked   *Masked // unstructured
	th, regu float64 // the current threshold and L1 weight (unstructured)
	// Structured masks, 1 = kept.
	headMask, ffnMask [][]float64
	rounds            []Round
	pre, snaps, fine  *Bank
	opts              ContrastiveOptions
	// opt is the run's optimizer; a checkpoint holds its origin (the
	// optimizer step of the round's restart), restored into resumeOrigin.
	opt          *train.AdamW
	resumeOrigin int64
}

// Run prunes the model as configured and reports the pruned model's
// metrics beside the teacher's.
func Run(s *train.Session, c *Config) (*Result, error) {
	start := time.Now()
	r := &runner{s: s, c: c, opts: ContrastiveOptions{Temperature: c.Contrastive.Temperature, Unsup: c.Contrastive.Unsup, Sup: c.Contrastive.Sup, Normalise: c.Contrastive.Normalise}}
	if err := r.load(); err != nil {
		return nil, err
	}
	defer r.close()
	if c.Contrastive.Enabled && int64(len(r.train.y)) < c.Contrastive.ExtraExamples {
		// Every bank has at least one column: extra_examples / R rows are
		// drawn from N, which random.sample refuses when they are more.
		if _, err := DrawExtra(rand.New(rand.NewPCG(0, 0)), int64(len(r.train.y)), 1, c.Contrastive.ExtraExamples); err != nil {
			return nil, fmt.Errorf("%w; lower contrastive.extra_examples", err)
		}
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(r.train.y), Batch: c.Data.Batch, Shuffle: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) ([]int, error) { return b.Indices, nil })
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	structured := c.Prune.Method == "structured"
	total, roundSteps := steps, steps
	var headSeq, ffnSeq []int64
	if structured {
		bc := r.student.Bert.Cfg
		headPc := c.Prune.HeadPercents
		if len(headPc) == 0 {
			headPc = c.Prune.Percents
		}
		if headSeq, _, err = PruningSequence(headPc, bc.NumHiddenLayers, bc.NumAttentionHeads, bc.IntermediateSize, c.Prune.AtLeastHeads); err != nil {
			return nil, err
		}
		if _, ffnSeq, err = PruningSequence(c.Prune.Percents, bc.NumHiddenLayers, bc.NumAttentionHeads, bc.IntermediateSize, 0); err != nil {
			return nil, err
		}
		total = roundSteps * int64(len(headSeq))
		r.headMask, r.ffnMask = Ones(bc.NumHiddenLayers, bc.NumAttentionHeads), Ones(bc.NumHiddenLayers, bc.IntermediateSize)
		fmt.Fprintf(s.W, "cap: structured pruning in %d rounds of %d steps; heads pruned per round %v, neurons %v\n", len(headSeq), roundSteps, headSeq, ffnSeq)
	} else {
		if r.masked, err = NewMasked(s.Store, r.student.Bert, Method(c.Prune.Method), c.Prune.MaskScale); err != nil {
			return nil, err
		}
		// MaskedBertModel freezes the embeddings at their pre-trained
		// values (modeling_bert_masked.py); the structured model does not.
		n := s.Store.Freeze("bert.embeddings.")
		fmt.Fprintf(s.W, "cap: %s pruning of %d encoder matrices; the %d embedding tensors frozen, as the official masked BERT\n", c.Prune.Method, len(r.masked.Names), n)
	}
	opt := train.NewAdamW(s.Store, c.Optim.Betas[0], c.Optim.Betas[1], c.Optim.Eps, c.Optim.WeightDecay)
	r.opt = opt
	if r.masked != nil && r.masked.Method != Magnitude {
		opt.LRScale = map[string]float64{}
		for _, n := range r.masked.Names {
			opt.LRScale[ScoreName(n)] = c.Prune.MaskLR / c.Optim.LR
		}
	}
	warmup := c.Optim.Warmup
	if warmup == 0 && !structured {
		warmup = c.Prune.Warmup // warmup_steps drives both schedules in masked_run_glue.py
	}
	if c.Optim.WarmupRatio > 0 {
		warmup = int64(math.Ceil(c.Optim.WarmupRatio * float64(roundSteps))) // Trainer.get_warmup_steps
	}
	base, err := train.WarmupSchedule(c.Optim.LR, min(warmup, roundSteps), roundSteps, "linear")
	if err != nil {
		return nil, err
	}
	// Each structured round has a fresh schedule (a new trainer.train()).
	lr := func(step int64) float64 { return base(step % roundSteps) }
	sched := ThresholdSchedule{Total: total, Warmup: c.Prune.Warmup, Initial: c.Prune.InitialThreshold, Final: c.Prune.FinalThreshold,
		InitialWarmup: c.Prune.InitialWarmup, FinalWarmup: c.Prune.FinalWarmup, FinalLambda: c.Prune.FinalLambda}
	if c.Contrastive.Enabled && slices.Contains(c.Contrastive.Banks, BankFinetuned) {
		// Also when resuming (a checkpoint's copy then replaces it): a run
		// stopped before its first checkpoint resumes from the start.
		fmt.Fprintln(s.W, "cap: encoding the training set with the teacher (fine-tuned bank)")
		if r.fine, err = r.encodeBank(r.teacher, nil); err != nil {
			return nil, err
		}
	}
	snapEvery := c.Prune.SnapshotEvery
	if snapEvery == 0 {
		snapEvery = perEpoch
	}
	first := true
	err = s.Train(train.Plan{Steps: total, PerEpoch: perEpoch, Opt: opt, LR: lr, Clip: c.Optim.Clip,
		BeforeStep: func(step int64) error {
			if !structured {
				r.th, r.regu = sched.At(step)
				if first && step == 0 && c.Contrastive.Enabled && slices.Contains(c.Contrastive.Banks, BankPretrained) {
					// The pre-trained bank: the model before any step.
					if r.pre, err = r.encodeBank(r.student, r.masked); err != nil {
						return err
					}
				}
				first = false
				return nil
			}
			round := int(step / roundSteps)
			if step%roundSteps != 0 {
				if first {
					opt.SetOrigin(r.resumeOrigin) // resumed mid-round: the round's optimizer began there
				}
				first = false
				return nil
			}
			first = false
			return r.pruneRound(round, headSeq[round], ffnSeq[round], opt, step)
		},
		AfterStep: func(step int64) error {
			if structured && (step+1)%roundSteps == 0 {
				return r.endRound(int(step/roundSteps), headPercent(c, int(step/roundSteps)), c.Prune.Percents[step/roundSteps], step)
			}
			if !structured && c.Contrastive.Enabled && slices.Contains(c.Contrastive.Banks, BankSnapshots) && (step+1)%snapEvery == 0 && step+1 < total {
				// In training mode, dropout on: masked_run_glue.py encodes
				// its snapshots without calling model.eval().
				reps, err := r.encodeReps(r.student, r.masked, true)
				if err != nil {
					return err
				}
				return torchmods.Try(func() { r.addSnapshot(reps) })
			}
			return nil
		},
		Loss: func(step int64, micro int) (*ts.Tensor, error) {
			idx, err := loader.Next()
			if err != nil {
				return nil, err
			}
			rng := rand.New(rand.NewPCG(uint64(c.Trainer.Seed)<<20|uint64(micro), uint64(step)))
			var loss *ts.Tensor
			err = r.withMasks(r.masked, func(head, ffn *ts.Tensor) {
				loss = r.loss(idx, true, head, ffn, rng, true)
			})
			if err != nil {
				return nil, err
			}
			if r.masked != nil && c.Prune.Regularization == "l1" && r.regu > 0 {
				loss = loss.MustAdd(r.masked.Regularization().MustMulScalar(ts.FloatScalar(r.regu), true), true)
			}
			return loss, nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader), "prune": pruneState{r},
			"banks": bankState{banks: map[string]**Bank{BankPretrained: &r.pre, BankSnapshots: &r.snaps, BankFinetuned: &r.fine}}},
	})
	if err != nil {
		return nil, err
	}
	res, err := r.finish(total)
	if err != nil {
		return nil, err
	}
	res.Steps, res.Seconds = total, time.Since(start).Seconds()
	return res, nil
}

func headPercent(c *Config, round int) float64 {
	if len(c.Prune.HeadPercents) > 0 {
		return c.Prune.HeadPercents[round]
	}
	return c.Prune.Percents[round]
}

// load reads the data and opens the student (into the session's store)
// and the teacher.
func (r *runner) load() error {
	c, s := r.c, r.s
	plan, trainEx, err := r.open(s.Store, true)
	if err != nil {
		return err
	}
	if r.train, err = r.encode(filepath.Base(plan.Train), trainEx, plan.Train); err != nil {
		return err
	}
	if r.teacher != nil {
		// The same tokenizer gives the same ids: checked on the first texts.
		for i, e := range trainEx[:min(len(trainEx), 200)] {
			te, err := r.teacher.Encode(e, e.Pair != "")
			if err != nil {
				return err
			}
			if !slices.Equal(te.IDs, r.train.enc[i].IDs) {
				return fmt.Errorf("teacher %s tokenises %s row %d differently from the pre-trained model: they must share one tokenizer", c.Teacher, plan.Train, i+1)
			}
		}
	}
	for _, f := range plan.Eval {
		ex, _, err := textclf.ReadExamples(f, plan.Test, true)
		if err != nil {
			return err
		}
		d, err := r.encode(textclf.FileKey(f), ex, f)
		if err != nil {
			return err
		}
		r.evals = append(r.evals, d)
	}
	return nil
}

// open resolves the labels (reading the training file when the config
// lists none) and opens the student into store, with the teacher when
// withTeacher.
func (r *runner) open(store *torchmods.Store, withTeacher bool) (*textclf.DataPlan, []textclf.Example, error) {
	c, s := r.c, r.s
	plan, err := c.textConfig().DataPlan()
	if err != nil {
		return nil, nil, err
	}
	if plan.Regression {
		return nil, nil, fmt.Errorf("cap.prune classifies: the contrastive supervised term needs class labels, and %s is a regression task", c.Data.GLUE)
	}
	r.metrics = plan.Metrics
	trainEx, skipped, err := textclf.ReadExamples(plan.Train, plan.Layout, true)
	if err != nil {
		return nil, nil, err
	}
	if skipped > 0 {
		fmt.Fprintf(s.W, "cap: %s: skipped %d rows without a label or text\n", plan.Train, skipped)
	}
	r.labels = plan.Labels
	if r.labels == nil {
		seen := map[string]bool{}
		for _, e := range trainEx {
			if !seen[e.Label] {
				seen[e.Label] = true
				r.labels = append(r.labels, e.Label)
			}
		}
		sort.Strings(r.labels)
		fmt.Fprintf(s.W, "cap: %d labels from %s, sorted: %v\n", len(r.labels), plan.Train, r.labels)
	}
	if r.student, err = textclf.Open(c.Pretrained, textclf.OpenOptions{Tokenizer: c.Tokenizer, Labels: r.labels, MaxLen: c.MaxLen,
		Device: s.Device, Store: store, W: s.W}); err != nil {
		return nil, nil, fmt.Errorf("pretrained %s: %w", c.Pretrained, err)
	}
	r.pad = r.student.Tok.PAD
	if c.Teacher != "" && withTeacher {
		if r.teacher, err = textclf.Open(c.Teacher, textclf.OpenOptions{MaxLen: c.MaxLen, Device: s.Device}); err != nil {
			return nil, nil, fmt.Errorf("teacher %s: %w", c.Teacher, err)
		}
		if !slices.Equal(r.teacher.Labels, r.labels) {
			return nil, nil, fmt.Errorf("teacher %s has labels %v, the task %v: distillation needs the same classes in the same order", c.Teacher, r.teacher.Labels, r.labels)
		}
		if r.teacher.Tok.Size != r.student.Tok.Size {
			return nil, nil, fmt.Errorf("teacher %s has a tokenizer of %d tokens, the pre-trained model's has %d: they must share one", c.Teacher, r.teacher.Tok.Size, r.student.Tok.Size)
		}
	}
	return plan, trainEx, nil
}

func (r *runner) encode(name string, ex []textclf.Example, path string) (dataset, error) {
	d := dataset{name: name}
	ids := map[string]int64{}
	for i, l := range r.labels {
		ids[l] = int64(i)
	}
	pair := false
	for _, e := range ex {
		pair = pair || e.Pair != ""
	}
	for i, e := range ex {
		y, ok := ids[e.Label]
		if !ok {
			return d, fmt.Errorf("%s row %d: label %q is not one of the task's labels %v", path, i+1, e.Label, r.labels)
		}
		enc, err := r.student.Encode(e, pair)
		if err != nil {
			return d, fmt.Errorf("%s row %d: %w", path, i+1, err)
		}
		d.enc, d.y = append(d.enc, enc), append(d.y, y)
	}
	return d, nil
}

func (r *runner) close() {
	if r.teacher != nil {
		r.teacher.Close()
	}
	for _, b := range []*Bank{r.pre, r.snaps, r.fine} {
		b.Drop()
	}
}

// batch makes the tensors of examples idx of d.
func (r *runner) batch(d dataset, idx []int) (ids, types, mask, y, rows *ts.Tensor) {
	enc := make([]textclf.Encoded, len(idx))
	ys, is := make([]int64, len(idx)), make([]int64, len(idx))
	for i, k := range idx {
		enc[i], ys[i], is[i] = d.enc[k], d.y[k], int64(k)
	}
	b := textclf.Pad(enc, r.pad)
	ids, types, mask = b.Tensors(r.s.Device)
	return ids, types, mask, torchmods.FromSlice(ys, []int64{int64(len(ys))}, r.s.Device), torchmods.FromSlice(is, []int64{int64(len(is))}, gotch.CPU)
}

// withMasks runs fn with the pruning masks in place: the structured masks
// as tensors for BertInput, or the unstructured masked weights swapped
// into the store.
func (r *runner) withMasks(m *Masked, fn func(head, ffn *ts.Tensor)) error {
	if m != nil {
		return r.s.Store.WithParams(m.Fast(r.th), func() { fn(nil, nil) })
	}
	var head, ffn *ts.Tensor
	if r.headMask != nil {
		head, ffn = maskTensor(r.headMask, r.s.Device), maskTensor(r.ffnMask, r.s.Device)
	}
	return torchmods.Try(func() { fn(head, ffn) })
}

// forward is PruneBertForSequenceClassification's: hidden states, the
// pooled output after dropout (which the official code hands to the
// contrastive loss too) and the logits.
func forward(m *textclf.Model, ids, types, mask, head, ffn *ts.Tensor, train bool) (hidden, pooled, logits *ts.Tensor) {
	hidden = m.Bert.ForwardInput(torchmods.BertInput{IDs: ids, TypeIDs: types, Mask: mask, HeadMask: head, FFNMask: ffn}, train)
	pooled = torchmods.Dropout(m.Bert.Pool(hidden), m.Bert.Cfg.HiddenDropout, train)
	return hidden, pooled, m.Classifier.Forward(pooled)
}

// loss is the official total for examples idx: ce_weight * CE +
// distill_weight * KD(T) + each bank's contrastive terms.
func (r *runner) loss(idx []int, trainMode bool, head, ffn *ts.Tensor, rng *rand.Rand, withBanks bool) *ts.Tensor {
	c := r.c
	ids, types, mask, y, rows := r.batch(r.train, idx)
	hidden, pooled, logits := forward(r.student, ids, types, mask, head, ffn, trainMode)
	loss := torchmods.CrossEntropy(logits, y, torchmods.CEOptions{}).MustMulScalar(ts.FloatScalar(c.Distill.CEWeight), true)
	if c.Distill.Enabled {
		var tl *ts.Tensor
		ts.NoGrad(func() { _, _, tl = forward(r.teacher, ids, types, mask, nil, nil, false) })
		loss = loss.MustAdd(KD(logits, tl, c.Distill.Temperature).MustMulScalar(ts.FloatScalar(c.Distill.Weight), true), true)
	}
	if c.Contrastive.Enabled && withBanks {
		rep := pooled
		if c.Contrastive.Rep == "mean-pooling" {
			rep = textclf.MeanPool(hidden, mask)
		}
		// The official order: pre-trained, fine-tuned, snapshots.
		for _, b := range []*Bank{r.pre, r.fine, r.snaps} {
			if b == nil {
				continue
			}
			extra, err := DrawExtra(rng, b.Rows(), b.Reps.MustSize()[1], c.Contrastive.ExtraExamples)
			if err != nil {
				panic(err)
			}
			u, s := ContrastiveLoss(rep, rows, y, b, extra, r.opts)
			loss = loss.MustAdd(u, true).MustAdd(s, true)
		}
	}
	return loss
}

// KD is the distillation loss F.kl_div(log_softmax(s/T), softmax(t/T),
// reduction="batchmean") * T².
func KD(student, teacher *ts.Tensor, t float64) *ts.Tensor {
	logP := student.MustDivScalar(ts.FloatScalar(t), false).MustLogSoftmax(-1, gotch.Float, true)
	logQ := teacher.MustDivScalar(ts.FloatScalar(t), false).MustLogSoftmax(-1, gotch.Float, true)
	kl := logQ.MustExp(false).MustMul(logQ.MustSub(logP, false), true).MustSum(gotch.Float, true)
	return kl.MustDivScalar(ts.FloatScalar(float64(student.MustSize()[0])/(t*t)), true)
}

// encodeReps is the model's normalised representations of every training
// example (encode_example=True: evaluation mode, no dropout), [N, H] on
// the CPU, persisted.
func (r *runner) encodeReps(m *textclf.Model, masked *Masked, trainMode bool) (*ts.Tensor, error) {
	var out *ts.Tensor
	outer := ts.NewScope()
	defer outer.Close()
	err := r.withMasks(masked, func(head, ffn *ts.Tensor) {
		if m == r.teacher {
			head, ffn = nil, nil
		}
		var parts []*ts.Tensor
		n, eb := len(r.train.y), r.c.Data.EvalBatch
		for lo := 0; lo < n; lo += eb {
			idx := make([]int, 0, eb)
			for k := lo; k < min(lo+eb, n); k++ {
				idx = append(idx, k)
			}
			func() {
				sc := ts.NewScope() // a batch's activations go when it is done
				defer sc.Close()
				ts.NoGrad(func() {
					ids, types, mask, _, _ := r.batch(r.train, idx)
					hidden := m.Bert.ForwardInput(torchmods.BertInput{IDs: ids, TypeIDs: types, Mask: mask, HeadMask: head, FFNMask: ffn}, trainMode)
					rep := m.Bert.Pool(hidden) // before dropout: encode_example returns the pooler's output
					if r.c.Contrastive.Rep == "mean-pooling" {
						rep = textclf.MeanPool(hidden, mask)
					}
					rep = normalize(rep).MustTo(gotch.CPU, true)
					sc.Keep(rep)
					parts = append(parts, rep)
				})
			}()
		}
		out = ts.MustCat(parts, 0)
		ts.Persist(out)
	})
	return out, err
}

func (r *runner) encodeBank(m *textclf.Model, masked *Masked) (*Bank, error) {
	reps, err := r.encodeReps(m, masked, false)
	if err != nil {
		return nil, err
	}
	defer reps.MustDrop()
	var b *Bank
	err = torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		b = NewBank(reps, torchmods.FromSlice(r.train.y, []int64{int64(len(r.train.y))}, gotch.CPU))
	})
	return b, err
}

func (r *runner) addSnapshot(reps *ts.Tensor) {
	defer reps.MustDrop()
	sc := ts.NewScope()
	defer sc.Close()
	if r.snaps == nil {
		r.snaps = NewBank(reps, torchmods.FromSlice(r.train.y, []int64{int64(len(r.train.y))}, gotch.CPU))
		return
	}
	r.snaps.Append(reps)
}

// pruneRound is one structured round's start: importance from the
// gradients of the current masks, the new masks, the bank of the model as
// it is (pre-trained at round 0, a snapshot after), a fresh optimizer.
func (r *runner) pruneRound(round int, nHeads, nFFN int64, opt *train.AdamW, step int64) error {
	c := r.c
	// Round 1's importance has no contrastive term: the official code
	// hands the banks to the model after it.
	hi, fi, err := r.importance(step, round > 0)
	if err != nil {
		return err
	}
	if c.Prune.NormalizeByLayer {
		hi, fi = NormalizeByLayer(hi), NormalizeByLayer(fi)
	}
	newHead := PruneHeads(hi, nHeads, r.headMask, int(c.Prune.AtLeastHeads), c.Prune.HeadProtection == "official")
	newFFN := PruneFFN(fi, nFFN, r.ffnMask)
	if c.Contrastive.Enabled {
		want := BankSnapshots
		if round == 0 {
			want = BankPretrained
		}
		if slices.Contains(c.Contrastive.Banks, want) {
			// The model as it is, before this round's masks.
			if round == 0 {
				r.pre.Drop()
				if r.pre, err = r.encodeBank(r.student, nil); err != nil {
					return err
				}
			} else {
				reps, err := r.encodeReps(r.student, nil, false)
				if err != nil {
					return err
				}
				if err := torchmods.Try(func() { r.addSnapshot(reps) }); err != nil {
					return err
				}
			}
		}
	}
	r.headMask, r.ffnMask = newHead, newFFN
	if err := opt.Restart(); err != nil {
		return err
	}
	fmt.Fprintf(r.s.W, "cap: round %d: %d of %d heads and %d of %d neurons kept\n", round+1, Kept(r.headMask), len(r.headMask)*len(r.headMask[0]),
		Kept(r.ffnMask), len(r.ffnMask)*len(r.ffnMask[0]))
	return nil
}

// importance accumulates |dL/dmask| over the first importance_share of the
// training set, in order, with the model in evaluation mode
// (calculate_head_and_intermediate_importance).
func (r *runner) importance(step int64, withBanks bool) (head, ffn [][]float64, err error) {
	n := len(r.train.y)
	share := int(math.Floor(r.c.Prune.ImportanceShare * float64(n)))
	bs := r.c.Data.Batch
	batches := (share + bs - 1) / bs
	head = make([][]float64, len(r.headMask))
	ffn = make([][]float64, len(r.ffnMask))
	for l := range head {
		head[l] = make([]float64, len(r.headMask[l]))
		ffn[l] = make([]float64, len(r.ffnMask[l]))
	}
	add := func(acc [][]float64, g *ts.Tensor) {
		for l, row := range rows(g.MustAbs(false)) {
			for i, v := range row {
				acc[l][i] += v
			}
		}
	}
	for b := range batches {
		err = torchmods.Try(func() {
			sc := ts.NewScope()
			defer sc.Close()
			idx := make([]int, 0, bs)
			for k := b * bs; k < min((b+1)*bs, n); k++ {
				idx = append(idx, k)
			}
			hm, fm := maskTensor(r.headMask, r.s.Device), maskTensor(r.ffnMask, r.s.Device)
			hm.MustRequiresGrad_(true)
			fm.MustRequiresGrad_(true)
			rng := rand.New(rand.NewPCG(uint64(r.c.Trainer.Seed)+1, uint64(step)*1_000_003+uint64(b)))
			loss := r.loss(idx, false, hm, fm, rng, withBanks)
			loss.MustBackward()
			add(head, hm.MustGrad(false))
			add(ffn, fm.MustGrad(false))
			// The parameters' gradients are not wanted (the official code
			// zeroes them with clip_grad_norm_(params, 0)).
			ts.NoGrad(func() {
				for _, p := range r.s.Store.Params() {
					if g := p.Tensor.MustGrad(false); g.MustDefined() {
						g.MustZero_()
					}
				}
			})
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return head, ffn, nil
}

// endRound evaluates after a round's retraining.
func (r *runner) endRound(round int, headPc, pc float64, step int64) error {
	m, err := r.evaluate(r.student, r.masked)
	if err != nil {
		return err
	}
	rd := Round{Percent: pc, HeadPercent: headPc, HeadsKept: Kept(r.headMask), FFNKept: Kept(r.ffnMask), Metrics: m}
	if round < len(r.rounds) {
		r.rounds[round] = rd
	} else {
		r.rounds = append(r.rounds, rd)
	}
	row := map[string]any{"step": step + 1, "round": round + 1, "percent": pc, "heads_kept": rd.HeadsKept, "ffn_kept": rd.FFNKept}
	for k, v := range m {
		row[k] = v
	}
	fmt.Fprintf(r.s.W, "cap: after round %d (%.4g%% of neurons, %.4g%% of heads pruned): %v\n", round+1, pc, headPc, m)
	return r.s.Log(row)
}

// evaluate is each evaluation file's metrics, "<file>_<metric>", with the
// current masks.
func (r *runner) evaluate(m *textclf.Model, masked *Masked) (map[string]float64, error) {
	out := map[string]float64{}
	outer := ts.NewScope()
	defer outer.Close()
	for _, d := range r.evals {
		var pred []int
		err := r.withMasks(masked, func(head, ffn *ts.Tensor) {
			if m == r.teacher {
				head, ffn = nil, nil
			}
			eb := r.c.Data.EvalBatch
			for lo := 0; lo < len(d.y); lo += eb {
				idx := make([]int, 0, eb)
				for k := lo; k < min(lo+eb, len(d.y)); k++ {
					idx = append(idx, k)
				}
				func() {
					sc := ts.NewScope()
					defer sc.Close()
					ts.NoGrad(func() {
						ids, types, mask, _, _ := r.batch(d, idx)
						_, _, logits := forward(m, ids, types, mask, head, ffn, false)
						for _, p := range logits.MustArgmax([]int64{-1}, false, false).Int64Values() {
							pred = append(pred, int(p))
						}
					})
				}()
			}
		})
		if err != nil {
			return nil, err
		}
		label := make([]int, len(d.y))
		for i, y := range d.y {
			label[i] = int(y)
		}
		mm, err := textclf.Scores{Pred: pred, Label: label, Classes: len(r.labels)}.Compute(r.metrics)
		if err != nil {
			return nil, err
		}
		for k, v := range mm {
			out[d.name+"_"+k] = v
		}
	}
	return out, nil
}

// finish evaluates the pruned model and the teacher, measures what is
// left, really prunes a structured model and writes it to pruned/.
func (r *runner) finish(total int64) (*Result, error) {
	c, s := r.c, r.s
	res := &Result{Method: c.Prune.Method, Rounds: r.rounds, Train: len(r.train.y), Metrics: map[string]float64{}}
	if r.masked != nil {
		// The official evaluate() uses final_threshold, wherever the
		// schedule ended.
		r.th = c.Prune.FinalThreshold
	}
	m, err := r.evaluate(r.student, r.masked)
	if err != nil {
		return nil, err
	}
	for k, v := range m {
		res.Metrics[k] = v
	}
	if r.teacher != nil {
		tm, err := r.evaluate(r.teacher, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range tm {
			res.Metrics["teacher_"+k] = v
			if v != 0 {
				res.Metrics["relative_"+k] = m[k] / v
			}
		}
	}
	for _, rd := range r.rounds {
		for k, v := range rd.Metrics {
			res.Metrics[fmt.Sprintf("%s_at_%g", k, rd.Percent)] = v
			if t := res.Metrics["teacher_"+k]; t != 0 {
				res.Metrics[fmt.Sprintf("relative_%s_at_%g", k, rd.Percent)] = v / t
			}
		}
	}
	bc := r.student.Bert.Cfg
	res.Heads, res.FFN = bc.NumHiddenLayers*bc.NumAttentionHeads, bc.NumHiddenLayers*bc.IntermediateSize
	res.HeadsKept, res.FFNKept = res.Heads, res.FFN
	res.EncoderParam = encoderParams(r.student.Bert)
	res.WeightsKept = 1
	if r.masked != nil {
		err := torchmods.Try(func() {
			sc := ts.NewScope()
			defer sc.Close()
			res.WeightsKept = r.masked.Remaining(r.th)
		})
		if err != nil {
			return nil, err
		}
	}
	if r.headMask != nil {
		res.HeadsKept, res.FFNKept = Kept(r.headMask), Kept(r.ffnMask)
	}
	if err := r.writePruned(res); err != nil {
		return nil, err
	}
	if c.MLMEval.File != "" {
		if err := r.mlmEval(res); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(s.W, "cap: %v\n", res.Metrics)
	return res, nil
}

// encoderParams counts the encoder's parameters (embeddings and pooler
// excluded: what pruning can remove from).
func encoderParams(b *torchmods.Bert) int64 {
	var n int64
	for _, l := range b.Layers {
		lins := []*torchmods.Linear{l.Intermediate, l.Output}
		if l.Attn != nil {
			lins = append(lins, l.Attn.Q, l.Attn.K, l.Attn.V, l.Attn.Out)
		}
		for _, lin := range lins {
			if lin == nil {
				continue
			}
			n += int64(lin.Weight.Numel())
			if lin.Bias != nil {
				n += int64(lin.Bias.Numel())
			}
		}
		for _, b := range []*ts.Tensor{l.FFNBias, l.AttnBias} {
			if b != nil {
				n += int64(b.Numel())
			}
		}
		n += 4 * b.Cfg.HiddenSize // the two LayerNorms
	}
	return n
}

// writePruned writes the pruned model to the run's pruned/ and records
// it in res.
func (r *runner) writePruned(res *Result) error {
	dir := filepath.Join(r.s.Out, "pruned")
	var err error
	if r.masked == nil {
		res.PrunedParams, res.PrunedMaxDiff, err = r.shrinkTo(dir)
	} else {
		res.PrunedMaxDiff, err = r.bertarizeTo(dir, r.th)
	}
	res.PrunedDir = "pruned"
	return err
}

// checkBatch is a fixed batch of random token ids for comparing a
// written model with the masked one it came from.
func (r *runner) checkBatch() (ids, mask *ts.Tensor) {
	rng := rand.New(rand.NewPCG(7, 7))
	n, l := 4, min(int64(16), r.student.Bert.Cfg.MaxPositionEmbeddings)
	v := make([]int64, int64(n)*l)
	for i := range v {
		v[i] = int64(rng.IntN(int(r.student.Bert.Cfg.VocabSize)))
	}
	m := make([]int64, len(v))
	for i := range m {
		m[i] = 1
	}
	return torchmods.FromSlice(v, []int64{int64(n), l}, r.s.Device), torchmods.FromSlice(m, []int64{int64(n), l}, r.s.Device)
}

// shrinkTo really prunes the structured model into a smaller BERT, checks
// it against the masked one, and writes it with its classifier,
// config.json and tokenizer to dir (text.classify's Open and `repro
// predict` load it). It returns the encoder's parameters and the largest
// difference of the logits.
func (r *runner) shrinkTo(dir string) (params int64, diff float64, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	store := torchmods.NewStore(r.s.Device)
	defer store.Drop()
	err = torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		small, err := Shrink(store.Root().Sub("bert"), r.student.Bert, r.headMask, r.ffnMask)
		if err != nil {
			panic(err)
		}
		cls := torchmods.NewLinear(store.Root().Sub("classifier"), torchmods.LinearOptions{In: small.Cfg.HiddenSize, Out: int64(len(r.labels))})
		ts.NoGrad(func() {
			cls.Weight.Copy_(r.student.Classifier.Weight)
			cls.Bias.Copy_(r.student.Classifier.Bias)
		})
		pm := &textclf.Model{Bert: small, Classifier: cls, Tok: r.student.Tok, TokPath: r.student.TokPath, Labels: r.labels, MaxLen: r.student.MaxLen, Store: store}
		ts.NoGrad(func() {
			ids, mask := r.checkBatch()
			_, _, want := forward(r.student, ids, nil, mask, maskTensor(r.headMask, r.s.Device), maskTensor(r.ffnMask, r.s.Device), false)
			_, _, got := forward(pm, ids, nil, mask, nil, nil, false)
			diff = want.MustSub(got, false).MustAbs(true).MustMax(true).Float64Values()[0]
		})
		params = encoderParams(small)
		if err := store.Save(filepath.Join(dir, "model.safetensors"), "", map[string]string{"format": "pt"}); err != nil {
			panic(err)
		}
		if err := pm.WriteFiles(dir); err != nil {
			panic(err)
		}
		fmt.Fprintf(r.s.W, "cap: really pruned model in %s: %d encoder parameters of %d, logits within %.2g of the masked model's\n",
			dir, params, encoderParams(r.student.Bert), diff)
	})
	return params, diff, err
}

// bertarizeTo is the official bertarize.py: the unstructured model with
// its masks at threshold applied to the weights (pruned weights zero) and
// the mask scores dropped, written as a plain BERT classifier that
// text.classify, `repro predict` and transformers load. It returns the
// largest difference of its logits from the masked model's.
func (r *runner) bertarizeTo(dir string, threshold float64) (diff float64, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	store := torchmods.NewStore(r.s.Device)
	defer store.Drop()
	var plain *torchmods.BertForSequenceClassification
	if err := torchmods.Try(func() {
		plain = torchmods.NewBertForSequenceClassification(store.Root(), r.student.Bert.Cfg, int64(len(r.labels)))
	}); err != nil {
		return 0, err
	}
	err = torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		masks := map[string]*ts.Tensor{}
		for i, mk := range r.masked.Masks(threshold) {
			masks[r.masked.Names[i]] = mk
		}
		ts.NoGrad(func() {
			for _, p := range store.Params() {
				src, ok := r.s.Store.Param(p.Name)
				if !ok {
					panic(fmt.Errorf("cap: the run's model has no %s", p.Name))
				}
				v := src.Tensor
				if mk, ok := masks[p.Name]; ok {
					v = v.MustMul(mk, false)
				}
				p.Tensor.Copy_(v)
			}
		})
		pm := &textclf.Model{Bert: plain.Bert, Classifier: plain.Classifier, Tok: r.student.Tok, TokPath: r.student.TokPath, Labels: r.labels, MaxLen: r.student.MaxLen, Store: store}
		ts.NoGrad(func() {
			ids, mask := r.checkBatch()
			var want *ts.Tensor
			if err := r.s.Store.WithParams(r.masked.Fast(threshold), func() { _, _, want = forward(r.student, ids, nil, mask, nil, nil, false) }); err != nil {
				panic(err)
			}
			_, _, got := forward(pm, ids, nil, mask, nil, nil, false)
			diff = want.MustSub(got, false).MustAbs(true).MustMax(true).Float64Values()[0]
		})
		if err := store.Save(filepath.Join(dir, "model.safetensors"), "", map[string]string{"format": "pt"}); err != nil {
			panic(err)
		}
		if err := pm.WriteFiles(dir); err != nil {
			panic(err)
		}
		fmt.Fprintf(r.s.W, "cap: the model with its masks applied (bertarize.py) in %s; logits within %.2g of the masked model's\n", dir, diff)
	})
	return diff, err
}

// pruneState checkpoints the structured masks and the rounds' results.
type pruneState struct{ r *runner }

type savedPrune struct {
	HeadMask [][]float64 `json:"head_mask"`
	FFNMask  [][]float64 `json:"ffn_mask"`
	Rounds   []Round     `json:"rounds"`
	// OptOrigin is the optimizer step of the current round's restart, for
	// Adam's bias correction after a resume.
	OptOrigin int64 `json:"opt_origin"`
}

func (p pruneState) SaveState() (any, map[string]*ts.Tensor, error) {
	var origin int64
	if p.r.opt != nil {
		origin = p.r.opt.Origin()
	}
	return savedPrune{HeadMask: p.r.headMask, FFNMask: p.r.ffnMask, Rounds: p.r.rounds, OptOrigin: origin}, nil, nil
}

func (p pruneState) LoadState(raw json.RawMessage, _ map[string]*ts.Tensor) error {
	var s savedPrune
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	if (s.HeadMask == nil) != (p.r.headMask == nil) || len(s.HeadMask) != len(p.r.headMask) || len(s.FFNMask) != len(p.r.ffnMask) {
		return fmt.Errorf("checkpoint's pruning masks do not fit this run's model or method")
	}
	p.r.headMask, p.r.ffnMask, p.r.rounds, p.r.resumeOrigin = s.HeadMask, s.FFNMask, s.Rounds, s.OptOrigin
	return nil
}
