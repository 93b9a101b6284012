package torchmods

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/torchmods/hub"
)

func touch(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o644))
}

// Every form a user can name weights by resolves here, and only here.
func TestResolveEveryForm(t *testing.T) {
	dir := t.TempDir()

	// A HF folder: the weight files in transformers' order of preference.
	hf := filepath.Join(dir, "hf")
	touch(t, filepath.Join(hf, "config.json"))
	for i := len(HFWeightFiles) - 1; i >= 0; i-- {
		touch(t, filepath.Join(hf, HFWeightFiles[i]))
		s, err := Resolve(hf)
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(hf, HFWeightFiles[i]), s.File, "with %s and the less preferred files", HFWeightFiles[i])
		assert.Equal(t, SourceHFFolder, s.Kind)
		assert.Equal(t, filepath.Join(hf, "config.json"), s.Config)
	}

	// A repro run: its newest complete checkpoint.
	run := filepath.Join(dir, "run")
	for _, step := range []string{"step-00000100", "step-00000200", "step-00000300.tmp"} {
		touch(t, filepath.Join(run, "checkpoints", step, "model.safetensors"))
		touch(t, filepath.Join(run, "checkpoints", step, "state.json"))
	}
	s, err := Resolve(run)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(run, "checkpoints", "step-00000200", "model.safetensors"), s.File)
	assert.Equal(t, SourceRun, s.Kind)
	s, err = Resolve(filepath.Join(run, "checkpoints", "step-00000100"))
	require.NoError(t, err)
	assert.Equal(t, SourceCheckpoint, s.Kind)
	assert.Empty(t, s.Config)

	// A file, named directly.
	f, err := ResolveWeights(filepath.Join(hf, "pytorch_model.bin"))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(hf, "pytorch_model.bin"), f)

	// Errors name the path and what was looked for.
	_, err = Resolve(filepath.Join(dir, "nope"))
	assert.ErrorContains(t, err, "nope")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "empty"), 0o755))
	_, err = Resolve(filepath.Join(dir, "empty"))
	assert.ErrorContains(t, err, "empty: a folder without model.safetensors, model.safetensors.index.json, pytorch_model.bin")
}

// hf:ORG/NAME resolves through the hub package, from the HF cache laid out
// as huggingface_hub lays it out; offline, a repo that is not cached says so.
func TestResolveHubSpec(t *testing.T) {
	cache := t.TempDir()
	old := HubOptions
	HubOptions = hub.Options{CacheDir: cache, Offline: true}
	defer func() { HubOptions = old }()

	commit := strings.Repeat("ab", 20)
	repo := filepath.Join(cache, "models--org--tiny")
	touch(t, filepath.Join(repo, "refs", "main"))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(commit), 0o644))
	snap := filepath.Join(repo, "snapshots", commit)
	touch(t, filepath.Join(snap, "config.json"))
	touch(t, filepath.Join(snap, "pytorch_model.bin"))

	s, err := Resolve("hf:org/tiny")
	require.NoError(t, err)
	assert.Equal(t, SourceHub, s.Kind)
	assert.Equal(t, filepath.Join(snap, "pytorch_model.bin"), s.File, "the first weight file the snapshot has")
	assert.Equal(t, filepath.Join(snap, "config.json"), s.Config)

	// Sharded: the index and every shard it names.
	touch(t, filepath.Join(snap, "model-00001-of-00002.safetensors"))
	require.NoError(t, os.WriteFile(filepath.Join(snap, "model.safetensors.index.json"),
		[]byte(`{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`), 0o644))
	_, err = Resolve("hf:org/tiny")
	assert.ErrorContains(t, err, "model-00002-of-00002.safetensors", "a shard missing from the cache is named")
	touch(t, filepath.Join(snap, "model-00002-of-00002.safetensors"))
	s, err = Resolve("hf:org/tiny")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(snap, "model.safetensors.index.json"), s.File)

	_, err = Resolve("hf:org/absent")
	assert.ErrorIs(t, err, hub.ErrOffline)
	assert.ErrorContains(t, err, "hf:org/absent")
	_, err = Resolve("hf:bad name")
	assert.ErrorContains(t, err, "bad spec")
}
