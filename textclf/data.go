package textclf

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Example is one row: a text, or a pair of texts, and its label as written
// in the file ("" when the file has none, as GLUE's test sets).
type Example struct {
	Text, Pair string
	Label      string
}

// Layout says how to read a data file: its format and which columns hold
// the text, the second text of a pair and the label. A column is a header
// name, or a 0-based index (a file without a header has only indices).
type Layout struct {
	Format   string // "csv", "tsv" or "jsonl"; "" from the file's extension
	NoHeader bool   // csv and tsv: the first line is data (GLUE's CoLA train and dev)
	Text     string // the text's column
	Pair     string // the second text's column; "" for single texts
	Label    string // the label's column; "" for none
	// SkipBadRows skips rows with too few columns or an empty label,
	// counting them, instead of refusing the file.
	SkipBadRows bool
}

// ReadExamples reads a CSV, TSV or JSONL file as the layout says. With
// needLabel a row without a label is an error (or skipped with
// SkipBadRows); without it, a file that lacks the label column altogether
// reads with empty labels, as GLUE's test files do. TSV is read as GLUE's
// files and HF's run_glue.py read them: fields split at tabs, no quoting,
// so a quote character is text. It returns the examples and how many rows
// were skipped.
func ReadExamples(path string, l Layout, needLabel bool) ([]Example, int, error) {
	format := l.Format
	if format == "" {
		format = FormatOf(path)
	}
	var rows [][]string
	var header []string
	var err error
	switch format {
	case "tsv", "csv":
		rows, err = readTable(path, format)
		if err != nil {
			return nil, 0, err
		}
		if !l.NoHeader {
			if len(rows) == 0 {
				return nil, 0, fmt.Errorf("%s: empty file, expected a header line", path)
			}
			header, rows = rows[0], rows[1:]
			if len(header) > 0 {
				header[0] = strings.TrimPrefix(header[0], "\ufeff") // a byte-order mark (GLUE's MRPC has one)
			}
		}
	case "jsonl":
		return readJSONL(path, l, needLabel)
	default:
		return nil, 0, fmt.Errorf("%s: format %q: use csv, tsv or jsonl", path, format)
	}
	col := func(spec, what string, required bool) (int, error) {
		if spec == "" {
			return -1, nil
		}
		for i, h := range header {
			if h == spec {
				return i, nil
			}
		}
		if i, err := strconv.Atoi(spec); err == nil && i >= 0 {
			return i, nil
		}
		if !required {
			return -1, nil
		}
		if l.NoHeader {
			return 0, fmt.Errorf("%s: %s column %q: a file without a header takes column indices (0, 1, ...)", path, what, spec)
		}
		return 0, fmt.Errorf("%s: no %s column %q; the header has %q", path, what, spec, header)
	}
	text, err := col(l.Text, "text", true)
	if err != nil {
		return nil, 0, err
	}
	pair, err := col(l.Pair, "pair", true)
	if err != nil {
		return nil, 0, err
	}
	label, err := col(l.Label, "label", needLabel)
	if err != nil {
		return nil, 0, err
	}
	need := max(text, pair, label) + 1
	var out []Example
	skipped := 0
	for i, r := range rows {
		line := i + 1
		if !l.NoHeader {
			line++
		}
		if len(r) == 1 && r[0] == "" {
			continue // a blank line
		}
		bad := ""
		if len(r) < need {
			bad = fmt.Sprintf("%d columns, need %d", len(r), need)
		} else if label >= 0 && needLabel && strings.TrimSpace(r[label]) == "" {
			bad = "empty label"
		}
		if bad != "" {
			if l.SkipBadRows {
				skipped++
				continue
			}
			return nil, 0, fmt.Errorf("%s:%d: %s (data.skip_bad_rows = true skips such rows)", path, line, bad)
		}
		e := Example{Text: r[text]}
		if pair >= 0 {
			e.Pair = r[pair]
		}
		if label >= 0 {
			e.Label = strings.TrimSpace(r[label])
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, skipped, fmt.Errorf("%s: no examples", path)
	}
	return out, skipped, nil
}

// FormatOf is a data file's format by its extension: .csv, .jsonl (or
// .json), anything else tsv (GLUE's .tsv and .txt).
func FormatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return "csv"
	case ".jsonl", ".json":
		return "jsonl"
	}
	return "tsv"
}

func readTable(path, format string) ([][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if format == "csv" {
		r := csv.NewReader(bytes.NewReader(b))
		r.FieldsPerRecord = -1
		rows, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return rows, nil
	}
	var rows [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		rows = append(rows, strings.Split(strings.TrimSuffix(sc.Text(), "\r"), "\t"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

// readJSONL reads one JSON object per line; columns are keys. Numbers are
// taken as text in their shortest form (a label 1 is "1", 3.8 is "3.8").
func readJSONL(path string, l Layout, needLabel bool) ([]Example, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	dec.UseNumber()
	var out []Example
	skipped := 0
	for line := 1; ; line++ {
		var obj map[string]any
		if err := dec.Decode(&obj); err == io.EOF {
			break
		} else if err != nil {
			return nil, 0, fmt.Errorf("%s: record %d: %w", path, line, err)
		}
		get := func(key string) (string, bool) {
			v, ok := obj[key]
			switch v := v.(type) {
			case string:
				return v, ok
			case json.Number:
				return v.String(), ok
			case bool:
				return strconv.FormatBool(v), ok
			}
			return "", false
		}
		var e Example
		var ok bool
		bad := ""
		if e.Text, ok = get(l.Text); !ok {
			bad = fmt.Sprintf("no text %q", l.Text)
		}
		if l.Pair != "" {
			if e.Pair, ok = get(l.Pair); !ok {
				bad = fmt.Sprintf("no pair %q", l.Pair)
			}
		}
		if l.Label != "" {
			e.Label, ok = get(l.Label)
			e.Label = strings.TrimSpace(e.Label)
			if needLabel && (!ok || e.Label == "") {
				bad = fmt.Sprintf("no label %q", l.Label)
			}
		}
		if bad != "" {
			if l.SkipBadRows {
				skipped++
				continue
			}
			return nil, 0, fmt.Errorf("%s: record %d: %s (data.skip_bad_rows = true skips such rows)", path, line, bad)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, skipped, fmt.Errorf("%s: no examples", path)
	}
	return out, skipped, nil
}
