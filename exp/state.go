package exp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/BurntSushi/toml"

	"github.com/reprolab/repro/train"
)

// Resolver turns a config file and -set overrides into the resolved config
// `repro train` would save as config.toml (cmd/repro passes the one train
// uses, so the two agree byte for byte).
type Resolver func(config string, sets []string) ([]byte, error)

// Resolve fills every run's resolved config; the errors of all runs are
// joined.
func (e *Experiment) Resolve(resolve Resolver) (map[*Run][]byte, error) {
	out := map[*Run][]byte{}
	var errs []error
	seen := map[string]error{}
	for _, r := range e.Runs {
		b, err := resolve(r.Config, r.Sets)
		if err != nil {
			msg := err.Error()
			if _, dup := seen[msg]; !dup {
				seen[msg] = err
				errs = append(errs, fmt.Errorf("run %s: %w", r.ID, err))
			}
			continue
		}
		out[r] = b
	}
	return out, errors.Join(errs...)
}

// Kind is what a run directory holds.
type Kind int

const (
	NotStarted Kind = iota // no config.toml yet
	Partial                // started: config.toml, maybe checkpoints, no results.json
	Done                   // results.json for the same config
	Changed                // config.toml differs from the experiment's config for it
	Running                // locked by another process
)

func (k Kind) String() string {
	return [...]string{"not started", "partial", "done", "changed", "running"}[k]
}

// State is a run directory's state.
type State struct {
	Kind   Kind
	Step   int64    // the newest checkpoint's step (Partial)
	Ckpt   string   // that checkpoint's path
	Diff   []string // the keys that differ (Changed): "key: saved X, now Y"
	Holder int      // the pid holding the lock (Running)
	Note   string
}

func (s State) String() string {
	switch s.Kind {
	case Partial:
		if s.Ckpt != "" {
			return fmt.Sprintf("partial (checkpoint at step %d)", s.Step)
		}
		return "partial (no checkpoint)"
	case Changed:
		return "changed: " + strings.Join(s.Diff, "; ")
	case Running:
		if s.Holder > 0 {
			return fmt.Sprintf("running (pid %d)", s.Holder)
		}
		return "running"
	}
	if s.Note != "" {
		return s.Kind.String() + " (" + s.Note + ")"
	}
	return s.Kind.String()
}

// Inspect reads a run directory: whether it has results for this config, a
// checkpoint to resume, or a config that differs. It does not lock; the
// runner calls it under the run's lock.
func Inspect(dir string, resolved []byte) (State, error) {
	saved, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	hasResults := resultsOK(dir)
	if errors.Is(err, os.ErrNotExist) {
		if hasResults {
			return State{Kind: Changed, Diff: []string{"it has results.json but no config.toml to compare"}}, nil
		}
		return State{Kind: NotStarted}, nil
	}
	if err != nil {
		return State{}, err
	}
	diff, err := DiffConfigs(saved, resolved, sameExperiment(resolved))
	if err != nil {
		return State{}, fmt.Errorf("%s: %w", filepath.Join(dir, "config.toml"), err)
	}
	if len(diff) > 0 {
		return State{Kind: Changed, Diff: diff}, nil
	}
	if hasResults {
		return State{Kind: Done}, nil
	}
	ck, err := train.LatestCheckpoint(dir)
	if err != nil {
		return State{}, err
	}
	st := State{Kind: Partial, Ckpt: ck}
	if ck != "" {
		st.Step, _ = strconv.ParseInt(strings.TrimPrefix(filepath.Base(ck), "step-"), 10, 64)
	}
	return st, nil
}

// resultsOK says whether dir/results.json exists and is whole JSON (a run
// killed while writing it is not done).
func resultsOK(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	return err == nil && json.Valid(b)
}

// sameExperiment is the differences between a run's saved config and the
// resolved one that leave its numbers as they are: keys that only change
// logging and checkpointing, and keys the run's task added after the run
// was made, absent from the saved config, whose value now is what their
// absence stood for (train.StandsForAbsent). Nil when the resolved config
// names no known task.
func sameExperiment(resolved []byte) func(key string, inSaved bool, now any) bool {
	var head struct {
		Task string `toml:"task"`
	}
	if _, err := toml.Decode(string(resolved), &head); err != nil {
		return nil
	}
	task, err := train.Lookup(head.Task)
	if err != nil {
		return nil
	}
	return func(key string, inSaved bool, now any) bool {
		return outputOnlyKeys[key] || (!inSaved && train.StandsForAbsent(task, key, now))
	}
}

// outputOnlyKeys change what a run writes on the way (logs, checkpoints,
// event files), never its numbers.
var outputOnlyKeys = map[string]bool{
	"trainer.log_every": true, "trainer.checkpoint_every": true, "trainer.keep_checkpoints": true,
	"trainer.tensorboard": true,
}

// DiffConfigs compares two TOML configs key by key and lists the keys that
// differ, as "key: saved X, now Y", except those same says leave the
// experiment the same (nil: none).
func DiffConfigs(saved, now []byte, same func(key string, inSaved bool, now any) bool) ([]string, error) {
	var a, b map[string]any
	if _, err := toml.Decode(string(saved), &a); err != nil {
		return nil, err
	}
	if _, err := toml.Decode(string(now), &b); err != nil {
		return nil, err
	}
	fa, fb := map[string]any{}, map[string]any{}
	for _, kv := range flatten(a) {
		fa[kv.k] = kv.v
	}
	for _, kv := range flatten(b) {
		fb[kv.k] = kv.v
	}
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		va, oka := fa[k]
		vb, okb := fb[k]
		if okb && same != nil && (!oka || !reflect.DeepEqual(va, vb)) && same(k, oka, vb) {
			continue
		}
		switch {
		case !oka:
			out = append(out, fmt.Sprintf("%s: not in the saved config, now %s", k, show(vb)))
		case !okb:
			out = append(out, fmt.Sprintf("%s: saved %s, now absent", k, show(va)))
		case !reflect.DeepEqual(va, vb):
			out = append(out, fmt.Sprintf("%s: saved %s, now %s", k, show(va), show(vb)))
		}
	}
	sort.Strings(out)
	return out, nil
}

func show(v any) string {
	if t, err := tomlValue(v); err == nil {
		return t
	}
	return fmt.Sprint(v)
}

// heldBy says whether another process holds dir's lock, without creating
// anything: the pid, or 0 and false.
func heldBy(dir string) (int, bool) {
	path := filepath.Join(dir, ".lock")
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid, true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return 0, false
}

// Status is a run's state as `repro exp status` shows it.
type Status struct {
	Run   *Run
	State State
	Err   error
}

// Statuses inspects every run without running anything or taking locks for
// long: a run another process holds is Running.
func (e *Experiment) Statuses(resolved map[*Run][]byte) []Status {
	var out []Status
	for _, r := range e.Runs {
		s := Status{Run: r}
		if pid, held := heldBy(r.Dir); held {
			s.State = State{Kind: Running, Holder: pid}
		} else if b, ok := resolved[r]; ok {
			s.State, s.Err = Inspect(r.Dir, b)
		} else {
			s.Err = errors.New("its config does not resolve")
		}
		out = append(out, s)
	}
	return out
}

// PrintStatus writes the status table: a line per run with its state,
// what it waits for, and its directory, then the counts. With commands,
// each run's `repro train` command line follows its line.
func (e *Experiment) PrintStatus(w io.Writer, statuses []Status, commands bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tAFTER\tDIR")
	counts := map[string]int{}
	kinds := map[*Run]Kind{}
	for _, s := range statuses {
		kinds[s.Run] = s.State.Kind
	}
	for _, s := range statuses {
		state := s.State.String()
		key := s.State.Kind.String()
		if s.Err != nil {
			state, key = "error: "+s.Err.Error(), "error"
		}
		var after []string
		if s.State.Kind != Done {
			for _, d := range s.Run.Deps {
				if kinds[d] != Done {
					after = append(after, d.ID)
				}
			}
		}
		if len(after) == 0 {
			after = []string{"-"}
		}
		counts[key]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Run.ID, state, strings.Join(after, " "), s.Run.Dir)
	}
	tw.Flush()
	if commands {
		fmt.Fprintln(w, "\ncommands (the next start of each run not done):")
		for _, s := range statuses {
			if s.State.Kind == Done {
				continue
			}
			resume := s.State.Kind == Partial && (s.State.Ckpt != "" || s.Run.Stage.Spec.Resume == "always")
			fmt.Fprintf(w, "%s:\n  repro %s\n", s.Run.ID, quoteArgs(s.Run.TrainArgs(resume, !resume && s.State.Kind == Partial)))
		}
		fmt.Fprintln(w)
	}
	var parts []string
	for _, k := range []string{"done", "running", "partial", "not started", "changed", "error"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	fmt.Fprintf(w, "%s: %d runs: %s\n", e.Name, len(statuses), strings.Join(parts, ", "))
}
