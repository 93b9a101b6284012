package exp

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// point is a grid point: a condition, a value per [[axis]] and a seed; -1
// where unset.
type point struct {
	cond int
	axes []int
	seed int
}

// project keeps the coordinates a stage varies over.
func (e *Experiment) project(p point, st *Stage) point {
	q := point{cond: -1, axes: make([]int, len(e.Axes)), seed: -1}
	if st.Over["condition"] {
		q.cond = p.cond
	}
	for i, a := range e.Axes {
		q.axes[i] = -1
		if st.Over[a.Name] {
			q.axes[i] = p.axes[i]
		}
	}
	if st.Over["seed"] && len(e.Seeds) > 0 {
		q.seed = p.seed
	}
	return q
}

func (p point) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", p.cond)
	for _, a := range p.axes {
		fmt.Fprintf(&b, ",%d", a)
	}
	fmt.Fprintf(&b, ";%d", p.seed)
	return b.String()
}

// points lists a stage's grid points, seed outermost, then condition, then
// the axes in order.
func (e *Experiment) points(st *Stage) []point {
	seeds := []int{-1}
	if st.Over["seed"] && len(e.Seeds) > 0 {
		seeds = seeds[:0]
		for i := range e.Seeds {
			seeds = append(seeds, i)
		}
	}
	conds := []int{-1}
	if st.Over["condition"] {
		conds = conds[:0]
		for _, c := range e.conditionsOf(st) {
			conds = append(conds, c.Index)
		}
	}
	combos := [][]int{make([]int, len(e.Axes))}
	for i, a := range e.Axes {
		var next [][]int
		for _, c := range combos {
			if !st.Over[a.Name] {
				c = append([]int(nil), c...)
				c[i] = -1
				next = append(next, c)
				continue
			}
			for v := range a.Values {
				d := append([]int(nil), c...)
				d[i] = v
				next = append(next, d)
			}
		}
		combos = next
	}
	var out []point
	for _, s := range seeds {
		for _, c := range conds {
			for _, ax := range combos {
				out = append(out, point{cond: c, axes: ax, seed: s})
			}
		}
	}
	return out
}

// expand makes every stage's runs, substituting ${...} and linking each run
// to the runs it depends on.
func (e *Experiment) expand() error {
	at := map[string]map[string]*Run{} // stage -> point key -> run
	for _, st := range e.Stages {
		at[st.Name] = map[string]*Run{}
		for _, p := range e.points(st) {
			r := &Run{Stage: st, Axes: p.axes, SeedIx: p.seed}
			parts := []string{st.Name}
			vars := map[string]string{"name": e.Name, "root": e.Root}
			if p.cond >= 0 {
				r.Cond = e.Conditions[p.cond]
				parts = append(parts, r.Cond.Name)
				vars["condition"] = r.Cond.Name
			}
			for i, a := range e.Axes {
				if p.axes[i] >= 0 {
					parts = append(parts, a.Name+"-"+a.dirs[p.axes[i]])
					vars[a.Name] = a.Labels[p.axes[i]]
				}
			}
			if p.seed >= 0 {
				s := e.Seeds[p.seed]
				r.Seed = &s
				parts = append(parts, fmt.Sprintf("seed-%d", s))
				vars["seed"] = strconv.FormatInt(s, 10)
			}
			r.ID = strings.Join(parts, "/")
			r.Dir = filepath.Join(append([]string{e.Root}, parts...)...)
			deps := map[*Run]bool{}
			subst := func(text, where string, line int) (string, error) {
				var err error
				out := refRE.ReplaceAllStringFunc(text, func(m string) string {
					name := strings.TrimSpace(m[2 : len(m)-1])
					if v, ok := vars[name]; ok {
						return v
					}
					if dep := e.stageByName(name); dep != nil {
						for a := range dep.Over {
							if !st.Over[a] {
								if err == nil {
									err = e.errAt(line, "stage %s: %s refers to ${%s}, which varies over %s while %s does not: which of its runs is meant is ambiguous (use after = [%q] to wait for all of them)", st.Name, where, name, a, st.Name, name)
								}
								return m
							}
						}
						d := at[name][e.project(p, dep).key()]
						if d == nil {
							if err == nil {
								err = e.errAt(line, "run %s: %s refers to ${%s}, but stage %s has no run for %s", r.ID, where, name, name, r.ID)
							}
							return m
						}
						deps[d] = true
						return d.Dir
					}
					if err == nil {
						if e.isVar(name) {
							err = e.errAt(line, "stage %s: %s uses ${%s}, but the stage does not vary over %s", st.Name, where, name, name)
						} else {
							err = e.errAt(line, "stage %s: %s refers to ${%s}, which is not a stage or a variable", st.Name, where, name)
						}
					}
					return m
				})
				return out, err
			}
			substValue := func(v any, where string, line int) (string, error) {
				v, err := substAny(v, func(s string) (string, error) { return subst(s, where, line) })
				if err != nil {
					return "", err
				}
				return tomlValue(v)
			}
			cfg := st.Spec.Config
			cfgLine := e.stageLine(st.Name, "config")
			if r.Cond != nil && r.Cond.config(st.Name) != "" {
				cfg, cfgLine = r.Cond.config(st.Name), e.line("condition", "config", r.Cond.Name)
			}
			var err error
			if r.Config, err = subst(cfg, "config", cfgLine); err != nil {
				return err
			}
			for _, kv := range flatten(st.Spec.Set) {
				text, err := substValue(kv.v, "set."+kv.k, e.stageLine(st.Name, "set"))
				if err != nil {
					return err
				}
				r.Sets = append(r.Sets, kv.k+"="+text)
			}
			if r.Cond != nil {
				for _, kv := range flatten(r.Cond.Spec.Set) {
					text, err := substValue(kv.v, "condition "+r.Cond.Name+"'s set."+kv.k, e.line("condition", "set", r.Cond.Name))
					if err != nil {
						return err
					}
					r.Sets = append(r.Sets, kv.k+"="+text)
				}
			}
			for i, a := range e.Axes {
				if p.axes[i] >= 0 && a.Sets(st.Name) {
					r.Sets = append(r.Sets, a.Key+"="+a.Texts[p.axes[i]])
				}
			}
			if r.Seed != nil {
				r.Sets = append(r.Sets, fmt.Sprintf("%s=%d", e.SeedKey, *r.Seed))
			}
			for _, name := range st.Spec.After {
				dep := e.stageByName(name)
				for _, d := range dep.Runs {
					if e.agree(p, d, st, dep) {
						deps[d] = true
					}
				}
			}
			for d := range deps {
				r.Deps = append(r.Deps, d)
			}
			sort.Slice(r.Deps, func(i, j int) bool { return r.Deps[i].ID < r.Deps[j].ID })
			st.Runs = append(st.Runs, r)
			at[st.Name][p.key()] = r
		}
	}
	// Scheduling order: seed, condition, axes, stage.
	for _, st := range e.Stages {
		e.Runs = append(e.Runs, st.Runs...)
	}
	sort.SliceStable(e.Runs, func(i, j int) bool {
		a, b := e.Runs[i], e.Runs[j]
		// Runs over every seed (a stage not varying over seed) come after
		// the seeds' runs, unless those need them.
		sa, sb := a.SeedIx, b.SeedIx
		if sa < 0 {
			sa = len(e.Seeds)
		}
		if sb < 0 {
			sb = len(e.Seeds)
		}
		if sa != sb {
			return sa < sb
		}
		ca, cb := -1, -1
		if a.Cond != nil {
			ca = a.Cond.Index
		}
		if b.Cond != nil {
			cb = b.Cond.Index
		}
		if ca != cb {
			return ca < cb
		}
		for k := range a.Axes {
			if a.Axes[k] != b.Axes[k] {
				return a.Axes[k] < b.Axes[k]
			}
		}
		return a.Stage.Index < b.Stage.Index
	})
	// A run must come after its dependencies; a stable topological pass
	// keeps that whatever the sort above did.
	placed := map[*Run]bool{}
	var ordered []*Run
	var place func(r *Run)
	place = func(r *Run) {
		if placed[r] {
			return
		}
		placed[r] = true
		for _, d := range r.Deps {
			place(d)
		}
		ordered = append(ordered, r)
	}
	for _, r := range e.Runs {
		place(r)
	}
	e.Runs = ordered
	dirs := map[string]string{}
	for _, r := range e.Runs {
		if other, ok := dirs[r.Dir]; ok {
			return fmt.Errorf("%s: runs %s and %s would share the directory %s", e.Path, other, r.ID, r.Dir)
		}
		dirs[r.Dir] = r.ID
	}
	return nil
}

// agree says whether run d of stage dep matches point p of stage st on
// the axes both vary over.
func (e *Experiment) agree(p point, d *Run, st, dep *Stage) bool {
	if st.Over["condition"] && dep.Over["condition"] && (d.Cond == nil || d.Cond.Index != p.cond) {
		return false
	}
	for i, a := range e.Axes {
		if st.Over[a.Name] && dep.Over[a.Name] && d.Axes[i] != p.axes[i] {
			return false
		}
	}
	if st.Over["seed"] && dep.Over["seed"] && d.SeedIx != p.seed {
		return false
	}
	return true
}

func (e *Experiment) stageByName(name string) *Stage {
	for _, st := range e.Stages {
		if st.Name == name {
			return st
		}
	}
	return nil
}

// substAny substitutes inside strings, and strings inside arrays.
func substAny(v any, fn func(string) (string, error)) (any, error) {
	switch x := v.(type) {
	case string:
		return fn(x)
	case []any:
		out := make([]any, len(x))
		for i, y := range x {
			var err error
			if out[i], err = substAny(y, fn); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// Label is how tables and plots name the run's row: its condition's label
// and its axis values.
func (r *Run) Label(e *Experiment) string {
	var parts []string
	if r.Cond != nil {
		parts = append(parts, r.Cond.Label)
	}
	for i, a := range e.Axes {
		if r.Axes[i] >= 0 {
			parts = append(parts, a.Name+"="+a.Labels[r.Axes[i]])
		}
	}
	return strings.Join(parts, ", ")
}

// rowKey identifies a run's row (its point without the seed).
func (r *Run) rowKey() string {
	p := point{cond: -1, axes: r.Axes}
	if r.Cond != nil {
		p.cond = r.Cond.Index
	}
	return p.key()
}

// Select keeps the runs whose IDs match one of the patterns (path.Match
// globs: "*" stops at a "/", so "pretrain/ptw*/*" is every seed of the
// conditions starting with ptw in the pretrain stage) and the runs they
// depend on, transitively, in scheduling order. A run cannot start before
// the runs it reads are done, so leaving those out would only block it.
// A pattern that matches no run is an error that lists the run IDs' shape,
// so a typo does not silently run nothing.
func (e *Experiment) Select(patterns []string) ([]*Run, error) {
	keep := map[*Run]bool{}
	var add func(r *Run)
	add = func(r *Run) {
		if keep[r] {
			return
		}
		keep[r] = true
		for _, d := range r.Deps {
			add(d)
		}
	}
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("run pattern %q: %w", p, err)
		}
		n := 0
		for _, r := range e.Runs {
			if ok, _ := path.Match(p, r.ID); ok {
				add(r)
				n++
			}
		}
		if n == 0 {
			example := ""
			if len(e.Runs) > 0 {
				example = fmt.Sprintf(" (run IDs look like %q)", e.Runs[len(e.Runs)-1].ID)
			}
			return nil, fmt.Errorf("run pattern %q matches none of %s's %d runs%s", p, e.Name, len(e.Runs), example)
		}
	}
	var out []*Run
	for _, r := range e.Runs {
		if keep[r] {
			out = append(out, r)
		}
	}
	return out, nil
}
