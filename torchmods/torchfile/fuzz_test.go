package torchfile

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// fixturePickles are the data.pkl of the test files, real torch.save
// output, as seeds.
func fixturePickles(f *testing.F) [][]byte {
	var out [][]byte
	for _, name := range []string{"checkpoint.pt", "scripted.pt", "hostile.pt", "expand.pt", "wrap.pt", "cycle.pt", "dup.pt"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range zr.File {
			if bytes.HasSuffix([]byte(e.Name), []byte("/data.pkl")) {
				r, _ := e.Open()
				p, _ := io.ReadAll(r)
				out = append(out, p)
			}
		}
	}
	return out
}

// storagesOf finds the storages an unpickled tree's tensors name, with
// their declared sizes, so that a fuzzed pickle gets the storages it asks
// for (up to a bound) and the checks behind them are reached.
func storagesOf(v any) map[string][]byte {
	out := map[string][]byte{}
	seen := map[*Dict]bool{}
	budget := 1 << 16
	var walk func(v any)
	walk = func(v any) {
		if budget--; budget < 0 {
			return
		}
		switch x := v.(type) {
		case *Dict:
			if seen[x] {
				return
			}
			seen[x] = true
			for _, c := range x.Values {
				walk(c)
			}
		case *tensorRef:
			n, ok := mul(x.storage.numel, int64(safetensors.DTypeSize[x.storage.dtype]))
			if _, done := out[x.storage.key]; !done && ok && n <= 1<<16 {
				out[x.storage.key] = make([]byte, n)
			}
		}
	}
	walk(v)
	return out
}

// FuzzParsePickle runs a pickle through the whole reader, flattening and
// copying tensors out of storages of the sizes it declares: it must end
// with an error or with tensors whose bytes match their shapes.
func FuzzParsePickle(f *testing.F) {
	for _, p := range fixturePickles(f) {
		f.Add(p)
	}
	var p pk
	p.op(0x80, 2, '}').str("w").tensor("FloatStorage", "0", 4, 1, []int64{3, 2}, []int64{0, 1}).op('s', '.')
	f.Add(p.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		root, err := unpickle(b)
		if err != nil {
			return
		}
		file, err := Parse(torchZip(t, b, storagesOf(root)))
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, tn := range file.Tensors {
			if int64(len(tn.Data)) != tn.Numel()*int64(safetensors.DTypeSize[tn.DType]) {
				t.Fatalf("tensor %q: %d bytes for shape %v", tn.Name, len(tn.Data), tn.Shape)
			}
			if names[tn.Name] {
				t.Fatalf("tensor %q twice", tn.Name)
			}
			names[tn.Name] = true
		}
	})
}

// FuzzParse feeds whole files (zip and all) to the reader.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"checkpoint.pt", "expand.pt", "wrap.pt", "cycle.pt", "dup.pt"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b) // must return, never panic, hang or exhaust memory
	})
}
