package torchmods

import (
	"fmt"
	"os"

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

// ReadWeights reads a safetensors file or a torch.save file (.pt, .pth,
// .bin), telling them apart by content, not by name. It needs no libtorch.
func ReadWeights(path string) (*Weights, error) {
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
	if magic[0] == 0x80 {
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
		x, err := ts.OfDataSize(t.Data, t.Shape, dt)
		if err != nil {
			panic(err)
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
