// Package torchfile reads PyTorch's torch.save files (the zip format that
// PyTorch has written since 1.6, HF pytorch_model.bin included) and the
// weights of TorchScript archives (torch.jit.save; OpenAI's CLIP ships
// these) into plain tensors, without Python and without executing anything
// in the file (see pickle.go for the policy). A TorchScript module's
// attributes that are not tensors (training flags, hooks) are reported as
// skipped; its code and constants are not read.
package torchfile

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strings"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// File is what a torch.save file holds: its tensors, named by their path
// through nested dicts ("model.blocks.0.attn.qkv.weight"), contiguous and
// in file order, and the names of non-tensor entries that were skipped
// (epoch numbers, optimizer hyperparameters, ...).
type File struct {
	Tensors []safetensors.Tensor
	Skipped []string
}

// Read parses the torch.save file at path.
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

// Bounds on what a file may make the reader do. A torch.save file is
// untrusted input: its pickle can describe structures far larger than
// itself (shared or self-containing dicts, stride-0 views of a small
// storage), and each of these once ended in a Go fatal error rather than
// an error naming the file.
const (
	// maxDepth bounds dict nesting: checkpoints nest a few levels
	// ({"model": {"encoder": ...}} flattened by name), never hundreds.
	maxDepth = 256
	// maxNameLen bounds a flattened name; real ones are under 200 bytes.
	maxNameLen = 4096
	// zipFactor bounds the bytes decompressed from the zip (the pickle and
	// the storages together) as a multiple of the file's size. torch.save
	// stores entries uncompressed; a checkpoint re-zipped by hand shrinks
	// by far less than 8 (weights hardly compress), a zip bomb by ~1000.
	zipFactor = 8
	// outputFactor bounds the bytes of all tensors copied out, as a
	// multiple of the storage bytes read: views and tied weights read a
	// storage more than once, but no real checkpoint reads its data four
	// times over.
	outputFactor = 4
)

// Parse parses a torch.save file held in memory.
//
// Every size the file declares is checked against the file itself before
// anything is allocated: the zip entries may not declare more than
// zipFactor times the file's size (a zip bomb or a lie); a tensor's view
// must lie inside its storage and may not need more bytes than it (a
// stride-0 expansion of a small storage is refused rather than copied out
// to gigabytes); all arithmetic on shapes and strides is checked for
// overflow; and the walk over the pickle's dicts refuses cycles, nesting
// past maxDepth and more entries than the pickle's size can describe.
// Tensor names must be unique once nested dicts are flattened.
func Parse(b []byte) (*File, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		if len(b) >= 2 && b[0] == 0x80 {
			return nil, fmt.Errorf("this is PyTorch's legacy (pre-1.6) format, which is not supported: re-save it with a current torch.save")
		}
		return nil, fmt.Errorf("not a torch.save zip file: %w", err)
	}
	entries := map[string]*zip.File{}
	var pkl *zip.File
	for _, f := range zr.File {
		entries[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			pkl = f
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("no <name>/data.pkl in the zip: not a torch.save file")
	}
	zipLeft := zipFactor * int64(len(b))
	data, err := readEntry(pkl, min(1<<30, zipLeft))
	if err != nil {
		return nil, err
	}
	root, err := unpickle(data)
	if err != nil {
		return nil, err
	}
	w := &walker{
		entries:    entries,
		prefix:     strings.TrimSuffix(pkl.Name, "data.pkl"),
		storages:   map[string]*storage{},
		fileSize:   int64(len(b)),
		zipLeft:    zipLeft - int64(len(data)),
		visitsLeft: len(data) + 1,
		onPath:     map[*Dict]bool{},
		names:      map[string]bool{},
	}
	if err := w.walk("", root, 0); err != nil {
		return nil, err
	}
	sort.Strings(w.out.Skipped)
	return &w.out, nil
}

// storage is a storage's bytes, read once and shared by the tensors that
// view it, with the layout the pickle first declared for it.
type storage struct {
	ref   *storageRef
	bytes []byte
}

// walker flattens the unpickled tree into named tensors, within the
// bounds above.
type walker struct {
	entries    map[string]*zip.File
	prefix     string
	storages   map[string]*storage
	fileSize   int64
	zipLeft    int64 // bytes still allowed to be decompressed from the zip
	visitsLeft int   // dict entries still allowed: shared dicts may not multiply them
	stored     int64 // storage bytes read
	output     int64 // tensor bytes copied out
	onPath     map[*Dict]bool
	names      map[string]bool // tensor names given so far
	out        File
}

func (w *walker) walk(name string, v any, depth int) error {
	switch x := v.(type) {
	case *Dict:
		if depth >= maxDepth {
			return fmt.Errorf("entry %q is nested deeper than %d dicts", name, maxDepth)
		}
		if w.onPath[x] {
			return fmt.Errorf("entry %q contains itself (a cycle in the pickle): not a state dict", name)
		}
		w.onPath[x] = true
		defer delete(w.onPath, x)
		for i, k := range x.Keys {
			// Shared dicts are legal pickle, and a checkpoint may hold one
			// state dict twice; but each visit costs, so n levels of dicts
			// that each hold the one below twice cannot reach 2^n entries.
			if w.visitsLeft--; w.visitsLeft < 0 {
				return fmt.Errorf("the pickle reaches more dict entries than its size can describe (shared dicts multiply them): not a state dict")
			}
			ks := keyName(k)
			if name != "" {
				if len(name)+1+len(ks) > maxNameLen {
					return fmt.Errorf("entry %.100q...: name longer than %d bytes", name, maxNameLen)
				}
				ks = name + "." + ks
			} else if len(ks) > maxNameLen {
				return fmt.Errorf("entry %.100q...: name longer than %d bytes", ks, maxNameLen)
			}
			if err := w.walk(ks, x.Values[i], depth+1); err != nil {
				return err
			}
		}
	case *tensorRef:
		if w.names[name] {
			return fmt.Errorf("tensor %q appears twice (nested dicts flatten onto one name, or a key is set twice): which one is meant would depend on key order", name)
		}
		w.names[name] = true
		st, err := w.storage(name, x.storage)
		if err != nil {
			return err
		}
		t, err := materialize(name, x, st, outputFactor*w.stored-w.output)
		if err != nil {
			return err
		}
		w.output += int64(len(t.Data))
		w.out.Tensors = append(w.out.Tensors, t)
	default:
		w.out.Skipped = append(w.out.Skipped, name)
	}
	return nil
}

// storage returns the bytes of the storage ref names, reading them once.
// The same key must always be declared with the same dtype and size:
// otherwise a later tensor would index bytes read for another layout.
func (w *walker) storage(name string, ref *storageRef) ([]byte, error) {
	if st, ok := w.storages[ref.key]; ok {
		if st.ref.dtype != ref.dtype || st.ref.numel != ref.numel {
			return nil, fmt.Errorf("tensor %q: storage %s is declared as %d %s elements, and elsewhere as %d %s", name, ref.key, ref.numel, ref.dtype, st.ref.numel, st.ref.dtype)
		}
		return st.bytes, nil
	}
	e, ok := w.entries[w.prefix+"data/"+ref.key]
	if !ok {
		return nil, fmt.Errorf("tensor %q: storage %s missing from the zip (truncated file?)", name, ref.key)
	}
	size, ok := mul(ref.numel, int64(safetensors.DTypeSize[ref.dtype]))
	if !ok || size > w.zipLeft {
		return nil, fmt.Errorf("tensor %q: storage %s declares %d %s elements, larger than the file's %d bytes allow (a zip bomb or a lying pickle)", name, ref.key, ref.numel, ref.dtype, w.fileSize)
	}
	w.zipLeft -= size
	w.stored += size
	b, err := readEntry(e, size)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("tensor %q: storage %s has %d bytes, the pickle says %d", name, ref.key, len(b), size)
	}
	w.storages[ref.key] = &storage{ref: ref, bytes: b}
	return b, nil
}

// keyName is a dict key as part of a tensor's name: strings as they are,
// numbers as Python prints them (optimizer states are keyed by ints), and
// anything else by a short description that cannot grow with the pickle.
func keyName(k any) string {
	switch x := k.(type) {
	case string:
		return x
	case int64, bool, float64:
		return fmt.Sprint(x)
	case nil:
		return "None"
	}
	return describe(k)
}

func readEntry(f *zip.File, limit int64) ([]byte, error) {
	if int64(f.UncompressedSize64) > limit || f.UncompressedSize64 > math.MaxInt32*4 {
		return nil, fmt.Errorf("zip entry %s claims %d bytes, more than expected (%d)", f.Name, f.UncompressedSize64, limit)
	}
	r, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("zip entry %s: %w", f.Name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("zip entry %s: %w (truncated file?)", f.Name, err)
	}
	return b, nil
}

// materialize copies a strided view of a storage into contiguous bytes.
// Every element it reaches must lie inside the storage, and the copy may
// not be larger than the storage (a stride-0 expansion) nor than budget
// bytes. Products and sums of the pickle's integers are checked for
// overflow, so a byte count can never wrap to a small number.
func materialize(name string, t *tensorRef, st []byte, budget int64) (safetensors.Tensor, error) {
	es := int64(safetensors.DTypeSize[t.storage.dtype])
	stored := int64(len(st)) / es // what is really there, whatever was declared
	if t.offset < 0 {
		return safetensors.Tensor{}, fmt.Errorf("tensor %q: negative storage offset %d", name, t.offset)
	}
	numel, last := int64(1), t.offset
	big := false // the shape holds more elements than an int64 counts
	for i, d := range t.size {
		n, ok := mul(numel, d)
		big = big || !ok
		numel = n
		if d > 0 {
			step, ok1 := mul(d-1, t.stride[i])
			reach, ok2 := add(last, step)
			if !ok1 || !ok2 {
				return safetensors.Tensor{}, fmt.Errorf("tensor %q: shape %v stride %v reaches past any storage", name, t.size, t.stride)
			}
			last = reach
		}
	}
	if zero := slicesContainZero(t.size); zero {
		numel, big = 0, false
	}
	nbytes, ok := mul(numel, es)
	if big || !ok || nbytes > int64(len(st)) {
		return safetensors.Tensor{}, fmt.Errorf("tensor %q: shape %v of %s needs more than its storage of %d bytes (a stride-0 expansion is refused: it would be copied out in full)", name, t.size, t.storage.dtype, len(st))
	}
	if numel > 0 && last >= stored {
		return safetensors.Tensor{}, fmt.Errorf("tensor %q: shape %v stride %v offset %d reaches past its storage of %d elements", name, t.size, t.stride, t.offset, t.storage.numel)
	}
	if nbytes > budget {
		return safetensors.Tensor{}, fmt.Errorf("tensor %q: its %d bytes take the tensors copied out past %d times the storages' size (views and tied weights reread storages, but not this much)", name, nbytes, outputFactor)
	}
	out := safetensors.Tensor{Name: name, DType: t.storage.dtype, Shape: t.size, Data: make([]byte, nbytes)}
	if numel == 0 {
		return out, nil
	}
	contiguous := true
	expect := int64(1)
	for i := len(t.size) - 1; i >= 0; i-- {
		if t.size[i] != 1 && t.stride[i] != expect {
			contiguous = false
			break
		}
		expect *= t.size[i]
	}
	if contiguous {
		copy(out.Data, st[t.offset*es:(t.offset+numel)*es])
		return out, nil
	}
	idx := make([]int64, len(t.size))
	for n := int64(0); n < numel; n++ {
		src := t.offset
		for i, v := range idx {
			src += v * t.stride[i]
		}
		copy(out.Data[n*es:(n+1)*es], st[src*es:(src+1)*es])
		for i := len(idx) - 1; i >= 0; i-- { // odometer increment
			idx[i]++
			if idx[i] < t.size[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out, nil
}

func slicesContainZero(s []int64) bool {
	for _, d := range s {
		if d == 0 {
			return true
		}
	}
	return false
}

// mul returns a*b for non-negative a and b, and whether it fits an int64.
func mul(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	return int64(lo), hi == 0 && lo <= math.MaxInt64
}

// add returns a+b for non-negative a and b, and whether it fits an int64.
func add(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	s, carry := bits.Add64(uint64(a), uint64(b), 0)
	return int64(s), carry == 0 && s <= math.MaxInt64
}
