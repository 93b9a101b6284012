package ir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// Readers for the public test collections in the formats they are
// distributed in:
//
//   - MS MARCO passage (microsoft.github.io/msmarco): collection.tsv
//     ("pid<TAB>passage", 8,841,823 lines), queries.{train,dev,eval}.tsv
//     ("qid<TAB>query"), qrels.{train,dev.small}.tsv ("qid 0 pid 1", which
//     ReadQrelsFile reads as they are), top1000.{dev,eval}.tsv
//     ("qid<TAB>pid<TAB>query<TAB>passage", candidates for re-ranking) and
//     the leaderboard's run format ("qid<TAB>pid<TAB>rank").
//   - BEIR (github.com/beir-cellar/beir): corpus.jsonl
//     ({"_id", "title", "text"}), queries.jsonl ({"_id", "text"}) and
//     qrels/<split>.tsv ("query-id<TAB>corpus-id<TAB>score" after a header).
//
// Collections are streamed: a reader holds one line at a time (at most
// MaxLineBytes), so an 8.8M-passage file costs no more memory than its
// longest line, and BuildIndexStream feeds it to an IndexBuilder in
// batches. Every error names the file and the 1-based line (*ParseError).

// MaxLineBytes bounds one line of a collection, query, run or qrels file
// read here. The longest MS MARCO passage is a few kilobytes and the
// longest BEIR document (TREC-NEWS, Robust04) well under a megabyte; a line
// longer than this is taken for a corrupt or wrong file rather than read
// into memory whole.
const MaxLineBytes = 64 << 20

// maxLineBytes is MaxLineBytes, lowered by tests.
var maxLineBytes = MaxLineBytes

// scanFile calls fn with each line of path that is not blank, without its
// line ending. A UTF-8 byte order mark at the start of the file is dropped.
// fn's errors come back as *ParseError with the file and line.
func scanFile(path string, fn func(line int, text string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return scanReader(f, path, fn)
}

func scanReader(r io.Reader, name string, fn func(line int, text string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64*1024, maxLineBytes)), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\uFEFF"))
		}
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if err := fn(line, string(b)); err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				return err
			}
			return &ParseError{File: name, Line: line, Msg: err.Error()}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &ParseError{File: name, Line: line + 1, Msg: fmt.Sprintf("line longer than %d bytes (MaxLineBytes)", maxLineBytes)}
		}
		return &ParseError{File: name, Line: line + 1, Msg: err.Error()}
	}
	return nil
}

// splitTSV2 splits "id<TAB>text" as Anserini's MS MARCO conversion does
// (tools/scripts/msmarco/convert_collection_to_jsonl.py:
// `doc_id, doc_text = line.rstrip().split('\t')`): trailing white space is
// dropped and there must be exactly one tab, so a file with more columns
// (a top1000 file given as a collection) is an error, not a misread.
func splitTSV2(s string) (id, text string, err error) {
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	id, text, ok := strings.Cut(s, "\t")
	if !ok {
		return "", "", errors.New(`want "id<TAB>text": no tab (or an empty text)`)
	}
	if n := strings.Count(text, "\t"); n > 0 {
		return "", "", fmt.Errorf(`want 2 tab-separated fields "id<TAB>text", got %d`, n+2)
	}
	if err := checkField("id", id); err != nil {
		return "", "", err
	}
	if text == "" {
		return "", "", fmt.Errorf("id %q has an empty text", id)
	}
	return id, text, nil
}

// ReadTSVCollection streams a "docid<TAB>text" collection (MS MARCO's
// collection.tsv, or a Benchmark's) to fn, one document at a time, in file
// order. Ids are not checked for duplicates here (IndexBuilder.Add does);
// an error from fn stops the reading and is returned with file and line.
func ReadTSVCollection(path string, fn func(Document) error) error {
	return scanFile(path, func(_ int, s string) error {
		id, text, err := splitTSV2(s)
		if err != nil {
			return err
		}
		return fn(Document{ID: id, Text: text})
	})
}

// LoadTSVCollection reads a whole "docid<TAB>text" collection into memory,
// rejecting duplicate ids. For MS MARCO's 8.8M passages (about 3 GB of
// text) prefer ReadTSVCollection or BuildIndexStream.
func LoadTSVCollection(path string) ([]Document, error) {
	var docs []Document
	if err := readTSVPairs(path, "document", func(id, text string) { docs = append(docs, Document{ID: id, Text: text}) }); err != nil {
		return nil, err
	}
	return docs, nil
}

// readTSVPairs reads "id<TAB>text" lines in file order, rejecting a
// repeated id (what names the kind of id in the error).
func readTSVPairs(path, what string, add func(id, text string)) error {
	first := map[string]int{}
	return scanFile(path, func(line int, s string) error {
		id, text, err := splitTSV2(s)
		if err != nil {
			return err
		}
		if prev, dup := first[id]; dup {
			return fmt.Errorf("%s id %q repeated (first on line %d)", what, id, prev)
		}
		first[id] = line
		add(id, text)
		return nil
	})
}

// ReadTSVQueries reads a "qid<TAB>query" file (MS MARCO's queries.*.tsv,
// Anserini's TsvInt/TsvString topics, a Benchmark's queries) in file order,
// rejecting duplicate ids.
func ReadTSVQueries(path string) ([]Query, error) {
	var qs []Query
	if err := readTSVPairs(path, "query", func(id, text string) { qs = append(qs, Query{ID: id, Text: text}) }); err != nil {
		return nil, err
	}
	return qs, nil
}

// FilterQueries keeps the queries that have judgements in qrels, in their
// order. MS MARCO's queries.dev.tsv has 101,093 queries of which the 6,980
// of qrels.dev.small.tsv are evaluated (Anserini's filter_queries.py), and
// BEIR's loader keeps only the queries of the split's qrels
// (GenericDataLoader.load: `self.queries = {qid: self.queries[qid] for qid
// in self.qrels}`).
func FilterQueries(queries []Query, qrels Qrels) []Query {
	var out []Query
	for _, q := range queries {
		if _, ok := qrels[q.ID]; ok {
			out = append(out, q)
		}
	}
	return out
}

// ReadMSMARCORunFile reads a run in the MS MARCO leaderboard format,
// "qid<TAB>pid<TAB>rank" (what msmarco_passage_eval.py reads and Anserini
// writes with -format msmarco). Each result's score is 1/rank, as
// Anserini's convert_msmarco_to_trec_run.py writes it, so that the ranking
// the file states is the one trec_eval and Evaluate see. Ranks must be
// positive integers, and neither a document nor a rank may repeat within a
// query (either would leave the ranking ambiguous).
func ReadMSMARCORunFile(path string) (Run, error) {
	run := Run{}
	type qd struct{ q, d string }
	docLine := map[qd]int{}
	rankLine := map[qd]int{}
	err := scanFile(path, func(line int, s string) error {
		f := strings.Fields(s)
		if len(f) != 3 {
			msg := fmt.Sprintf(`want 3 fields "qid pid rank", got %d`, len(f))
			if len(f) == 6 {
				msg += " (a TREC run? use ReadRunFile)"
			}
			return errors.New(msg)
		}
		rank, err := strconv.Atoi(f[2])
		if err != nil || rank < 1 {
			return fmt.Errorf("rank %q is not a positive integer", f[2])
		}
		if prev, dup := docLine[qd{f[0], f[1]}]; dup {
			return fmt.Errorf("document %q retrieved twice for query %q (first on line %d)", f[1], f[0], prev)
		}
		rk := qd{f[0], strconv.Itoa(rank)} // "01" is rank 1 too
		if prev, dup := rankLine[rk]; dup {
			return fmt.Errorf("rank %d given twice for query %q (first on line %d)", rank, f[0], prev)
		}
		docLine[qd{f[0], f[1]}] = line
		rankLine[rk] = line
		run[f[0]] = append(run[f[0]], Result{DocID: f[1], Score: 1 / float64(rank)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return run, nil
}

// WriteMSMARCORun writes run in the MS MARCO leaderboard format,
// "qid<TAB>pid<TAB>rank", queries in SortQIDs order and each query's
// documents in trec_eval's order (SortTREC), ranked 1, 2, ....
func WriteMSMARCORun(w io.Writer, run Run) error {
	bw := bufio.NewWriter(w)
	for _, qid := range SortQIDs(mapKeys(run)) {
		if err := checkField("query id", qid); err != nil {
			return err
		}
		rs := append([]Result(nil), run[qid]...)
		SortTREC(rs)
		for i, r := range rs {
			if err := checkField("doc id", r.DocID); err != nil {
				return err
			}
			if _, err := fmt.Fprintf(bw, "%s\t%s\t%d\n", qid, r.DocID, i+1); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// Candidate is one line of MS MARCO's top1000.{dev,eval}.tsv: a query and
// one of the passages BM25 retrieved for it, with both texts, for a
// re-ranker. The file gives no rank or score.
type Candidate struct {
	QID, DocID, Query, Passage string
}

// ReadMSMARCOTop1000 streams a top1000 file ("qid<TAB>pid<TAB>query<TAB>
// passage", exactly four fields) to fn in file order.
func ReadMSMARCOTop1000(path string, fn func(Candidate) error) error {
	return scanFile(path, func(_ int, s string) error {
		f := strings.Split(strings.TrimRightFunc(s, unicode.IsSpace), "\t")
		if len(f) != 4 {
			return fmt.Errorf(`want 4 tab-separated fields "qid<TAB>pid<TAB>query<TAB>passage", got %d`, len(f))
		}
		if err := checkField("query id", f[0]); err != nil {
			return err
		}
		if err := checkField("doc id", f[1]); err != nil {
			return err
		}
		return fn(Candidate{QID: f[0], DocID: f[1], Query: f[2], Passage: f[3]})
	})
}

// BEIRDoc is one document of a BEIR corpus.jsonl.
type BEIRDoc struct {
	ID, Title, Text string
}

// Document is the document as Anserini's "flat" BEIR indexes have it
// (io.anserini.collection.BeirFlatCollection, behind every
// beir-v1.0.0-*-flat regression and prebuilt index): contents = title +
// "\n" + text, even when the title is empty. The separator is a newline,
// not a space; the analyzer breaks words at either, so BM25 sees the same
// terms. (Anserini reads a JSON null title as the word "null", Jackson's
// NullNode.asText(); here a null or absent title is empty.)
func (d BEIRDoc) Document() Document {
	return Document{ID: d.ID, Text: d.Title + "\n" + d.Text}
}

// beirRecord is one line of a BEIR jsonl file. Fields are raw so that an
// id may be a JSON string or number and a missing text can be told from
// an empty one.
type beirRecord struct {
	ID    json.RawMessage `json:"_id"`
	Title json.RawMessage `json:"title"`
	Text  json.RawMessage `json:"text"`
}

// beirString reads a string field: a JSON string, a number (ids in some
// converted files are numbers) or, when optional, null or absent ("").
func beirString(raw json.RawMessage, field string, optional bool) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		if optional {
			return "", nil
		}
		return "", fmt.Errorf("no %q field", field)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("field %q is %s, want a string", field, raw)
}

func parseBEIRLine(s string, wantTitle bool) (id, title, text string, err error) {
	var r beirRecord
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return "", "", "", fmt.Errorf("not a JSON object: %v", err)
	}
	if id, err = beirString(r.ID, "_id", false); err != nil {
		return
	}
	if err = checkField("_id", id); err != nil {
		return
	}
	if wantTitle {
		if title, err = beirString(r.Title, "title", true); err != nil {
			return
		}
	}
	text, err = beirString(r.Text, "text", false)
	return
}

// ReadBEIRCorpus streams a BEIR corpus.jsonl to fn, one document per line
// in file order. "_id" and "text" are required, "title" may be missing;
// other fields ("metadata") are ignored. Ids must be one field, since they
// go into run files.
func ReadBEIRCorpus(path string, fn func(BEIRDoc) error) error {
	return scanFile(path, func(_ int, s string) error {
		id, title, text, err := parseBEIRLine(s, true)
		if err != nil {
			return err
		}
		return fn(BEIRDoc{ID: id, Title: title, Text: text})
	})
}

// ReadBEIRQueries reads a BEIR queries.jsonl ({"_id", "text"} per line),
// rejecting duplicate ids. Use FilterQueries with the split's qrels to keep
// the evaluated ones, as BEIR's loader does.
func ReadBEIRQueries(path string) ([]Query, error) {
	var qs []Query
	first := map[string]int{}
	err := scanFile(path, func(line int, s string) error {
		id, _, text, err := parseBEIRLine(s, false)
		if err != nil {
			return err
		}
		if prev, dup := first[id]; dup {
			return fmt.Errorf("query id %q repeated (first on line %d)", id, prev)
		}
		first[id] = line
		qs = append(qs, Query{ID: id, Text: text})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return qs, nil
}

// ReadBEIRQrels reads a BEIR qrels/<split>.tsv: tab-separated
// "query-id<TAB>corpus-id<TAB>score", score an integer grade. BEIR's
// GenericDataLoader skips the first line unread (its header
// "query-id corpus-id score"); here the first line is skipped when its
// score column is not an integer, so a file without the header loses no
// judgement. A document judged twice for a query is an error, as in
// ReadQrels (BEIR would keep the last grade silently).
func ReadBEIRQrels(path string) (Qrels, error) {
	q := Qrels{}
	type qd struct{ q, d string }
	firstLine := map[qd]int{}
	lines := 0
	err := scanFile(path, func(line int, s string) error {
		lines++
		f := strings.Split(strings.TrimRightFunc(s, unicode.IsSpace), "\t")
		if len(f) != 3 {
			return fmt.Errorf(`want 3 tab-separated fields "query-id<TAB>corpus-id<TAB>score", got %d`, len(f))
		}
		rel, err := strconv.Atoi(strings.TrimSpace(f[2]))
		if err != nil {
			if lines == 1 {
				return nil // the header
			}
			return fmt.Errorf("score %q is not an integer", f[2])
		}
		if rel < math.MinInt32 || rel > math.MaxInt32 {
			return fmt.Errorf("score %d out of range", rel)
		}
		for _, x := range f[:2] {
			if err := checkField("id", x); err != nil {
				return err
			}
		}
		k := qd{f[0], f[1]}
		if prev, dup := firstLine[k]; dup {
			return fmt.Errorf("document %q judged twice for query %q (first on line %d)", f[1], f[0], prev)
		}
		firstLine[k] = line
		if q[f[0]] == nil {
			q[f[0]] = map[string]int{}
		}
		q[f[0]][f[1]] = rel
		return nil
	})
	if err != nil {
		return nil, err
	}
	return q, nil
}

// LoadBEIR reads a BEIR dataset directory as BEIR's GenericDataLoader
// lays it out: corpus.jsonl (each document flattened as Anserini's flat
// index does, BEIRDoc.Document), queries.jsonl and qrels/<split>.tsv, and
// keeps the queries judged in that split. The corpus is held in memory;
// index large ones with BuildIndexStream and ReadBEIRCorpus instead.
func LoadBEIR(dir, split string) ([]Document, []Query, Qrels, error) {
	var docs []Document
	err := ReadBEIRCorpus(filepath.Join(dir, "corpus.jsonl"), func(d BEIRDoc) error {
		docs = append(docs, d.Document())
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	qs, err := ReadBEIRQueries(filepath.Join(dir, "queries.jsonl"))
	if err != nil {
		return nil, nil, nil, err
	}
	qrels, err := ReadBEIRQrels(filepath.Join(dir, "qrels", split+".tsv"))
	if err != nil {
		return nil, nil, nil, err
	}
	return docs, FilterQueries(qs, qrels), qrels, nil
}

// indexStreamBatch is the number of documents BuildIndexStream analyses at
// once: enough to keep every worker busy, few enough that the batch's
// texts are a small part of the memory the index itself takes.
const indexStreamBatch = 8192

// BuildIndexStream indexes the documents that read passes to its yield
// function, in batches, and writes the index to path: the streaming form
// of BuildIndex, for collections too large to hold as one []Document (the
// IndexBuilder still holds the postings; see its comment). read is one of
// the streaming readers bound to its file, e.g.
//
//	func(yield func(ir.Document) error) error { return ir.ReadTSVCollection(path, yield) }
//
// A duplicate id is reported, with the id, at the line that ends the batch
// holding it (or as in the last batch).
func BuildIndexStream(path string, read func(yield func(Document) error) error, opts IndexOptions) (IndexStats, error) {
	b := NewIndexBuilder(opts)
	batch := make([]Document, 0, indexStreamBatch)
	flush := func(where string) error {
		if len(batch) == 0 {
			return nil
		}
		err := b.Add(batch)
		clear(batch) // let the texts go
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return nil
	}
	err := read(func(d Document) error {
		batch = append(batch, d)
		if len(batch) == indexStreamBatch {
			return flush("in the batch of documents ending here")
		}
		return nil
	})
	if err != nil {
		return IndexStats{}, err
	}
	if err := flush("ir: in the last batch of documents"); err != nil {
		return IndexStats{}, err
	}
	return b.WriteFile(path)
}
