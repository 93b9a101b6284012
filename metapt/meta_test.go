package metapt

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
)

var testDir string // the vocabulary trained on testdata/corpus.txt, shared by the tests

func TestMain(m *testing.M) {
	var err error
	if testDir, err = os.MkdirTemp("", "metapt-test"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(testDir)
	os.Exit(code)
}

func testVocab() string { return filepath.Join(testDir, "vocab.txt") }

func testTokenizer(t *testing.T) *mlm.Tokenizer {
	t.Helper()
	tok, _, err := LoadCorpus(tinyConfig(pretrainName).Data, io.Discard)
	require.NoError(t, err)
	return tok
}

// tinyConfig is a 1-layer, 16-wide BERT on the test corpus.
func tinyConfig(task string) *Config {
	c := defaults(task)
	c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.CheckpointEvery, c.Trainer.KeepCheckpoints = 6, 2, 2, 10
	c.Model = torchmods.BertConfig{HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 32, HiddenAct: "gelu",
		HiddenDropout: 0.1, AttentionDropout: 0.1, MaxPositionEmbeddings: 32, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02}
	c.Meta.InnerLR = 0.05
	c.Optim.LR, c.Optim.Warmup = 1e-3, 2
	c.Data = DataConfig{Corpus: "testdata/corpus.txt", Vocab: testVocab(), VocabSize: 300, MaxLen: 24, Batch: 8, Heldout: 0.2, EvalPairs: 16}
	return c
}

func start(t *testing.T, c *Config, out string, resume bool) *Result {
	t.Helper()
	task := PretrainTask
	if c.Task == multitaskName {
		task = MultitaskTask
	}
	res, err := task.Start(c, out, resume, io.Discard)
	require.NoError(t, err)
	return res
}

func weightsAt(t *testing.T, run string, step int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "checkpoints", fmt.Sprintf("step-%08d", step), "model.safetensors"))
	require.NoError(t, err)
	return b
}

// The key property: a meta step of depth 0 is a step of multi-task
// pre-training. metapt.pretrain with meta.k = 0 and the separate plain
// path (metapt.multitask, which sums MLM and NSP without any of the meta
// machinery) end with the same weights byte for byte, after one step and
// after three (AdamW, warm-up, clipping, dropout on), in either order.
func TestK0MetaStepIsTheSummedLossStep(t *testing.T) {
	for _, steps := range []int64{1, 3} {
		plain := tinyConfig(multitaskName)
		plain.Trainer.MaxSteps, plain.Trainer.CheckpointEvery = steps, steps
		dir := t.TempDir()
		start(t, plain, filepath.Join(dir, "plain"), false)
		want := weightsAt(t, filepath.Join(dir, "plain"), int(steps))
		for _, order := range []string{"first", "second"} {
			meta := tinyConfig(pretrainName)
			meta.Meta.K, meta.Meta.Order = 0, order
			meta.Trainer.MaxSteps, meta.Trainer.CheckpointEvery = steps, steps
			start(t, meta, filepath.Join(dir, order), false)
			assert.True(t, bytes.Equal(want, weightsAt(t, filepath.Join(dir, order), int(steps))), "k = 0 (%s order), %d steps: the same weights", order, steps)
		}
		// A k = 1 step is a different update: the test can tell them apart.
		meta := tinyConfig(pretrainName)
		meta.Trainer.MaxSteps, meta.Trainer.CheckpointEvery = steps, steps
		start(t, meta, filepath.Join(dir, "k1"), false)
		assert.False(t, bytes.Equal(want, weightsAt(t, filepath.Join(dir, "k1"), int(steps))), "k = 1 differs")
	}
}

// A run cut back to its checkpoint at step 2 and resumed ends with the same
// weights as the run straight through: the loader's position, the task
// draws (seeded by step), the dropout generator and the optimizer all come
// back. Second order with k = 1; first order with k = 2; and first order
// with k = 2 on shared batches with a sampled meta-test task (whose steps
// leave a head unreached: see touchAll).
func TestResumeExactly(t *testing.T) {
	for _, set := range []func(c *Config){
		func(c *Config) { c.Meta.K, c.Meta.Order = 1, "second" },
		func(c *Config) {
			c.Meta.K, c.Meta.InnerBatches, c.Meta.Test, c.Meta.Weights = 2, "shared", "sample", []float64{1, 2}
		},
	} {
		c := tinyConfig(pretrainName)
		set(c)
		dir := t.TempDir()
		whole := start(t, c, dir, false)
		want := weightsAt(t, dir, 6)
		for _, step := range []string{"step-00000004", "step-00000006"} {
			require.NoError(t, os.RemoveAll(filepath.Join(dir, "checkpoints", step)))
		}
		require.NoError(t, os.Remove(filepath.Join(dir, "results.json")))
		resumed := start(t, c, dir, true)
		assert.True(t, bytes.Equal(want, weightsAt(t, dir, 6)), "k=%d %s order: the same weights, byte for byte", c.Meta.K, c.Meta.Order)
		assert.Equal(t, whole.HeldoutMLM, resumed.HeldoutMLM)
		assert.Equal(t, whole.HeldoutNSP, resumed.HeldoutNSP)
		assert.Equal(t, whole.TaskDraws, resumed.TaskDraws, "the inner-task counts are checkpointed")
		assert.Equal(t, int64(6*c.Meta.K), whole.TaskDraws["mlm"]+whole.TaskDraws["nsp"])
		assert.Equal(t, int64(6*(c.Meta.K+1)), whole.GradComps)
		assert.Greater(t, whole.PeakRSS, int64(0))
	}
}

// --- the meta-gradient on a tiny float64 model -----------------------------

// twoTask is a shared tanh layer with a head per task: task a reads head a,
// task b head b (so each inner step leaves the other head alone).
type twoTask struct {
	store                *torchmods.Store
	w, b, headA, headB   *ts.Tensor
	xa, ya, xb, yb, xTst *ts.Tensor
}

func newTwoTask(seed uint64) *twoTask {
	rng := rand.New(rand.NewPCG(seed, 9))
	randn := func(shape ...int64) []float64 {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64() * 0.7
		}
		return v
	}
	init := func(shape []int64, dev gotch.Device) *ts.Tensor {
		return torchmods.FromSlice(randn(shape...), shape, dev)
	}
	m := &twoTask{store: torchmods.NewStore(gotch.CPU)}
	p := m.store.Root()
	m.w = p.New("trunk.weight", []int64{4, 3}, init, false)
	m.b = p.New("trunk.bias", []int64{4}, init, true)
	m.headA = p.New("a.weight", []int64{2, 4}, init, false)
	m.headB = p.New("b.weight", []int64{1, 4}, init, false)
	data := func(shape ...int64) *ts.Tensor {
		t := torchmods.FromSlice(randn(shape...), shape, gotch.CPU)
		ts.Persist(t)
		return t
	}
	m.xa, m.ya, m.xb, m.yb, m.xTst = data(5, 3), data(5, 2), data(6, 3), data(6, 1), data(4, 3)
	return m
}

func (m *twoTask) lossA(x *ts.Tensor) *ts.Tensor {
	h := ts.MustLinear(x, m.w, m.b).MustTanh(true)
	return h.MustMatmul(m.headA.MustT(false), true).MustMseLoss(m.ya.MustNarrow(0, 0, x.MustSize()[0], false), 1, true)
}

func (m *twoTask) lossB(x *ts.Tensor) *ts.Tensor {
	h := ts.MustLinear(x, m.w, m.b).MustTanh(true)
	return h.MustMatmul(m.headB.MustT(false), true).MustSigmoid(true).MustSub(m.yb.MustNarrow(0, 0, x.MustSize()[0], false), true).MustSquare(true).MustMean(gotch.Double, true)
}

// meta is the meta-test loss for a sequence of inner tasks ("a" or "b")
// and a meta-test of both tasks on held-out inputs.
func (m *twoTask) meta(inner string, lr float64, order Order) (*ts.Tensor, error) {
	var fns []LossFn
	for _, c := range inner {
		if c == 'a' {
			fns = append(fns, func() (*ts.Tensor, error) { return m.lossA(m.xa), nil })
		} else {
			fns = append(fns, func() (*ts.Tensor, error) { return m.lossB(m.xb), nil })
		}
	}
	l, _, err := MetaLoss(m.store, fns, func() (*ts.Tensor, error) {
		return m.lossA(m.xTst).MustAdd(m.lossB(m.xTst), true), nil
	}, lr, order)
	return l, err
}

func (m *twoTask) grads() []float64 {
	var out []float64
	for _, p := range m.store.Params() {
		g := p.Tensor.MustGrad(false)
		if g.MustDefined() {
			out = append(out, g.Float64Values()...)
			g.MustZero_()
		} else {
			out = append(out, make([]float64, int64(p.Tensor.Numel()))...)
		}
	}
	return out
}

// The second-order meta-gradient through one and through two inner steps
// (float64) matches central finite differences of the meta-test loss in
// every parameter; the first-order one does not (the test can tell).
func TestSecondOrderMetaGradientMatchesFiniteDifferences(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	m := newTwoTask(1)
	defer m.store.Drop()
	for _, inner := range []string{"a", "ab", "bb"} {
		const lr, eps = 0.7, 1e-6
		l, err := m.meta(inner, lr, SecondOrder)
		require.NoError(t, err)
		require.NoError(t, l.Backward())
		second := m.grads()
		l, err = m.meta(inner, lr, FirstOrder)
		require.NoError(t, err)
		require.NoError(t, l.Backward())
		first := m.grads()

		var fd []float64
		for _, p := range m.store.Params() {
			n := int64(p.Tensor.Numel())
			for i := range n {
				at := func(d float64) float64 {
					ts.NoGrad(func() {
						p.Tensor.MustView([]int64{-1}, false).MustNarrow(0, i, 1, true).MustAddScalar_(ts.FloatScalar(d))
					})
					l, err := m.meta(inner, lr, FirstOrder) // the value does not depend on the order
					require.NoError(t, err)
					return l.Float64Values()[0]
				}
				plus := at(eps)
				minus := at(-2 * eps)
				at(eps)
				fd = append(fd, (plus-minus)/(2*eps))
			}
		}
		var scale, errSecond, errFirst float64
		for i := range fd {
			scale = math.Max(scale, math.Abs(fd[i]))
			errSecond = math.Max(errSecond, math.Abs(second[i]-fd[i]))
			errFirst = math.Max(errFirst, math.Abs(first[i]-fd[i]))
		}
		assert.Less(t, errSecond/scale, 1e-7, "inner %q: second order against finite differences", inner)
		assert.Greater(t, errFirst/scale, 1e-3, "inner %q: first order is a different gradient", inner)
	}
}

// The first-order meta-gradient is the gradient of the meta-test loss at
// the adapted weights θ_k, computed here by hand: the inner SGD steps
// applied to a copy of the weights, then an ordinary backward pass.
func TestFirstOrderMetaGradientIsTheGradientAtTheAdaptedWeights(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	const lr = 0.7
	m := newTwoTask(2)
	defer m.store.Drop()
	l, err := m.meta("ab", lr, FirstOrder)
	require.NoError(t, err)
	require.NoError(t, l.Backward())
	got := m.grads()

	byHand := newTwoTask(2) // the same weights and data
	defer byHand.store.Drop()
	// Inner step 1 on task a, step 2 on task b: SGD by hand.
	for _, step := range []func() *ts.Tensor{func() *ts.Tensor { return byHand.lossA(byHand.xa) }, func() *ts.Tensor { return byHand.lossB(byHand.xb) }} {
		require.NoError(t, step().Backward())
		ts.NoGrad(func() {
			for _, p := range byHand.store.Params() {
				if g := p.Tensor.MustGrad(false); g.MustDefined() {
					p.Tensor.MustSub_(g.MustMulScalar(ts.FloatScalar(lr), false))
					g.MustZero_()
				}
			}
		})
	}
	require.NoError(t, byHand.lossA(byHand.xTst).MustAdd(byHand.lossB(byHand.xTst), true).Backward())
	want := byHand.grads()
	require.Len(t, got, len(want))
	for i := range want {
		assert.InDelta(t, want[i], got[i], 1e-12, "element %d", i)
	}
}

// On the BERT itself (float32, no dropout): the first-order meta-gradient
// of an MLM inner step and a summed meta-test equals the ordinary gradient
// at the adapted weights; the second-order one differs from it; and the
// second-order one matches a central finite difference of the meta-test
// loss along a random direction, which the first-order one does not.
func TestBertMetaGradients(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	c := tinyConfig(pretrainName)
	c.Model.HiddenDropout, c.Model.AttentionDropout = 0, 0
	tok, corpus, err := LoadCorpus(c.Data, io.Discard)
	require.NoError(t, err)
	c.Model.VocabSize, c.Model.PadTokenID = tok.Size, tok.PAD
	anchors := corpus.Anchors(false)
	o := PairOptions{MaxLen: c.Data.MaxLen, RandomNext: 0.5, MaskRatio: 0.3, Tok: tok}
	batch := func(seed uint64, from int) Tensors {
		b, err := corpus.Examples(anchors[from:from+8], corpus.Split(false), o, rand.New(rand.NewPCG(seed, 0)))
		require.NoError(t, err)
		return ToTensors(b, tok.PAD, gotch.CPU)
	}
	b1, b2 := batch(1, 0), batch(2, 8)
	const lr = 0.5
	build := func() (Model, *torchmods.Store) {
		ts.ManualSeed(3)
		store := torchmods.NewStore(gotch.CPU)
		return Model{torchmods.NewBertForPreTraining(store.Root(), c.Model)}, store
	}
	grads := func(store *torchmods.Store) []float64 {
		var out []float64
		for _, p := range store.Params() {
			if g := p.Tensor.MustGrad(false); g.MustDefined() {
				out = append(out, g.Float64Values()...)
				g.MustZero_()
			} else {
				out = append(out, make([]float64, int64(p.Tensor.Numel()))...)
			}
		}
		return out
	}
	model, store := build()
	defer store.Drop()
	metaLoss := func(order Order) *ts.Tensor {
		l, _, err := MetaLoss(store, []LossFn{func() (*ts.Tensor, error) { return model.Loss(b1, []string{"mlm"}, false), nil }},
			func() (*ts.Tensor, error) { return model.Loss(b2, Objectives, false), nil }, lr, order)
		require.NoError(t, err)
		return l
	}
	require.NoError(t, metaLoss(FirstOrder).Backward())
	first := grads(store)
	require.NoError(t, metaLoss(SecondOrder).Backward())
	second := grads(store)

	byHand, handStore := build()
	defer handStore.Drop()
	require.NoError(t, byHand.Loss(b1, []string{"mlm"}, false).Backward())
	ts.NoGrad(func() {
		for _, p := range handStore.Params() {
			if g := p.Tensor.MustGrad(false); g.MustDefined() {
				p.Tensor.MustSub_(g.MustMulScalar(ts.FloatScalar(lr), false))
				g.MustZero_()
			}
		}
	})
	require.NoError(t, byHand.Loss(b2, Objectives, false).Backward())
	atAdapted := grads(handStore)
	var scale, diffFirst, diffSecond float64
	for i := range atAdapted {
		scale = math.Max(scale, math.Abs(atAdapted[i]))
		diffFirst = math.Max(diffFirst, math.Abs(first[i]-atAdapted[i]))
		diffSecond = math.Max(diffSecond, math.Abs(second[i]-atAdapted[i]))
	}
	assert.Less(t, diffFirst/scale, 1e-5, "first order = the gradient at θ_1")
	assert.Greater(t, diffSecond/scale, 1e-2, "second order carries the inner step's Hessian")

	// Central difference along a random unit direction d: (L(θ+εd) - L(θ-εd)) / 2ε.
	rng := rand.New(rand.NewPCG(5, 5))
	var dirs []*ts.Tensor
	var d []float64
	for _, p := range store.Params() {
		v := make([]float32, int64(p.Tensor.Numel()))
		for i := range v {
			v[i] = float32(rng.NormFloat64())
			d = append(d, float64(v[i]))
		}
		dirs = append(dirs, torchmods.FromSlice(v, p.Tensor.MustSize(), gotch.CPU))
	}
	var norm float64
	for _, x := range d {
		norm += x * x
	}
	norm = math.Sqrt(norm)
	shift := func(eps float64) {
		ts.NoGrad(func() {
			for i, p := range store.Params() {
				p.Tensor.MustAdd_(dirs[i].MustMulScalar(ts.FloatScalar(eps/norm), false))
			}
		})
	}
	const eps = 1e-2
	shift(eps)
	plus := metaLoss(FirstOrder).Float64Values()[0]
	shift(-2 * eps)
	minus := metaLoss(FirstOrder).Float64Values()[0]
	shift(eps)
	fd := (plus - minus) / (2 * eps)
	var dirSecond, dirFirst float64
	for i := range d {
		dirSecond += second[i] * d[i] / norm
		dirFirst += first[i] * d[i] / norm
	}
	t.Logf("directional derivative: finite difference %.6f, second order %.6f, first order %.6f", fd, dirSecond, dirFirst)
	assert.InDelta(t, fd, dirSecond, 0.02*math.Abs(fd), "second order against finite differences")
	assert.Greater(t, math.Abs(dirFirst-fd), 5*0.02*math.Abs(fd), "first order misses the second-order term")
}

// Pre-trained weights load into mlm.finetune's lexname classifier
// (BertForSequenceClassification) by name: every bert.* tensor, pooler
// included; only the classifier is new, and cls.* is reported unexpected.
func TestWeightsLoadIntoTheLexnameClassifier(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	cfg := tinyConfig(pretrainName).Model
	cfg.VocabSize = 50
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	pt := torchmods.NewBertForPreTraining(store.Root(), cfg)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	require.NoError(t, store.Save(path, "F32", nil))

	ft := torchmods.NewStore(gotch.CPU)
	defer ft.Drop()
	cls := torchmods.NewBertForSequenceClassification(ft.Root(), cfg, 45)
	var log stringWriter
	require.NoError(t, mlm.LoadHF(ft, path, &log))
	nBert := 0
	for _, p := range store.Params() {
		if strings.HasPrefix(p.Name, "bert.") {
			nBert++
		}
	}
	assert.Contains(t, string(log), fmt.Sprintf("loaded %d tensors; missing (2): classifier.weight, classifier.bias; unexpected (7): cls.", nBert))
	assert.Equal(t, pt.Bert.Pooler.Weight.Float64Values(), cls.Bert.Pooler.Weight.Float64Values(), "the NSP-trained pooler is kept")
	assert.Equal(t, pt.Bert.Word.Weight.Float64Values(), cls.Bert.Word.Weight.Float64Values())
}

type stringWriter string

func (s *stringWriter) Write(b []byte) (int, error) { *s += stringWriter(b); return len(b), nil }

func TestConfigErrorsNameTheKey(t *testing.T) {
	for key, set := range map[string]func(c *Config){
		"meta.k":             func(c *Config) { c.Meta.K = -1 },
		"meta.order":         func(c *Config) { c.Meta.Order = "third" },
		"meta.inner_lr":      func(c *Config) { c.Meta.InnerLR = 0 },
		"meta.tasks":         func(c *Config) { c.Meta.Tasks = []string{"mlm", "mlm"} },
		"meta.weights":       func(c *Config) { c.Meta.Weights = []float64{1} },
		"meta.test":          func(c *Config) { c.Meta.Test = "max" },
		"meta.inner_batches": func(c *Config) { c.Meta.InnerBatches = "some" },
		"optim.name":         func(c *Config) { c.Optim.Name = "lamb" },
		"masking.ratio":      func(c *Config) { c.Masking.Ratio = 0 },
		"nsp.random_next":    func(c *Config) { c.NSP.RandomNext = 2 },
		"data.max_len":       func(c *Config) { c.Data.MaxLen = 4 },
	} {
		c := tinyConfig(pretrainName)
		set(c)
		assert.ErrorContains(t, c.Validate(), key, key)
	}
	c := tinyConfig(multitaskName)
	c.Meta.K = 1
	assert.ErrorContains(t, c.Validate(), "meta.k", "the plain path refuses inner steps")
	_, err := MultitaskTask.Start(c, t.TempDir(), false, io.Discard)
	assert.Error(t, err)
}
