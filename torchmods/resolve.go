package torchmods

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ResolveWeights finds the weight file behind path: the file itself, a
// checkpoint folder's model.safetensors, or a run folder's newest
// checkpoint's.
func ResolveWeights(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if !st.IsDir() {
		return path, nil
	}
	file := filepath.Join(path, "model.safetensors")
	if _, err := os.Stat(file); err == nil {
		return file, nil
	}
	ck, err := latestCheckpointDir(path)
	if err != nil || ck == "" {
		return "", fmt.Errorf("checkpoint %s: neither a checkpoint (no model.safetensors) nor a run folder with checkpoints/", path)
	}
	return filepath.Join(ck, "model.safetensors"), nil
}

// LoadModel loads trained parameters into store, strictly, from a
// checkpoint folder, a run folder (its newest checkpoint) or a weight file
// in any format ReadWeights reads.
func LoadModel(path string, store *Store) error {
	file, err := ResolveWeights(path)
	if err != nil {
		return err
	}
	w, err := LoadWeights(file, store.Device)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range w {
			t.MustDrop()
		}
	}()
	if _, err := store.Load(w, true); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// latestCheckpointDir is a repro run folder's newest checkpoint folder
// (checkpoints/step-NNNNNNNN, zero-padded so names sort by step), or "".
func latestCheckpointDir(run string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(run, "checkpoints"))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") && !strings.HasSuffix(e.Name(), ".tmp") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	return filepath.Join(run, "checkpoints", names[len(names)-1]), nil
}
