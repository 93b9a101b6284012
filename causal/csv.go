package causal

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ReadTasks reads one CSV file per task: a header row naming the
// variables, then one sample per row. Every file must have the same header;
// errors name the file, line and column.
func ReadTasks(paths []string) (names []string, x [][][]float64, err error) {
	if len(paths) == 0 {
		return nil, nil, errors.New("causal: no task files")
	}
	for t, path := range paths {
		hdr, rows, err := readCSV(path)
		if err != nil {
			return nil, nil, err
		}
		if t == 0 {
			names = hdr
		} else if strings.Join(hdr, ",") != strings.Join(names, ",") {
			return nil, nil, fmt.Errorf("%s: header %v differs from %s's %v (tasks must share their variables, in the same order)", path, hdr, paths[0], names)
		}
		x = append(x, rows)
	}
	return names, x, nil
}

// MaxMagnitude is the largest absolute value a task file may hold. The
// solver works on raw values in float64 and sums squared residuals over
// samples and variables: 1e150 squared is 1e300, which leaves room for
// sums over 1e8 cells before overflowing to +Inf. A larger value would
// overflow the objective, and an infinite objective once turned every
// task's fit into zeros with exit status 0, so such values are refused
// (rescale the column) rather than standardised behind the user's back:
// the estimated edge weights are in the data's own units.
const MaxMagnitude = 1e150

func readCSV(path string) ([]string, [][]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("causal: %w", err)
	}
	defer f.Close()
	return parseCSV(path, f)
}

// parseCSV reads one task's samples from r; name is the file's name in
// errors. Every cell must be a finite number of magnitude at most
// MaxMagnitude: one NaN or Inf cell would poison the fit of every task.
func parseCSV(name string, in io.Reader) ([]string, [][]float64, error) {
	r := csv.NewReader(in)
	r.TrimLeadingSpace = true
	hdr, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading the header: %w", name, err)
	}
	if len(hdr) < 2 {
		return nil, nil, fmt.Errorf("%s: %d column(s); a graph needs at least 2 variables", name, len(hdr))
	}
	seen := map[string]bool{}
	for _, h := range hdr {
		if seen[h] {
			return nil, nil, fmt.Errorf("%s: variable %q appears twice in the header", name, h)
		}
		seen[h] = true
	}
	var rows [][]float64
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		row := make([]float64, len(rec))
		for c, v := range rec {
			// FieldPos gives the cell's own line, which a quoted cell
			// spanning lines would make differ from a row count.
			line, _ := r.FieldPos(c)
			where := fmt.Sprintf("%s:%d: column %d (%q)", name, line, c+1, hdr[c])
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			switch {
			case err != nil && !errors.Is(err, strconv.ErrRange):
				return nil, nil, fmt.Errorf("%s: %q is not a number", where, v)
			case math.IsNaN(x) || math.IsInf(x, 0):
				return nil, nil, fmt.Errorf("%s: %q is not finite: NaN and infinite values are refused, as one would make every task's fit meaningless", where, v)
			case math.Abs(x) > MaxMagnitude:
				return nil, nil, fmt.Errorf("%s: %q exceeds the largest magnitude accepted, %g (its square would overflow the solver's objective): rescale the column", where, v, MaxMagnitude)
			}
			row[c] = x
		}
		rows = append(rows, row)
	}
	if len(rows) < 2 {
		return nil, nil, fmt.Errorf("%s: %d sample(s); need at least 2", name, len(rows))
	}
	return hdr, rows, nil
}

// WriteAdjacency writes a weighted adjacency matrix as CSV: a header of
// variable names, then row i holds the weights of edges i -> j, led by
// name i.
func WriteAdjacency(path string, names []string, w [][]float64) error {
	var b strings.Builder
	cw := csv.NewWriter(&b)
	cw.Write(append([]string{"from\\to"}, names...))
	for i, row := range w {
		rec := []string{names[i]}
		for _, v := range row {
			rec = append(rec, strconv.FormatFloat(v, 'g', 8, 64))
		}
		cw.Write(rec)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WriteTaskCSV writes samples with a header, as ReadTasks reads them.
func WriteTaskCSV(path string, names []string, x [][]float64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	cw := csv.NewWriter(&b)
	cw.Write(names)
	for _, row := range x {
		rec := make([]string, len(row))
		for i, v := range row {
			rec[i] = strconv.FormatFloat(v, 'g', 10, 64)
		}
		cw.Write(rec)
	}
	cw.Flush()
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
