package exp

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Cell is one metric of one row: a value per seed (nil where the run or
// the metric is missing), and the mean and sample standard deviation of
// the values present.
type Cell struct {
	Metric string     `json:"metric"`
	Values []*float64 `json:"values"` // per seed, in Experiment.Seeds order; nil: missing
	N      int        `json:"n"`      // values present
	Mean   *float64   `json:"mean"`   // nil when none is present
	Std    *float64   `json:"std"`    // sample (n-1) standard deviation; nil when n < 2
	Absent bool       `json:"absent"` // the stage does not run this row at all
}

// Row is a table row: a condition (and axis values) over its seeds.
type Row struct {
	Label     string            `json:"label"`
	Condition string            `json:"condition,omitempty"`
	Baseline  bool              `json:"baseline,omitempty"`
	Axes      map[string]string `json:"axes,omitempty"`
	Cells     []Cell            `json:"cells"`
}

// Table is a computed results table.
type Table struct {
	Name    string        `json:"name"`
	Title   string        `json:"title,omitempty"`
	Columns []*ColumnSpec `json:"columns"`
	Rows    []Row         `json:"rows"`
}

// Tables reads every run's results.json and computes the experiment's
// tables: the declared ones, then one per stage metric.
func (e *Experiment) Tables() ([]*Table, []string) {
	results := map[*Run]map[string]any{}
	var warnings []string
	for _, r := range e.Runs {
		b, err := os.ReadFile(filepath.Join(r.Dir, "results.json"))
		if err != nil {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v (counted as missing)", filepath.Join(r.Dir, "results.json"), err))
			continue
		}
		results[r] = m
	}
	var out []*Table
	for _, ts := range e.TableSpecs {
		t, w := e.table(ts, results)
		out = append(out, t)
		warnings = append(warnings, w...)
	}
	return out, warnings
}

type rowInfo struct {
	key  string
	run  *Run // any run of the row, for its label
	cond int
	axes []int
}

func (e *Experiment) table(ts *TableSpec, results map[*Run]map[string]any) (*Table, []string) {
	t := &Table{Name: ts.Name, Title: ts.Title, Columns: ts.Columns}
	// Rows: the union of the columns' stages' rows, in condition then axis
	// order.
	var rows []rowInfo
	seen := map[string]bool{}
	for _, c := range ts.Columns {
		st := e.stageByName(strings.SplitN(c.Metric, ".", 2)[0])
		for _, r := range st.Runs {
			k := r.rowKey()
			if seen[k] {
				continue
			}
			seen[k] = true
			ri := rowInfo{key: k, run: r, cond: -1, axes: r.Axes}
			if r.Cond != nil {
				ri.cond = r.Cond.Index
			}
			rows = append(rows, ri)
		}
	}
	less := func(a, b rowInfo) bool {
		if a.cond != b.cond {
			return a.cond < b.cond
		}
		for i := range a.axes {
			if a.axes[i] != b.axes[i] {
				return a.axes[i] < b.axes[i]
			}
		}
		return false
	}
	for i := 1; i < len(rows); i++ { // insertion sort: stable and small
		for j := i; j > 0 && less(rows[j], rows[j-1]); j-- {
			rows[j], rows[j-1] = rows[j-1], rows[j]
		}
	}
	var warnings []string
	nSeeds := max(len(e.Seeds), 1)
	for _, ri := range rows {
		row := Row{Label: ri.run.Label(e)}
		if ri.run.Cond != nil {
			row.Condition, row.Baseline = ri.run.Cond.Name, ri.run.Cond.Baseline
		}
		for i, a := range e.Axes {
			if ri.axes[i] >= 0 {
				if row.Axes == nil {
					row.Axes = map[string]string{}
				}
				row.Axes[a.Name] = a.Labels[ri.axes[i]]
			}
		}
		if row.Label == "" {
			row.Label = ri.run.Stage.Name
		}
		for _, c := range ts.Columns {
			name, key, _ := strings.Cut(c.Metric, ".")
			st := e.stageByName(name)
			// A stage that does not vary over the seed (over = [] or no
			// "seed") has one run per row: one value, not a seed list with
			// the others shown as missing.
			n := nSeeds
			if !st.Over["seed"] {
				n = 1
			}
			cell := Cell{Metric: c.Metric, Values: make([]*float64, n)}
			found := false
			for _, r := range st.Runs {
				if r.rowKey() != ri.key {
					continue
				}
				found = true
				slot := min(max(r.SeedIx, 0), n-1)
				if res, ok := results[r]; ok {
					v, err := lookup(res, key)
					if err != nil {
						warnings = append(warnings, fmt.Sprintf("%s: %v", filepath.Join(r.Dir, "results.json"), err))
						continue
					}
					v *= c.Scale
					cell.Values[slot] = &v
				}
			}
			if !found {
				cell.Absent = true
			}
			cell.summarise()
			row.Cells = append(row.Cells, cell)
		}
		t.Rows = append(t.Rows, row)
	}
	return t, warnings
}

// summarise computes n, the mean and the sample standard deviation of the
// values present: a missing seed is left out, never counted as zero.
func (c *Cell) summarise() {
	var sum float64
	c.N = 0
	for _, v := range c.Values {
		if v != nil {
			sum += *v
			c.N++
		}
	}
	c.Mean, c.Std = nil, nil
	if c.N == 0 {
		return
	}
	mean := sum / float64(c.N)
	c.Mean = &mean
	if c.N < 2 {
		return
	}
	var ss float64
	for _, v := range c.Values {
		if v != nil {
			ss += (*v - mean) * (*v - mean)
		}
	}
	std := math.Sqrt(ss / float64(c.N-1))
	c.Std = &std
}

// lookup finds a dotted key in decoded JSON; numeric parts index arrays.
// A key may itself hold dots ("nll_r0.25", a masking level): where a map
// has the joined parts as one key, the longest match is taken first, so
// "heldout.nll_r0.25" finds {"heldout": {"nll_r0.25": ...}}.
// A key may list alternatives, "top1|test_accuracy": the first one present
// is taken, so that one column can compare tasks that name the same
// measure differently (image.classify's top1, mae.finetune's
// test_accuracy).
func lookup(m map[string]any, key string) (float64, error) {
	if alts := strings.Split(key, "|"); len(alts) > 1 {
		for _, k := range alts {
			if v, err := lookup(m, k); err == nil {
				return v, nil
			}
		}
		return 0, fmt.Errorf("none of %q", alts)
	}
	var why error
	var walk func(cur any, parts []string) (any, bool)
	walk = func(cur any, parts []string) (any, bool) {
		if len(parts) == 0 {
			return cur, true
		}
		switch x := cur.(type) {
		case map[string]any:
			for j := len(parts); j >= 1; j-- {
				if v, ok := x[strings.Join(parts[:j], ".")]; ok {
					if got, ok := walk(v, parts[j:]); ok {
						return got, true
					}
				}
			}
		case []any:
			i, err := strconv.Atoi(parts[0])
			if err != nil || i < 0 || i >= len(x) {
				why = fmt.Errorf("no %q (%q is not an index of a %d-element array)", key, parts[0], len(x))
				return nil, false
			}
			return walk(x[i], parts[1:])
		}
		return nil, false
	}
	cur, ok := walk(m, strings.Split(key, "."))
	if !ok {
		if why != nil {
			return 0, why
		}
		return 0, fmt.Errorf("no %q", key)
	}
	switch v := cur.(type) {
	case float64:
		return v, nil
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%q is not a number", key)
}

// Missing is how a missing value is shown.
const Missing = "—"

// decimals is how many decimals a column shows: its digits, or enough for
// four significant digits of its largest value.
func (t *Table) decimals(col int) int {
	c := t.Columns[col]
	if c.Digits != nil {
		return max(*c.Digits, 0)
	}
	big := 0.0
	for _, r := range t.Rows {
		for _, v := range r.Cells[col].Values {
			if v != nil {
				big = math.Max(big, math.Abs(*v))
			}
		}
	}
	if big == 0 {
		return 3
	}
	return min(max(3-int(math.Floor(math.Log10(big))), 0), 8)
}

func format(v float64, decimals int) string {
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// text is a cell as Markdown: "mean ± std (v1, v2, —)", n shown when a
// seed is missing.
func (c Cell) text(decimals int) string {
	if c.Absent {
		return ""
	}
	if c.N == 0 {
		return Missing
	}
	if len(c.Values) == 1 {
		return format(*c.Mean, decimals)
	}
	var b strings.Builder
	b.WriteString(format(*c.Mean, decimals))
	if c.Std != nil {
		b.WriteString(" ± " + format(*c.Std, decimals))
	}
	b.WriteString(" (")
	for i, v := range c.Values {
		if i > 0 {
			b.WriteString(", ")
		}
		if v == nil {
			b.WriteString(Missing)
		} else {
			b.WriteString(format(*v, decimals))
		}
	}
	b.WriteString(")")
	return b.String()
}

// Markdown is the table alone, as spliced into a RESULTS.md.
func (t *Table) Markdown(seeds int) string {
	var b strings.Builder
	first := "run"
	for _, r := range t.Rows {
		if r.Condition != "" {
			first = "condition"
			break
		}
		if len(r.Axes) > 0 {
			var names []string
			for k := range r.Axes {
				names = append(names, k)
			}
			sort.Strings(names)
			first = strings.Join(names, ", ")
		}
	}
	b.WriteString("| " + escape(first) + " |")
	for _, c := range t.Columns {
		b.WriteString(" " + escape(c.Label) + " |")
	}
	if seeds > 1 {
		b.WriteString(" n |")
	}
	b.WriteString("\n|---|")
	for range t.Columns {
		b.WriteString("---|")
	}
	if seeds > 1 {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	dec := make([]int, len(t.Columns))
	for i := range t.Columns {
		dec[i] = t.decimals(i)
	}
	for _, r := range t.Rows {
		label := escape(r.Label)
		if r.Baseline {
			label += " (baseline)"
		}
		b.WriteString("| " + label + " |")
		var ns []string
		for i, c := range r.Cells {
			b.WriteString(" " + c.text(dec[i]) + " |")
			if !c.Absent {
				ns = appendUnique(ns, strconv.Itoa(c.N))
			}
		}
		if seeds > 1 {
			b.WriteString(" " + strings.Join(ns, ", ") + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Markdown is the whole report: every table under a heading, with a line
// saying how to read them.
func (e *Experiment) Markdown(tables []*Table, plots []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", e.Name)
	if len(e.Seeds) > 1 {
		seeds := make([]string, len(e.Seeds))
		for i, s := range e.Seeds {
			seeds[i] = strconv.FormatInt(s, 10)
		}
		fmt.Fprintf(&b, "Mean ± sample standard deviation over seeds %s, then each seed's value in that order; "+
			"%s marks a missing run, left out of the mean (n: the seeds present).\n\n", strings.Join(seeds, ", "), Missing)
	}
	for _, t := range tables {
		title := t.Title
		if title == "" {
			title = t.Name
		}
		fmt.Fprintf(&b, "## %s\n\n<!-- exp:%s -->\n%s<!-- /exp -->\n\n", title, t.Name, t.Markdown(len(e.Seeds)))
	}
	if len(plots) > 0 {
		b.WriteString("## Plots\n\n")
		for _, p := range plots {
			rel, err := filepath.Rel(e.ReportDir, p)
			if err != nil {
				rel = p
			}
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(filepath.Base(p), ".png"), filepath.ToSlash(rel))
		}
	}
	return b.String()
}

// SummaryJSON is report/summary.json.
type SummaryJSON struct {
	Name   string      `json:"name"`
	Seeds  []int64     `json:"seeds"`
	Tables []*Table    `json:"tables"`
	Runs   []RunStatus `json:"runs"`
	Plots  []string    `json:"plots"`
}

// RunStatus is a run in summary.json.
type RunStatus struct {
	ID      string         `json:"id"`
	Dir     string         `json:"dir"`
	Done    bool           `json:"done"`
	Results map[string]any `json:"results,omitempty"`
}

func (e *Experiment) summaryJSON(tables []*Table, plots []string) SummaryJSON {
	s := SummaryJSON{Name: e.Name, Seeds: e.Seeds, Tables: tables, Plots: plots}
	for _, r := range e.Runs {
		rs := RunStatus{ID: r.ID, Dir: r.Dir}
		if b, err := os.ReadFile(filepath.Join(r.Dir, "results.json")); err == nil && json.Unmarshal(b, &rs.Results) == nil {
			rs.Done = true
		}
		s.Runs = append(s.Runs, rs)
	}
	return s
}

// Report is what WriteReport wrote.
type Report struct {
	Markdown string
	Tables   []*Table
	Files    []string
	Warnings []string
}

// WriteReport computes the tables, draws the plots and writes
// report.md, summary.json and plots/*.png to the report folder (dir, or
// the experiment's).
func (e *Experiment) WriteReport(dir string, plots bool) (*Report, error) {
	if dir == "" {
		dir = e.ReportDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tables, warnings := e.Tables()
	var pngs []string
	if plots {
		var err error
		pngs, err = e.Plots(filepath.Join(dir, "plots"))
		if err != nil {
			return nil, err
		}
	}
	saved := e.ReportDir
	e.ReportDir = dir
	md := e.Markdown(tables, pngs)
	e.ReportDir = saved
	rep := &Report{Markdown: md, Tables: tables, Warnings: warnings}
	mdPath := filepath.Join(dir, "report.md")
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return nil, err
	}
	js, _ := json.MarshalIndent(e.summaryJSON(tables, pngs), "", "  ")
	jsPath := filepath.Join(dir, "summary.json")
	if err := os.WriteFile(jsPath, append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	rep.Files = append([]string{mdPath, jsPath}, pngs...)
	return rep, nil
}

var markerRE = regexp.MustCompile(`<!--\s*exp:([A-Za-z0-9_./-]+)\s*-->|<!--\s*/exp\s*-->`)

// Splice replaces what stands between <!-- exp:NAME --> and <!-- /exp -->
// in a Markdown text with table NAME, keeping the markers, and returns the
// names it filled. An unknown name or a marker without its end is an error.
//
// A document that gathers several experiments' tables (the README) names
// them EXPERIMENT/TABLE: a marker for experiment is filled, another
// experiment's is left as it stands, so each experiment splices its own.
func Splice(md string, tables []*Table, seeds int, experiment string) (string, []string, error) {
	byName := map[string]*Table{}
	for _, t := range tables {
		byName[t.Name] = t
	}
	var b strings.Builder
	var done []string
	locs := markerRE.FindAllStringSubmatchIndex(md, -1)
	pos := 0
	line := func(off int) int { return strings.Count(md[:off], "\n") + 1 }
	for i := 0; i < len(locs); i++ {
		m := locs[i]
		if m[2] < 0 {
			return "", nil, fmt.Errorf("line %d: <!-- /exp --> without an opening <!-- exp:NAME -->", line(m[0]))
		}
		name := md[m[2]:m[3]]
		if i+1 >= len(locs) || locs[i+1][2] >= 0 {
			return "", nil, fmt.Errorf("line %d: <!-- exp:%s --> has no <!-- /exp --> after it", line(m[0]), name)
		}
		if owner, table, qualified := strings.Cut(name, "/"); qualified {
			if owner != experiment {
				i++ // another experiment's table: keep it as it stands
				continue
			}
			name = table
		}
		t, ok := byName[name]
		if !ok {
			names := make([]string, 0, len(tables))
			for _, t := range tables {
				names = append(names, t.Name)
			}
			return "", nil, fmt.Errorf("line %d: no table %q; the tables are %s", line(m[0]), name, strings.Join(names, ", "))
		}
		end := locs[i+1]
		b.WriteString(md[pos:m[1]])
		b.WriteString("\n")
		b.WriteString(t.Markdown(seeds))
		b.WriteString(md[end[0]:end[1]])
		pos = end[1]
		done = append(done, name)
		i++
	}
	b.WriteString(md[pos:])
	return b.String(), done, nil
}
