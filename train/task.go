package train

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
)

// This file is the task template: the one way a paper's experiment enters
// repro. A paper declares its config (embedding Base) and a TaskSpec; the
// framework loads and validates the config, makes the Session (device, run
// directory, seed, metrics), runs the task, writes results.json, and refuses
// what the task cannot honour. template/ is the smallest complete example.

// Base is what every task's config embeds: the task's name and the
// [trainer] table, validated once here for every task.
type Base struct {
	Task    string        `toml:"task"`
	Trainer TrainerConfig `toml:"trainer"`
}

// Common gives the framework the embedded Base.
func (b *Base) Common() *Base { return b }

// Config is a task's config: a struct embedding Base, whose Validate checks
// the task's own keys (the [trainer] table is checked by the framework).
// Errors should come from config.Field so they name the key and its line.
type Config interface {
	Common() *Base
	Validate() error
}

// TaskSpec declares a task: C is its config, R what a run reports (written
// to results.json). Register it through the papers list (papers/papers.go).
type TaskSpec[C Config, R any] struct {
	Name    string
	Doc     string
	Default func() C // the config with its documented defaults
	// Run does the experiment in the session the framework made from the
	// config's [trainer] table; typically it builds the model in s.Store
	// and calls s.Train with a Plan. Its result is written to results.json.
	Run func(s *Session, c C) (R, error)
	// Eval evaluates trained weights (a checkpoint, run folder or weight
	// file) as the config says; nil for tasks with nothing to evaluate.
	Eval func(c C, checkpoint string, w io.Writer) error
	// Ignores lists the [trainer] keys the task does not honour (say,
	// "precision" for a solver that is not a network). A config that sets
	// one to anything but the task's default is refused, naming the key.
	Ignores []string
	// NoResume marks a task that cannot continue an interrupted run:
	// -resume is refused instead of silently starting over.
	NoResume bool
	// Added lists the config keys added to the task after runs were made
	// with it (dotted, as in config.toml: "data.crop"), each with the
	// value that a saved config lacking the key stands for: what the code
	// did before the key existed, which need not be the key's default
	// now. A run directory whose config.toml lacks such a key, while the
	// current config has exactly that value, holds the same experiment:
	// repro exp counts it done and -resume accepts it (StandsForAbsent).
	Added map[string]any
}

// Task is a registered task, whatever its config type; only TaskSpec makes one.
type Task interface {
	TaskName() string
	TaskDoc() string
	TaskIgnores() []string
	TaskAdded() map[string]any
	newConfig() Config
	check(c Config) error
	start(c Config, o RunOptions) error
	evaluate(c Config, checkpoint string, w io.Writer) error
	hasEval() bool
}

// TaskName is the name configs pick the task by.
func (t TaskSpec[C, R]) TaskName() string { return t.Name }

// TaskDoc is the task's one-line description.
func (t TaskSpec[C, R]) TaskDoc() string { return t.Doc }

// TaskIgnores lists the [trainer] keys the task does not honour.
func (t TaskSpec[C, R]) TaskIgnores() []string { return t.Ignores }

// TaskAdded is the task's Added keys with the [trainer] keys added since
// runs were first made (trainerAdded).
func (t TaskSpec[C, R]) TaskAdded() map[string]any {
	out := map[string]any{}
	for k, v := range trainerAdded {
		out[k] = v
	}
	for k, v := range t.Added {
		out[k] = v
	}
	return out
}

// trainerAdded are the [trainer] keys added after runs were made, with
// the value their absence stands for (see TaskSpec.Added).
var trainerAdded = map[string]any{
	"trainer.tensorboard": true, // event files beside metrics.jsonl; logging only
}

// StandsForAbsent says whether a saved config that lacks key is the same
// experiment as one that sets it to now: key was added to task t later
// (TaskSpec.Added) and now is the value its absence stands for.
func StandsForAbsent(t Task, key string, now any) bool {
	if t == nil {
		return false
	}
	v, ok := t.TaskAdded()[key]
	return ok && sameTOMLValue(v, now)
}

// sameTOMLValue compares a Go value with one decoded from TOML, where
// every integer is an int64 and every float a float64.
func sameTOMLValue(a, b any) bool {
	norm := func(x any) any {
		switch v := x.(type) {
		case int:
			return int64(v)
		case int32:
			return int64(v)
		case float32:
			return float64(v)
		}
		return x
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func (t TaskSpec[C, R]) newConfig() Config { return t.Default() }
func (t TaskSpec[C, R]) hasEval() bool     { return t.Eval != nil }

// check validates a loaded config: the trainer table, the task's own keys,
// and the trainer keys the task ignores.
func (t TaskSpec[C, R]) check(c Config) error {
	b := c.Common()
	if b.Task != t.Name {
		return config.Field("task", "is %q, but this is task %q", b.Task, t.Name)
	}
	if err := b.Trainer.Validate(); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	def := reflect.ValueOf(t.Default().Common().Trainer)
	got := reflect.ValueOf(b.Trainer)
	for _, key := range t.Ignores {
		i, ok := trainerField(key)
		if !ok {
			panic(fmt.Sprintf("train: task %s ignores unknown trainer key %q", t.Name, key))
		}
		if !reflect.DeepEqual(def.Field(i).Interface(), got.Field(i).Interface()) {
			return config.Field("trainer."+key, "task %s does not use this key (it ignores trainer.%s); remove it (its default is %v)",
				t.Name, strings.Join(t.Ignores, ", trainer."), def.Field(i).Interface())
		}
	}
	return nil
}

// Start runs the task on a config (already loaded and valid) in the run
// directory out: it makes the session, runs the task and writes its
// result to results.json. With resume it continues the run in out.
func (t TaskSpec[C, R]) Start(c C, out string, resume bool, w io.Writer) (R, error) {
	return t.StartWith(c, RunOptions{Out: out, Resume: resume, W: w})
}

// StartWith is Start with all the run options: it takes the run
// directory's lock, applies its ownership and provenance rules (README,
// "Run directories"), writes config.toml for a fresh run, runs the task in
// a session and writes results.json.
func (t TaskSpec[C, R]) StartWith(c C, o RunOptions) (R, error) {
	var zero R
	if o.W == nil {
		o.W = io.Discard
	}
	if o.Resume && t.NoResume {
		return zero, fmt.Errorf("task %s cannot resume an interrupted run; start it again without -resume", t.Name)
	}
	if err := t.check(c); err != nil {
		return zero, err
	}
	// A data-parallel run (RunOptions.Group, or torchrun's environment):
	// rank 0 takes the run directory and tells the others (distributed.go).
	g, own, err := groupFor(o, c.Common().Trainer)
	if err != nil {
		return zero, err
	}
	if own {
		defer g.Close()
	}
	var lock *RunDirLock
	if g != nil {
		if lock, err = startRanks(g, c, &o); err != nil {
			return zero, err
		}
	} else {
		if o.Resume {
			if err := checkResumeDir(o.Out); err != nil {
				return zero, err
			}
		}
		if lock, err = TryLockRunDir(o.Out); err != nil {
			return zero, err
		}
		if err := prepareRunDir(c, o); err != nil {
			lock.Unlock()
			return zero, err
		}
	}
	s, err := newSession(c.Common().Trainer, o.Out, o.Resume, o.W, lock, g)
	if err != nil {
		lock.Unlock()
		return zero, err
	}
	defer s.Close()
	s.signals = o.Signals
	// The task boundary: a tensor-code panic with an error value (a shape
	// mistake, a size that does not fit) becomes the run's error; bugs
	// (runtime errors) keep their stack (torchmods/doc.go).
	var res R
	if perr := torchmods.Try(func() { res, err = t.Run(s, c) }); perr != nil {
		return zero, perr
	}
	if err != nil {
		return zero, err
	}
	if err := s.WriteResults(res); err != nil {
		return zero, err
	}
	if g != nil {
		// Rank 0's store outlives every rank's last collective.
		if err := g.Barrier(); err != nil {
			return zero, err
		}
	}
	return res, nil
}

func (t TaskSpec[C, R]) start(c Config, o RunOptions) error {
	_, err := t.StartWith(c.(C), o)
	return err
}

func (t TaskSpec[C, R]) evaluate(c Config, checkpoint string, w io.Writer) error {
	if t.Eval == nil {
		return fmt.Errorf("task %s has no evaluation", t.Name)
	}
	return t.Eval(c.(C), checkpoint, w)
}

// trainerField finds the TrainerConfig field whose TOML key is key.
func trainerField(key string) (int, bool) {
	typ := reflect.TypeOf(TrainerConfig{})
	for i := range typ.NumField() {
		if typ.Field(i).Tag.Get("toml") == key {
			return i, true
		}
	}
	return 0, false
}

var registry = map[string]Task{}

// Register adds tasks to the registry that configs' task keys look up;
// cmd/repro registers papers.Tasks() at start-up. A name registered twice
// is a programming error.
func Register(ts ...Task) {
	for _, t := range ts {
		if _, dup := registry[t.TaskName()]; dup {
			panic("train: task " + t.TaskName() + " registered twice")
		}
		registry[t.TaskName()] = t
	}
}

// Lookup finds a registered task by name.
func Lookup(name string) (Task, error) {
	t, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown task %q; known tasks: %v", name, TaskNames())
	}
	return t, nil
}

// TaskNames lists the registered tasks, sorted.
func TaskNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LoadConfig reads a config file's task key, then the whole file strictly
// into that task's config, applies the -set overrides and validates it.
func LoadConfig(path string, sets []string) (Task, Config, error) {
	var head map[string]any
	if _, err := toml.DecodeFile(path, &head); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	name, _ := head["task"].(string)
	for _, s := range sets { // a -set task=... counts too
		if k, v, ok := strings.Cut(s, "="); ok && strings.TrimSpace(k) == "task" {
			name = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	if name == "" {
		return nil, nil, fmt.Errorf("%s: no task key (say which experiment, e.g. task = \"basics.fashion_mnist\")", path)
	}
	task, err := Lookup(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg := task.newConfig()
	if err := config.LoadWith(path, cfg, sets, func() error { return task.check(cfg) }); err != nil {
		return nil, nil, err
	}
	return task, cfg, nil
}

// Run runs a loaded config's task as the options say, writing its result
// to results.json in the run directory.
func Run(task Task, cfg Config, o RunOptions) error {
	return task.start(cfg, o)
}

// Eval evaluates weights at checkpoint as a loaded config's task does.
func Eval(task Task, cfg Config, checkpoint string, w io.Writer) error {
	if !task.hasEval() {
		return errors.New("task " + task.TaskName() + " has no evaluation")
	}
	return task.evaluate(cfg, checkpoint, w)
}
