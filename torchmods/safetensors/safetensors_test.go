package safetensors

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample() []Tensor {
	return []Tensor{
		{Name: "w", DType: "F32", Shape: []int64{2, 2}, Data: []byte{0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64}},
		{Name: "empty", DType: "F32", Shape: []int64{0, 3}, Data: []byte{}},
		{Name: "b", DType: "BF16", Shape: []int64{1}, Data: []byte{128, 63}},
	}
}

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	require.NoError(t, Write(p, sample(), map[string]string{"format": "pt"}))
	f, err := Read(p)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"format": "pt"}, f.Metadata)
	require.Len(t, f.Tensors, 3)
	for _, want := range sample() {
		got, ok := f.Get(want.Name)
		require.True(t, ok, want.Name)
		assert.Equal(t, want.DType, got.DType)
		assert.Equal(t, want.Shape, got.Shape)
		assert.Equal(t, want.Data, got.Data)
	}
	raw, _ := os.ReadFile(p)
	assert.Zero(t, binary.LittleEndian.Uint64(raw[:8])%8, "header padded to 8 bytes")
}

func TestWriteRefusesInconsistentTensors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	err := Write(p, []Tensor{{Name: "x", DType: "F32", Shape: []int64{3}, Data: make([]byte, 8)}}, nil)
	assert.ErrorContains(t, err, `"x"`)
	assert.NoFileExists(t, p)
	err = Write(p, []Tensor{{Name: "x", DType: "Q4", Shape: []int64{1}, Data: make([]byte, 1)}}, nil)
	assert.ErrorContains(t, err, "unknown dtype")
}

func TestWriteNeverLeavesHalfAFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	require.NoError(t, Write(p, sample(), nil))
	good, _ := os.ReadFile(p)
	require.Error(t, Write(p, []Tensor{{Name: "x", DType: "F32", Shape: []int64{9}, Data: nil}}, nil))
	now, _ := os.ReadFile(p)
	assert.Equal(t, good, now, "a failed write keeps the good file")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary file left behind")
}

func header(t *testing.T, js string, data int) []byte {
	t.Helper()
	b := make([]byte, 8, 8+len(js)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(js)))
	return append(append(b, js...), make([]byte, data)...)
}

func TestParseRefusesBadFiles(t *testing.T) {
	good := header(t, `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8)
	_, err := Parse(good)
	require.NoError(t, err)

	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"short":              {[]byte{1, 2, 3}, "truncated"},
		"header past end":    {good[:20], "truncated: header claims"},
		"data truncated":     {good[:len(good)-1], "outside the 7 data bytes"},
		"huge header length": {append([]byte{255, 255, 255, 255, 255, 255, 255, 127}, good[8:]...), "exceeds"},
		"not json":           {header(t, `{nope`, 0), "not a JSON object"},
		"size lie":           {header(t, `{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), "needs 12 bytes"},
		"unknown dtype":      {header(t, `{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}`, 8), `unknown dtype "F7"`},
		"negative dim":       {header(t, `{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8), "bad shape"},
		"overflowing shape":  {header(t, `{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, 8), "bad shape"},
		"overlap": {header(t, `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
			"overlap or leave a gap"},
		"gap":           {header(t, `{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "overlap or leave a gap"},
		"trailing data": {header(t, `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "follow the last tensor"},
		"extra field":   {header(t, `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, 8), "bad header entry"},
		"bad metadata":  {header(t, `{"__metadata__":{"a":1}}`, 0), "__metadata__"},
	} {
		_, err := Parse(c.b)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(header(&testing.T{}, `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8))
	f.Add(header(&testing.T{}, `{"__metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}`, 1))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		for _, tn := range file.Tensors { // whatever parses is self-consistent
			if int64(len(tn.Data)) != tn.Numel()*int64(DTypeSize[tn.DType]) {
				t.Fatalf("tensor %q: %d bytes for shape %v", tn.Name, len(tn.Data), tn.Shape)
			}
		}
	})
}

// TestParseRefusesDuplicateNames is the reliability issue's item 7: Go's
// encoding/json keeps the last of two equal keys, so a header naming a
// tensor twice used to load whichever entry came last, silently.
func TestParseRefusesDuplicateNames(t *testing.T) {
	for name, c := range map[string]struct {
		js   string
		want string
	}{
		"tensor twice": {`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
			`tensor "a" appears twice in the header`},
		"escaped twin": {`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
			`tensor "a" appears twice in the header`},
		"field twice": {`{"a":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}}`,
			`tensor "a": bad header entry: key "dtype" appears twice`},
		"metadata twice": {`{"__metadata__":{"k":"v"},"__metadata__":{"k":"w"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`,
			`"__metadata__" appears twice`},
		"metadata key twice": {`{"__metadata__":{"k":"v","k":"w"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`,
			`__metadata__: key "k" appears twice`},
	} {
		_, err := Parse(header(t, c.js, 8))
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

// TestCheckFinite covers weights used as data (item 1): a NaN or Inf
// element is named by tensor and position.
func TestCheckFinite(t *testing.T) {
	f32 := func(v ...float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	nan := float32(math.NaN())
	inf := float32(math.Inf(-1))
	assert.NoError(t, Tensor{Name: "ok", DType: "F32", Shape: []int64{2}, Data: f32(1, -3e38)}.CheckFinite())
	assert.NoError(t, Tensor{Name: "ints", DType: "I32", Shape: []int64{1}, Data: f32(nan)}.CheckFinite(), "integers are always finite")
	assert.EqualError(t, Tensor{Name: "w", DType: "F32", Shape: []int64{2, 3}, Data: f32(0, 0, 0, 0, nan, 0)}.CheckFinite(),
		`tensor "w": element [1 1] is NaN`)
	assert.EqualError(t, Tensor{Name: "w", DType: "F32", Shape: []int64{2}, Data: f32(0, inf)}.CheckFinite(),
		`tensor "w": element [1] is -Inf`)
	assert.ErrorContains(t, Tensor{Name: "h", DType: "F16", Shape: []int64{1}, Data: []byte{0x00, 0x7c}}.CheckFinite(), "+Inf")
	assert.ErrorContains(t, Tensor{Name: "b", DType: "BF16", Shape: []int64{1}, Data: []byte{0xc1, 0x7f}}.CheckFinite(), "NaN")
	assert.NoError(t, Tensor{Name: "b", DType: "BF16", Shape: []int64{1}, Data: []byte{0x7f, 0x7f}}.CheckFinite(), "BF16's largest finite")
	d := make([]byte, 8)
	binary.LittleEndian.PutUint64(d, math.Float64bits(math.Inf(1)))
	assert.ErrorContains(t, Tensor{Name: "d", DType: "F64", Shape: []int64{}, Data: d}.CheckFinite(), `tensor "d": element [] is +Inf`)
	assert.ErrorContains(t, Tensor{Name: "e5", DType: "F8_E5M2", Shape: []int64{1}, Data: []byte{0x7c}}.CheckFinite(), "+Inf")
	assert.ErrorContains(t, Tensor{Name: "e4", DType: "F8_E4M3", Shape: []int64{1}, Data: []byte{0xff}}.CheckFinite(), "NaN")
	assert.NoError(t, Tensor{Name: "e4", DType: "F8_E4M3", Shape: []int64{1}, Data: []byte{0x7e}}.CheckFinite(), "E4M3's 448")

	p := filepath.Join(t.TempDir(), "m.safetensors")
	require.NoError(t, Write(p, []Tensor{{Name: "w", DType: "F32", Shape: []int64{1}, Data: f32(nan)}}, nil))
	f, err := Read(p)
	require.NoError(t, err, "reading a file does not judge its values")
	assert.ErrorContains(t, f.CheckFinite(), `tensor "w": element [0] is NaN`)
}
