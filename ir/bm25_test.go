package ir

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The hand-worked corpus. With the default analyzer:
//
//	d1 "the cat sat on the mat"                 -> cat sat mat              dl 3
//	d2 "cats and dogs"                          -> cat dog                  dl 2
//	d3 "the dog chased the cat and the cat ran" -> dog chase cat cat ran    dl 5
//	d4 "a bird"                                 -> bird                     dl 1
//	d5 "the and of"                             -> (nothing)                dl 0
//
// d5 has no terms, so Lucene's docCount, BM25's N, is 4 (not 5), and
// avgdl = (3 + 2 + 5 + 1) / 4 = 2.75.
var handDocs = []Document{
	{"d1", "the cat sat on the mat"},
	{"d2", "cats and dogs"},
	{"d3", "the dog chased the cat and the cat ran"},
	{"d4", "a bird"},
	{"d5", "the and of"},
}

func buildHand(t *testing.T, workers int) (string, *Index) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hand.idx")
	stats, err := BuildIndex(path, handDocs, IndexOptions{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	want := IndexStats{NumDocs: 5, DocCount: 4, NumTerms: 7, NumPostings: 10, SumTotalTermFreq: 11,
		Bytes: stats.Bytes, Analyzer: DefaultAnalyzer().String()}
	if stats != want {
		t.Fatalf("stats %+v, want %+v", stats, want)
	}
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	if ix.Stats() != stats {
		t.Fatalf("opened stats %+v, built %+v", ix.Stats(), stats)
	}
	return path, ix
}

func scoresOf(rs []Result) map[string]float64 {
	m := map[string]float64{}
	for _, r := range rs {
		m[r.DocID] = r.Score
	}
	return m
}

// BM25 by hand, k1 = 0.9, b = 0.4, N = 4, avgdl = 2.75 (all lengths are
// below 40, so Lucene's one-byte lengths are exact):
//
//	idf(cat) = ln(1 + (4 - 3 + 0.5) / (3 + 0.5)) = ln(1.4285714) = 0.3566749
//	idf(dog) = ln(1 + (4 - 2 + 0.5) / (2 + 0.5)) = ln(2)         = 0.6931472
//	norm(d1) = 0.9 * (0.6 + 0.4 * 3 / 2.75) = 0.9327273
//	norm(d2) = 0.9 * (0.6 + 0.4 * 2 / 2.75) = 0.8018182
//	norm(d3) = 0.9 * (0.6 + 0.4 * 5 / 2.75) = 1.1945455
//	cat: d1 = 0.3566749 * 1 / (1 + 0.9327273) = 0.1845449
//	     d2 = 0.3566749 * 1 / (1 + 0.8018182) = 0.1979528
//	     d3 = 0.3566749 * 2 / (2 + 1.1945455) = 0.2233025
//	dog: d2 = 0.6931472 * 1 / (1 + 0.8018182) = 0.3846932
//	     d3 = 0.6931472 * 1 / (1 + 1.1945455) = 0.3158500
//
// (no (k1 + 1) factor: Lucene 8 dropped it.)
func TestBM25ScoresByHand(t *testing.T) {
	_, ix := buildHand(t, 2)
	opts := DefaultSearchOptions()
	check := func(query string, want map[string]float64) {
		t.Helper()
		rs, err := ix.Search(query, opts)
		if err != nil {
			t.Fatal(err)
		}
		got := scoresOf(rs)
		if len(got) != len(want) {
			t.Errorf("%q: got %v, want %v", query, got, want)
		}
		for d, w := range want {
			if math.Abs(got[d]-w) > 2e-6 {
				t.Errorf("%q: %s = %.7f, by hand %.7f", query, d, got[d], w)
			}
		}
		for i := 1; i < len(rs); i++ {
			if trecBefore(rs[i], rs[i-1]) {
				t.Errorf("%q: results out of order: %v", query, rs)
			}
		}
	}
	check("cat", map[string]float64{"d1": 0.1845449, "d2": 0.1979528, "d3": 0.2233025})
	check("Cats!", map[string]float64{"d1": 0.1845449, "d2": 0.1979528, "d3": 0.2233025})
	// Two terms add: d2 = 0.1979528 + 0.3846932, d3 = 0.2233025 + 0.3158500.
	check("cat dog", map[string]float64{"d1": 0.1845449, "d2": 0.5826460, "d3": 0.5391525})
	// A repeated query term is one clause boosted by its count (Anserini's
	// bag of words): twice the score.
	check("cat cat", map[string]float64{"d1": 2 * 0.1845449, "d2": 2 * 0.1979528, "d3": 2 * 0.2233025})
	check("the zebra", map[string]float64{})

	if n, _ := ix.DocFreq("cat"); n != 3 {
		t.Errorf("DocFreq(cat) = %d, want 3", n)
	}
	if id, _ := ix.DocID(4); id != "d5" {
		t.Errorf("DocID(4) = %q", id)
	}
}

// Lucene's BM25 scores, bit for bit: the same float32 steps as
// BM25Similarity (cache of 1/norm, weight - weight/(1 + freq*normInverse)),
// summed in float64 and rounded to float32.
func TestBM25FloatSteps(t *testing.T) {
	_, ix := buildHand(t, 1)
	rs, err := ix.Search("cat dog", DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	avgdl := float32(11.0 / 4.0)
	idfCat, idfDog := float32(math.Log(1+1.5/3.5)), float32(math.Log(2))
	inv := func(dl float32) float32 { return 1 / (0.9 * ((1 - 0.4) + float32(0.4*dl)/avgdl)) }
	tf := func(w, f, in float32) float32 { return w - w/(1+float32(f*in)) }
	d3 := float32(float64(tf(idfCat, 2, inv(5))) + float64(tf(idfDog, 1, inv(5))))
	if got := scoresOf(rs)["d3"]; got != float64(d3) {
		t.Errorf("d3 = %v, Lucene's float32 steps give %v", got, d3)
	}
}

// SmallFloat.intToByte4 / byte4ToInt: exact to 39, then 4 significant bits of
// (length - 24), rounded down.
func TestNormEncoding(t *testing.T) {
	for n := 0; n <= 39; n++ {
		if DecodeNorm(EncodeNorm(n)) != n {
			t.Errorf("length %d should be exact", n)
		}
	}
	for n, want := range map[int]int{40: 40, 41: 40, 100: 96, 1000: 984, math.MaxInt32: 2013265944} {
		if got := DecodeNorm(EncodeNorm(n)); got != want {
			t.Errorf("length %d decodes as %d, Lucene %d", n, got, want)
		}
	}
	if EncodeNorm(math.MaxInt32) != 255 {
		t.Errorf("EncodeNorm(MaxInt32) = %d, want 255", EncodeNorm(math.MaxInt32))
	}
	prev := -1
	for b := 0; b < 256; b++ {
		v := DecodeNorm(byte(b))
		if v <= prev || EncodeNorm(v) != byte(b) {
			t.Fatalf("byte %d: decode %d not increasing or not a fixed point", b, v)
		}
		prev = v
	}
}

// Document A has 100 terms, which Lucene stores as 96: with N = 2,
// avgdl = (100 + 2) / 2 = 51, idf(cat) = ln(1 + 0.5/2.5) = 0.1823216,
//
//	Lucene lengths: A = 0.1823216 / (1 + 0.9 * (0.6 + 0.4 * 96 / 51))  = 0.0822140
//	exact lengths:  A = 0.1823216 / (1 + 0.9 * (0.6 + 0.4 * 100 / 51)) = 0.0811804
//
// and B ("cat dog", length 2) = 0.1173152 either way.
func TestBM25LengthQuantization(t *testing.T) {
	words := []string{"cat"}
	for i := 1; i < 100; i++ {
		words = append(words, fmt.Sprintf("w%d", i))
	}
	path := filepath.Join(t.TempDir(), "q.idx")
	if _, err := BuildIndex(path, []Document{{"A", strings.Join(words, " ")}, {"B", "cat dog"}}, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for _, c := range []struct {
		exact bool
		a     float64
	}{{false, 0.0822140}, {true, 0.0811804}} {
		opts := DefaultSearchOptions()
		opts.BM25.ExactLengths = c.exact
		rs, err := ix.Search("cat", opts)
		if err != nil {
			t.Fatal(err)
		}
		got := scoresOf(rs)
		if math.Abs(got["A"]-c.a) > 1e-6 || math.Abs(got["B"]-0.1173152) > 1e-6 {
			t.Errorf("ExactLengths=%v: A %.7f B %.7f, by hand %.7f 0.1173152", c.exact, got["A"], got["B"], c.a)
		}
	}
}

// Equal scores are ranked by doc id descending (trec_eval's order), and the
// top k is a prefix of that full order.
func TestSearchTieBreak(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.idx")
	docs := []Document{{"a", "x y"}, {"c", "x y"}, {"b", "x y"}, {"d", "z"}}
	if _, err := BuildIndex(path, docs, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	opts := DefaultSearchOptions()
	opts.K = 2
	rs, err := ix.Search("x", opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].DocID != "c" || rs[1].DocID != "b" || rs[0].Score != rs[1].Score {
		t.Errorf("got %v, want c then b with equal scores", rs)
	}
}

// The file is the same whatever the number of workers, and a batch search
// on several goroutines equals searching the queries one by one.
func TestIndexDeterministicAndBatch(t *testing.T) {
	p1, ix := buildHand(t, 1)
	p4, _ := buildHand(t, 4)
	b1, _ := os.ReadFile(p1)
	b4, _ := os.ReadFile(p4)
	if !bytes.Equal(b1, b4) {
		t.Error("index files differ between 1 and 4 workers")
	}
	queries := []Query{{"1", "cat"}, {"2", "dog"}, {"3", "zebra"}, {"4", "cat dog bird"}, {"5", "ran"}}
	opts := DefaultSearchOptions()
	opts.Workers = 3
	run, err := ix.BatchSearch(queries, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := run["3"]; ok || len(run) != 4 {
		t.Errorf("query without results should be absent: %v", run)
	}
	for _, q := range queries {
		one, err := ix.Search(q.Text, opts)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(one) != fmt.Sprint(run[q.ID]) && len(one) > 0 {
			t.Errorf("query %s: batch %v, single %v", q.ID, run[q.ID], one)
		}
	}
	if _, err := ix.BatchSearch([]Query{{"1", "a"}, {"1", "b"}}, opts); err == nil {
		t.Error("duplicate query ids: want an error")
	}
	if _, err := ix.Search("cat", SearchOptions{}); err == nil {
		t.Error("K = 0: want an error")
	}
	bad := DefaultSearchOptions()
	bad.BM25.B = 1.5
	if _, err := ix.Search("cat", bad); err == nil {
		t.Error("b = 1.5: want an error")
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	for _, docs := range [][]Document{
		{{"a", "x"}, {"a", "y"}},
		{{"", "x"}},
		{{"a b", "x"}},
	} {
		if _, err := BuildIndex(filepath.Join(dir, "e.idx"), docs, IndexOptions{}); err == nil {
			t.Errorf("docs %v: want an error", docs)
		}
	}
	b := NewIndexBuilder(IndexOptions{})
	if err := b.Add([]Document{{"a", "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add([]Document{{"b", "y"}, {"a", "z"}}); err == nil || b.Len() != 1 {
		t.Errorf("a failed Add must add nothing: err %v, len %d", err, b.Len())
	}
}

func TestClosedIndex(t *testing.T) {
	_, ix := buildHand(t, 1)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Search("cat", DefaultSearchOptions()); err == nil {
		t.Error("search after Close: want an error")
	}
	if err := ix.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// fixChecksums recomputes both CRCs of an index image after an edit, so
// that the structural checks (not the checksums) are what is tested.
func fixChecksums(data []byte) {
	le := binary.LittleEndian
	if len(data) < indexHeaderSize {
		return
	}
	le.PutUint32(data[68:], crc32.Checksum(data[indexHeaderSize:], castagnoli))
	le.PutUint32(data[280:], crc32.Checksum(data[:280], castagnoli))
}

func TestCorruptIndex(t *testing.T) {
	path, _ := buildHand(t, 1)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	postDocs := int(le.Uint64(good[72+16*secPostDocs:]))
	cases := []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"empty", func(b []byte) []byte { return nil }, "truncated: 0 bytes"},
		{"half a header", func(b []byte) []byte { return b[:100] }, "truncated: 100 bytes"},
		{"cut short", func(b []byte) []byte { return b[:len(b)-9] }, "truncated: header says"},
		{"extra bytes", func(b []byte) []byte { return append(b, 0) }, "after the end"},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "not a BM25 index"},
		{"header bit flip", func(b []byte) []byte { b[30] ^= 1; return b }, "corrupt header"},
		{"body bit flip", func(b []byte) []byte { b[len(b)-20] ^= 0x40; return b }, "corrupt (checksum mismatch)"},
		{"posting out of range", func(b []byte) []byte {
			le.PutUint32(b[postDocs:], 77)
			fixChecksums(b)
			return b
		}, "posting 0 has document 77"},
		{"wrong version", func(b []byte) []byte {
			le.PutUint32(b[8:], 9)
			fixChecksums(b)
			return b
		}, "format version 9"},
		{"section out of place", func(b []byte) []byte {
			le.PutUint64(b[72+16*secNorms:], 1<<40)
			fixChecksums(b)
			return b
		}, "section 7"},
	}
	for _, c := range cases {
		data := c.edit(bytes.Clone(good))
		p := filepath.Join(t.TempDir(), "bad.idx")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ix, err := OpenIndex(p)
		var ce *CorruptIndexError
		if err == nil {
			ix.Close()
			t.Errorf("%s: opened without error", c.name)
			continue
		}
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q, want a CorruptIndexError naming the file and saying %q", c.name, err, c.want)
		}
	}
	if _, err := OpenIndex(filepath.Join(t.TempDir(), "missing.idx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParseIndex mutates a valid index, fixes the checksums so the
// structural checks are reached, and requires an error or a usable index,
// never a panic.
func FuzzParseIndex(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.idx")
	if _, err := BuildIndex(path, handDocs, IndexOptions{Workers: 1}); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint32(0), byte(0), uint16(0))
	f.Add(uint32(100), byte(0xff), uint16(3))
	f.Fuzz(func(t *testing.T, pos uint32, val byte, cut uint16) {
		data := bytes.Clone(seed)
		if len(data) > 0 {
			data[int(pos)%len(data)] ^= val
		}
		if int(cut) < len(data) && cut%5 == 1 {
			data = data[:len(data)-int(cut)]
		}
		fixChecksums(data)
		ix, err := parseIndex(data, "fuzz")
		if err != nil {
			return
		}
		opts := DefaultSearchOptions()
		rm := DefaultRM3()
		opts.RM3 = &rm
		for _, q := range []string{"cat", "dog cat bird", "mat ran chase sat"} {
			if _, err := ix.Search(q, opts); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestBM25MatchesLucene replays testdata/lucene/bm25.run, the top 20 that a
// real Lucene index and searcher (with Lucene 9's BM25Similarity code; see
// testdata/lucene/README.md) returned for 31 queries over 250 documents,
// many longer than 39 terms so that their stored lengths are lossy. Every
// score must be the same float32, bit for bit, and every document Lucene
// ranked above the last (possibly tied) score must be in the same place.
func TestBM25MatchesLucene(t *testing.T) {
	read := func(name string) []string {
		data, err := os.ReadFile(filepath.Join("testdata", "lucene", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	var docs []Document
	for i, line := range read("bm25_docs.txt") {
		docs = append(docs, Document{fmt.Sprintf("doc%05d", i), line})
	}
	var queries []Query
	for i, line := range read("bm25_queries.txt") {
		queries = append(queries, Query{fmt.Sprintf("q%d", i), line})
	}
	type hit struct {
		doc   string
		score float32
	}
	lucene := map[string][]hit{}
	for _, line := range read("bm25.run") {
		var q, d string
		var bits uint32
		if _, err := fmt.Sscanf(line, "%s %s %x", &q, &d, &bits); err != nil {
			t.Fatalf("bm25.run: %q: %v", line, err)
		}
		lucene[q] = append(lucene[q], hit{d, math.Float32frombits(bits)})
	}
	path := filepath.Join(t.TempDir(), "lucene.idx")
	if _, err := BuildIndex(path, docs, IndexOptions{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	opts := DefaultSearchOptions()
	opts.K = 20
	run, err := ix.BatchSearch(queries, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(run) != len(lucene) {
		t.Errorf("%d queries with results, Lucene %d", len(run), len(lucene))
	}
	for q, want := range lucene {
		got := run[q]
		if len(got) != len(want) {
			t.Errorf("%s: %d results, Lucene %d", q, len(got), len(want))
			continue
		}
		last := want[len(want)-1].score
		for i, w := range want {
			if float32(got[i].Score) != w.score {
				t.Errorf("%s rank %d: score %v, Lucene %v", q, i+1, float32(got[i].Score), w.score)
			}
			if w.score > last && got[i].DocID != w.doc {
				// Ties inside the list are ordered differently (Lucene: by
				// document number), so compare the document's own score.
				if s, ok := scoresOf(got)[w.doc]; !ok || float32(s) != w.score {
					t.Errorf("%s: %s scored %v by Lucene, %v here", q, w.doc, w.score, s)
				}
			}
		}
	}
}
