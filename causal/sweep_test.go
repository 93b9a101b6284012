package causal

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/train"
)

// A sweep records both scorings of every task estimate in fits.jsonl,
// consistently: the two agree on acyclic estimates, and the official one
// never credits a cyclic estimate with the order. A fits.jsonl line from
// before both were kept is refitted on resume, not read as official.
func TestSweepRecordsBothScorings(t *testing.T) {
	c := DefaultSweep()
	c.Data = GenOptions{P: 6, S: 10, S0: 5, D: 3, K: 4}
	c.Samples, c.Groups, c.Replicates = []int{10}, []int{1, 4}, 1
	c.Trainer.MaxSteps = 300
	c.Solver.DualStart = 100 // close the cycles a little within the short run
	dir := t.TempDir()
	_, err := SweepTask.StartWith(c, train.RunOptions{Out: dir})
	require.NoError(t, err)

	recs := readRecords(t, filepath.Join(dir, "fits.jsonl"))
	require.Len(t, recs, 5) // 4 separate fits and 1 joint
	for _, r := range recs {
		require.Len(t, r.SuccessGreedy, r.Group)
		require.Len(t, r.AccuracyGreedy, r.Group)
		for m := range r.Group {
			if !r.CyclicOrder[m] {
				assert.Equal(t, r.Success[m], r.SuccessGreedy[m], "acyclic: the scorings agree")
			} else {
				assert.False(t, r.Success[m], "cyclic: never recovered officially")
			}
			if !r.Cyclic[m] {
				assert.Equal(t, r.Accuracy[m], r.AccuracyGreedy[m])
			} else {
				assert.Zero(t, r.Accuracy[m].NNZ, "cyclic: officially the empty graph")
			}
		}
	}
	table, err := os.ReadFile(filepath.Join(dir, "shd.md"))
	require.NoError(t, err)
	assert.Contains(t, string(table), "order recovered (greedy)")
	assert.Contains(t, string(table), "|w| >= 0.3")

	// An old-format line (no greedy scores) for the joint fit: resuming refits it.
	var lines []string
	for _, r := range recs {
		b, _ := json.Marshal(r)
		if r.Group == 4 {
			var old map[string]any
			require.NoError(t, json.Unmarshal(b, &old))
			delete(old, "success_greedy")
			delete(old, "accuracy_greedy")
			b, _ = json.Marshal(old)
		}
		lines = append(lines, string(b))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fits.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	var log strings.Builder
	_, err = SweepTask.StartWith(c, train.RunOptions{Out: dir, Resume: true, W: &log})
	require.NoError(t, err)
	assert.Contains(t, log.String(), "resuming: 4 fits already")
	assert.Contains(t, log.String(), "tasks 1-4 jointly")
}

func readRecords(t *testing.T, path string) []FitRecord {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var recs []FitRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r FitRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		recs = append(recs, r)
	}
	return recs
}

// The ± of shd.md is the standard deviation over replicates of each
// replicate's share recovered and mean SHD.
func TestSummariseSDOverReplicates(t *testing.T) {
	c := DefaultSweep()
	c.Samples, c.Groups, c.Replicates = []int{10}, []int{2}, 2
	rec := func(rep int, ok [2]bool, shd [2]int) FitRecord {
		return FitRecord{Replicate: rep, N: 10, Group: 2, Success: ok[:], Accuracy: []Accuracy{{SHD: shd[0]}, {SHD: shd[1]}},
			SuccessGreedy: ok[:], AccuracyGreedy: []Accuracy{{SHD: shd[0]}, {SHD: shd[1]}}, CyclicOrder: make([]bool, 2), Cyclic: make([]bool, 2)}
	}
	done := map[[4]int]FitRecord{}
	for _, r := range []FitRecord{rec(0, [2]bool{true, true}, [2]int{2, 4}), rec(1, [2]bool{false, true}, [2]int{6, 8})} {
		done[r.key()] = r
	}
	cells := summarise(c, done)
	require.Len(t, cells, 1)
	cl := cells[0]
	// replicates: recovery 1 and 0.5, SHD 3 and 7
	assert.InDelta(t, 0.75, cl.Recovery, 1e-15)
	assert.InDelta(t, math.Sqrt(0.125), cl.RecoverySD, 1e-15)
	assert.InDelta(t, 5, cl.SHD, 1e-15)
	assert.InDelta(t, math.Sqrt(8), cl.SHDSD, 1e-15)
	assert.Contains(t, shdTable(c, cells), "| 0.75 ± 0.35 | 5.0 ± 2.8 |")
}
