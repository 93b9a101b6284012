package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Checkpoints live in <run>/checkpoints/step-NNNNNNNN/, each with
// model.safetensors (the parameters), optim.safetensors (AdamW's moments),
// rng.safetensors (libtorch's CPU generator) and state.json (the step,
// AdamW's step count and the task's own state: its data order and Go
// generator). A checkpoint is written into a ".tmp" folder, each file
// fsynced, then renamed into place, so a crash at any moment leaves the
// previous checkpoints intact and never a half-written one under a final
// name.

const checkpointPrefix = "step-"

type checkpointState struct {
	Step      int64           `json:"step"`
	OptimStep int64           `json:"optim_step"`
	Task      json.RawMessage `json:"task"`
}

// SaveCheckpoint writes the checkpoint of step (the number of steps done)
// and keeps the newest keep checkpoints.
func SaveCheckpoint(run string, step int64, store *torchmods.Store, opt Optimizer, task any, keep int64) error {
	dir := filepath.Join(run, "checkpoints")
	final := filepath.Join(dir, fmt.Sprintf("%s%08d", checkpointPrefix, step))
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := store.Save(filepath.Join(tmp, "model.safetensors"), "", map[string]string{"step": strconv.FormatInt(step, 10)}); err != nil {
		return err
	}
	names, tensors := opt.state()
	if err := torchmods.SaveTensors(filepath.Join(tmp, "optim.safetensors"), names, tensors, "", nil); err != nil {
		return err
	}
	rng, err := ts.RNGState()
	if err != nil {
		return err
	}
	err = torchmods.SaveTensors(filepath.Join(tmp, "rng.safetensors"), []string{"cpu"}, []*ts.Tensor{rng}, "", nil)
	rng.MustDrop()
	if err != nil {
		return err
	}
	tj, err := json.Marshal(task)
	if err != nil {
		return err
	}
	sj, _ := json.MarshalIndent(checkpointState{Step: step, OptimStep: opt.Steps(), Task: tj}, "", "  ")
	if err := writeSynced(filepath.Join(tmp, "state.json"), sj); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	os.RemoveAll(final) // re-saving the same step
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	all, err := listCheckpoints(run)
	if err != nil {
		return err
	}
	for len(all) > int(keep) {
		os.RemoveAll(all[0])
		all = all[1:]
	}
	return nil
}

// LatestCheckpoint is the newest complete checkpoint of a run, or "" if none.
func LatestCheckpoint(run string) (string, error) {
	all, err := listCheckpoints(run)
	if err != nil || len(all) == 0 {
		return "", err
	}
	return all[len(all)-1], nil
}

func listCheckpoints(run string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(run, "checkpoints"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), checkpointPrefix) && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, filepath.Join(run, "checkpoints", e.Name()))
		}
	}
	sort.Strings(out) // zero-padded step numbers sort in order
	return out, nil
}

// LoadCheckpoint restores the parameters, AdamW, libtorch's generator and
// the task state (decoded into task) and returns the step to resume from.
func LoadCheckpoint(path string, store *torchmods.Store, opt Optimizer, task any) (int64, error) {
	b, err := os.ReadFile(filepath.Join(path, "state.json"))
	if err != nil {
		return 0, err
	}
	var st checkpointState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(path, "state.json"), err)
	}
	if err := json.Unmarshal(st.Task, task); err != nil {
		return 0, fmt.Errorf("%s: task state: %w", path, err)
	}
	model, err := torchmods.LoadWeights(filepath.Join(path, "model.safetensors"), store.Device)
	if err != nil {
		return 0, err
	}
	if _, err := store.Load(model, true); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	optim, err := torchmods.LoadWeights(filepath.Join(path, "optim.safetensors"), store.Device)
	if err != nil {
		return 0, err
	}
	if err := opt.load(optim, st.OptimStep); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	rng, err := torchmods.LoadWeights(filepath.Join(path, "rng.safetensors"), gotch.CPU)
	if err != nil {
		return 0, err
	}
	if err := ts.SetRNGState(rng["cpu"]); err != nil {
		return 0, fmt.Errorf("%s: restoring libtorch's generator: %w", path, err)
	}
	return st.Step, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
