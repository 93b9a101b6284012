package ir

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// ---------------------------------------------------------------------------
// Lucene's BM25
// ---------------------------------------------------------------------------

// BM25Params are the parameters of Lucene's BM25Similarity.
//
// Scores follow Lucene 8 and later (BM25Similarity, as Anserini uses it),
// in float32 as Lucene computes them:
//
//	idf(t)    = ln(1 + (N - df + 0.5) / (df + 0.5))
//	norm(d)   = k1 * ((1 - b) + b * dl(d) / avgdl)
//	score(t,d) = w - w / (1 + tf * (1/norm(d)))   with w = boost(t) * idf(t)
//
// which is w * tf / (tf + norm(d)): the classic formula without the (k1 + 1)
// factor, which Lucene 8 dropped (it scales every score of a query by the
// same constant, so rankings are unchanged; Anserini's scores do not have it
// and neither do these). N is the number of documents with at least one
// term (Lucene's CollectionStatistics.docCount), df the number containing t,
// avgdl = sum of document lengths / N, and boost(t) the number of times t
// occurs in the query (Anserini's BagOfWordsQueryGenerator makes each
// distinct query term a clause boosted by its count). The per-term scores of
// a document are summed in float64 and rounded to float32, as Lucene's
// disjunction scorers do.
type BM25Params struct {
	// K1 controls term-frequency saturation (Anserini's default 0.9).
	K1 float32
	// B controls document-length normalisation, in [0, 1] (default 0.4).
	B float32
	// ExactLengths uses each document's exact length dl(d). By default
	// (false) dl(d) is the length as Lucene stores it: one byte per
	// document (SmallFloat.intToByte4): exact up to 39 terms, then
	// dl - 24 rounded down to 4 significant bits (100 is read as 96, 1000
	// as 984; see EncodeNorm and DecodeNorm). Anserini's indexes and so its published scores
	// include that rounding, so the default reproduces them; avgdl is exact
	// either way, as in Lucene.
	ExactLengths bool
}

// DefaultBM25 returns Anserini's defaults: k1 = 0.9, b = 0.4, Lucene's
// one-byte lengths.
func DefaultBM25() BM25Params { return BM25Params{K1: 0.9, B: 0.4} }

func (p BM25Params) validate() error {
	if math.IsNaN(float64(p.K1)) || math.IsInf(float64(p.K1), 0) || p.K1 < 0 {
		return fmt.Errorf("ir: BM25 k1 = %v, want a finite value >= 0", p.K1)
	}
	if math.IsNaN(float64(p.B)) || p.B < 0 || p.B > 1 {
		return fmt.Errorf("ir: BM25 b = %v, want a value in [0, 1]", p.B)
	}
	return nil
}

// BM25IDF is Lucene's BM25 idf for a term in df of n documents, rounded to
// float32 as Lucene does.
func BM25IDF(df, n int) float32 {
	return float32(math.Log(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5)))
}

// bm25NormInverse is 1 / (k1 * ((1 - b) + b * dl / avgdl)) in float32, the
// entries of BM25Similarity's 256-entry cache.
func bm25NormInverse(k1, b, dl, avgdl float32) float32 {
	return 1 / (k1 * ((1 - b) + float32(b*dl)/avgdl))
}

// bm25TermScore is BM25Scorer.score: weight - weight / (1 + freq * normInverse),
// with the float32 rounding of each step (the explicit conversion stops the
// compiler from fusing the multiply-add, which Java never does).
func bm25TermScore(weight, freq, normInverse float32) float32 {
	return weight - weight/(1+float32(freq*normInverse))
}

// numFreeValues is SmallFloat's NUM_FREE_VALUES: 255 - longToInt4(MaxInt32).
const numFreeValues = 24

// longToInt4 is Lucene's SmallFloat.longToInt4: a float with a 3-bit
// mantissa (plus the implicit bit) and a 4-bit exponent, rounding down.
func longToInt4(i uint64) int {
	numBits := 64 - bits.LeadingZeros64(i)
	if numBits < 4 {
		return int(i)
	}
	shift := numBits - 4
	encoded := int(i>>uint(shift)) & 0x07
	encoded |= (shift + 1) << 3
	return encoded
}

func int4ToLong(i int) uint64 {
	b := uint64(i & 0x07)
	shift := (i >> 3) - 1
	if shift == -1 {
		return b
	}
	return (b | 0x08) << uint(shift)
}

// EncodeNorm is Lucene's SmallFloat.intToByte4, the one-byte document length
// BM25Similarity.computeNorm stores: the length itself below 24, else 24
// plus a float of (length - 24) with 3 mantissa bits and the leading one
// implicit, so exact up to 39 and rounded down beyond.
func EncodeNorm(length int) byte {
	if length < 0 {
		length = 0
	}
	if length > math.MaxInt32 {
		length = math.MaxInt32
	}
	if length < numFreeValues {
		return byte(length)
	}
	return byte(numFreeValues + longToInt4(uint64(length-numFreeValues)))
}

// DecodeNorm is Lucene's SmallFloat.byte4ToInt: the length BM25 sees for a
// stored byte.
func DecodeNorm(b byte) int {
	i := int(b)
	if i < numFreeValues {
		return i
	}
	return numFreeValues + int(int4ToLong(i-numFreeValues))
}

// ---------------------------------------------------------------------------
// Building an index
// ---------------------------------------------------------------------------

// Document is one document to index. ID must be a single non-empty field
// (no whitespace), unique in the index, since it goes into TREC run files.
type Document struct {
	ID   string
	Text string
}

// IndexOptions configure an IndexBuilder.
type IndexOptions struct {
	// Analyzer turns documents (and, at search time, queries) into terms.
	// nil: DefaultAnalyzer(). The index records it, and searches use it.
	Analyzer *Analyzer
	// Workers is the number of goroutines analysing documents; <= 0:
	// runtime.GOMAXPROCS(0).
	Workers int
}

// IndexBuilder builds an inverted index in memory and writes it to disk.
// Documents are analysed by Workers goroutines; the postings are merged in
// document order, so the file is the same whatever the number of workers.
// The whole index is held in memory until WriteFile (about 16 bytes per
// posting plus the dictionary): fine for collections of up to a few million
// short passages on this project's machines; larger ones would need
// segment merging, which is not implemented.
type IndexBuilder struct {
	an      *Analyzer
	workers int

	termID   map[string]uint32
	terms    []string
	postings [][]uint32 // per term: doc, tf, doc, tf, ... in doc order
	ids      []string
	idSet    map[string]struct{}
	lens     []uint32
	vectors  [][]uint32 // per doc: term, tf, ... (builder's term ids)
	sumTTF   int64
	docCount int
	nPost    int64
}

// NewIndexBuilder returns an empty builder.
func NewIndexBuilder(opts IndexOptions) *IndexBuilder {
	an := opts.Analyzer
	if an == nil {
		an = DefaultAnalyzer()
	}
	w := opts.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	return &IndexBuilder{an: an, workers: w, termID: map[string]uint32{}, idSet: map[string]struct{}{}}
}

// Len is the number of documents added so far.
func (b *IndexBuilder) Len() int { return len(b.ids) }

type analyzedDoc struct {
	terms  []string
	tfs    []uint32
	length int
}

func analyzeDoc(an *Analyzer, text string) analyzedDoc {
	toks := an.Analyze(text)
	counts := make(map[string]uint32, len(toks))
	var order []string
	for _, t := range toks {
		if counts[t] == 0 {
			order = append(order, t)
		}
		counts[t]++
	}
	d := analyzedDoc{terms: order, tfs: make([]uint32, len(order)), length: len(toks)}
	for i, t := range order {
		d.tfs[i] = counts[t]
	}
	return d
}

// Add analyses docs in parallel and adds them, in order, to the index. On
// error (a bad or duplicate id) nothing of docs is added.
func (b *IndexBuilder) Add(docs []Document) error {
	batch := make(map[string]struct{}, len(docs))
	for i, d := range docs {
		if err := checkField("doc id", d.ID); err != nil {
			return fmt.Errorf("document %d: %w", len(b.ids)+i, err)
		}
		if _, dup := b.idSet[d.ID]; dup {
			return fmt.Errorf("ir: duplicate doc id %q", d.ID)
		}
		if _, dup := batch[d.ID]; dup {
			return fmt.Errorf("ir: duplicate doc id %q", d.ID)
		}
		batch[d.ID] = struct{}{}
	}
	if len(b.ids)+len(docs) > math.MaxInt32 {
		return errors.New("ir: too many documents for one index (2^31-1 at most)")
	}
	out := make([]analyzedDoc, len(docs))
	w := min(b.workers, len(docs))
	var wg sync.WaitGroup
	for k := 0; k < w; k++ {
		lo, hi := k*len(docs)/w, (k+1)*len(docs)/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				out[i] = analyzeDoc(b.an, docs[i].Text)
			}
		}()
	}
	wg.Wait()
	for i, d := range docs {
		doc := uint32(len(b.ids))
		a := out[i]
		vec := make([]uint32, 0, 2*len(a.terms))
		for j, t := range a.terms {
			id, ok := b.termID[t]
			if !ok {
				id = uint32(len(b.terms))
				t = strings.Clone(t) // do not keep the document's text alive
				b.termID[t] = id
				b.terms = append(b.terms, t)
				b.postings = append(b.postings, nil)
			}
			b.postings[id] = append(b.postings[id], doc, a.tfs[j])
			vec = append(vec, id, a.tfs[j])
		}
		b.ids = append(b.ids, d.ID)
		b.idSet[d.ID] = struct{}{}
		b.lens = append(b.lens, uint32(a.length))
		b.vectors = append(b.vectors, vec)
		b.sumTTF += int64(a.length)
		b.nPost += int64(len(a.terms))
		if a.length > 0 {
			b.docCount++
		}
	}
	return nil
}

// IndexStats describe an index.
type IndexStats struct {
	NumDocs          int    // documents, empty ones included
	DocCount         int    // documents with at least one term: BM25's N
	NumTerms         int    // distinct terms
	NumPostings      int64  // (term, document) pairs
	SumTotalTermFreq int64  // total number of terms in the collection
	Bytes            int64  // size of the index file
	Analyzer         string // the analysis chain (Analyzer.String)
}

// BuildIndex indexes docs with opts and writes the index to path.
func BuildIndex(path string, docs []Document, opts IndexOptions) (IndexStats, error) {
	b := NewIndexBuilder(opts)
	if err := b.Add(docs); err != nil {
		return IndexStats{}, err
	}
	return b.WriteFile(path)
}

const (
	indexMagic      = "RPIRBM25"
	indexVersion    = 1
	indexHeaderSize = 288
	numSections     = 13
)

const (
	secAnalyzer = iota
	secTermOffsets
	secTermBytes
	secPostStart
	secPostDocs
	secPostFreqs
	secDocLengths
	secNorms
	secDocIDOffsets
	secDocIDBytes
	secVecStart
	secVecTerms
	secVecFreqs
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (a *Analyzer) serialize() []byte {
	var buf bytes.Buffer
	if a.stem {
		buf.WriteString("porter\n")
	} else {
		buf.WriteString("none\n")
	}
	words := mapKeys(a.stop)
	slices.Sort(words)
	for _, w := range words {
		buf.WriteString(w)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func parseAnalyzer(data []byte) (*Analyzer, error) {
	lines := strings.Split(string(data), "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" {
		return nil, errors.New("analyzer section is malformed")
	}
	lines = lines[:len(lines)-1]
	var stem bool
	switch lines[0] {
	case "porter":
		stem = true
	case "none":
	default:
		return nil, fmt.Errorf("unknown stemmer %q", lines[0])
	}
	return NewAnalyzer(lines[1:], stem), nil
}

// sectionWriter buffers the body of an index file, keeping its CRC and
// length; the first write error sticks and is reported at the end.
type sectionWriter struct {
	w   io.Writer
	crc uint32
	n   int64  // bytes written, pending ones included
	buf []byte // pending bytes
	err error
}

func (c *sectionWriter) flush() {
	if c.err == nil && len(c.buf) > 0 {
		c.crc = crc32.Update(c.crc, castagnoli, c.buf)
		_, c.err = c.w.Write(c.buf)
	}
	c.buf = c.buf[:0]
}

func (c *sectionWriter) wrote(n int) {
	c.n += int64(n)
	if len(c.buf) >= 1<<16 {
		c.flush()
	}
}

func (c *sectionWriter) u32(v uint32) { c.buf = binary.LittleEndian.AppendUint32(c.buf, v); c.wrote(4) }
func (c *sectionWriter) u64(v uint64) { c.buf = binary.LittleEndian.AppendUint64(c.buf, v); c.wrote(8) }
func (c *sectionWriter) u8(v byte)    { c.buf = append(c.buf, v); c.wrote(1) }
func (c *sectionWriter) str(v string) { c.buf = append(c.buf, v...); c.wrote(len(v)) }

// padTo writes zeros up to offset off.
func (c *sectionWriter) padTo(off int64) {
	for c.n < off {
		c.u8(0)
	}
}

func pad8(n int64) int64 { return (n + 7) &^ 7 }

// WriteFile writes the index to path (replacing it only once complete, so
// that an index being searched is never truncated under its memory map) and
// returns its statistics. The builder can be written again or added to
// afterwards.
//
// The file format (version 1), all integers little-endian:
//
//	offset  size  field
//	0       8     magic "RPIRBM25"
//	8       4     format version (1)
//	12      4     header size (288)
//	16      8     file size in bytes
//	24      8     numDocs
//	32      8     docCount: documents with at least one term (BM25's N)
//	40      8     sumTotalTermFreq: total number of terms
//	48      8     numTerms
//	56      8     numPostings
//	64      4     number of sections (13)
//	68      4     CRC-32C (Castagnoli) of bytes [header size, file size)
//	72      208   section table: 13 x (offset uint64, length uint64)
//	280     4     CRC-32C of bytes [0, 280)
//	284     4     zero
//
// The sections follow in this order, each starting at a multiple of 8
// (zero padding between them):
//
//	0  analyzer      "porter" or "none", then one stopword per line
//	1  termOffsets   (numTerms+1) x uint64: byte offsets into termBytes
//	2  termBytes     the terms in increasing byte order, concatenated (UTF-8)
//	3  postStart     (numTerms+1) x uint64: term t's postings are entries
//	                 postStart[t] .. postStart[t+1]-1 of sections 4 and 5
//	4  postDocs      numPostings x uint32: document numbers, increasing per term
//	5  postFreqs     numPostings x uint32: term frequencies (>= 1)
//	6  docLengths    numDocs x uint32: number of terms in each document
//	7  norms         numDocs x uint8: EncodeNorm(docLengths[d]), Lucene's byte
//	8  docIDOffsets  (numDocs+1) x uint64: byte offsets into docIDBytes
//	9  docIDBytes    the external document ids, in document-number order
//	10 vecStart      (numDocs+1) x uint64: document d's term vector is entries
//	                 vecStart[d] .. vecStart[d+1]-1 of sections 11 and 12
//	11 vecTerms      numPostings x uint32: term numbers, increasing per document
//	12 vecFreqs      numPostings x uint32: term frequencies
//
// Sections 10-12 (the forward index, Lucene's "doc vectors") serve RM3.
// OpenIndex checks the checksums and the whole structure, so a truncated or
// corrupt file is an error there and never a panic later.
func (b *IndexBuilder) WriteFile(path string) (stats IndexStats, err error) {
	nTerms, nDocs, nPost := len(b.terms), len(b.ids), b.nPost
	if nPost > math.MaxUint32 {
		return stats, errors.New("ir: too many postings for one index file")
	}
	// Terms in byte order; newID maps builder ids to file ids.
	order := make([]uint32, nTerms)
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(x, y uint32) int { return strings.Compare(b.terms[x], b.terms[y]) })
	newID := make([]uint32, nTerms)
	var termBytes int64
	for i, old := range order {
		newID[old] = uint32(i)
		termBytes += int64(len(b.terms[old]))
	}
	var idBytes int64
	for _, id := range b.ids {
		idBytes += int64(len(id))
	}
	an := b.an.serialize()
	lengths := [numSections]int64{
		secAnalyzer:     int64(len(an)),
		secTermOffsets:  8 * int64(nTerms+1),
		secTermBytes:    termBytes,
		secPostStart:    8 * int64(nTerms+1),
		secPostDocs:     4 * nPost,
		secPostFreqs:    4 * nPost,
		secDocLengths:   4 * int64(nDocs),
		secNorms:        int64(nDocs),
		secDocIDOffsets: 8 * int64(nDocs+1),
		secDocIDBytes:   idBytes,
		secVecStart:     8 * int64(nDocs+1),
		secVecTerms:     4 * nPost,
		secVecFreqs:     4 * nPost,
	}
	var offsets [numSections]int64
	pos := int64(indexHeaderSize)
	for s := range lengths {
		offsets[s] = pos
		pos = pad8(pos + lengths[s])
	}
	fileSize := pos

	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return stats, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err = bw.Write(make([]byte, indexHeaderSize)); err != nil {
		return stats, err
	}
	sw := &sectionWriter{w: bw, n: indexHeaderSize}
	// offsetsOf writes a (count+1)-entry offsets table: 0 and the running
	// sums of size(i).
	offsetsOf := func(count int, size func(i int) int) {
		var off uint64
		sw.u64(0)
		for i := 0; i < count; i++ {
			off += uint64(size(i))
			sw.u64(off)
		}
	}
	sw.padTo(offsets[secAnalyzer])
	sw.str(string(an))
	// Term dictionary and postings, terms in byte order.
	sw.padTo(offsets[secTermOffsets])
	offsetsOf(nTerms, func(i int) int { return len(b.terms[order[i]]) })
	sw.padTo(offsets[secTermBytes])
	for _, old := range order {
		sw.str(b.terms[old])
	}
	sw.padTo(offsets[secPostStart])
	offsetsOf(nTerms, func(i int) int { return len(b.postings[order[i]]) / 2 })
	for _, field := range []int{0, 1} { // document numbers, then frequencies
		sw.padTo(offsets[secPostDocs+field])
		for _, old := range order {
			p := b.postings[old]
			for i := field; i < len(p); i += 2 {
				sw.u32(p[i])
			}
		}
	}
	// Documents.
	sw.padTo(offsets[secDocLengths])
	for _, l := range b.lens {
		sw.u32(l)
	}
	sw.padTo(offsets[secNorms])
	for _, l := range b.lens {
		sw.u8(EncodeNorm(int(l)))
	}
	sw.padTo(offsets[secDocIDOffsets])
	offsetsOf(nDocs, func(i int) int { return len(b.ids[i]) })
	sw.padTo(offsets[secDocIDBytes])
	for _, id := range b.ids {
		sw.str(id)
	}
	// Forward index, each vector sorted by file term number.
	sw.padTo(offsets[secVecStart])
	offsetsOf(nDocs, func(i int) int { return len(b.vectors[i]) / 2 })
	var pairs [][2]uint32
	for _, field := range []int{0, 1} { // term numbers, then frequencies
		sw.padTo(offsets[secVecTerms+field])
		for _, v := range b.vectors {
			pairs = pairs[:0]
			for i := 0; i < len(v); i += 2 {
				pairs = append(pairs, [2]uint32{newID[v[i]], v[i+1]})
			}
			slices.SortFunc(pairs, func(x, y [2]uint32) int { return cmp.Compare(x[0], y[0]) })
			for _, p := range pairs {
				sw.u32(p[field])
			}
		}
	}
	sw.padTo(fileSize)
	sw.flush()
	if err = sw.err; err != nil {
		return stats, err
	}
	if err = bw.Flush(); err != nil {
		return stats, err
	}
	if sw.n != fileSize {
		return stats, fmt.Errorf("ir: internal error: wrote %d bytes, planned %d", sw.n, fileSize)
	}
	hdr := make([]byte, indexHeaderSize)
	copy(hdr, indexMagic)
	le := binary.LittleEndian
	le.PutUint32(hdr[8:], indexVersion)
	le.PutUint32(hdr[12:], indexHeaderSize)
	le.PutUint64(hdr[16:], uint64(fileSize))
	le.PutUint64(hdr[24:], uint64(nDocs))
	le.PutUint64(hdr[32:], uint64(b.docCount))
	le.PutUint64(hdr[40:], uint64(b.sumTTF))
	le.PutUint64(hdr[48:], uint64(nTerms))
	le.PutUint64(hdr[56:], uint64(nPost))
	le.PutUint32(hdr[64:], numSections)
	le.PutUint32(hdr[68:], sw.crc)
	for s := 0; s < numSections; s++ {
		le.PutUint64(hdr[72+16*s:], uint64(offsets[s]))
		le.PutUint64(hdr[80+16*s:], uint64(lengths[s]))
	}
	le.PutUint32(hdr[280:], crc32.Checksum(hdr[:280], castagnoli))
	if _, err = f.WriteAt(hdr, 0); err != nil {
		return stats, err
	}
	if err = f.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		return stats, err
	}
	if err = f.Sync(); err != nil {
		return stats, err
	}
	if err = f.Close(); err != nil {
		return stats, err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return stats, err
	}
	return IndexStats{NumDocs: nDocs, DocCount: b.docCount, NumTerms: nTerms, NumPostings: nPost,
		SumTotalTermFreq: b.sumTTF, Bytes: fileSize, Analyzer: b.an.String()}, nil
}

// ---------------------------------------------------------------------------
// Reading an index
// ---------------------------------------------------------------------------

// Index is an index file opened for search. Its contents are memory-mapped:
// opening costs one pass over the file (to check it) and no copy, and many
// processes searching one index share its pages. It is safe for concurrent
// searches; Close waits for running ones.
type Index struct {
	path     string
	mu       sync.RWMutex
	data     []byte // nil once closed
	unmap    func() error
	an       *Analyzer
	stats    IndexStats
	sec      [numSections][]byte
	avgdl    float32
	nDocs    int
	nTerms   int
	docCount int
}

// CorruptIndexError reports an index file that is truncated, damaged or not
// an index at all.
type CorruptIndexError struct {
	Path   string
	Reason string
}

func (e *CorruptIndexError) Error() string {
	return fmt.Sprintf("ir: index %s: %s", e.Path, e.Reason)
}

// OpenIndex memory-maps and checks the index at path: magic, version, size,
// both checksums and every offset, count and ordering the search relies on.
// Any damage is a *CorruptIndexError. The file must not be modified in
// place while open (WriteFile replaces files by renaming, which is safe).
func OpenIndex(path string) (*Index, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	ix, err := parseIndex(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	ix.unmap = unmap
	return ix, nil
}

// parseIndex checks data as an index file and returns an Index over it.
func parseIndex(data []byte, path string) (*Index, error) {
	bad := func(format string, args ...any) error {
		return &CorruptIndexError{path, fmt.Sprintf(format, args...)}
	}
	size := uint64(len(data))
	if size < indexHeaderSize {
		return nil, bad("truncated: %d bytes, shorter than the %d-byte header", size, indexHeaderSize)
	}
	if string(data[:8]) != indexMagic {
		return nil, bad("not a BM25 index (bad magic %q)", data[:8])
	}
	le := binary.LittleEndian
	if v := le.Uint32(data[8:]); v != indexVersion {
		return nil, bad("format version %d, this build reads %d", v, indexVersion)
	}
	if crc32.Checksum(data[:280], castagnoli) != le.Uint32(data[280:]) {
		return nil, bad("corrupt header (checksum mismatch)")
	}
	if hs := le.Uint32(data[12:]); hs != indexHeaderSize {
		return nil, bad("header size %d, want %d", hs, indexHeaderSize)
	}
	if want := le.Uint64(data[16:]); want != size {
		if size < want {
			return nil, bad("truncated: header says %d bytes, file has %d", want, size)
		}
		return nil, bad("%d bytes after the end the header gives (%d)", size-want, want)
	}
	if le.Uint32(data[64:]) != numSections {
		return nil, bad("%d sections, want %d", le.Uint32(data[64:]), numSections)
	}
	if crc32.Checksum(data[indexHeaderSize:], castagnoli) != le.Uint32(data[68:]) {
		return nil, bad("corrupt (checksum mismatch)")
	}
	nDocs, docCount, sumTTF := le.Uint64(data[24:]), le.Uint64(data[32:]), le.Uint64(data[40:])
	nTerms, nPost := le.Uint64(data[48:]), le.Uint64(data[56:])
	// Every count is bounded by the file size, so none of the products below
	// overflows.
	if nDocs > size || nTerms > size || nPost > size || docCount > nDocs || nDocs > math.MaxInt32 || nPost > math.MaxUint32 {
		return nil, bad("implausible counts (docs %d, terms %d, postings %d)", nDocs, nTerms, nPost)
	}
	want := [numSections]uint64{
		secTermOffsets: 8 * (nTerms + 1), secPostStart: 8 * (nTerms + 1),
		secPostDocs: 4 * nPost, secPostFreqs: 4 * nPost,
		secDocLengths: 4 * nDocs, secNorms: nDocs,
		secDocIDOffsets: 8 * (nDocs + 1), secVecStart: 8 * (nDocs + 1),
		secVecTerms: 4 * nPost, secVecFreqs: 4 * nPost,
	}
	ix := &Index{path: path, data: data, nDocs: int(nDocs), nTerms: int(nTerms), docCount: int(docCount)}
	prevEnd := uint64(indexHeaderSize)
	for s := 0; s < numSections; s++ {
		off, n := le.Uint64(data[72+16*s:]), le.Uint64(data[80+16*s:])
		if off < prevEnd || off > size || n > size-off {
			return nil, bad("section %d [%d, +%d) out of place", s, off, n)
		}
		if s != secAnalyzer && s != secTermBytes && s != secDocIDBytes && n != want[s] {
			return nil, bad("section %d has %d bytes, want %d", s, n, want[s])
		}
		ix.sec[s] = data[off : off+n]
		prevEnd = off + n
	}
	an, err := parseAnalyzer(ix.sec[secAnalyzer])
	if err != nil {
		return nil, bad("%v", err)
	}
	ix.an = an
	// Offsets tables: start at 0, never decrease, end at the data's size.
	checkOffsets := func(name string, tbl []byte, count int, end uint64) error {
		if le.Uint64(tbl) != 0 {
			return bad("%s does not start at 0", name)
		}
		prev := uint64(0)
		for i := 1; i <= count; i++ {
			v := le.Uint64(tbl[8*i:])
			if v < prev {
				return bad("%s decreases at %d", name, i)
			}
			prev = v
		}
		if prev != end {
			return bad("%s ends at %d, want %d", name, prev, end)
		}
		return nil
	}
	if err := checkOffsets("term offsets", ix.sec[secTermOffsets], int(nTerms), uint64(len(ix.sec[secTermBytes]))); err != nil {
		return nil, err
	}
	if err := checkOffsets("posting starts", ix.sec[secPostStart], int(nTerms), nPost); err != nil {
		return nil, err
	}
	if err := checkOffsets("doc id offsets", ix.sec[secDocIDOffsets], int(nDocs), uint64(len(ix.sec[secDocIDBytes]))); err != nil {
		return nil, err
	}
	if err := checkOffsets("vector starts", ix.sec[secVecStart], int(nDocs), nPost); err != nil {
		return nil, err
	}
	// Terms strictly increasing (binary search needs it); postings in
	// increasing document order with positive frequencies.
	var prevTerm []byte
	for t := 0; t < int(nTerms); t++ {
		term := ix.termBytes(t)
		if t > 0 && bytes.Compare(prevTerm, term) >= 0 {
			return nil, bad("terms out of order at %d", t)
		}
		prevTerm = term
		lo, hi := ix.postRange(t)
		if lo == hi {
			return nil, bad("term %d has no postings", t)
		}
		prev := -1
		for i := lo; i < hi; i++ {
			d := int(le.Uint32(ix.sec[secPostDocs][4*i:]))
			if d <= prev || d >= int(nDocs) {
				return nil, bad("term %d: posting %d has document %d", t, i-lo, d)
			}
			if le.Uint32(ix.sec[secPostFreqs][4*i:]) == 0 {
				return nil, bad("term %d: zero frequency", t)
			}
			prev = d
		}
	}
	// Documents: lengths add up, norms match, vectors are consistent.
	var total, withTerms uint64
	for d := 0; d < int(nDocs); d++ {
		l := le.Uint32(ix.sec[secDocLengths][4*d:])
		total += uint64(l)
		if l > 0 {
			withTerms++
		}
		if ix.sec[secNorms][d] != EncodeNorm(int(l)) {
			return nil, bad("document %d: norm byte does not match its length", d)
		}
		lo, hi := ix.vecRange(d)
		var sum uint64
		prev := -1
		for i := lo; i < hi; i++ {
			t := int(le.Uint32(ix.sec[secVecTerms][4*i:]))
			if t <= prev || t >= int(nTerms) {
				return nil, bad("document %d: vector entry %d has term %d", d, i-lo, t)
			}
			prev = t
			sum += uint64(le.Uint32(ix.sec[secVecFreqs][4*i:]))
		}
		if sum != uint64(l) {
			return nil, bad("document %d: vector has %d terms, length says %d", d, sum, l)
		}
		if dlo, dhi := ix.docIDRange(d); dlo == dhi {
			return nil, bad("document %d has an empty id", d)
		}
	}
	if total != sumTTF || withTerms != docCount {
		return nil, bad("document statistics disagree with the header")
	}
	if docCount > 0 {
		ix.avgdl = float32(float64(sumTTF) / float64(docCount))
	}
	ix.stats = IndexStats{NumDocs: int(nDocs), DocCount: int(docCount), NumTerms: int(nTerms),
		NumPostings: int64(nPost), SumTotalTermFreq: int64(sumTTF), Bytes: int64(size), Analyzer: an.String()}
	return ix, nil
}

func (ix *Index) u64(s, i int) uint64 { return binary.LittleEndian.Uint64(ix.sec[s][8*i:]) }
func (ix *Index) u32(s, i int) uint32 { return binary.LittleEndian.Uint32(ix.sec[s][4*i:]) }

func (ix *Index) termBytes(t int) []byte {
	return ix.sec[secTermBytes][ix.u64(secTermOffsets, t):ix.u64(secTermOffsets, t+1)]
}

func (ix *Index) postRange(t int) (int, int) {
	return int(ix.u64(secPostStart, t)), int(ix.u64(secPostStart, t+1))
}

func (ix *Index) vecRange(d int) (int, int) {
	return int(ix.u64(secVecStart, d)), int(ix.u64(secVecStart, d+1))
}

func (ix *Index) docIDRange(d int) (int, int) {
	return int(ix.u64(secDocIDOffsets, d)), int(ix.u64(secDocIDOffsets, d+1))
}

func (ix *Index) docIDBytes(d int) []byte {
	lo, hi := ix.docIDRange(d)
	return ix.sec[secDocIDBytes][lo:hi]
}

// lookup returns the term number of term, or -1.
func (ix *Index) lookup(term []byte) int {
	lo, hi := 0, ix.nTerms
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(ix.termBytes(m), term) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < ix.nTerms && bytes.Equal(ix.termBytes(lo), term) {
		return lo
	}
	return -1
}

// Close unmaps the index, after waiting for searches in progress. Using
// the index afterwards returns errors.
func (ix *Index) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.data == nil {
		return nil
	}
	ix.data = nil
	ix.sec = [numSections][]byte{}
	if ix.unmap != nil {
		return ix.unmap()
	}
	return nil
}

var errClosed = errors.New("ir: index is closed")

// Stats returns the index's statistics.
func (ix *Index) Stats() IndexStats { return ix.stats }

// Analyzer returns the analyzer the index was built with; searches analyse
// queries with it.
func (ix *Index) Analyzer() *Analyzer { return ix.an }

// NumDocs is the number of documents.
func (ix *Index) NumDocs() int { return ix.nDocs }

// DocID returns the external id of document number d (0 <= d < NumDocs).
func (ix *Index) DocID(d int) (string, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return "", errClosed
	}
	if d < 0 || d >= ix.nDocs {
		return "", fmt.Errorf("ir: document number %d out of range [0, %d)", d, ix.nDocs)
	}
	return string(ix.docIDBytes(d)), nil
}

// DocFreq returns the number of documents containing the (analysed) term.
func (ix *Index) DocFreq(term string) (int, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return 0, errClosed
	}
	t := ix.lookup([]byte(term))
	if t < 0 {
		return 0, nil
	}
	lo, hi := ix.postRange(t)
	return hi - lo, nil
}

// ---------------------------------------------------------------------------
// Searching
// ---------------------------------------------------------------------------

// WeightedTerm is an analysed term and its weight (Lucene's query boost).
type WeightedTerm struct {
	Term   string
	Weight float32
}

// Query is one query of a batch.
type Query struct {
	ID   string
	Text string
}

// SearchOptions configure a search. Start from DefaultSearchOptions.
type SearchOptions struct {
	// K is the number of results per query (>= 1).
	K int
	// BM25 are the ranking parameters.
	BM25 BM25Params
	// RM3, when not nil, expands each query by pseudo-relevance feedback
	// (see RM3Params) and ranks with the expanded query.
	RM3 *RM3Params
	// Workers is the number of queries searched at once by BatchSearch;
	// <= 0: runtime.GOMAXPROCS(0).
	Workers int
}

// DefaultSearchOptions are Anserini's: 1000 hits, BM25 k1 0.9 b 0.4, no RM3.
func DefaultSearchOptions() SearchOptions {
	return SearchOptions{K: 1000, BM25: DefaultBM25()}
}

func (o SearchOptions) validate() error {
	if o.K < 1 {
		return fmt.Errorf("ir: search K = %d, want >= 1", o.K)
	}
	if err := o.BM25.validate(); err != nil {
		return err
	}
	if o.RM3 != nil {
		return o.RM3.validate()
	}
	return nil
}

// scratch is per-goroutine search state: a dense score accumulator.
type scratch struct {
	acc     []float64
	seen    []bool
	touched []int32
}

func (ix *Index) newScratch() *scratch {
	return &scratch{acc: make([]float64, ix.nDocs), seen: make([]bool, ix.nDocs)}
}

// queryTerms turns analysed query tokens into Anserini's bag-of-words query:
// one clause per distinct term, boosted by its count.
func queryTerms(tokens []string) []WeightedTerm {
	counts := map[string]float32{}
	var order []string
	for _, t := range tokens {
		if counts[t] == 0 {
			order = append(order, t)
		}
		counts[t]++
	}
	slices.Sort(order)
	out := make([]WeightedTerm, len(order))
	for i, t := range order {
		out[i] = WeightedTerm{t, counts[t]}
	}
	return out
}

// scoredDoc is a document number and its float32 score.
type scoredDoc struct {
	doc   int32
	score float32
}

// score accumulates the BM25 scores of terms into sc and returns the
// matching documents' final float32 scores. Callers hold ix.mu.
func (ix *Index) score(terms []WeightedTerm, p BM25Params, sc *scratch) []scoredDoc {
	if ix.docCount == 0 {
		return nil
	}
	var cache [256]float32
	if !p.ExactLengths {
		for i := range cache {
			cache[i] = bm25NormInverse(p.K1, p.B, float32(DecodeNorm(byte(i))), ix.avgdl)
		}
	}
	norms := ix.sec[secNorms]
	for _, wt := range terms {
		t := ix.lookup([]byte(wt.Term))
		if t < 0 {
			continue
		}
		lo, hi := ix.postRange(t)
		weight := wt.Weight * BM25IDF(hi-lo, ix.docCount)
		for i := lo; i < hi; i++ {
			d := int32(ix.u32(secPostDocs, i))
			freq := float32(ix.u32(secPostFreqs, i))
			var inv float32
			if p.ExactLengths {
				inv = bm25NormInverse(p.K1, p.B, float32(ix.u32(secDocLengths, int(d))), ix.avgdl)
			} else {
				inv = cache[norms[d]]
			}
			if !sc.seen[d] {
				sc.seen[d] = true
				sc.touched = append(sc.touched, d)
			}
			sc.acc[d] += float64(bm25TermScore(weight, freq, inv))
		}
	}
	out := make([]scoredDoc, len(sc.touched))
	for i, d := range sc.touched {
		out[i] = scoredDoc{d, float32(sc.acc[d])}
		sc.acc[d], sc.seen[d] = 0, false
	}
	sc.touched = sc.touched[:0]
	return out
}

// topHeap keeps the k best documents with the worst on top.
type topHeap struct {
	ix     *Index
	docs   []scoredDoc
	lucene bool // ties: doc id ascending (Lucene's sort) instead of trec_eval's descending
}

// better reports whether a ranks before b.
func (h *topHeap) better(a, b scoredDoc) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	c := bytes.Compare(h.ix.docIDBytes(int(a.doc)), h.ix.docIDBytes(int(b.doc)))
	if h.lucene {
		return c < 0
	}
	return c > 0
}

func (h *topHeap) Len() int           { return len(h.docs) }
func (h *topHeap) Less(i, j int) bool { return h.better(h.docs[j], h.docs[i]) }
func (h *topHeap) Swap(i, j int)      { h.docs[i], h.docs[j] = h.docs[j], h.docs[i] }
func (h *topHeap) Push(x any)         { h.docs = append(h.docs, x.(scoredDoc)) }
func (h *topHeap) Pop() any {
	x := h.docs[len(h.docs)-1]
	h.docs = h.docs[:len(h.docs)-1]
	return x
}

// top returns the k best of docs, best first. With lucene set, ties are
// broken by doc id ascending, as Anserini's Lucene searches sort (used to
// pick RM3's feedback documents); otherwise by doc id descending, which is
// trec_eval's order, so the ranks written to a run are the ones trec_eval
// will compute and the top k is a prefix of trec_eval's full ranking.
func (ix *Index) top(docs []scoredDoc, k int, lucene bool) []scoredDoc {
	h := &topHeap{ix: ix, lucene: lucene}
	for _, d := range docs {
		if len(h.docs) < k {
			heap.Push(h, d)
		} else if h.better(d, h.docs[0]) {
			h.docs[0] = d
			heap.Fix(h, 0)
		}
	}
	out := make([]scoredDoc, len(h.docs))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(h).(scoredDoc)
	}
	return out
}

func (ix *Index) results(docs []scoredDoc) []Result {
	out := make([]Result, len(docs))
	for i, d := range docs {
		out[i] = Result{DocID: string(ix.docIDBytes(int(d.doc))), Score: float64(d.score)}
	}
	return out
}

// Search analyses text with the index's analyzer and returns the top
// opts.K documents by BM25 (with RM3 if opts.RM3 is set), best first, in
// trec_eval's order. A query with no known term returns no results.
func (ix *Index) Search(text string, opts SearchOptions) ([]Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return nil, errClosed
	}
	return ix.search(text, opts, ix.newScratch()), nil
}

func (ix *Index) search(text string, opts SearchOptions, sc *scratch) []Result {
	tokens := ix.an.Analyze(text)
	terms := queryTerms(tokens)
	if opts.RM3 != nil {
		terms = ix.expandRM3(tokens, terms, opts.BM25, *opts.RM3, sc)
	}
	return ix.results(ix.top(ix.score(terms, opts.BM25, sc), opts.K, false))
}

// SearchTerms ranks by a weighted bag of already analysed terms (each a
// Lucene TermQuery with the weight as boost), for callers that build their
// own queries, such as an RM3 expansion or a learned sparse model.
func (ix *Index) SearchTerms(terms []WeightedTerm, k int, p BM25Params) ([]Result, error) {
	if err := (SearchOptions{K: k, BM25: p}).validate(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return nil, errClosed
	}
	return ix.results(ix.top(ix.score(terms, p, ix.newScratch()), k, false)), nil
}

// BatchSearch searches every query with opts.Workers goroutines, each with
// its own score accumulator (8 bytes plus 1 per document), and returns the
// run. Queries with no results are left out of the run, as they would be
// from a run file. Query ids must be unique single fields.
func (ix *Index) BatchSearch(queries []Query, opts SearchOptions) (Run, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(queries))
	for _, q := range queries {
		if err := checkField("query id", q.ID); err != nil {
			return nil, err
		}
		if _, dup := seen[q.ID]; dup {
			return nil, fmt.Errorf("ir: duplicate query id %q", q.ID)
		}
		seen[q.ID] = struct{}{}
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.data == nil {
		return nil, errClosed
	}
	w := opts.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	w = max(1, min(w, len(queries)))
	out := make([][]Result, len(queries))
	next := make(chan int)
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := ix.newScratch()
			for i := range next {
				out[i] = ix.search(queries[i].Text, opts, sc)
			}
		}()
	}
	for i := range queries {
		next <- i
	}
	close(next)
	wg.Wait()
	run := Run{}
	for i, q := range queries {
		if len(out[i]) > 0 {
			run[q.ID] = out[i]
		}
	}
	return run, nil
}
