package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/ir"
	"github.com/reprolab/repro/torchmods"
)

// irFixture is a collection small enough to rank by hand. Lucene's BM25 is
// w * tf / (tf + k1 * (1 - b + b * dl/avgdl)); with k1 0.9, b 0.4 and
// avgdl 2:
//   - q1 "zebra" matches only d1: rank 1.
//   - q2 "cat" matches d2 "cat cat" (tf 2) above d3 "cat dog" (tf 1, same
//     length), so the relevant d3 is at rank 2.
//   - q3 "unicorn" matches nothing: no result, 0 with -c.
//   - q4 "birds" (stemmed to bird) ranks d4 (tf 3: 3/3.9 = 0.77 of w)
//     above d5 (tf 2: 2/2.9 = 0.69) above d6 (tf 1: 1/1.9 = 0.53), so the
//     relevant d6 is at rank 3.
//
// MRR@10 with -c is (1 + 1/2 + 0 + 1/3) / 4 = 0.4583; without -c q3 is not
// counted: (1 + 1/2 + 1/3) / 3 = 0.6111.
func irFixture(t *testing.T) (dir, col, queries, qrels string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	col = write("collection.tsv", "d1\tzebra stripes\nd2\tcat cat\nd3\tcat dog\nd4\tbird bird bird\nd5\tbird bird\nd6\tbird fish\nd7\thorse\n")
	queries = write("queries.tsv", "q1\tzebra\nq2\tcat\nq3\tunicorn\nq4\tbirds\n")
	qrels = write("qrels.txt", "q1 0 d1 1\nq2 0 d3 1\nq3 0 d7 1\nq4 0 d6 1\n")
	return dir, col, queries, qrels
}

// irMean returns the "all" value of metric in eval's output.
func irMean(t *testing.T, out, metric string) float64 {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == metric && f[1] == "all" {
			v, err := strconv.ParseFloat(f[2], 64)
			require.NoError(t, err)
			return v
		}
	}
	t.Fatalf("no %s line in %q", metric, out)
	return 0
}

// index -> search -> eval on the hand-ranked fixture gives the expected
// MRR@10, with and without -c, per query with -q; search writes the same
// run to a file and to standard output; RM3 runs; a BEIR folder goes
// through the same commands.
func TestIREndToEnd(t *testing.T) {
	dir, col, queries, qrels := irFixture(t)
	idx := filepath.Join(dir, "t.idx")
	out, stderr, code := runRepro(t, "ir", "index", "-collection", col, "-out", idx)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "documents   7 (7 with terms)")
	assert.Contains(t, out, "wrote "+idx)

	run := filepath.Join(dir, "bm25.trec")
	_, stderr, code = runRepro(t, "ir", "search", "-index", idx, "-queries", queries, "-out", run)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "4 queries (1 with no result)")
	b, err := os.ReadFile(run)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 6, "q1: 1, q2: 2, q3: none, q4: 3 results")
	for i, want := range []string{"q1 Q0 d1 1 ", "q2 Q0 d2 1 ", "q2 Q0 d3 2 ", "q4 Q0 d4 1 ", "q4 Q0 d5 2 ", "q4 Q0 d6 3 "} {
		assert.True(t, strings.HasPrefix(lines[i], want), "line %d %q, want %q...", i+1, lines[i], want)
		assert.True(t, strings.HasSuffix(lines[i], " bm25"), lines[i])
	}
	stdout, stderr, code := runRepro(t, "ir", "search", "-index", idx, "-queries", queries, "-threads", "1")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, string(b), stdout, "the same run on standard output")

	out, stderr, code = runRepro(t, "ir", "eval", "-c", "-qrels", qrels, run)
	require.Equal(t, 0, code, stderr)
	assert.InDelta(t, (1+0.5+0+1.0/3)/4, irMean(t, out, "MRR@10"), 1e-4)
	assert.InDelta(t, 0.75, irMean(t, out, "Recall@100"), 1e-9, "all but q3's relevant document retrieved")
	assert.InDelta(t, 4, irMean(t, out, "num_q"), 0)
	out, _, code = runRepro(t, "ir", "eval", "-qrels", qrels, "-m", "MRR@10,MAP,P@1", "-q", run)
	require.Equal(t, 0, code)
	assert.InDelta(t, (1+0.5+1.0/3)/3, irMean(t, out, "MRR@10"), 1e-4)
	assert.InDelta(t, 1.0/3, irMean(t, out, "P@1"), 1e-4)
	assert.Regexp(t, `(?m)^MRR@10\s+\tq4\t0\.3333$`, out, "per-query lines with -q")
	assert.InDelta(t, 3, irMean(t, out, "num_q"), 0)

	rm3 := filepath.Join(dir, "rm3.trec")
	_, stderr, code = runRepro(t, "ir", "search", "-index", idx, "-queries", queries, "-rm3", "-k", "2", "-out", rm3)
	require.Equal(t, 0, code, stderr)
	b, err = os.ReadFile(rm3)
	require.NoError(t, err)
	assert.Contains(t, string(b), " bm25-rm3\n")
	assert.NotContains(t, string(b), " 3 ", "-k 2")

	// The same collection as a BEIR folder: corpus.jsonl (title + text),
	// queries.jsonl, qrels/test.tsv with its header.
	beir := filepath.Join(dir, "beir")
	require.NoError(t, os.MkdirAll(filepath.Join(beir, "qrels"), 0o755))
	var corpus, qs bytes.Buffer
	for _, l := range strings.Split(strings.TrimSpace(string(must(os.ReadFile(col)))), "\n") {
		id, text, _ := strings.Cut(l, "\t")
		j, _ := json.Marshal(map[string]string{"_id": id, "title": "", "text": text})
		corpus.Write(append(j, '\n'))
	}
	for _, l := range strings.Split(strings.TrimSpace(string(must(os.ReadFile(queries)))), "\n") {
		id, text, _ := strings.Cut(l, "\t")
		j, _ := json.Marshal(map[string]string{"_id": id, "text": text})
		qs.Write(append(j, '\n'))
	}
	require.NoError(t, os.WriteFile(filepath.Join(beir, "corpus.jsonl"), corpus.Bytes(), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(beir, "queries.jsonl"), qs.Bytes(), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(beir, "qrels", "test.tsv"),
		[]byte("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\nq3\td7\t1\nq4\td6\t1\n"), 0o644))
	bidx := filepath.Join(dir, "beir.idx")
	out, stderr, code = runRepro(t, "ir", "index", "-collection", beir, "-out", bidx)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "(beir)")
	brun := filepath.Join(dir, "beir.trec")
	_, stderr, code = runRepro(t, "ir", "search", "-index", bidx, "-queries", beir, "-out", brun)
	require.Equal(t, 0, code, stderr)
	out, stderr, code = runRepro(t, "ir", "eval", "-c", "-qrels-format", "beir", "-qrels", filepath.Join(beir, "qrels", "test.tsv"), brun)
	require.Equal(t, 0, code, stderr)
	assert.InDelta(t, (1+0.5+0+1.0/3)/4, irMean(t, out, "MRR@10"), 1e-4)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fuse by RRF and by interpolation, on runs whose fused order is known:
// A ranks d1 > d2 > d3, B ranks d3 > d1.
func TestIRFuse(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.trec"), filepath.Join(dir, "b.trec")
	require.NoError(t, os.WriteFile(a, []byte("q1 Q0 d1 1 3 a\nq1 Q0 d2 2 2 a\nq1 Q0 d3 3 1 a\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("q1 Q0 d3 1 0.9 b\nq1 Q0 d1 2 0.5 b\n"), 0o644))
	parse := func(out string) (ids []string, scores []float64) {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			require.Len(t, f, 6, l)
			ids = append(ids, f[2])
			scores = append(scores, must(strconv.ParseFloat(f[4], 64)))
		}
		return ids, scores
	}

	// RRF, k 60: d1 1/61 + 1/62, d3 1/63 + 1/61, d2 1/62.
	out, stderr, code := runRepro(t, "ir", "fuse", "-method", "rrf", a, b)
	require.Equal(t, 0, code, stderr)
	ids, scores := parse(out)
	assert.Equal(t, []string{"d1", "d3", "d2"}, ids)
	assert.InDeltaSlice(t, []float64{1.0/61 + 1.0/62, 1.0/63 + 1.0/61, 1.0 / 62}, scores, 1e-12)
	assert.Contains(t, out, " rrf\n")

	// Min-max, weights 1 and 2: A gives d1 1, d2 0.5, d3 0; B gives d3 1,
	// d1 0 and d2 (missing) B's lowest, 0. Fused: d3 2, d1 1, d2 0.5.
	out, stderr, code = runRepro(t, "ir", "fuse", "-method", "interpolate", "-weights", "1,2", "-tag", "hyb", a, b)
	require.Equal(t, 0, code, stderr)
	ids, scores = parse(out)
	assert.Equal(t, []string{"d3", "d1", "d2"}, ids)
	assert.InDeltaSlice(t, []float64{2, 1, 0.5}, scores, 1e-12)
	assert.Contains(t, out, " hyb\n")
	out, stderr, code = runRepro(t, "ir", "fuse", "-method", "interpolate", "-weights", "1,2", "-k", "2", a, b)
	require.Equal(t, 0, code, stderr)
	ids, _ = parse(out)
	assert.Equal(t, []string{"d3", "d1"}, ids, "-k 2")

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-method", "interpolate", "-weights", "1", a, b}, "-weights"},
		{[]string{"-method", "interpolate", "-weights", "1,x", a, b}, "-weights"},
		{[]string{"-method", "interpolate", "-norm", "l2", a, b}, "-norm"},
		{[]string{"-method", "rrf", "-norm", "zscore", a, b}, "-norm"},
		{[]string{"-method", "mean", a, b}, "-method"},
		{[]string{a}, "at least two runs"},
	} {
		_, stderr, code := runRepro(t, append([]string{"ir", "fuse"}, tc.args...)...)
		assert.Equal(t, 2, code, "%v", tc.args)
		assert.Contains(t, stderr, tc.msg, "%v", tc.args)
	}
	_, stderr, code = runRepro(t, "ir", "fuse", a, filepath.Join(dir, "missing.trec"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "missing.trec")
}

// reproProcess is `repro ARGS` running in the background, its standard
// error collected line by line.
type reproProcess struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan string
	done  chan error
}

func startRepro(t *testing.T, args ...string) *reproProcess {
	t.Helper()
	p := &reproProcess{cmd: exec.Command(os.Args[0], args...), seen: make(chan string, 100), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "REPRO_TEST_AS_MAIN=1")
	pipe, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.seen <- sc.Text():
			default:
			}
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

func (p *reproProcess) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// `repro ir serve` on port 0 answers searches as `repro ir search` ranks,
// `repro ir loadtest` against it sees no error, and SIGTERM shuts it down
// with exit status 0.
func TestIRServeAndLoadtest(t *testing.T) {
	dir, col, queries, _ := irFixture(t)
	idx := filepath.Join(dir, "t.idx")
	_, stderr, code := runRepro(t, "ir", "index", "-collection", col, "-out", idx)
	require.Equal(t, 0, code, stderr)

	srv := startRepro(t, "ir", "serve", "-index", idx, "-addr", "127.0.0.1:0", "-max-concurrent", "2", "-timeout", "5s")
	listening := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	var url string
	deadline := time.After(60 * time.Second)
	for url == "" {
		select {
		case line := <-srv.seen:
			if m := listening.FindStringSubmatch(line); m != nil {
				url = m[1]
			}
		case err := <-srv.done:
			t.Fatalf("serve exited (%v): %s", err, srv.stderr())
		case <-deadline:
			t.Fatalf("serve did not say where it listens: %s", srv.stderr())
		}
	}

	resp, err := http.Post(url+"/search", "application/json", strings.NewReader(`{"queries": ["cat", "unicorn"], "k": 2}`))
	require.NoError(t, err)
	var sr ir.SearchResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sr))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, sr.Results, 2)
	require.Len(t, sr.Results[0], 2)
	assert.Equal(t, "d2", sr.Results[0][0].DocID)
	assert.Equal(t, "d3", sr.Results[0][1].DocID)
	assert.Empty(t, sr.Results[1])

	out, stderr, code := runRepro(t, "ir", "loadtest", "-url", url, "-queries", queries, "-c", "4", "-n", "200", "-k", "3")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "200 requests, 4 clients, 0 errors")
	assert.Contains(t, out, "p99")

	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-srv.done:
		require.NoError(t, err, srv.stderr())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM: %s", srv.stderr())
	}
	assert.Contains(t, srv.stderr(), "shutting down")
	assert.Contains(t, srv.stderr(), "stopped")

	// Nothing listens any more: every request fails, and loadtest says so.
	out, stderr, code = runRepro(t, "ir", "loadtest", "-url", url, "-queries", queries, "-c", "2", "-n", "4")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "4 errors")
	assert.Contains(t, stderr, "4 of 4 requests failed")
}

// Bad input is an error naming the file and line, or the flag; never a
// panic.
func TestIRBadInput(t *testing.T) {
	dir, col, queries, qrels := irFixture(t)
	idx := filepath.Join(dir, "t.idx")
	_, stderr, code := runRepro(t, "ir", "index", "-collection", col, "-out", idx)
	require.Equal(t, 0, code, stderr)
	run := filepath.Join(dir, "run.trec")
	_, stderr, code = runRepro(t, "ir", "search", "-index", idx, "-queries", queries, "-out", run)
	require.Equal(t, 0, code, stderr)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"qrels line with three fields", []string{"eval", "-qrels", write("bad.qrels", "q1 0 d1 1\nq2 0 d3\n"), run}, 1, "bad.qrels:2"},
		{"qrels grade not an integer", []string{"eval", "-qrels", write("grade.qrels", "q1 0 d1 high\n"), run}, 1, "grade.qrels:1"},
		{"missing qrels", []string{"eval", "-qrels", filepath.Join(dir, "none.qrels"), run}, 1, "none.qrels"},
		{"run with a bad score", []string{"eval", "-qrels", qrels, write("bad.trec", "q1 Q0 d1 1 3 a\nq1 Q0 d2 2 x a\n")}, 1, "bad.trec:2"},
		{"unknown metric", []string{"eval", "-qrels", qrels, "-m", "MRR@10,F1", run}, 2, "-m"},
		{"eval without -qrels", []string{"eval", run}, 2, "-qrels"},
		{"collection line without a tab", []string{"index", "-collection", write("bad.tsv", "d1\tok\nd2 no tab\n"), "-out", filepath.Join(dir, "x.idx")}, 1, "bad.tsv:2"},
		{"duplicate document id", []string{"index", "-collection", write("dup.tsv", "d1\ta\nd1\tb\n"), "-out", filepath.Join(dir, "x.idx")}, 1, `dup.tsv: ir: in the last batch of documents: ir: duplicate doc id "d1"`},
		{"unknown collection format", []string{"index", "-collection", col, "-format", "xml", "-out", filepath.Join(dir, "x.idx")}, 2, "-format"},
		{"folder without a collection", []string{"index", "-collection", t.TempDir(), "-out", filepath.Join(dir, "x.idx")}, 1, "corpus.jsonl"},
		{"missing collection", []string{"index", "-collection", filepath.Join(dir, "none.tsv"), "-out", filepath.Join(dir, "x.idx")}, 1, "none.tsv"},
		{"not an index", []string{"search", "-index", col, "-queries", queries}, 1, "-index"},
		{"search without -index", []string{"search", "-queries", queries}, 2, "-index"},
		{"bad queries line", []string{"search", "-index", idx, "-queries", write("bad.queries", "q1\tok\nq2\n")}, 1, "bad.queries:2"},
		{"b out of range", []string{"search", "-index", idx, "-queries", queries, "-b", "1.5"}, 2, "-b"},
		{"k below 1", []string{"search", "-index", idx, "-queries", queries, "-k", "0"}, 2, "-k"},
		{"tag with a space", []string{"search", "-index", idx, "-queries", queries, "-tag", "a b"}, 2, "-tag"},
		{"serve, bad address", []string{"serve", "-index", idx, "-addr", "nowhere:port"}, 1, "-addr"},
		{"loadtest, bad URL", []string{"loadtest", "-url", "ftp://x", "-queries", queries, "-n", "1"}, 1, "-url"},
		{"loadtest, -c 0", []string{"loadtest", "-url", "http://127.0.0.1:1", "-queries", queries, "-c", "0"}, 2, "-c"},
		{"benchmark without -out", []string{"benchmark"}, 2, "-out"},
		{"benchmark, no WordNet", []string{"benchmark", "-out", filepath.Join(dir, "wn"), "-wordnet", filepath.Join(dir, "nowordnet")}, 1, "-wordnet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runRepro(t, append([]string{"ir"}, tc.args...)...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.msg)
			assert.NotContains(t, stderr, "panic")
		})
	}
}

// With WordNet installed, `repro ir benchmark` writes the benchmark of
// ir/RESULTS.md: 117,659 documents, the three splits' queries and qrels.
func TestIRBenchmark(t *testing.T) {
	if _, err := os.Stat(filepath.Join(data.WordNetDir, "data.noun")); err != nil {
		t.Skipf("WordNet is not installed: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "wn")
	out, stderr, code := runRepro(t, "ir", "benchmark", "-out", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "117659 documents, 93984 train queries, 11869 dev queries, 11806 test queries")
	for _, f := range []string{ir.BenchmarkCollectionFile, ir.BenchmarkQueriesFile(ir.SplitTest), ir.BenchmarkQrelsFile(ir.SplitTest),
		ir.BenchmarkQueriesFile(ir.SplitDev), ir.BenchmarkQrelsFile(ir.SplitTrain)} {
		fi, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
		assert.Positive(t, fi.Size(), f)
	}
	b, err := os.ReadFile(filepath.Join(dir, ir.BenchmarkQrelsFile(ir.SplitTest)))
	require.NoError(t, err)
	assert.Equal(t, 11806, bytes.Count(b, []byte("\n")), "one judgement per test query")
}

// irTinyBenchmark is ir/dense_test.go's synthetic benchmark: 36 documents
// of three sentences, one query per document judged against it, 9 of them
// in the dev split.
func irTinyBenchmark(t *testing.T) string {
	t.Helper()
	animals := []string{"dog", "cat", "horse", "cow", "sheep", "goat", "duck", "hen", "fox", "wolf", "bear", "deer"}
	traits := []string{"loyal", "quiet", "fast", "big", "woolly", "stubborn"}
	b := &ir.Benchmark{Queries: map[string]map[string]string{}, Qrels: map[string]ir.Qrels{}}
	for _, sp := range ir.Splits {
		b.Queries[sp], b.Qrels[sp] = map[string]string{}, ir.Qrels{}
	}
	for i, a := range animals {
		for j, tr := range traits[:3] {
			id := fmt.Sprintf("%s%d", a, j)
			trait := traits[(i+j)%len(traits)]
			b.Docs = append(b.Docs, ir.Document{ID: id, Text: fmt.Sprintf("%s, %s %s; the %s %s is %s; animal, %s", a, tr, a, trait, a, tr, trait)})
			sp := ir.SplitTrain
			if (i+j)%4 == 0 {
				sp = ir.SplitDev
			}
			b.Queries[sp][id] = fmt.Sprintf("a %s animal that is %s", trait, tr)
			b.Qrels[sp][id] = map[string]int{id: 1}
		}
	}
	dir := filepath.Join(t.TempDir(), "bench")
	require.NoError(t, b.WriteDir(dir))
	return dir
}

// irTinyRuns trains, for a few steps each, a tiny ir.dense run (one shared
// tower, mean pooling, cosine) and a tiny ir.rerank run (pointwise,
// re-ranking BM25's top 5 of the dev queries) on the benchmark.
func irTinyRuns(t *testing.T, bench string) (dense, rerank string) {
	t.Helper()
	work := t.TempDir()
	bert := torchmods.BertConfig{HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 32, HiddenAct: "gelu",
		MaxPositionEmbeddings: 64, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02}
	vocab := filepath.Join(work, "vocab.txt")
	dc := ir.DefaultDense()
	dc.Trainer.MaxSteps, dc.Trainer.LogEvery, dc.Trainer.TensorBoard, dc.Trainer.KeepCheckpoints = 3, 1, false, 1
	dc.Tokenizer, dc.VocabSize, dc.Model = vocab, 120, bert
	dc.Encoder = ir.EncoderKeys{Shared: true, Pooling: "mean", Similarity: "cosine", Temperature: 0.05, QueryMaxLen: 16, PassageMaxLen: 32}
	dc.Negatives.Hard = 0
	dc.Data.Benchmark, dc.Data.Batch = bench, 4
	dc.Optim.LR = 1e-3
	dc.Eval.Batch = 8
	dense = filepath.Join(work, "dense")
	var log strings.Builder
	_, err := ir.DenseTask.Start(dc, dense, false, &log)
	require.NoError(t, err, log.String())

	rc := ir.DefaultRerankConfig()
	rc.Trainer.MaxSteps, rc.Trainer.LogEvery, rc.Trainer.TensorBoard, rc.Trainer.KeepCheckpoints = 3, 1, false, 1
	rc.Tokenizer, rc.Model = vocab, bert
	rc.Model.MaxPositionEmbeddings = 32
	rc.Loss, rc.MaxQueryLen, rc.MaxLen = ir.LossPointwise, 12, 28
	rc.Optim.LR = 1e-3
	rc.Data = ir.RerankData{Benchmark: bench, NegativesDepth: 10, Negatives: 2, Batch: 4}
	rc.Eval = ir.RerankEval{Split: ir.SplitDev, RerankDepth: 5, Batch: 16}
	rerank = filepath.Join(work, "rerank")
	_, err = ir.RerankTask.Start(rc, rerank, false, io.Discard)
	require.NoError(t, err)
	return dense, rerank
}

// irReadRunSorted reads a run with each query's results in trec_eval's
// order.
func irReadRunSorted(t *testing.T, path string) ir.Run {
	t.Helper()
	run, err := ir.ReadRunFile(path)
	require.NoError(t, err)
	for _, rs := range run {
		ir.SortTREC(rs)
	}
	return run
}

// irSameScores checks that got holds, for every query of want, want's top
// len(got[q]) scores rank by rank and, for each of its documents, want's
// score of that document (so a near-tie ordered differently by float
// rounding is no failure, and a wrong document is).
func irSameScores(t *testing.T, what string, got, want ir.Run, k int, tol float64) {
	t.Helper()
	require.NotEmpty(t, want, what)
	for q, ws := range want {
		gs := got[q]
		require.Len(t, gs, min(k, len(ws)), "%s: query %s", what, q)
		byDoc := map[string]float64{}
		for _, r := range ws {
			byDoc[r.DocID] = r.Score
		}
		for j, r := range gs {
			assert.InDelta(t, ws[j].Score, r.Score, tol*max(1, math.Abs(r.Score)), "%s: query %s rank %d", what, q, j+1)
			s, ok := byDoc[r.DocID]
			if assert.True(t, ok, "%s: query %s: %s is not in the reference", what, q, r.DocID) {
				assert.InDelta(t, s, r.Score, tol*max(1, math.Abs(s)), "%s: query %s, %s", what, q, r.DocID)
			}
		}
	}
}

// The dense and re-ranking stages from the command line, on runs made
// here: `search -dense` ranks as the ir.dense run's own evaluation did;
// `hnsw` builds the graph and measures it, and `search -hnsw` with a
// candidate list as large as the collection ranks as exact search; hybrid
// search equals fusing the two runs with `fuse`'s functions; `-rerank`
// gives the ir.rerank run's own re-ranked scores of BM25's top 5, in a
// new order; serve runs the same pipeline; bad flags are usage errors
// naming them.
func TestIRDenseHybridRerank(t *testing.T) {
	bench := irTinyBenchmark(t)
	dense, rerank := irTinyRuns(t, bench)
	dir := t.TempDir()
	queries := filepath.Join(bench, ir.BenchmarkQueriesFile(ir.SplitDev))
	idx := filepath.Join(dir, "bm25.idx")
	_, stderr, code := runRepro(t, "ir", "index", "-collection", bench, "-out", idx)
	require.Equal(t, 0, code, stderr)
	search := func(name string, args ...string) ir.Run {
		t.Helper()
		out := filepath.Join(dir, name)
		_, stderr, code := runRepro(t, append([]string{"ir", "search", "-queries", queries, "-out", out}, args...)...)
		require.Equal(t, 0, code, stderr)
		return irReadRunSorted(t, out)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"neither -index nor -dense", []string{"search", "-queries", queries}, 2, "-dense"},
		{"-hnsw without -dense", []string{"search", "-index", idx, "-hnsw", "-queries", queries}, 2, "-hnsw"},
		{"-ef without -hnsw", []string{"search", "-dense", dense, "-ef", "10", "-queries", queries}, 2, "-ef"},
		{"-hybrid with one stage", []string{"search", "-index", idx, "-hybrid", "rrf", "-queries", queries}, 2, "-hybrid"},
		{"unknown -hybrid", []string{"search", "-index", idx, "-dense", dense, "-hybrid", "max", "-queries", queries}, 2, "-hybrid"},
		{"-weights with rrf", []string{"search", "-index", idx, "-dense", dense, "-weights", "1,2", "-queries", queries}, 2, "-weights"},
		{"three -weights", []string{"search", "-index", idx, "-dense", dense, "-hybrid", "interpolate", "-weights", "1,2,3", "-queries", queries}, 2, "-weights"},
		{"-rerank without -collection", []string{"search", "-index", idx, "-rerank", rerank, "-queries", queries}, 2, "-collection"},
		{"-rerank-depth without -rerank", []string{"search", "-index", idx, "-rerank-depth", "5", "-queries", queries}, 2, "-rerank-depth"},
		{"negative -rerank-depth", []string{"search", "-index", idx, "-rerank", rerank, "-collection", bench, "-rerank-depth", "-1", "-queries", queries}, 2, "-rerank-depth"},
		{"-rm3 without -index", []string{"search", "-dense", dense, "-rm3", "-queries", queries}, 2, "-rm3"},
		{"-device", []string{"search", "-dense", dense, "-device", "tpu", "-queries", queries}, 2, "-device"},
		{"-dense not a run", []string{"search", "-dense", bench, "-queries", queries}, 1, "-dense"},
		{"-hnsw before repro ir hnsw", []string{"search", "-dense", dense, "-hnsw", "-queries", queries}, 1, "repro ir hnsw -dense"},
		{"-rerank not a model", []string{"search", "-index", idx, "-rerank", bench, "-collection", bench, "-queries", queries}, 1, "-rerank"},
		{"serve, -hybrid with one stage", []string{"serve", "-dense", dense, "-hybrid", "rrf"}, 2, "-hybrid"},
		{"hnsw without -dense", []string{"hnsw"}, 2, "-dense"},
		{"hnsw -m 1", []string{"hnsw", "-dense", dense, "-m", "1"}, 2, "-m"},
		{"hnsw -ef without -queries", []string{"hnsw", "-dense", dense, "-ef", "10"}, 2, "-ef"},
		{"hnsw -ef 0", []string{"hnsw", "-dense", dense, "-queries", queries, "-ef", "10,0"}, 2, "-ef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runRepro(t, append([]string{"ir"}, tc.args...)...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.msg)
			assert.NotContains(t, stderr, "panic")
		})
	}

	// Exact dense search: the run's own evaluation (run.dev.trec, the same
	// DenseRetriever) ranked these queries.
	exact := search("dense.trec", "-dense", dense, "-k", "5")
	irSameScores(t, "dense", exact, irReadRunSorted(t, filepath.Join(dense, "run.dev.trec")), 5, 1e-4)
	assert.Len(t, exact, 9)
	assert.Contains(t, string(must(os.ReadFile(filepath.Join(dir, "dense.trec")))), " dense\n")

	// The graph, measured on the dev queries, then searched with a list
	// as long as the collection: exact search's ranking.
	out, stderr, code := runRepro(t, "ir", "hnsw", "-dense", dense, "-workers", "1", "-queries", queries, "-k", "5", "-ef", "5,50")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "documents   36 of 16 floats (cosine similarity)")
	assert.Contains(t, out, "efConstruction 200, efSearch 64, seed 100")
	assert.Contains(t, out, "wrote "+filepath.Join(dense, "passages.dense.hnsw"))
	assert.Regexp(t, `(?m)^50\s+1\.0000\s`, out, "recall@5 at ef 50, the whole collection: 1")
	assert.Contains(t, out, "recall@5")
	approx := search("hnsw.trec", "-dense", dense, "-hnsw", "-ef", "50", "-k", "5")
	irSameScores(t, "dense-hnsw", approx, exact, 5, 1e-5)
	assert.Contains(t, string(must(os.ReadFile(filepath.Join(dir, "hnsw.trec")))), " dense-hnsw\n")

	// Hybrid: each stage's top 5, fused.
	bm25 := search("bm25.trec", "-index", idx, "-k", "5")
	hyb := search("rrf.trec", "-index", idx, "-dense", dense, "-k", "5")
	want, err := ir.RRF([]ir.Run{bm25, exact}, 0, 5)
	require.NoError(t, err)
	irSameScores(t, "rrf", hyb, want.Top(5), 5, 1e-12)
	assert.Contains(t, string(must(os.ReadFile(filepath.Join(dir, "rrf.trec")))), " bm25+dense-rrf\n")
	hyb = search("interp.trec", "-index", idx, "-dense", dense, "-hybrid", "interpolate", "-weights", "1,2", "-norm", "zscore", "-k", "5")
	want, err = ir.Interpolate([]ir.Run{bm25, exact}, []float64{1, 2}, ir.ZScore, 5)
	require.NoError(t, err)
	irSameScores(t, "interpolate", hyb, want.Top(5), 5, 1e-9)

	// Re-ranking BM25's top 5: the ir.rerank run's scores (its config's
	// lengths, 12 and 28 tokens, read from the run), the same five
	// documents, and a new order for some query.
	rr := search("rerank.trec", "-index", idx, "-rerank", rerank, "-collection", bench, "-rerank-depth", "5", "-k", "5")
	irSameScores(t, "rerank", rr, irReadRunSorted(t, filepath.Join(rerank, "rerank.dev.trec")), 5, 1e-4)
	reordered := false
	for q, rs := range rr {
		var a, b []string
		for j := range rs {
			a, b = append(a, rs[j].DocID), append(b, bm25[q][j].DocID)
		}
		reordered = reordered || !slices.Equal(a, b)
		slices.Sort(a)
		slices.Sort(b)
		assert.Equal(t, b, a, "query %s: re-ranked documents are BM25's top 5", q)
	}
	assert.True(t, reordered, "the cross-encoder reorders some query's top 5")
	assert.Contains(t, string(must(os.ReadFile(filepath.Join(dir, "rerank.trec")))), " bm25+monobert\n")

	// serve runs the same pipeline as search: dense HNSW + monoBERT.
	both := search("both.trec", "-dense", dense, "-hnsw", "-rerank", rerank, "-collection", bench, "-rerank-depth", "10", "-k", "3")
	srv := startRepro(t, "ir", "serve", "-dense", dense, "-hnsw", "-rerank", rerank, "-collection", bench, "-rerank-depth", "10",
		"-addr", "127.0.0.1:0", "-timeout", "20s")
	listening := regexp.MustCompile(`dense-hnsw\+monobert over .* listening on (http://127\.0\.0\.1:\d+)`)
	var url string
	deadline := time.After(60 * time.Second)
	for url == "" {
		select {
		case line := <-srv.seen:
			if m := listening.FindStringSubmatch(line); m != nil {
				url = m[1]
			}
		case err := <-srv.done:
			t.Fatalf("serve exited (%v): %s", err, srv.stderr())
		case <-deadline:
			t.Fatalf("serve did not say where it listens: %s", srv.stderr())
		}
	}
	qs, err := ir.ReadTSVQueries(queries)
	require.NoError(t, err)
	body, _ := json.Marshal(map[string]any{"query": qs[0].Text, "k": 3})
	resp, err := http.Post(url+"/search", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	var sr ir.SearchResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sr))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, sr.Results, 1)
	got := ir.Run{qs[0].ID: nil}
	for _, h := range sr.Results[0] {
		got[qs[0].ID] = append(got[qs[0].ID], ir.Result{DocID: h.DocID, Score: h.Score})
	}
	irSameScores(t, "serve", got, ir.Run{qs[0].ID: both[qs[0].ID]}, 3, 1e-4)
	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-srv.done:
		require.NoError(t, err, srv.stderr())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM: %s", srv.stderr())
	}
}
