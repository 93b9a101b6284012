// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Everything the
// header claims is checked against the file before any byte is used, so a
// truncated file or a lying header is an error naming the file and tensor.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// MaxHeader bounds the JSON header; the reference implementation uses 100 MB.
const MaxHeader = 100 << 20

// DTypeSize is the size in bytes of each dtype the format defines.
var DTypeSize = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Tensor is one named tensor: its raw little-endian bytes and their layout.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
	Data  []byte

	offset int64 // where Data starts in the file's data section, when parsed
}

// Numel is the number of elements the shape holds.
func (t Tensor) Numel() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is a parsed safetensors file; Tensors are in data order.
type File struct {
	Tensors  []Tensor
	Metadata map[string]string
}

// Get returns the named tensor.
func (f *File) Get(name string) (Tensor, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

type entry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// field is one key of a JSON object and its undecoded value.
type field struct {
	key   string
	value json.RawMessage
}

// objectFields splits the JSON object in b into its fields, in order,
// refusing a key that appears twice. encoding/json would keep the last of
// two equal keys without a word, and the reference implementation refuses
// them, so a header that names a tensor twice must be an error, not a
// choice that depends on the reader.
func objectFields(b []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want a JSON object, got %v", tok)
	}
	var out []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key %v is not a string", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		if seen[key] {
			// The caller names what the key stands for (a tensor, a field).
			return nil, &duplicateKeyError{key}
		}
		seen[key] = true
		out = append(out, field{key, v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON object")
	}
	return out, nil
}

// duplicateKeyError is a key found twice in one JSON object.
type duplicateKeyError struct{ key string }

func (e *duplicateKeyError) Error() string { return fmt.Sprintf("key %q appears twice", e.key) }

// parseEntry decodes a tensor's header entry. Keys are matched exactly:
// encoding/json would also take "DType" for "dtype", so that two spellings
// of one key could again hide a duplicate.
func parseEntry(msg json.RawMessage) (entry, error) {
	var e entry
	fields, err := objectFields(msg)
	if err != nil {
		return e, err
	}
	var has [3]bool
	for _, fd := range fields {
		var err error
		switch fd.key {
		case "dtype":
			has[0], err = true, json.Unmarshal(fd.value, &e.DType)
		case "shape":
			has[1], err = true, json.Unmarshal(fd.value, &e.Shape)
		case "data_offsets":
			has[2], err = true, json.Unmarshal(fd.value, &e.DataOffsets)
		default:
			err = fmt.Errorf("unknown key %q", fd.key)
		}
		if err != nil {
			return e, fmt.Errorf("%s: %w", fd.key, err)
		}
	}
	if !has[0] || !has[1] || !has[2] {
		return e, fmt.Errorf("dtype, shape and data_offsets are all required")
	}
	if e.Shape == nil {
		e.Shape = []int64{}
	}
	return e, nil
}

// parseMetadata decodes __metadata__, a map of strings to strings, with no
// key twice.
func parseMetadata(msg json.RawMessage) (map[string]string, error) {
	if string(bytes.TrimSpace(msg)) == "null" {
		return nil, nil
	}
	fields, err := objectFields(msg)
	if err != nil {
		var dup *duplicateKeyError
		if errors.As(err, &dup) {
			return nil, fmt.Errorf("__metadata__: %w", err)
		}
		return nil, err
	}
	md := make(map[string]string, len(fields))
	for _, fd := range fields {
		var v string
		if len(fd.value) == 0 || fd.value[0] != '"' {
			return nil, fmt.Errorf("key %q: value %s is not a string", fd.key, fd.value)
		}
		if err := json.Unmarshal(fd.value, &v); err != nil {
			return nil, fmt.Errorf("key %q: %w", fd.key, err)
		}
		md[fd.key] = v
	}
	return md, nil
}

// Read parses the file at path.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse validates and parses a whole safetensors file held in b. The
// tensors' Data slices point into b.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("truncated: %d bytes, fewer than the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > MaxHeader {
		return nil, fmt.Errorf("header length %d exceeds the %d-byte limit", n, MaxHeader)
	}
	if n > uint64(len(b)-8) {
		return nil, fmt.Errorf("truncated: header claims %d bytes, file has %d after the length", n, len(b)-8)
	}
	fields, err := objectFields(b[8 : 8+n])
	var dup *duplicateKeyError
	switch {
	case errors.As(err, &dup) && dup.key == "__metadata__":
		return nil, fmt.Errorf(`"__metadata__" appears twice in the header`)
	case errors.As(err, &dup):
		return nil, fmt.Errorf("tensor %q appears twice in the header: which entry is meant is ambiguous", dup.key)
	case err != nil:
		return nil, fmt.Errorf("header is not a JSON object: %w", err)
	}
	data := b[8+n:]
	f := &File{}
	for _, fd := range fields {
		name, msg := fd.key, fd.value
		if name == "__metadata__" {
			md, err := parseMetadata(msg)
			if err != nil {
				return nil, fmt.Errorf("__metadata__ must map strings to strings: %w", err)
			}
			f.Metadata = md
			continue
		}
		e, err := parseEntry(msg)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: bad header entry: %w", name, err)
		}
		size, ok := DTypeSize[e.DType]
		if !ok {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", name, e.DType)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("tensor %q: data_offsets must be [begin, end]", name)
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin < 0 || end < begin || end > int64(len(data)) {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] outside the %d data bytes (truncated file or lying header)", name, begin, end, len(data))
		}
		numel := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && numel > math.MaxInt64/d) {
				return nil, fmt.Errorf("tensor %q: bad shape %v", name, e.Shape)
			}
			numel *= d
		}
		if numel > math.MaxInt64/int64(size) || numel*int64(size) != end-begin {
			return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", name, e.Shape, e.DType, numel*int64(size), end-begin)
		}
		f.Tensors = append(f.Tensors, Tensor{Name: name, DType: e.DType, Shape: e.Shape, Data: data[begin:end:end], offset: begin})
	}
	sort.Slice(f.Tensors, func(i, j int) bool {
		a, b := f.Tensors[i], f.Tensors[j]
		return a.offset < b.offset || (a.offset == b.offset && len(a.Data) < len(b.Data))
	})
	// The format requires the tensors to tile the data exactly: no gaps, no overlaps.
	var pos int64
	for _, t := range f.Tensors {
		if t.offset != pos {
			return nil, fmt.Errorf("tensor %q starts at byte %d, expected %d: tensors overlap or leave a gap", t.Name, t.offset, pos)
		}
		pos += int64(len(t.Data))
	}
	if pos != int64(len(data)) {
		return nil, fmt.Errorf("%d bytes of data follow the last tensor", int64(len(data))-pos)
	}
	return f, nil
}

// Write writes tensors (in the given order) and metadata to path
// atomically: a temporary file in the same folder, fsync, then rename, so a
// crash never leaves a half-written file under the final name.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		size, ok := DTypeSize[t.DType]
		if !ok {
			return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		if t.Numel()*int64(size) != int64(len(t.Data)) {
			return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, has %d", t.Name, t.Shape, t.DType, t.Numel()*int64(size), len(t.Data))
		}
		if _, dup := header[t.Name]; dup || t.Name == "__metadata__" {
			return fmt.Errorf("tensor name %q is used twice or reserved", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = entry{DType: t.DType, Shape: shape, DataOffsets: []int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(hj)%8 != 0 { // the reference writer pads the header to 8 bytes
		hj = append(hj, ' ')
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(len(hj)))
	w := func(b []byte) {
		if err == nil {
			_, err = tmp.Write(b)
		}
	}
	w(lenb[:])
	w(hj)
	for _, t := range tensors {
		w(t.Data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
