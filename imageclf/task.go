package imageclf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Task is "image.classify"; papers/papers.go registers it.
var Task = train.TaskSpec[*Config, *Result]{
	Name:    "image.classify",
	Doc:     "fine-tune a ViT checkpoint (timm, HF ViT/ViTMAE, MAE, a mae.pretrain run) on an image folder or CSV, MAE's recipe or a simple one",
	Default: Default,
	Run:     Run,
	Eval:    Eval,
}

// Result is what a run reports on the evaluation set.
type Result struct {
	Top1      float64  `json:"top1"`           // top-1 accuracy
	Top5      float64  `json:"top5,omitempty"` // top-5 accuracy (with 5 classes or more)
	Loss      float64  `json:"loss"`           // mean cross-entropy (no smoothing)
	Classes   []string `json:"classes"`
	Train     int      `json:"train_images"`
	Eval      int      `json:"eval_images"`
	Steps     int64    `json:"steps"`
	Seconds   float64  `json:"seconds"`
	Confusion string   `json:"confusion"` // the confusion matrix's PNG, in the run directory
}

// sets reads the training and evaluation sets and settles the classes:
// the config's, else the training set's, sorted.
func (c *Config) sets() (trainSet, evalSet *Set, classes []string, err error) {
	tr, ev := c.Data.Train, c.Data.Eval
	if tr == "" {
		tr = filepath.Join(c.Data.Dir, "train")
	}
	if ev == "" {
		ev = filepath.Join(c.Data.Dir, "val")
	}
	if trainSet, err = OpenSet(tr, c.Data.PathColumn, c.Data.LabelColumn); err != nil {
		return nil, nil, nil, err
	}
	if evalSet, err = OpenSet(ev, c.Data.PathColumn, c.Data.LabelColumn); err != nil {
		return nil, nil, nil, err
	}
	classes = c.Labels
	if classes == nil {
		classes = trainSet.Classes()
	}
	if len(classes) < 2 {
		return nil, nil, nil, fmt.Errorf("%s: one class (%q): nothing to classify", tr, classes)
	}
	if err := trainSet.mapLabels(classes, tr); err != nil {
		return nil, nil, nil, err
	}
	if err := evalSet.mapLabels(classes, ev); err != nil {
		return nil, nil, nil, err
	}
	if n := c.Data.TrainLimit; n > 0 && n < trainSet.Len() {
		trainSet.subset(n)
	}
	return trainSet, evalSet, classes, nil
}

// spec settles the model: the checkpoint's sizes with [model]'s keys
// over them, and the normalisation (data.mean and data.std, else the
// starting run's, else ImageNet's).
func (c *Config) spec(ck *checkpoint, classes []string, w io.Writer) (Spec, error) {
	v := c.Model
	if ck != nil {
		v = ck.model.over(c.Model)
		for _, a := range ck.assumed {
			if c.Model.Heads == 0 {
				fmt.Fprintf(w, "assumed: %s (set model.heads to override)\n", a)
			}
		}
		if ck.known && c.Model.Heads != 0 && c.Model.Heads != ck.model.Heads {
			return Spec{}, fmt.Errorf("model.heads %d, but %s says %d: heads are invisible in the weights, so a mismatch computes garbage", c.Model.Heads, c.Pretrained, ck.model.Heads)
		}
	}
	v = v.complete()
	if err := v.validate(); err != nil {
		return Spec{}, fmt.Errorf("model: %w", err)
	}
	s := Spec{Model: v, GlobalPool: c.Recipe == "mae" && c.MAE.GlobalPool, Classes: classes, CropPct: c.Data.CropPct}
	if len(c.Data.Mean) > 0 {
		if len(c.Data.Mean) != int(v.InChans) {
			return Spec{}, fmt.Errorf("data.mean has %d values for %d channels", len(c.Data.Mean), v.InChans)
		}
		for i := range c.Data.Mean {
			s.Mean, s.Std = append(s.Mean, float32(c.Data.Mean[i])), append(s.Std, float32(c.Data.Std[i]))
		}
	} else if ck != nil && ck.spec != nil && ck.spec.Model.InChans == v.InChans {
		s.Mean, s.Std = ck.spec.Mean, ck.spec.Std // an image.classify run's own: its features expect it
	} else {
		s.Mean, s.Std = defaultNorm(int(v.InChans))
	}
	return s, nil
}

// Run fine-tunes the classifier. Recipe "mae" is main_finetune.py's: AdamW
// over layer-wise-decayed groups (no decay on 1-D parameters), lr =
// blr x effective batch / 256 with a per-iteration warm-up and half-cosine,
// drop path, label smoothing, global pooling. Mixup and cutmix are not
// offered (see the README). "simple" keeps the optimiser and schedule
// without the regularisation. At the end it writes the evaluation's
// predictions and confusion matrix, and model.json for Open.
func Run(s *train.Session, c *Config) (*Result, error) {
	w := s.W
	trainSet, evalSet, classes, err := c.sets()
	if err != nil {
		return nil, err
	}
	var ck *checkpoint
	if c.Pretrained != "" {
		if ck, err = openCheckpoint(c.Pretrained); err != nil {
			return nil, err
		}
	}
	spec, err := c.spec(ck, classes, w)
	if err != nil {
		return nil, err
	}
	dropPath, smoothing := 0.0, 0.0
	if c.Recipe == "mae" {
		dropPath, smoothing = c.MAE.DropPath, c.MAE.Smoothing
	}
	m, err := newModel(s.Store, spec, dropPath)
	if err != nil {
		return nil, err
	}
	if !s.Resuming() {
		if ck != nil {
			if err := m.load(ck, w); err != nil {
				return nil, fmt.Errorf("%s: %w", c.Pretrained, err)
			}
		} else {
			fmt.Fprintln(w, "training from scratch (no pretrained checkpoint)")
		}
		if err := WriteSpec(s.Out, spec); err != nil {
			return nil, err
		}
	}
	opt := train.NewAdamW(s.Store, c.Optim.Betas[0], c.Optim.Betas[1], 1e-8, c.Optim.WeightDecay)
	if c.Recipe == "mae" {
		opt.LRScale = torchmods.ViTLayerDecay(s.Store, int(spec.Model.Depth), c.MAE.LayerDecay)
	}
	tt := m.Transform
	tt.Scale, tt.Flip = c.Data.Scale, c.Data.Flip
	loader, err := data.NewLoader(data.LoaderOptions{N: trainSet.Len(), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed), Workers: c.Data.Workers},
		func(b data.Batch) (batch, error) { return trainSet.makeBatch(b.Indices, tt, b.Rand()) })
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	lr := c.Optim.AbsLR(int64(c.Data.Batch) * c.Trainer.Accumulate * int64(s.WorldSize())) // per-rank batch x accumulation x ranks, as main_finetune.py
	sched := mae.Schedule(lr, c.Optim.MinLR, c.Optim.WarmupEpochs, float64(steps)/float64(perEpoch), perEpoch)
	fmt.Fprintf(w, "image.classify (%s recipe): %d training and %d evaluation images, %d classes, %d steps (%.2f epochs), lr %.3g\n",
		c.Recipe, trainSet.Len(), evalSet.Len(), len(classes), steps, float64(steps)/float64(perEpoch), lr)
	chans, size := int64(spec.Model.InChans), spec.Model.ImgSize
	var final *Evaluation
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched,
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			x := torchmods.FromSlice(b.pixels, []int64{int64(b.n), chans, size, size}, s.Device)
			y := torchmods.FromSlice(b.labels, []int64{int64(b.n)}, s.Device)
			return torchmods.CrossEntropy(m.Forward(x, true), y, torchmods.CEOptions{LabelSmoothing: smoothing}), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(step int64) (map[string]float64, error) {
			ev, err := m.Evaluate(evalSet, c.Data.EvalBatch)
			if err != nil {
				return nil, err
			}
			if step == steps-1 {
				final = ev
			}
			return map[string]float64{"top1": ev.Top1, "top5": ev.Top5, "eval_loss": ev.Loss}, nil
		},
	})
	if err != nil {
		return nil, err
	}
	ev := final // the evaluation Train ran after the last step, unless the run had none left
	if ev == nil {
		if ev, err = m.Evaluate(evalSet, c.Data.EvalBatch); err != nil {
			return nil, err
		}
	}
	res := &Result{Top1: ev.Top1, Top5: ev.Top5, Loss: ev.Loss, Classes: classes, Train: trainSet.Len(), Eval: evalSet.Len(), Steps: steps, Confusion: "confusion.png"}
	if err := ev.Write(s.Out, evalSet, classes); err != nil {
		return nil, err
	}
	res.Seconds = s.Elapsed().Seconds()
	fmt.Fprintf(w, "top-1 %.2f%%, top-5 %.2f%%, loss %.4f on %d images; confusion matrix in %s\n",
		100*res.Top1, 100*res.Top5, res.Loss, evalSet.Len(), filepath.Join(s.Out, res.Confusion))
	return res, nil
}

// Evaluation is a set's predictions and scores.
type Evaluation struct {
	Top1, Top5, Loss float64
	Pred             []int       // the top-1 class of each image
	Prob             []float64   // its probability
	Confusion        [][]float64 // [true][predicted] counts
}

// Evaluate classifies every image of set (with its labels mapped to the
// model's classes) in batches of n.
func (m *Model) Evaluate(set *Set, n int) (*Evaluation, error) {
	c := len(m.Classes)
	ev := &Evaluation{Confusion: make([][]float64, c)}
	for i := range ev.Confusion {
		ev.Confusion[i] = make([]float64, c)
	}
	var top1, top5, loss float64
	t := m.Transform
	err := data.Sequential(set.Len(), n, func(idx []int) error {
		b, err := set.makeBatch(idx, t, nil)
		if err != nil {
			return err
		}
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				x := torchmods.FromSlice(b.pixels, []int64{int64(b.n), int64(t.Chans), int64(t.Size), int64(t.Size)}, m.Store.Device)
				y := torchmods.FromSlice(b.labels, []int64{int64(b.n)}, m.Store.Device)
				logits := m.Forward(x, false)
				loss += torchmods.CrossEntropy(logits, y, torchmods.CEOptions{Reduction: torchmods.ReduceSum}).Float64Values()[0]
				top1 += float64(torchmods.CountTopK(logits, y, 1))
				if c >= 5 {
					top5 += float64(torchmods.CountTopK(logits, y, 5))
				}
				p, i := logits.MustSoftmax(-1, gotch.Double, false).MustMaxDim(-1, false, true)
				for k, cls := range i.Int64Values() {
					ev.Pred = append(ev.Pred, int(cls))
					ev.Confusion[b.labels[k]][cls]++
				}
				ev.Prob = append(ev.Prob, p.Float64Values()...)
			})
		})
	})
	if err != nil {
		return nil, err
	}
	n64 := float64(set.Len())
	ev.Top1, ev.Top5, ev.Loss = top1/n64, top5/n64, loss/n64
	return ev, nil
}

// Write puts an evaluation's predictions (predictions.tsv: path,
// prediction, probability, label) and its confusion matrix
// (confusion.png) in dir.
func (ev *Evaluation) Write(dir string, set *Set, classes []string) error {
	f, err := os.Create(filepath.Join(dir, "predictions.tsv"))
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintln(bw, "path\tprediction\tprobability\tlabel")
	for i, p := range ev.Pred {
		fmt.Fprintf(bw, "%s\t%s\t%.4f\t%s\n", set.Paths[i], classes[p], ev.Prob[i], classes[set.Labels[i]])
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return PlotConfusion(filepath.Join(dir, "confusion.png"), ev.Confusion, classes)
}

// Eval evaluates trained weights (a run, checkpoint or weight file) on the
// config's evaluation set, as `repro eval` calls it.
func Eval(c *Config, weights string, w io.Writer) error {
	_, evalSet, classes, err := c.sets()
	if err != nil {
		return err
	}
	var ck *checkpoint
	if c.Pretrained != "" {
		if ck, err = openCheckpoint(c.Pretrained); err != nil {
			return err
		}
	}
	spec, err := c.spec(ck, classes, io.Discard)
	if err != nil {
		return err
	}
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return err
	}
	store := torchmods.NewStore(dev)
	defer store.Drop()
	m, err := newModel(store, spec, 0)
	if err != nil {
		return err
	}
	if err := torchmods.LoadModel(weights, store); err != nil {
		return err
	}
	ev, err := m.Evaluate(evalSet, c.Data.EvalBatch)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: top-1 %.2f%%, top-5 %.2f%%, loss %.4f on %d images\n", weights, 100*ev.Top1, 100*ev.Top5, ev.Loss, evalSet.Len())
	return nil
}
