package ir

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// This file is the dense first stage's storage and search: a flat index of
// passage embeddings on disk (DPR's DenseFlatIndexer and Tevatron's
// FaissFlatSearcher keep the same thing in a faiss IndexFlatIP), and exact
// top-k search by batched matrix products on the CPU or a CUDA device.
//
// A flat index is exact: every query is scored against every passage, so
// what it returns is the true top k under the model, and it is the
// reference that an approximate index (HNSW) is measured against.

// The flat dense index file, little-endian throughout:
//
//	offset  size   field
//	0       8      magic "IRDENSE1"
//	8       4      format version (1)
//	12      4      dim: floats per vector
//	16      8      count: vectors (documents)
//	24      1      similarity the vectors are for: 1 dot, 2 cosine (then
//	               the vectors are unit length and search is a dot product)
//	25      7      zero
//	32      8      ids offset: 64 + count*dim*4
//	40      8      ids bytes: (count+1)*8 + the ids' bytes
//	48      4      CRC-32C of every byte from offset 64 to the end
//	52      4      CRC-32C of bytes 0..51
//	56      8      zero
//	64      ...    the vectors, count rows of dim float32, row i = document i
//	ids     ...    count+1 uint64 offsets into the id bytes that follow
//	               (offset[i]..offset[i+1] is document i's id), then the bytes
//
// The vectors come first, at a 64-byte-aligned offset, so that a memory map
// of the file is the embedding matrix as float32 without a copy; the file
// size must be exactly ids offset + ids bytes. The two checksums make any
// truncation or damage an error at open, not wrong search results.
const (
	denseMagic      = "IRDENSE1"
	denseVersion    = 1
	denseHeaderSize = 64
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

func simCode(s Similarity) byte {
	if s == SimCosine {
		return 2
	}
	return 1
}

// CorruptDenseIndexError reports a dense index file that is truncated,
// damaged or not a dense index.
type CorruptDenseIndexError struct {
	Path   string
	Reason string
}

func (e *CorruptDenseIndexError) Error() string {
	return fmt.Sprintf("ir: dense index %s: %s", e.Path, e.Reason)
}

// DenseIndexStats describe a dense index written by EncodeCorpus.
type DenseIndexStats struct {
	Docs    int     `json:"docs"`
	Dim     int     `json:"dim"`
	Bytes   int64   `json:"bytes"`   // the file's size
	Seconds float64 `json:"seconds"` // tokenising, encoding and writing, wall clock
}

// DenseIndexWriter writes a flat index. Rows may be written in any order
// (EncodeCorpus writes them sorted by length, which saves padding): each
// goes to its place in the file, and Close refuses an index with a row
// never written. The file appears at its path only when Close succeeds.
type DenseIndexWriter struct {
	path, tmp string
	f         *os.File
	ids       []string
	dim       int
	sim       Similarity
	written   []bool
	left      int
	buf       []byte
}

// CreateDenseIndex starts a flat index of len(ids) vectors of dim floats,
// for similarity sim, document i having id ids[i]. Ids must be single
// non-empty fields (they go into TREC runs) and unique.
func CreateDenseIndex(path string, ids []string, dim int, sim Similarity) (*DenseIndexWriter, error) {
	if dim < 1 {
		return nil, fmt.Errorf("ir: dense index %s: dimension %d", path, dim)
	}
	if _, err := ParseSimilarity(string(sim)); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if err := checkField("document id", id); err != nil {
			return nil, err
		}
		if _, dup := seen[id]; dup {
			return nil, fmt.Errorf("ir: dense index %s: document id %q repeated", path, id)
		}
		seen[id] = struct{}{}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	return &DenseIndexWriter{path: path, tmp: f.Name(), f: f, ids: ids, dim: dim, sim: sim,
		written: make([]bool, len(ids)), left: len(ids)}, nil
}

// Write puts vectors (len(rows)*dim floats, row after row) at the given
// rows. A vector with a NaN or infinite element is refused: it would make
// every score it enters meaningless and the ranking undefined.
func (w *DenseIndexWriter) Write(rows []int, vecs []float32) error {
	if len(vecs) != len(rows)*w.dim {
		return fmt.Errorf("ir: dense index %s: %d floats for %d rows of %d", w.path, len(vecs), len(rows), w.dim)
	}
	rowBytes := 4 * w.dim
	if cap(w.buf) < rowBytes {
		w.buf = make([]byte, rowBytes)
	}
	b := w.buf[:rowBytes]
	for i, r := range rows {
		if r < 0 || r >= len(w.ids) {
			return fmt.Errorf("ir: dense index %s: row %d outside [0, %d)", w.path, r, len(w.ids))
		}
		v := vecs[i*w.dim : (i+1)*w.dim]
		for j, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("ir: dense index %s: document %q has a non-finite embedding (element %d is %v)", w.path, w.ids[r], j, x)
			}
			binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(x))
		}
		if _, err := w.f.WriteAt(b, denseHeaderSize+int64(r)*int64(rowBytes)); err != nil {
			return fmt.Errorf("ir: dense index %s: %w", w.path, err)
		}
		if !w.written[r] {
			w.written[r] = true
			w.left--
		}
	}
	return nil
}

// Abort removes the unfinished file.
func (w *DenseIndexWriter) Abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.tmp)
		w.f = nil
	}
}

// Close writes the ids, the checksums and the header, and moves the file
// into place (atomically: a reader never sees a partial index). It returns
// the file's size.
func (w *DenseIndexWriter) Close() (size int64, err error) {
	if w.f == nil {
		return 0, fmt.Errorf("ir: dense index %s: writer already closed", w.path)
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	if w.left > 0 {
		missing := slices.Index(w.written, false)
		return 0, fmt.Errorf("ir: dense index %s: %d of %d vectors never written (the first: document %q)", w.path, w.left, len(w.ids), w.ids[missing])
	}
	n := int64(len(w.ids))
	idsOff := denseHeaderSize + n*int64(w.dim)*4
	var ids bytes.Buffer
	off := uint64(0)
	ids.Write(binary.LittleEndian.AppendUint64(nil, 0))
	for _, id := range w.ids {
		off += uint64(len(id))
		ids.Write(binary.LittleEndian.AppendUint64(nil, off))
	}
	for _, id := range w.ids {
		ids.WriteString(id)
	}
	if _, err := w.f.WriteAt(ids.Bytes(), idsOff); err != nil {
		return 0, err
	}
	size = idsOff + int64(ids.Len())
	// The payload's checksum, read back in file order: rows were written in
	// any order, and the page cache still holds them.
	sum := uint32(0)
	chunk := make([]byte, 1<<20)
	for pos := int64(denseHeaderSize); pos < size; {
		m := min(int64(len(chunk)), size-pos)
		if _, err := w.f.ReadAt(chunk[:m], pos); err != nil {
			return 0, err
		}
		sum = crc32.Update(sum, crc32c, chunk[:m])
		pos += m
	}
	h := make([]byte, denseHeaderSize)
	copy(h, denseMagic)
	binary.LittleEndian.PutUint32(h[8:], denseVersion)
	binary.LittleEndian.PutUint32(h[12:], uint32(w.dim))
	binary.LittleEndian.PutUint64(h[16:], uint64(n))
	h[24] = simCode(w.sim)
	binary.LittleEndian.PutUint64(h[32:], uint64(idsOff))
	binary.LittleEndian.PutUint64(h[40:], uint64(ids.Len()))
	binary.LittleEndian.PutUint32(h[48:], sum)
	binary.LittleEndian.PutUint32(h[52:], crc32.Checksum(h[:52], crc32c))
	if _, err := w.f.WriteAt(h, 0); err != nil {
		return 0, err
	}
	if err := w.f.Chmod(0o644); err != nil {
		return 0, err
	}
	if err := w.f.Sync(); err != nil {
		return 0, err
	}
	if err := w.f.Close(); err != nil {
		return 0, err
	}
	w.f = nil
	if err := os.Rename(w.tmp, w.path); err != nil {
		os.Remove(w.tmp)
		return 0, err
	}
	return size, nil
}

// WriteDenseIndex writes a whole index from vectors in memory (row i of
// vecs, dim floats each, for ids[i]).
func WriteDenseIndex(path string, ids []string, dim int, sim Similarity, vecs []float32) (int64, error) {
	w, err := CreateDenseIndex(path, ids, dim, sim)
	if err != nil {
		return 0, err
	}
	rows := make([]int, len(ids))
	for i := range rows {
		rows[i] = i
	}
	if err := w.Write(rows, vecs); err != nil {
		w.Abort()
		return 0, err
	}
	return w.Close()
}

// DenseIndex is a flat index opened for search. The file is memory-mapped:
// opening costs one pass to verify the checksums and no copy, and several
// processes searching one index share its pages. It is safe for concurrent
// searches; Close waits for running ones.
type DenseIndex struct {
	path  string
	mu    sync.RWMutex
	data  []byte // nil once closed
	unmap func() error
	dim   int
	n     int
	sim   Similarity
	vecs  []float32 // the mapped matrix (or a decoded copy on a big-endian host)
	offs  []byte    // (n+1) uint64 id offsets
	idb   []byte    // id bytes
}

// OpenDenseIndex memory-maps and checks the index at path: magic, version,
// size, both checksums and the id table. Any damage is a
// *CorruptDenseIndexError naming the file.
func OpenDenseIndex(path string) (*DenseIndex, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	ix, err := parseDenseIndex(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	ix.unmap = unmap
	return ix, nil
}

func parseDenseIndex(data []byte, path string) (*DenseIndex, error) {
	bad := func(format string, args ...any) error {
		return &CorruptDenseIndexError{path, fmt.Sprintf(format, args...)}
	}
	size := uint64(len(data))
	if size < denseHeaderSize {
		return nil, bad("truncated: %d bytes, shorter than the %d-byte header", size, denseHeaderSize)
	}
	if string(data[:8]) != denseMagic {
		return nil, bad("not a dense index (magic %q)", data[:8])
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != denseVersion {
		return nil, bad("format version %d, this program reads %d", v, denseVersion)
	}
	if got, want := crc32.Checksum(data[:52], crc32c), binary.LittleEndian.Uint32(data[52:]); got != want {
		return nil, bad("header checksum mismatch (damaged header)")
	}
	dim := uint64(binary.LittleEndian.Uint32(data[12:]))
	n := binary.LittleEndian.Uint64(data[16:])
	var sim Similarity
	switch data[24] {
	case 1:
		sim = SimDot
	case 2:
		sim = SimCosine
	default:
		return nil, bad("unknown similarity code %d", data[24])
	}
	idsOff := binary.LittleEndian.Uint64(data[32:])
	idsLen := binary.LittleEndian.Uint64(data[40:])
	if dim == 0 || n > (1<<40) || dim > (1<<20) {
		return nil, bad("implausible shape: %d vectors of %d floats", n, dim)
	}
	if n > math.MaxInt32 {
		// Search numbers documents with int32 (denseCand).
		return nil, fmt.Errorf("ir: dense index %s: %d documents, more than the %d an index may hold", path, n, math.MaxInt32)
	}
	if idsOff != denseHeaderSize+n*dim*4 {
		return nil, bad("ids at offset %d, want %d for %d vectors of %d floats", idsOff, denseHeaderSize+n*dim*4, n, dim)
	}
	// Compared without adding, so that a crafted idsLen cannot wrap
	// idsOff+idsLen around to the file's size.
	if idsOff > size || idsLen > size-idsOff || idsLen < (n+1)*8 || idsLen != size-idsOff {
		return nil, bad("truncated or padded: %d bytes, the header says ids at %d, %d bytes long", size, idsOff, idsLen)
	}
	if got, want := crc32.Checksum(data[denseHeaderSize:], crc32c), binary.LittleEndian.Uint32(data[48:]); got != want {
		return nil, bad("checksum mismatch (the vectors or ids are damaged)")
	}
	ix := &DenseIndex{path: path, data: data, dim: int(dim), n: int(n), sim: sim}
	ix.offs = data[idsOff : idsOff+(n+1)*8]
	ix.idb = data[idsOff+(n+1)*8:]
	prev := uint64(0)
	if binary.LittleEndian.Uint64(ix.offs) != 0 {
		return nil, bad("id table does not start at 0")
	}
	for i := uint64(1); i <= n; i++ {
		o := binary.LittleEndian.Uint64(ix.offs[8*i:])
		if o <= prev || o > uint64(len(ix.idb)) {
			return nil, bad("id of document %d: offset %d after %d, id bytes %d", i-1, o, prev, len(ix.idb))
		}
		prev = o
	}
	if prev != uint64(len(ix.idb)) {
		return nil, bad("id bytes: %d, the table accounts for %d", len(ix.idb), prev)
	}
	payload := data[denseHeaderSize:idsOff]
	if n > 0 {
		if littleEndianHost() {
			ix.vecs = unsafe.Slice((*float32)(unsafe.Pointer(&payload[0])), n*dim)
		} else {
			ix.vecs = make([]float32, n*dim)
			for i := range ix.vecs {
				ix.vecs[i] = math.Float32frombits(binary.LittleEndian.Uint32(payload[4*i:]))
			}
		}
	}
	return ix, nil
}

func littleEndianHost() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// Close unmaps the file, after any search in progress.
func (ix *DenseIndex) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.data == nil {
		return nil
	}
	ix.data, ix.vecs, ix.offs, ix.idb = nil, nil, nil, nil
	return ix.unmap()
}

// Path is the index file.
func (ix *DenseIndex) Path() string { return ix.path }

// Len is the number of documents.
func (ix *DenseIndex) Len() int { return ix.n }

// Dim is the embeddings' size.
func (ix *DenseIndex) Dim() int { return ix.dim }

// Similarity is what the vectors were made for: cosine vectors are unit
// length, and both are searched by dot product.
func (ix *DenseIndex) Similarity() Similarity { return ix.sim }

// Bytes is the size of the file (0 once closed).
func (ix *DenseIndex) Bytes() int64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return int64(len(ix.data))
}

func (ix *DenseIndex) docIDBytes(i int) []byte {
	a := binary.LittleEndian.Uint64(ix.offs[8*i:])
	b := binary.LittleEndian.Uint64(ix.offs[8*i+8:])
	return ix.idb[a:b]
}

// DocID is document i's id.
func (ix *DenseIndex) DocID(i int) string { return string(ix.docIDBytes(i)) }

// Vector is document i's embedding. It is a view of the memory map: read
// it, never write it, and not after Close.
func (ix *DenseIndex) Vector(i int) []float32 { return ix.vecs[i*ix.dim : (i+1)*ix.dim] }

// DefaultChunkRows is the number of documents scored by one matrix product
// when DenseSearchOptions.ChunkRows is 0: 64K rows of 768 floats are 192 MB
// of passages and, for 256 queries, 64 MB of scores.
const DefaultChunkRows = 1 << 16

// maxScoreElems bounds a query block's score matrix (queries x ChunkRows
// floats, 64 MB): queries are searched in blocks below it.
const maxScoreElems = 1 << 24

// DenseSearchOptions say where and in what pieces exact search runs.
type DenseSearchOptions struct {
	// Device runs the matrix products (the zero value: the CPU).
	Device gotch.Device
	// ChunkRows is the number of documents per product (0:
	// DefaultChunkRows). It bounds memory, not results: search is exact
	// for every value.
	ChunkRows int
}

func (o DenseSearchOptions) chunkRows() int {
	if o.ChunkRows <= 0 {
		return DefaultChunkRows
	}
	return o.ChunkRows
}

// Search returns the top k documents of each query vector (dim floats
// each) by dot product, best first in trec_eval's order (score descending,
// then doc id descending, as SortTREC), exactly. The documents are read
// from the memory map chunk by chunk; DenseRetriever keeps them on the
// device between calls instead.
func (ix *DenseIndex) Search(queries [][]float32, k int, o DenseSearchOptions) ([][]Result, error) {
	return ix.SearchContext(context.Background(), queries, k, o)
}

// SearchContext is Search that stops between chunks of documents once ctx
// is done, returning ctx's error.
func (ix *DenseIndex) SearchContext(ctx context.Context, queries [][]float32, k int, o DenseSearchOptions) ([][]Result, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	dev := o.Device
	if dev.Name == "" {
		dev = gotch.CPU
	}
	return ix.searchContext(ctx, queries, k, dev, o.chunkRows(), nil)
}

// errDenseIndexClosed is what searching a closed index returns.
var errDenseIndexClosed = errors.New("ir: dense index is closed")

// checkQueries refuses query vectors of the wrong size or with NaN or
// infinite elements, which would leave the ranking undefined.
func (ix *DenseIndex) checkQueries(queries [][]float32) error {
	for i, q := range queries {
		if len(q) != ix.dim {
			return fmt.Errorf("ir: query vector %d has %d floats, the index %d", i, len(q), ix.dim)
		}
		for j, x := range q {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("ir: query vector %d: element %d is %v", i, j, x)
			}
		}
	}
	return nil
}

// chunkTensor copies documents [start, start+rows) from the map into a
// float32 tensor [rows, dim] on dev.
func (ix *DenseIndex) chunkTensor(start, rows int, dev gotch.Device) *ts.Tensor {
	v := ix.vecs[start*ix.dim : (start+rows)*ix.dim]
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	t, err := ts.OfDataSize(raw, []int64{int64(rows), int64(ix.dim)}, gotch.Float)
	if err != nil {
		panic(err)
	}
	if dev != gotch.CPU {
		t = t.MustTo(dev, true)
	}
	return t
}

// denseCand is a document that may be in a query's top k.
type denseCand struct {
	doc   int32
	score float32
}

// search is Search with resident chunks (one tensor per chunkRows
// documents, already on dev) or, when resident is nil, chunks read from
// the map per query block. The caller holds ix.mu.
//
// Each chunk's scores S = Q·Dᵀ are computed by one matrix product. Per
// query, the chunk's k-th largest score t is found with topk, and every
// document scoring at least t is a candidate: all of them, not just k, so
// that a tie at the k-th place keeps every tied document and the doc-id
// rule can decide between them exactly as trec_eval would. The candidates
// of each chunk are merged into the query's running top k in Go, ordered by
// score and then doc id descending. Any document of the true top k is among
// its chunk's candidates (it beats all but fewer than k of them), so the
// result is exact.
func (ix *DenseIndex) search(queries [][]float32, k int, dev gotch.Device, chunkRows int, resident []*ts.Tensor) ([][]Result, error) {
	return ix.searchContext(context.Background(), queries, k, dev, chunkRows, resident)
}

// searchContext is search that checks ctx before every chunk of
// documents and returns its error once it is done.
func (ix *DenseIndex) searchContext(ctx context.Context, queries [][]float32, k int, dev gotch.Device, chunkRows int, resident []*ts.Tensor) ([][]Result, error) {
	if ix.data == nil {
		return nil, errDenseIndexClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if k < 1 {
		return nil, fmt.Errorf("ir: search k = %d, want >= 1", k)
	}
	if err := ix.checkQueries(queries); err != nil {
		return nil, err
	}
	out := make([][]Result, len(queries))
	if ix.n == 0 || len(queries) == 0 {
		for i := range out {
			out[i] = []Result{}
		}
		return out, nil
	}
	block := max(1, min(len(queries), maxScoreElems/chunkRows))
	for q0 := 0; q0 < len(queries); q0 += block {
		qs := queries[q0:min(q0+block, len(queries))]
		var cands [][]denseCand
		var stopped error
		err := torchmods.Try(func() { cands, stopped = ix.searchBlock(ctx, qs, k, dev, chunkRows, resident) })
		if err != nil {
			return nil, fmt.Errorf("ir: dense search of %s: %w", ix.path, err)
		}
		if stopped != nil {
			return nil, stopped
		}
		for i, cs := range cands {
			rs := make([]Result, len(cs))
			for j, c := range cs {
				rs[j] = Result{DocID: ix.DocID(int(c.doc)), Score: float64(c.score)}
			}
			out[q0+i] = rs
		}
	}
	return out, nil
}

// searchBlock scores one block of queries against every chunk (tensor
// code: it panics with an error). It returns ctx's error, and no
// candidates, when ctx is done before a chunk.
func (ix *DenseIndex) searchBlock(ctx context.Context, qs [][]float32, k int, dev gotch.Device, chunkRows int, resident []*ts.Tensor) ([][]denseCand, error) {
	sc := ts.NewScope()
	defer sc.Close()
	flat := make([]float32, 0, len(qs)*ix.dim)
	for _, q := range qs {
		flat = append(flat, q...)
	}
	var top [][]denseCand
	var stopped error
	ts.NoGrad(func() {
		qt := torchmods.FromSlice(flat, []int64{int64(len(qs)), int64(ix.dim)}, dev)
		top = make([][]denseCand, len(qs))
		for c, start := 0, 0; start < ix.n; c, start = c+1, start+chunkRows {
			if stopped = ctx.Err(); stopped != nil {
				return
			}
			rows := min(chunkRows, ix.n-start)
			func() {
				inner := ts.NewScope()
				defer inner.Close()
				var d *ts.Tensor
				if resident != nil {
					d = resident[c]
				} else {
					d = ix.chunkTensor(start, rows, dev)
				}
				s := qt.MustMatmul(d.MustT(false), false) // [Q, rows]
				ix.chunkCandidates(s, start, rows, k, top)
			}()
			for q := range top {
				top[q] = ix.keepBest(top[q], k)
			}
		}
	})
	if stopped != nil {
		return nil, stopped
	}
	return top, nil
}

// chunkCandidates adds to top[q] the candidates of chunk scores s [Q,
// rows] for documents start.. (tensor code). When the chunk has no more
// than k documents, all of them are. Otherwise one topk of k+1 per query
// finds the k best and the next one: if the k-th score beats the
// (k+1)-th, those k are exactly the documents scoring at least the k-th,
// and nothing else of the chunk can make the top k. A query whose k-th and
// (k+1)-th scores tie (rare with real embeddings; every document ties for
// an all-zero query) takes every document of its row scoring at least the
// k-th, so that the doc-id rule decides among all of them. A NaN or
// infinite score, which topk would rank first, is an error.
func (ix *DenseIndex) chunkCandidates(s *ts.Tensor, start, rows, k int, top [][]denseCand) {
	nq := len(top)
	add := func(q int, docs []int64, scores []float32) {
		for j, sc := range scores {
			if math.IsNaN(float64(sc)) || math.IsInf(float64(sc), 0) {
				panic(fmt.Errorf("a score is %v (the embeddings overflow float32)", sc))
			}
			top[q] = append(top[q], denseCand{doc: int32(start) + int32(docs[j]), score: sc})
		}
	}
	f32 := func(t *ts.Tensor, n int) []float32 {
		out := make([]float32, n)
		if n > 0 {
			t.MustTo(gotch.CPU, false).MustContiguous(true).MustCopyData(out, uint(n))
		}
		return out
	}
	if rows <= k {
		all := f32(s, nq*rows)
		docs := make([]int64, rows)
		for i := range docs {
			docs[i] = int64(i)
		}
		for q := range nq {
			add(q, docs, all[q*rows:(q+1)*rows])
		}
		return
	}
	vals, idx := s.MustTopk(int64(k+1), 1, true, true, false)
	v := f32(vals, nq*(k+1))
	ids := idx.MustTo(gotch.CPU, false).MustContiguous(true).Int64Values()
	for q := range nq {
		row := v[q*(k+1) : (q+1)*(k+1)]
		if row[k-1] != row[k] {
			add(q, ids[q*(k+1):q*(k+1)+k], row[:k])
			continue
		}
		r := s.MustSelect(0, int64(q), false)
		mask := r.MustGe(ts.FloatScalar(float64(row[k-1])), false)
		where := mask.MustNonzero(false).MustTo(gotch.CPU, true).Int64Values() // [M, 1]
		add(q, where, f32(r.MustMaskedSelect(mask, false), len(where)))
	}
}

// denseBefore is trecBefore on candidates: score descending, then doc id
// descending (bytewise, as strcmp).
func (ix *DenseIndex) denseBefore(a, b denseCand) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return bytes.Compare(ix.docIDBytes(int(a.doc)), ix.docIDBytes(int(b.doc))) > 0
}

// keepBest sorts candidates into trec_eval's order and keeps the first k.
func (ix *DenseIndex) keepBest(cs []denseCand, k int) []denseCand {
	slices.SortFunc(cs, func(a, b denseCand) int {
		switch {
		case ix.denseBefore(a, b):
			return -1
		case ix.denseBefore(b, a):
			return 1
		}
		return 0
	})
	if len(cs) > k {
		cs = cs[:k]
	}
	return cs
}

// residentChunks copies the whole matrix to dev in chunks of chunkRows
// documents, persisted so that they outlive the scope (the caller drops
// them).
func (ix *DenseIndex) residentChunks(dev gotch.Device, chunkRows int) ([]*ts.Tensor, error) {
	var out []*ts.Tensor
	err := torchmods.Try(func() {
		for start := 0; start < ix.n; start += chunkRows {
			func() {
				sc := ts.NewScope()
				defer sc.Close()
				t := ix.chunkTensor(start, min(chunkRows, ix.n-start), dev)
				ts.Persist(t)
				out = append(out, t)
			}()
		}
	})
	if err != nil {
		for _, t := range out {
			t.MustDrop()
		}
		return nil, fmt.Errorf("ir: dense index %s onto %v: %w", ix.path, dev, err)
	}
	return out, nil
}

// EncodeCorpusOptions configure EncodeCorpus.
type EncodeCorpusOptions struct {
	// Batch is the passages per forward pass (0: 128).
	Batch int
	// Window is the passages tokenised at once and sorted by length before
	// they are cut into batches, so that a batch pads little (0: 64
	// batches). It bounds the memory of token ids; the vectors go to the
	// file as they are made.
	Window int
	// Progress, when set, receives a line every tenth of the corpus.
	Progress io.Writer
}

// EncodeCorpus encodes the documents with the passage encoder and writes
// the flat index to path, batch by batch: the vectors never all sit in
// memory. It returns the index's size and the time it took.
func EncodeCorpus(enc *DenseEncoder, docs []Document, path string, o EncodeCorpusOptions) (DenseIndexStats, error) {
	if o.Batch <= 0 {
		o.Batch = 128
	}
	if o.Window <= 0 {
		o.Window = 64 * o.Batch
	}
	start := time.Now()
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	sim := SimDot
	if enc.Normalize {
		sim = SimCosine
	}
	w, err := CreateDenseIndex(path, ids, enc.Dim(), sim)
	if err != nil {
		return DenseIndexStats{}, err
	}
	next := len(docs) / 10
	for w0 := 0; w0 < len(docs); w0 += o.Window {
		win := docs[w0:min(w0+o.Window, len(docs))]
		texts := make([]string, len(win))
		for i, d := range win {
			texts[i] = d.Text
		}
		seqs, err := enc.TokenizeAll(texts)
		if err != nil {
			w.Abort()
			return DenseIndexStats{}, err
		}
		err = enc.encodeSeqs(nil, seqs, o.Batch, func(idx []int, vecs []float32) error {
			rows := make([]int, len(idx))
			for i, j := range idx {
				rows[i] = w0 + j
			}
			return w.Write(rows, vecs)
		})
		if err != nil {
			w.Abort()
			return DenseIndexStats{}, err
		}
		if o.Progress != nil && w0+len(win) >= next && next > 0 {
			fmt.Fprintf(o.Progress, "encoded %d of %d passages (%.0f s)\n", w0+len(win), len(docs), time.Now().Sub(start).Seconds())
			next += len(docs) / 10
		}
	}
	size, err := w.Close()
	if err != nil {
		return DenseIndexStats{}, err
	}
	return DenseIndexStats{Docs: len(docs), Dim: enc.Dim(), Bytes: size, Seconds: time.Now().Sub(start).Seconds()}, nil
}
