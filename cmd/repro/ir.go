package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/ir"
)

func irCommand() *cli.Command {
	return &cli.Command{
		Name:  "ir",
		Short: "information retrieval (Fan et al., 2021): BM25 index and search, fusion, trec_eval, search service",
		Long: `ir is the command line of package ir: the WordNet reverse-dictionary benchmark, BM25
(Anserini's analyzer and Lucene's scoring) and RM3, TREC runs, fusion, evaluation with
trec_eval's semantics, and the HTTP search service with its load test. Files are TREC and MS
MARCO-style (docid<TAB>text collections, qid<TAB>text queries, "qid 0 docid rel" qrels,
"qid Q0 docid rank score tag" runs) or BEIR's (corpus.jsonl, queries.jsonl, qrels/*.tsv).

	repro ir benchmark -out wn
	repro ir index -collection wn -out wn.idx
	repro ir search -index wn.idx -queries wn/queries.test.tsv -out bm25.trec
	repro ir eval -c -qrels wn/qrels.test.txt bm25.trec`,
		Sub: []*cli.Command{irBenchmark(), irIndex(), irSearch(), irFuse(), irEval(), irServe(), irLoadtest()},
	}
}

func irBenchmark() *cli.Command {
	var out, wordnet string
	return &cli.Command{
		Name:  "benchmark",
		Short: "write the WordNet reverse-dictionary benchmark (collection, queries, qrels)",
		Usage: "-out DIR [-wordnet DIR]",
		Long: `benchmark builds the reverse dictionary of ir/RESULTS.md from WordNet 3.0 (each synset's
definition a query, each synset a document of its lemmas, examples and related lemmas, the
query's own synset the one relevant document; queries split 80/10/10 by a hash of the synset)
and writes it to DIR as collection.tsv, queries.{train,dev,test}.tsv and qrels.{train,dev,test}.txt.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "the folder to write")
			fs.StringVar(&wordnet, "wordnet", data.WordNetDir, "WordNet 3.0's dict folder (data.noun, data.verb, data.adj, data.adv)")
		},
		Run: func(env *cli.Env, args []string) error {
			if out == "" {
				return cli.Usagef("-out names the folder to write")
			}
			if err := irNoArgs(args); err != nil {
				return err
			}
			start := time.Now()
			b, err := ir.WordNetBenchmark(wordnet, ir.WordNetOptions{})
			if err != nil {
				return fmt.Errorf("-wordnet %s: %w", wordnet, err)
			}
			if err := b.WriteDir(out); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "wrote %s in %s: %d documents", out, irSeconds(time.Since(start)), len(b.Docs))
			for _, sp := range ir.Splits {
				fmt.Fprintf(env.Stdout, ", %d %s queries", len(b.Queries[sp]), sp)
			}
			fmt.Fprintln(env.Stdout)
			return nil
		},
	}
}

func irIndex() *cli.Command {
	var collection, out, format string
	workers := 0
	return &cli.Command{
		Name:  "index",
		Short: "build a BM25 index of a collection",
		Usage: "-collection FILE|DIR -out INDEX [-format tsv|beir|wordnet] [-workers N]",
		Long: `index analyses every document with Anserini's default English analyzer (Lucene's
StandardTokenizer, 33 stopwords, Porter stemmer) and writes one checksummed, memory-mappable
index file, then prints its statistics and the time taken.

-collection is read as -format says:
  tsv      a docid<TAB>text file (MS MARCO's collection.tsv)
  beir     a BEIR dataset folder (its corpus.jsonl) or a corpus.jsonl file; each document is
           title + "\n" + text, as Anserini's flat BEIR indexes
  wordnet  a folder written by repro ir benchmark (its collection.tsv)
Without -format: a folder holding corpus.jsonl is beir, one holding collection.tsv is wordnet,
a .jsonl file is beir and any other file tsv. Files are streamed, never held whole.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&collection, "collection", "", "the collection: a file or a folder (see -format)")
			fs.StringVar(&out, "out", "", "the index file to write")
			fs.StringVar(&format, "format", "", "tsv, beir or wordnet (default: from -collection, see above)")
			fs.IntVar(&workers, "workers", 0, "goroutines analysing documents (0: GOMAXPROCS)")
		},
		Run: func(env *cli.Env, args []string) error {
			if collection == "" {
				return cli.Usagef("-collection names the documents to index")
			}
			if out == "" {
				return cli.Usagef("-out names the index file to write")
			}
			if workers < 0 {
				return cli.Usagef("-workers %d: want >= 0", workers)
			}
			if err := irNoArgs(args); err != nil {
				return err
			}
			path, format, err := irResolveCollection(collection, format)
			if err != nil {
				return err
			}
			read := func(yield func(ir.Document) error) error { return ir.ReadTSVCollection(path, yield) }
			if format == "beir" {
				read = func(yield func(ir.Document) error) error {
					return ir.ReadBEIRCorpus(path, func(d ir.BEIRDoc) error { return yield(d.Document()) })
				}
			}
			if workers == 0 {
				workers = runtime.GOMAXPROCS(0)
			}
			start := time.Now()
			st, err := ir.BuildIndexStream(out, read, ir.IndexOptions{Workers: workers})
			if err != nil {
				if !strings.Contains(err.Error(), path) { // an error of the last batch names no file
					err = fmt.Errorf("%s: %w", path, err)
				}
				return err
			}
			el := time.Since(start)
			fmt.Fprintf(env.Stdout, "indexed %s (%s) in %s with %d workers\n", path, format, irSeconds(el), workers)
			fmt.Fprintf(env.Stdout, "documents   %d (%d with terms)\n", st.NumDocs, st.DocCount)
			fmt.Fprintf(env.Stdout, "terms       %d distinct, %d postings, %d in all\n", st.NumTerms, st.NumPostings, st.SumTotalTermFreq)
			if st.DocCount > 0 {
				fmt.Fprintf(env.Stdout, "mean length %.2f terms\n", float64(st.SumTotalTermFreq)/float64(st.DocCount))
			}
			fmt.Fprintf(env.Stdout, "analyzer    %s\n", st.Analyzer)
			fmt.Fprintf(env.Stdout, "wrote %s: %d bytes (%.1f MiB)\n", out, st.Bytes, float64(st.Bytes)/(1<<20))
			return nil
		},
	}
}

// irResolveCollection turns -collection and -format into the file to read
// and its format, tsv or beir (wordnet is a benchmark folder's TSV).
func irResolveCollection(path, format string) (string, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("-collection: %w", err)
	}
	dir := fi.IsDir()
	if format == "" {
		switch {
		case dir && irExists(filepath.Join(path, "corpus.jsonl")):
			format = "beir"
		case dir && irExists(filepath.Join(path, ir.BenchmarkCollectionFile)):
			format = "wordnet"
		case dir:
			return "", "", fmt.Errorf("-collection %s: a folder without corpus.jsonl (BEIR) or %s (repro ir benchmark); give a file or -format", path, ir.BenchmarkCollectionFile)
		case strings.HasSuffix(path, ".jsonl"):
			format = "beir"
		default:
			format = "tsv"
		}
	}
	switch format {
	case "tsv":
		if dir {
			return "", "", fmt.Errorf("-collection %s: -format tsv wants a docid<TAB>text file, not a folder", path)
		}
		return path, "tsv", nil
	case "beir":
		if dir {
			path = filepath.Join(path, "corpus.jsonl")
		}
		return path, "beir", nil
	case "wordnet":
		if dir {
			path = filepath.Join(path, ir.BenchmarkCollectionFile)
		}
		return path, "tsv", nil
	}
	return "", "", cli.Usagef("-format %q: want tsv, beir or wordnet", format)
}

func irExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// irReadQueries reads -queries as format says: tsv (qid<TAB>text) or beir
// (queries.jsonl, or a BEIR folder's); "" picks beir for a .jsonl file or
// a folder and tsv otherwise. It returns the format it read.
func irReadQueries(path, format string) ([]ir.Query, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("-queries: %w", err)
	}
	if format == "" {
		format = "tsv"
		if fi.IsDir() || strings.HasSuffix(path, ".jsonl") {
			format = "beir"
		}
	}
	switch format {
	case "tsv":
		if fi.IsDir() {
			return nil, "", fmt.Errorf("-queries %s: -format tsv wants a qid<TAB>text file, not a folder", path)
		}
		qs, err := ir.ReadTSVQueries(path)
		return qs, format, err
	case "beir":
		if fi.IsDir() {
			path = filepath.Join(path, "queries.jsonl")
		}
		qs, err := ir.ReadBEIRQueries(path)
		return qs, format, err
	}
	return nil, "", cli.Usagef("-format %q: want tsv or beir", format)
}

// irReadQrels reads a qrels file: TREC's "qid 0 docid rel" (trec, MS MARCO's
// qrels too) or BEIR's "query-id<TAB>corpus-id<TAB>score" (beir).
func irReadQrels(flagName, path, format string) (ir.Qrels, error) {
	switch format {
	case "", "trec":
		return ir.ReadQrelsFile(path)
	case "beir":
		return ir.ReadBEIRQrels(path)
	}
	return nil, cli.Usagef("%s %q: want trec or beir", flagName, format)
}

// irReadRun reads a TREC run file, or standard input for "-".
func irReadRun(path string) (ir.Run, error) {
	if path == "-" {
		return ir.ReadRun(os.Stdin, "stdin")
	}
	return ir.ReadRunFile(path)
}

// irPipeline holds the flags that choose the pipeline `repro ir search` and
// `repro ir serve` run. Both build it with open, so an offline run and the
// service rank with the same code (ir.Pipeline).
//
// The pipeline is a first stage and an optional re-ranker. Today the first
// stage is BM25 (RM3 on request) and there is no re-ranker. A new stage is
// added here and nowhere else: its flags in declare, its construction in
// open (a dense retriever, fused with BM25 by ir.Hybrid, becomes First; a
// monoBERT ir.Reranker becomes Rerank), and both commands have it.
type irPipeline struct {
	index   string
	rm3     bool
	k1, b   float64
	exact   bool
	threads int
}

func (p *irPipeline) declare(fs *flag.FlagSet) {
	bm := ir.DefaultBM25()
	fs.StringVar(&p.index, "index", "", "the BM25 index (repro ir index -out)")
	fs.BoolVar(&p.rm3, "rm3", false, "expand queries with RM3 (Anserini's defaults: 10 terms from 10 documents, original query weight 0.5)")
	fs.Float64Var(&p.k1, "k1", shortFloat(bm.K1), "BM25 k1 (Anserini's default)")
	fs.Float64Var(&p.b, "b", shortFloat(bm.B), "BM25 b (Anserini's default)")
	fs.BoolVar(&p.exact, "exact-lengths", false, "score with exact document lengths instead of Lucene's one-byte norms (which Anserini's numbers include)")
	fs.IntVar(&p.threads, "threads", 0, "goroutines searching the queries of one batch (0: GOMAXPROCS)")
}

// shortFloat is x as the float64 of its shortest decimal (0.9, not
// 0.8999999761581421), which converts back to x exactly.
func shortFloat(x float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	return v
}

// options checks the flags and returns the BM25 search options.
func (p *irPipeline) options() (ir.SearchOptions, error) {
	if p.index == "" {
		return ir.SearchOptions{}, cli.Usagef("-index names the BM25 index (repro ir index -out)")
	}
	if math.IsNaN(p.k1) || math.IsInf(p.k1, 0) || p.k1 < 0 {
		return ir.SearchOptions{}, cli.Usagef("-k1 %v: want a finite value >= 0", p.k1)
	}
	if math.IsNaN(p.b) || p.b < 0 || p.b > 1 {
		return ir.SearchOptions{}, cli.Usagef("-b %v: want a value in [0, 1]", p.b)
	}
	if p.threads < 0 {
		return ir.SearchOptions{}, cli.Usagef("-threads %d: want >= 0", p.threads)
	}
	o := ir.DefaultSearchOptions()
	o.BM25 = ir.BM25Params{K1: float32(p.k1), B: float32(p.b), ExactLengths: p.exact}
	if p.rm3 {
		rm3 := ir.DefaultRM3()
		o.RM3 = &rm3
	}
	o.Workers = p.threads
	return o, nil
}

// name is the pipeline as a run tag and in messages: bm25 or bm25-rm3.
func (p *irPipeline) name() string {
	if p.rm3 {
		return "bm25-rm3"
	}
	return "bm25"
}

// open checks the flags, opens the index and returns the pipeline and the
// function that releases it.
func (p *irPipeline) open() (*ir.Pipeline, func() error, error) {
	o, err := p.options()
	if err != nil {
		return nil, nil, err
	}
	ix, err := ir.OpenIndex(p.index)
	if err != nil {
		return nil, nil, fmt.Errorf("-index: %w", err)
	}
	first, err := ir.NewBM25Retriever(ix, o)
	if err != nil {
		ix.Close()
		return nil, nil, err
	}
	return &ir.Pipeline{First: first}, ix.Close, nil
}

func irSearch() *cli.Command {
	var p irPipeline
	var queries, format, qrels, out, tag string
	k := 1000
	return &cli.Command{
		Name:  "search",
		Short: "search a BM25 index with a file of queries and write a TREC run",
		Usage: "-index INDEX -queries FILE [-format tsv|beir] [-k 1000] [-k1 0.9 -b 0.4] [-rm3] [-out RUN] [-tag NAME] [-threads N]",
		Long: `search ranks the collection for every query of -queries with BM25 (Lucene's
BM25Similarity, Anserini's defaults) or BM25+RM3 and writes the top -k of each as a TREC run
("qid Q0 docid rank score tag", ranks following the scores as trec_eval reads them) to -out,
or to standard output. Queries without any indexed term get no lines. The time taken goes to
standard error.

-queries is a qid<TAB>text file (MS MARCO's queries.*.tsv, repro ir benchmark's
queries.<split>.tsv) or, with -format beir (the default for .jsonl files and folders), a BEIR
queries.jsonl or dataset folder. -qrels keeps only the queries judged there (for MS MARCO's
queries.dev.tsv with qrels.dev.small.tsv), read as TREC qrels, or as BEIR's with -format beir.`,
		Flags: func(fs *flag.FlagSet) {
			p.declare(fs)
			fs.StringVar(&queries, "queries", "", "the queries file (see -format)")
			fs.StringVar(&format, "format", "", "tsv or beir (default: beir for .jsonl files and folders, else tsv)")
			fs.StringVar(&qrels, "qrels", "", "if set, search only the queries judged in this qrels file")
			fs.IntVar(&k, "k", k, "results per query")
			fs.StringVar(&out, "out", "", "the run file to write (default: standard output)")
			fs.StringVar(&tag, "tag", "", "the run's tag, its last column (default: bm25 or bm25-rm3)")
		},
		Run: func(env *cli.Env, args []string) error {
			if queries == "" {
				return cli.Usagef("-queries names the queries to search")
			}
			if k < 1 {
				return cli.Usagef("-k %d: want >= 1", k)
			}
			if tag == "" {
				tag = p.name()
			}
			if len(strings.Fields(tag)) != 1 || strings.TrimSpace(tag) != tag {
				return cli.Usagef("-tag %q: want one field without spaces", tag)
			}
			if err := irNoArgs(args); err != nil {
				return err
			}
			if _, err := p.options(); err != nil {
				return err
			}
			qs, qformat, err := irReadQueries(queries, format)
			if err != nil {
				return err
			}
			if qrels != "" {
				qf := "trec"
				if qformat == "beir" {
					qf = "beir"
				}
				judged, err := irReadQrels("-format", qrels, qf)
				if err != nil {
					return err
				}
				qs = ir.FilterQueries(qs, judged)
			}
			if len(qs) == 0 {
				return fmt.Errorf("-queries %s: no queries to search", queries)
			}
			pipe, closeIndex, err := p.open()
			if err != nil {
				return err
			}
			defer closeIndex()
			texts := make([]string, len(qs))
			for i, q := range qs {
				texts[i] = q.Text
			}
			start := time.Now()
			res, err := pipe.Search(context.Background(), texts, k)
			if err != nil {
				return err
			}
			el := time.Since(start)
			run := ir.Run{}
			for i, q := range qs {
				if len(res[i]) > 0 {
					run[q.ID] = res[i]
				}
			}
			if out == "" {
				err = ir.WriteRun(env.Stdout, run, tag)
			} else {
				err = ir.WriteRunFile(out, run, tag)
			}
			if err != nil {
				return err
			}
			threads := p.threads
			if threads == 0 {
				threads = runtime.GOMAXPROCS(0)
			}
			fmt.Fprintf(env.Stderr, "repro ir search: %s, %d queries (%d with no result), k %d, in %s (%.0f queries/s, %d threads)\n",
				p.name(), len(qs), len(qs)-len(run), k, irSeconds(el), float64(len(qs))/el.Seconds(), threads)
			return nil
		},
	}
}

func irFuse() *cli.Command {
	var method, weights, norm, out, tag string
	rrfK := 0.0
	depth, k := 0, 1000
	return &cli.Command{
		Name:  "fuse",
		Short: "fuse TREC runs (reciprocal rank fusion or score interpolation)",
		Usage: "[-method rrf|interpolate] [-weights 1,1] [-norm minmax|zscore|none] [-k 1000] RUN RUN...",
		Long: `fuse combines two or more TREC runs of the same queries, such as a sparse and a dense
run (the survey's hybrid rows), and writes the fused run's top -k per query:
  rrf          reciprocal rank fusion, sum of 1/(rrf-k + rank) (Cormack et al., 2009; k 60)
  interpolate  weighted sum of per-query normalised scores; a document a run did not
               retrieve gets that run's lowest normalised score for the query
Ties are broken by doc id, as trec_eval does. A RUN of - is standard input.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&method, "method", "rrf", "rrf or interpolate")
			fs.StringVar(&weights, "weights", "", "interpolate: one weight per run, comma-separated (default: all 1)")
			fs.StringVar(&norm, "norm", "", "interpolate: minmax, zscore or none (default minmax)")
			fs.Float64Var(&rrfK, "rrf-k", 0, "rrf: the k of 1/(k + rank) (0: 60)")
			fs.IntVar(&depth, "depth", 0, "results taken from each run per query (0: all)")
			fs.IntVar(&k, "k", k, "results per query in the fused run")
			fs.StringVar(&out, "out", "", "the run file to write (default: standard output)")
			fs.StringVar(&tag, "tag", "", "the fused run's tag (default: the method)")
		},
		Run: func(env *cli.Env, args []string) error {
			m, err := ir.ParseFusionMethod(method)
			if err != nil {
				return cli.Usagef("-method %q: want rrf or interpolate", method)
			}
			if len(args) < 2 {
				return cli.Usagef("fuse takes at least two runs")
			}
			if k < 1 {
				return cli.Usagef("-k %d: want >= 1", k)
			}
			if depth < 0 {
				return cli.Usagef("-depth %d: want >= 0", depth)
			}
			if tag == "" {
				tag = m.String()
			}
			if len(strings.Fields(tag)) != 1 || strings.TrimSpace(tag) != tag {
				return cli.Usagef("-tag %q: want one field without spaces", tag)
			}
			var w []float64
			nm := ir.MinMax
			if m == ir.FuseRRF {
				if weights != "" || norm != "" {
					return cli.Usagef("-weights and -norm are for -method interpolate; rrf uses ranks only")
				}
				if math.IsNaN(rrfK) || math.IsInf(rrfK, 0) || rrfK < 0 {
					return cli.Usagef("-rrf-k %v: want a finite value >= 0", rrfK)
				}
			} else {
				if rrfK != 0 {
					return cli.Usagef("-rrf-k is for -method rrf")
				}
				if norm != "" {
					if nm, err = ir.ParseNormalization(norm); err != nil {
						return cli.Usagef("-norm %q: want minmax, zscore or none", norm)
					}
				}
				if w, err = irParseWeights(weights, len(args)); err != nil {
					return err
				}
			}
			runs := make([]ir.Run, len(args))
			for i, a := range args {
				if runs[i], err = irReadRun(a); err != nil {
					return err
				}
			}
			var fused ir.Run
			if m == ir.FuseRRF {
				fused, err = ir.RRF(runs, rrfK, depth)
			} else {
				fused, err = ir.Interpolate(runs, w, nm, depth)
			}
			if err != nil {
				return err
			}
			fused = fused.Top(k)
			if out == "" {
				return ir.WriteRun(env.Stdout, fused, tag)
			}
			return ir.WriteRunFile(out, fused, tag)
		},
	}
}

// irParseWeights reads -weights: n comma-separated finite numbers, or all 1
// when s is empty.
func irParseWeights(s string, n int) ([]float64, error) {
	w := make([]float64, n)
	if s == "" {
		for i := range w {
			w[i] = 1
		}
		return w, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, cli.Usagef("-weights %q: %d weights for %d runs", s, len(parts), n)
	}
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, cli.Usagef("-weights %q: %q is not a finite number", s, p)
		}
		w[i] = v
	}
	return w, nil
}

func irEval() *cli.Command {
	var qrels, qrelsFormat, metrics string
	var perQuery, complete bool
	level := 1
	return &cli.Command{
		Name:  "eval",
		Short: "evaluate a TREC run against qrels with trec_eval's semantics",
		Usage: "-qrels FILE [-m MRR@10,nDCG@10,R@100] [-q] [-c] [-l N] RUN",
		Long: `eval prints trec_eval-style lines ("metric<TAB>qid<TAB>value", qid "all" for the mean,
then num_q) for RUN, a TREC run file (- for standard input), against -qrels. Rankings are
recomputed from the scores, ties broken by doc id descending, as trec_eval does.

Metrics (-m, comma-separated) are MRR@k (trec_eval -M k -m recip_rank, MS MARCO's MRR@10),
nDCG@k (ndcg_cut.k), Recall@k or R@k (recall.k), P@k (P.k), MAP (map) and MRR (recip_rank);
trec_eval's own names are accepted too. -c averages over every query of the qrels, a query
missing from the run scoring 0 (as the MS MARCO and ir/RESULTS.md figures do); without it
the mean is over the queries in both, as trec_eval's default.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&qrels, "qrels", "", "the judgements")
			fs.StringVar(&qrelsFormat, "qrels-format", "trec", `trec ("qid 0 docid rel", MS MARCO's too) or beir (qrels/<split>.tsv)`)
			fs.StringVar(&metrics, "m", "MRR@10,nDCG@10,R@100", "the metrics, comma-separated")
			fs.BoolVar(&perQuery, "q", false, "print each query's values too (trec_eval -q)")
			fs.BoolVar(&complete, "c", false, "average over all qrels queries, missing ones scoring 0 (trec_eval -c)")
			fs.IntVar(&level, "l", level, "the lowest grade that is relevant (trec_eval -l)")
		},
		Run: func(env *cli.Env, args []string) error {
			if qrels == "" {
				return cli.Usagef("-qrels names the judgements")
			}
			if len(args) != 1 {
				return cli.Usagef("eval takes one RUN")
			}
			var ms []ir.Metric
			for _, s := range strings.Split(metrics, ",") {
				m, err := ir.ParseMetric(strings.TrimSpace(s))
				if err != nil {
					return cli.Usagef("-m %q: %v", metrics, err)
				}
				ms = append(ms, m)
			}
			q, err := irReadQrels("-qrels-format", qrels, qrelsFormat)
			if err != nil {
				return err
			}
			run, err := irReadRun(args[0])
			if err != nil {
				return err
			}
			ev, err := ir.Evaluate(run, q, ms, ir.EvalOptions{RelevanceLevel: level, Complete: complete})
			if err != nil {
				return fmt.Errorf("%s against %s: %w", args[0], qrels, err)
			}
			if err := ev.Write(env.Stdout, perQuery); err != nil {
				return err
			}
			if n := len(ev.NotInQrels); n > 0 {
				fmt.Fprintf(env.Stderr, "repro ir eval: %d run queries have no judgements and are skipped (first: %s)\n", n, ev.NotInQrels[0])
			}
			if n := len(ev.NotInRun); n > 0 {
				if complete {
					fmt.Fprintf(env.Stderr, "repro ir eval: %d qrels queries are not in the run and score 0 (-c)\n", n)
				} else {
					fmt.Fprintf(env.Stderr, "repro ir eval: %d qrels queries are not in the run and not counted (-c counts them as 0)\n", n)
				}
			}
			return nil
		},
	}
}

func irServe() *cli.Command {
	var p irPipeline
	addr := "127.0.0.1:8080"
	d := ir.DefaultServeOptions()
	maxConcurrent, maxBatch := 0, d.MaxBatch
	batchWait, timeout := d.BatchWait, d.Timeout
	return &cli.Command{
		Name:  "serve",
		Short: "serve a BM25 index as an HTTP JSON search service",
		Usage: "-index INDEX [-rm3] [-addr 127.0.0.1:8080] [-max-concurrent N] [-max-batch N] [-timeout 10s]",
		Long: `serve answers searches over HTTP with the pipeline repro ir search runs:

	POST /search  {"query": "...", "k": 10} or {"queries": ["...", ...], "k": 10}
	              -> {"results": [[{"docid": "...", "score": 1.5}, ...]], "took_ms": 0.8}
	GET  /healthz -> {"status": "ok"}

Concurrent requests are gathered into batches of at most -max-batch queries, run by at most
-max-concurrent pipeline calls at once; the others queue. A request gets 503 if it waits
longer than -timeout for a slot and 504 if its search takes longer; malformed requests get
4xx with a JSON error. The address it listens on is printed to standard error (-addr with
port 0 picks a free one). SIGINT or SIGTERM shuts it down gracefully: it stops accepting,
answers the requests in progress and exits.`,
		Flags: func(fs *flag.FlagSet) {
			p.declare(fs)
			fs.StringVar(&addr, "addr", addr, "the address to listen on (host:port; port 0: any free port)")
			fs.IntVar(&maxConcurrent, "max-concurrent", 0, "pipeline calls at once (0: GOMAXPROCS)")
			fs.IntVar(&maxBatch, "max-batch", maxBatch, "most queries in one pipeline call when requests are gathered")
			fs.DurationVar(&batchWait, "batch-wait", batchWait, "how long a free slot waits for more requests to fill a batch (0: never)")
			fs.DurationVar(&timeout, "timeout", timeout, "the most a request may wait and search")
		},
		Run: func(env *cli.Env, args []string) error {
			if maxConcurrent < 0 {
				return cli.Usagef("-max-concurrent %d: want >= 0", maxConcurrent)
			}
			if maxBatch < 1 {
				return cli.Usagef("-max-batch %d: want >= 1", maxBatch)
			}
			if batchWait < 0 {
				return cli.Usagef("-batch-wait %v: want >= 0", batchWait)
			}
			if timeout <= 0 {
				return cli.Usagef("-timeout %v: want > 0", timeout)
			}
			if err := irNoArgs(args); err != nil {
				return err
			}
			pipe, closeIndex, err := p.open()
			if err != nil {
				return err
			}
			defer closeIndex()
			srv := ir.NewServer(pipe, ir.ServeOptions{
				MaxBatch: maxBatch, BatchWait: batchWait, MaxConcurrent: maxConcurrent, Timeout: timeout,
				Logger: log.New(env.Stderr, "repro ir serve: ", log.LstdFlags),
			})
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("-addr: %w", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o := srv.Options()
			fmt.Fprintf(env.Stderr, "repro ir serve: %s over %s, listening on http://%s (max-concurrent %d, max-batch %d, timeout %v)\n",
				p.name(), p.index, ln.Addr(), o.MaxConcurrent, o.MaxBatch, o.Timeout)
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			select {
			case err := <-served:
				return err // Serve returns only on failure before Shutdown
			case <-ctx.Done():
			}
			stop() // a second signal kills at once
			fmt.Fprintf(env.Stderr, "repro ir serve: shutting down\n")
			sctx, cancel := context.WithTimeout(context.Background(), 2*o.Timeout+5*time.Second)
			defer cancel()
			err = srv.Shutdown(sctx)
			if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			if err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			fmt.Fprintf(env.Stderr, "repro ir serve: stopped\n")
			return nil
		},
	}
}

func irLoadtest() *cli.Command {
	var url, queries, format string
	o := ir.LoadOptions{Concurrency: 16, Requests: 2000, K: ir.DefaultK, QueriesPerRequest: 1, Timeout: 30 * time.Second}
	return &cli.Command{
		Name:  "loadtest",
		Short: "load-test a search service and report latency percentiles and throughput",
		Usage: "-url URL -queries FILE [-c 16] [-n 2000] [-k 10]",
		Long: `loadtest sends -n search requests to the service at -url (its base address or /search) from
-c clients at once, each sending its next request as soon as its last is answered, cycling
through the queries of -queries (read as repro ir search reads them), and prints the
latencies (mean, p50, p90, p99, max; nearest rank, over the successful requests) and the
throughput. Every answer is decoded and must hold one ranking per query. It exits 1 if any
request failed, after printing the report. SIGINT stops it early with the report so far.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&url, "url", "", "the service, e.g. http://127.0.0.1:8080")
			fs.StringVar(&queries, "queries", "", "the queries to send (see repro ir search -queries)")
			fs.StringVar(&format, "format", "", "tsv or beir (default: beir for .jsonl files and folders, else tsv)")
			fs.IntVar(&o.Concurrency, "c", o.Concurrency, "concurrent clients")
			fs.IntVar(&o.Requests, "n", o.Requests, "requests in all")
			fs.IntVar(&o.K, "k", o.K, "results per query")
			fs.IntVar(&o.QueriesPerRequest, "batch", o.QueriesPerRequest, "queries per request (> 1: {\"queries\": [...]})")
			fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "the most one request may take")
		},
		Run: func(env *cli.Env, args []string) error {
			if url == "" {
				return cli.Usagef("-url names the search service")
			}
			if queries == "" {
				return cli.Usagef("-queries names the queries to send")
			}
			for _, c := range []struct {
				name string
				v    int
			}{{"-c", o.Concurrency}, {"-n", o.Requests}, {"-k", o.K}, {"-batch", o.QueriesPerRequest}} {
				if c.v < 1 {
					return cli.Usagef("%s %d: want >= 1", c.name, c.v)
				}
			}
			if o.Timeout <= 0 {
				return cli.Usagef("-timeout %v: want > 0", o.Timeout)
			}
			if err := irNoArgs(args); err != nil {
				return err
			}
			qs, _, err := irReadQueries(queries, format)
			if err != nil {
				return err
			}
			texts := make([]string, len(qs))
			for i, q := range qs {
				texts[i] = q.Text
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := ir.LoadTest(ctx, url, texts, o)
			if rep.Requests > 0 {
				fmt.Fprintln(env.Stdout, rep)
			}
			if err != nil {
				return fmt.Errorf("-url %s: %w", url, err)
			}
			if rep.Errors > 0 {
				return fmt.Errorf("%d of %d requests failed (first: %s)", rep.Errors, rep.Requests, rep.FirstError)
			}
			return nil
		},
	}
}

// irNoArgs refuses positional arguments for commands that take none.
func irNoArgs(args []string) error {
	if len(args) > 0 {
		return cli.Usagef("unexpected argument %q (this command takes flags only)", args[0])
	}
	return nil
}

// irSeconds formats a duration as seconds with two decimals.
func irSeconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
