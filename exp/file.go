// Package exp runs a paper's whole experiment from one TOML file: stages
// (each a training config plus overrides, depending on other stages' run
// directories) over a grid of conditions, extra axes and seeds, as child
// `repro train` processes in parallel, resumably; and it reports the results
// as Markdown tables (mean ± sample standard deviation over seeds), overlay
// plots and a JSON summary. experiments/README.md documents the file format.
package exp

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/reprolab/repro/internal/config"
)

// File is an experiment file as written.
type File struct {
	Name       string                `toml:"name"`     // default: the file's base name
	Root       string                `toml:"root"`     // run directories (default runs/exp/<name>)
	Report     string                `toml:"report"`   // report folder (default <root>/report)
	Jobs       int                   `toml:"jobs"`     // runs at a time (default 1)
	Threads    int                   `toml:"threads"`  // libtorch intra-op threads per run (default cores/jobs)
	Seeds      []int64               `toml:"seeds"`    // the seed axis; none: the configs' own seeds
	SeedKey    string                `toml:"seed_key"` // the config key seeds set (default trainer.seed)
	Band       string                `toml:"band"`     // plots' band across seeds: "minmax" (default) or "std"
	Stages     map[string]*StageSpec `toml:"stage"`
	Conditions []*ConditionSpec      `toml:"condition"`
	Axes       []*AxisSpec           `toml:"axis"`
	Tables     []*TableSpec          `toml:"table"`
}

// StageSpec is one [stage.NAME] table.
type StageSpec struct {
	Config  string    `toml:"config"`  // the training config (${...} substituted)
	Set     Values    `toml:"set"`     // overrides, as -set: { "trainer.max_steps" = 10 }
	After   []string  `toml:"after"`   // stages to wait for without naming their directories
	Over    *[]string `toml:"over"`    // the axes this stage varies over (default all)
	Metrics []string  `toml:"metrics"` // results.json keys to report (dotted, array indices allowed)
	Plots   *[]string `toml:"plots"`   // metrics.jsonl keys to plot (default all)
	Resume  string    `toml:"resume"`  // "checkpoint" (default): resume when a checkpoint exists; "always"
}

// ConditionSpec is one [[condition]].
type ConditionSpec struct {
	Name     string    `toml:"name"`
	Label    string    `toml:"label"`    // for tables and plots (default name)
	Baseline bool      `toml:"baseline"` // marked as a baseline in tables
	Stages   []string  `toml:"stages"`   // the stages it runs in (default every stage over condition)
	Config   ConfigRef `toml:"config"`   // a config replacing the stages', or a table stage = config
	Set      Values    `toml:"set"`      // overrides, after the stage's
}

// Values is a table of config keys and values (dotted keys or nested
// tables), as a set = { ... } gives them.
type Values map[string]any

// UnmarshalTOML takes the table as it is (so its keys are not "unknown").
func (v *Values) UnmarshalTOML(data any) error {
	m, ok := data.(map[string]any)
	if !ok {
		return fmt.Errorf("set must be a table of config keys and values, got %T", data)
	}
	*v = m
	return nil
}

// ConfigRef is a condition's config: one file for every stage it runs in,
// or a table stage = file.
type ConfigRef struct {
	All      string
	PerStage map[string]string
}

// UnmarshalTOML takes a string or a table of strings.
func (c *ConfigRef) UnmarshalTOML(data any) error {
	switch v := data.(type) {
	case string:
		c.All = v
		return nil
	case map[string]any:
		c.PerStage = map[string]string{}
		for k, x := range v {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("config.%s must be a file name, got %T", k, x)
			}
			c.PerStage[k] = s
		}
		return nil
	}
	return fmt.Errorf("config must be a file name or a table stage = file, got %T", data)
}

// AxisSpec is one [[axis]]: any config key, over a list of values.
type AxisSpec struct {
	Name   string   `toml:"name"`
	Key    string   `toml:"key"`
	Values []any    `toml:"values"`
	Labels []string `toml:"labels"` // names of the values in tables and directories (default the values)
	// Stages are the stages whose config the key is set in (default: every
	// stage that varies over the axis). The others that vary over it carry
	// its value only in their directories and references, so a pre-training
	// axis (trainer.max_steps) can reach the fine-tunings that start from it
	// without setting their own max_steps.
	Stages []string `toml:"stages"`
}

// TableSpec is one [[table]]: named columns of metrics, rows of conditions.
type TableSpec struct {
	Name    string        `toml:"name"`
	Title   string        `toml:"title"`
	Columns []*ColumnSpec `toml:"columns"`
}

// ColumnSpec is one metric column of a table.
type ColumnSpec struct {
	Metric string  `toml:"metric"` // "stage.key", or "stage.key1|key2": the first key a run has
	Label  string  `toml:"label"`  // header (default the metric)
	Scale  float64 `toml:"scale"`  // multiply values by this (default 1; 100 for percent)
	Digits *int    `toml:"digits"` // decimals (default 4 significant digits)
}

// Experiment is a loaded, checked and expanded experiment file.
type Experiment struct {
	Path       string
	Name       string
	Root       string
	ReportDir  string
	Jobs       int
	Threads    int
	Seeds      []int64
	SeedKey    string
	Band       string
	Stages     []*Stage // dependencies first
	Conditions []*Condition
	Axes       []*Axis
	TableSpecs []*TableSpec // declared tables, then one per stage metric
	Runs       []*Run       // in scheduling order: seed, condition, axes, then stage
	file       *File
	src        []byte
}

// Stage is a checked stage.
type Stage struct {
	Name  string
	Index int // in dependency order
	Spec  *StageSpec
	Over  map[string]bool // axis names: "condition", "seed" and [[axis]] names
	Needs []string        // stages it depends on
	Runs  []*Run
	order int // position in the file
}

// Condition is a checked condition.
type Condition struct {
	Name, Label string
	Baseline    bool
	Index       int
	Spec        *ConditionSpec
	stages      map[string]bool // nil: every stage over condition
}

// Axis is a checked [[axis]].
type Axis struct {
	Name, Key string
	Values    []any
	Texts     []string        // the values as TOML, for -set
	Labels    []string        // the values' names in tables and ${axis}
	dirs      []string        // the labels as directory names
	setIn     map[string]bool // the stages whose config Key is set in; nil: all that vary over it
}

// Sets reports whether the axis sets its key in stage's config.
func (a *Axis) Sets(stage string) bool { return a.setIn == nil || a.setIn[stage] }

var dirUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.+-]+`)

// dirName makes a label safe as a path component: "1 (separate)" becomes
// "1_separate".
func dirName(label string) string {
	d := strings.Trim(dirUnsafe.ReplaceAllString(label, "_"), "_")
	if d == "" || d == "." || d == ".." {
		d = "_"
	}
	return d
}

// Run is one training run: a stage at one grid point.
type Run struct {
	ID     string // the run directory relative to the root: stage/condition/axis-value/seed-N
	Stage  *Stage
	Cond   *Condition // nil when the stage does not vary over condition
	Axes   []int      // value index per Experiment.Axes; -1 where the stage does not vary over it
	Seed   *int64
	SeedIx int // index in Experiment.Seeds; -1 without a seed
	Dir    string
	Config string
	Sets   []string // -set arguments, in order
	Deps   []*Run
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Load reads, checks and expands an experiment file. Errors name the file
// and, where it can be found, the line.
func Load(path string) (*Experiment, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := config.Load(path, &f, nil); err != nil { // strict: unknown keys are errors with their line
		return nil, err
	}
	e := &Experiment{Path: path, file: &f, src: src}
	if err := e.check(); err != nil {
		return nil, err
	}
	if err := e.expand(); err != nil {
		return nil, err
	}
	return e, nil
}

// errAt is an error located at a line of the file (found by find).
func (e *Experiment) errAt(line int, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	if line > 0 {
		return fmt.Errorf("%s:%d: %s", e.Path, line, msg)
	}
	return fmt.Errorf("%s: %s", e.Path, msg)
}

// line finds where a key is defined: key in table (dotted, "" for the top
// level), as a key, a sub-table header or a dotted key; else the table's
// header. For [[condition]] entries pass cond, the condition's name: the
// search is then inside that entry.
func (e *Experiment) line(table, key, cond string) int {
	header := regexp.MustCompile(`^\s*\[\[?\s*([^\]]+?)\s*\]`)
	lines := strings.Split(string(e.src), "\n")
	current, inCond, tableLine := "", cond == "", 0
	nameRE := regexp.MustCompile(`^\s*name\s*=\s*["']` + regexp.QuoteMeta(cond) + `["']`)
	for i, l := range lines {
		if m := header.FindStringSubmatch(l); m != nil {
			current = strings.ReplaceAll(m[1], " ", "")
			if cond != "" && strings.HasPrefix(strings.TrimSpace(l), "[[") {
				inCond = false
			}
			if inCond && current == table && tableLine == 0 {
				tableLine = i + 1
			}
			if inCond && key != "" && current == table+"."+key {
				return i + 1
			}
			continue
		}
		if cond != "" && current == "condition" && nameRE.MatchString(l) {
			inCond = true
			tableLine = i + 1
			if key == "" || key == "name" {
				return i + 1
			}
			continue
		}
		if !inCond || key == "" {
			continue
		}
		k := regexp.QuoteMeta(key)
		if current == table && regexp.MustCompile(`^\s*["']?`+k+`["']?\s*[=.]`).MatchString(l) {
			return i + 1
		}
		if current == "" && table != "" && regexp.MustCompile(`^\s*`+regexp.QuoteMeta(table+"."+key)+`\s*[=.]`).MatchString(l) {
			return i + 1
		}
	}
	if tableLine == 0 && table != "" {
		// the table may be defined only through sub-tables or dotted keys
		for i, l := range lines {
			if strings.Contains(l, table) {
				return i + 1
			}
		}
	}
	return tableLine
}

func (e *Experiment) stageLine(stage, key string) int { return e.line("stage."+stage, key, "") }

func (e *Experiment) check() error {
	f := e.file
	e.Name = f.Name
	if e.Name == "" {
		e.Name = strings.TrimSuffix(filepath.Base(e.Path), filepath.Ext(e.Path))
	}
	if !nameRE.MatchString(e.Name) {
		return e.errAt(e.line("", "name", ""), "name %q: use letters, digits, _, . and -", e.Name)
	}
	e.Root = f.Root
	if e.Root == "" {
		e.Root = filepath.Join("runs", "exp", e.Name)
	}
	e.ReportDir = f.Report
	if e.ReportDir == "" {
		e.ReportDir = filepath.Join(e.Root, "report")
	}
	e.Jobs = f.Jobs
	if e.Jobs == 0 {
		e.Jobs = 1
	}
	if e.Jobs < 0 {
		return e.errAt(e.line("", "jobs", ""), "jobs must be positive, got %d", f.Jobs)
	}
	e.Threads = f.Threads
	if e.Threads < 0 {
		return e.errAt(e.line("", "threads", ""), "threads must be positive, got %d", f.Threads)
	}
	if e.Threads == 0 {
		e.Threads = max(1, runtime.NumCPU()/e.Jobs)
	}
	e.Seeds = f.Seeds
	seen := map[int64]bool{}
	for _, s := range f.Seeds {
		if seen[s] {
			return e.errAt(e.line("", "seeds", ""), "seed %d is listed twice", s)
		}
		seen[s] = true
	}
	e.SeedKey = f.SeedKey
	if e.SeedKey == "" {
		e.SeedKey = "trainer.seed"
	}
	e.Band = f.Band
	switch e.Band {
	case "":
		e.Band = "minmax"
	case "minmax", "std":
	default:
		return e.errAt(e.line("", "band", ""), `band must be "minmax" or "std", got %q`, f.Band)
	}
	if len(f.Stages) == 0 {
		return e.errAt(0, "no stages: add a [stage.NAME] table with a config")
	}

	// Axes: condition, the [[axis]] ones, seed.
	reserved := map[string]bool{"name": true, "root": true, "condition": true, "seed": true}
	axisNames := map[string]bool{}
	for _, a := range f.Axes {
		ln := e.line("axis", "name", "")
		switch {
		case !nameRE.MatchString(a.Name):
			return e.errAt(ln, "axis name %q: use letters, digits, _, . and -", a.Name)
		case reserved[a.Name] || axisNames[a.Name]:
			return e.errAt(ln, "axis name %q is taken", a.Name)
		case a.Key == "":
			return e.errAt(ln, "axis %q has no key (the config key it sets)", a.Name)
		case len(a.Values) == 0:
			return e.errAt(ln, "axis %q has no values", a.Name)
		case a.Labels != nil && len(a.Labels) != len(a.Values):
			return e.errAt(ln, "axis %q has %d values but %d labels", a.Name, len(a.Values), len(a.Labels))
		}
		axisNames[a.Name] = true
		ax := &Axis{Name: a.Name, Key: a.Key, Values: a.Values}
		for _, v := range a.Values {
			text, err := tomlValue(v)
			if err != nil {
				return e.errAt(ln, "axis %q: %v", a.Name, err)
			}
			ax.Texts = append(ax.Texts, text)
			label := fmt.Sprint(v)
			if s, ok := v.(string); ok {
				label = s
			} else if _, ok := v.([]any); ok {
				label = text
			}
			if a.Labels != nil {
				label = a.Labels[len(ax.Labels)]
			}
			ax.Labels = append(ax.Labels, label)
			ax.dirs = append(ax.dirs, dirName(label))
		}
		seenDir := map[string]bool{}
		for _, d := range ax.dirs {
			if seenDir[d] {
				return e.errAt(ln, "axis %q: two values share the directory name %q; give them labels", a.Name, d)
			}
			seenDir[d] = true
		}
		e.Axes = append(e.Axes, ax)
	}

	// Stages, in file order.
	names := make([]string, 0, len(f.Stages))
	for n := range f.Stages {
		names = append(names, n)
	}
	order := map[string]int{}
	var md map[string]any
	if meta, err := toml.Decode(string(e.src), &md); err == nil {
		for _, k := range meta.Keys() {
			if len(k) >= 2 && k[0] == "stage" {
				if _, ok := order[k[1]]; !ok {
					order[k[1]] = len(order)
				}
			}
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if order[names[i]] != order[names[j]] {
			return order[names[i]] < order[names[j]]
		}
		return names[i] < names[j]
	})
	byName := map[string]*Stage{}
	var stages []*Stage
	for i, n := range names {
		sp := f.Stages[n]
		if sp == nil {
			sp = &StageSpec{}
		}
		switch {
		case !nameRE.MatchString(n) || strings.Contains(n, "."):
			return e.errAt(e.stageLine(n, ""), "stage name %q: use letters, digits, _ and -", n)
		case reserved[n] || axisNames[n]:
			return e.errAt(e.stageLine(n, ""), "stage name %q is taken (a variable or axis has that name)", n)
		}
		st := &Stage{Name: n, Spec: sp, Over: map[string]bool{}, order: i}
		if sp.Resume == "" {
			sp.Resume = "checkpoint"
		}
		if sp.Resume != "checkpoint" && sp.Resume != "always" {
			return e.errAt(e.stageLine(n, "resume"), `stage %s: resume must be "checkpoint" or "always", got %q`, n, sp.Resume)
		}
		if sp.Over == nil {
			if len(f.Conditions) > 0 {
				st.Over["condition"] = true
			}
			for _, a := range e.Axes {
				st.Over[a.Name] = true
			}
			if len(e.Seeds) > 0 {
				st.Over["seed"] = true
			}
		} else {
			for _, a := range *sp.Over {
				switch {
				case st.Over[a]:
					return e.errAt(e.stageLine(n, "over"), "stage %s: %q is listed twice in over", n, a)
				case a == "condition" && len(f.Conditions) == 0:
					return e.errAt(e.stageLine(n, "over"), "stage %s varies over condition, but there are no [[condition]]s", n)
				case a != "condition" && a != "seed" && !axisNames[a]:
					return e.errAt(e.stageLine(n, "over"), "stage %s: over names %q, which is not condition, seed or an [[axis]]", n, a)
				}
				st.Over[a] = true
			}
		}
		for _, m := range sp.Metrics {
			if m == "" {
				return e.errAt(e.stageLine(n, "metrics"), "stage %s: an empty metric name", n)
			}
		}
		byName[n] = st
		stages = append(stages, st)
	}
	for i, a := range f.Axes {
		if a.Stages == nil {
			continue
		}
		ax := e.Axes[i]
		ax.setIn = map[string]bool{}
		for _, n := range a.Stages {
			st := byName[n]
			switch {
			case st == nil:
				return e.errAt(e.line("axis", "name", ""), "axis %q: stages names %q, which is not a stage", a.Name, n)
			case !st.Over[a.Name]:
				return e.errAt(e.line("axis", "name", ""), "axis %q: stage %s does not vary over it, so it cannot set %s", a.Name, n, a.Key)
			}
			ax.setIn[n] = true
		}
	}

	// Conditions.
	condNames := map[string]bool{}
	for i, c := range f.Conditions {
		ln := e.line("condition", "name", c.Name)
		switch {
		case !nameRE.MatchString(c.Name):
			return e.errAt(ln, "condition name %q: use letters, digits, _, . and -", c.Name)
		case condNames[c.Name]:
			return e.errAt(ln, "condition %q is defined twice", c.Name)
		}
		condNames[c.Name] = true
		cd := &Condition{Name: c.Name, Label: c.Label, Baseline: c.Baseline, Index: i, Spec: c}
		if cd.Label == "" {
			cd.Label = c.Name
		}
		if c.Stages != nil {
			cd.stages = map[string]bool{}
			for _, s := range c.Stages {
				st, ok := byName[s]
				if !ok {
					return e.errAt(e.line("condition", "stages", c.Name), "condition %s: stages names %q, which is not a stage", c.Name, s)
				}
				if !st.Over["condition"] {
					return e.errAt(e.line("condition", "stages", c.Name), "condition %s: stage %s does not vary over condition", c.Name, s)
				}
				cd.stages[s] = true
			}
		}
		for st := range c.Config.PerStage {
			if _, ok := byName[st]; !ok {
				return e.errAt(e.line("condition", "config", c.Name), "condition %s: config names stage %q, which does not exist", c.Name, st)
			}
		}
		e.Conditions = append(e.Conditions, cd)
	}
	for _, st := range stages {
		if st.Over["condition"] && len(e.conditionsOf(st)) == 0 {
			return e.errAt(e.stageLine(st.Name, ""), "stage %s varies over condition, but no condition runs in it", st.Name)
		}
	}

	// Dependencies between stages: ${stage} references and after.
	for _, st := range stages {
		needs := map[string]bool{}
		for _, a := range st.Spec.After {
			if _, ok := byName[a]; !ok {
				return e.errAt(e.stageLine(st.Name, "after"), "stage %s: after names %q, which is not a stage", st.Name, a)
			}
			needs[a] = true
		}
		check := func(text, where string, line int) error {
			for _, ref := range refs(text) {
				if _, ok := byName[ref]; ok {
					needs[ref] = true
					continue
				}
				if !e.isVar(ref) {
					return e.errAt(line, "stage %s: %s refers to ${%s}, which is not a stage or a variable (name, root, condition, seed, an axis)", st.Name, where, ref)
				}
			}
			return nil
		}
		if err := check(st.Spec.Config, "config", e.stageLine(st.Name, "config")); err != nil {
			return err
		}
		for _, kv := range flatten(st.Spec.Set) {
			for _, s := range stringsIn(kv.v) {
				if err := check(s, "set."+kv.k, e.stageLine(st.Name, "set")); err != nil {
					return err
				}
			}
		}
		for _, c := range e.conditionsOf(st) {
			if err := check(c.config(st.Name), "condition "+c.Name+"'s config", e.line("condition", "config", c.Name)); err != nil {
				return err
			}
			for _, kv := range flatten(c.Spec.Set) {
				for _, s := range stringsIn(kv.v) {
					if err := check(s, "condition "+c.Name+"'s set."+kv.k, e.line("condition", "set", c.Name)); err != nil {
						return err
					}
				}
			}
		}
		for n := range needs {
			st.Needs = append(st.Needs, n)
		}
		sort.Slice(st.Needs, func(i, j int) bool { return byName[st.Needs[i]].order < byName[st.Needs[j]].order })
		if st.Spec.Config == "" {
			for _, c := range e.conditionsOf(st) {
				if c.config(st.Name) == "" {
					return e.errAt(e.stageLine(st.Name, ""), "stage %s has no config (and condition %s gives none)", st.Name, c.Name)
				}
			}
			if !st.Over["condition"] {
				return e.errAt(e.stageLine(st.Name, ""), "stage %s has no config", st.Name)
			}
		}
	}
	sorted, err := topoSort(stages, byName)
	if err != nil {
		return e.errAt(e.stageLine(err.first, ""), "%v", err)
	}
	e.Stages = sorted
	for i, st := range e.Stages {
		st.Index = i
	}

	// Tables.
	tableNames := map[string]bool{}
	for _, t := range f.Tables {
		ln := e.line("table", "name", "")
		if !nameRE.MatchString(t.Name) {
			return e.errAt(ln, "table name %q: use letters, digits, _, . and -", t.Name)
		}
		if tableNames[t.Name] {
			return e.errAt(ln, "table %q is defined twice", t.Name)
		}
		tableNames[t.Name] = true
		if len(t.Columns) == 0 {
			return e.errAt(ln, "table %s has no columns", t.Name)
		}
		for _, c := range t.Columns {
			s, key, _ := strings.Cut(c.Metric, ".")
			if _, ok := byName[s]; !ok || key == "" {
				return e.errAt(e.line("table", "columns", ""), "table %s: metric %q must be stage.key with an existing stage", t.Name, c.Metric)
			}
			if c.Scale == 0 {
				c.Scale = 1
			}
			if c.Label == "" {
				c.Label = c.Metric
			}
		}
		e.TableSpecs = append(e.TableSpecs, t)
	}
	for _, st := range e.Stages {
		for _, m := range st.Spec.Metrics {
			name := st.Name + "." + m
			if tableNames[name] {
				continue
			}
			tableNames[name] = true
			e.TableSpecs = append(e.TableSpecs, &TableSpec{Name: name, Columns: []*ColumnSpec{{Metric: name, Label: m, Scale: 1}}})
		}
	}
	return nil
}

// conditionsOf lists the conditions running in a stage (none if the stage
// does not vary over condition).
func (e *Experiment) conditionsOf(st *Stage) []*Condition {
	if !st.Over["condition"] {
		return nil
	}
	var out []*Condition
	for _, c := range e.Conditions {
		if c.stages == nil || c.stages[st.Name] {
			out = append(out, c)
		}
	}
	return out
}

// config is the condition's config for a stage, "" for the stage's own.
func (c *Condition) config(stage string) string {
	if c.Spec.Config.PerStage != nil {
		return c.Spec.Config.PerStage[stage]
	}
	return c.Spec.Config.All
}

func (e *Experiment) isVar(name string) bool {
	switch name {
	case "name", "root", "condition", "seed":
		return true
	}
	for _, a := range e.Axes {
		if a.Name == name {
			return true
		}
	}
	return false
}

var refRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// refs lists the ${...} names in s.
func refs(s string) []string {
	var out []string
	for _, m := range refRE.FindAllStringSubmatch(s, -1) {
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

type cycleError struct {
	path  []string
	first string
}

func (c *cycleError) Error() string {
	return "dependency cycle: " + strings.Join(c.path, " -> ")
}

// topoSort orders stages so that each comes after the stages it needs,
// keeping file order otherwise; a cycle is an error naming it.
func topoSort(stages []*Stage, byName map[string]*Stage) ([]*Stage, *cycleError) {
	state := map[string]int{} // 0 new, 1 on the stack, 2 done
	var out []*Stage
	var stack []string
	var visit func(st *Stage) *cycleError
	visit = func(st *Stage) *cycleError {
		switch state[st.Name] {
		case 2:
			return nil
		case 1:
			i := len(stack) - 1
			for stack[i] != st.Name {
				i--
			}
			return &cycleError{path: append(append([]string(nil), stack[i:]...), st.Name), first: st.Name}
		}
		state[st.Name] = 1
		stack = append(stack, st.Name)
		for _, n := range st.Needs {
			if err := visit(byName[n]); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[st.Name] = 2
		out = append(out, st)
		return nil
	}
	for _, st := range stages {
		if err := visit(st); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type keyValue struct {
	k string
	v any
}

// flatten turns a set table into dotted keys, sorted: { data = { vocab =
// "x" } } and { "data.vocab" = "x" } both give data.vocab.
func flatten(m map[string]any) []keyValue {
	var out []keyValue
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out = append(out, keyValue{prefix + k, v})
		}
	}
	walk("", m)
	sort.Slice(out, func(i, j int) bool { return out[i].k < out[j].k })
	return out
}

// stringsIn lists the strings in a value (itself, or inside arrays).
func stringsIn(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, y := range x {
			out = append(out, stringsIn(y)...)
		}
		return out
	}
	return nil
}

// tomlValue writes v as a TOML value, as -set takes it.
func tomlValue(v any) (string, error) {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(map[string]any{"v": v}); err != nil {
		return "", err
	}
	text := strings.TrimSpace(b.String())
	if !strings.HasPrefix(text, "v = ") {
		return "", fmt.Errorf("value %v is not a plain TOML value", v)
	}
	return strings.TrimPrefix(text, "v = "), nil
}
