package ir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadOptions configure LoadTest. Zero fields take the defaults in brackets.
type LoadOptions struct {
	// Concurrency is the number of clients, each sending its next request
	// as soon as the last is answered (closed loop) [16].
	Concurrency int
	// Requests is the total number of requests [2000].
	Requests int
	// K is each request's k [0: omitted, the server's DefaultK].
	K int
	// QueriesPerRequest > 1 sends {"queries": [...]} with that many
	// queries; otherwise each request is {"query": "..."}.
	QueriesPerRequest int
	// Timeout bounds each request [30 s].
	Timeout time.Duration
	// Client sends the requests [nil: a client keeping Concurrency
	// connections alive, so that connection set-up is not measured].
	Client *http.Client
}

// LoadReport is what a load test measured. Latencies are wall-clock times
// from sending a request to having read and decoded its whole answer, over
// the successful requests only (a refused or failed request measures the
// failure path, not a search); Errors counts the others.
type LoadReport struct {
	Concurrency       int
	QueriesPerRequest int
	Requests          int // requests completed, failed ones included
	Errors            int // transport errors, non-200 answers and answers that do not decode
	FirstError        string
	Mean              time.Duration
	P50, P90, P99     time.Duration // nearest-rank percentiles (see Percentile)
	Max               time.Duration
	Elapsed           time.Duration
	Throughput        float64 // completed requests per second of Elapsed
}

// String is the report on one line, as the CLI prints it and READMEs quote
// it.
func (r LoadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests", r.Requests)
	if r.QueriesPerRequest > 1 {
		fmt.Fprintf(&b, " of %d queries", r.QueriesPerRequest)
	}
	fmt.Fprintf(&b, ", %d clients, %d errors, in %v: %.0f req/s; latency mean %v, p50 %v, p90 %v, p99 %v, max %v",
		r.Concurrency, r.Errors, r.Elapsed.Round(time.Millisecond), r.Throughput,
		roundDuration(r.Mean), roundDuration(r.P50), roundDuration(r.P90), roundDuration(r.P99), roundDuration(r.Max))
	if r.FirstError != "" {
		fmt.Fprintf(&b, " (first error: %s)", r.FirstError)
	}
	return b.String()
}

// roundDuration keeps three significant figures or so: 1.234ms, 56.7µs.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted, which
// must be in ascending order, by the nearest-rank method: the smallest
// value with at least p% of the values at or below it, which is always one
// of the measured values (no interpolation), so p100 is the maximum. An
// empty slice gives 0; p <= 0 gives the minimum.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[max(1, min(rank, n))-1]
}

// searchURL accepts a server's base address or its /search endpoint.
func searchURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("ir: load test URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("ir: load test URL %q: want http://host:port[/search]", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/search"
	}
	return u.String(), nil
}

// LoadTest sends o.Requests search requests to a search service (url: its
// base address or /search endpoint) from o.Concurrency concurrent clients,
// cycling through queries, and reports latency percentiles and throughput.
// Every answer is read and decoded and must hold one ranking per query, so
// a server that answers quickly but wrongly is counted as failing. It
// returns an error only when it cannot run (no queries, bad URL) or when
// ctx ends, with the report of what completed.
func LoadTest(ctx context.Context, url string, queries []string, o LoadOptions) (LoadReport, error) {
	if len(queries) == 0 {
		return LoadReport{}, errors.New("ir: load test needs at least one query")
	}
	target, err := searchURL(url)
	if err != nil {
		return LoadReport{}, err
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Requests <= 0 {
		o.Requests = 2000
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	o.QueriesPerRequest = max(1, o.QueriesPerRequest)
	o.Concurrency = min(o.Concurrency, o.Requests)
	client := o.Client
	if client == nil {
		tr := &http.Transport{
			MaxIdleConns:        o.Concurrency,
			MaxIdleConnsPerHost: o.Concurrency,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}

	body := func(i int) []byte {
		req := SearchRequest{K: o.K}
		if o.QueriesPerRequest == 1 {
			req.Query = queries[i%len(queries)]
		} else {
			for j := range o.QueriesPerRequest {
				req.Queries = append(req.Queries, queries[(i*o.QueriesPerRequest+j)%len(queries)])
			}
		}
		b, _ := json.Marshal(req)
		return b
	}
	one := func(i int) (time.Duration, error) {
		rctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		start := time.Now()
		req, err := http.NewRequestWithContext(rctx, http.MethodPost, target, bytes.NewReader(body(i)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			var e ErrorResponse
			json.Unmarshal(data, &e)
			return 0, fmt.Errorf("status %d: %s", resp.StatusCode, e.Error)
		}
		var sr SearchResponse
		if err := json.Unmarshal(data, &sr); err != nil {
			return 0, fmt.Errorf("decoding the answer: %w", err)
		}
		if len(sr.Results) != o.QueriesPerRequest {
			return 0, fmt.Errorf("%d rankings for %d queries", len(sr.Results), o.QueriesPerRequest)
		}
		return time.Since(start), nil
	}

	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, o.Requests)
		rep       = LoadReport{Concurrency: o.Concurrency, QueriesPerRequest: o.QueriesPerRequest}
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range o.Concurrency {
		wg.Go(func() {
			var mine []time.Duration
			var errs int
			var first string
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(o.Requests) {
					break
				}
				d, err := one(int(i))
				if err != nil {
					if ctx.Err() != nil {
						break // cancelled, not failed
					}
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			rep.Errors += errs
			rep.Requests += len(mine) + errs
			if rep.FirstError == "" {
				rep.FirstError = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		var sum time.Duration
		for _, d := range latencies {
			sum += d
		}
		rep.Mean = sum / time.Duration(n)
		rep.P50 = Percentile(latencies, 50)
		rep.P90 = Percentile(latencies, 90)
		rep.P99 = Percentile(latencies, 99)
		rep.Max = latencies[n-1]
	}
	if rep.Elapsed > 0 {
		rep.Throughput = float64(rep.Requests) / rep.Elapsed.Seconds()
	}
	return rep, ctx.Err()
}
