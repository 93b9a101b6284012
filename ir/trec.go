package ir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Result is one retrieved document and its score. Ranks are not stored:
// like trec_eval, everything here derives the rank from the scores (see
// SortTREC; compared as float32, as trec_eval stores them), so a run's
// order is a function of its scores and doc ids only.
type Result struct {
	DocID string
	Score float64
}

// Run maps a query id to the documents retrieved for it. The order of a
// query's slice carries no meaning; SortTREC gives the ranking.
type Run map[string][]Result

// Qrels maps a query id to its judged documents and their relevance
// grades, as in a TREC qrels file. A negative grade is kept as read: trec_eval
// treats it as "in the pool but not judged", which every measure here counts
// as not relevant and leaves out of the ideal ranking of nDCG.
type Qrels map[string]map[string]int

// ParseError reports a malformed line of a run or qrels file. File and Line
// name the place so that a bad line in a million-line run can be found.
type ParseError struct {
	File string // the file's path, or the name given to ReadRun/ReadQrels
	Line int    // 1-based line number
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// trecBefore reports whether a ranks before b in trec_eval's order: by score
// descending, ties broken by document id in descending strcmp order. This is
// comp_sim_docno in trec_eval's form_res_rels.c ("return strcmp(p2->docno,
// p1->docno)"), the order in which every trec_eval measure reads a ranking,
// whatever rank column the file had. Go's string comparison is bytewise, as
// strcmp is on NUL-free strings.
//
// Scores are compared as float32: trec_eval's get_trec_results.c stores
// each score in a C float (sim = atof(...) into a float field), so two
// scores that round to the same float32 tie in trec_eval and are ordered
// by doc id, however they differ as float64.
func trecBefore(a, b Result) bool {
	if sa, sb := float32(a.Score), float32(b.Score); sa != sb {
		return sa > sb
	}
	return a.DocID > b.DocID
}

func trecCompare(a, b Result) int {
	switch {
	case trecBefore(a, b):
		return -1
	case trecBefore(b, a):
		return 1
	}
	return 0
}

// SortTREC sorts results into trec_eval's ranking order: score descending,
// compared as float32 as trec_eval reads them, then doc id descending.
// Writing a run in this order makes its rank column agree with the ranks
// trec_eval computes from the scores.
func SortTREC(results []Result) {
	slices.SortFunc(results, trecCompare)
}

// ReadRunFile reads a TREC run file. Errors name the file and line.
func ReadRunFile(path string) (Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadRun(f, path)
}

// ReadRun reads a TREC run, one "qid Q0 docid rank score tag" line per
// retrieved document, with name used in error messages. It follows
// trec_eval's get_trec_results.c where that is well defined (blank lines and,
// as in trec_eval 10, lines starting with '#' are skipped; the second column
// and the rank are not used for ranking) and is stricter where trec_eval
// silently accepts nonsense, because a silent misread corrupts every number
// computed afterwards:
//   - a line must have exactly six fields (trec_eval ignores extra ones);
//   - rank must be an integer and score a finite number (trec_eval's atof
//     reads "abc" as 0);
//   - a document may appear once per query (trec_eval stops at evaluation
//     time with "duplicate docs").
func ReadRun(r io.Reader, name string) (Run, error) {
	run := Run{}
	lines := map[string][]int32{} // line of each result, to report duplicates
	err := scanLines(r, name, func(line int, fields []string) error {
		if len(fields) != 6 {
			msg := fmt.Sprintf("want 6 fields \"qid Q0 docid rank score tag\", got %d", len(fields))
			if len(fields) == 3 {
				msg += " (an MS MARCO \"qid docid rank\" run? convert it first)"
			}
			return errors.New(msg)
		}
		qid, docid := fields[0], fields[2]
		if _, err := strconv.Atoi(fields[3]); err != nil {
			return fmt.Errorf("rank %q is not an integer", fields[3])
		}
		score, err := strconv.ParseFloat(fields[4], 64)
		if err != nil || math.IsNaN(score) || math.IsInf(score, 0) {
			return fmt.Errorf("score %q is not a finite number", fields[4])
		}
		run[qid] = append(run[qid], Result{DocID: docid, Score: score})
		lines[qid] = append(lines[qid], int32(min(line, math.MaxInt32)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Duplicates are found per query after reading (a map of every
	// (query, doc) pair would cost ~100 bytes a line on MS MARCO-sized runs);
	// the one reported is the earliest second occurrence in the file.
	var dup *ParseError
	for qid, rs := range run {
		idx := make([]int, len(rs))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			if c := strings.Compare(rs[a].DocID, rs[b].DocID); c != 0 {
				return c
			}
			return int(lines[qid][a] - lines[qid][b])
		})
		for k := 1; k < len(idx); k++ {
			a, b := idx[k-1], idx[k]
			if rs[a].DocID != rs[b].DocID {
				continue
			}
			if l := int(lines[qid][b]); dup == nil || l < dup.Line {
				dup = &ParseError{File: name, Line: l, Msg: fmt.Sprintf(
					"document %q retrieved twice for query %q (first on line %d)", rs[b].DocID, qid, lines[qid][a])}
			}
		}
	}
	if dup != nil {
		return nil, dup
	}
	return run, nil
}

// ReadQrelsFile reads a TREC qrels file. Errors name the file and line.
func ReadQrelsFile(path string) (Qrels, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadQrels(f, path)
}

// ReadQrels reads TREC qrels, one "qid iter docid rel" line per judgement,
// as trec_eval's get_qrels.c does: exactly four fields, the second ignored,
// rel an integer (negative allowed). A document judged twice for one query is
// an error, as it is in trec_eval (form_res_rels.c, "duplicate docs").
func ReadQrels(r io.Reader, name string) (Qrels, error) {
	q := Qrels{}
	firstLine := map[[2]string]int{}
	err := scanLines(r, name, func(line int, fields []string) error {
		if len(fields) != 4 {
			return fmt.Errorf("want 4 fields \"qid 0 docid rel\", got %d", len(fields))
		}
		qid, docid := fields[0], fields[2]
		rel, err := strconv.Atoi(fields[3])
		if err != nil {
			return fmt.Errorf("relevance %q is not an integer", fields[3])
		}
		key := [2]string{qid, docid}
		if prev, ok := firstLine[key]; ok {
			return fmt.Errorf("document %q judged twice for query %q (first on line %d)", docid, qid, prev)
		}
		firstLine[key] = line
		if q[qid] == nil {
			q[qid] = map[string]int{}
		}
		q[qid][docid] = rel
		return nil
	})
	if err != nil {
		return nil, err
	}
	return q, nil
}

// scanLines calls fn with the whitespace-separated fields of each line that
// is neither blank nor a '#' comment, wrapping fn's errors in a ParseError.
func scanLines(r io.Reader, name string, fn func(line int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if err := fn(line, strings.Fields(trimmed)); err != nil {
			return &ParseError{File: name, Line: line, Msg: err.Error()}
		}
	}
	if err := sc.Err(); err != nil {
		return &ParseError{File: name, Line: line + 1, Msg: err.Error()}
	}
	return nil
}

// WriteRunFile writes run to path (see WriteRun), replacing the file only once
// it is complete so that a crash never leaves half a run behind.
func WriteRunFile(path string, run Run, tag string) error {
	return writeFileAtomic(path, func(w io.Writer) error { return WriteRun(w, run, tag) })
}

// WriteRun writes run in TREC format. Queries come in SortQIDs order; each
// query's documents in trec_eval's order (SortTREC) with ranks 1, 2, ... .
// Scores are written with the fewest digits that read back as the same
// float64, so ReadRun gets back exactly the scores written. trec_eval keeps
// a score as a C float (float32): scores that differ only beyond float32's
// precision tie there and are ordered by doc id descending, which is the
// order SortTREC, and so the rank column here, already gives them; fixed
// "%f" formatting would go further and turn scores that differ as float32
// into ties. The tag must be a single non-empty field.
func WriteRun(w io.Writer, run Run, tag string) error {
	if tag == "" || strings.ContainsFunc(tag, isSpace) {
		return fmt.Errorf("ir: run tag %q must be one non-empty field", tag)
	}
	bw := bufio.NewWriter(w)
	for _, qid := range SortQIDs(mapKeys(run)) {
		if err := checkField("query id", qid); err != nil {
			return err
		}
		results := slices.Clone(run[qid])
		SortTREC(results)
		for i, r := range results {
			if err := checkField("doc id", r.DocID); err != nil {
				return err
			}
			if math.IsNaN(r.Score) || math.IsInf(r.Score, 0) {
				return fmt.Errorf("ir: query %q doc %q: score %v is not finite", qid, r.DocID, r.Score)
			}
			if _, err := fmt.Fprintf(bw, "%s Q0 %s %d %s %s\n", qid, r.DocID, i+1,
				strconv.FormatFloat(r.Score, 'g', -1, 64), tag); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// WriteQrels writes qrels in TREC format ("qid 0 docid rel"), queries in
// SortQIDs order and documents by id, so that the output is deterministic.
func WriteQrels(w io.Writer, q Qrels) error {
	bw := bufio.NewWriter(w)
	for _, qid := range SortQIDs(mapKeys(q)) {
		if err := checkField("query id", qid); err != nil {
			return err
		}
		docs := mapKeys(q[qid])
		slices.Sort(docs)
		for _, d := range docs {
			if err := checkField("doc id", d); err != nil {
				return err
			}
			if _, err := fmt.Fprintf(bw, "%s 0 %s %d\n", qid, d, q[qid][d]); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// WriteQrelsFile writes q to path (see WriteQrels), atomically.
func WriteQrelsFile(path string, q Qrels) error {
	return writeFileAtomic(path, func(w io.Writer) error { return WriteQrels(w, q) })
}

// SortQIDs sorts query ids numerically when all of them are integers (so
// "2" comes before "10", as people expect for TREC topics) and bytewise
// otherwise, and returns the slice.
func SortQIDs(qids []string) []string {
	numeric := true
	for _, q := range qids {
		if _, err := strconv.ParseInt(q, 10, 64); err != nil {
			numeric = false
			break
		}
	}
	if numeric {
		slices.SortFunc(qids, func(a, b string) int {
			x, _ := strconv.ParseInt(a, 10, 64)
			y, _ := strconv.ParseInt(b, 10, 64)
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
			return strings.Compare(a, b)
		})
	} else {
		slices.Sort(qids)
	}
	return qids
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// isSpace is the separator of strings.Fields, which the readers split on.
func isSpace(r rune) bool { return unicode.IsSpace(r) }

// checkField rejects ids that would not read back as one field.
func checkField(what, s string) error {
	if s == "" || strings.ContainsFunc(s, isSpace) {
		return fmt.Errorf("ir: %s %q must be one non-empty field", what, s)
	}
	return nil
}

// writeFileAtomic writes to a temporary file beside path and renames it into
// place, so that readers (and memory maps of an older version) never see a
// partial file.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
