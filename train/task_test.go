package train

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// toyConfig is a task config with one key of its own.
type toyConfig struct {
	Base
	Width int64 `toml:"width"`
}

func (c *toyConfig) Validate() error { return nil }

// toyTask fits a linear layer to a fixed target; plan lets a test change
// the Plan before training.
func toyTask(name string, plan func(*Plan)) TaskSpec[*toyConfig, float64] {
	return TaskSpec[*toyConfig, float64]{
		Name: name,
		Default: func() *toyConfig {
			t := DefaultTrainer()
			t.MaxSteps = 6
			return &toyConfig{Base: Base{Task: name, Trainer: t}, Width: 4}
		},
		Run: func(s *Session, c *toyConfig) (float64, error) {
			lin := torchmods.NewLinear(s.Store.Root().Sub("fc"), torchmods.LinearOptions{In: c.Width, Out: 1})
			sched, _ := WarmupSchedule(0.1, 0, c.Trainer.MaxSteps, "constant")
			var last float64
			p := Plan{Steps: c.Trainer.MaxSteps, PerEpoch: 1, Opt: NewAdamW(s.Store, 0.9, 0.999, 1e-8, 0), LR: sched,
				Loss: func(int64, int) (*ts.Tensor, error) {
					x := ts.MustOnes([]int64{2, c.Width}, gotch.Float, s.Device)
					return lin.Forward(x).MustSub(ts.MustOnes([]int64{2, 1}, gotch.Float, s.Device), true).MustPowTensorScalar(ts.IntScalar(2), true).MustMean(gotch.Float, true), nil
				},
				AfterStep: func(int64) error { last = lin.Bias.Float64Values()[0]; return nil },
			}
			if plan != nil {
				plan(&p)
			}
			return last, s.Train(p)
		},
	}
}

func start(t *testing.T, task TaskSpec[*toyConfig, float64], mutate func(*toyConfig), dir string, resume bool) (float64, error) {
	t.Helper()
	c := task.Default()
	if mutate != nil {
		mutate(c)
	}
	return task.Start(c, dir, resume, io.Discard)
}

// A trainer key that a task does not honour is refused, by name, instead
// of being silently ignored; at its default it is fine.
func TestIgnoredTrainerKeyIsRefusedByName(t *testing.T) {
	task := toyTask("toy.ignores", nil)
	task.Ignores = []string{"precision", "accumulate"}
	_, err := start(t, task, nil, t.TempDir(), false)
	require.NoError(t, err)
	_, err = start(t, task, func(c *toyConfig) { c.Trainer.Precision = "bf16" }, t.TempDir(), false)
	require.ErrorContains(t, err, "trainer.precision: task toy.ignores does not use this key")
	_, err = start(t, task, func(c *toyConfig) { c.Trainer.Accumulate = 2 }, t.TempDir(), false)
	require.ErrorContains(t, err, "trainer.accumulate")
}

func TestTaskThatCannotResumeRefusesResume(t *testing.T) {
	task := toyTask("toy.noresume", nil)
	task.NoResume = true
	_, err := start(t, task, nil, t.TempDir(), true)
	require.ErrorContains(t, err, "task toy.noresume cannot resume")
}

func TestEvalEveryWithoutEvaluationIsRefused(t *testing.T) {
	_, err := start(t, toyTask("toy.noeval", nil), func(c *toyConfig) { c.Trainer.EvalEvery = 2 }, t.TempDir(), false)
	require.ErrorContains(t, err, "trainer.eval_every")
}

// Data smaller than one optimizer step is an error, not a run of 0 steps.
func TestStepsRefusesDataSmallerThanAStep(t *testing.T) {
	s := newTestSession(t, 4, "fp32")
	_, _, err := s.Steps(3)
	require.ErrorContains(t, err, "fewer than trainer.accumulate = 4")
	per, total, err := s.Steps(9)
	require.NoError(t, err)
	require.Equal(t, [2]int64{2, 2}, [2]int64{per, total}, "9 batches at accumulate 4: 2 steps an epoch, 1 epoch")
}

// A panic in the task's forward pass reaches the user with its own message.
func TestForwardPanicSurfacesWithItsMessage(t *testing.T) {
	task := toyTask("toy.panics", func(p *Plan) {
		p.Loss = func(int64, int) (*ts.Tensor, error) {
			lin := torchmods.NewLinear(torchmods.NewStore(gotch.CPU).Root(), torchmods.LinearOptions{In: 3, Out: 1})
			return lin.Forward(ts.MustOnes([]int64{2, 5}, gotch.Float, gotch.CPU)), nil
		}
	})
	_, err := start(t, task, nil, t.TempDir(), false)
	require.ErrorContains(t, err, "step 1: Linear: input shape [2 5], want last dimension 3")
}

// counter is task state with a value and a tensor.
type counter struct {
	n   int
	vec *ts.Tensor
}

func (c *counter) SaveState() (any, map[string]*ts.Tensor, error) {
	return c.n, map[string]*ts.Tensor{"vec": c.vec}, nil
}

func (c *counter) LoadState(raw json.RawMessage, tensors map[string]*ts.Tensor) error {
	if err := json.Unmarshal(raw, &c.n); err != nil {
		return err
	}
	ts.NoGrad(func() { c.vec.Copy_(tensors["vec"]) })
	return nil
}

// Task state round-trips through a checkpoint, its tensors included; a
// checkpoint whose state entries differ from the task's is refused by name.
func TestTaskStateIsCheckpointedAndMismatchesAreRefused(t *testing.T) {
	dir := t.TempDir()
	var saved *counter
	stateful := func(names ...string) TaskSpec[*toyConfig, float64] {
		return toyTask("toy.state", func(p *Plan) {
			c := &counter{vec: ts.MustZeros([]int64{3}, gotch.Float, gotch.CPU)}
			ts.Persist(c.vec)
			saved = c
			p.AfterStep = func(step int64) error {
				c.n++
				ts.NoGrad(func() { c.vec.MustAddScalar_(ts.FloatScalar(1)) })
				return nil
			}
			p.State = map[string]State{}
			for _, n := range names {
				p.State[n] = c
			}
			if len(names) > 1 {
				p.State[names[1]] = Float64s(make([]float64, 5))
			}
		})
	}
	_, err := start(t, stateful("count"), func(c *toyConfig) { c.Trainer.CheckpointEvery = 3 }, dir, false)
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "checkpoints", "step-00000006")))
	_, err = start(t, stateful("count"), nil, dir, true)
	require.NoError(t, err)
	require.Equal(t, 6, saved.n, "3 restored + 3 resumed steps")
	require.Equal(t, []float64{6, 6, 6}, saved.vec.Float64Values())

	_, err = start(t, stateful("count", "extra"), nil, dir, true)
	require.ErrorContains(t, err, `no task state "extra"`)
	_, err = start(t, toyTask("toy.state", nil), nil, dir, true)
	require.ErrorContains(t, err, `holds task state "count" that this task does not have`)
}

func TestFloat64sRefusesAnotherLength(t *testing.T) {
	st := Float64s(make([]float64, 3))
	require.ErrorContains(t, st.LoadState(json.RawMessage(`[1,2]`), nil), "holds 2 values, this run has 3")
	v := make([]float64, 2)
	require.NoError(t, Float64s(v).LoadState(json.RawMessage(`[1,2]`), nil))
	require.Equal(t, []float64{1, 2}, v)
}

// TestStandsForAbsent: a key a task declares added later matches a saved
// config without it only at the value its absence stood for; the
// [trainer] keys added later count for every task.
func TestStandsForAbsent(t *testing.T) {
	task := TaskSpec[*toyConfig, int]{Name: "toy.added", Added: map[string]any{"data.crop": "retry", "n": 3}}
	assert.True(t, StandsForAbsent(task, "data.crop", "retry"))
	assert.False(t, StandsForAbsent(task, "data.crop", "clamped"))
	assert.True(t, StandsForAbsent(task, "n", int64(3)), "TOML's int64 against a Go int")
	assert.False(t, StandsForAbsent(task, "n", 3.0))
	assert.True(t, StandsForAbsent(task, "trainer.tensorboard", true))
	assert.False(t, StandsForAbsent(task, "other", int64(1)))
	assert.False(t, StandsForAbsent(nil, "data.crop", "retry"))
}
