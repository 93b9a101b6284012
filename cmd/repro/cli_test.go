package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTrainFlagsAfterConfig runs `repro train CONFIG -set ...` as users type
// it: flags after the config path (and between), each applied.
func TestTrainFlagsAfterConfig(t *testing.T) {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("dataset-fashion-mnist not installed")
	}
	config := "../../configs/basics/softmax.toml"
	run := filepath.Join(t.TempDir(), "run")
	out, stderr, code := runRepro(t, "train", "-set", "data.train_limit=640", config,
		"-set", "trainer.max_steps=6", "-set=trainer.log_every=3", "-out", run, "-set", "optim.warmup=2")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "task basics.fashion_mnist, run directory "+run)
	assert.Contains(t, out, "step 6/6")
	assert.Contains(t, out, ", 6 steps in ")

	var res map[string]float64
	readJSON(t, filepath.Join(run, "results.json"), &res)
	assert.Equal(t, 6.0, res["steps"])
	saved, err := os.ReadFile(filepath.Join(run, "config.toml"))
	require.NoError(t, err)
	assert.Contains(t, string(saved), "max_steps = 6")
	assert.Contains(t, string(saved), "train_limit = 640")

	// An unknown flag after the config is still misuse naming the flag.
	_, stderr, code = runRepro(t, "train", config, "-set", "trainer.max_steps=6", "-epochs", "1")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "flag provided but not defined: -epochs")
	assert.Contains(t, stderr, "usage: repro train")
}
