package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/causal"
)

// TestCausalCSVEndToEnd: a user's tasks as CSV files go in, the recovered
// order and per-task weighted graphs come out.
func TestCausalCSVEndToEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	pr, err := causal.Generate(causal.GenOptions{P: 6, S: 8, S0: 6, D: 3, K: 3, N: 300}, rng)
	require.NoError(t, err)
	dir := t.TempDir()
	names := []string{"a", "b", "c", "d", "e", "f"}
	var files []string
	for k, x := range pr.X {
		f := filepath.Join(dir, fmt.Sprintf("task%d.csv", k))
		require.NoError(t, causal.WriteTaskCSV(f, names, x))
		files = append(files, `"`+f+`"`)
	}
	run := filepath.Join(dir, "run")
	out, stderr, code := runRepro(t, "train", "-out", run, "-set", "data=["+strings.Join(files, ",")+"]",
		"-set", "trainer.max_steps=8000", "-set", "trainer.log_every=4000", "../../configs/causal/fit_example.toml")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "order: ")
	order, err := os.ReadFile(filepath.Join(run, "order.txt"))
	require.NoError(t, err)
	got := strings.Fields(string(order))
	require.Len(t, got, 6)
	pos := map[string]int{}
	for i, n := range got {
		pos[n] = i
	}
	for k := range 3 {
		for i := range 6 {
			for j := range 6 {
				if pr.W[k][i][j] != 0 {
					assert.Less(t, pos[names[i]], pos[names[j]], "true edge %s -> %s of task %d against the recovered order %v", names[i], names[j], k, got)
				}
			}
		}
		adj, err := os.ReadFile(filepath.Join(run, fmt.Sprintf("adjacency_%d_task%d.csv", k, k)))
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(adj), "from\\to,a,b,c,d,e,f\n"))
	}

	// A malformed file is an error naming the file, line and column.
	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("a,b\n1,2\n3,oops\n"), 0o644))
	_, stderr, code = runRepro(t, "train", "-out", filepath.Join(dir, "bad"), "-set", `data=["`+bad+`"]`, "../../configs/causal/fit_example.toml")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `bad.csv:3: column 2 ("b"): "oops" is not a number`)
}

// TestCausalSweepAndResume runs a tiny grid and resumes it.
func TestCausalSweepAndResume(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sweep")
	args := []string{"causal", "sweep", "-out", dir, "-set", "data.p=6", "-set", "data.s=8", "-set", "data.s0=5", "-set", "data.d=3",
		"-set", "data.k=4", "-set", "samples=[40]", "-set", "groups=[1, 4]", "-set", "replicates=1", "-set", "trainer.max_steps=2500",
		"../../configs/causal/sweep_small.toml"}
	out, stderr, code := runRepro(t, args...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "fit 5/5")
	assert.Contains(t, out, "| 1 (separate) | 40 |")
	for _, f := range []string{"fits.jsonl", "results.json", "shd.md", "recovery.png", "config.toml"} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.NoError(t, err, f)
	}
	args = append(args[:2], append([]string{"-resume"}, args[2:]...)...)
	out, stderr, code = runRepro(t, args...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "resuming: 5 fits already")
	assert.NotContains(t, out, "fit 1/5")
}
