package torchmods

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
)

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

// LoadSafetensors reads every tensor of a safetensors file onto dev.
func LoadSafetensors(path string, dev gotch.Device) (map[string]*ts.Tensor, error) {
	f, err := safetensors.Read(path)
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
