package exp

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reportFixture is an experiment of two stages, two conditions (one a
// baseline) and three seeds, with hand-made results.json files: some seeds
// missing, one metric absent from a run's results.
func reportFixture(t *testing.T) *Experiment {
	t.Helper()
	e, root := loadToy(t, `
[stage.pretrain]
config = "p.toml"
metrics = ["loss"]

[stage.tune]
config = "t.toml"
set = { pretrained = "${pretrain}" }
metrics = ["acc", "nested.deep.1"]

[[condition]]
name = "fixed"
label = "fixed 15%"
baseline = true

[[condition]]
name = "cosine"
label = "MRD | cosine"

[[table]]
name = "main"
title = "Main results"
columns = [
  { metric = "pretrain.loss", label = "held-out loss", digits = 3 },
  { metric = "tune.acc", label = "accuracy, %", scale = 100, digits = 2 },
]
`)
	write := func(id string, v map[string]any) { writeResults(t, root, id, v) }
	write("pretrain/fixed/seed-0", map[string]any{"loss": 6.418})
	write("pretrain/fixed/seed-1", map[string]any{"loss": 6.438})
	write("pretrain/fixed/seed-2", map[string]any{"loss": 6.495})
	write("pretrain/cosine/seed-0", map[string]any{"loss": 6.386})
	// pretrain/cosine/seed-1 is missing
	write("pretrain/cosine/seed-2", map[string]any{"loss": 6.354})
	write("tune/fixed/seed-0", map[string]any{"acc": 0.4660, "nested": map[string]any{"deep": []any{1, 7.5}}})
	write("tune/fixed/seed-1", map[string]any{"acc": 0.4865})
	write("tune/fixed/seed-2", map[string]any{"acc": 0.4933})
	write("tune/cosine/seed-2", map[string]any{"acc": 0.5047})
	// a killed run's half-written results count as missing
	d := filepath.Join(root, "tune", "cosine", "seed-0")
	require.NoError(t, os.MkdirAll(d, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(d, "results.json"), []byte(`{"acc": 0.`), 0o644))
	return e
}

// loadToy loads an experiment of seeds 0, 1 and 2 whose stages are body,
// with its runs under the returned root.
func loadToy(t *testing.T, body string) (*Experiment, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "runs")
	p := filepath.Join(dir, "toy.toml")
	require.NoError(t, os.WriteFile(p, []byte("root = \""+root+"\"\nseeds = [0, 1, 2]\n"+body), 0o644))
	e, err := Load(p)
	require.NoError(t, err)
	return e, root
}

// writeResults writes a run's results.json under root, as a finished run
// leaves it.
func writeResults(t *testing.T, root, id string, v map[string]any) {
	t.Helper()
	d := filepath.Join(root, filepath.FromSlash(id))
	require.NoError(t, os.MkdirAll(d, 0o755))
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(d, "results.json"), b, 0o644))
}

func TestReportTablesMeanStdAndMissingSeeds(t *testing.T) {
	e := reportFixture(t)
	tables, warnings := e.Tables()
	require.Len(t, tables, 4)
	assert.Equal(t, []string{"main", "pretrain.loss", "tune.acc", "tune.nested.deep.1"},
		[]string{tables[0].Name, tables[1].Name, tables[2].Name, tables[3].Name})

	main := tables[0]
	require.Len(t, main.Rows, 2)
	fixed, cosine := main.Rows[0], main.Rows[1]
	assert.Equal(t, "fixed 15%", fixed.Label)
	assert.True(t, fixed.Baseline)
	assert.Equal(t, "cosine", cosine.Condition)

	loss := fixed.Cells[0]
	assert.Equal(t, 3, loss.N)
	assert.InDelta(t, (6.418+6.438+6.495)/3, *loss.Mean, 1e-12)
	m := (6.418 + 6.438 + 6.495) / 3
	sd := math.Sqrt(((6.418-m)*(6.418-m) + (6.438-m)*(6.438-m) + (6.495-m)*(6.495-m)) / 2) // sample: n-1
	assert.InDelta(t, sd, *loss.Std, 1e-12)
	assert.InDelta(t, 0.039954, *loss.Std, 1e-6, "6.450 ± 0.040, as mlm/RESULTS.md has it")

	closs := cosine.Cells[0]
	assert.Equal(t, 2, closs.N, "the missing seed is left out")
	assert.Nil(t, closs.Values[1])
	assert.InDelta(t, (6.386+6.354)/2, *closs.Mean, 1e-12, "the mean of the present seeds, not (a+0+b)/3")
	assert.InDelta(t, math.Sqrt(2*0.016*0.016), *closs.Std, 1e-12)

	cacc := cosine.Cells[1]
	assert.Equal(t, 1, cacc.N, "a torn results.json and an absent run are both missing")
	assert.InDelta(t, 50.47, *cacc.Mean, 1e-9, "scaled to percent")
	assert.Nil(t, cacc.Std, "no standard deviation from one value")

	md := main.Markdown(len(e.Seeds))
	assert.Equal(t, `| condition | held-out loss | accuracy, % | n |
|---|---|---|---|
| fixed 15% (baseline) | 6.450 ± 0.040 (6.418, 6.438, 6.495) | 48.19 ± 1.42 (46.60, 48.65, 49.33) | 3 |
| MRD \| cosine | 6.370 ± 0.023 (6.386, —, 6.354) | 50.47 (—, —, 50.47) | 2, 1 |
`, md)

	// Default decimals: four significant digits of the column's largest value.
	assert.Contains(t, tables[2].Markdown(3), "| fixed 15% (baseline) | 0.4819 ± 0.0142 (0.4660, 0.4865, 0.4933) | 3 |")
	// Array indices in metric keys; absent keys are warnings and missing values.
	deep := tables[3].Rows[0].Cells[0]
	assert.Equal(t, 1, deep.N)
	assert.Equal(t, 7.5, *deep.Values[0])
	assert.NotEmpty(t, warnings)
	assert.Contains(t, strings.Join(warnings, "\n"), "results.json")

	// The whole report, the JSON summary and the plots (none: no metrics.jsonl).
	rep, err := e.WriteReport("", true)
	require.NoError(t, err)
	assert.Contains(t, rep.Markdown, "## Main results\n\n<!-- exp:main -->\n| condition |")
	assert.Contains(t, rep.Markdown, "— marks a missing run, left out of the mean")
	var sum SummaryJSON
	b, err := os.ReadFile(filepath.Join(e.ReportDir, "summary.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &sum))
	assert.Equal(t, []int64{0, 1, 2}, sum.Seeds)
	assert.Nil(t, sum.Tables[0].Rows[1].Cells[0].Values[1], "missing is null in JSON, not 0")
	assert.Len(t, sum.Runs, 12)
}

func TestReportPlotsOverlayCurvesWithBands(t *testing.T) {
	e := reportFixture(t)
	for _, r := range e.Runs {
		if r.Stage.Name != "pretrain" || r.ID == "pretrain/cosine/seed-1" {
			continue
		}
		var b strings.Builder
		for step := 10; step <= 50; step += 10 {
			row := map[string]any{"step": step, "epoch": 0.1, "loss": 5 + float64(*r.Seed)/10 - float64(step)/100}
			if step%20 == 0 {
				row["heldout"] = 6.0
			}
			j, _ := json.Marshal(row)
			b.Write(append(j, '\n'))
		}
		b.WriteString(`{"step": 20, "loss": 4.0}` + "\n") // logged again after a resume: the last one counts
		b.WriteString(`{"step": 60, "lo`)                 // torn by a kill
		require.NoError(t, os.WriteFile(filepath.Join(r.Dir, "metrics.jsonl"), []byte(b.String()), 0o644))
	}
	files, err := e.Plots(filepath.Join(t.TempDir(), "plots"))
	require.NoError(t, err)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		st, err := os.Stat(f)
		require.NoError(t, err)
		assert.Greater(t, st.Size(), int64(1000))
	}
	assert.Equal(t, []string{"pretrain.heldout.png", "pretrain.loss.png"}, names)

	m, err := readMetrics(filepath.Join(e.Root, "pretrain", "fixed", "seed-0"))
	require.NoError(t, err)
	assert.Equal(t, 4.0, m["loss"][20])
	c, ok := band("x", []map[float64]float64{{1: 1, 2: 4}, {1: 3}}, "minmax")
	require.True(t, ok)
	assert.Equal(t, []float64{1, 2}, c.steps)
	assert.Equal(t, []float64{2, 4}, c.mean)
	assert.Equal(t, []float64{1, 4}, c.low)
	assert.Equal(t, []float64{3, 4}, c.high)
	c, _ = band("x", []map[float64]float64{{1: 1}, {1: 3}}, "std")
	assert.InDelta(t, 2-math.Sqrt2, c.low[0], 1e-12)
}

func TestSpliceFillsMarkedRegions(t *testing.T) {
	e := reportFixture(t)
	tables, _ := e.Tables()
	doc := "# Results\n\nSome text.\n\n<!-- exp:main -->\nold numbers, copied by hand\n<!-- /exp -->\n\nMore text.\n<!-- exp:tune.acc --><!-- /exp -->\n"
	out, names, err := Splice(doc, tables, 3, "grid")
	require.NoError(t, err)
	assert.Equal(t, []string{"main", "tune.acc"}, names)
	assert.NotContains(t, out, "old numbers")
	assert.Contains(t, out, "Some text.\n\n<!-- exp:main -->\n| condition | held-out loss | accuracy, % | n |\n")
	assert.Contains(t, out, "| 3 |\n| MRD \\| cosine | 6.370 ± 0.023 (6.386, —, 6.354) | 50.47 (—, —, 50.47) | 2, 1 |\n<!-- /exp -->\n\nMore text.\n<!-- exp:tune.acc -->\n| condition | acc | n |")
	again, _, err := Splice(out, tables, 3, "grid")
	require.NoError(t, err)
	assert.Equal(t, out, again, "splicing twice changes nothing")

	mixed := "<!-- exp:other/main -->\nkept\n<!-- /exp -->\n<!-- exp:grid/main -->\nold\n<!-- /exp -->\n"
	out, names, err = Splice(mixed, tables, 3, "grid")
	require.NoError(t, err)
	assert.Equal(t, []string{"main"}, names, "another experiment's table is not this one's to fill")
	assert.Contains(t, out, "<!-- exp:other/main -->\nkept\n<!-- /exp -->\n<!-- exp:grid/main -->\n| condition |")
	_, _, err = Splice("<!-- exp:other/main -->\nno end\n", tables, 3, "grid")
	assert.ErrorContains(t, err, "has no <!-- /exp -->", "a broken marker is an error whoever owns it")

	_, _, err = Splice("a\n<!-- exp:nope -->\n<!-- /exp -->\n", tables, 3, "grid")
	assert.ErrorContains(t, err, `line 2: no table "nope"`)
	_, _, err = Splice("<!-- exp:main -->\nno end\n", tables, 3, "grid")
	assert.ErrorContains(t, err, "has no <!-- /exp -->")
	_, _, err = Splice("x\n<!-- /exp -->\n", tables, 3, "grid")
	assert.ErrorContains(t, err, "line 2: <!-- /exp --> without an opening")
}

// TestLookupAlternatives: a column may name a measure that two tasks call
// differently; the first key a run has is taken, and a run with none of
// them is reported as missing the whole list.
func TestLookupAlternatives(t *testing.T) {
	res := map[string]any{"top1": 0.5, "nested": map[string]any{"acc": 0.25}}
	v, err := lookup(res, "test_accuracy|top1")
	require.NoError(t, err)
	assert.Equal(t, 0.5, v)
	v, err = lookup(res, "nested.acc|top1")
	require.NoError(t, err)
	assert.Equal(t, 0.25, v)
	_, err = lookup(res, "a|b")
	require.ErrorContains(t, err, `none of ["a" "b"]`)
}

// TestLookupKeysWithDots: vampnet writes held-out metrics per masking level
// as "nll_r0.25" inside "heldout"; the dotted column name must find them
// (it once split "r0.25" into "r0" and "25" and reported every run missing).
func TestLookupKeysWithDots(t *testing.T) {
	res := map[string]any{
		"heldout": map[string]any{"nll_r0.25": 4.5, "nll_r0": 9.0},
		"a.b":     1.0,
		"a":       map[string]any{"b": 2.0, "c": 3.0},
		"list":    []any{map[string]any{"x.y": 7.0}},
	}
	for key, want := range map[string]float64{
		"heldout.nll_r0.25": 4.5, "heldout.nll_r0": 9.0,
		"a.b":        1.0, // the longest key first
		"a.c":        3.0, // then the nested one
		"list.0.x.y": 7.0,
	} {
		v, err := lookup(res, key)
		require.NoError(t, err, key)
		assert.Equal(t, want, v, key)
	}
	_, err := lookup(res, "heldout.nll_r0.5")
	assert.ErrorContains(t, err, `no "heldout.nll_r0.5"`)
	_, err = lookup(res, "list.3.x")
	assert.ErrorContains(t, err, `"3" is not an index of a 1-element array`)
}

// A stage that does not vary over the seed (a shared codec, one LLM) has
// one run: its cells hold that one value, not a seed list of one value and
// two "missing" ones.
func TestReportStageWithoutSeeds(t *testing.T) {
	e, root := loadToy(t, `
[stage.codec]
config = "c.toml"
over = []
metrics = ["mel"]

[stage.coarse]
config = "m.toml"
set = { codec = "${codec}" }
metrics = ["nll"]
`)
	write := func(id string, v map[string]any) { writeResults(t, root, id, v) }
	write("codec", map[string]any{"mel": 2.544})
	write("coarse/seed-0", map[string]any{"nll": 2.5})
	write("coarse/seed-2", map[string]any{"nll": 2.7})
	tables, _ := e.Tables()
	require.Len(t, tables, 2)
	assert.Equal(t, "| run | mel | n |\n|---|---|---|\n| codec | 2.544 | 1 |\n", tables[0].Markdown(3))
	assert.Len(t, tables[0].Rows[0].Cells[0].Values, 1)
	assert.Contains(t, tables[1].Markdown(3), "2.600 ± 0.141 (2.500, —, 2.700) | 2 |", "a seeded stage keeps its seed list")
}
