package main

import (
	"context"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/torchmods"
)

// TestTrainNprocRunsRanks: -nproc 2 starts two ranks of this program with
// torchrun's environment; they rendezvous, train data-parallel, and rank 0
// alone writes the run directory.
func TestTrainNprocRunsRanks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	out, stderr, code := runRepro(t, "train", "-nproc", "2", "-out", dir, "-set", "trainer.max_steps=20",
		"-set", "trainer.checkpoint_every=10", "../../configs/template/spirals.toml")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, stderr)
	assert.Contains(t, stderr, "starting 2 ranks")
	assert.FileExists(t, filepath.Join(dir, "results.json"))
	assert.Contains(t, readFile(t, filepath.Join(dir, "config.toml")), "template.spirals")
	assert.NotContains(t, out, "[rank 1]", "only rank 0 prints to stdout")

	_, stderr, code = runRepro(t, "train", "-nproc", "0", "../../configs/template/spirals.toml")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "-nproc must be at least 1")

	t.Setenv("WORLD_SIZE", "2")
	_, stderr, code = runRepro(t, "train", "-nproc", "2", "-out", filepath.Join(t.TempDir(), "x"), "../../configs/template/spirals.toml")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "already is one")
}

// TestTrainNprocMatchesOneProcess is the data-parallel equivalence on the
// Fashion-MNIST MLP (configs/basics/mlp.toml, dropout off so that no rank's
// own random stream enters): 2 ranks at batch 32, and 2 ranks at batch 16
// with 2 accumulated micro-batches, end 50 AdamW steps with the weights of
// one process at batch 64. Measured here: 6.5e-7 and 7.8e-7 (the issue
// asks for 1e-6); the test allows 5e-6, because the summation order of the
// split batch differs by machine (BLAS kernels), while a missing or wrong
// gradient average is off by 0.1 or more.
func TestTrainNprocMatchesOneProcess(t *testing.T) {
	run := func(name string, extra ...string) map[string][]float64 {
		dir := filepath.Join(t.TempDir(), name)
		args := append(append([]string{"train", "-out", dir}, extra...), mlpSameWeights...)
		out, stderr, code := runRepro(t, append(args, "../../configs/basics/mlp.toml")...)
		require.Equal(t, 0, code, "%s: stdout:\n%s\nstderr:\n%s", name, out, stderr)
		return mlpWeights(t, dir)
	}
	one := run("one", "-set", "data.batch=64")
	for name, extra := range map[string][]string{
		"two ranks":                 {"-nproc", "2", "-set", "data.batch=32"},
		"two ranks, accumulation 2": {"-nproc", "2", "-set", "data.batch=16", "-set", "trainer.accumulate=2"},
	} {
		assertSameWeights(t, one, run(strings.ReplaceAll(name, " ", "_"), extra...), name)
	}
}

// mlpSameWeights are the overrides under which data-parallel runs of
// configs/basics/mlp.toml must end with one process's weights.
var mlpSameWeights = []string{"-set", "trainer.max_steps=50", "-set", "trainer.checkpoint_every=50", "-set", "optim.warmup=5",
	"-set", "model.dropout=0.0"}

// mlpWeights reads the step-50 checkpoint's weights of the run in dir.
func mlpWeights(t *testing.T, dir string) map[string][]float64 {
	t.Helper()
	w, err := torchmods.LoadWeights(filepath.Join(dir, "checkpoints", "step-00000050", "model.safetensors"), gotch.CPU)
	require.NoError(t, err)
	vals := map[string][]float64{}
	for k, v := range w {
		vals[k] = v.Float64Values()
	}
	return vals
}

// assertSameWeights asserts that got's weights are one's within 5e-6.
func assertSameWeights(t *testing.T, one, got map[string][]float64, name string) {
	t.Helper()
	require.Equal(t, len(one), len(got), name)
	worst := 0.0
	for k, want := range one {
		require.Len(t, got[k], len(want), "%s: %s", name, k)
		for i := range want {
			worst = math.Max(worst, math.Abs(want[i]-got[k][i]))
		}
	}
	assert.Less(t, worst, 5e-6, "%s: the largest weight difference from one process", name)
	t.Logf("%s: largest weight difference %.3g", name, worst)
}

// torchrun itself (PyTorch 2.x's launcher, through scripts/torchrun.py,
// whose agent serves the rendezvous store: TORCHELASTIC_USE_AGENT_STORE)
// starts 2 ranks of this program, which end with one process's weights,
// as under -nproc. It runs where /usr/bin/python3 has torch 2.x (Debian 13:
// scripts/test_debian13.sh); Debian 12's torchrun 1.13 fails under Python
// 3.11 before it starts a worker, so there it skips.
func TestTorchrunStartsRanks(t *testing.T) {
	py := "/usr/bin/python3"
	v, err := exec.Command(py, "-c", "import torch, torch.distributed.run; print(torch.__version__)").Output()
	if err != nil || !strings.HasPrefix(string(v), "2.") {
		t.Skipf("%s has no torch 2.x with torch.distributed.run (%q, %v); torchrun 1.13 does not run under Python 3.11", py, strings.TrimSpace(string(v)), err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	base := t.TempDir()
	out, stderr, code := runRepro(t, append(append([]string{"train", "-out", filepath.Join(base, "one"), "-set", "data.batch=64"}, mlpSameWeights...), "../../configs/basics/mlp.toml")...)
	require.Equal(t, 0, code, "one process: stdout:\n%s\nstderr:\n%s", out, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"../../scripts/torchrun.py", "--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
		"--master-port", port, "--no-python", os.Args[0], "train", "-out", filepath.Join(base, "torchrun"), "-set", "data.batch=32"}, mlpSameWeights...)
	cmd := exec.CommandContext(ctx, py, append(args, "../../configs/basics/mlp.toml")...)
	cmd.Env = append(os.Environ(), "REPRO_TEST_AS_MAIN=1")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "torchrun:\n%s", b)
	assertSameWeights(t, mlpWeights(t, filepath.Join(base, "one")), mlpWeights(t, filepath.Join(base, "torchrun")), "torchrun, two ranks")
}

// Local ranks share the cores out through OMP_NUM_THREADS unless the
// environment sets it, and one rank is left alone.
func TestRankThreads(t *testing.T) {
	assert.Equal(t, "1", rankThreads(2, 2, ""))
	assert.Equal(t, "8", rankThreads(8, 64, ""))
	assert.Equal(t, "1", rankThreads(4, 2, ""), "more ranks than cores: 1 each")
	assert.Equal(t, "", rankThreads(2, 2, "2"), "OMP_NUM_THREADS set: left alone")
	assert.Equal(t, "", rankThreads(1, 2, ""), "one rank: left alone")
}
