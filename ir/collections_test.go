package ir

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantParseError checks that err is a *ParseError at file:line whose
// message contains msg.
func wantParseError(t *testing.T, err error, path string, line int, msg string) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want a *ParseError", err, err)
	}
	if pe.File != path || pe.Line != line || !strings.Contains(pe.Msg, msg) {
		t.Fatalf("error %q, want %s:%d: ...%s...", err, path, line, msg)
	}
}

func TestTSVCollection(t *testing.T) {
	dir := t.TempDir()
	// A byte order mark, a CRLF line, trailing blanks (dropped, as
	// Anserini's line.rstrip() drops them), a blank line (skipped).
	path := writeFile(t, dir, "collection.tsv",
		"\uFEFF0\tThe presence of communication amid scientific minds.\r\n"+
			"1\tThe Manhattan Project and its atomic bomb.  \n"+
			"\n"+
			"7\tunicode é ünïcödé\n")
	want := []Document{
		{"0", "The presence of communication amid scientific minds."},
		{"1", "The Manhattan Project and its atomic bomb."},
		{"7", "unicode é ünïcödé"},
	}
	var got []Document
	if err := ReadTSVCollection(path, func(d Document) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("streamed %q, want %q", got, want)
	}
	loaded, err := LoadTSVCollection(path)
	if err != nil || !reflect.DeepEqual(loaded, want) {
		t.Fatalf("loaded %q, %v", loaded, err)
	}

	// fn's error stops the reading and comes back with file and line.
	stop := errors.New("stop")
	err = ReadTSVCollection(path, func(d Document) error {
		if d.ID == "1" {
			return stop
		}
		return nil
	})
	wantParseError(t, err, path, 2, "stop")

	bad := []struct{ name, text, msg string }{
		{"three columns", "1\ta\n2\tb\tc\n", "got 3"},
		{"no tab", "1\ta\n2 b\n", "no tab"},
		{"empty text", "1\ta\n2\t \n", "no tab"}, // rstrip leaves "2"
		{"id with a space", "1\ta\n2 x\tb\n", "one non-empty field"},
	}
	for _, c := range bad {
		p := writeFile(t, dir, c.name+".tsv", c.text)
		err := ReadTSVCollection(p, func(Document) error { return nil })
		wantParseError(t, err, p, 2, c.msg)
	}
	p := writeFile(t, dir, "dup.tsv", "1\ta\n2\tb\n1\tc\n")
	_, err = LoadTSVCollection(p)
	wantParseError(t, err, p, 3, `"1" repeated (first on line 1)`)
}

func TestLongLine(t *testing.T) {
	defer func(n int) { maxLineBytes = n }(maxLineBytes)
	maxLineBytes = 64
	dir := t.TempDir()
	p := writeFile(t, dir, "c.tsv", "1\tshort\n2\t"+strings.Repeat("x", 100)+"\n3\tshort\n")
	n := 0
	err := ReadTSVCollection(p, func(Document) error { n++; return nil })
	wantParseError(t, err, p, 2, "longer than 64 bytes")
	if n != 1 {
		t.Errorf("%d documents before the long line, want 1", n)
	}
}

func TestTSVQueriesAndMSMARCOQrels(t *testing.T) {
	dir := t.TempDir()
	qp := writeFile(t, dir, "queries.dev.tsv", "1048585\twhat is paula deen's brother\n2\tAndorra\n1\tx\n")
	qs, err := ReadTSVQueries(qp)
	if err != nil {
		t.Fatal(err)
	}
	want := []Query{{"1048585", "what is paula deen's brother"}, {"2", "Andorra"}, {"1", "x"}}
	if !reflect.DeepEqual(qs, want) {
		t.Fatalf("queries %q", qs)
	}
	// MS MARCO's qrels.dev.small.tsv is tab-separated "qid 0 pid rel":
	// ReadQrelsFile reads it as it is.
	rp := writeFile(t, dir, "qrels.dev.small.tsv", "1048585\t0\t7187158\t1\n2\t0\t1\t1\n2\t0\t3\t1\n")
	qrels, err := ReadQrelsFile(rp)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(qrels, Qrels{"1048585": {"7187158": 1}, "2": {"1": 1, "3": 1}}) {
		t.Fatalf("qrels %v", qrels)
	}
	if got := FilterQueries(qs, qrels); !reflect.DeepEqual(got, want[:2]) {
		t.Errorf("filtered %q", got)
	}
	dp := writeFile(t, dir, "dup.tsv", "1\ta\n1\tb\n")
	_, err = ReadTSVQueries(dp)
	wantParseError(t, err, dp, 2, `"1" repeated`)
}

func TestMSMARCORun(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "run.dev.tsv", "1\t7\t1\n1\t3\t2\n1\t9\t3\n2\t4\t1\n")
	run, err := ReadMSMARCORunFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Run{"1": {{"7", 1}, {"3", 0.5}, {"9", 1.0 / 3}}, "2": {{"4", 1}}}
	if !reflect.DeepEqual(run, want) {
		t.Fatalf("run %v", run)
	}
	// The file's ranking is the one evaluated: 3 is at rank 2, though a
	// doc id sort would put it first.
	ev, err := Evaluate(run, Qrels{"1": {"3": 1}, "2": {"5": 1}}, []Metric{MRR10}, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Mean[0] != 0.25 {
		t.Errorf("MRR@10 %v, want (1/2 + 0)/2", ev.Mean[0])
	}
	var buf bytes.Buffer
	if err := WriteMSMARCORun(&buf, run); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "1\t7\t1\n1\t3\t2\n1\t9\t3\n2\t4\t1\n" {
		t.Errorf("written %q", buf.String())
	}
	bad := []struct{ name, text, msg string }{
		{"dup doc", "1\t7\t1\n1\t7\t2\n", `document "7" retrieved twice`},
		{"dup rank", "1\t7\t1\n1\t8\t01\n", "rank 1 given twice"},
		{"rank 0", "1\t7\t1\n1\t8\t0\n", "not a positive integer"},
		{"trec run", "1\t7\t1\n1 Q0 8 2 1.5 tag\n", "a TREC run?"},
	}
	for _, c := range bad {
		p := writeFile(t, dir, c.name, c.text)
		_, err := ReadMSMARCORunFile(p)
		wantParseError(t, err, p, 2, c.msg)
	}
}

func TestMSMARCOTop1000(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "top1000.dev", "188714\t1000052\tfoods and supplements to lower blood sugar\tWatch portion sizes.\n"+
		"1082792\t1000084\twhat does the golgi apparatus do\tStart studying.\n")
	var got []Candidate
	if err := ReadMSMARCOTop1000(p, func(c Candidate) error { got = append(got, c); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []Candidate{
		{"188714", "1000052", "foods and supplements to lower blood sugar", "Watch portion sizes."},
		{"1082792", "1000084", "what does the golgi apparatus do", "Start studying."},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("candidates %q", got)
	}
	p = writeFile(t, dir, "bad", "1\t2\tq\tp\n1\t2\tq\n")
	err := ReadMSMARCOTop1000(p, func(Candidate) error { return nil })
	wantParseError(t, err, p, 2, "got 3")
}

func TestBEIR(t *testing.T) {
	dir := t.TempDir()
	corpus := writeFile(t, dir, "corpus.jsonl",
		`{"_id": "4983", "title": "Microstructural development", "text": "Alterations of the architecture.", "metadata": {}}`+"\n"+
			`{"_id": "5836", "text": "No title here."}`+"\n"+
			`{"_id": 42, "title": null, "text": "A numeric id."}`+"\n")
	var got []BEIRDoc
	if err := ReadBEIRCorpus(corpus, func(d BEIRDoc) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []BEIRDoc{
		{"4983", "Microstructural development", "Alterations of the architecture."},
		{"5836", "", "No title here."},
		{"42", "", "A numeric id."},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("corpus %q", got)
	}
	// Anserini's BeirFlatCollection: title + "\n" + text.
	if d := got[0].Document(); d != (Document{"4983", "Microstructural development\nAlterations of the architecture."}) {
		t.Errorf("flat document %q", d)
	}
	if d := got[1].Document(); d.Text != "\nNo title here." {
		t.Errorf("flat document without title %q", d.Text)
	}

	writeFile(t, dir, "queries.jsonl", `{"_id": "1", "text": "0-dimensional biomaterials show inductive properties.", "metadata": {}}`+"\n"+
		`{"_id": "3", "text": "1,000 genomes project enables mapping."}`+"\n"+
		`{"_id": "5", "text": "not judged in test"}`+"\n")
	// The header line is skipped; grades may be 0.
	writeFile(t, dir, "qrels/test.tsv", "query-id\tcorpus-id\tscore\n1\t4983\t1\n3\t5836\t1\n3\t42\t0\n")
	docs, qs, qrels, err := LoadBEIR(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 || docs[2] != (Document{"42", "\nA numeric id."}) {
		t.Errorf("docs %q", docs)
	}
	if !reflect.DeepEqual(qs, []Query{{"1", "0-dimensional biomaterials show inductive properties."}, {"3", "1,000 genomes project enables mapping."}}) {
		t.Errorf("queries %q", qs)
	}
	if !reflect.DeepEqual(qrels, Qrels{"1": {"4983": 1}, "3": {"5836": 1, "42": 0}}) {
		t.Errorf("qrels %v", qrels)
	}
	// Without a header nothing is lost.
	p := writeFile(t, dir, "noheader.tsv", "1\t4983\t2\n")
	if q, err := ReadBEIRQrels(p); err != nil || q["1"]["4983"] != 2 {
		t.Errorf("headerless qrels %v, %v", q, err)
	}

	bad := []struct{ name, text, msg string }{
		{"no text", `{"_id": "1", "text": "a"}` + "\n" + `{"_id": "2", "title": "t"}`, `no "text" field`},
		{"no id", `{"_id": "1", "text": "a"}` + "\n" + `{"text": "a"}`, `no "_id" field`},
		{"id with space", `{"_id": "1", "text": "a"}` + "\n" + `{"_id": "a b", "text": "a"}`, "one non-empty field"},
		{"not json", `{"_id": "1", "text": "a"}` + "\n" + `{"_id": "2", "text": "a"`, "not a JSON object"},
		{"text not string", `{"_id": "1", "text": "a"}` + "\n" + `{"_id": "2", "text": ["a"]}`, "want a string"},
	}
	for _, c := range bad {
		p := writeFile(t, dir, c.name+".jsonl", c.text)
		err := ReadBEIRCorpus(p, func(BEIRDoc) error { return nil })
		wantParseError(t, err, p, 2, c.msg)
	}
	p = writeFile(t, dir, "dupq.jsonl", `{"_id": "1", "text": "a"}`+"\n"+`{"_id": "1", "text": "b"}`+"\n")
	_, err = ReadBEIRQueries(p)
	wantParseError(t, err, p, 2, `"1" repeated`)
	badQrels := []struct {
		name, text string
		line       int
		msg        string
	}{
		{"dup", "query-id\tcorpus-id\tscore\n1\t2\t1\n1\t2\t0\n", 3, "judged twice"},
		{"score", "query-id\tcorpus-id\tscore\n1\t2\t1\n1\t3\thigh\n", 3, `score "high"`},
		{"columns", "query-id\tcorpus-id\tscore\n1 2 1\n", 2, "got 1"},
	}
	for _, c := range badQrels {
		p := writeFile(t, dir, c.name+".qrels.tsv", c.text)
		_, err := ReadBEIRQrels(p)
		wantParseError(t, err, p, c.line, c.msg)
	}
}

func TestBuildIndexStream(t *testing.T) {
	dir := t.TempDir()
	var sb strings.Builder
	var docs []Document
	for i := range 2*indexStreamBatch + 17 { // three batches, the last partial
		d := Document{ID: "d" + strings.Repeat("x", i%3) + strconv.Itoa(i), Text: "word" + strconv.Itoa(i%50) + " common text " + strconv.Itoa(i%7)}
		docs = append(docs, d)
		sb.WriteString(d.ID + "\t" + d.Text + "\n")
	}
	col := writeFile(t, dir, "collection.tsv", sb.String())
	streamed := filepath.Join(dir, "stream.idx")
	st, err := BuildIndexStream(streamed, func(yield func(Document) error) error { return ReadTSVCollection(col, yield) }, IndexOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(dir, "whole.idx")
	st2, err := BuildIndex(whole, docs, IndexOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(streamed)
	b, _ := os.ReadFile(whole)
	if st != st2 || !bytes.Equal(a, b) {
		t.Fatalf("streamed index differs from BuildIndex's: %+v vs %+v", st, st2)
	}
	// A duplicate id is reported in the batch that holds it.
	dup := writeFile(t, dir, "dup.tsv", "a\tx\nb\ty\na\tz\n")
	_, err = BuildIndexStream(filepath.Join(dir, "dup.idx"), func(yield func(Document) error) error { return ReadTSVCollection(dup, yield) }, IndexOptions{})
	if err == nil || !strings.Contains(err.Error(), `duplicate doc id "a"`) {
		t.Fatalf("duplicate id: %v", err)
	}
}
