package train

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

func TestAdamWMatchesPyTorch(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := torchmods.LoadWeights("testdata/adamw.safetensors", gotch.CPU)
	require.NoError(t, err)
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	lin := torchmods.NewLinear(store.Root(), torchmods.LinearOptions{In: 4, Out: 3})
	_, err = store.Load(map[string]*ts.Tensor{"weight": ref["weight"], "bias": ref["bias"]}, true)
	require.NoError(t, err)
	opt := NewAdamW(store, 0.9, 0.999, 1e-8, 0.1)
	for i := 0; i < 5; i++ {
		step := ts.NewScope()
		loss := lin.Forward(ref["input_x"]).MustMseLoss(ref["input_y"], 1, false)
		require.NoError(t, loss.Backward())
		require.NoError(t, opt.Step(0.01))
		step.Close()
	}
	for _, c := range []struct {
		got  *ts.Tensor
		want string
	}{{lin.Weight, "final.weight"}, {lin.Bias, "final.bias"}} {
		g, w := c.got.Float64Values(), ref[c.want].Float64Values()
		for i := range w {
			assert.InDelta(t, w[i], g[i], 1e-6, "%s[%d]", c.want, i)
		}
	}
	assert.Equal(t, int64(5), opt.Steps())
}

func TestWarmupSchedule(t *testing.T) {
	s, err := WarmupSchedule(1, 4, 12, "cosine")
	require.NoError(t, err)
	assert.Equal(t, []float64{0.25, 0.5, 0.75, 1}, []float64{s(0), s(1), s(2), s(3)})
	assert.InDelta(t, 0.5, s(8), 1e-12, "halfway through the decay")
	assert.InDelta(t, 0.5*(1+math.Cos(math.Pi*7/8)), s(11), 1e-12)
	l, _ := WarmupSchedule(2, 0, 10, "linear")
	assert.Equal(t, 2.0, l(0))
	assert.InDelta(t, 1.0, l(5), 1e-12)
	c, _ := WarmupSchedule(3, 2, 10, "constant")
	assert.Equal(t, 3.0, c(9))
	_, err = WarmupSchedule(1, 20, 10, "cosine")
	assert.Error(t, err)
	_, err = WarmupSchedule(1, 0, 10, "step")
	assert.ErrorContains(t, err, `decay "step"`)
}

func TestLoopHooksAndNaN(t *testing.T) {
	var calls []string
	l := &Loop{Steps: 5, Step: func(step int64) (StepResult, error) { return StepResult{Loss: float64(step)}, nil }}
	l.Add(Hook{Name: "log", Every: 2, Fn: func(step int64, r StepResult) error {
		calls = append(calls, "log")
		return nil
	}})
	require.NoError(t, l.Run(0))
	assert.Equal(t, []string{"log", "log", "log"}, calls, "steps 2 and 4, and the last")
	assert.Equal(t, []string{"log"}, l.Hooks())

	bad := &Loop{Steps: 5, Step: func(step int64) (StepResult, error) {
		if step == 3 {
			return StepResult{Loss: math.NaN()}, nil
		}
		return StepResult{Loss: 1}, nil
	}}
	assert.ErrorContains(t, bad.Run(0), "step 4: loss is NaN", "the fourth step (index 3), counted from 1 as checkpoints count steps")
}

func TestSGDLARSAndClippingMatchPyTorch(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := torchmods.LoadWeights("testdata/sgd.safetensors", gotch.CPU)
	require.NoError(t, err)
	for _, c := range []string{"sgd", "nesterov", "lars", "clip"} {
		store := torchmods.NewStore(gotch.CPU)
		lin := torchmods.NewLinear(store.Root(), torchmods.LinearOptions{In: 4, Out: 3})
		_, err = store.Load(map[string]*ts.Tensor{"weight": ref["weight"], "bias": ref["bias"]}, true)
		require.NoError(t, err)
		var opt Optimizer
		lr := 0.05
		switch c {
		case "sgd":
			opt = NewSGD(store, 0.9, 0.1, 0.01, false)
		case "nesterov":
			opt = NewSGD(store, 0.9, 0, 0.01, true)
		case "lars":
			opt, lr = NewLARS(store, 0.9, 0.05, 0.001), 0.5
		case "clip":
			opt, lr = NewSGD(store, 0, 0, 0, false), 0.1
		}
		for i := 0; i < 5; i++ {
			step := ts.NewScope()
			loss := lin.Forward(ref["input_x"]).MustMseLoss(ref["input_y"], 1, false)
			require.NoError(t, loss.Backward())
			if c == "clip" {
				n, err := ClipGradNorm(store, 0.05)
				require.NoError(t, err)
				if i == 0 {
					assert.InDelta(t, ref["clip.norm"].Float64Values()[0], n, 1e-6, "norm before clipping")
				}
			}
			require.NoError(t, opt.Step(lr))
			step.Close()
		}
		for _, p := range []struct {
			got  *ts.Tensor
			name string
		}{{lin.Weight, c + ".weight"}, {lin.Bias, c + ".bias"}} {
			g, w := p.got.Float64Values(), ref[p.name].Float64Values()
			for i := range w {
				assert.InDelta(t, w[i], g[i], 1e-6, "%s[%d]", p.name, i)
			}
		}
		store.Drop()
	}
}

func TestNoamSchedule(t *testing.T) {
	s, err := NoamSchedule(2, 512, 4000)
	require.NoError(t, err)
	peak := 2 / math.Sqrt(512) / math.Sqrt(4000)
	assert.InDelta(t, peak, s(3999), 1e-12, "peak at the end of warm-up")
	assert.InDelta(t, peak/2, s(4000*4-1), 1e-12, "n^-0.5 decay afterwards")
	assert.InDelta(t, peak/4000, s(0), 1e-12, "linear warm-up")
	_, err = NoamSchedule(1, 0, 10)
	assert.Error(t, err)
}

func TestFreezeAndLRScale(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	a := torchmods.NewLinear(store.Root().Sub("a"), torchmods.LinearOptions{In: 3, Out: 3})
	b := torchmods.NewLinear(store.Root().Sub("b"), torchmods.LinearOptions{In: 3, Out: 3})
	c := torchmods.NewLinear(store.Root().Sub("c"), torchmods.LinearOptions{In: 3, Out: 3})
	assert.Equal(t, 2, store.Freeze("a."))
	opt := NewSGD(store, 0, 0, 0, false)
	opt.LRScale = map[string]float64{"c.weight": 0} // a zero scale holds c.weight still
	a0, b0, c0 := a.Weight.Float64Values(), b.Weight.Float64Values(), c.Weight.Float64Values()
	x := ts.MustOnes([]int64{2, 3}, gotch.Float, gotch.CPU)
	loss := c.Forward(b.Forward(a.Forward(x))).MustSum(gotch.Float, false)
	require.NoError(t, loss.Backward())
	require.NoError(t, opt.Step(0.1))
	assert.Equal(t, a0, a.Weight.Float64Values(), "frozen")
	assert.NotEqual(t, b0, b.Weight.Float64Values(), "trained")
	assert.Equal(t, c0, c.Weight.Float64Values(), "lr scale 0")
}

// TestOptimizerStepLeavesNoTemporaries: an optimizer step frees each
// parameter's temporaries before the next parameter's, so the caller's step
// scope holds nothing new after it (before, AdamW left four tensors of each
// parameter's size there until the step ended: 1.8 GB for ViT-B MAE).
func TestOptimizerStepLeavesNoTemporaries(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(*torchmods.Store) Optimizer
	}{
		{"adamw", func(s *torchmods.Store) Optimizer { return NewAdamW(s, 0.9, 0.999, 1e-8, 0.1) }},
		{"sgd nesterov", func(s *torchmods.Store) Optimizer { return NewSGD(s, 0.9, 0, 0.1, true) }},
		{"lars", func(s *torchmods.Store) Optimizer { return NewLARS(s, 0.9, 0.05, 0.001) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := torchmods.NewStore(gotch.CPU)
			defer store.Drop()
			lin := torchmods.NewLinear(store.Root(), torchmods.LinearOptions{In: 8, Out: 4})
			opt := c.make(store)
			x := ts.MustOnes([]int64{2, 8}, gotch.Float, gotch.CPU)
			defer x.MustDrop()
			for step := 0; step < 2; step++ { // the first step makes momentum buffers
				sc := ts.NewScope()
				loss := lin.Forward(x).MustSum(gotch.Float, false)
				require.NoError(t, loss.Backward())
				before := sc.Len()
				require.NoError(t, opt.Step(0.01))
				assert.Equal(t, before, sc.Len(), "step %d: tensors the optimizer left in the step's scope", step)
				sc.Close()
			}
		})
	}
}

// A restarted AdamW updates as a new one would (zero moments, bias
// correction from the restart), while its step count goes on; SetOrigin
// gives a copy resumed from a checkpoint the same updates.
func TestAdamWRestart(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	x := ts.MustRandn([]int64{8, 4}, gotch.Float, gotch.CPU)
	y := ts.MustRandn([]int64{8, 3}, gotch.Float, gotch.CPU)
	mk := func(from *torchmods.Linear) (*torchmods.Store, *torchmods.Linear) {
		st := torchmods.NewStore(gotch.CPU)
		lin := torchmods.NewLinear(st.Root(), torchmods.LinearOptions{In: 4, Out: 3})
		if from != nil {
			ts.NoGrad(func() {
				lin.Weight.Copy_(from.Weight)
				lin.Bias.Copy_(from.Bias)
			})
		}
		return st, lin
	}
	step := func(opt *AdamW, lin *torchmods.Linear) {
		sc := ts.NewScope()
		defer sc.Close()
		require.NoError(t, lin.Forward(x).MustMseLoss(y, 1, false).Backward())
		require.NoError(t, opt.Step(0.01))
	}
	a, la := mk(nil)
	defer a.Drop()
	optA := NewAdamW(a, 0.9, 0.999, 1e-8, 0.1)
	for range 3 {
		step(optA, la)
	}
	require.NoError(t, optA.Restart())
	b, lb := mk(la) // a new optimizer from a's weights after 3 steps
	defer b.Drop()
	optB := NewAdamW(b, 0.9, 0.999, 1e-8, 0.1)
	step(optA, la)
	step(optB, lb)
	assert.Equal(t, lb.Weight.Float64Values(), la.Weight.Float64Values())
	assert.Equal(t, int64(4), optA.Steps())

	// A checkpoint at step 4 (weights, moments, count), resumed with the
	// origin set, makes optA's next update.
	c, lc := mk(la)
	defer c.Drop()
	names, tensors := optA.State()
	saved := map[string]*ts.Tensor{}
	for i, n := range names {
		saved[n] = tensors[i].MustDetach(false).MustMulScalar(ts.FloatScalar(1), true)
	}
	optC := NewAdamW(c, 0.9, 0.999, 1e-8, 0.1)
	require.NoError(t, optC.LoadState(saved, 4))
	optC.SetOrigin(3)
	step(optA, la)
	step(optC, lc)
	assert.Equal(t, la.Weight.Float64Values(), lc.Weight.Float64Values())
}

// NewAdamWDecayAll decays biases and norms too, as torch's
// AdamW(model.parameters()); NewAdamW leaves them out. With a zero
// gradient the only change is the decay, p·(1 - lr·wd).
func TestAdamWDecayAll(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	for _, all := range []bool{false, true} {
		store := torchmods.NewStore(gotch.CPU)
		lin := torchmods.NewLinear(store.Root(), torchmods.LinearOptions{In: 2, Out: 1})
		ts.NoGrad(func() {
			lin.Weight.MustFill_(ts.FloatScalar(1))
			lin.Bias.MustFill_(ts.FloatScalar(1))
		})
		opt := NewAdamW(store, 0.9, 0.999, 1e-8, 0.5)
		if all {
			opt = NewAdamWDecayAll(store, 0.9, 0.999, 1e-8, 0.5)
		}
		loss := lin.Forward(torchmods.FromSlice([]float32{0, 0}, []int64{1, 2}, gotch.CPU)).MustMulScalar(ts.FloatScalar(0), true).MustSum(gotch.Float, true)
		require.NoError(t, loss.Backward())
		require.NoError(t, opt.Step(0.1))
		assert.InDelta(t, 0.95, lin.Weight.Float64Values()[0], 1e-6, "weights decay either way")
		want := 1.0
		if all {
			want = 0.95
		}
		assert.InDelta(t, want, lin.Bias.Float64Values()[0], 1e-6, "all=%v", all)
		store.Drop()
	}
}
