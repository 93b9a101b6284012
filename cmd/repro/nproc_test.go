package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
