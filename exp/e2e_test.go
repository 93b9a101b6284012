package exp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/data"
)

// These tests run `repro exp` as a subprocess on tiny grids of the basics
// softmax task (512 Fashion-MNIST images, tens of steps): each run takes
// seconds.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// reproBinary builds cmd/repro once per test process.
func reproBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds repro and trains tiny models")
	}
	if _, err := os.Stat(filepath.Join(data.FashionMNISTDir, "train-images-idx3-ubyte.gz")); err != nil {
		if _, err2 := os.Stat(data.FashionMNISTDir); err2 != nil {
			t.Skipf("Fashion-MNIST is not installed (%v)", err2)
		}
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "exp-test-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "repro")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "build", "-o", binPath, "./cmd/repro")
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/repro: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

func init() {
	// TestMain (lock_test.go) runs the tests; remove the binary after.
	cleanups = append(cleanups, func() {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	})
}

var cleanups []func()

func softmaxConfig(t *testing.T) string {
	p, err := filepath.Abs(filepath.Join("..", "configs", "basics", "softmax.toml"))
	require.NoError(t, err)
	return p
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func hasCheckpoint(dir string) bool { return ckptStep(dir) > 0 }

// ckptStep is the step of a run's newest checkpoint, 0 if none.
func ckptStep(dir string) int64 {
	m, _ := filepath.Glob(filepath.Join(dir, "checkpoints", "step-*[0-9]"))
	var step int64
	for _, p := range m {
		var n int64
		if _, err := fmt.Sscanf(filepath.Base(p), "step-%d", &n); err == nil {
			step = max(step, n)
		}
	}
	return step
}

// lastStep is the last step metrics.jsonl logged.
func lastStep(t *testing.T, dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	require.NoError(t, err)
	var last int64
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row struct{ Step int64 }
		require.NoError(t, json.Unmarshal([]byte(l), &row), "%s: %q", dir, l)
		last = row.Step
	}
	return last
}

// starts counts repro exp's headers in a run's train.log: fresh starts
// (restarts included) and resumes.
func starts(log string) (fresh, resumed int) {
	for _, l := range strings.Split(log, "\n") {
		if !strings.HasPrefix(l, "=== repro exp ") {
			continue
		}
		if strings.Contains(l, ": fresh start") {
			fresh++
		}
		if strings.Contains(l, ": resuming") {
			resumed++
		}
	}
	return
}

// noProcessMentions waits until no process's command line mentions s.
func noProcessMentions(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var alive []string
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err == nil && bytes.Contains(b, []byte(s)) {
				alive = append(alive, strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes outlived repro exp's SIGKILL:\n%s", strings.Join(alive, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type snapshot struct {
	done, ckpt, started bool
	resultsMod          time.Time
	log                 string
}

func TestKillAndRerunResumesEveryRunOnce(t *testing.T) {
	bin := reproBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	dir := t.TempDir()
	root := filepath.Join(dir, "runs")
	file := filepath.Join(dir, "grid.toml")
	common := `"data.train_limit" = 512, "trainer.checkpoint_every" = 10, "trainer.log_every" = 10, "trainer.keep_checkpoints" = 2, "optim.warmup" = 5`
	require.NoError(t, os.WriteFile(file, []byte(fmt.Sprintf(`
name = "kill"
root = %q
seeds = [0, 1]
jobs = 2
threads = 1

[stage.a]
config = %q
set = { %s, "trainer.max_steps" = 40 }
metrics = ["test_accuracy"]

[stage.b]
config = %q
over = ["condition"]
after = ["a"]
set = { %s, "trainer.max_steps" = 20 }
metrics = ["test_accuracy"]

[[condition]]
name = "softmax"
baseline = true

[[condition]]
name = "mlp"
set = { "model.kind" = "mlp", "model.hidden" = 256 }
`, root, softmaxConfig(t), common, softmaxConfig(t), common)), 0o644))
	e, err := Load(file)
	require.NoError(t, err)
	require.Len(t, e.Runs, 6)

	maxSteps := map[string]int64{"a": 40, "b": 20}
	// First invocation: SIGKILL it once a run is done and another is between
	// checkpoints.
	var out1 bytes.Buffer
	first := exec.CommandContext(ctx, bin, "exp", "run", file)
	first.Dir, first.Stdout, first.Stderr = dir, &out1, &out1
	require.NoError(t, first.Start())
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	killed := false
	for !killed {
		select {
		case err := <-exited:
			t.Fatalf("repro exp ended (%v) before a run was caught mid-way:\n%s", err, out1.String())
		case <-ctx.Done():
			t.Fatalf("timed out waiting for a finished run and one mid-way:\n%s", out1.String())
		case <-time.After(10 * time.Millisecond):
		}
		var done, mid int
		for _, r := range e.Runs {
			switch step := ckptStep(r.Dir); {
			case exists(filepath.Join(r.Dir, "results.json")):
				done++
			case step > 0 && step < maxSteps[r.Stage.Name]:
				mid++ // between checkpoints, not in its final evaluation
			}
		}
		if done >= 1 && mid >= 1 {
			require.NoError(t, first.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	<-exited
	// Its runs die with it (Pdeathsig), releasing their locks.
	noProcessMentions(t, root, 10*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; {
		var locked []string
		for _, r := range e.Runs {
			if _, held := heldBy(r.Dir); held {
				locked = append(locked, r.ID)
			}
		}
		if len(locked) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still locked 10 s after the kill: %v", locked)
		}
		time.Sleep(20 * time.Millisecond) // a killed process closes its files as it exits
	}
	before := map[*Run]snapshot{}
	var nDone, nMid int
	for _, r := range e.Runs {
		s := snapshot{done: exists(filepath.Join(r.Dir, "results.json")), ckpt: hasCheckpoint(r.Dir), started: exists(filepath.Join(r.Dir, "config.toml"))}
		if st, err := os.Stat(filepath.Join(r.Dir, "results.json")); err == nil {
			s.resultsMod = st.ModTime()
		}
		b, _ := os.ReadFile(filepath.Join(r.Dir, "train.log"))
		s.log = string(b)
		before[r] = s
		if s.done {
			nDone++
		} else if s.ckpt {
			nMid++
		}
	}
	t.Logf("killed with %d run(s) done and %d mid-way:\n%s", nDone, nMid, out1.String())
	require.GreaterOrEqual(t, nDone, 1)
	require.GreaterOrEqual(t, nMid, 1, "the run caught mid-way finished between the check and the kill")

	// Then two invocations at once: they share the rest through the locks.
	type result struct {
		out string
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			cmd := exec.CommandContext(ctx, bin, "exp", "run", file)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			results <- result{string(out), err}
		}()
	}
	var outs []string
	for range 2 {
		r := <-results
		require.NoError(t, r.err, r.out)
		outs = append(outs, r.out)
	}
	t.Logf("the two reruns:\n%s\n---\n%s", outs[0], outs[1])
	all := strings.Join(outs, "\n")

	for _, r := range e.Runs {
		s := before[r]
		require.FileExists(t, filepath.Join(r.Dir, "results.json"), "%s is lost", r.ID)
		assert.Equal(t, maxSteps[r.Stage.Name], lastStep(t, r.Dir), "%s ran to the end", r.ID)
		b, err := os.ReadFile(filepath.Join(r.Dir, "train.log"))
		require.NoError(t, err)
		log := string(b)
		require.True(t, strings.HasPrefix(log, s.log), "%s: train.log is only appended to", r.ID)
		newFresh, newResumed := starts(log[len(s.log):])
		fresh, _ := starts(log)
		switch {
		case s.done:
			st, err := os.Stat(filepath.Join(r.Dir, "results.json"))
			require.NoError(t, err)
			assert.Equal(t, s.resultsMod, st.ModTime(), "%s was done: untouched", r.ID)
			assert.Equal(t, s.log, log, "%s was done: not started again", r.ID)
		case s.ckpt:
			assert.Equal(t, 0, newFresh, "%s had a checkpoint: not repeated from scratch", r.ID)
			assert.Equal(t, 1, newResumed, "%s had a checkpoint: resumed once", r.ID)
			assert.Contains(t, log[len(s.log):], "resuming from", "%s: train's own resume message", r.ID)
			assert.Equal(t, 1, fresh, r.ID)
			assert.Contains(t, all, "resume   "+r.ID+" (from step ")
		case s.started:
			assert.Equal(t, 1, newFresh+newResumed, "%s was started once more", r.ID)
		default:
			assert.Equal(t, 1, newFresh, "%s was started once, by one of the two", r.ID)
			assert.Equal(t, 0, newResumed, r.ID)
		}
	}

	// status agrees, and the report has both seeds.
	st, err := exec.CommandContext(ctx, bin, "exp", "status", file).CombinedOutput()
	require.NoError(t, err, string(st))
	assert.Contains(t, string(st), "kill: 6 runs: 6 done")
	rep := exec.CommandContext(ctx, bin, "exp", "report", "-no-plots", file)
	rep.Dir = dir
	md, err := rep.Output()
	require.NoError(t, err)
	assert.Regexp(t, `\| mlp \| 0\.\d{4} ± 0\.\d{4} \(0\.\d{4}, 0\.\d{4}\) \| 2 \|`, string(md))
}

func TestFailedRunBlocksDependentsAndAChangedConfigIsRefused(t *testing.T) {
	bin := reproBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	root := filepath.Join(dir, "runs")
	file := filepath.Join(dir, "fail.toml")
	text := fmt.Sprintf(`
root = %q
seeds = [0]
jobs = 2
threads = 1

[stage.a]
config = %q
set = { "data.train_limit" = 256, "trainer.max_steps" = 20, "optim.warmup" = 5 }

[stage.b]
config = %q
after = ["a"]
set = { "data.train_limit" = 256, "trainer.max_steps" = 10, "optim.warmup" = 5 }

[[condition]]
name = "ok"

[[condition]]
name = "bad"
set = { "optim.warmup" = 100 }   # more than the steps: the run fails when it builds its schedule
`, root, softmaxConfig(t), softmaxConfig(t))
	require.NoError(t, os.WriteFile(file, []byte(text), 0o644))
	run := func(flags ...string) (string, int) {
		cmd := exec.CommandContext(ctx, bin, append(append([]string{"exp", "run"}, flags...), file)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return string(out), code
	}
	// -only: the good condition's second stage, which brings its first;
	// the failing condition is not touched.
	out, code := run("-only", "b/ok/*")
	t.Log(out)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "2 of 2 runs done")
	assert.FileExists(t, filepath.Join(root, "b", "ok", "seed-0", "results.json"))
	assert.NoDirExists(t, filepath.Join(root, "a", "bad"))
	out, code = run("-only", "c/*")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `run pattern "c/*" matches none of`)

	out, code = run()
	t.Log(out)
	assert.Equal(t, 1, code)
	badLog := filepath.Join(root, "a", "bad", "seed-0", "train.log")
	assert.Contains(t, out, "FAILED   a/bad/seed-0")
	assert.Contains(t, out, "blocked  b/bad/seed-0 (needs a/bad/seed-0)")
	assert.Contains(t, out, "warmup 100", "the log's last line, the error")
	assert.Contains(t, out, "log: "+badLog)
	assert.Contains(t, out, "1 run(s) failed and 1 blocked")
	assert.FileExists(t, filepath.Join(root, "b", "ok", "seed-0", "results.json"), "the other condition went on")
	log, err := os.ReadFile(badLog)
	require.NoError(t, err)
	assert.Contains(t, string(log), "warmup")

	// The file changes: the finished runs are not reused, nor overwritten.
	okLog := filepath.Join(root, "a", "ok", "seed-0", "train.log")
	okBefore, err := os.ReadFile(okLog)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, []byte(strings.Replace(text, `"trainer.max_steps" = 20`, `"trainer.max_steps" = 21`, 1)), 0o644))
	out, code = run()
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "a/ok/seed-0")
	assert.Contains(t, out, "trainer.max_steps: saved 20, now 21")
	assert.Contains(t, out, "refusing to reuse or overwrite them")
	okAfter, err := os.ReadFile(okLog)
	require.NoError(t, err)
	assert.Equal(t, string(okBefore), string(okAfter), "nothing was started")
	st, _ := exec.CommandContext(ctx, bin, "exp", "status", file).CombinedOutput()
	assert.Contains(t, string(st), "changed: trainer.max_steps: saved 20, now 21")
}
