// Command wnbench measures the first-stage rows of ir/RESULTS.md on the
// WordNet reverse-dictionary benchmark (ir.WordNetBenchmark): it builds the
// benchmark and its BM25 index, searches one split's queries with BM25 and
// with BM25+RM3 (Anserini's defaults), evaluates MRR@10, nDCG@10 and
// Recall@100 with trec_eval's semantics (-c: a query with no results
// scores 0), and prints Markdown tables with the sizes and timings.
//
// It is a program, not a test or a Go benchmark, because it reads the
// 117,659 synsets of the installed WordNet and takes about two minutes on
// a shared 2-core machine (most of it the single-query latency passes):
//
//	go run ./ir/internal/wnbench [-k 1000] [-split test] [-out dir] [-runs dir]
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/reprolab/repro/ir"
)

func main() {
	wordnet := flag.String("wordnet", "", "WordNet data directory (default: Debian's /usr/share/wordnet)")
	k := flag.Int("k", 1000, "results per query")
	split := flag.String("split", ir.SplitTest, "split whose queries are searched")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "goroutines for indexing and batch search")
	out := flag.String("out", "", "if set, write the benchmark files (collection.tsv, queries.*.tsv, qrels.*.txt) here")
	runs := flag.String("runs", "", "if set, write the TREC runs here")
	flag.Parse()
	if err := run(*wordnet, *k, *split, *workers, *out, *runs); err != nil {
		log.Fatal(err)
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func run(wordnet string, k int, split string, workers int, out, runsDir string) error {
	fmt.Printf("Go %s, %s/%s, NumCPU %d, GOMAXPROCS %d, load average at start %s\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg())

	t0 := time.Now()
	b, err := ir.WordNetBenchmark(wordnet, ir.WordNetOptions{})
	if err != nil {
		return err
	}
	buildBench := time.Since(t0)
	if out != "" {
		if err := b.WriteDir(out); err != nil {
			return err
		}
	}
	queries := b.QueryList(split)
	if len(queries) == 0 {
		return fmt.Errorf("split %q has no queries", split)
	}

	fmt.Println("| Benchmark | |")
	fmt.Println("|---|---|")
	fmt.Printf("| documents (synsets) | %d |\n", len(b.Docs))
	for _, sp := range ir.Splits {
		fmt.Printf("| %s queries | %d |\n", sp, len(b.Queries[sp]))
	}
	fmt.Printf("| benchmark construction (read WordNet, build documents) | %.2f s |\n", buildBench.Seconds())

	dir, err := os.MkdirTemp("", "wnbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "wordnet.idx")
	runtime.GC()
	t0 = time.Now()
	st, err := ir.BuildIndex(path, b.Docs, ir.IndexOptions{Workers: workers})
	if err != nil {
		return err
	}
	buildIndex := time.Since(t0)
	fmt.Printf("| index build, wall (%d workers) | %.2f s |\n", workers, buildIndex.Seconds())
	fmt.Printf("| index file size | %d bytes (%.1f MiB) |\n", st.Bytes, float64(st.Bytes)/(1<<20))
	fmt.Printf("| terms / postings | %d / %d |\n", st.NumTerms, st.NumPostings)
	fmt.Printf("| mean document length (analysed terms) | %.2f |\n", float64(st.SumTotalTermFreq)/float64(st.DocCount))
	qlen := 0
	an := ir.DefaultAnalyzer()
	for _, q := range queries {
		qlen += len(an.Analyze(q.Text))
	}
	fmt.Printf("| mean %s query length (analysed terms) | %.2f |\n", split, float64(qlen)/float64(len(queries)))
	fmt.Println()

	ix, err := ir.OpenIndex(path)
	if err != nil {
		return err
	}
	defer ix.Close()

	rm3 := ir.DefaultRM3()
	configs := []struct {
		name string
		opts ir.SearchOptions
	}{
		{"BM25 (k1 0.9, b 0.4)", ir.SearchOptions{K: k, BM25: ir.DefaultBM25()}},
		{"BM25+RM3 (10 terms, 10 docs, weight 0.5)", ir.SearchOptions{K: k, BM25: ir.DefaultBM25(), RM3: &rm3}},
	}
	metrics := []ir.Metric{ir.MRR10, ir.NDCG10, ir.Recall100}
	type row struct {
		name                string
		vals                []float64
		empty               int
		mean, p50, p95, p99 time.Duration
		qps                 float64
		same                bool
	}
	var rows []row
	for _, c := range configs {
		// Latency: one query at a time, on one goroutine, as a service
		// answering a single request would.
		lat := make([]time.Duration, len(queries))
		single := ir.Run{}
		var total time.Duration
		for i, q := range queries {
			t := time.Now()
			rs, err := ix.Search(q.Text, c.opts)
			lat[i] = time.Since(t)
			if err != nil {
				return err
			}
			total += lat[i]
			if len(rs) > 0 {
				single[q.ID] = rs
			}
		}
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }

		// Throughput: the whole split with BatchSearch on `workers` goroutines.
		o := c.opts
		o.Workers = workers
		t := time.Now()
		batch, err := ix.BatchSearch(queries, o)
		if err != nil {
			return err
		}
		el := time.Since(t)

		ev, err := ir.Evaluate(batch, b.Qrels[split], metrics, ir.EvalOptions{Complete: true})
		if err != nil {
			return err
		}
		rows = append(rows, row{
			name: c.name, vals: ev.Mean, empty: len(ev.NotInRun),
			mean: total / time.Duration(len(queries)), p50: pct(0.5), p95: pct(0.95), p99: pct(0.99),
			qps: float64(len(queries)) / el.Seconds(), same: reflect.DeepEqual(single, batch),
		})
		if runsDir != "" {
			if err := os.MkdirAll(runsDir, 0o755); err != nil {
				return err
			}
			tag := "bm25"
			if c.opts.RM3 != nil {
				tag = "bm25-rm3"
			}
			if err := ir.WriteRunFile(filepath.Join(runsDir, fmt.Sprintf("wordnet.%s.%s.trec", split, tag)), batch, tag); err != nil {
				return err
			}
		}
	}

	fmt.Printf("WordNet reverse dictionary, %s split (%d queries), k = %d, trec_eval -c:\n\n", split, len(queries), k)
	fmt.Println("| Model | MRR@10 | nDCG@10 | Recall@100 | queries with no result | latency mean / p50 / p95 / p99 (1 thread) | batch throughput |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %.4f | %.4f | %.4f | %d | %.2f / %.2f / %.2f / %.2f ms | %.0f q/s (%d workers) |\n",
			r.name, r.vals[0], r.vals[1], r.vals[2], r.empty,
			ms(r.mean), ms(r.p50), ms(r.p95), ms(r.p99), r.qps, workers)
	}
	fmt.Println()
	for _, r := range rows {
		if !r.same {
			fmt.Printf("WARNING: %s: Search and BatchSearch returned different runs\n", r.name)
		}
	}
	fmt.Printf("load average at end %s\n", loadavg())
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
