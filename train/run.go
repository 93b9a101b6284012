package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/reprolab/repro/dist"
	"github.com/reprolab/repro/internal/config"
)

// What a run directory guarantees (README.md, "Run directories"):
//   - ownership: one process at a time, by a lock held for the run's life;
//     a directory that holds another run is never written over unless
//     -overwrite moves its contents aside first;
//   - provenance: config.toml is the config the run started with and is
//     never rewritten; deliberate changes on resume are recorded in
//     config_changes.jsonl;
//   - verified checkpoints (see checkpoint.go);
//   - a graceful stop: the first SIGINT or SIGTERM finishes the step, writes
//     a checkpoint and says how to resume; a second one exits at once.

// RunOptions says where and how a task runs.
type RunOptions struct {
	Out    string    // the run directory
	Resume bool      // continue the run in Out from its newest checkpoint
	W      io.Writer // progress and messages
	// Overwrite allows a fresh run in a directory that is not empty: its
	// contents are moved aside into Out/replaced-<time>/ first.
	Overwrite bool
	// AllowChange lists config keys that a resume may change (say
	// trainer.max_steps); any other difference from the saved config.toml
	// is refused.
	AllowChange []string
	// Signals stops the run gracefully on SIGINT and SIGTERM (the CLI's
	// choice; a library caller keeps its own signal handling).
	Signals bool
	// Group makes the run one rank of a data-parallel run over it (the
	// caller closes it). Without one, a process launched with torchrun's
	// environment and WORLD_SIZE > 1 joins that group (distributed.go).
	Group *dist.Group
}

// configFile is the run's provenance: the resolved config it started with.
const configFile = "config.toml"

// resumeSafeKeys change how a run is logged, checkpointed or placed, not
// its numbers, so a resume may change them freely.
var resumeSafeKeys = map[string]bool{
	"trainer.log_every": true, "trainer.eval_every": true, "trainer.checkpoint_every": true,
	"trainer.keep_checkpoints": true, "trainer.device": true, "trainer.tensorboard": true, "data.workers": true,
}

// prepareRunDir applies the ownership and provenance rules before the
// session opens the directory; the caller holds its lock.
func prepareRunDir(cfg Config, o RunOptions) error {
	if o.Resume {
		return checkResumeConfig(cfg, o)
	}
	entries, err := os.ReadDir(o.Out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var old []string
	for _, e := range entries {
		if !IsRunDirBookkeeping(e.Name()) {
			old = append(old, e.Name())
		}
	}
	if len(old) > 0 {
		if !o.Overwrite {
			return fmt.Errorf("run directory %s is not empty (it holds %s): resume it with -resume, or pass -overwrite to move its contents aside, or choose another -out",
				o.Out, strings.Join(first(old, 4), ", "))
		}
		aside := filepath.Join(o.Out, "replaced-"+time.Now().Format("20060102-150405"))
		if err := os.Mkdir(aside, 0o755); err != nil {
			return err
		}
		for _, n := range old {
			if strings.HasPrefix(n, "replaced-") {
				continue // earlier replaced runs stay where they are
			}
			if err := os.Rename(filepath.Join(o.Out, n), filepath.Join(aside, n)); err != nil {
				return err
			}
		}
		fmt.Fprintf(o.W, "moved the previous contents of %s into %s\n", o.Out, aside)
	}
	return config.Save(filepath.Join(o.Out, configFile), cfg)
}

func first(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
}

// checkResumeConfig compares the config of a resume with the one the run
// started with: keys that change the run's numbers must be equal, unless
// listed in AllowChange, and then the change is recorded with the
// checkpoint it took effect from. config.toml is never rewritten.
func checkResumeConfig(cfg Config, o RunOptions) error {
	st, err := os.Stat(o.Out)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("-resume %s: no such run directory", o.Out)
	}
	saved, err := os.ReadFile(filepath.Join(o.Out, configFile))
	if os.IsNotExist(err) {
		return fmt.Errorf("-resume %s: the directory has no %s, so it is not a repro run (or it was made by hand)", o.Out, configFile)
	}
	if err != nil {
		return err
	}
	var now bytes.Buffer
	if err := toml.NewEncoder(&now).Encode(cfg); err != nil {
		return err
	}
	diff, err := configDiff(saved, now.Bytes())
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(o.Out, configFile), err)
	}
	allowed := map[string]bool{}
	for _, k := range o.AllowChange {
		allowed[k] = true
	}
	task, _ := Lookup(cfg.Common().Task)
	var refused, changed []string
	for _, d := range diff {
		inSaved := d.Old != nil // TOML has no null: nil is a key the saved config lacks
		switch {
		case resumeSafeKeys[d.Key]:
		case !inSaved && StandsForAbsent(task, d.Key, d.New):
		case allowed[d.Key]:
			changed = append(changed, d.Key)
		default:
			refused = append(refused, fmt.Sprintf("%s (%v -> %v)", d.Key, d.Old, d.New))
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("-resume %s: the config differs from the run's %s in keys that change its results: %s; "+
			"resume with the run's own config, or allow a deliberate change with -allow-change KEY[,KEY]",
			o.Out, configFile, strings.Join(refused, ", "))
	}
	if len(changed) == 0 {
		return nil
	}
	ck, _ := LatestCheckpoint(o.Out)
	f, err := os.OpenFile(filepath.Join(o.Out, "config_changes.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, d := range diff {
		if allowed[d.Key] {
			if err := enc.Encode(map[string]any{"key": d.Key, "old": d.Old, "new": d.New, "from_checkpoint": filepath.Base(ck), "time": time.Now().Format(time.RFC3339)}); err != nil {
				return err
			}
			fmt.Fprintf(o.W, "resuming with %s changed from %v to %v (recorded in config_changes.jsonl)\n", d.Key, d.Old, d.New)
		}
	}
	return f.Sync()
}

// keyDiff is one key whose value differs between two configs.
type keyDiff struct {
	Key      string
	Old, New any
}

// configDiff lists the dotted keys whose values differ between two TOML
// documents (a key present in one only counts as a difference).
func configDiff(a, b []byte) ([]keyDiff, error) {
	var ma, mb map[string]any
	if _, err := toml.Decode(string(a), &ma); err != nil {
		return nil, err
	}
	if _, err := toml.Decode(string(b), &mb); err != nil {
		return nil, err
	}
	fa, fb := map[string]any{}, map[string]any{}
	flatten("", ma, fa)
	flatten("", mb, fb)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []keyDiff
	for k := range keys {
		if !reflect.DeepEqual(fa[k], fb[k]) {
			out = append(out, keyDiff{Key: k, Old: fa[k], New: fb[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flatten(prefix+k+".", sub, out)
			continue
		}
		out[prefix+k] = v
	}
}

// truncateMetrics drops the metrics.jsonl rows logged after step (the
// checkpoint a resume starts from), so the file's steps stay unique and
// increasing; the dropped rows are kept in metrics.dropped.jsonl.
func truncateMetrics(path string, step int64) (dropped int, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var keep, drop bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var row struct {
			Step *int64 `json:"step"`
		}
		if json.Unmarshal(line, &row) != nil || row.Step == nil || *row.Step > step {
			drop.Write(line) // after the checkpoint, or torn by the kill
			drop.WriteByte('\n')
			dropped++
			continue
		}
		keep.Write(line)
		keep.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if dropped == 0 {
		return 0, nil
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(path), "metrics.dropped.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	_, err = f.Write(drop.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return dropped, writeSynced(path, keep.Bytes())
}

// ErrStopped is returned by a run stopped by a signal after writing its
// checkpoint.
var ErrStopped = errors.New("stopped by a signal")

// stopOnSignals makes the first SIGINT or SIGTERM set *stop (the loop
// checkpoints and stops after the current step) and a second one exit at
// once. The returned function stops listening.
func stopOnSignals(stop *atomic.Bool, w io.Writer) func() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				if stop.Swap(true) {
					fmt.Fprintf(w, "\nsecond %v: exiting now, without a checkpoint\n", sig)
					os.Exit(130)
				}
				fmt.Fprintf(w, "\n%v: finishing this step and writing a checkpoint (send it again to exit at once)\n", sig)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
