package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/internal/torchinfo"
)

// TestMain lets the test binary act as the repro command, so the tests below
// run it as a real process, with real exit statuses.
func TestMain(m *testing.M) {
	if os.Getenv("REPRO_TEST_AS_MAIN") == "1" {
		main()
		return
	}
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

// TestKillAndResumeIsBitExact kills a training run with SIGKILL at a random
// moment after a random checkpoint, resumes it, and requires the final
// weights, optimizer state and test numbers to equal an uninterrupted
// run's, byte for byte. The MLP config has dropout, so libtorch's generator
// state matters as much as the data order.
func TestKillAndResumeIsBitExact(t *testing.T) {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("dataset-fashion-mnist not installed")
	}
	config := "../../configs/basics/mlp.toml"
	sets := []string{"-set", "trainer.max_steps=240", "-set", "trainer.checkpoint_every=40", "-set", "trainer.keep_checkpoints=2",
		"-set", "data.train_limit=3000", "-set", "optim.warmup=20", "-set", "trainer.log_every=40"}
	args := func(a ...string) []string { return append(append(a, sets...), config) }

	full := t.TempDir()
	_, stderr, code := runRepro(t, args("train", "-out", full)...)
	require.Equal(t, 0, code, stderr)

	killed := t.TempDir()
	target := 1 + rand.IntN(5) // kill after the 1st..5th checkpoint
	cmd := exec.Command(os.Args[0], args("train", "-out", killed)...)
	cmd.Env = append(os.Environ(), "REPRO_TEST_AS_MAIN=1")
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if n, _ := filepath.Glob(filepath.Join(killed, "checkpoints", "step-*[0-9]")); len(n) >= min(target, 2) {
			entries, _ := os.ReadDir(filepath.Join(killed, "checkpoints"))
			if len(entries) >= 1 && (target <= 2 || strings.Contains(entries[len(entries)-1].Name(), fmt.Sprintf("%08d", 40*target))) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond) // mid-step, or mid-checkpoint
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	t.Logf("killed after checkpoint %d; left: %v", target, listDir(filepath.Join(killed, "checkpoints")))

	out, stderr, code := runRepro(t, args("train", "-resume", killed)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "resuming from")

	for _, f := range []string{"model.safetensors", "optim.safetensors", "rng.safetensors"} {
		a, err := os.ReadFile(filepath.Join(full, "checkpoints", "step-00000240", f))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(killed, "checkpoints", "step-00000240", f))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(a, b), "%s differs after kill and resume", f)
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
	assert.Contains(t, stderr, "neither a checkpoint")

	_, stderr, code = runRepro(t, args("train", "-resume", t.TempDir())...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "nothing to resume")
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
}
