package cocoop

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// This file is the tasks: cocoop.coop and cocoop.cocoop (Dassl's TrainerX
// loop with CoOp's and CoCoOp's forward_backward: train the prompt
// learner on the training classes, then test, as base2new_train.sh and
// base2new_test.sh do in two runs), and cocoop.zeroshot (ZeroshotCLIP and
// ZeroshotCLIP2, test only). Three tasks rather than one with a method key,
// as the official code has three trainers: each config holds only the keys
// its method reads (zero-shot has no optimizer and ignores the [trainer]
// keys of training, which the framework then refuses to see set), and a
// run directory's task says which method made it.

// CoOpTask is "cocoop.coop".
var CoOpTask = train.TaskSpec[*Config, *Result]{
	Name:    coopName,
	Doc:     "CoOp (Zhou et al., IJCV 2022): learned prompt context for a frozen CLIP; base-to-new and cross-dataset protocols",
	Default: DefaultCoOp,
	Run:     RunPrompt,
	Eval:    EvalPrompt,
}

// CoCoOpTask is "cocoop.cocoop".
var CoCoOpTask = train.TaskSpec[*Config, *Result]{
	Name:    cocoopName,
	Doc:     "CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a Meta-Net; base-to-new and cross-dataset protocols",
	Default: DefaultCoCoOp,
	Run:     RunPrompt,
	Eval:    EvalPrompt,
}

// ZeroShotTask is "cocoop.zeroshot".
var ZeroShotTask = train.TaskSpec[*ZeroShotConfig, *Result]{
	Name:     zeroshotName,
	Doc:      "zero-shot CLIP with zsclip.py's hand-written template per dataset (or its prompt ensemble): the baseline of CoOp and CoCoOp",
	Default:  DefaultZeroShot,
	Run:      RunZeroShot,
	Ignores:  []string{"epochs", "max_steps", "eval_every", "checkpoint_every", "keep_checkpoints", "accumulate", "precision"},
	NoResume: true,
}

// TestResult is one test set's outcome.
type TestResult struct {
	Scores
	Classes []string `json:"classes"`
}

// Result is what the three tasks report. Accuracies are percentages, as
// the papers' tables give them.
type Result struct {
	Method   string `json:"method"`
	Dataset  string `json:"dataset"`
	Protocol string `json:"protocol"`
	Shots    int    `json:"shots"`
	// BaseAccuracy, NewAccuracy and HarmonicMean are the base-to-new
	// protocol's (the paper's "Base", "New" and "H").
	BaseAccuracy *float64 `json:"base_accuracy,omitempty"`
	NewAccuracy  *float64 `json:"new_accuracy,omitempty"`
	HarmonicMean *float64 `json:"harmonic_mean,omitempty"`
	// Accuracy is the "all" protocol's.
	Accuracy *float64 `json:"accuracy,omitempty"`
	// Cross is the cross-dataset protocol's accuracy per target dataset.
	Cross        map[string]float64    `json:"cross,omitempty"`
	Tests        map[string]TestResult `json:"tests"`
	TrainItems   int                   `json:"train_items"`
	Steps        int64                 `json:"steps"`
	TrainSeconds float64               `json:"train_seconds"`
	Seconds      float64               `json:"seconds"`
}

// testSet is a test split with the classes its prompts are built from.
type testSet struct {
	name    string
	items   []Datum
	classes []string
}

// splits are a run's training items (few-shot, subsampled) and classes,
// and its test sets.
type splits struct {
	train   []Datum
	classes []string
	tests   []testSet
}

// readData reads or generates the configured dataset.
func readData(d DataConfig) (*Dataset, error) {
	if d.Dataset == ScenesDataset {
		tr, te := d.Scenes.Options().SceneDataset(d.Scenes.Seed, d.Scenes.TrainPerClass, d.Scenes.TestPerClass)
		return &Dataset{Name: ScenesDataset, Train: tr, Test: te}, nil
	}
	return ReadDataset(d.Dataset, d.Root)
}

// loadSplits is what Dassl's DataManager and the dataset classes do to a
// dataset: K-shot sampling of the training set with the run's seed (for
// training runs; zero-shot takes every training item, as zeroshot.sh
// sets no NUM_SHOTS), then the base or new half of the classes, or all.
func loadSplits(d DataConfig, seed int64, fewShot bool) (*splits, error) {
	ds, err := readData(d)
	if err != nil {
		return nil, err
	}
	tr := ds.Train
	if fewShot {
		tr = FewShot(tr, d.Shots, seed)
	}
	out := &splits{}
	test := func(name string, trainItems, testItems []Datum) error {
		classes, err := ClassNames(trainItems)
		if err != nil {
			return fmt.Errorf("%s, %s classes: %w", d.Dataset, name, err)
		}
		out.tests = append(out.tests, testSet{name: name, items: limitPerClass(testItems, d.TestPerClass), classes: classes})
		return nil
	}
	switch d.Protocol {
	case ProtocolAll:
		out.train = tr
		if err := test(ProtocolAll, tr, ds.Test); err != nil {
			return nil, err
		}
	case ProtocolBase2New:
		base, err := Subsample(SubsampleBase, tr, ds.Test)
		if err != nil {
			return nil, err
		}
		nw, err := Subsample(SubsampleNew, tr, ds.Test)
		if err != nil {
			return nil, err
		}
		out.train = base[0]
		if err := test(SubsampleBase, base[0], base[1]); err != nil {
			return nil, err
		}
		if err := test(SubsampleNew, nw[0], nw[1]); err != nil {
			return nil, err
		}
	}
	if out.classes, err = ClassNames(out.train); err != nil {
		return nil, fmt.Errorf("%s: %w", d.Dataset, err)
	}
	for _, e := range d.Eval {
		root := e.Root
		if root == "" {
			root = d.Root
		}
		ds, err := ReadDataset(e.Dataset, root)
		if err != nil {
			return nil, fmt.Errorf("data.eval: %w", err)
		}
		classes, err := ClassNames(ds.Train)
		if err != nil {
			return nil, fmt.Errorf("data.eval %s: %w", e.Dataset, err)
		}
		out.tests = append(out.tests, testSet{name: "cross:" + e.Dataset, items: limitPerClass(ds.Test, d.TestPerClass), classes: classes})
	}
	return out, nil
}

// limitPerClass keeps the first n items of each label (all when n < 1).
func limitPerClass(items []Datum, n int) []Datum {
	if n < 1 {
		return items
	}
	seen := map[int]int{}
	var out []Datum
	for _, it := range items {
		if seen[it.Label] < n {
			seen[it.Label]++
			out = append(out, it)
		}
	}
	return out
}

// imageSize is INPUT.SIZE, which must be the CLIP's resolution (the
// official PromptLearner asserts it).
func imageSize(d DataConfig, clip *torchmods.CLIP) (int, error) {
	r := int(clip.Cfg.ImageResolution)
	if d.Dataset == ScenesDataset && d.Scenes.Size != r {
		return 0, fmt.Errorf("data.scenes.size %d is not the CLIP's resolution %d", d.Scenes.Size, r)
	}
	if d.Size != 0 && d.Size != r {
		return 0, fmt.Errorf("data.size %d is not the CLIP's resolution %d (the official code asserts they are equal)", d.Size, r)
	}
	return r, nil
}

// learner is a prompt learner as the loop and the tests use it.
type learner interface {
	loss(clip *torchmods.CLIP, images, labels *ts.Tensor) *ts.Tensor
	// scorer is the logits function for test batches; CoOp's prompts do
	// not depend on the image, so their text features are made once.
	scorer(clip *torchmods.CLIP) func(images *ts.Tensor) *ts.Tensor
}

type coopLearner struct{ *CoOpPromptLearner }

func (l coopLearner) loss(clip *torchmods.CLIP, images, labels *ts.Tensor) *ts.Tensor {
	return torchmods.CrossEntropy(CoOpLogits(clip, l.CoOpPromptLearner, images), labels, torchmods.CEOptions{})
}

func (l coopLearner) scorer(clip *torchmods.CLIP) func(*ts.Tensor) *ts.Tensor {
	var txt *ts.Tensor
	ts.NoGrad(func() { txt = normalize(l.TextFeatures(clip)) })
	return func(images *ts.Tensor) *ts.Tensor {
		return coopLogitsFrom(clip, normalize(clip.EncodeImage(images, false)), txt)
	}
}

type cocoopLearner struct{ *CoCoOpPromptLearner }

// promptBudget bounds the prompts one text-encoder call of CoCoOp's
// evaluation takes (images x classes).
const promptBudget = 512

func (l cocoopLearner) loss(clip *torchmods.CLIP, images, labels *ts.Tensor) *ts.Tensor {
	return CoCoOpLoss(clip, l.CoCoOpPromptLearner, images, labels)
}

func (l cocoopLearner) scorer(clip *torchmods.CLIP) func(*ts.Tensor) *ts.Tensor {
	chunk := max(1, promptBudget/l.NCls())
	return func(images *ts.Tensor) *ts.Tensor { return CoCoOpLogits(clip, l.CoCoOpPromptLearner, images, chunk) }
}

// newLearner builds the task's prompt learner for classes under p.
func newLearner(task string, p torchmods.Path, clip *torchmods.CLIP, tok Tokenizer, classes []string, o PromptOptions) (learner, error) {
	if task == cocoopName {
		l, err := NewCoCoOpPromptLearner(p, clip, tok, classes, o)
		return cocoopLearner{l}, err
	}
	l, err := NewCoOpPromptLearner(p, clip, tok, classes, o)
	return coopLearner{l}, err
}

// transferred builds the learner for another class list in a store of its
// own and copies the trained parameters into it, the buffers staying those
// of the new classes: what base2new_test.sh and xd_test.sh do by loading
// the trained learner into one built for the test classes.
func transferred(task string, trained *torchmods.Store, clip *torchmods.CLIP, tok Tokenizer, classes []string, o PromptOptions) (learner, *torchmods.Store, error) {
	store := torchmods.NewStore(trained.Device)
	l, err := newLearner(task, store.Root().Sub("prompt_learner"), clip, tok, classes, o)
	if err != nil {
		store.Drop()
		return nil, nil, err
	}
	w := map[string]*ts.Tensor{}
	for _, p := range trained.Params() {
		if p.Tensor.MustRequiresGrad() {
			w[p.Name] = p.Tensor
		}
	}
	rep, err := store.Load(w, false)
	if err == nil && (len(rep.Mismatched) > 0 || len(rep.Loaded) != len(w)) {
		err = fmt.Errorf("the trained prompt learner does not fit the classes %v: %s", classes, rep)
	}
	if err != nil {
		store.Drop()
		return nil, nil, err
	}
	return l, store, nil
}

// testAll scores every test set with the trained learner (in trained),
// rebuilt for each set's classes unless they are the training classes.
func testAll(task string, trained *torchmods.Store, own learner, ownClasses []string, clip *torchmods.CLIP, tok Tokenizer, o PromptOptions,
	sp *splits, d DataConfig, size int, dev gotch.Device, w io.Writer) (map[string]TestResult, error) {
	out := map[string]TestResult{}
	tf := d.transform(size)
	for _, t := range sp.tests {
		err := func() error {
			sc := ts.NewScope()
			defer sc.Close()
			l := own
			if !slices.Equal(t.classes, ownClasses) {
				nl, store, err := transferred(task, trained, clip, tok, t.classes, o)
				if err != nil {
					return fmt.Errorf("test %s: %w", t.name, err)
				}
				defer store.Drop()
				l = nl
			}
			var score func(*ts.Tensor) *ts.Tensor
			if err := torchmods.Try(func() { score = l.scorer(clip) }); err != nil {
				return err
			}
			res, err := scoreItems(t.items, tf, d.TestBatch, d.Workers, dev, score)
			if err != nil {
				return fmt.Errorf("test %s: %w", t.name, err)
			}
			out[t.name] = TestResult{Scores: res, Classes: t.classes}
			fmt.Fprintf(w, "test %s: accuracy %.2f%%, macro-F1 %.2f%% on %d images of %d classes\n", t.name, res.Accuracy, res.MacroF1, res.Items, len(t.classes))
			return nil
		}()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// summarise fills the protocol's headline numbers from the tests.
func summarise(r *Result, tests map[string]TestResult) {
	r.Tests = tests
	if b, ok := tests[SubsampleBase]; ok {
		n := tests[SubsampleNew]
		h := harmonicMean(b.Accuracy, n.Accuracy)
		r.BaseAccuracy, r.NewAccuracy, r.HarmonicMean = &b.Accuracy, &n.Accuracy, &h
	}
	if a, ok := tests[ProtocolAll]; ok {
		r.Accuracy = &a.Accuracy
	}
	for name, t := range tests {
		if target, ok := strings.CutPrefix(name, "cross:"); ok {
			if r.Cross == nil {
				r.Cross = map[string]float64{}
			}
			r.Cross[target] = t.Accuracy
		}
	}
}

// openFrozen is what every method starts from: the frozen CLIP and its
// tokenizer, the image size its encoder takes, and the splits (with the
// few-shot training set when fewShot). The caller drops loaded.Store.
func openFrozen(s *train.Session, src CLIPSource, d DataConfig, seed int64, fewShot bool) (*torchmods.LoadedCLIP, Tokenizer, int, *splits, error) {
	loaded, tok, err := LoadFrozenCLIP(src, s.Device, s.W)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	size, err := imageSize(d, loaded.Model)
	if err == nil {
		var sp *splits
		if sp, err = loadSplits(d, seed, fewShot); err == nil {
			return loaded, tok, size, sp, nil
		}
	}
	loaded.Store.Drop()
	return nil, nil, 0, nil, err
}

// RunPrompt trains CoOp's or CoCoOp's prompt learner on the training
// classes with the frozen CLIP, then tests it on every test set.
func RunPrompt(s *train.Session, c *Config) (*Result, error) {
	started := time.Now()
	loaded, tok, size, sp, err := openFrozen(s, c.CLIP, c.Data, c.Trainer.Seed, true)
	if err != nil {
		return nil, err
	}
	defer loaded.Store.Drop()
	clip := loaded.Model
	l, err := newLearner(c.Task, s.Store.Root().Sub("prompt_learner"), clip, tok, sp.classes, c.Prompt.options())
	if err != nil {
		return nil, err
	}
	if c.Prompt.Init != "" {
		if _, err := LoadPromptLearner(s.Store, c.Prompt.Init, s.W); err != nil {
			return nil, fmt.Errorf("prompt.init: %w", err)
		}
	}
	tf := c.Data.transform(size)
	trainItems := sp.train
	loader, err := data.NewLoader(data.LoaderOptions{N: len(trainItems), Batch: c.Data.Batch, Shuffle: true,
		DropLast: len(trainItems) >= c.Data.Batch, Seed: uint64(c.Trainer.Seed), Workers: c.Data.Workers},
		func(b data.Batch) (labelledBatch, error) {
			rng := b.Rand()
			var out labelledBatch
			for _, i := range b.Indices {
				img, err := LoadImage(trainItems[i])
				if err != nil {
					return out, err
				}
				out.images = append(out.images, tf.Train(img, rng)...)
				out.labels = append(out.labels, int64(trainItems[i].Label))
			}
			return out, nil
		})
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	maxEpoch := c.Trainer.Epochs
	if c.Trainer.MaxSteps > 0 {
		maxEpoch = (steps + perEpoch - 1) / perEpoch
	}
	sched, err := DasslSchedule(c.Optim.LR, c.Optim.WarmupLR, c.Optim.WarmupEpochs, maxEpoch, perEpoch)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.W, "%s on %s (%s, %d shots): %d training images of %d classes, batch %d, %d steps (%d epochs of %d)\n",
		c.Task, c.Data.Dataset, c.Data.Protocol, c.Data.Shots, len(trainItems), len(sp.classes), c.Data.Batch, steps, maxEpoch, perEpoch)
	r := int64(size)
	trainStart := time.Now()
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, LR: sched, Opt: NewDasslSGD(s.Store, c.Optim.Momentum, c.Optim.WeightDecay),
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			n := int64(len(b.labels))
			return l.loss(clip, torchmods.FromSlice(b.images, []int64{n, 3, r, r}, s.Device), torchmods.FromSlice(b.labels, []int64{n}, s.Device)), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
	})
	if err != nil {
		return nil, err
	}
	trainTime := time.Since(trainStart)
	tests, err := testAll(c.Task, s.Store, l, sp.classes, clip, tok, c.Prompt.options(), sp, c.Data, size, s.Device, s.W)
	if err != nil {
		return nil, err
	}
	res := &Result{Method: c.Task, Dataset: c.Data.Dataset, Protocol: c.Data.Protocol, Shots: c.Data.Shots,
		TrainItems: len(trainItems), Steps: steps, TrainSeconds: trainTime.Seconds(), Seconds: time.Since(started).Seconds()}
	summarise(res, tests)
	report(s.W, res)
	return res, nil
}

// EvalPrompt evaluates a trained prompt learner (a repro run or checkpoint
// of this task, or the official code's output) as the config says: what
// base2new_test.sh and xd_test.sh do with --eval-only.
func EvalPrompt(c *Config, checkpoint string, w io.Writer) error {
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return err
	}
	loaded, tok, err := LoadFrozenCLIP(c.CLIP, dev, w)
	if err != nil {
		return err
	}
	defer loaded.Store.Drop()
	size, err := imageSize(c.Data, loaded.Model)
	if err != nil {
		return err
	}
	sp, err := loadSplits(c.Data, c.Trainer.Seed, true)
	if err != nil {
		return err
	}
	store := torchmods.NewStore(dev)
	defer store.Drop()
	l, err := newLearner(c.Task, store.Root().Sub("prompt_learner"), loaded.Model, tok, sp.classes, c.Prompt.options())
	if err != nil {
		return err
	}
	if _, err := LoadPromptLearner(store, checkpoint, w); err != nil {
		return err
	}
	tests, err := testAll(c.Task, store, l, sp.classes, loaded.Model, tok, c.Prompt.options(), sp, c.Data, size, dev, w)
	if err != nil {
		return err
	}
	res := &Result{Method: c.Task, Dataset: c.Data.Dataset, Protocol: c.Data.Protocol, Shots: c.Data.Shots}
	summarise(res, tests)
	report(w, res)
	return nil
}

// RunZeroShot tests zero-shot CLIP on every test set.
func RunZeroShot(s *train.Session, c *ZeroShotConfig) (*Result, error) {
	started := time.Now()
	loaded, tok, size, sp, err := openFrozen(s, c.CLIP, c.Data, c.Trainer.Seed, false)
	if err != nil {
		return nil, err
	}
	defer loaded.Store.Drop()
	clip := loaded.Model
	tf := c.Data.transform(size)
	tests := map[string]TestResult{}
	for _, t := range sp.tests {
		dataset := c.Data.Dataset
		if target, ok := strings.CutPrefix(t.name, "cross:"); ok {
			dataset = target
		}
		templates, err := Templates(dataset, c.ZeroShot.Ensemble, c.ZeroShot.Template)
		if err != nil {
			return nil, err
		}
		err = func() error {
			sc := ts.NewScope()
			defer sc.Close()
			text, err := ZeroShotTextFeatures(clip, tok, templates, t.classes)
			if err != nil {
				return err
			}
			res, err := scoreItems(t.items, tf, c.Data.TestBatch, c.Data.Workers, s.Device, func(images *ts.Tensor) *ts.Tensor { return ZeroShotLogits(clip, text, images) })
			if err != nil {
				return fmt.Errorf("test %s: %w", t.name, err)
			}
			tests[t.name] = TestResult{Scores: res, Classes: t.classes}
			fmt.Fprintf(s.W, "test %s: accuracy %.2f%%, macro-F1 %.2f%% on %d images of %d classes (%d templates)\n", t.name, res.Accuracy, res.MacroF1, res.Items, len(t.classes), len(templates))
			return nil
		}()
		if err != nil {
			return nil, err
		}
	}
	res := &Result{Method: zeroshotName, Dataset: c.Data.Dataset, Protocol: c.Data.Protocol, Seconds: time.Since(started).Seconds()}
	summarise(res, tests)
	report(s.W, res)
	return res, nil
}

// report prints the headline numbers.
func report(w io.Writer, r *Result) {
	if r.BaseAccuracy != nil {
		fmt.Fprintf(w, "%s on %s: base %.2f%%, new %.2f%%, H %.2f%%\n", r.Method, r.Dataset, *r.BaseAccuracy, *r.NewAccuracy, *r.HarmonicMean)
	}
	if r.Accuracy != nil {
		fmt.Fprintf(w, "%s on %s: accuracy %.2f%%\n", r.Method, r.Dataset, *r.Accuracy)
	}
	for name, a := range r.Cross {
		fmt.Fprintf(w, "%s, trained on %s, on %s: accuracy %.2f%%\n", r.Method, r.Dataset, name, a)
	}
}
