package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/internal/tensorboard"
)

func startWith(t *testing.T, task TaskSpec[*toyConfig, float64], mutate func(*toyConfig), o RunOptions) (float64, error) {
	t.Helper()
	c := task.Default()
	if mutate != nil {
		mutate(c)
	}
	return task.StartWith(c, o)
}

func checkpointEvery(n int64) func(*toyConfig) {
	return func(c *toyConfig) { c.Trainer.CheckpointEvery = n; c.Trainer.KeepCheckpoints = 10 }
}

// A fresh run never writes over another run: a directory that is not empty
// is refused, and -overwrite moves its contents aside, losing nothing.
func TestNonEmptyRunDirectoryIsRefusedOrMovedAside(t *testing.T) {
	dir := t.TempDir()
	task := toyTask("toy.dir", nil)
	_, err := startWith(t, task, nil, RunOptions{Out: dir})
	require.NoError(t, err)
	before, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	_, err = startWith(t, task, nil, RunOptions{Out: dir})
	require.ErrorContains(t, err, "is not empty")
	require.ErrorContains(t, err, "-overwrite")
	after, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	require.Equal(t, before, after, "the refused run changed nothing")

	var log bytes.Buffer
	_, err = startWith(t, task, nil, RunOptions{Out: dir, Overwrite: true, W: &log})
	require.NoError(t, err)
	aside, err := filepath.Glob(filepath.Join(dir, "replaced-*", "results.json"))
	require.NoError(t, err)
	require.Len(t, aside, 1, "the old run is kept aside: %s", log.String())
	old, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	require.Equal(t, before, old)
}

// Two processes never share a run directory: while one holds it, another is
// refused with the holder's pid.
func TestLockedRunDirectoryIsRefusedWithThePID(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockRunDir(dir)
	require.NoError(t, err)
	_, err = startWith(t, toyTask("toy.lock", nil), nil, RunOptions{Out: dir})
	var le *LockedError
	require.True(t, errors.As(err, &le), "%v", err)
	require.Equal(t, os.Getpid(), le.PID)
	unlock()
	_, err = startWith(t, toyTask("toy.lock", nil), nil, RunOptions{Out: dir})
	require.NoError(t, err)
}

func TestResumeOfAMissingDirectoryCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := startWith(t, toyTask("toy.missing", nil), nil, RunOptions{Out: dir, Resume: true})
	require.ErrorContains(t, err, "no such run directory")
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err))
}

// A resume with a config that changes the run's numbers is refused, naming
// the keys; an allowed change is recorded; config.toml is never rewritten.
func TestResumeRefusesAChangedConfig(t *testing.T) {
	dir := t.TempDir()
	task := toyTask("toy.config", nil)
	_, err := startWith(t, task, checkpointEvery(3), RunOptions{Out: dir})
	require.NoError(t, err)
	saved, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	require.NoError(t, err)

	_, err = startWith(t, task, func(c *toyConfig) { checkpointEvery(3)(c); c.Width = 5; c.Trainer.Seed = 9 }, RunOptions{Out: dir, Resume: true})
	require.ErrorContains(t, err, "trainer.seed (0 -> 9)")
	require.ErrorContains(t, err, "width (4 -> 5)")
	_, err = startWith(t, task, func(c *toyConfig) { c.Trainer.MaxSteps = 9 }, RunOptions{Out: dir, Resume: true})
	require.ErrorContains(t, err, "trainer.max_steps (6 -> 9)")

	var log bytes.Buffer
	_, err = startWith(t, task, func(c *toyConfig) { c.Trainer.MaxSteps = 9 }, RunOptions{Out: dir, Resume: true, AllowChange: []string{"trainer.max_steps"}, W: &log})
	require.NoError(t, err, log.String())
	changes, err := os.ReadFile(filepath.Join(dir, "config_changes.jsonl"))
	require.NoError(t, err)
	require.Contains(t, string(changes), `"key":"trainer.max_steps"`)
	require.Contains(t, string(changes), `"from_checkpoint":"step-00000006"`)
	now, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	require.NoError(t, err)
	require.Equal(t, saved, now, "config.toml is the run's provenance")
}

// A corrupt newest checkpoint is reported by name and the run falls back to
// the newest one that verifies; it ends as the uninterrupted run does.
func TestCorruptCheckpointFallsBackToTheNewestThatVerifies(t *testing.T) {
	task := toyTask("toy.corrupt", nil)
	whole, err := startWith(t, task, checkpointEvery(2), RunOptions{Out: t.TempDir()})
	require.NoError(t, err)

	dir := t.TempDir()
	_, err = startWith(t, task, checkpointEvery(2), RunOptions{Out: dir})
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "checkpoints", "step-00000006")))
	require.NoError(t, os.Remove(filepath.Join(dir, "results.json")))
	model := filepath.Join(dir, "checkpoints", "step-00000004", "model.safetensors")
	b, err := os.ReadFile(model)
	require.NoError(t, err)
	b[len(b)-1] ^= 0x40 // one flipped bit in a weight
	require.NoError(t, os.WriteFile(model, b, 0o644))
	state := filepath.Join(dir, "checkpoints", "step-00000002", "state.json")
	require.NoError(t, VerifyCheckpoint(filepath.Dir(state)))

	var log bytes.Buffer
	resumed, err := startWith(t, task, checkpointEvery(2), RunOptions{Out: dir, Resume: true, W: &log})
	require.NoError(t, err)
	require.Contains(t, log.String(), "step-00000004 does not verify")
	require.Contains(t, log.String(), "model.safetensors: SHA-256")
	require.Contains(t, log.String(), "falling back to "+filepath.Dir(state))
	require.Equal(t, whole, resumed)

	// A forged step in state.json is caught the same way.
	forged, err := os.ReadFile(state)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(state, []byte(strings.Replace(string(forged), `"step": 2`, `"step": 5`, 1)), 0o644))
	require.ErrorContains(t, VerifyCheckpoint(filepath.Dir(state)), "state.json: SHA-256")
}

// After a resume, metrics.jsonl has each step once, in order: the rows the
// killed run logged after its checkpoint are moved aside.
func TestResumeDropsMetricsLoggedAfterTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	task := toyTask("toy.metrics", nil)
	_, err := startWith(t, task, func(c *toyConfig) { checkpointEvery(3)(c); c.Trainer.LogEvery = 1 }, RunOptions{Out: dir})
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "checkpoints", "step-00000006")))
	require.NoError(t, os.Remove(filepath.Join(dir, "results.json")))
	f, err := os.OpenFile(filepath.Join(dir, "metrics.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	f.WriteString(`{"step": 7, "lo`) // a row torn by the kill
	f.Close()
	_, err = startWith(t, task, func(c *toyConfig) { checkpointEvery(3)(c); c.Trainer.LogEvery = 1 }, RunOptions{Out: dir, Resume: true})
	require.NoError(t, err)
	var steps []int64
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row struct{ Step int64 }
		require.NoError(t, json.Unmarshal([]byte(line), &row), line)
		steps = append(steps, row.Step)
	}
	require.Equal(t, []int64{1, 2, 3, 4, 5, 6}, steps)
	dropped, err := os.ReadFile(filepath.Join(dir, "metrics.dropped.jsonl"))
	require.NoError(t, err)
	require.Equal(t, 4, strings.Count(string(dropped), "\n"), "steps 4-6 and the torn row")
}

// A stop request (what SIGINT sends) finishes the step, writes a checkpoint
// and stops; resuming from it ends as the uninterrupted run does.
func TestGracefulStopCheckpointsAndResumes(t *testing.T) {
	whole, err := startWith(t, toyTask("toy.stop", nil), nil, RunOptions{Out: t.TempDir()})
	require.NoError(t, err)
	dir := t.TempDir()
	var sess *Session
	stopping := toyTask("toy.stop", func(p *Plan) {
		after := p.AfterStep
		p.AfterStep = func(step int64) error {
			if step == 2 {
				sess.RequestStop()
			}
			return after(step)
		}
	})
	inner := stopping.Run
	stopping.Run = func(s *Session, c *toyConfig) (float64, error) { sess = s; return inner(s, c) }
	var log bytes.Buffer
	_, err = startWith(t, stopping, nil, RunOptions{Out: dir, W: &log})
	require.ErrorIs(t, err, ErrStopped)
	require.Contains(t, log.String(), "stopped after step 3 of 6 with a checkpoint")
	require.NoError(t, VerifyCheckpoint(filepath.Join(dir, "checkpoints", "step-00000003")))
	resumed, err := startWith(t, toyTask("toy.stop", nil), nil, RunOptions{Out: dir, Resume: true})
	require.NoError(t, err)
	require.Equal(t, whole, resumed)
}

// TensorBoard event files beside metrics.jsonl hold the same values.
func TestTensorBoardMirrorsMetrics(t *testing.T) {
	dir := t.TempDir()
	_, err := startWith(t, toyTask("toy.tb", nil), func(c *toyConfig) { c.Trainer.LogEvery = 2 }, RunOptions{Out: dir})
	require.NoError(t, err)
	files, err := tensorboard.EventFiles(dir)
	require.NoError(t, err)
	require.Len(t, files, 1)
	scalars, err := tensorboard.ReadScalars(files[0])
	require.NoError(t, err)
	got := map[int64]float32{}
	for _, s := range scalars {
		if s.Tag == "loss" {
			got[s.Step] = s.Value
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	require.NoError(t, err)
	want := map[int64]float32{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row struct {
			Step int64
			Loss float64
		}
		require.NoError(t, json.Unmarshal([]byte(line), &row))
		want[row.Step] = float32(row.Loss)
	}
	require.Len(t, want, 3)
	require.Equal(t, want, got)
}
