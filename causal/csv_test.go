package causal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeCSV(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// TestReadTasksRefusesNonFiniteAndHugeValues is the reliability issue's
// item 1: one NaN, inf or 1e308 cell used to turn every task's fit into
// zeros with exit status 0. Each is refused, naming the file, line and
// column, before the solver sees it.
func TestReadTasksRefusesNonFiniteAndHugeValues(t *testing.T) {
	dir := t.TempDir()
	good := writeCSV(t, dir, "good.csv", "a,b\n1,2\n3,4\n")
	for cell, want := range map[string]string{
		"NaN":     "is not finite",
		"nan":     "is not finite",
		"inf":     "is not finite",
		"-Inf":    "is not finite",
		"1e400":   "is not finite", // strconv returns +Inf with ErrRange
		"1e308":   "exceeds",
		"-2e151":  "exceeds",
		"0x1p600": "exceeds",
	} {
		p := writeCSV(t, dir, "bad.csv", "a,b\n1,2\n3, "+cell+"\n5,6\n")
		_, _, err := ReadTasks([]string{good, p})
		if assert.Error(t, err, cell) {
			assert.Contains(t, err.Error(), p+":3:", cell)
			assert.Contains(t, err.Error(), `column 2 ("b")`, cell)
			assert.Contains(t, err.Error(), want, cell)
		}
	}
	// The largest accepted magnitude is still read.
	p := writeCSV(t, dir, "edge.csv", "a,b\n1e150,-1e150\n3,4\n")
	_, x, err := ReadTasks([]string{p})
	require.NoError(t, err)
	assert.Equal(t, 1e150, x[0][0][0])
}

// TestReadTasksNamesTheRealLine checks that a quoted cell spanning lines
// does not shift the line numbers errors report.
func TestReadTasksNamesTheRealLine(t *testing.T) {
	dir := t.TempDir()
	p := writeCSV(t, dir, "q.csv", "a,\"b\nc\"\n1,2\n3,x\n")
	_, _, err := ReadTasks([]string{p})
	require.Error(t, err)
	assert.Contains(t, err.Error(), p+":4:")
	assert.Contains(t, err.Error(), `"x" is not a number`)
}

func TestReadTasksErrors(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct{ text, want string }{
		"one column":   {"a\n1\n2\n", "at least 2 variables"},
		"duplicate":    {"a,a\n1,2\n3,4\n", `"a" appears twice`},
		"short row":    {"a,b\n1,2\n3\n", "wrong number of fields"},
		"one sample":   {"a,b\n1,2\n", "need at least 2"},
		"empty":        {"", "reading the header"},
		"not a number": {"a,b\n1,2\n3,four\n", `"four" is not a number`},
	} {
		p := writeCSV(t, dir, "e.csv", c.text)
		_, _, err := ReadTasks([]string{p})
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
	a := writeCSV(t, dir, "a.csv", "a,b\n1,2\n3,4\n")
	b := writeCSV(t, dir, "b.csv", "b,a\n1,2\n3,4\n")
	_, _, err := ReadTasks([]string{a, b})
	assert.ErrorContains(t, err, "differs")
}
