package torchmods

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/torchmods/torchfile"
)

// Weights is the content of a weight file in any supported format.
type Weights struct {
	Format  string // "safetensors" or "torch.save"
	Tensors []safetensors.Tensor
	Skipped []string // non-tensor entries (torch.save checkpoints)
}

// ReadWeights reads a safetensors file, a torch.save file (.pt, .pth,
// .bin), or a sharded checkpoint of either kind (its
// model.safetensors.index.json or pytorch_model.bin.index.json), telling
// the formats apart by content, not by name, since files are often renamed
// (a .bin that is safetensors, a .pth that is a zip). It needs no libtorch.
func ReadWeights(path string) (*Weights, error) {
	if strings.HasSuffix(path, ".index.json") {
		return readSharded(path)
	}
	return readFile(path)
}

// readFile reads one weight file, of either format.
func readFile(path string) (*Weights, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	magic := make([]byte, 4)
	_, err = f.Read(magic)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read: %w", path, err)
	}
	if string(magic) == "PK\x03\x04" {
		tf, err := torchfile.Read(path)
		if err != nil {
			return nil, err
		}
		return &Weights{Format: "torch.save", Tensors: tf.Tensors, Skipped: tf.Skipped}, nil
	}
	// PyTorch's legacy format opens with a pickled magic number: protocol
	// 2 (0x80 0x02), then a long (0x8a). One byte is not enough to tell:
	// a safetensors header whose length ends in 0x80 starts with it too.
	if magic[0] == 0x80 && magic[1] == 0x02 && magic[2] == 0x8a {
		return nil, fmt.Errorf("%s: PyTorch's legacy (pre-1.6) format is not supported: re-save it with a current torch.save", path)
	}
	sf, err := safetensors.Read(path)
	if err != nil {
		return nil, fmt.Errorf("%w (neither a torch.save zip nor a valid safetensors file)", err)
	}
	return &Weights{Format: "safetensors", Tensors: sf.Tensors}, nil
}

var safetensorsDType = map[string]gotch.DType{
	"F64": gotch.Double, "F32": gotch.Float, "F16": gotch.Half, "BF16": gotch.BFloat16,
	"I64": gotch.Int64, "I32": gotch.Int, "I16": gotch.Int16, "I8": gotch.Int8,
	"U8": gotch.Uint8, "BOOL": gotch.Bool,
}

// FromSafetensors copies one safetensors tensor into a libtorch tensor on dev.
func FromSafetensors(t safetensors.Tensor, dev gotch.Device) (*ts.Tensor, error) {
	dt, ok := safetensorsDType[t.DType]
	if !ok {
		return nil, fmt.Errorf("tensor %q: dtype %s has no libtorch equivalent here", t.Name, t.DType)
	}
	var out *ts.Tensor
	err := Try(func() {
		shape := t.Shape
		if len(shape) == 0 { // a scalar (a loss, BatchNorm's num_batches_tracked): gotch needs a dimension
			shape = []int64{1}
		}
		x, err := ts.OfDataSize(t.Data, shape, dt)
		if err != nil {
			panic(err)
		}
		if len(t.Shape) == 0 {
			x = x.MustSqueeze(true)
		}
		if dev != gotch.CPU {
			x = x.MustTo(dev, true)
		}
		out = x
	})
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return out, nil
}

// readSharded reads the shards an index names, checking that each tensor
// is in the shard the index says and that no shard is missing. Shards may
// be safetensors or torch.save files (transformers shards both ways).
func readSharded(index string) (*Weights, error) {
	idx, err := safetensors.ReadIndex(index)
	if err != nil {
		return nil, err
	}
	byShard := map[string][]string{}
	for _, name := range idx.Names {
		byShard[idx.WeightMap[name]] = append(byShard[idx.WeightMap[name]], name)
	}
	shards := idx.Shards
	out := &Weights{}
	for _, shard := range shards {
		p := filepath.Join(filepath.Dir(index), shard)
		f, err := readFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s names shard %s: %w", index, shard, err)
		}
		if out.Format == "" {
			out.Format = f.Format + " (sharded)"
		}
		byName := make(map[string]safetensors.Tensor, len(f.Tensors))
		for _, t := range f.Tensors {
			byName[t.Name] = t
		}
		for _, name := range byShard[shard] {
			t, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("%s: tensor %q is not in shard %s", index, name, shard)
			}
			out.Tensors = append(out.Tensors, t)
		}
		out.Skipped = append(out.Skipped, f.Skipped...)
	}
	return out, nil
}

// Save writes the store's parameters to path as safetensors with the given
// metadata (hyperparameters, step, ...), atomically. dtype "" or "F32"
// keeps float32; "F16" or "BF16" halves the file.
func (s *Store) Save(path string, dtype string, metadata map[string]string) error {
	names := make([]string, len(s.params))
	tensors := make([]*ts.Tensor, len(s.params))
	for i, p := range s.params {
		names[i], tensors[i] = p.Name, p.Tensor
	}
	return SaveTensors(path, names, tensors, dtype, metadata)
}

// SaveTensors writes named tensors to a safetensors file atomically,
// converted to dtype ("" keeps float32 for floating tensors, "F16", "BF16").
func SaveTensors(path string, names []string, tensors []*ts.Tensor, dtype string, metadata map[string]string) error {
	target := map[string]gotch.DType{"": gotch.Float, "F32": gotch.Float, "F16": gotch.Half, "BF16": gotch.BFloat16}
	dt, ok := target[dtype]
	if !ok {
		return fmt.Errorf("Save: dtype %q, want F32, F16 or BF16", dtype)
	}
	out := make([]safetensors.Tensor, 0, len(tensors))
	err := Try(func() {
		for i, t := range tensors {
			st, err := ToSafetensors(names[i], t, dt)
			if err != nil {
				panic(err)
			}
			out = append(out, st)
		}
	})
	if err != nil {
		return fmt.Errorf("Save %s: %w", path, err)
	}
	return safetensors.Write(path, out, metadata)
}

var dtypeNames = map[gotch.DType]string{}

func init() {
	for name, dt := range safetensorsDType {
		dtypeNames[dt] = name
	}
}

// ToSafetensors copies a tensor's bytes to the host. Floating tensors are
// converted to float (gotch.Float, gotch.Half or gotch.BFloat16); others
// keep their dtype.
func ToSafetensors(name string, t *ts.Tensor, float gotch.DType) (safetensors.Tensor, error) {
	var out safetensors.Tensor
	err := Try(func() {
		c := t.MustDetach(false).MustTo(gotch.CPU, true)
		if d := c.DType(); d == gotch.Float || d == gotch.Double || d == gotch.Half || d == gotch.BFloat16 {
			c = c.MustTotype(float, true)
		}
		c = c.MustContiguous(true)
		dname, ok := dtypeNames[c.DType()]
		if !ok {
			panic(fmt.Errorf("tensor %q: dtype %v has no safetensors equivalent", name, c.DType()))
		}
		shape := c.MustSize()
		data := make([]byte, c.Numel()*uint(safetensors.DTypeSize[dname]))
		if len(data) > 0 {
			raw := c.MustView([]int64{-1}, false).MustViewDtype(gotch.Uint8, true)
			raw.MustCopyDataUint8(data, uint(len(data)))
			raw.MustDrop()
		}
		c.MustDrop()
		out = safetensors.Tensor{Name: name, DType: dname, Shape: shape, Data: data}
	})
	return out, err
}

// LoadWeights reads every tensor of a weight file in any supported format
// onto dev, named as in the file, ready for Store.Load.
func LoadWeights(path string, dev gotch.Device) (map[string]*ts.Tensor, error) {
	f, err := ReadWeights(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*ts.Tensor, len(f.Tensors))
	for _, t := range f.Tensors {
		x, err := FromSafetensors(t, dev)
		if err != nil {
			for _, done := range out {
				done.MustDrop()
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out[t.Name] = x
	}
	return out, nil
}
