package causal

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/train"
)

// The registry gives a resume the task's Added keys (papers.go registers
// the tasks in the binary).
func init() { train.Register(SweepTask, FitTask) }

// The official rule (trainer.py:109-113) on hand-made values: compare
// se/trueSE with gn/trueGN, leave rho alone within ±0.05, else scale it by
// 0.98 (error ratio the larger) or 1.02 (the smaller).
func TestAdaptRhoOfficialRule(t *testing.T) {
	for _, c := range []struct {
		name                        string
		rho, se, gn, trueSE, trueGN float64
		want                        float64
	}{
		{"error ratio 1.2 > norm ratio 1.0 + 0.05: lower", 1, 12, 10, 10, 10, 0.98},
		{"error ratio 0.8 < norm ratio 1.0 - 0.05: raise", 2, 8, 10, 10, 10, 2.04},
		{"norm ratio 2.5 > error ratio 0.5: raise", 0.5, 5, 25, 10, 10, 0.51},
		{"within the band", 3, 10.4, 10, 10, 10, 3},
		{"at the upper edge (1.05 = 1 + 0.05): unchanged", 1, 4.2, 1, 4, 1, 1},
		{"at the lower edge (0.95 = 1 - 0.05): unchanged", 1, 3.8, 1, 4, 1, 1},
		{"ratios, not differences: se 30 of 20 against gn 4 of 4", 1, 30, 4, 20, 4, 0.98},
	} {
		assert.InDelta(t, c.want, AdaptRho(c.rho, c.se, c.gn, c.trueSE, c.trueGN), 1e-15, c.name)
	}
}

// real_se and real_gn (main_linear.py:114-115) on two hand-made tasks.
func TestTrueScoresHandMade(t *testing.T) {
	x := [][][]float64{
		{{1, 2}, {3, 4}}, // task 0: edge 0 -> 1 with weight 2
		{{1, 1}, {0, 2}}, // task 1: edge 0 -> 1 with weight -1
	}
	w := [][][]float64{{{0, 2}, {0, 0}}, {{0, -1}, {0, 0}}}
	se, gn, err := TrueScores(x, w)
	require.NoError(t, err)
	// residuals: task 0 rows (1, 0), (3, -2): 1 and 13, mean 7; task 1 rows
	// (1, 2), (0, 2): 5 and 4, mean 4.5; over tasks 5.75.
	assert.InDelta(t, 5.75, se, 1e-15)
	assert.InDelta(t, math.Sqrt(5), gn, 1e-15) // one slot, sqrt(2² + 1²)

	_, _, err = TrueScores(x, w[:1])
	require.ErrorContains(t, err, "1 true graphs for 2 tasks")
}

// rho_mode "official" needs true graphs: Fit refuses it without them, and a
// fit of CSV files refuses it at validation. An unknown mode is refused.
func TestOfficialRhoNeedsTrueGraphs(t *testing.T) {
	x := [][][]float64{{{1, 2}, {3, 4}, {0, 1}}}
	o := DefaultSolver()
	o.Iters, o.RhoMode = 5, RhoOfficial
	_, err := Fit(x, o, gotch.CPU)
	require.ErrorContains(t, err, `rho_mode "official" adapts rho from the true graphs`)
	require.ErrorContains(t, err, `use rho_mode "fixed"`)

	c := DefaultFit()
	c.Data = []string{"a.csv"}
	c.Solver.RhoMode = RhoOfficial
	require.ErrorContains(t, c.Validate(), "solver.rho_mode")

	o.RhoMode = "adaptive"
	require.ErrorContains(t, o.Validate(), `rho_mode must be "fixed" or "official"`)
}

// The rule is wired into the dual steps: with a true group norm far below
// the fit's, every dual step raises rho by 1.02, and with a true squared
// error far below the fit's every step lowers it by 0.98; fixed rho stays.
func TestOfficialRhoAdaptsAtDualSteps(t *testing.T) {
	pr, err := Generate(GenOptions{P: 4, S: 4, S0: 3, D: 2, K: 2, N: 30}, rand.New(rand.NewPCG(3, 3)))
	require.NoError(t, err)
	o := DefaultSolver()
	o.Iters, o.DualStart, o.DualInterval = 300, 100, 50 // dual steps after iterations 150, 200, 250, 300
	const steps = 4

	est, err := Fit(pr.X, o, gotch.CPU)
	require.NoError(t, err)
	assert.Equal(t, 1.0, est.Rho, "fixed")

	o.RhoMode = RhoOfficial
	tiny := [][][]float64{newFloat(4), newFloat(4)}
	tiny[0][0][1] = 1e-9 // true group norm 1e-9: the fit's norm ratio is huge
	o.Truth = tiny
	est, err = Fit(pr.X, o, gotch.CPU)
	require.NoError(t, err)
	assert.InDelta(t, math.Pow(1.02, steps), est.Rho, 1e-12)

	// Samples that the truth fits almost exactly (x1 = 50 x0 + small noise)
	// against a truth with a large weight: the fit's error ratio is huge.
	rng := rand.New(rand.NewPCG(5, 5))
	x := make([][][]float64, 1)
	for range 30 {
		a := rng.NormFloat64()
		x[0] = append(x[0], []float64{a, 50*a + 0.01*rng.NormFloat64(), rng.NormFloat64()})
	}
	big := [][][]float64{newFloat(3)}
	big[0][0][1] = 50
	o.Truth = big
	est, err = Fit(x, o, gotch.CPU)
	require.NoError(t, err)
	assert.InDelta(t, math.Pow(0.98, steps), est.Rho, 1e-12)
}

// The sweep passes each group's true graphs, so rho_mode "official" runs
// there and fits.jsonl records the final rho.
func TestSweepOfficialRho(t *testing.T) {
	c := DefaultSweep()
	c.Data = GenOptions{P: 5, S: 6, S0: 4, D: 3, K: 2}
	c.Samples, c.Groups, c.Replicates = []int{10}, []int{2}, 1
	c.Trainer.MaxSteps = 250
	c.Solver.DualStart, c.Solver.RhoMode = 100, RhoOfficial
	dir := t.TempDir()
	_, err := SweepTask.StartWith(c, train.RunOptions{Out: dir})
	require.NoError(t, err)
	recs := readRecords(t, filepath.Join(dir, "fits.jsonl"))
	require.Len(t, recs, 1)
	// three dual steps (after iterations 150, 200 and 250), each x0.98, x1 or x1.02
	possible := false
	for a := 0; a <= 3; a++ {
		for b := 0; a+b <= 3; b++ {
			possible = possible || math.Abs(recs[0].Rho-math.Pow(0.98, float64(a))*math.Pow(1.02, float64(b))) < 1e-12
		}
	}
	assert.True(t, possible, "final rho %v", recs[0].Rho)
	table, err := os.ReadFile(filepath.Join(dir, "shd.md"))
	require.NoError(t, err)
	assert.Contains(t, string(table), "adapted from the true graphs")
}

// A sweep run made before solver.rho_mode existed (its config.toml lacks
// the key) resumes: the absent key stands for "fixed".
func TestSweepResumesRunWithoutRhoMode(t *testing.T) {
	c := DefaultSweep()
	c.Data = GenOptions{P: 4, S: 4, S0: 3, D: 2, K: 2}
	c.Samples, c.Groups, c.Replicates = []int{10}, []int{2}, 1
	c.Trainer.MaxSteps = 20
	dir := t.TempDir()
	_, err := SweepTask.StartWith(c, train.RunOptions{Out: dir})
	require.NoError(t, err)
	path := filepath.Join(dir, "config.toml")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	old := regexp.MustCompile(`(?m)^\s*rho_mode\s*=.*\n`).ReplaceAll(b, nil)
	require.NotEqual(t, b, old)
	require.NoError(t, os.WriteFile(path, old, 0o644))
	_, err = SweepTask.StartWith(c, train.RunOptions{Out: dir, Resume: true})
	require.NoError(t, err)
}
