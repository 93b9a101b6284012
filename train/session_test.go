package train

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

func newTestSession(t *testing.T, accumulate int64, precision string) *Session {
	t.Helper()
	cfg := DefaultTrainer()
	cfg.Accumulate, cfg.Precision = accumulate, precision
	s, err := NewSession(cfg, t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// gradsOf returns a copy of every parameter's gradient and zeroes them.
func gradsOf(s *Session) [][]float64 {
	var out [][]float64
	for _, p := range s.Store.Params() {
		g := p.Tensor.MustGrad(false)
		out = append(out, g.Float64Values())
		g.MustDrop()
		p.Tensor.ZeroGrad()
	}
	return out
}

// Accumulating two half batches gives the gradient of the whole batch's mean
// loss, and the mean of the two losses.
func TestBackwardAccumulatesTheMeanGradient(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := ts.MustRandn([]int64{8, 6}, gotch.Float, gotch.CPU)
	y := ts.MustOfSlice([]int64{0, 1, 2, 0, 1, 2, 2, 1})
	lossOf := func(lin *torchmods.Linear, lo, hi int64) *ts.Tensor {
		return torchmods.CrossEntropy(lin.Forward(x.MustNarrow(0, lo, hi-lo, false)), y.MustNarrow(0, lo, hi-lo, false), torchmods.CEOptions{})
	}
	var grads [2][][]float64
	var losses [2]float64
	for i, acc := range []int64{1, 2} {
		ts.ManualSeed(0)
		s := newTestSession(t, acc, "fp32")
		lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: 6, Out: 3})
		size := 8 / acc
		l, err := s.Backward(func(micro int) (*ts.Tensor, error) { return lossOf(lin, int64(micro)*size, int64(micro+1)*size), nil })
		require.NoError(t, err)
		losses[i], grads[i] = l, gradsOf(s)
	}
	require.InDelta(t, losses[0], losses[1], 1e-6)
	for k := range grads[0] {
		require.InDeltaSlice(t, grads[0][k], grads[1][k], 1e-6)
	}
}

// Under bf16 the matmul runs in bfloat16 while the parameters and their
// gradients stay float32, and the loss stays close to the fp32 one.
func TestBF16Autocast(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	var losses [2]float64
	for i, prec := range []string{"fp32", "bf16"} {
		ts.ManualSeed(1)
		s := newTestSession(t, 1, prec)
		lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: 16, Out: 4})
		x := ts.MustRandn([]int64{32, 16}, gotch.Float, gotch.CPU)
		var outKind gotch.DType
		l, err := s.Backward(func(int) (*ts.Tensor, error) {
			out := lin.Forward(x)
			outKind = out.DType()
			return out.MustMul(out, false).MustMean(gotch.Float, false), nil
		})
		require.NoError(t, err)
		losses[i] = l
		want := map[string]gotch.DType{"fp32": gotch.Float, "bf16": gotch.BFloat16}[prec]
		require.Equal(t, want, outKind, prec)
		g := lin.Weight.MustGrad(false)
		require.Equal(t, gotch.Float, g.DType(), "gradients of float32 parameters stay float32")
		require.Equal(t, gotch.Float, lin.Weight.DType())
	}
	require.InEpsilon(t, losses[0], losses[1], 2e-2)
	require.NotEqual(t, losses[0], losses[1], "bf16 rounding must show")
}

func TestTrainerValidatesAccumulateAndPrecision(t *testing.T) {
	cfg := DefaultTrainer()
	cfg.Accumulate = 0
	require.ErrorContains(t, cfg.Validate(), "trainer.accumulate")
	cfg = DefaultTrainer()
	cfg.Precision = "fp8"
	require.ErrorContains(t, cfg.Validate(), "trainer.precision")
	require.ErrorContains(t, cfg.Validate(), `"fp16"`)
}

// fp16 is CUDA autocast: on the CPU it is a config error naming the key,
// from Validate, NewSession, and Forward should a session's Cfg change.
func TestFP16OnTheCPUIsAConfigError(t *testing.T) {
	cfg := DefaultTrainer()
	cfg.Precision = "fp16"
	const msg = "trainer.precision: fp16 autocast needs CUDA; use bf16 or fp32 on the CPU"
	require.ErrorContains(t, cfg.Validate(), msg)
	_, err := NewSession(cfg, t.TempDir(), false, io.Discard)
	require.ErrorContains(t, err, msg)
	cfg.Device = "cuda"
	require.NoError(t, cfg.Validate(), "valid on CUDA (the device's presence is DeviceOf's check)")

	s := newTestSession(t, 1, "fp32")
	require.Nil(t, s.Scaler(), "no loss scaling under fp32")
	s.Cfg.Precision = "fp16"
	ran := false
	require.ErrorContains(t, s.Forward(func() { ran = true }), msg)
	require.False(t, ran)
}

// withScaler forces a loss scaler on an fp32 session: fp16 autocast needs
// CUDA, but the scaling logic is the same on the CPU in float32.
func withScaler(s *Session) *GradScaler {
	s.scaler = NewGradScaler()
	return s.scaler
}

// linearLoss is the mean squared output of lin on a fixed batch, narrowed
// to micro-batch micro of n.
func linearLoss(lin *torchmods.Linear, x *ts.Tensor, micro, n int) *ts.Tensor {
	size := x.MustSize()[0] / int64(n)
	out := lin.Forward(x.MustNarrow(0, int64(micro)*size, size, false))
	return out.MustMul(out, false).MustMean(gotch.Float, false)
}

// Under loss scaling the gradients after backward are the unscaled run's
// times the scale, and after one Unscale per optimizer step they are the
// unscaled run's, with and without accumulation.
func TestLossScalingUnscalesToTheFP32Gradients(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	for _, acc := range []int64{1, 2} {
		var grads [2][][]float64
		var losses [2]float64
		for i, scaled := range []bool{false, true} {
			ts.ManualSeed(3)
			s := newTestSession(t, acc, "fp32")
			lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: 6, Out: 3})
			x := ts.MustRandn([]int64{8, 6}, gotch.Float, gotch.CPU)
			var g *GradScaler
			if scaled {
				g = withScaler(s)
			}
			l, err := s.Backward(func(micro int) (*ts.Tensor, error) { return linearLoss(lin, x, micro, int(acc)), nil })
			require.NoError(t, err)
			losses[i] = l
			if scaled {
				raw := lin.Weight.MustGrad(false).Float64Values()
				for k, v := range raw {
					require.InDelta(t, grads[0][0][k]*65536, v, 65536*1e-6, "backward leaves scaled gradients")
				}
				finite, err := g.Unscale(s.Store)
				require.NoError(t, err)
				require.True(t, finite)
			}
			grads[i] = gradsOf(s)
		}
		require.Equal(t, losses[0], losses[1], "the loss reported is never scaled")
		for k := range grads[0] {
			require.InDeltaSlice(t, grads[0][k], grads[1][k], 1e-6, "accumulate %d", acc)
		}
	}
}

// A step whose scaled gradients overflow is skipped: parameters, the
// optimizer's moments and step count stay as they were, the gradients are
// zeroed, the scale halves; the next finite step updates again.
func TestLossScalingSkipsAStepWithInfGradients(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	ts.ManualSeed(4)
	s := newTestSession(t, 1, "fp32")
	g := withScaler(s)
	lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: 6, Out: 3})
	x := ts.MustRandn([]int64{8, 6}, gotch.Float, gotch.CPU)
	opt := NewAdamW(s.Store, 0.9, 0.999, 1e-8, 0.05)
	step := func(blowUp bool) {
		_, err := s.Backward(func(int) (*ts.Tensor, error) {
			l := linearLoss(lin, x, 0, 1)
			if blowUp { // finite (< 3.4e38), but times the scale it overflows float32
				l = l.MustMulScalar(ts.FloatScalar(1e35/l.Float64Values()[0]), true)
			}
			return l, nil
		})
		require.NoError(t, err)
		require.NoError(t, s.update(opt, 1.0, 1e-2))
	}
	snapshot := func() [][]float64 {
		var out [][]float64
		for _, p := range s.Store.Params() {
			out = append(out, p.Tensor.Float64Values())
		}
		_, moments := opt.State()
		for _, m := range moments {
			out = append(out, m.Float64Values())
		}
		return out
	}
	step(false)
	require.Equal(t, int64(1), opt.Steps())
	before := snapshot()
	step(true)
	require.Equal(t, before, snapshot(), "a skipped step changes no parameter and no optimizer state")
	require.Equal(t, int64(1), opt.Steps(), "nor the optimizer's step count (AdamW's bias correction)")
	require.Equal(t, 32768.0, g.Scale())
	require.Equal(t, int64(1), g.Skipped())
	for _, p := range s.Store.Params() {
		gr := p.Tensor.MustGrad(false).Float64Values()
		require.Equal(t, make([]float64, len(gr)), gr, "the skipped step's gradients are zeroed")
	}
	step(false)
	require.Equal(t, int64(2), opt.Steps())
	require.NotEqual(t, before[0], snapshot()[0])
	require.Equal(t, int64(1), g.tracker)
}

// With accumulation a scaled run trains as the unscaled one: the gradients
// are unscaled once per optimizer step (not per micro-batch) and before
// clipping, and the scaler moves once per optimizer step. Plain SGD is
// linear in the gradient, so a missing or doubled unscale would show (AdamW
// would hide most of it); the clips are: none, one that clips the true
// gradients, and one that would clip only scaled ones.
func TestLossScalingWithAccumulationTrainsAsFP32(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	const steps = 5
	for _, clip := range []float64{0, 0.05, 1e3} {
		var weights [2][][]float64
		for i, scaled := range []bool{false, true} {
			ts.ManualSeed(5)
			s := newTestSession(t, 2, "fp32")
			var g *GradScaler
			if scaled {
				g = withScaler(s)
				g.GrowthInterval = 2
			}
			lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: 6, Out: 3})
			x := ts.MustRandn([]int64{8, 6}, gotch.Float, gotch.CPU)
			var norms []float64
			err := s.Train(Plan{Steps: steps, PerEpoch: steps, Opt: NewSGD(s.Store, 0, 0, 0, false), LR: func(int64) float64 { return 0.1 },
				Clip: clip,
				Loss: func(_ int64, micro int) (*ts.Tensor, error) { return linearLoss(lin, x, micro, 2), nil },
				BeforeStep: func(int64) error {
					norms = append(norms, lin.Weight.MustNorm(false).Float64Values()[0])
					return nil
				}})
			require.NoError(t, err)
			for _, p := range s.Store.Params() {
				weights[i] = append(weights[i], p.Tensor.Float64Values())
			}
			if scaled {
				require.Equal(t, int64(0), g.Skipped())
				require.Equal(t, 65536.0*4, g.Scale(), "5 steps at interval 2: two growths, one update per optimizer step")
				require.Equal(t, int64(1), g.tracker)
			}
			require.NotEqual(t, norms[0], norms[len(norms)-1], "the weights move")
		}
		for k := range weights[0] {
			require.InDeltaSlice(t, weights[0][k], weights[1][k], 1e-6, "clip %g", clip)
		}
	}
}

// scaledResult is what the loss-scaled toy run reports: its weights and
// its scaler's whole state.
type scaledResult struct {
	Weights [][]float64
	Scaler  GradScaler
}

// scaledToyTask trains a linear layer with a loss scaler forced on its fp32
// session (growth every 2 finite steps) and, at step blowUp, a loss that is
// finite but overflows float32 once scaled, so that step is skipped.
func scaledToyTask(name string, blowUp int64) TaskSpec[*toyConfig, scaledResult] {
	return TaskSpec[*toyConfig, scaledResult]{
		Name: name,
		Default: func() *toyConfig {
			t := DefaultTrainer()
			t.MaxSteps, t.LogEvery, t.CheckpointEvery, t.KeepCheckpoints = 8, 1, 3, 10
			return &toyConfig{Base: Base{Task: name, Trainer: t}, Width: 4}
		},
		Run: func(s *Session, c *toyConfig) (scaledResult, error) {
			g := withScaler(s)
			g.GrowthInterval = 2
			lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: c.Width, Out: 2})
			err := s.Train(Plan{Steps: c.Trainer.MaxSteps, PerEpoch: 4, Opt: NewAdamW(s.Store, 0.9, 0.999, 1e-8, 0.05), LR: func(step int64) float64 { return 0.01 * float64(step+1) },
				Loss: func(step int64, _ int) (*ts.Tensor, error) {
					x := ts.MustRandn([]int64{4, c.Width}, gotch.Float, s.Device) // from the checkpointed generator
					l := linearLoss(lin, x, 0, 1)
					if step == blowUp {
						l = l.MustMulScalar(ts.FloatScalar(1e35/l.Float64Values()[0]), true)
					}
					return l, nil
				}})
			var r scaledResult
			for _, p := range s.Store.Params() {
				r.Weights = append(r.Weights, p.Tensor.Float64Values())
			}
			r.Scaler = *g
			return r, err
		},
	}
}

// metricsColumn reads one column of a run's metrics.jsonl.
func metricsColumn(t *testing.T, dir, key string) []any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	require.NoError(t, err)
	var col []any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &row))
		col = append(col, row[key])
	}
	return col
}

// A loss-scaled run resumed mid-run from a checkpoint taken with a backed-
// off scale and a half-way growth count ends bit for bit as the run straight
// through: weights, scale, growth count, skipped steps, and the metrics'
// loss_scale and skipped_steps columns; results.json records both.
func TestLossScalerResumesBitExact(t *testing.T) {
	task := scaledToyTask("toy.fp16resume", 1)
	whole, err := task.StartWith(task.Default(), RunOptions{Out: t.TempDir()})
	require.NoError(t, err)
	// Step 1 skipped (65536 -> 32768), then 6 finite steps at interval 2.
	require.Equal(t, int64(1), whole.Scaler.Skipped())
	require.Equal(t, 32768.0*8, whole.Scaler.Scale())

	dir := t.TempDir()
	_, err = task.StartWith(task.Default(), RunOptions{Out: dir})
	require.NoError(t, err)
	st, err := os.ReadFile(filepath.Join(dir, "checkpoints", "step-00000003", "state.json"))
	require.NoError(t, err)
	require.Contains(t, string(st), `"amp_scaler": {`)
	require.Contains(t, string(st), `"scale": 32768`, "saved after the backoff")
	require.Contains(t, string(st), `"growth_tracker": 1`, "and one finite step into the next growth")
	wantScale, wantSkipped := metricsColumn(t, dir, "loss_scale"), metricsColumn(t, dir, "skipped_steps")
	require.Equal(t, []any{65536.0, 32768.0, 32768.0, 65536.0, 65536.0, 131072.0, 131072.0, 262144.0}, wantScale)
	require.Equal(t, []any{0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0}, wantSkipped)
	res, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	require.Contains(t, string(res), `"skipped_steps": 1`)
	require.Contains(t, string(res), `"loss_scale": 262144`)

	for _, step := range []string{"step-00000006", "step-00000008"} {
		require.NoError(t, os.RemoveAll(filepath.Join(dir, "checkpoints", step)))
	}
	require.NoError(t, os.Remove(filepath.Join(dir, "results.json")))
	resumed, err := task.StartWith(task.Default(), RunOptions{Out: dir, Resume: true})
	require.NoError(t, err)
	require.Equal(t, whole, resumed)
	require.Equal(t, wantScale, metricsColumn(t, dir, "loss_scale"))
	require.Equal(t, wantSkipped, metricsColumn(t, dir, "skipped_steps"))
}

// Without loss scaling checkpoints and results are as before: no
// amp_scaler entry, no scaler keys.
func TestNoScalerKeepsTheCheckpointFormat(t *testing.T) {
	dir := t.TempDir()
	_, err := startWith(t, toyTask("toy.noscaler", nil), checkpointEvery(3), RunOptions{Out: dir})
	require.NoError(t, err)
	st, err := os.ReadFile(filepath.Join(dir, "checkpoints", "step-00000006", "state.json"))
	require.NoError(t, err)
	require.NotContains(t, string(st), "amp_scaler")
	for _, key := range []string{"loss_scale", "skipped_steps"} {
		for _, v := range metricsColumn(t, dir, key) {
			require.Nil(t, v, key)
		}
	}
}

func TestScalerResultsKeepTheObjectsKeys(t *testing.T) {
	g := NewGradScaler()
	g.Update(false)
	require.Equal(t, `{"b":1,"a":[2],"skipped_steps":1,"loss_scale":32768}`, string(withScalerResults([]byte(`{"b":1,"a":[2]}`), g)))
	require.Equal(t, `{"skipped_steps":1,"loss_scale":32768}`, string(withScalerResults([]byte(`{}`), g)))
	require.Equal(t, `0.5`, string(withScalerResults([]byte(`0.5`), g)), "not an object: as is")
	require.Equal(t, `{"loss_scale":3}`, string(withScalerResults([]byte(`{"loss_scale":3}`), g)), "the task's own key wins")
}
