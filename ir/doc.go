// Package ir is information retrieval with pre-trained models, after the
// survey of Fan, Xie et al. ("Pre-training Methods in Information
// Retrieval", 2021): each family the survey covers is implemented the way
// its anchor system defines it, so that a number computed here means what
// the same number means in the literature.
//
// The first stage, the evaluation and the search service are pure Go; the
// neural models (dense retrieval, ICT, monoBERT) are torchmods' BERT:
//
//   - TREC files (trec.go): run files ("qid Q0 docid rank score tag") and
//     qrels ("qid 0 docid rel"), read strictly with errors that name the
//     file and line, and written so that trec_eval reads back exactly the
//     ranking that was written.
//   - Evaluation (eval.go), with trec_eval's semantics (usnistgov/trec_eval
//     9.0.x, as Anserini and Pyserini use it): MRR@k (trec_eval -M k -m
//     recip_rank, the MS MARCO figure), nDCG@k (ndcg_cut), Recall@k, P@k and
//     MAP, per query and averaged over the queries in both run and qrels
//     (or over all qrels queries, trec_eval -c). Rankings are always
//     recomputed from scores, ties broken by doc id descending, as
//     trec_eval does; the rank column of a file is never trusted.
//   - Analysis (analyze.go): Anserini's default English analyzer -
//     StandardTokenizer's UAX #29 word breaks, possessive removal,
//     lowercasing, Lucene's 33 English stopwords and Lucene's Porter
//     stemmer, reimplemented rule for rule and checked against Lucene's
//     own output (testdata/lucene).
//   - BM25 (bm25.go): an inverted index built by parallel goroutines,
//     written to one checksummed file (the format is documented on
//     IndexBuilder.WriteFile) and memory-mapped for search; Lucene's
//     BM25Similarity with Anserini's defaults (k1 0.9, b 0.4), in float32
//     and with Lucene's one-byte document lengths unless asked otherwise,
//     so that scores equal Lucene's bit for bit (also checked against a
//     Lucene index in testdata/lucene); top-k search of one
//     query, or of a batch on several goroutines.
//   - RM3 (rm3.go): pseudo-relevance feedback as Anserini's Rm3Reranker
//     computes it (10 terms from 10 documents, original query weight 0.5).
//   - Fusion (fusion.go): score interpolation with min-max or z-score
//     normalisation per query, and reciprocal rank fusion (k = 60).
//   - Public collections (collections.go): MS MARCO passage (collection,
//     queries, qrels, top1000 candidates, leaderboard runs) and BEIR
//     (corpus.jsonl flattened as Anserini's flat indexes, queries.jsonl,
//     qrels/<split>.tsv) in their distributed formats, streamed line by
//     line with bounded memory, and BuildIndexStream to index them.
//   - The benchmark here (wordnet.go): a WordNet reverse dictionary - each
//     synset's definition is a query, each synset a document of its
//     lemmas, examples and related lemmas (never a definition), the
//     query's own synset the one relevant document; queries split 80/10/10
//     by a hash of the synset, written as MS MARCO-style files. Its BM25
//     and BM25+RM3 rows are in RESULTS.md (ir/internal/wnbench measures
//     them).
//   - Pipeline and service (pipeline.go, serve.go, loadtest.go): a
//     Pipeline is a first stage (BM25, BM25+RM3, dense, or a Hybrid fusing
//     several retrievers) and an optional re-ranker; Server runs one as an
//     HTTP JSON search service with micro-batched queries, bounded
//     concurrency, request limits, timeouts and graceful shutdown, and
//     LoadTest measures it (latency percentiles, throughput).
//   - Dense retrieval (dense.go, dense_index.go, dense_task.go): a DPR
//     bi-encoder (shared or two towers with DPR's names, [CLS] or mean
//     pooling, dot or cosine), trained by task ir.dense with in-batch and
//     BM25 hard negatives; corpus encoding to a checksummed, memory-mapped
//     flat index; exact top-k by batched matrix products (DenseRetriever,
//     a pipeline first stage). Loads DPR, sentence-transformers and HF
//     BERT checkpoints.
//   - Approximate dense search (hnsw.go): an HNSW graph (Malkov and
//     Yashunin's algorithms, hnswlib's defaults) over a flat index's
//     vectors, saved checksummed beside it and tied to it; HNSWRetriever,
//     a pipeline first stage; CompareHNSW, its recall@k against exact
//     search and the latency of both. The graph is implemented here: the
//     one Go library the module proxy serves, coder/hnsw v0.6.1, measured
//     recall@10 0.34 (hnsw.go says why).
//   - IR pre-training (ict.go): the inverse cloze task, ir.ict, whose run
//     an ir.dense starts from.
//   - Re-ranking (rerank.go, rerank_task.go): a monoBERT cross-encoder
//     (CrossEncoder, a pipeline Reranker) trained by ir.rerank with
//     pointwise or localized-contrastive loss on BM25 negatives; loads HF
//     BertForSequenceClassification cross-encoders.
//   - The command line, `repro ir` (cmd/repro/ir.go): benchmark, index,
//     search, hnsw, fuse, eval, serve and loadtest over these files and
//     this service. search and serve build the same Pipeline from the same
//     flags: BM25 (-index), dense (-dense, -hnsw), both fused (-hybrid),
//     each optionally re-ranked by monoBERT (-rerank). README.md shows each
//     command with what it measured.
//
// Still to come, from issue 21: the dense, hybrid and re-ranked rows of
// RESULTS.md (WordNet benchmark runs of ir.dense, ir.ict and ir.rerank,
// searched with `repro ir search`), and HNSW measured on a real flat index
// of that benchmark.
//
// Which semantics were matched, and where each rule comes from in trec_eval's
// and Lucene's sources, is stated on the function that implements it.
package ir
