package safetensors

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseIndex(t *testing.T) {
	idx, err := ParseIndex([]byte(`{"metadata":{"total_size":12},"weight_map":{"b":"m-2.safetensors","a":"m-1.safetensors","c":"m-1.safetensors"}}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"b", "a", "c"}, idx.Names, "file order")
	assert.Equal(t, []string{"m-1.safetensors", "m-2.safetensors"}, idx.Shards)
	assert.Equal(t, "m-2.safetensors", idx.WeightMap["b"])

	p := filepath.Join(t.TempDir(), "model.safetensors.index.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"weight_map":{"a":"x.safetensors","a":"y.safetensors"}}`), 0o644))
	_, err = ReadIndex(p)
	assert.ErrorContains(t, err, p+`: tensor "a" appears twice in weight_map`)
}

// TestParseIndexRefusesDuplicates is item 7 for sharded checkpoints: a
// weight_map naming a tensor twice used to take the last shard silently.
func TestParseIndexRefusesDuplicates(t *testing.T) {
	for name, c := range map[string]struct{ js, want string }{
		"tensor twice":     {`{"weight_map":{"a":"x.safetensors","b":"x.safetensors","a":"y.safetensors"}}`, `tensor "a" appears twice in weight_map`},
		"escaped twin":     {`{"weight_map":{"a":"x.safetensors","\u0061":"x.safetensors"}}`, `tensor "a" appears twice in weight_map`},
		"weight_map twice": {`{"weight_map":{"a":"x.safetensors"},"weight_map":{"b":"x.safetensors"}}`, `"weight_map" appears twice`},
		"no weight_map":    {`{"metadata":{}}`, "no weight_map"},
		"empty weight_map": {`{"weight_map":{}}`, "no weight_map"},
		"path":             {`{"weight_map":{"a":"../../etc/passwd"}}`, "must be a file name beside the index"},
		"dot dot":          {`{"weight_map":{"a":".."}}`, "must be a file name beside the index"},
		"backslash":        {`{"weight_map":{"a":"..\\x"}}`, "must be a file name beside the index"},
		"not a string":     {`{"weight_map":{"a":3}}`, `tensor "a"`},
		"not json":         {`{"weight_map":`, "not a JSON object"},
		"trailing":         {`{"weight_map":{"a":"x"}} {}`, "data after"},
	} {
		_, err := ParseIndex([]byte(c.js))
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

// FuzzParseIndex checks that whatever index parses names every tensor
// once and only plain shard file names.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":12},"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"x.safetensors","a":"y.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../../etc/passwd"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := ParseIndex(b)
		if err != nil {
			return
		}
		if len(idx.Names) != len(idx.WeightMap) || len(idx.Names) == 0 {
			t.Fatalf("%d names, %d in the map", len(idx.Names), len(idx.WeightMap))
		}
		for _, s := range idx.Shards {
			if filepath.Base(s) != s || s == "." || s == ".." {
				t.Fatalf("shard %q passed", s)
			}
		}
	})
}
