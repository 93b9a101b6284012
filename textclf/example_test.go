package textclf_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/textclf"
	"github.com/reprolab/repro/torchmods"
)

// Open a Hugging Face BERT folder (config.json and model.safetensors, as
// save_pretrained writes them) with its tokenizer, and embed sentences: the
// mean of the last hidden states over each sentence's tokens. The fixture
// is a 2-layer BERT with random weights and a 50-token vocabulary, so the
// similarities say nothing about meaning; a real folder (hf:ORG/NAME, or a
// text.classify or mlm.pretrain run) opens the same way.
func ExampleModel_Embed() {
	m, err := textclf.Open("../torchmods/testdata/hf_bert_mlm", textclf.OpenOptions{Tokenizer: "testdata/vocab.txt"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	e, err := m.Embed([]string{"the movie was good", "the film was great", "the cat sat on the mat"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d sentences, %d dimensions each\n", len(e), len(e[0]))
	fmt.Printf("cos(0, 1) = %.3f\ncos(0, 2) = %.3f\n", cosine(e[0], e[1]), cosine(e[0], e[2]))
	// Output:
	// 3 sentences, 32 dimensions each
	// cos(0, 1) = 0.976
	// cos(0, 2) = 0.958
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// classify is one request's tensor work, as the tensor-lifetime rule
// (torchmods/doc.go) asks of a service: tokenising is plain Go; the
// forward pass runs in the request's own scope, which locks the goroutine
// to its OS thread until Close (so libtorch's per-thread no-grad mode stays
// with it) and frees every tensor the request made; the parameters are
// only read, so requests may run at once. Only Go values leave the scope.
func classify(m *textclf.Model, texts []string) ([][]float64, error) {
	ex := make([]textclf.Example, len(texts))
	for i, t := range texts {
		ex[i].Text = t
	}
	b, err := m.Batch(ex)
	if err != nil {
		return nil, err
	}
	var flat []float64
	err = torchmods.Try(func() { // a shape or dtype mistake panics with an error; Try returns it
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			ids, types, mask := b.Tensors(m.Store.Device)
			flat = m.Forward(ids, types, mask, false).MustSoftmax(-1, gotch.Double, false).Float64Values()
		})
	})
	if err != nil {
		return nil, err
	}
	k := len(m.Labels)
	out := make([][]float64, len(texts))
	for i := range out {
		out[i] = flat[i*k : (i+1)*k]
	}
	return out, nil
}

// A model served behind an HTTP handler to several clients at once. Each
// request runs in its own tensor scope (classify); the model's parameters
// are shared and read-only. libtorch's intra-op threads multiply with the
// concurrent requests, so a service sets them low, once at start-up before
// any tensor work (an OS thread keeps the count it first ran with), or
// with OMP_NUM_THREADS in its environment, and lets Go run requests side
// by side. The head here is new and untrained; a text.classify run opens
// with its own.
func Example_concurrentHTTP() {
	ts.SetNumThreads(1)
	ts.ManualSeed(0)
	m, err := textclf.Open("../torchmods/testdata/hf_bert_mlm", textclf.OpenOptions{
		Tokenizer: "testdata/vocab.txt", Labels: []string{"neg", "pos"}, MaxLen: 16})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Texts []string `json:"texts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Texts) == 0 || len(req.Texts) > 64 {
			http.Error(w, "want {\"texts\": [1 to 64 strings]}", http.StatusBadRequest)
			return
		}
		probs, err := classify(m, req.Texts)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"labels": m.Labels, "probs": probs})
	}))
	defer srv.Close() // httptest listens on 127.0.0.1 only

	texts := [][]string{{"the movie was good"}, {"the plot was awful", "i loved it"}, {"boring"}}
	want := make([][][]float64, len(texts))
	for i, t := range texts { // the same requests, served one at a time first
		if want[i], err = classify(m, t); err != nil {
			fmt.Println(err)
			return
		}
	}
	const clients, each = 4, 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	same, failed := 0, 0
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range each {
				i := (c + r) % len(texts)
				body, _ := json.Marshal(map[string]any{"texts": texts[i]})
				resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
				var got struct {
					Probs [][]float64 `json:"probs"`
				}
				if err == nil {
					err = json.NewDecoder(resp.Body).Decode(&got)
					resp.Body.Close()
				}
				mu.Lock()
				if err == nil && reflect.DeepEqual(got.Probs, want[i]) {
					same++
				} else {
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%d responses from %d concurrent clients, %d equal to the serial forward pass, %d failed\n", same+failed, clients, same, failed)
	// Output:
	// 24 responses from 4 concurrent clients, 24 equal to the serial forward pass, 0 failed
}
