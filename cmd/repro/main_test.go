package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/internal/torchinfo"
	"github.com/reprolab/repro/papers"
	"github.com/reprolab/repro/train"
)

// TestMain lets the test binary act as the repro command, so the tests below
// run it as a real process, with real exit statuses. With
// REPRO_TEST_KILL_AT set too, it is main with output that SIGKILLs the
// process the moment it contains that text (see killWriter).
func TestMain(m *testing.M) {
	if os.Getenv("REPRO_TEST_AS_MAIN") == "1" {
		if at := os.Getenv("REPRO_TEST_KILL_AT"); at != "" {
			os.Exit(run(&cli.Env{Stdout: &killWriter{w: os.Stdout, at: []byte(at)}, Stderr: os.Stderr}, os.Args[1:]))
		}
		main()
		return
	}
	train.Register(papers.Tasks()...) // as main does, for the in-process tests
	os.Exit(m.Run())
}

func runRepro(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "REPRO_TEST_AS_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

func TestInfoEndToEnd(t *testing.T) {
	m, err := torchinfo.ReadManifest()
	require.NoError(t, err)

	out, stderr, code := runRepro(t, "info")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "libtorch  "+m.Libtorch.Version+" (")
	assert.Contains(t, out, "ops stubbed")
	assert.Contains(t, out, "patches: overlay, tensor-lifetime, op-handles")
	assert.Contains(t, out, "= 30 on cpu", "the tiny tensor check ran")
	if m.HasOp("atg_scaled_dot_product_attention") {
		assert.Contains(t, out, "attention fused scaled_dot_product_attention")
	} else {
		assert.Contains(t, out, "attention matmul and softmax (this libtorch has no fused")
	}
	assert.Regexp(t, `threads   \d+ intra-op, \d+ inter-op`, out)
	if m.Libtorch.Root == "system" {
		// Debian with libopenblas0-pthread, as the install script sets up.
		assert.Contains(t, out, "blas      openblas (")
	}

	js, stderr, code := runRepro(t, "info", "-json")
	require.Equal(t, 0, code, stderr)
	var info torchinfo.Info
	require.NoError(t, json.Unmarshal([]byte(js), &info))
	assert.Equal(t, m.Libtorch.Version, info.Manifest.Libtorch.Version)
	assert.Equal(t, len(m.Stubbed), len(info.Manifest.Stubbed))
	assert.Positive(t, info.Threads)
}

func TestUsageErrors(t *testing.T) {
	_, stderr, code := runRepro(t, "frobnicate")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `unknown command "frobnicate"`)

	_, stderr, code = runRepro(t, "info", "extra")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "info takes no arguments")

	_, stderr, code = runRepro(t, "info", "-bogus")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "-bogus")

	out, _, code := runRepro(t, "help", "info")
	assert.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, "usage: repro info"))

	_, stderr, code = runRepro(t)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "info ")
}

func TestWeightsInspectAndConvert(t *testing.T) {
	out, stderr, code := runRepro(t, "weights", "inspect", "../../torchmods/torchfile/testdata/checkpoint.pt")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "(torch.save)")
	assert.Regexp(t, `model.half\s+F16\s+\[2, 3\]\s+12`, out)
	assert.Contains(t, out, "total: 11 tensors, 71 elements, 267 bytes")
	assert.Contains(t, out, "non-tensor entries skipped: args.lr, epoch")

	dst := t.TempDir() + "/c.safetensors"
	_, stderr, code = runRepro(t, "weights", "convert", "-strip-prefix", "model.", "../../torchmods/torchfile/testdata/checkpoint.pt", dst)
	require.Equal(t, 0, code, stderr)
	out, stderr, code = runRepro(t, "weights", "inspect", dst)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "(safetensors)")
	assert.Regexp(t, `\nfc.weight\s+F32\s+\[3, 5\]\s+60`, out)
}

func TestWeightsRefusesHostileAndBadFiles(t *testing.T) {
	_, stderr, code := runRepro(t, "weights", "inspect", "../../torchmods/torchfile/testdata/hostile.pt")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "refusing global posix.system")

	bad := t.TempDir() + "/bad.safetensors"
	require.NoError(t, os.WriteFile(bad, []byte("\x10\x00\x00\x00\x00\x00\x00\x00{}"), 0o644))
	_, stderr, code = runRepro(t, "weights", "inspect", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "truncated")

	// A failed conversion leaves an existing output untouched.
	dst := t.TempDir() + "/out.safetensors"
	require.NoError(t, os.WriteFile(dst, []byte("keep me"), 0o644))
	_, _, code = runRepro(t, "weights", "convert", "../../torchmods/torchfile/testdata/hostile.pt", dst)
	assert.Equal(t, 1, code)
	b, _ := os.ReadFile(dst)
	assert.Equal(t, "keep me", string(b))
}

func TestConfigCheck(t *testing.T) {
	out, stderr, code := runRepro(t, "config", "check", "../../configs/basics/softmax.toml", "../../configs/basics/mlp.toml")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "softmax.toml: ok (basics.fashion_mnist)")

	bad := t.TempDir() + "/bad.toml"
	require.NoError(t, os.WriteFile(bad, []byte("task = \"basics.fashion_mnist\"\n\n[trainer]\nepochs = 2\nepochz = 3\n"), 0o644))
	out, _, code = runRepro(t, "config", "check", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, bad+`:5: unknown key "trainer.epochz"`)

	require.NoError(t, os.WriteFile(bad, []byte("task = \"nope\"\n"), 0o644))
	out, _, code = runRepro(t, "config", "check", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `unknown task "nope"`)
}

// TestEveryConfigIsValid checks every file under configs/ as
// `repro config check` would, so CI validates each config without running it.
func TestEveryConfigIsValid(t *testing.T) {
	paths, err := filepath.Glob("../../configs/*/*.toml")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		_, _, err := loadTaskConfig(p, nil)
		assert.NoError(t, err, p)
	}
}

// killWriter passes output through and, once a write contains at, SIGKILLs
// its own process from inside that write: the writing goroutine never
// returns, so nothing the program would do after printing at happens.
// Training prints a step's progress line after its metrics row and before
// its checkpoint, so "step K/N " is a deterministic kill moment.
type killWriter struct {
	w  io.Writer
	at []byte
}

func (k *killWriter) Write(p []byte) (int, error) {
	n, err := k.w.Write(p)
	if bytes.Contains(p, k.at) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is on its way; never return to the caller
	}
	return n, err
}

// TestKillAndResumeIsBitExact kills a training run with SIGKILL partway,
// resumes it, and requires the final weights, optimizer state and test
// numbers to equal an uninterrupted run's, byte for byte. The MLP config has
// dropout, so libtorch's generator state matters as much as the data order.
//
// The kill moment is deterministic: the run kills itself right after the
// progress line of step killAt (before that step's checkpoint, when one is
// due), with killAt drawn from a seeded generator (REPRO_TEST_KILL_SEED=N
// picks another; the test logs both). A kill while a checkpoint is being
// written is covered too: before resuming, the test leaves the torn ".tmp"
// folder such a kill leaves. And before resuming, the test checks that the
// run really was unfinished: no results.json, and its checkpoints are
// exactly those up to killAt, the newest below the total. A run killed
// before its first checkpoint has nothing to resume.
func TestKillAndResumeIsBitExact(t *testing.T) {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("dataset-fashion-mnist not installed")
	}
	const total, every, logEvery = 240, 40, 10
	config := "../../configs/basics/mlp.toml"
	sets := []string{"-set", "trainer.seed=7", "-set", fmt.Sprintf("trainer.max_steps=%d", total),
		"-set", fmt.Sprintf("trainer.checkpoint_every=%d", every), "-set", "trainer.keep_checkpoints=2",
		"-set", "data.train_limit=3000", "-set", "optim.warmup=20", "-set", fmt.Sprintf("trainer.log_every=%d", logEvery)}
	args := func(a ...string) []string { return append(append(a, sets...), config) }

	seed := uint64(1)
	if v := os.Getenv("REPRO_TEST_KILL_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "REPRO_TEST_KILL_SEED")
	}
	// A progress line after the first checkpoint and before the last step:
	// between two checkpoints, or right before one is written.
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	first := every + logEvery
	killAt := first + logEvery*rng.IntN((total-logEvery-first)/logEvery+1)
	resumeAt := (killAt - 1) / every * every // the newest complete checkpoint at the kill
	t.Logf("REPRO_TEST_KILL_SEED=%d: killing after step %d of %d, to resume from step %d", seed, killAt, total, resumeAt)

	full := t.TempDir()
	_, stderr, code := runRepro(t, args("train", "-out", full)...)
	require.Equal(t, 0, code, stderr)

	killed := t.TempDir()
	kout := runKilledAt(t, fmt.Sprintf("step %d/%d ", killAt, total), args("train", "-out", killed)...)

	// The run really was unfinished when it died: it got exactly to step
	// killAt, its newest checkpoint is resumeAt < total, it had no results.
	assert.Contains(t, kout, fmt.Sprintf("step %d/%d ", killAt, total))
	assert.NotContains(t, kout, fmt.Sprintf("step %d/%d ", killAt+logEvery, total))
	assert.NotContains(t, kout, "test accuracy")
	require.NoFileExists(t, filepath.Join(killed, "results.json"))
	ckdir := filepath.Join(killed, "checkpoints")
	want := []string{fmt.Sprintf("step-%08d", resumeAt)}
	if resumeAt > every { // keep_checkpoints = 2
		want = append([]string{fmt.Sprintf("step-%08d", resumeAt-every)}, want...)
	}
	require.Equal(t, want, listDir(ckdir), "checkpoints left by the killed run")
	var st struct{ Step int64 }
	readJSON(t, filepath.Join(ckdir, want[len(want)-1], "state.json"), &st)
	require.EqualValues(t, resumeAt, st.Step)
	require.Less(t, st.Step, int64(total))
	rows := strings.Split(strings.TrimSpace(readFile(t, filepath.Join(killed, "metrics.jsonl"))), "\n")
	var last struct{ Step int64 }
	require.NoError(t, json.Unmarshal([]byte(rows[len(rows)-1]), &last))
	assert.EqualValues(t, killAt, last.Step, "the killed run's last metrics row")

	// What a kill while writing the next checkpoint leaves: a torn .tmp
	// folder, which resuming must ignore and the next save replaces.
	torn := filepath.Join(ckdir, fmt.Sprintf("step-%08d.tmp", resumeAt+every))
	require.NoError(t, os.Mkdir(torn, 0o755))
	model := readFile(t, filepath.Join(ckdir, want[len(want)-1], "model.safetensors"))
	require.NoError(t, os.WriteFile(filepath.Join(torn, "model.safetensors"), []byte(model[:len(model)/2]), 0o644))

	out, stderr, code := runRepro(t, args("train", "-resume", killed)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "resuming from")
	assert.Contains(t, out, fmt.Sprintf("step-%08d", resumeAt))
	assert.NotContains(t, out, fmt.Sprintf("step %d/%d ", resumeAt, total), "steps up to the checkpoint are not redone")
	assert.Contains(t, out, fmt.Sprintf("step %d/%d ", total, total))
	assert.NoDirExists(t, torn)

	for _, f := range []string{"model.safetensors", "optim.safetensors", "rng.safetensors"} {
		a := readFile(t, filepath.Join(full, "checkpoints", fmt.Sprintf("step-%08d", total), f))
		b := readFile(t, filepath.Join(killed, "checkpoints", fmt.Sprintf("step-%08d", total), f))
		assert.True(t, a == b, "%s differs after kill and resume", f)
	}
	var ra, rb map[string]float64
	readJSON(t, filepath.Join(full, "results.json"), &ra)
	readJSON(t, filepath.Join(killed, "results.json"), &rb)
	assert.Equal(t, ra["test_loss"], rb["test_loss"])
	assert.Equal(t, ra["test_accuracy"], rb["test_accuracy"])

	// repro eval on the run folder loads its newest checkpoint and measures the same.
	out, stderr, code = runRepro(t, "eval", "-checkpoint", killed, config)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, fmt.Sprintf("test accuracy %.2f%%, test loss %.4f", 100*ra["test_accuracy"], ra["test_loss"]))
	_, stderr, code = runRepro(t, "eval", "-checkpoint", t.TempDir(), config)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no checkpoints/step-*")

	// A run killed before its first checkpoint has nothing to resume. (The
	// first progress line is the second interval's: the first one times.)
	early := t.TempDir()
	runKilledAt(t, fmt.Sprintf("step %d/%d ", 2*logEvery, total), args("train", "-out", early)...)
	require.Empty(t, listDir(filepath.Join(early, "checkpoints")))
	_, stderr, code = runRepro(t, args("train", "-resume", early)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "nothing to resume")
}

// runKilledAt runs repro with args until its output contains at, where it
// SIGKILLs itself (killWriter), and returns its output. It fails the test
// unless the process died that way; five minutes bound a hang.
func runKilledAt(t *testing.T, at string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "REPRO_TEST_AS_MAIN=1", "REPRO_TEST_KILL_AT="+at)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "the run did not print %q in five minutes; stdout:\n%s", at, out.String())
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the run was to be killed at %q; stdout:\n%s\nstderr:\n%s", at, out.String(), errb.String())
	ws, ok := ee.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "want death by SIGKILL at %q, got %v; stderr:\n%s", at, ee, errb.String())
	return out.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func listDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

func TestPlotWritesPNGs(t *testing.T) {
	run := t.TempDir()
	metrics := "{\"step\":10,\"epoch\":0.1,\"loss\":2.0,\"lr\":0.001}\n{\"step\":20,\"epoch\":0.2,\"loss\":1.5,\"lr\":0.002}\n"
	require.NoError(t, os.WriteFile(filepath.Join(run, "metrics.jsonl"), []byte(metrics), 0o644))
	out, stderr, code := runRepro(t, "plot", run)
	require.Equal(t, 0, code, stderr)
	for _, name := range []string{"loss", "lr"} {
		p := filepath.Join(run, "plots", name+".png")
		assert.Contains(t, out, p)
		f, err := os.Open(p)
		require.NoError(t, err)
		cfg, err := png.DecodeConfig(f)
		f.Close()
		require.NoError(t, err, name)
		assert.Greater(t, cfg.Width, 400)
	}
	require.NoError(t, os.WriteFile(filepath.Join(run, "metrics.jsonl"), []byte("{\"step\":1,\"loss\":1}\nnot json\n"), 0o644))
	_, stderr, code = runRepro(t, "plot", run)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "metrics.jsonl:2:")
	// A last line torn by a kill (no newline after it) is skipped with a warning.
	require.NoError(t, os.WriteFile(filepath.Join(run, "metrics.jsonl"), []byte("{\"step\":1,\"loss\":1}\n{\"step\":2,\"lo"), 0o644))
	_, stderr, code = runRepro(t, "plot", run)
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "metrics.jsonl:2: skipping a truncated last line")
}
