package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every shipped config of a task that checkpoints writes checkpoints during
// the run, so an interrupted run always has something to resume from.
func TestEveryShippedConfigCheckpoints(t *testing.T) {
	paths, err := filepath.Glob("../../configs/*/*.toml")
	require.NoError(t, err)
	for _, p := range paths {
		task, cfg, err := loadTaskConfig(p, nil)
		require.NoError(t, err, p)
		if slices.Contains(task.TaskIgnores(), "checkpoint_every") {
			continue
		}
		assert.Positive(t, cfg.Common().Trainer.CheckpointEvery, "%s: trainer.checkpoint_every", p)
	}
}
