package ir

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRunSkipsBlankAndComments(t *testing.T) {
	run := mustRun(t, "# a comment\n\n  q1 Q0 d1 1 2.5 tag\n\t\nq1 Q0 d2 2 -1e-3 tag\n")
	if len(run["q1"]) != 2 || run["q1"][1].Score != -0.001 {
		t.Fatalf("got %v", run)
	}
}

func TestReadRunErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ in, want string }{
		{"q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 2.5\n", "run.txt:2: want 6 fields"},
		{"q1 d1 1\n", "run.txt:1: want 6 fields \"qid Q0 docid rank score tag\", got 3 (an MS MARCO"},
		{"q1 Q0 d1 1 abc t\n", "run.txt:1: score \"abc\" is not a finite number"},
		{"q1 Q0 d1 1 NaN t\n", "run.txt:1: score \"NaN\""},
		{"q1 Q0 d1 x 1 t\n", "run.txt:1: rank \"x\" is not an integer"},
		{"q1 Q0 d1 1 1 t\n\nq1 Q0 d1 2 0.5 t\n", "run.txt:3: document \"d1\" retrieved twice for query \"q1\" (first on line 1)"},
	}
	for _, c := range cases {
		_, err := ReadRun(strings.NewReader(c.in), "run.txt")
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ReadRun(%q) error %v, want prefix %q", c.in, err, c.want)
		}
	}
}

func TestReadQrelsErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"q1 0 d1\n", "qrels.txt:1: want 4 fields"},
		{"q1 0 d1 1 extra\n", "qrels.txt:1: want 4 fields"},
		{"q1 0 d1 1.5\n", "qrels.txt:1: relevance \"1.5\" is not an integer"},
		{"q1 0 d1 1\nq1 0 d1 0\n", "qrels.txt:2: document \"d1\" judged twice for query \"q1\" (first on line 1)"},
	}
	for _, c := range cases {
		_, err := ReadQrels(strings.NewReader(c.in), "qrels.txt")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ReadQrels(%q) error %v, want prefix %q", c.in, err, c.want)
		}
	}
	q := mustQrels(t, "q1 0 d1 -1\nq1 Q0 d2 3\n")
	if q["q1"]["d1"] != -1 || q["q1"]["d2"] != 3 {
		t.Errorf("got %v", q)
	}
}

func TestReadFileErrorNamesPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.run")
	if err := os.WriteFile(p, []byte("q1 Q0 d1 1 1 t\nbroken line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadRunFile(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":2: ") {
		t.Fatalf("error %v, want it to start with %s:2:", err, p)
	}
}

// Scores that "%f" would round to the same 1.000000 must stay distinct, and
// ranks must be trec_eval's: score descending, then doc id descending.
func TestWriteRunRoundTrip(t *testing.T) {
	run := Run{
		"10": {{"a", 1.0000001}, {"b", 1.0000002}, {"c", 1.0000002}},
		"2":  {{"z", 0.25}},
	}
	var buf bytes.Buffer
	if err := WriteRun(&buf, run, "bm25"); err != nil {
		t.Fatal(err)
	}
	// Query "2" before "10" (numeric ids sort numerically); c ties b and
	// comes first ("c" > "b").
	want := "2 Q0 z 1 0.25 bm25\n" +
		"10 Q0 c 1 1.0000002 bm25\n" +
		"10 Q0 b 2 1.0000002 bm25\n" +
		"10 Q0 a 3 1.0000001 bm25\n"
	if buf.String() != want {
		t.Fatalf("WriteRun:\n%s\nwant:\n%s", buf.String(), want)
	}
	back := mustRun(t, buf.String())
	for q, rs := range run {
		for i, r := range rs {
			found := false
			for _, b := range back[q] {
				if b == r {
					found = true
				}
			}
			if !found {
				t.Errorf("query %s result %d %v lost in the round trip", q, i, r)
			}
		}
	}
	if err := WriteRun(&buf, run, "two words"); err == nil {
		t.Error("tag with a space: want an error")
	}
	if err := WriteRun(&buf, Run{"q": {{"doc id", 1}}}, "t"); err == nil {
		t.Error("doc id with a space: want an error")
	}
}

func TestWriteRunFileAndQrelsFile(t *testing.T) {
	dir := t.TempDir()
	run, qrels := mustRun(t, handRun), mustQrels(t, handQrels)
	if err := WriteRunFile(filepath.Join(dir, "r"), run, "t"); err != nil {
		t.Fatal(err)
	}
	if err := WriteQrelsFile(filepath.Join(dir, "q"), qrels); err != nil {
		t.Fatal(err)
	}
	run2, err := ReadRunFile(filepath.Join(dir, "r"))
	if err != nil {
		t.Fatal(err)
	}
	qrels2, err := ReadQrelsFile(filepath.Join(dir, "q"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Evaluate(run, qrels, []Metric{MRR10, NDCG10, MAP}, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Evaluate(run2, qrels2, []Metric{MRR10, NDCG10, MAP}, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Mean {
		if a.Mean[i] != b.Mean[i] {
			t.Errorf("%v changed in the round trip: %v -> %v", a.Metrics[i], a.Mean[i], b.Mean[i])
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestSortQIDs(t *testing.T) {
	if got := strings.Join(SortQIDs([]string{"10", "9", "100", "1"}), " "); got != "1 9 10 100" {
		t.Errorf("numeric: %s", got)
	}
	if got := strings.Join(SortQIDs([]string{"b", "10", "a", "9"}), " "); got != "10 9 a b" {
		t.Errorf("mixed: %s", got)
	}
}

func FuzzReadRun(f *testing.F) {
	f.Add([]byte(handRun))
	f.Add([]byte("q1 Q0 d1 1 1e308 t\nq1 Q0 d2 2 -0 t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := ReadRun(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteRun(&buf, run, "t"); err != nil {
			t.Fatalf("a run that reads must write: %v", err)
		}
		back, err := ReadRun(&buf, "again")
		if err != nil {
			t.Fatalf("written run does not read back: %v", err)
		}
		for q, rs := range run {
			if len(back[q]) != len(rs) {
				t.Fatalf("query %q: %d results, %d after the round trip", q, len(rs), len(back[q]))
			}
		}
	})
}

// trec_eval keeps scores as C floats: two scores equal as float32 tie
// there and are ordered by doc id descending, even when they differ as
// float64 (these two are 1/61 + 1/61 + 1/62 summed in two orders).
// SortTREC, WriteRun's rank column and the evaluation must agree.
func TestSortTRECComparesFloat32(t *testing.T) {
	lo, hi := 0.04891591750396616, 0.048915917503966164
	if lo == hi || float32(lo) != float32(hi) {
		t.Fatal("the test needs scores distinct as float64 and equal as float32")
	}
	rs := []Result{{"a", hi}, {"z", lo}, {"m", 0.5}}
	SortTREC(rs)
	if rs[0].DocID != "m" || rs[1].DocID != "z" || rs[2].DocID != "a" {
		t.Fatalf("SortTREC = %v, want m, then the float32 tie z, a by doc id descending", rs)
	}
	var buf bytes.Buffer
	if err := WriteRun(&buf, Run{"q": {{"a", hi}, {"z", lo}}}, "t"); err != nil {
		t.Fatal(err)
	}
	want := "q Q0 z 1 0.04891591750396616 t\nq Q0 a 2 0.048915917503966164 t\n"
	if buf.String() != want {
		t.Fatalf("WriteRun:\n%s\nwant:\n%s", buf.String(), want)
	}
	// Only z is relevant: trec_eval ranks it first, RR 1.
	ev, err := Evaluate(Run{"q": {{"a", hi}, {"z", lo}}}, Qrels{"q": {"z": 1}}, []Metric{MRR10}, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Mean[0] != 1 {
		t.Errorf("MRR@10 = %v, want 1 (z ranks first in trec_eval)", ev.Mean[0])
	}
}
