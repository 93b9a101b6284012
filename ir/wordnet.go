package ir

import (
	"bufio"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/reprolab/repro/data"
)

// The splits of a Benchmark's queries.
const (
	SplitTrain = "train"
	SplitDev   = "dev"
	SplitTest  = "test"
)

// Splits lists the split names in the order files and tables use.
var Splits = []string{SplitTrain, SplitDev, SplitTest}

// Benchmark is a retrieval test collection: the documents, and for each
// split its queries and their judgements. Only queries are split; every
// document is in the collection whatever the split, as in MS MARCO, where
// train and dev queries search the same 8.8M passages.
type Benchmark struct {
	Docs    []Document
	Queries map[string]map[string]string // split -> query id -> text
	Qrels   map[string]Qrels             // split -> judgements
}

// QueryList returns the queries of split sorted by id (SortQIDs), ready for
// Index.BatchSearch.
func (b *Benchmark) QueryList(split string) []Query {
	qs := b.Queries[split]
	out := make([]Query, 0, len(qs))
	for _, id := range SortQIDs(mapKeys(qs)) {
		out = append(out, Query{ID: id, Text: qs[id]})
	}
	return out
}

// DefaultWordNetPointers are the WordNet relations (wndb(5WN) pointer
// symbols) whose targets' lemmas go into a synset's document. They are the
// relations that name the same concept from another side and that a
// dictionary reader would accept as a clue to it:
//
//	@  hypernym             @i instance hypernym (the genus of most glosses)
//	&  similar to           (satellite adjective <-> its head)
//	+  derivationally related form
//	\  pertainym            ("of or relating to X": X)
//	=  attribute            (adjective <-> noun it values)
//	^  also see             $  verb group
//	*  entailment           >  cause
//	<  participle of verb
//
// Left out: hyponyms (~, ~i), whose lists run to hundreds of lemmas for
// general synsets and would make such a synset's document match every
// gloss of its subtree; meronyms and holonyms (#m #p #s %m %p %s), which
// name parts and wholes, not the thing; domain pointers (;c ;r ;u -c -r
// -u), topical labels shared by thousands of synsets; and antonyms (!),
// which would put a word's opposite into its document and make the two
// near-duplicates to a bag-of-words model.
var DefaultWordNetPointers = []string{"@", "@i", "&", "+", `\`, "=", "^", "$", "*", ">", "<"}

// WordNetOptions configure WordNetBenchmark. The zero value is the
// benchmark of RESULTS.md.
type WordNetOptions struct {
	// Pointers are the pointer symbols whose targets' lemmas join a
	// synset's document. nil: DefaultWordNetPointers; an empty non-nil
	// slice: none (documents of lemmas and examples only).
	Pointers []string
	// DevShare and TestShare are the shares of synsets whose queries form
	// the dev and test splits (0: 0.1 each); the rest are train.
	DevShare, TestShare float64
}

// WordNetBenchmark builds the reverse-dictionary benchmark of issue 21 from
// WordNet 3.0's data.{noun,verb,adj,adv} in dir ("" for Debian's
// wordnet-base, data.WordNetDir):
//
//   - Documents: one per synset, id WordNetID (e.g. "n02084071"), in the
//     data files' order (noun, verb, adj, adv). Its text is the synset's
//     lemmas, then its example sentences, then the lemmas of the synsets
//     its Pointers relations lead to, joined by "; " (lemmas by ", ").
//     A semantic pointer (source/target 0000) contributes all the target
//     synset's lemmas; a lexical pointer only the target word it names.
//     Related lemmas already among the synset's own, or repeated, are
//     dropped (case-insensitively). No document contains any gloss's
//     definition, its own or another's: the definitions are the queries.
//   - Queries: each synset's definition (data.Synset.Definition, the gloss
//     without its quoted examples), query id = document id. Synsets with an
//     empty definition have no query but keep their document (WordNet 3.0
//     has none). Texts have their white space collapsed to single spaces,
//     so that each is one TSV field.
//   - Judgements: the query's own synset, grade 1; nothing else is
//     relevant, so MRR@10 is the reciprocal rank of the one right answer.
//   - Split: by synset, from FNV-1a 64 of the key "<pos><offset>" (e.g.
//     "n2084071", the key mlm.HeldoutSynset uses): u = hash mod 10^6 / 10^6;
//     test if u < TestShare, dev if u < TestShare+DevShare, train
//     otherwise. It depends on nothing but the synset, so it is the same on
//     every machine and for every option, and the test synsets are exactly
//     those mlm, metapt and pmlm hold out at share TestShare: a model
//     pre-trained with data.heldout = TestShare has never read a test gloss.
//
// WordNet's pointers are not parsed by data.WordNet; this function reads
// the data files a second time for them (parseWordNetPointers), and errors
// name the file and line.
func WordNetBenchmark(dir string, o WordNetOptions) (*Benchmark, error) {
	if dir == "" {
		dir = data.WordNetDir
	}
	dev, test := o.DevShare, o.TestShare
	if dev == 0 {
		dev = 0.1
	}
	if test == 0 {
		test = 0.1
	}
	if !(dev > 0 && test > 0 && dev+test <= 1) {
		return nil, fmt.Errorf("ir: WordNet dev share %v and test share %v must be positive and sum to at most 1", dev, test)
	}
	ptrs := o.Pointers
	if ptrs == nil {
		ptrs = DefaultWordNetPointers
	}
	want := map[string]bool{}
	for _, p := range ptrs {
		if !knownPointer[p] {
			return nil, fmt.Errorf("ir: unknown WordNet pointer symbol %q", p)
		}
		want[p] = true
	}

	// Synsets by data file and offset: pointers name their target by the
	// target's part of speech and offset, and adjective satellites ('s')
	// live in data.adj with heads ('a'), so the file, not the ss_type, is
	// the namespace of offsets.
	type key struct {
		file   string
		offset int64
	}
	var syns []data.Synset
	var files []string // data file of each synset
	byKey := map[key]int{}
	var ptrsOf [][]wnPointer
	for _, part := range []string{"noun", "verb", "adj", "adv"} {
		ss, err := data.WordNet(dir, part)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "data."+part)
		pp, err := readWordNetPointers(path)
		if err != nil {
			return nil, err
		}
		if len(pp) != len(ss) {
			return nil, fmt.Errorf("ir: %s: %d synsets but %d pointer lists", path, len(ss), len(pp))
		}
		for i, s := range ss {
			if pp[i].offset != s.Offset {
				return nil, fmt.Errorf("ir: %s:%d: offset %d, data.WordNet read %d", path, pp[i].line, pp[i].offset, s.Offset)
			}
			k := key{part, s.Offset}
			if _, dup := byKey[k]; dup {
				return nil, fmt.Errorf("ir: %s:%d: offset %08d appears twice", path, pp[i].line, s.Offset)
			}
			byKey[k] = len(syns)
			syns = append(syns, s)
			files = append(files, path)
			ptrsOf = append(ptrsOf, pp[i].ptrs)
		}
	}

	b := &Benchmark{Queries: map[string]map[string]string{}, Qrels: map[string]Qrels{}}
	for _, sp := range Splits {
		b.Queries[sp] = map[string]string{}
		b.Qrels[sp] = Qrels{}
	}
	b.Docs = make([]Document, len(syns))
	for i, s := range syns {
		seen := map[string]bool{}
		for _, l := range s.Lemmas {
			seen[strings.ToLower(l)] = true
		}
		var related []string
		add := func(l string) {
			if k := strings.ToLower(l); !seen[k] {
				seen[k] = true
				related = append(related, l)
			}
		}
		for _, p := range ptrsOf[i] {
			if !want[p.symbol] {
				continue
			}
			j, ok := byKey[key{posFile[p.pos], p.offset}]
			if !ok {
				return nil, fmt.Errorf("ir: %s:%d: pointer %s to %c %08d: no such synset", files[i], p.line, p.symbol, p.pos, p.offset)
			}
			t := syns[j]
			if p.target == 0 {
				for _, l := range t.Lemmas {
					add(l)
				}
			} else if p.target <= len(t.Lemmas) {
				add(t.Lemmas[p.target-1])
			} else {
				return nil, fmt.Errorf("ir: %s:%d: pointer %s names word %d of %c %08d, which has %d", files[i], p.line, p.symbol, p.target, p.pos, p.offset, len(t.Lemmas))
			}
		}
		parts := []string{strings.Join(s.Lemmas, ", ")}
		parts = append(parts, s.Examples...)
		if len(related) > 0 {
			parts = append(parts, strings.Join(related, ", "))
		}
		id := WordNetID(s)
		b.Docs[i] = Document{ID: id, Text: oneLine(strings.Join(parts, "; "))}
		def := oneLine(s.Definition)
		if def == "" {
			continue
		}
		sp := wordnetSplit(s, dev, test)
		b.Queries[sp][id] = def
		b.Qrels[sp][id] = map[string]int{id: 1}
	}
	return b, nil
}

// WordNetID is a synset's document and query id: its ss_type and its
// eight-digit offset, as in the data files ("n02084071", "s00003356").
func WordNetID(s data.Synset) string { return fmt.Sprintf("%c%08d", s.POS, s.Offset) }

// wordnetSplit assigns a synset to a split (see WordNetBenchmark). The key
// and arithmetic are mlm.heldoutKey's, repeated here because the split needs
// the hash's value u for its two bands (test below TestShare, dev above it),
// where mlm.HeldoutSynset only says whether u is below one share.
func wordnetSplit(s data.Synset, dev, test float64) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%c%d", s.POS, s.Offset)
	u := float64(h.Sum64()%1_000_000) / 1_000_000
	switch {
	case u < test:
		return SplitTest
	case u < test+dev:
		return SplitDev
	}
	return SplitTrain
}

// oneLine collapses runs of white space, tabs and newlines included, to
// single spaces, so that a text is one TSV field.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// knownPointer holds every pointer symbol of wndb(5WN).
var knownPointer = map[string]bool{
	"!": true, "@": true, "@i": true, "~": true, "~i": true, "#m": true, "#s": true, "#p": true,
	"%m": true, "%s": true, "%p": true, "=": true, "+": true, ";c": true, "-c": true, ";r": true,
	"-r": true, ";u": true, "-u": true, "*": true, ">": true, "^": true, "$": true, "&": true,
	"<": true, `\`: true,
}

// posFile maps a pointer's part of speech to its data file; 's' (a
// satellite, allowed by wndb(5WN) though WordNet 3.0 writes 'a') is in
// data.adj.
var posFile = map[byte]string{'n': "noun", 'v': "verb", 'a': "adj", 's': "adj", 'r': "adv"}

// wnPointer is one pointer of a synset: symbol, target synset, and the
// target word (1-based; 0 for a semantic pointer to the whole synset).
type wnPointer struct {
	symbol string
	offset int64
	pos    byte
	target int
	line   int
}

// wnPointers are the pointers of one data line.
type wnPointers struct {
	offset int64
	line   int
	ptrs   []wnPointer
}

func readWordNetPointers(path string) ([]wnPointers, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ir: WordNet file %s not found", path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseWordNetPointers(f, path)
}

// parseWordNetPointers reads the pointer fields of a wndb(5WN) data file,
// one entry per synset line in file order, skipping the licence lines
// (which start with a space) as data.ParseWordNetData does:
//
//	synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...]
//	p_cnt [pointer_symbol synset_offset pos source/target...] [frames...] | gloss
//
// w_cnt is two hex digits, p_cnt three decimal digits, source/target four
// hex digits (source word, target word; 0000 for a semantic pointer).
func parseWordNetPointers(r io.Reader, name string) ([]wnPointers, error) {
	var out []wnPointers
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if s == "" || s[0] == ' ' {
			continue
		}
		bad := func(format string, args ...any) error {
			return &ParseError{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
		}
		head, _, ok := strings.Cut(s, " | ")
		if !ok {
			return nil, bad("no gloss separator \" | \"")
		}
		f := strings.Fields(head)
		if len(f) < 5 {
			return nil, bad("%d fields before the gloss, want at least 5", len(f))
		}
		off, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, bad("synset offset %q is not a number", f[0])
		}
		w, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, bad("word count %q is not two hex digits", f[3])
		}
		i := 4 + 2*int(w)
		if i >= len(f) {
			return nil, bad("%d words but only %d fields", w, len(f))
		}
		n, err := strconv.Atoi(f[i])
		if err != nil || n < 0 {
			return nil, bad("pointer count %q is not a number", f[i])
		}
		i++
		if i+4*n > len(f) {
			return nil, bad("%d pointers but only %d fields after the words", n, len(f)-i)
		}
		e := wnPointers{offset: off, line: line, ptrs: make([]wnPointer, 0, n)}
		for k := 0; k < n; k, i = k+1, i+4 {
			sym, toff, pos, st := f[i], f[i+1], f[i+2], f[i+3]
			if !knownPointer[sym] {
				return nil, bad("pointer %d: unknown symbol %q", k+1, sym)
			}
			o, err := strconv.ParseInt(toff, 10, 64)
			if err != nil {
				return nil, bad("pointer %d: offset %q is not a number", k+1, toff)
			}
			if len(pos) != 1 || posFile[pos[0]] == "" {
				return nil, bad("pointer %d: part of speech %q, want n, v, a, s or r", k+1, pos)
			}
			v, err := strconv.ParseUint(st, 16, 16)
			if err != nil || len(st) != 4 {
				return nil, bad("pointer %d: source/target %q is not four hex digits", k+1, st)
			}
			e.ptrs = append(e.ptrs, wnPointer{symbol: sym, offset: o, pos: pos[0], target: int(v & 0xff), line: line})
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{File: name, Line: line + 1, Msg: err.Error()}
	}
	return out, nil
}

// Files of a benchmark directory (WriteDir, ReadBenchmarkDir): the
// collection and, per split, queries and qrels, in MS MARCO's formats so
// that the collection readers (ReadTSVCollection, ReadTSVQueries,
// ReadQrelsFile) read them.
const (
	BenchmarkCollectionFile = "collection.tsv" // docid<TAB>text
	benchmarkQueriesFmt     = "queries.%s.tsv" // qid<TAB>text
	benchmarkQrelsFmt       = "qrels.%s.txt"   // qid 0 docid rel
)

// BenchmarkQueriesFile and BenchmarkQrelsFile name a split's files in a
// benchmark directory.
func BenchmarkQueriesFile(split string) string { return fmt.Sprintf(benchmarkQueriesFmt, split) }

// BenchmarkQrelsFile: see BenchmarkQueriesFile.
func BenchmarkQrelsFile(split string) string { return fmt.Sprintf(benchmarkQrelsFmt, split) }

// WriteDir writes b to dir as TREC-style files: collection.tsv
// ("docid<TAB>text" in Docs order), and for each split with queries
// queries.<split>.tsv ("qid<TAB>text", SortQIDs order) and qrels.<split>.txt
// (TREC qrels). Each file is replaced atomically. A text with a tab or a
// line break, or an id that is not one field, is an error, never rewritten:
// the file must read back as exactly b.
func (b *Benchmark) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := writeFileAtomic(filepath.Join(dir, BenchmarkCollectionFile), func(w io.Writer) error {
		for _, d := range b.Docs {
			if err := writeTSVRow(w, "doc", d.ID, d.Text); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, sp := range slices.Sorted(maps.Keys(b.Queries)) {
		qs := b.Queries[sp]
		if len(qs) == 0 {
			continue
		}
		if err := checkField("split", sp); err != nil || strings.ContainsAny(sp, `/\`) {
			return fmt.Errorf("ir: split name %q cannot name a file", sp)
		}
		err := writeFileAtomic(filepath.Join(dir, BenchmarkQueriesFile(sp)), func(w io.Writer) error {
			for _, id := range SortQIDs(mapKeys(qs)) {
				if err := writeTSVRow(w, "query", id, qs[id]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := WriteQrelsFile(filepath.Join(dir, BenchmarkQrelsFile(sp)), b.Qrels[sp]); err != nil {
			return err
		}
	}
	return nil
}

func writeTSVRow(w io.Writer, what, id, text string) error {
	if err := checkField(what+" id", id); err != nil {
		return err
	}
	if strings.ContainsAny(text, "\t\n\r") {
		return fmt.Errorf("ir: %s %q: text has a tab or line break, which TSV cannot hold", what, id)
	}
	_, err := fmt.Fprintf(w, "%s\t%s\n", id, text)
	return err
}

// ReadBenchmarkDir reads a benchmark written by WriteDir (or any directory
// laid out the same way): collection.tsv, and every split of Splits whose
// queries file exists, with its qrels file, which must exist then. Splits
// without files get empty query and qrels maps.
func ReadBenchmarkDir(dir string) (*Benchmark, error) {
	docs, err := LoadTSVCollection(filepath.Join(dir, BenchmarkCollectionFile))
	if err != nil {
		return nil, err
	}
	b := &Benchmark{Docs: docs, Queries: map[string]map[string]string{}, Qrels: map[string]Qrels{}}
	for _, sp := range Splits {
		b.Queries[sp] = map[string]string{}
		b.Qrels[sp] = Qrels{}
		qpath := filepath.Join(dir, BenchmarkQueriesFile(sp))
		if _, err := os.Stat(qpath); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		qs, err := ReadTSVQueries(qpath)
		if err != nil {
			return nil, err
		}
		for _, q := range qs {
			b.Queries[sp][q.ID] = q.Text
		}
		qrels, err := ReadQrelsFile(filepath.Join(dir, BenchmarkQrelsFile(sp)))
		if err != nil {
			return nil, err
		}
		b.Qrels[sp] = qrels
	}
	return b, nil
}
