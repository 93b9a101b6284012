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

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/ir"
	"github.com/reprolab/repro/train"
)

func irCommand() *cli.Command {
	return &cli.Command{
		Name:  "ir",
		Short: "information retrieval (Fan et al., 2021): BM25, dense and hybrid search, monoBERT re-ranking, HNSW, trec_eval, search service",
		Long: `ir is the command line of package ir: the WordNet reverse-dictionary benchmark, BM25
(Anserini's analyzer and Lucene's scoring) and RM3, TREC runs, fusion, evaluation with
trec_eval's semantics, and the HTTP search service with its load test. Files are TREC and MS
MARCO-style (docid<TAB>text collections, qid<TAB>text queries, "qid 0 docid rel" qrels,
"qid Q0 docid rank score tag" runs) or BEIR's (corpus.jsonl, queries.jsonl, qrels/*.tsv).

	repro ir benchmark -out wn
	repro ir index -collection wn -out wn.idx
	repro ir search -index wn.idx -queries wn/queries.test.tsv -out bm25.trec
	repro ir eval -c -qrels wn/qrels.test.txt bm25.trec
	repro ir search -dense runs/ir-dense -queries wn/queries.test.tsv -out dense.trec
	repro ir hnsw -dense runs/ir-dense -queries wn/queries.dev.tsv`,
		Sub: []*cli.Command{irBenchmark(), irIndex(), irSearch(), irHNSW(), irFuse(), irEval(), irServe(), irLoadtest()},
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
// The pipeline is a first stage and an optional re-ranker:
//   - the first stage is BM25 (-index, RM3 on request), a bi-encoder
//     (-dense, searched exactly or, with -hnsw, through its HNSW graph), or
//     both fused by ir.Hybrid (-hybrid rrf|interpolate);
//   - the re-ranker is a monoBERT cross-encoder (-rerank) reading the
//     candidates' text from -collection.
//
// A new stage is added here and nowhere else: its flags in declare, their
// checks in check, its construction in open, and both commands have it.
type irPipeline struct {
	index   string
	rm3     bool
	k1, b   float64
	exact   bool
	threads int

	dense   string
	hnsw    bool
	ef      int
	hybrid  string
	weights string
	norm    string

	rerank      string
	rerankDepth int
	collection  string

	device string
}

func (p *irPipeline) declare(fs *flag.FlagSet) {
	bm := ir.DefaultBM25()
	fs.StringVar(&p.index, "index", "", "the BM25 index (repro ir index -out)")
	fs.BoolVar(&p.rm3, "rm3", false, "expand queries with RM3 (Anserini's defaults: 10 terms from 10 documents, original query weight 0.5)")
	fs.Float64Var(&p.k1, "k1", shortFloat(bm.K1), "BM25 k1 (Anserini's default)")
	fs.Float64Var(&p.b, "b", shortFloat(bm.B), "BM25 b (Anserini's default)")
	fs.BoolVar(&p.exact, "exact-lengths", false, "score with exact document lengths instead of Lucene's one-byte norms (which Anserini's numbers include)")
	fs.IntVar(&p.threads, "threads", 0, "goroutines searching the queries of one batch, BM25 or HNSW (0: GOMAXPROCS)")
	fs.StringVar(&p.dense, "dense", "", "an ir.dense or ir.ict run folder: dense retrieval with its query tower over its "+ir.RunDenseIndexFile)
	fs.BoolVar(&p.hnsw, "hnsw", false, "with -dense: search the run's HNSW graph (repro ir hnsw) instead of the exact flat index")
	fs.IntVar(&p.ef, "ef", 0, "with -hnsw: the search's candidate list (0: the graph's efSearch; raised to the depth asked for)")
	fs.StringVar(&p.hybrid, "hybrid", "", "with -index and -dense: rrf or interpolate, how their rankings are fused (default rrf)")
	fs.StringVar(&p.weights, "weights", "", "with -hybrid interpolate: the BM25 and dense weights, comma-separated (default 1,1)")
	fs.StringVar(&p.norm, "norm", "", "with -hybrid interpolate: minmax, zscore or none (default minmax)")
	fs.StringVar(&p.rerank, "rerank", "", "re-rank the first stage's top -rerank-depth with this monoBERT cross-encoder: an ir.rerank run or a HF BertForSequenceClassification folder (needs -collection)")
	fs.IntVar(&p.rerankDepth, "rerank-depth", 0, fmt.Sprintf("with -rerank: candidates re-ranked per query (0: %d)", ir.DefaultRerankDepth))
	fs.StringVar(&p.collection, "collection", "", "with -rerank: the passages' text, a collection as repro ir index reads it (tsv, beir or a benchmark folder)")
	fs.StringVar(&p.device, "device", "cpu", "cpu or cuda: where the bi-encoder and the cross-encoder run")
}

// shortFloat is x as the float64 of its shortest decimal (0.9, not
// 0.8999999761581421), which converts back to x exactly.
func shortFloat(x float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	return v
}

// check refuses flags that are malformed or that do not fit together,
// with a usage error naming them, before anything is opened.
func (p *irPipeline) check() error {
	if p.index == "" && p.dense == "" {
		return cli.Usagef("-index names the BM25 index (repro ir index -out), or -dense an ir.dense run; give one or both")
	}
	if math.IsNaN(p.k1) || math.IsInf(p.k1, 0) || p.k1 < 0 {
		return cli.Usagef("-k1 %v: want a finite value >= 0", p.k1)
	}
	if math.IsNaN(p.b) || p.b < 0 || p.b > 1 {
		return cli.Usagef("-b %v: want a value in [0, 1]", p.b)
	}
	if p.threads < 0 {
		return cli.Usagef("-threads %d: want >= 0", p.threads)
	}
	if p.rm3 && p.index == "" {
		return cli.Usagef("-rm3 expands BM25's queries: give -index")
	}
	if p.hnsw && p.dense == "" {
		return cli.Usagef("-hnsw searches a dense run's graph: give -dense")
	}
	if p.ef < 0 {
		return cli.Usagef("-ef %d: want >= 0", p.ef)
	}
	if p.ef > 0 && !p.hnsw {
		return cli.Usagef("-ef is the HNSW search's candidate list: give -hnsw")
	}
	both := p.index != "" && p.dense != ""
	if p.hybrid != "" && !both {
		return cli.Usagef("-hybrid fuses BM25 and dense rankings: give -index and -dense")
	}
	m := ir.FuseRRF
	if p.hybrid != "" {
		var err error
		if m, err = ir.ParseFusionMethod(p.hybrid); err != nil {
			return cli.Usagef("-hybrid %q: want rrf or interpolate", p.hybrid)
		}
	}
	if (p.weights != "" || p.norm != "") && (!both || m != ir.FuseInterpolate) {
		return cli.Usagef("-weights and -norm are for -hybrid interpolate")
	}
	if _, err := irParseWeights(p.weights, 2); err != nil {
		return err
	}
	if p.norm != "" {
		if _, err := ir.ParseNormalization(p.norm); err != nil {
			return cli.Usagef("-norm %q: want minmax, zscore or none", p.norm)
		}
	}
	if p.rerankDepth < 0 {
		return cli.Usagef("-rerank-depth %d: want >= 0", p.rerankDepth)
	}
	if p.rerank == "" && (p.rerankDepth != 0 || p.collection != "") {
		return cli.Usagef("-rerank-depth and -collection are for -rerank")
	}
	if p.rerank != "" && p.collection == "" {
		return cli.Usagef("-rerank reads the candidates' passages: give -collection")
	}
	if p.device != "cpu" && p.device != "cuda" {
		return cli.Usagef("-device %q: want cpu or cuda", p.device)
	}
	return nil
}

// options returns the BM25 search options (the flags checked).
func (p *irPipeline) options() ir.SearchOptions {
	o := ir.DefaultSearchOptions()
	o.BM25 = ir.BM25Params{K1: float32(p.k1), B: float32(p.b), ExactLengths: p.exact}
	if p.rm3 {
		rm3 := ir.DefaultRM3()
		o.RM3 = &rm3
	}
	o.Workers = p.threads
	return o
}

// name is the pipeline as a run tag and in messages: bm25, bm25-rm3,
// dense, dense-hnsw, bm25+dense-rrf (the sparse part first), each with
// +monobert when re-ranked.
func (p *irPipeline) name() string {
	var parts []string
	if p.index != "" {
		parts = append(parts, "bm25")
		if p.rm3 {
			parts[0] = "bm25-rm3"
		}
	}
	if p.dense != "" {
		d := "dense"
		if p.hnsw {
			d = "dense-hnsw"
		}
		parts = append(parts, d)
	}
	n := strings.Join(parts, "+")
	if len(parts) == 2 {
		m := p.hybrid
		if m == "" {
			m = "rrf"
		}
		n += "-" + m
	}
	if p.rerank != "" {
		n += "+monobert"
	}
	return n
}

// sources says what the pipeline reads, for serve's start-up line.
func (p *irPipeline) sources() string {
	var s []string
	for _, f := range [][2]string{{"-index", p.index}, {"-dense", p.dense}, {"-rerank", p.rerank}} {
		if f[1] != "" {
			s = append(s, f[1])
		}
	}
	return strings.Join(s, ", ")
}

// open checks the flags, opens the indexes and models and returns the
// pipeline and the function that releases them. Errors name the flag whose
// file failed.
func (p *irPipeline) open() (_ *ir.Pipeline, _ func() error, err error) {
	if err := p.check(); err != nil {
		return nil, nil, err
	}
	var closers []func() error
	release := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	dev, err := train.DeviceOf(train.TrainerConfig{Device: p.device})
	if err != nil {
		return nil, nil, fmt.Errorf("-device: %w", err)
	}
	var firsts []ir.Retriever
	if p.index != "" {
		ix, err := ir.OpenIndex(p.index)
		if err != nil {
			return nil, nil, fmt.Errorf("-index: %w", err)
		}
		closers = append(closers, ix.Close)
		r, err := ir.NewBM25Retriever(ix, p.options())
		if err != nil {
			return nil, nil, err
		}
		firsts = append(firsts, r)
	}
	if p.dense != "" {
		r, err := p.openDense(dev, &closers)
		if err != nil {
			return nil, nil, err
		}
		firsts = append(firsts, r)
	}
	pipe := &ir.Pipeline{First: firsts[0]}
	if len(firsts) == 2 {
		h := &ir.Hybrid{Retrievers: firsts, Method: ir.FuseRRF}
		if p.hybrid != "" {
			h.Method, _ = ir.ParseFusionMethod(p.hybrid)
		}
		if h.Method == ir.FuseInterpolate {
			h.Weights, _ = irParseWeights(p.weights, 2)
			h.Norm = ir.MinMax
			if p.norm != "" {
				h.Norm, _ = ir.ParseNormalization(p.norm)
			}
		}
		pipe.First = h
	}
	if p.rerank != "" {
		ce, err := p.openRerank(dev)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() error { ce.Close(); return nil })
		pipe.Rerank, pipe.RerankDepth = ce, p.rerankDepth
	}
	return pipe, release, nil
}

// openDense opens -dense: the run's bi-encoder and flat index, and with
// -hnsw the graph beside the index.
func (p *irPipeline) openDense(dev gotch.Device, closers *[]func() error) (ir.Retriever, error) {
	if _, err := os.Stat(filepath.Join(p.dense, ir.BiEncoderFile)); err != nil {
		return nil, fmt.Errorf("-dense %s: not an ir.dense or ir.ict run folder (%w)", p.dense, err)
	}
	m, err := ir.OpenBiEncoder(p.dense, ir.OpenBiEncoderOptions{Device: dev})
	if err != nil {
		return nil, fmt.Errorf("-dense: %w", err)
	}
	*closers = append(*closers, func() error { m.Close(); return nil })
	path := filepath.Join(p.dense, ir.RunDenseIndexFile)
	ix, err := ir.OpenDenseIndex(path)
	if err != nil {
		return nil, fmt.Errorf("-dense: %w", err)
	}
	*closers = append(*closers, ix.Close)
	if p.hnsw {
		gp := ir.HNSWPath(path)
		if _, err := os.Stat(gp); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("-hnsw: %s has no HNSW graph (%s); build it with repro ir hnsw -dense %s", p.dense, gp, p.dense)
		}
		h, err := ir.OpenHNSW(gp, ix)
		if err != nil {
			return nil, fmt.Errorf("-hnsw: %w", err)
		}
		r, err := ir.NewHNSWRetriever(m.Query, h, ir.HNSWRetrieverOptions{Ef: p.ef, Workers: p.threads})
		if err != nil {
			return nil, fmt.Errorf("-hnsw: %w", err)
		}
		return r, nil
	}
	r, err := ir.NewDenseRetriever(m.Query, ix, ir.DenseRetrieverOptions{})
	if err != nil {
		return nil, fmt.Errorf("-dense: %w", err)
	}
	*closers = append(*closers, r.Close)
	return r, nil
}

// openRerank reads -collection and opens -rerank. An ir.rerank run's
// lengths (max_query_len, max_len in its config.toml) are used, so that
// the model scores pairs cut as it was trained and evaluated on; a HF
// folder gets monoBERT's (ir.DefaultMaxQueryLen, ir.DefaultMaxPairLen).
func (p *irPipeline) openRerank(dev gotch.Device) (*ir.CrossEncoder, error) {
	path, format, err := irResolveCollection(p.collection, "")
	if err != nil {
		return nil, err
	}
	var docs *ir.DocStore
	if format == "beir" {
		var all []ir.Document
		err = ir.ReadBEIRCorpus(path, func(d ir.BEIRDoc) error { all = append(all, d.Document()); return nil })
		if err == nil {
			docs, err = ir.NewDocStore(all)
		}
	} else {
		docs, err = ir.ReadDocStore(path)
	}
	if err != nil {
		return nil, fmt.Errorf("-collection: %w", err)
	}
	o := ir.LoadCrossEncoderOptions{Device: dev}
	var rc struct {
		Task        string `toml:"task"`
		MaxQueryLen int    `toml:"max_query_len"`
		MaxLen      int    `toml:"max_len"`
	}
	if cfg := filepath.Join(p.rerank, "config.toml"); irExists(cfg) {
		if _, err := toml.DecodeFile(cfg, &rc); err != nil {
			return nil, fmt.Errorf("-rerank: %s: %w", cfg, err)
		}
		if rc.Task == "ir.rerank" {
			o.MaxQueryLen, o.MaxLen = rc.MaxQueryLen, rc.MaxLen
		}
	}
	ce, err := ir.LoadCrossEncoder(p.rerank, docs.Text, o)
	if err != nil {
		return nil, fmt.Errorf("-rerank: %w", err)
	}
	return ce, nil
}

func irSearch() *cli.Command {
	var p irPipeline
	var queries, format, qrels, out, tag string
	k := 1000
	return &cli.Command{
		Name:  "search",
		Short: "search with BM25, a bi-encoder or both, optionally re-ranked by monoBERT, and write a TREC run",
		Usage: "(-index INDEX [-rm3] | -dense RUN [-hnsw] | -index INDEX -dense RUN [-hybrid rrf|interpolate]) [-rerank RUN -collection FILE [-rerank-depth 100]] -queries FILE [-k 1000] [-out RUN]",
		Long: `search ranks the collection for every query of -queries and writes the top -k of each as a
TREC run ("qid Q0 docid rank score tag", ranks following the scores as trec_eval reads them)
to -out, or to standard output. Queries with no result get no lines. The time taken goes to
standard error. The pipeline is the one repro ir serve runs:

  -index INDEX     BM25 (Lucene's BM25Similarity, Anserini's defaults), with -rm3 BM25+RM3
  -dense RUN       an ir.dense or ir.ict run: its query tower and its flat index
                   (passages.dense), searched exactly; with -hnsw through the HNSW graph that
                   repro ir hnsw built beside it (-ef: its candidate list)
  both             fused per query by -hybrid rrf (the default) or interpolate (-weights,
                   -norm), each ranking taken to the depth asked of the first stage
  -rerank SPEC     a monoBERT cross-encoder (an ir.rerank run, or a HF
                   BertForSequenceClassification folder) re-ranking the first stage's top
                   -rerank-depth (default 100), reading the passages from -collection

The tag defaults to the pipeline's name: bm25, bm25-rm3, dense, dense-hnsw, bm25+dense-rrf,
each with +monobert when re-ranked.

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
			fs.StringVar(&tag, "tag", "", "the run's tag, its last column (default: the pipeline's name, as bm25 or dense-hnsw)")
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
			if err := p.check(); err != nil {
				return err
			}
			qs, err := irJudgedQueries(queries, format, qrels)
			if err != nil {
				return err
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

func irHNSW() *cli.Command {
	var dense, out, queries, format, qrels, efs, device string
	o := ir.HNSWOptions{M: ir.DefaultHNSWM, EfConstruction: ir.DefaultHNSWEfConstruction, EfSearch: ir.DefaultHNSWEfSearch, Seed: ir.DefaultHNSWSeed}
	k, maxQueries := 10, 1000
	return &cli.Command{
		Name:  "hnsw",
		Short: "build the HNSW graph of a dense run's flat index and measure its recall against exact search",
		Usage: "-dense RUN|INDEX [-m 16] [-ef-construction 200] [-ef-search 64] [-workers N] [-out FILE] [-queries FILE [-k 10] [-ef 10,20,...]]",
		Long: `hnsw builds a hierarchical navigable small world graph (Malkov and Yashunin; hnswlib's
algorithms and defaults) over the vectors of a dense run's flat index (RUN/passages.dense, or a
.dense file given directly) and writes it beside the index (INDEX.hnsw, where repro ir search
-dense RUN -hnsw looks for it), then prints its statistics and the time taken.

With -queries (read as repro ir search reads them; a run folder is needed to encode them),
the first -max-queries of them are encoded with the run's query tower and searched exactly
and through the graph at each -ef, and recall@k of the graph against the exact top k is
printed with the time per query of both. Only -workers 1 builds the same graph every time.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dense, "dense", "", "an ir.dense or ir.ict run folder, or a flat index file (.dense)")
			fs.IntVar(&o.M, "m", o.M, "most links per document on the upper layers (2M on layer 0); hnswlib's default")
			fs.IntVar(&o.EfConstruction, "ef-construction", o.EfConstruction, "candidate list when a document is inserted; hnswlib's default")
			fs.IntVar(&o.EfSearch, "ef-search", o.EfSearch, "the graph's default candidate list for searches (a search for k uses at least k)")
			fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the documents' levels (hnswlib's default)")
			fs.IntVar(&o.Workers, "workers", 0, "goroutines inserting documents (0: GOMAXPROCS; only 1 is reproducible)")
			fs.StringVar(&out, "out", "", "the graph file (default: the index's path + .hnsw)")
			fs.StringVar(&queries, "queries", "", "if set, measure recall against exact search on these queries")
			fs.StringVar(&format, "format", "", "-queries' format, tsv or beir (default: beir for .jsonl files and folders, else tsv)")
			fs.StringVar(&qrels, "qrels", "", "if set, measure only the queries judged in this qrels file")
			fs.IntVar(&maxQueries, "max-queries", maxQueries, "the most queries measured (the first ones)")
			fs.IntVar(&k, "k", k, "recall@k")
			fs.StringVar(&efs, "ef", "", "candidate lists to measure, comma-separated (default: 10,20,40,80,160,320 and -ef-search)")
			fs.StringVar(&device, "device", "cpu", "cpu or cuda: where the query tower and exact search run")
		},
		Run: func(env *cli.Env, args []string) error {
			if dense == "" {
				return cli.Usagef("-dense names the run (or flat index) to build the graph of")
			}
			if o.M < 2 {
				return cli.Usagef("-m %d: want >= 2", o.M)
			}
			for _, c := range []struct {
				name string
				v    int
			}{{"-ef-construction", o.EfConstruction}, {"-ef-search", o.EfSearch}, {"-k", k}, {"-max-queries", maxQueries}} {
				if c.v < 1 {
					return cli.Usagef("%s %d: want >= 1", c.name, c.v)
				}
			}
			if o.Workers < 0 {
				return cli.Usagef("-workers %d: want >= 0", o.Workers)
			}
			if o.Seed == 0 {
				return cli.Usagef("-seed 0: want > 0")
			}
			if device != "cpu" && device != "cuda" {
				return cli.Usagef("-device %q: want cpu or cuda", device)
			}
			var efList []int
			if efs != "" {
				for _, f := range strings.Split(efs, ",") {
					v, err := strconv.Atoi(strings.TrimSpace(f))
					if err != nil || v < 1 {
						return cli.Usagef("-ef %q: %q is not a whole number >= 1", efs, f)
					}
					efList = append(efList, v)
				}
			}
			if (efs != "" || qrels != "" || format != "") && queries == "" {
				return cli.Usagef("-ef, -qrels and -format are for -queries")
			}
			if err := irNoArgs(args); err != nil {
				return err
			}
			fi, err := os.Stat(dense)
			if err != nil {
				return fmt.Errorf("-dense: %w", err)
			}
			run, path := "", dense
			if fi.IsDir() {
				run, path = dense, filepath.Join(dense, ir.RunDenseIndexFile)
			}
			if queries != "" && run == "" {
				return cli.Usagef("-queries are encoded by a run's query tower: give -dense a run folder, not an index file")
			}
			if out == "" {
				out = ir.HNSWPath(path)
			}
			dev, err := train.DeviceOf(train.TrainerConfig{Device: device})
			if err != nil {
				return fmt.Errorf("-device: %w", err)
			}
			ix, err := ir.OpenDenseIndex(path)
			if err != nil {
				return fmt.Errorf("-dense: %w", err)
			}
			defer ix.Close()
			o.Progress = env.Stderr
			workers := o.Workers
			if workers == 0 {
				workers = runtime.GOMAXPROCS(0)
			}
			h, err := ir.BuildHNSW(ix, o)
			if err != nil {
				return err
			}
			size, err := h.WriteFile(out)
			if err != nil {
				return fmt.Errorf("-out: %w", err)
			}
			st := h.Stats()
			fmt.Fprintf(env.Stdout, "built the HNSW graph of %s in %s with %d workers\n", path, irSeconds(time.Duration(st.Seconds*float64(time.Second))), workers)
			fmt.Fprintf(env.Stdout, "documents   %d of %d floats (%s similarity)\n", st.Docs, st.Dim, ix.Similarity())
			fmt.Fprintf(env.Stdout, "graph       M %d (layer 0: %d), efConstruction %d, efSearch %d, seed %d, %d layers\n", st.M, st.M0, st.EfConstruction, st.EfSearch, st.Seed, st.Layers)
			if st.Docs > 0 {
				fmt.Fprintf(env.Stdout, "links       %.1f per document on layer 0\n", float64(st.Links)/float64(st.Docs))
			}
			fmt.Fprintf(env.Stdout, "wrote %s: %d bytes (%.1f MiB; the flat index is %.1f MiB)\n", out, size, float64(size)/(1<<20), float64(ix.Bytes())/(1<<20))
			if queries == "" {
				return nil
			}
			qs, err := irJudgedQueries(queries, format, qrels)
			if err != nil {
				return err
			}
			if len(qs) == 0 {
				return fmt.Errorf("-queries %s: no queries to measure", queries)
			}
			qs = qs[:min(len(qs), maxQueries)]
			m, err := ir.OpenBiEncoder(run, ir.OpenBiEncoderOptions{Device: dev})
			if err != nil {
				return fmt.Errorf("-dense: %w", err)
			}
			defer m.Close()
			texts := make([]string, len(qs))
			for i, q := range qs {
				texts[i] = q.Text
			}
			start := time.Now()
			vecs, err := m.Query.Encode(texts, 64)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "encoded %d queries in %s\n", len(qs), irSeconds(time.Since(start)))
			cmp, err := ir.CompareHNSW(h, vecs, k, efList, ir.DenseSearchOptions{Device: dev})
			if err != nil {
				return err
			}
			return cmp.Write(env.Stdout)
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
		Short: "serve a search pipeline (BM25, dense, hybrid, + monoBERT) as an HTTP JSON search service",
		Usage: "(-index INDEX | -dense RUN [-hnsw] | both [-hybrid rrf|interpolate]) [-rerank RUN -collection FILE] [-addr 127.0.0.1:8080] [-max-concurrent N] [-max-batch N] [-timeout 10s]",
		Long: `serve answers searches over HTTP with the pipeline repro ir search runs, chosen by the same
flags (-index, -rm3, -dense, -hnsw, -hybrid, -rerank; see repro ir search -h):

	POST /search  {"query": "...", "k": 10} or {"queries": ["...", ...], "k": 10}
	              -> {"results": [[{"docid": "...", "score": 1.5}, ...]], "took_ms": 0.8}
	GET  /healthz -> {"status": "ok"}

Concurrent requests are gathered into batches of at most -max-batch queries (a bi-encoder
encodes each batch in one pass), run by at most
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
				p.name(), p.sources(), ln.Addr(), o.MaxConcurrent, o.MaxBatch, o.Timeout)
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

// irJudgedQueries reads -queries and, with -qrels, keeps only the queries
// it judges (MS MARCO dev's 6,980 of 101,093), reading the qrels in the
// queries' format (a BEIR folder's TSV, else TREC).
func irJudgedQueries(queries, format, qrels string) ([]ir.Query, error) {
	qs, qformat, err := irReadQueries(queries, format)
	if err != nil || qrels == "" {
		return qs, err
	}
	qf := "trec"
	if qformat == "beir" {
		qf = "beir"
	}
	judged, err := irReadQrels("-format", qrels, qf)
	if err != nil {
		return nil, err
	}
	return ir.FilterQueries(qs, judged), nil
}
