package ir

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// tinyWordNet is a hand-made WordNet in wndb(5WN) format: nine synsets in
// four files, with semantic and lexical pointers, a satellite adjective
// with a (p) marker pointing to its head with pos 'a', verb frames after
// the pointers, and a gloss with only an example (no definition, so no
// query). Offsets are arbitrary: neither data.WordNet nor the pointer
// parser relies on them being byte offsets.
var tinyWordNet = map[string]string{
	"data.noun": `  1 This software and database is being provided to you, the LICENSEE, by  
  2 Princeton University under the following license.  
00001000 03 n 01 entity 0 001 ~ 00002000 n 0000 | that which is perceived or known to exist  
00002000 05 n 01 animal 0 003 @ 00001000 n 0000 ~ 00003000 n 0000 + 00008000 v 0101 | a living organism that feeds on organic matter; "animals move"  
00003000 05 n 02 dog 0 domestic_dog 0 004 @ 00002000 n 0000 ! 00005000 n 0101 #m 00006000 n 0000 ~ 00007000 n 0000 | a domesticated carnivorous mammal that barks; "the dog barked all night"  
00005000 05 n 01 cat 0 002 ! 00003000 n 0101 @ 00002000 n 0000 | a small feline mammal; "the cat purred"  
00006000 14 n 01 pack 0 001 %m 00003000 n 0000 | a group of hunting animals  
00007000 05 n 02 puppy 0 pup 0 002 @ 00003000 n 0000 + 00008000 v 0101 | a young dog  
`,
	"data.verb": `  1 This software and database is being provided to you, the LICENSEE, by  
00008000 38 v 02 run 0 sprint 0 003 @ 00009000 v 0000 + 00007000 n 0202 + 00002000 n 0101 02 + 01 00 + 02 00 | move fast by using one's feet; "he ran to the store"  
00009000 38 v 01 travel 0 001 ~ 00008000 v 0000 01 + 01 00 | change location  
`,
	"data.adj": `00010000 00 a 01 hot 0 002 & 00011000 a 0000 ! 00012000 a 0101 | used of physical heat; having a high temperature; "hot stove"  
00011000 00 s 01 baking(p) 0 001 & 00010000 a 0000 | hot enough to bake  
00012000 00 a 01 cold 0 001 ! 00010000 a 0101 | having a low temperature  
00014000 00 a 01 quick 0 000 | moving fast  
`,
	"data.adv": `00013000 02 r 01 quickly 0 001 \ 00014000 a 0101 | with speed; "he ran quickly"  
00015000 02 r 01 so 0 000 | "so there"  
`,
}

func writeWordNet(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func tinyBenchmark(t *testing.T, o WordNetOptions) *Benchmark {
	t.Helper()
	b, err := WordNetBenchmark(writeWordNet(t, tinyWordNet), o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func docText(b *Benchmark, id string) (string, bool) {
	for _, d := range b.Docs {
		if d.ID == id {
			return d.Text, true
		}
	}
	return "", false
}

// allQueries merges the splits' queries, failing if one is in two splits.
func allQueries(t *testing.T, b *Benchmark) map[string]string {
	t.Helper()
	all := map[string]string{}
	for _, sp := range Splits {
		for id, q := range b.Queries[sp] {
			if _, dup := all[id]; dup {
				t.Fatalf("query %s is in two splits", id)
			}
			all[id] = q
		}
	}
	return all
}

func TestWordNetBenchmarkDocuments(t *testing.T) {
	b := tinyBenchmark(t, WordNetOptions{})
	// Documents: lemmas; examples; related lemmas of the default pointers.
	want := []Document{
		{"n00001000", "entity"}, // only a hyponym pointer, which is left out
		{"n00002000", "animal; animals move; entity, run"},
		// dog: hypernym animal in; antonym cat, member holonym pack and
		// hyponym puppy out.
		{"n00003000", "dog, domestic dog; the dog barked all night; animal"},
		{"n00005000", "cat; the cat purred; animal"},
		{"n00006000", "pack"},
		// puppy: all lemmas of its hypernym (semantic pointer), and only
		// word 1 of "run, sprint" (lexical pointer 0101).
		{"n00007000", "puppy, pup; dog, domestic dog, run"},
		// run: word 2 of "puppy, pup" (0202); "animal" by its other
		// derivation pointer; verb frames after the pointers are not read
		// as pointers.
		{"v00008000", "run, sprint; he ran to the store; travel, pup, animal"},
		{"v00009000", "travel"},
		{"a00010000", "hot; hot stove; baking"}, // similar-to in, antonym out
		{"s00011000", "baking; hot"},            // (p) marker gone; pointer pos 'a' finds the head
		{"a00012000", "cold"},
		{"a00014000", "quick"},
		{"r00013000", "quickly; he ran quickly; quick"}, // pertainym
		{"r00015000", "so; so there"},
	}
	if !reflect.DeepEqual(b.Docs, want) {
		t.Fatalf("documents:\n got %q\nwant %q", b.Docs, want)
	}

	// Queries are the definitions, examples removed; a gloss without a
	// definition gives no query, but its document stays.
	all := allQueries(t, b)
	wantQ := map[string]string{
		"n00001000": "that which is perceived or known to exist",
		"n00002000": "a living organism that feeds on organic matter",
		"n00003000": "a domesticated carnivorous mammal that barks",
		"n00005000": "a small feline mammal",
		"n00006000": "a group of hunting animals",
		"n00007000": "a young dog",
		"v00008000": "move fast by using one's feet",
		"v00009000": "change location",
		"a00010000": "used of physical heat; having a high temperature",
		"s00011000": "hot enough to bake",
		"a00012000": "having a low temperature",
		"a00014000": "moving fast",
		"r00013000": "with speed",
	}
	if !reflect.DeepEqual(all, wantQ) {
		t.Fatalf("queries:\n got %q\nwant %q", all, wantQ)
	}
	// No document holds any definition, its own least of all.
	for id, q := range all {
		for _, d := range b.Docs {
			if strings.Contains(d.Text, q) {
				t.Errorf("document %s contains the definition of %s: %q", d.ID, id, q)
			}
		}
	}
	// Judgements: exactly the query's own synset.
	for _, sp := range Splits {
		if len(b.Qrels[sp]) != len(b.Queries[sp]) {
			t.Errorf("%s: %d qrels queries, %d queries", sp, len(b.Qrels[sp]), len(b.Queries[sp]))
		}
		for id := range b.Queries[sp] {
			if !reflect.DeepEqual(b.Qrels[sp][id], map[string]int{id: 1}) {
				t.Errorf("%s: qrels of %s = %v", sp, id, b.Qrels[sp][id])
			}
		}
	}
}

func TestWordNetBenchmarkPointerOptions(t *testing.T) {
	b := tinyBenchmark(t, WordNetOptions{Pointers: []string{}})
	if got, _ := docText(b, "n00007000"); got != "puppy, pup" {
		t.Errorf("no pointers: puppy's document %q", got)
	}
	b = tinyBenchmark(t, WordNetOptions{Pointers: []string{"~", "!"}})
	if got, _ := docText(b, "n00003000"); got != "dog, domestic dog; the dog barked all night; cat, puppy, pup" {
		t.Errorf("hyponyms and antonyms: dog's document %q", got)
	}
	if _, err := WordNetBenchmark(writeWordNet(t, tinyWordNet), WordNetOptions{Pointers: []string{"@x"}}); err == nil {
		t.Error("unknown pointer symbol accepted")
	}
	if _, err := WordNetBenchmark(writeWordNet(t, tinyWordNet), WordNetOptions{DevShare: 0.6, TestShare: 0.6}); err == nil {
		t.Error("shares summing to 1.2 accepted")
	}
}

func TestWordNetBenchmarkSplit(t *testing.T) {
	o := WordNetOptions{DevShare: 0.3, TestShare: 0.3}
	b := tinyBenchmark(t, o)
	again := tinyBenchmark(t, o)
	if !reflect.DeepEqual(b, again) {
		t.Fatal("two builds differ")
	}
	all := allQueries(t, b) // fails on a query in two splits
	if len(all) != 13 {
		t.Fatalf("%d queries in all splits, want 13", len(all))
	}
	// The split is mlm.HeldoutSynset's hash of "<pos><offset>", recomputed
	// here independently: test below 0.3, dev below 0.6.
	for _, sp := range Splits {
		for id := range b.Queries[sp] {
			h := fnv.New64a()
			fmt.Fprintf(h, "%c%d", id[0], mustAtoi(t, id[1:]))
			u := float64(h.Sum64()%1_000_000) / 1_000_000
			want := SplitTrain
			if u < 0.3 {
				want = SplitTest
			} else if u < 0.6 {
				want = SplitDev
			}
			if sp != want {
				t.Errorf("%s in %s, want %s (u = %v)", id, sp, want, u)
			}
		}
	}
	// Every split is used by these nine-and-four synsets (a fact of the hash,
	// checked so that the test above is not vacuous).
	for _, sp := range Splits {
		if len(b.Queries[sp]) == 0 {
			t.Errorf("split %s is empty", sp)
		}
	}
	// The split of a synset does not depend on the shares of the others:
	// growing the test share only moves synsets into test.
	wide := tinyBenchmark(t, WordNetOptions{DevShare: 0.1, TestShare: 0.6})
	for id := range b.Queries[SplitTest] {
		if _, ok := wide.Queries[SplitTest][id]; !ok {
			t.Errorf("%s left test when the test share grew", id)
		}
	}
	// Documents are the whole collection whatever the split.
	if len(b.Docs) != 14 || len(wide.Docs) != 14 {
		t.Errorf("%d and %d documents, want 14", len(b.Docs), len(wide.Docs))
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s) // not fmt.Sscan, which reads "0300" as octal
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWordNetBenchmarkErrors(t *testing.T) {
	cases := []struct {
		name, file, text, want string
	}{
		{"pointer count too large", "data.noun",
			"00001000 03 n 01 entity 0 002 ~ 00002000 n 0000 | x\n", "data.noun:1: 2 pointers but only 4 fields"},
		{"bad pointer symbol", "data.noun",
			"  licence\n00001000 03 n 01 entity 0 001 ?? 00002000 n 0000 | x\n", `data.noun:2: pointer 1: unknown symbol "??"`},
		{"bad pos", "data.verb",
			"00008000 38 v 01 run 0 001 @ 00009000 x 0000 | x\n", `data.verb:1: pointer 1: part of speech "x"`},
		{"bad source/target", "data.verb",
			"00008000 38 v 01 run 0 001 @ 00009000 v 00g0 | x\n", `data.verb:1: pointer 1: source/target "00g0"`},
		{"dangling pointer", "data.adv",
			"00013000 02 r 01 quickly 0 001 \\ 00099999 a 0101 | with speed\n", `data.adv:1: pointer \ to a 00099999: no such synset`},
		{"target word out of range", "data.adv",
			"00013000 02 r 01 quickly 0 001 \\ 00014000 a 0103 | with speed\n", `data.adv:1: pointer \ names word 3 of a 00014000, which has 1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range tinyWordNet {
				files[k] = v
			}
			files[c.file] = c.text
			if c.file != "data.adj" {
				files["data.adj"] = "00014000 00 a 01 quick 0 000 | moving fast\n"
			}
			_, err := WordNetBenchmark(writeWordNet(t, files), WordNetOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	_, err := WordNetBenchmark(t.TempDir(), WordNetOptions{})
	if err == nil || !strings.Contains(err.Error(), "data.noun not found") {
		t.Errorf("missing files: %v", err)
	}
}

func TestBenchmarkDirRoundTrip(t *testing.T) {
	b := tinyBenchmark(t, WordNetOptions{DevShare: 0.3, TestShare: 0.3})
	dir := filepath.Join(t.TempDir(), "wn")
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	got, err := ReadBenchmarkDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("read back\n%+v\nwrote\n%+v", got, b)
	}
	col, err := os.ReadFile(filepath.Join(dir, "collection.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(col), "n00001000\tentity\nn00002000\tanimal; animals move; entity, run\n") {
		t.Errorf("collection.tsv starts %q", col[:80])
	}
	q, err := os.ReadFile(filepath.Join(dir, BenchmarkQrelsFile(SplitTest)))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(q)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != f[2] || f[1] != "0" || f[3] != "1" {
			t.Errorf("qrels line %q, want \"qid 0 qid 1\"", l)
		}
	}

	// A text that TSV cannot hold is an error, not a silent rewrite.
	bad := &Benchmark{Docs: []Document{{"d1", "two\tfields"}}}
	if err := bad.WriteDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), `"d1"`) {
		t.Errorf("tab in a text: %v", err)
	}
	// A queries file without its qrels names the missing file.
	if err := os.Remove(filepath.Join(dir, BenchmarkQrelsFile(SplitDev))); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBenchmarkDir(dir); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "qrels.dev.txt") {
		t.Errorf("missing qrels: %v", err)
	}
}

// The benchmark runs end to end through the index, search and evaluation.
func TestWordNetBenchmarkBM25(t *testing.T) {
	b := tinyBenchmark(t, WordNetOptions{DevShare: 0.3, TestShare: 0.3})
	path := filepath.Join(t.TempDir(), "wn.idx")
	if _, err := BuildIndex(path, b.Docs, IndexOptions{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	// "a young dog": the documents with "dog" are dog's and puppy's.
	rs, err := ix.Search("a young dog", DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := resultIDs(rs); !reflect.DeepEqual(got, []string{"n00003000", "n00007000"}) && !reflect.DeepEqual(got, []string{"n00007000", "n00003000"}) {
		t.Errorf("a young dog: %v", rs)
	}
	for _, sp := range Splits {
		run, err := ix.BatchSearch(b.QueryList(sp), DefaultSearchOptions())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := Evaluate(run, b.Qrels[sp], []Metric{MRR10, NDCG10, Recall100}, EvalOptions{Complete: true})
		if err != nil {
			t.Fatalf("%s: %v", sp, err)
		}
		if ev.NumQueries != len(b.Queries[sp]) {
			t.Errorf("%s: %d queries evaluated, want %d", sp, ev.NumQueries, len(b.Queries[sp]))
		}
	}
}

func resultIDs(rs []Result) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.DocID)
	}
	return ids
}
