package ir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultK is the number of results a search request gets when it does not
// say ("k" omitted): MRR@10 and nDCG@10 read ten.
const DefaultK = 10

// ServeOptions configure a Server. A zero or negative field takes its value
// from DefaultServeOptions, so ServeOptions{} is a working configuration.
type ServeOptions struct {
	// MaxBatch is the most queries sent to the pipeline in one call when
	// requests are gathered (a single request with more queries still goes
	// in one call). It bounds the batch a bi-encoder encodes at once.
	MaxBatch int
	// BatchWait is how long a pipeline slot, once it has a first request,
	// waits for more before calling the pipeline with a batch that is not
	// full. 0 (the default) never waits: a batch is then whatever queued
	// while every slot was busy, which batches under load and adds no
	// latency at light load (BM25 on a CPU gains nothing from waiting). A
	// GPU encoder at moderate load may gain throughput from a few
	// milliseconds.
	BatchWait time.Duration
	// MaxConcurrent is the number of pipeline calls allowed at once (the
	// pipeline slots); requests beyond it wait in a queue. Default:
	// runtime.GOMAXPROCS(0); a pipeline on one GPU wants 1 or 2.
	MaxConcurrent int
	// MaxBodyBytes is the largest request body read (default 1 MiB); a
	// larger one is refused with 413 before it is decoded.
	MaxBodyBytes int64
	// MaxQueries is the most queries in one request (default 128); more
	// is refused with 413.
	MaxQueries int
	// MaxK is the largest k a request may ask for (default 1000, the depth
	// of a TREC run).
	MaxK int
	// Timeout bounds a request from the moment its body is read: waiting
	// for a slot and searching (default 10 s). A request that is still
	// queued when it expires gets 503, one whose search is running gets
	// 504, and the pipeline's context is cancelled once no request of its
	// batch is waiting any more.
	Timeout time.Duration
	// Logger receives panics and pipeline errors (nil: log.Default()).
	Logger *log.Logger
}

// DefaultServeOptions returns the defaults each zero field of ServeOptions
// stands for.
func DefaultServeOptions() ServeOptions {
	return ServeOptions{
		MaxBatch:      32,
		BatchWait:     0,
		MaxConcurrent: runtime.GOMAXPROCS(0),
		MaxBodyBytes:  1 << 20,
		MaxQueries:    128,
		MaxK:          1000,
		Timeout:       10 * time.Second,
		Logger:        log.Default(),
	}
}

func (o ServeOptions) withDefaults() ServeOptions {
	d := DefaultServeOptions()
	if o.MaxBatch <= 0 {
		o.MaxBatch = d.MaxBatch
	}
	if o.BatchWait < 0 {
		o.BatchWait = 0
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = d.MaxConcurrent
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = d.MaxBodyBytes
	}
	if o.MaxQueries <= 0 {
		o.MaxQueries = d.MaxQueries
	}
	if o.MaxK <= 0 {
		o.MaxK = d.MaxK
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	return o
}

// SearchRequest is the body of POST /search: one query or a list of them,
// and k (omitted: DefaultK). The server refuses a body with both query and
// queries, with neither, or with fields it does not know (so that a typo
// such as "querys" is an error rather than a silently empty search).
type SearchRequest struct {
	Query   string   `json:"query,omitempty"`
	Queries []string `json:"queries,omitempty"`
	K       int      `json:"k,omitempty"`
}

// SearchHit is one ranked document of a SearchResponse.
type SearchHit struct {
	DocID string  `json:"docid"`
	Score float64 `json:"score"`
}

// SearchResponse is the answer to POST /search: Results[i] is the ranking
// of the i-th query (a request with "query" gets one list), best first, and
// TookMS the time the server spent on the request, queueing included.
type SearchResponse struct {
	Results [][]SearchHit `json:"results"`
	TookMS  float64       `json:"took_ms"`
}

// ErrorResponse is the body of every 4xx and 5xx answer. Field names the
// request field at fault ("query", "queries[3]", "k"), when one is.
type ErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// Server is the HTTP JSON search service of `repro ir serve` over any
// Pipeline. It is an http.Handler:
//
//	POST /search  {"query": "...", "k": 10} or {"queries": ["...", ...], "k": 10}
//	              -> 200 {"results": [[{"docid": "...", "score": 1.5}, ...]], "took_ms": 0.8}
//	GET  /healthz -> 200 {"status": "ok"} (503 once shutting down)
//
// Requests are gathered into batches (micro-batching): pending requests
// wait in one queue, and each of at most MaxConcurrent pipeline slots takes
// up to MaxBatch queries from it per pipeline call, waiting up to BatchWait
// for a batch to fill. This is what makes the service's query encoding
// batched: a dense first stage encodes the queries of many concurrent
// requests in one forward pass. Requests with different k are searched in
// separate pipeline calls, so that an answer never depends on which other
// requests shared its batch (a fused or re-ranked top k is not a prefix of
// the top k' > k).
//
// Failures, all answered with an ErrorResponse:
//
//	400  malformed JSON, unknown field, wrong type, missing or empty query,
//	     k outside [1, MaxK], both query and queries
//	404  unknown path
//	405  wrong method (Allow says which)
//	413  body over MaxBodyBytes, or more than MaxQueries queries
//	500  the pipeline failed or panicked with an error value (tensor
//	     code's panics; logged with the stack, and the other requests and
//	     the server carry on). A panic with any other value, a runtime
//	     error or a string, is a bug: it is logged and not recovered.
//	503  no pipeline slot became free within Timeout, or shutting down
//	504  the search did not finish within Timeout
type Server struct {
	p   *Pipeline
	o   ServeOptions
	log *log.Logger

	mu        sync.Mutex
	queue     []*pending // FIFO of requests waiting for a slot
	active    int        // slot goroutines running
	gathering int        // slots waiting BatchWait for their batch to fill
	closed    bool
	workers   sync.WaitGroup
	more      chan struct{} // pokes a gathering slot: the queue grew
	servers   []*http.Server
}

// NewServer returns a server running p with o (zero fields: defaults).
func NewServer(p *Pipeline, o ServeOptions) *Server {
	o = o.withDefaults()
	return &Server{p: p, o: o, log: o.Logger, more: make(chan struct{}, 1)}
}

// Options returns the options in effect, defaults filled in.
func (s *Server) Options() ServeOptions { return s.o }

// pending is one request waiting for, or in, a pipeline call.
type pending struct {
	ctx     context.Context
	queries []string
	k       int
	started atomic.Bool  // taken into a pipeline call: expiry is then 504, not 503
	done    chan outcome // buffered: the slot never blocks on a request that gave up
}

type outcome struct {
	results [][]Result
	err     error
}

// pipelinePanic is a panic with an error value recovered from the
// pipeline, as an error.
type pipelinePanic struct{ v error }

func (p *pipelinePanic) Error() string { return fmt.Sprintf("ir: pipeline panicked: %v", p.v) }

func (p *pipelinePanic) Unwrap() error { return p.v }

// submit queues a request and makes sure a slot will take it. It returns
// false once the server is shutting down.
func (s *Server) submit(it *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.queue = append(s.queue, it)
	s.startSlotLocked()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return true
}

// startSlotLocked starts a slot if requests are waiting, a slot is free and
// none is already gathering a batch (which would take them). Slots are
// goroutines that exit when the queue is empty, so an idle server holds no
// goroutines and a Server that is never shut down leaks none.
func (s *Server) startSlotLocked() {
	if len(s.queue) > 0 && s.active < s.o.MaxConcurrent && s.gathering == 0 {
		s.active++
		s.workers.Add(1)
		go s.slot()
	}
}

// takeLocked moves requests from the front of the queue into batch while
// it holds fewer than MaxBatch queries (the first request always fits),
// dropping requests whose context has expired: their handlers answer them.
func (s *Server) takeLocked(batch []*pending, n int) ([]*pending, int) {
	i := 0
	for ; i < len(s.queue); i++ {
		it := s.queue[i]
		if it.ctx.Err() != nil {
			continue
		}
		if n > 0 && n+len(it.queries) > s.o.MaxBatch {
			break
		}
		batch = append(batch, it)
		n += len(it.queries)
	}
	clear(s.queue[:i])
	s.queue = s.queue[i:]
	return batch, n
}

// slot is one pipeline slot: it takes batches from the queue and runs them
// until the queue is empty.
func (s *Server) slot() {
	defer s.workers.Done()
	for {
		s.mu.Lock()
		batch, n := s.takeLocked(nil, 0)
		if len(batch) == 0 {
			s.active--
			s.mu.Unlock()
			return
		}
		if n < s.o.MaxBatch && s.o.BatchWait > 0 {
			s.gathering++
			s.mu.Unlock()
			timer := time.NewTimer(s.o.BatchWait)
		gather:
			for n < s.o.MaxBatch {
				select {
				case <-s.more:
					s.mu.Lock()
					batch, n = s.takeLocked(batch, n)
					s.mu.Unlock()
				case <-timer.C:
					break gather
				}
			}
			timer.Stop()
			s.mu.Lock()
			s.gathering--
			batch, _ = s.takeLocked(batch, n)
			// Requests that did not fit need another slot.
			s.startSlotLocked()
		}
		s.mu.Unlock()
		s.run(batch)
	}
}

// run searches a batch, one pipeline call per distinct k, and hands each
// request its share of the results. The pipeline's context is cancelled
// when every request of the batch has expired or gone away.
func (s *Server) run(batch []*pending) {
	for _, it := range batch {
		it.started.Store(true)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var left atomic.Int64
	left.Store(int64(len(batch)))
	for _, it := range batch {
		stop := context.AfterFunc(it.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	var ks []int
	byK := map[int][]*pending{}
	for _, it := range batch {
		if byK[it.k] == nil {
			ks = append(ks, it.k)
		}
		byK[it.k] = append(byK[it.k], it)
	}
	for _, k := range ks {
		group := byK[k]
		var queries []string
		for _, it := range group {
			queries = append(queries, it.queries...)
		}
		res, err := s.search(ctx, queries, k)
		off := 0
		for _, it := range group {
			if err != nil {
				it.done <- outcome{err: err}
				continue
			}
			it.done <- outcome{results: res[off : off+len(it.queries)]}
			off += len(it.queries)
		}
	}
}

// search calls the pipeline. A panic whose value is an error (tensor
// code's: a libtorch error, a layer's shape check) becomes an error, so
// that one bad query fails its batch and not the process; as torchmods
// rules, any other panic (a runtime error such as a nil dereference, a
// string from code misusing an API) is a bug: it is logged with its stack
// and goes on up, unconverted.
func (s *Server) search(ctx context.Context, queries []string, k int) (res [][]Result, err error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		e, isErr := v.(error)
		if _, isRuntime := v.(runtime.Error); !isErr || isRuntime {
			s.log.Printf("ir: serve: pipeline panicked on a batch of %d queries (k=%d), a bug, not recovered: %v\n%s", len(queries), k, v, debug.Stack())
			panic(v)
		}
		s.log.Printf("ir: serve: pipeline panicked on a batch of %d queries (k=%d): %v\n%s", len(queries), k, e, debug.Stack())
		res, err = nil, &pipelinePanic{e}
	}()
	res, err = s.p.Search(ctx, queries, k)
	if err == nil && len(res) != len(queries) {
		err = fmt.Errorf("ir: pipeline returned %d result lists for %d queries", len(res), len(queries))
	}
	if err != nil && ctx.Err() == nil {
		s.log.Printf("ir: serve: pipeline error on a batch of %d queries (k=%d): %v", len(queries), k, err)
	}
	return res, err
}

// ServeHTTP routes /search and /healthz. A panic in the handler itself is
// answered with 500 and logged, like one in the pipeline.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Printf("ir: serve: panic handling %s %s: %v\n%s", r.Method, r.URL.Path, v, debug.Stack())
			writeError(w, http.StatusInternalServerError, "", "internal error")
		}
	}()
	switch r.URL.Path {
	case "/search":
		s.handleSearch(w, r, start)
	case "/healthz":
		s.handleHealth(w, r)
	default:
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("no endpoint %q (POST /search, GET /healthz)", r.URL.Path))
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s not allowed on /healthz (GET)", r.Method))
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// httpError is a refusal: status, field at fault and message.
type httpError struct {
	status int
	field  string
	msg    string
}

func badRequest(field, format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, field, fmt.Sprintf(format, args...)}
}

// wireRequest is SearchRequest as decoded: pointers tell a missing field
// from an empty one.
type wireRequest struct {
	Query   *string  `json:"query"`
	Queries []string `json:"queries"`
	K       *int     `json:"k"`
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request, start time.Time) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s not allowed on /search (POST a JSON body)", r.Method))
		return
	}
	queries, k, herr := s.parse(w, r)
	if herr != nil {
		writeError(w, herr.status, herr.field, herr.msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.Timeout)
	defer cancel()
	it := &pending{ctx: ctx, queries: queries, k: k, done: make(chan outcome, 1)}
	if !s.submit(it) {
		writeError(w, http.StatusServiceUnavailable, "", "server is shutting down")
		return
	}
	var out outcome
	select {
	case out = <-it.done:
	case <-ctx.Done():
		out.err = ctx.Err()
	}
	switch {
	case out.err == nil:
	case errors.Is(out.err, context.Canceled) || errors.Is(out.err, context.DeadlineExceeded):
		if r.Context().Err() != nil {
			return // the client went away; nobody reads an answer
		}
		if !it.started.Load() {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "", fmt.Sprintf("server busy: no pipeline slot free within %v", s.o.Timeout))
			return
		}
		writeError(w, http.StatusGatewayTimeout, "", fmt.Sprintf("search did not finish within %v", s.o.Timeout))
		return
	default:
		var pp *pipelinePanic
		if errors.As(out.err, &pp) {
			writeError(w, http.StatusInternalServerError, "", "internal error: the search pipeline panicked (logged)")
			return
		}
		writeError(w, http.StatusInternalServerError, "", "search failed: "+out.err.Error())
		return
	}
	resp := SearchResponse{Results: make([][]SearchHit, len(out.results))}
	for i, rs := range out.results {
		hits := make([]SearchHit, len(rs))
		for j, x := range rs {
			if math.IsNaN(x.Score) || math.IsInf(x.Score, 0) {
				s.log.Printf("ir: serve: pipeline returned score %v for document %q", x.Score, x.DocID)
				writeError(w, http.StatusInternalServerError, "", fmt.Sprintf("search failed: document %q has score %v", x.DocID, x.Score))
				return
			}
			hits[j] = SearchHit{x.DocID, x.Score}
		}
		resp.Results[i] = hits
	}
	resp.TookMS = float64(time.Since(start).Microseconds()) / 1000
	writeJSON(w, http.StatusOK, resp)
}

// parse reads and checks a search request, within MaxBodyBytes.
func (s *Server) parse(w http.ResponseWriter, r *http.Request) ([]string, int, *httpError) {
	tooLarge := &httpError{http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body larger than %d bytes", s.o.MaxBodyBytes)}
	if r.ContentLength > s.o.MaxBodyBytes {
		return nil, 0, tooLarge
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes))
	dec.DisallowUnknownFields()
	var req wireRequest
	err := dec.Decode(&req)
	if err == nil {
		// One object and nothing after it.
		if _, terr := dec.Token(); terr != io.EOF {
			if terr == nil {
				return nil, 0, badRequest("", "unexpected data after the JSON object")
			}
			err = terr
		}
	}
	if err != nil {
		var mb *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mb):
			return nil, 0, tooLarge
		case err == io.EOF:
			return nil, 0, badRequest("", `empty request body: want {"query": "...", "k": 10}`)
		case err == io.ErrUnexpectedEOF:
			return nil, 0, badRequest("", "truncated JSON")
		case errors.As(err, &se):
			return nil, 0, badRequest("", "malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			if te.Field == "" {
				return nil, 0, badRequest("", "request body must be a JSON object, not %s", te.Value)
			}
			want := map[string]string{"query": "a string", "queries": "a list of strings", "k": "an integer"}[te.Field]
			if want == "" {
				want = te.Type.String()
			}
			return nil, 0, badRequest(te.Field, "%s must be %s, not %s", te.Field, want, te.Value)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			f, _ = strconv.Unquote(f)
			return nil, 0, badRequest(f, `unknown field %q (want "query" or "queries", and "k")`, f)
		}
		return nil, 0, badRequest("", "invalid request: %v", err)
	}

	var queries []string
	switch {
	case req.Query != nil && req.Queries != nil:
		return nil, 0, badRequest("queries", `give either "query" or "queries", not both`)
	case req.Query != nil:
		if strings.TrimSpace(*req.Query) == "" {
			return nil, 0, badRequest("query", "query is empty")
		}
		queries = []string{*req.Query}
	case req.Queries != nil:
		if len(req.Queries) == 0 {
			return nil, 0, badRequest("queries", "queries is an empty list")
		}
		if len(req.Queries) > s.o.MaxQueries {
			return nil, 0, &httpError{http.StatusRequestEntityTooLarge, "queries", fmt.Sprintf("%d queries, at most %d per request", len(req.Queries), s.o.MaxQueries)}
		}
		for i, q := range req.Queries {
			if strings.TrimSpace(q) == "" {
				f := fmt.Sprintf("queries[%d]", i)
				return nil, 0, badRequest(f, "%s is empty", f)
			}
		}
		queries = req.Queries
	default:
		return nil, 0, badRequest("query", `missing: give "query" (a string) or "queries" (a list of strings)`)
	}
	k := min(DefaultK, s.o.MaxK)
	if req.K != nil {
		k = *req.K
		if k < 1 || k > s.o.MaxK {
			return nil, 0, badRequest("k", "k = %d, want 1 to %d", k, s.o.MaxK)
		}
	}
	return queries, k, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Error: "encoding the response: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, field, msg string) {
	writeJSON(w, status, ErrorResponse{Error: msg, Field: field})
}

// ListenAndServe serves on addr ("127.0.0.1:8080", ":8080") until
// Shutdown, when it returns http.ErrServerClosed as net/http does.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve serves on l until Shutdown (http.ErrServerClosed). The connection
// timeouts keep slow or stalled clients from holding connections: headers
// within 5 s, the whole request within Timeout, the answer within twice
// Timeout plus 5 s of the headers (the search itself is bounded by
// Timeout).
func (s *Server) Serve(l net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       s.o.Timeout,
		WriteTimeout:      2*s.o.Timeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log,
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	return hs.Serve(l)
}

// Shutdown stops the server gracefully: /healthz turns 503 (so a load
// balancer stops sending), listeners started by Serve or ListenAndServe
// close, requests in progress are answered, and Shutdown returns when the
// last pipeline call has finished, or with ctx's error if ctx ends first.
// New searches get 503.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
