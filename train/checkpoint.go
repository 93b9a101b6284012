package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
// model.safetensors (the parameters), optim.safetensors (the optimizer's
// state), rng.safetensors (libtorch's CPU generator), state.json (the step,
// the optimizer's step count and the task's named State entries) and, when
// a State has tensors, state.safetensors (named "<entry>/<tensor>"), and
// last manifest.json, the SHA-256 and size of every other file. Resuming
// verifies the manifest, so flipped bytes or a forged state.json are
// caught instead of silently training on. A checkpoint is written into a ".tmp" folder, each file
// fsynced, then renamed into place, so a crash at any moment leaves the
// previous checkpoints intact and never a half-written one under a final
// name.

const checkpointPrefix = "step-"

type checkpointState struct {
	Step      int64                      `json:"step"`
	OptimStep int64                      `json:"optim_step"`
	Task      map[string]json.RawMessage `json:"task"`
	// WorldSize is the number of ranks of a data-parallel run that wrote
	// it; absent (0) for a single process.
	WorldSize int `json:"world_size,omitempty"`
}

// SaveCheckpoint writes the checkpoint of step (the number of steps done)
// and keeps the newest keep checkpoints.
func SaveCheckpoint(run string, step int64, store *torchmods.Store, opt Optimizer, task map[string]State, keep int64) error {
	return saveCheckpoint(run, step, store, opt, task, keep, 1)
}

// checkpointWorldSize is the number of ranks of the run that wrote the
// (verified) checkpoint ck.
func checkpointWorldSize(ck string) (int, error) {
	b, err := os.ReadFile(filepath.Join(ck, "state.json"))
	if err != nil {
		return 0, err
	}
	var st checkpointState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(ck, "state.json"), err)
	}
	return max(st.WorldSize, 1), nil
}

// saveCheckpoint is SaveCheckpoint for a run of world ranks (recorded when
// more than one).
func saveCheckpoint(run string, step int64, store *torchmods.Store, opt Optimizer, task map[string]State, keep int64, world int) error {
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
	names, tensors := opt.State()
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
	st := checkpointState{Step: step, OptimStep: opt.Steps(), Task: map[string]json.RawMessage{}}
	if world > 1 {
		st.WorldSize = world
	}
	var stNames []string
	var stTensors []*ts.Tensor
	for _, name := range sortedKeys(task) {
		v, tensors, err := task[name].SaveState()
		if err != nil {
			return fmt.Errorf("task state %q: %w", name, err)
		}
		if st.Task[name], err = json.Marshal(v); err != nil {
			return fmt.Errorf("task state %q: %w", name, err)
		}
		for _, k := range sortedKeys(tensors) {
			stNames, stTensors = append(stNames, name+"/"+k), append(stTensors, tensors[k])
		}
	}
	if len(stNames) > 0 {
		if err := torchmods.SaveTensors(filepath.Join(tmp, "state.safetensors"), stNames, stTensors, "", nil); err != nil {
			return err
		}
	}
	sj, _ := json.MarshalIndent(st, "", "  ")
	if err := writeSynced(filepath.Join(tmp, "state.json"), sj); err != nil {
		return err
	}
	if err := writeManifest(tmp); err != nil {
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

// LoadCheckpoint restores the parameters, the optimizer, libtorch's
// generator and every entry of the task's state, and returns the step to
// resume from. The checkpoint's state entries must be exactly the task's:
// a missing or extra entry is an error, never a silently dropped state.
// What it reads is freed once copied.
func LoadCheckpoint(path string, store *torchmods.Store, opt Optimizer, task map[string]State) (int64, error) {
	b, err := os.ReadFile(filepath.Join(path, "state.json"))
	if err != nil {
		return 0, err
	}
	var st checkpointState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(path, "state.json"), err)
	}
	for _, name := range sortedKeys(task) {
		if _, ok := st.Task[name]; !ok {
			return 0, fmt.Errorf("%s: the checkpoint has no task state %q (saved: %v); it was written by another task or an older repro", path, name, sortedKeys(st.Task))
		}
	}
	for _, name := range sortedKeys(st.Task) {
		if _, ok := task[name]; !ok {
			return 0, fmt.Errorf("%s: the checkpoint holds task state %q that this task does not have (it has %v)", path, name, sortedKeys(task))
		}
	}
	load := func(file string, dev gotch.Device, fn func(map[string]*ts.Tensor) error) error {
		w, err := torchmods.LoadWeights(filepath.Join(path, file), dev)
		if err != nil {
			return err
		}
		defer func() {
			for _, t := range w {
				t.MustDrop()
			}
		}()
		if err := fn(w); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(path, file), err)
		}
		return nil
	}
	if err := load("model.safetensors", store.Device, func(w map[string]*ts.Tensor) error {
		_, err := store.Load(w, true)
		return err
	}); err != nil {
		return 0, err
	}
	if err := load("optim.safetensors", store.Device, func(w map[string]*ts.Tensor) error { return opt.LoadState(w, st.OptimStep) }); err != nil {
		return 0, err
	}
	if err := load("rng.safetensors", gotch.CPU, func(w map[string]*ts.Tensor) error {
		if err := ts.SetRNGState(w["cpu"]); err != nil {
			return fmt.Errorf("restoring libtorch's generator: %w", err)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	restore := func(tensors map[string]*ts.Tensor) error {
		for _, name := range sortedKeys(task) {
			own := map[string]*ts.Tensor{}
			for k, t := range tensors {
				if rest, ok := strings.CutPrefix(k, name+"/"); ok {
					own[rest] = t
				}
			}
			if err := task[name].LoadState(st.Task[name], own); err != nil {
				return fmt.Errorf("task state %q: %w", name, err)
			}
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(path, "state.safetensors")); err == nil {
		err = load("state.safetensors", store.Device, restore)
	} else {
		err = restore(nil)
		if err != nil {
			err = fmt.Errorf("%s: %w", path, err)
		}
	}
	if err != nil {
		return 0, err
	}
	return st.Step, nil
}

const manifestFile = "manifest.json"

type manifestEntry struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// writeManifest records the SHA-256 and size of every file in a checkpoint
// folder, written last so a checkpoint with a manifest is complete.
func writeManifest(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	m := map[string]manifestEntry{}
	for _, e := range entries {
		if e.IsDir() || e.Name() == manifestFile {
			continue
		}
		sum, size, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		m[e.Name()] = manifestEntry{SHA256: sum, Size: size}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return writeSynced(filepath.Join(dir, manifestFile), b)
}

// VerifyCheckpoint checks every file of a checkpoint folder against its
// manifest: present, of the recorded size and SHA-256, and no file the
// manifest does not list.
func VerifyCheckpoint(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if os.IsNotExist(err) {
		return fmt.Errorf("no %s (an incomplete checkpoint, or one written before checkpoints were verified)", manifestFile)
	}
	if err != nil {
		return err
	}
	var m map[string]manifestEntry
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", manifestFile, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := m[e.Name()]; !ok && e.Name() != manifestFile {
			return fmt.Errorf("%s is not in the manifest", e.Name())
		}
	}
	for _, name := range sortedKeys(m) {
		sum, size, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if size != m[name].Size || sum != m[name].SHA256 {
			return fmt.Errorf("%s: SHA-256 %s (%d bytes), the manifest says %s (%d bytes)", name, sum, size, m[name].SHA256, m[name].Size)
		}
	}
	return nil
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
