package ir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoFirst returns, for query q, the documents q#1 ... q#k, so that every
// answer shows which query it was computed for: an answer sent to the wrong
// request of a batch is caught.
var echoFirst = RetrieverFunc(func(ctx context.Context, queries []string, k int) ([][]Result, error) {
	out := make([][]Result, len(queries))
	for i, q := range queries {
		for j := range k {
			out[i] = append(out[i], Result{fmt.Sprintf("%s#%d", q, j+1), float64(k - j)})
		}
	}
	return out, nil
})

// quietLog is a logger into a buffer, safe to read once the request that
// logged has been answered.
func quietLog() (*log.Logger, *syncBuffer) {
	b := &syncBuffer{}
	return log.New(b, "", 0), b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) errResp(t *testing.T) ErrorResponse {
	t.Helper()
	var e ErrorResponse
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body %q is not an ErrorResponse (%v)", a.status, a.body, err)
	}
	return e
}

func (a answer) search(t *testing.T) SearchResponse {
	t.Helper()
	var r SearchResponse
	if err := json.Unmarshal(a.body, &r); err != nil {
		t.Fatalf("status %d: body %q: %v", a.status, a.body, err)
	}
	return r
}

func do(h http.Handler, method, path string, body io.Reader) answer {
	req := httptest.NewRequest(method, path, body)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return answer{w.Code, w.Header(), w.Body.Bytes()}
}

func post(h http.Handler, body string) answer {
	return do(h, http.MethodPost, "/search", strings.NewReader(body))
}

func TestServeSearch(t *testing.T) {
	s := NewServer(&Pipeline{First: echoFirst}, ServeOptions{})
	a := post(s, `{"query": "cats"}`)
	if a.status != 200 || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	r := a.search(t)
	if len(r.Results) != 1 || len(r.Results[0]) != DefaultK || r.Results[0][0] != (SearchHit{"cats#1", DefaultK}) {
		t.Errorf("got %+v", r)
	}
	r = post(s, `{"queries": ["a", "b c"], "k": 3}`).search(t)
	want := [][]SearchHit{{{"a#1", 3}, {"a#2", 2}, {"a#3", 1}}, {{"b c#1", 3}, {"b c#2", 2}, {"b c#3", 1}}}
	if !slices.EqualFunc(r.Results, want, slices.Equal) {
		t.Errorf("got %+v, want %+v", r.Results, want)
	}
	// A query without results is an empty list, not null.
	empty := RetrieverFunc(func(_ context.Context, qs []string, _ int) ([][]Result, error) { return make([][]Result, len(qs)), nil })
	a = post(NewServer(&Pipeline{First: empty}, ServeOptions{}), `{"query": "x"}`)
	if !bytes.Contains(a.body, []byte(`"results":[[]]`)) {
		t.Errorf("no results: body %s", a.body)
	}
	a = do(s, http.MethodGet, "/healthz", nil)
	if a.status != 200 || !bytes.Contains(a.body, []byte(`"ok"`)) {
		t.Errorf("healthz: %d %s", a.status, a.body)
	}
}

// Every malformed or oversized request gets a 4xx naming the field at
// fault; none reaches the pipeline.
func TestServeRequestErrors(t *testing.T) {
	called := false
	first := RetrieverFunc(func(ctx context.Context, qs []string, k int) ([][]Result, error) {
		called = true
		return echoFirst(ctx, qs, k)
	})
	s := NewServer(&Pipeline{First: first}, ServeOptions{MaxBodyBytes: 256, MaxQueries: 4, MaxK: 100})
	big := `{"query": "` + strings.Repeat("x", 300) + `"}`
	for _, c := range []struct {
		name, method, path string
		body               io.Reader
		status             int
		field              string
	}{
		{"get search", "GET", "/search", nil, 405, ""},
		{"put healthz", "PUT", "/healthz", nil, 405, ""},
		{"unknown path", "GET", "/nope", nil, 404, ""},
		{"empty body", "POST", "/search", strings.NewReader(""), 400, ""},
		{"truncated", "POST", "/search", strings.NewReader(`{"query": "a"`), 400, ""},
		{"syntax", "POST", "/search", strings.NewReader(`{"query": }`), 400, ""},
		{"not json", "POST", "/search", strings.NewReader(`query=cats`), 400, ""},
		{"array", "POST", "/search", strings.NewReader(`["a"]`), 400, ""},
		{"string", "POST", "/search", strings.NewReader(`"a"`), 400, ""},
		{"query number", "POST", "/search", strings.NewReader(`{"query": 5}`), 400, "query"},
		{"queries string", "POST", "/search", strings.NewReader(`{"queries": "a"}`), 400, "queries"},
		{"queries numbers", "POST", "/search", strings.NewReader(`{"queries": [1]}`), 400, "queries"},
		{"k string", "POST", "/search", strings.NewReader(`{"query": "a", "k": "10"}`), 400, "k"},
		{"k fraction", "POST", "/search", strings.NewReader(`{"query": "a", "k": 1.5}`), 400, "k"},
		{"k huge", "POST", "/search", strings.NewReader(`{"query": "a", "k": 1e30}`), 400, "k"},
		{"k zero", "POST", "/search", strings.NewReader(`{"query": "a", "k": 0}`), 400, "k"},
		{"k negative", "POST", "/search", strings.NewReader(`{"query": "a", "k": -3}`), 400, "k"},
		{"k over max", "POST", "/search", strings.NewReader(`{"query": "a", "k": 101}`), 400, "k"},
		{"empty query", "POST", "/search", strings.NewReader(`{"query": ""}`), 400, "query"},
		{"blank query", "POST", "/search", strings.NewReader(`{"query": " \t\n"}`), 400, "query"},
		{"null query", "POST", "/search", strings.NewReader(`{"query": null}`), 400, "query"},
		{"no query", "POST", "/search", strings.NewReader(`{"k": 10}`), 400, "query"},
		{"empty object", "POST", "/search", strings.NewReader(`{}`), 400, "query"},
		{"empty list", "POST", "/search", strings.NewReader(`{"queries": []}`), 400, "queries"},
		{"empty in list", "POST", "/search", strings.NewReader(`{"queries": ["a", ""]}`), 400, "queries[1]"},
		{"both", "POST", "/search", strings.NewReader(`{"query": "a", "queries": ["b"]}`), 400, "queries"},
		{"unknown field", "POST", "/search", strings.NewReader(`{"query": "a", "topk": 3}`), 400, "topk"},
		{"two objects", "POST", "/search", strings.NewReader(`{"query": "a"} {"query": "b"}`), 400, ""},
		{"trailing junk", "POST", "/search", strings.NewReader(`{"query": "a"} x`), 400, ""},
		{"too many queries", "POST", "/search", strings.NewReader(`{"queries": ["a", "b", "c", "d", "e"]}`), 413, "queries"},
		{"body too large", "POST", "/search", strings.NewReader(big), 413, ""},
		// No Content-Length: the limit is found while reading.
		{"body too large, chunked", "POST", "/search", io.MultiReader(strings.NewReader(big)), 413, ""},
	} {
		a := do(s, c.method, c.path, c.body)
		e := a.errResp(t)
		if a.status != c.status || e.Field != c.field {
			t.Errorf("%s: status %d field %q (%s), want %d %q", c.name, a.status, e.Field, e.Error, c.status, c.field)
		}
		if c.status == 405 && a.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", c.name)
		}
	}
	if called {
		t.Error("a refused request reached the pipeline")
	}
}

// Random corruptions of valid requests: each is answered 200 or 4xx, and
// the server answers the next valid request.
func TestServeGarbageNeverCrashes(t *testing.T) {
	s := NewServer(&Pipeline{First: echoFirst}, ServeOptions{MaxBodyBytes: 512, MaxK: 50})
	seeds := []string{`{"query": "cats and dogs", "k": 5}`, `{"queries": ["a", "b"], "k": 2}`, `{"query": "x"}`}
	rng := rand.New(rand.NewPCG(1, 2))
	junk := []byte(`{}[]",:0123456789.eE+-tfnul\ 	` + "\x00\xff\xc3")
	counts := map[int]int{}
	for i := range 600 {
		b := []byte(seeds[i%len(seeds)])
		for range 1 + rng.IntN(4) {
			switch p := rng.IntN(len(b) + 1); rng.IntN(3) {
			case 0: // delete
				if p < len(b) {
					b = slices.Delete(b, p, p+1)
				}
			case 1: // insert
				b = slices.Insert(b, p, junk[rng.IntN(len(junk))])
			case 2: // truncate
				b = b[:p]
			}
		}
		a := post(s, string(b))
		counts[a.status]++
		if a.status != 200 && a.status != 400 && a.status != 413 {
			t.Fatalf("body %q: status %d %s", b, a.status, a.body)
		}
		if a.status != 200 {
			a.errResp(t)
		}
	}
	t.Logf("statuses of 600 corrupted requests: %v", counts)
	if a := post(s, seeds[0]); a.status != 200 {
		t.Errorf("valid request after the garbage: %d", a.status)
	}
}

func TestServeTimeout504(t *testing.T) {
	cancelled := make(chan struct{})
	slow := RetrieverFunc(func(ctx context.Context, _ []string, _ int) ([][]Result, error) {
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	// The timeout leaves a loaded machine time to start the search (a
	// request still queued when it expires is a 503, tested below).
	s := NewServer(&Pipeline{First: slow}, ServeOptions{Timeout: 300 * time.Millisecond})
	a := post(s, `{"query": "a"}`)
	if a.status != http.StatusGatewayTimeout {
		t.Fatalf("status %d %s, want 504", a.status, a.body)
	}
	a.errResp(t)
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the pipeline's context was not cancelled after the timeout")
	}
}

// With the only slot held by a search that ignores its context, a second
// request waits for a slot until its timeout and gets 503.
func TestServeSaturated503(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stuck := RetrieverFunc(func(ctx context.Context, qs []string, k int) ([][]Result, error) {
		if qs[0] == "stuck" {
			once.Do(func() { close(entered) })
			<-release
		}
		return echoFirst(ctx, qs, k)
	})
	s := NewServer(&Pipeline{First: stuck}, ServeOptions{MaxConcurrent: 1, Timeout: 500 * time.Millisecond})
	first := make(chan answer)
	go func() { first <- post(s, `{"query": "stuck"}`) }()
	select {
	case <-entered:
	case a := <-first:
		t.Fatalf("the first request never reached the pipeline: %d %s", a.status, a.body)
	}
	a := post(s, `{"query": "waiting"}`)
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("queued request: status %d, Retry-After %q: %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	a.errResp(t)
	if a := <-first; a.status != http.StatusGatewayTimeout {
		t.Errorf("stuck request: status %d, want 504", a.status)
	}
	close(release)
	// The slot comes back.
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := post(s, `{"query": "later"}`)
		if a.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after release: status %d", a.status)
		}
	}
}

func TestServePipelineFailures500(t *testing.T) {
	logger, logs := quietLog()
	first := RetrieverFunc(func(ctx context.Context, qs []string, k int) ([][]Result, error) {
		switch qs[0] {
		case "panic":
			// Tensor code's failure: a panic with an error value (a shape
			// check, a libtorch error), which the server turns into a 500.
			panic(fmt.Errorf("ir: scores of shape [3 7] for 2 queries"))
		case "error":
			return nil, errors.New("disk on fire")
		case "nan":
			return [][]Result{{{"d", math.NaN()}}}, nil
		case "short":
			return nil, nil
		}
		return echoFirst(ctx, qs, k)
	})
	s := NewServer(&Pipeline{First: first}, ServeOptions{MaxConcurrent: 1, Logger: logger})
	for _, q := range []string{"panic", "error", "nan", "short", "panic"} {
		a := post(s, fmt.Sprintf(`{"query": %q}`, q))
		e := a.errResp(t)
		if a.status != 500 {
			t.Errorf("%s: status %d, want 500", q, a.status)
		}
		t.Logf("%s: 500 %s", q, e.Error)
		// The server carries on.
		if a := post(s, `{"query": "fine"}`); a.status != 200 {
			t.Errorf("after %s: status %d", q, a.status)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "panicked") || !strings.Contains(out, "scores of shape [3 7]") || !strings.Contains(out, "serve_test.go") {
		t.Errorf("panic not logged with its stack:\n%s", out)
	}
	if !strings.Contains(out, "disk on fire") {
		t.Errorf("pipeline error not logged:\n%s", out)
	}
}

// A panic whose value is not an error, a runtime error or a string, is a
// bug: the server logs it with its stack and lets it go on up rather than
// answering 500 and carrying on. It would end the process from the slot's
// goroutine, so the test calls the search itself, under a recover.
func TestServeNonErrorPanicsAreNotConverted(t *testing.T) {
	for _, c := range []struct {
		name  string
		boom  func()
		check func(v any) bool
	}{
		{"runtime error", func() {
			var m map[string]int
			m["boom"]++ // a nil map write
		}, func(v any) bool { _, ok := v.(runtime.Error); return ok }},
		{"string", func() { panic("ir: parameter registered twice") }, func(v any) bool { return v == "ir: parameter registered twice" }},
	} {
		logger, logs := quietLog()
		first := RetrieverFunc(func(ctx context.Context, qs []string, k int) ([][]Result, error) {
			c.boom()
			return nil, nil
		})
		s := NewServer(&Pipeline{First: first}, ServeOptions{Logger: logger})
		var recovered any
		var err error
		func() {
			defer func() { recovered = recover() }()
			_, err = s.search(context.Background(), []string{"q"}, 3)
		}()
		if recovered == nil || !c.check(recovered) {
			t.Errorf("%s: search returned error %v and panicked with %v; want the panic to go on up unchanged", c.name, err, recovered)
		}
		if out := logs.String(); !strings.Contains(out, "not recovered") || !strings.Contains(out, "serve_test.go") {
			t.Errorf("%s: the panic is not logged with its stack:\n%s", c.name, out)
		}
	}
}

// batchRecorder is a slow first stage that records the size and k of every
// call.
type batchRecorder struct {
	delay time.Duration
	mu    sync.Mutex
	sizes []int
	ks    []int
}

func (b *batchRecorder) Retrieve(ctx context.Context, qs []string, k int) ([][]Result, error) {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(qs))
	b.ks = append(b.ks, k)
	b.mu.Unlock()
	time.Sleep(b.delay)
	return echoFirst(ctx, qs, k)
}

func (b *batchRecorder) calls() ([]int, []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sizes), slices.Clone(b.ks)
}

// Concurrent single-query requests are answered by batched pipeline calls,
// each request getting its own query's ranking.
func TestServeBatchesUnderLoad(t *testing.T) {
	rec := &batchRecorder{delay: 3 * time.Millisecond}
	s := NewServer(&Pipeline{First: rec}, ServeOptions{MaxConcurrent: 1, MaxBatch: 8})
	const clients, each = 16, 15
	var wg sync.WaitGroup
	errs := make(chan string, clients*each)
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				q := fmt.Sprintf("client %d request %d", c, i)
				a := post(s, fmt.Sprintf(`{"query": %q, "k": 2}`, q))
				if a.status != 200 {
					errs <- fmt.Sprintf("%s: status %d", q, a.status)
					continue
				}
				var r SearchResponse
				json.Unmarshal(a.body, &r)
				if len(r.Results) != 1 || len(r.Results[0]) != 2 || r.Results[0][0].DocID != q+"#1" {
					errs <- fmt.Sprintf("%s: got %+v", q, r.Results)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	sizes, _ := rec.calls()
	total, biggest := 0, 0
	for _, n := range sizes {
		total += n
		biggest = max(biggest, n)
	}
	t.Logf("%d requests in %d pipeline calls, batch sizes %v", clients*each, len(sizes), sizes)
	if total != clients*each {
		t.Errorf("pipeline saw %d queries, want %d", total, clients*each)
	}
	if biggest < 2 || biggest > 8 {
		t.Errorf("largest batch %d, want 2 to MaxBatch 8", biggest)
	}
}

// With BatchWait, requests arriving within the window share one call even
// with slots free, a full batch goes without waiting the window out, and a
// batch that does not fill goes when the window ends.
func TestServeBatchWait(t *testing.T) {
	rec := &batchRecorder{}
	s := NewServer(&Pipeline{First: rec}, ServeOptions{MaxConcurrent: 4, MaxBatch: 5, BatchWait: 5 * time.Second})
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if a := post(s, fmt.Sprintf(`{"query": "q%d"}`, i)); a.status != 200 {
				t.Errorf("status %d", a.status)
			}
		})
	}
	wg.Wait()
	sizes, _ := rec.calls()
	if !slices.Equal(sizes, []int{5}) {
		t.Errorf("batch sizes %v, want [5]", sizes)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("a full batch waited %v", el)
	}

	rec = &batchRecorder{}
	s = NewServer(&Pipeline{First: rec}, ServeOptions{MaxBatch: 100, BatchWait: 200 * time.Millisecond})
	start = time.Now()
	if a := post(s, `{"query": "alone"}`); a.status != 200 {
		t.Errorf("status %d", a.status)
	}
	el := time.Since(start)
	if sizes, _ := rec.calls(); !slices.Equal(sizes, []int{1}) || el < 200*time.Millisecond || el > 4*time.Second {
		t.Errorf("a lone request: batch sizes %v after %v, want [1] after the 200ms window", sizes, el)
	}
}

// Requests with different k queued together are searched in separate calls,
// and a request with more queries than MaxBatch is not split.
func TestServeMixedK(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rec := &batchRecorder{}
	first := RetrieverFunc(func(ctx context.Context, qs []string, k int) ([][]Result, error) {
		if qs[0] == "hold" {
			once.Do(func() { close(entered) })
			<-release
		}
		return rec.Retrieve(ctx, qs, k)
	})
	s := NewServer(&Pipeline{First: first}, ServeOptions{MaxConcurrent: 1, MaxBatch: 4})
	var wg sync.WaitGroup
	wg.Go(func() { post(s, `{"query": "hold"}`) })
	<-entered
	answers := make([]answer, 4)
	bodies := []string{`{"query": "a", "k": 2}`, `{"query": "b", "k": 3}`, `{"query": "c", "k": 2}`, `{"queries": ["d", "e", "f", "g", "h", "i"], "k": 1}`}
	// Queue them behind "hold", in this order.
	for i, b := range bodies {
		wg.Go(func() { answers[i] = post(s, b) })
		for {
			s.mu.Lock()
			n := len(s.queue)
			s.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	close(release)
	wg.Wait()
	for i, want := range []struct {
		q string
		k int
	}{{"a", 2}, {"b", 3}, {"c", 2}} {
		r := answers[i].search(t)
		if len(r.Results[0]) != want.k || r.Results[0][0].DocID != want.q+"#1" {
			t.Errorf("%s: got %+v", bodies[i], r.Results)
		}
	}
	if r := answers[3].search(t); len(r.Results) != 6 || r.Results[5][0].DocID != "i#1" {
		t.Errorf("six queries: got %+v", r.Results)
	}
	sizes, ks := rec.calls()
	t.Logf("calls: sizes %v, ks %v", sizes, ks)
	// hold; then a, c (k 2) and b (k 3) in one batch of 3, searched in two
	// calls; then the 6 queries alone.
	if !slices.Equal(sizes, []int{1, 2, 1, 6}) || !slices.Equal(ks, []int{DefaultK, 2, 3, 1}) {
		t.Errorf("calls: sizes %v ks %v, want [1 2 1 6] [%d 2 3 1]", sizes, ks, DefaultK)
	}
}

// listen serves s on a real socket on 127.0.0.1 and shuts it down at the
// end of the test.
func listen(t *testing.T, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

func TestServeGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	first := RetrieverFunc(func(ctx context.Context, qs []string, k int) ([][]Result, error) {
		if qs[0] == "slow" {
			once.Do(func() { close(entered) })
			<-release
		}
		return echoFirst(ctx, qs, k)
	})
	s := NewServer(&Pipeline{First: first}, ServeOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	base := "http://" + l.Addr().String()

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	inflight := make(chan int)
	go func() {
		resp, err := http.Post(base+"/search", "application/json", strings.NewReader(`{"query": "slow"}`))
		if err != nil {
			t.Error(err)
			inflight <- 0
			return
		}
		resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Shutting down: health says so, new searches are refused.
	for {
		if a := do(s, "GET", "/healthz", nil); a.status == 503 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if a := post(s, `{"query": "new"}`); a.status != 503 {
		t.Errorf("search while shutting down: %d", a.status)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) before the request in flight was answered", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if code := <-inflight; code != 200 {
		t.Errorf("request in flight during shutdown: %d", code)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
	s.mu.Lock()
	active := s.active
	s.mu.Unlock()
	if active != 0 {
		t.Errorf("%d slot goroutines left after shutdown", active)
	}
	if err := s.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

// The load test of the issue: 16 clients send 2000 requests to a BM25
// pipeline over a generated index, through a real socket on 127.0.0.1.
func TestLoadTestBM25(t *testing.T) {
	requests := 2000
	if testing.Short() {
		requests = 300
	}
	ix, queries := buildGenIndex(t, 2000, 500)
	bm, err := NewBM25Retriever(ix, DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(&Pipeline{First: bm}, ServeOptions{})
	base := listen(t, s)
	st := ix.Stats()
	rep, err := LoadTest(context.Background(), base, queries, LoadOptions{Concurrency: 16, Requests: requests, K: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BM25 over %d generated documents (%d terms), k=10, MaxConcurrent %d: %v", st.NumDocs, st.NumTerms, s.Options().MaxConcurrent, rep)
	if rep.Requests != requests || rep.Errors != 0 {
		t.Errorf("%d requests, %d errors (%s)", rep.Requests, rep.Errors, rep.FirstError)
	}
	if !(0 < rep.P50 && rep.P50 <= rep.P90 && rep.P90 <= rep.P99 && rep.P99 <= rep.Max) || rep.Throughput <= 0 {
		t.Errorf("inconsistent report %+v", rep)
	}

	// Batches of queries per request, through the same service.
	rep, err = LoadTest(context.Background(), base+"/search", queries, LoadOptions{Concurrency: 4, Requests: requests / 10, K: 100, QueriesPerRequest: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BM25, 8 queries per request, k=100: %v", rep)
	if rep.Errors != 0 {
		t.Errorf("%d errors (%s)", rep.Errors, rep.FirstError)
	}
}

// The whole configurable pipeline under load: a BM25 + BM25-RM3 hybrid (RRF)
// re-ranked, with micro-batching waits.
func TestLoadTestHybridRerank(t *testing.T) {
	ix, queries := buildGenIndex(t, 500, 100)
	bm, err := NewBM25Retriever(ix, DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultSearchOptions()
	rm3 := DefaultRM3()
	o.RM3 = &rm3
	bmrm3, err := NewBM25Retriever(ix, o)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{First: &Hybrid{Retrievers: []Retriever{bm, bmrm3}, Method: FuseRRF}, Rerank: reverseRerank, RerankDepth: 50}
	s := NewServer(p, ServeOptions{MaxBatch: 16, BatchWait: time.Millisecond})
	rep, err := LoadTest(context.Background(), listen(t, s), queries, LoadOptions{Concurrency: 8, Requests: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hybrid BM25 + BM25-RM3 (RRF), re-ranked top 50: %v", rep)
	if rep.Requests != 200 || rep.Errors != 0 {
		t.Errorf("%d requests, %d errors (%s)", rep.Requests, rep.Errors, rep.FirstError)
	}
}

func TestLoadTestCountsErrors(t *testing.T) {
	first := RetrieverFunc(func(ctx context.Context, qs []string, k int) ([][]Result, error) {
		if slices.Contains(qs, "bad") {
			return nil, errors.New("no")
		}
		return echoFirst(ctx, qs, k)
	})
	logger, _ := quietLog()
	// MaxBatch 1, so that a bad query fails only its own request.
	s := NewServer(&Pipeline{First: first}, ServeOptions{MaxBatch: 1, Logger: logger})
	rep, err := LoadTest(context.Background(), listen(t, s), []string{"good", "bad"}, LoadOptions{Concurrency: 2, Requests: 20})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 20 || rep.Errors != 10 || !strings.Contains(rep.FirstError, "status 500") {
		t.Errorf("report %+v", rep)
	}
	if !strings.Contains(rep.String(), "10 errors") {
		t.Errorf("String() = %s", rep)
	}

	if _, err := LoadTest(context.Background(), "http://127.0.0.1:1", nil, LoadOptions{}); err == nil {
		t.Error("load test without queries ran")
	}
	for _, u := range []string{"127.0.0.1:8080", "ftp://x/search", "http://"} {
		if _, err := LoadTest(context.Background(), u, []string{"q"}, LoadOptions{}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rep, err := LoadTest(ctx, "http://127.0.0.1:1", []string{"q"}, LoadOptions{}); !errors.Is(err, context.Canceled) || rep.Errors != 0 {
		t.Errorf("cancelled: %v, %+v", err, rep)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	ten := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for _, c := range []struct {
		xs   []time.Duration
		p    float64
		want int
	}{
		// Nearest rank: the ceil(p/100 * n)-th smallest.
		{ten, 50, 5}, {ten, 90, 9}, {ten, 99, 10}, {ten, 100, 10}, {ten, 10, 1}, {ten, 11, 2}, {ten, 0, 1},
		{ms(7), 50, 7}, {ms(7), 99, 7},
		{ms(1, 2, 3, 4), 50, 2}, {ms(1, 2, 3, 4), 51, 3},
		{nil, 50, 0},
	} {
		if got := Percentile(c.xs, c.p); got != time.Duration(c.want)*time.Millisecond {
			t.Errorf("Percentile(%v, %v) = %v, want %dms", c.xs, c.p, got, c.want)
		}
	}
	r := LoadReport{Concurrency: 16, Requests: 2000, P50: 1234567, P90: 2 * time.Millisecond, P99: 5 * time.Millisecond, Max: 9 * time.Millisecond, Elapsed: 1500 * time.Millisecond, Throughput: 1333.3}
	want := "2000 requests, 16 clients, 0 errors, in 1.5s: 1333 req/s; latency mean 0s, p50 1.235ms, p90 2ms, p99 5ms, max 9ms"
	if r.String() != want {
		t.Errorf("String() =\n%s\nwant\n%s", r, want)
	}
}
