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

// Parse parses a torch.save file held in memory.
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
	prefix := strings.TrimSuffix(pkl.Name, "data.pkl")
	data, err := readEntry(pkl, 1<<30)
	if err != nil {
		return nil, err
	}
	root, err := unpickle(data)
	if err != nil {
		return nil, err
	}
	out := &File{}
	storages := map[string][]byte{}
	var walk func(name string, v any) error
	walk = func(name string, v any) error {
		switch x := v.(type) {
		case *Dict:
			for i, k := range x.Keys {
				ks, ok := k.(string)
				if !ok {
					ks = fmt.Sprint(k)
				}
				if name != "" {
					ks = name + "." + ks
				}
				if err := walk(ks, x.Values[i]); err != nil {
					return err
				}
			}
		case *tensorRef:
			st, ok := storages[x.storage.key]
			if !ok {
				e, ok := entries[prefix+"data/"+x.storage.key]
				if !ok {
					return fmt.Errorf("tensor %q: storage %s missing from the zip (truncated file?)", name, x.storage.key)
				}
				size := int64(safetensors.DTypeSize[x.storage.dtype])
				if x.storage.numel > math.MaxInt64/size {
					return fmt.Errorf("tensor %q: storage of %d elements is too large", name, x.storage.numel)
				}
				if st, err = readEntry(e, x.storage.numel*size); err != nil {
					return fmt.Errorf("tensor %q: %w", name, err)
				}
				if int64(len(st)) != x.storage.numel*size {
					return fmt.Errorf("tensor %q: storage %s has %d bytes, the pickle says %d", name, x.storage.key, len(st), x.storage.numel*size)
				}
				storages[x.storage.key] = st
			}
			t, err := materialize(name, x, st)
			if err != nil {
				return err
			}
			out.Tensors = append(out.Tensors, t)
		default:
			out.Skipped = append(out.Skipped, name)
		}
		return nil
	}
	if err := walk("", root); err != nil {
		return nil, err
	}
	sort.Strings(out.Skipped)
	return out, nil
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

// materialize copies a strided view of a storage into contiguous bytes,
// checking that every element it reaches lies inside the storage.
func materialize(name string, t *tensorRef, st []byte) (safetensors.Tensor, error) {
	es := int64(safetensors.DTypeSize[t.storage.dtype])
	numel, last := int64(1), t.offset
	for i, d := range t.size {
		if d > 0 && numel > math.MaxInt64/d {
			return safetensors.Tensor{}, fmt.Errorf("tensor %q: shape %v overflows", name, t.size)
		}
		numel *= d
		if d > 0 {
			if t.stride[i] > 0 && d-1 > (math.MaxInt64-last)/t.stride[i] {
				return safetensors.Tensor{}, fmt.Errorf("tensor %q: strides overflow", name)
			}
			last += (d - 1) * t.stride[i]
		}
	}
	if numel > 0 && (t.offset < 0 || last >= t.storage.numel) {
		return safetensors.Tensor{}, fmt.Errorf("tensor %q: shape %v stride %v offset %d reaches past its storage of %d elements", name, t.size, t.stride, t.offset, t.storage.numel)
	}
	out := safetensors.Tensor{Name: name, DType: t.storage.dtype, Shape: t.size, Data: make([]byte, numel*es)}
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
