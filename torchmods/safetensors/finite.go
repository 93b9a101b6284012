package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// CheckFinite returns an error naming the first NaN or infinite element of
// a floating tensor, by its position in the shape. Parse does not judge
// values (inspecting a broken file must work), but a reader that uses
// tensors as data should call this: one NaN element would otherwise turn
// every result computed from it into NaN, or into zeros, without an error.
func (t Tensor) CheckFinite() error {
	size, ok := DTypeSize[t.DType]
	if !ok {
		return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
	}
	bad := badValue(t.DType)
	if bad == nil {
		return nil // integers and booleans are always finite
	}
	for i := 0; i+size <= len(t.Data); i += size {
		if what := bad(t.Data[i : i+size]); what != "" {
			return fmt.Errorf("tensor %q: element %v is %s", t.Name, unravel(int64(i/size), t.Shape), what)
		}
	}
	return nil
}

// CheckFinite checks every tensor of the file, in data order.
func (f *File) CheckFinite() error {
	for _, t := range f.Tensors {
		if err := t.CheckFinite(); err != nil {
			return err
		}
	}
	return nil
}

// badValue returns, for a floating dtype, a function naming a non-finite
// element ("NaN", "+Inf", "-Inf") or returning "" for a finite one. Each
// format is tested by its bits, so no conversion can hide a NaN.
func badValue(dtype string) func([]byte) string {
	// ieee classifies a sign, an all-ones exponent and a mantissa.
	ieee := func(neg, expOnes, mantissa bool) string {
		switch {
		case !expOnes:
			return ""
		case mantissa:
			return "NaN"
		case neg:
			return "-Inf"
		}
		return "+Inf"
	}
	switch dtype {
	case "F64":
		return func(b []byte) string {
			v := math.Float64frombits(binary.LittleEndian.Uint64(b))
			return ieee(v < 0, math.IsNaN(v) || math.IsInf(v, 0), math.IsNaN(v))
		}
	case "F32":
		return func(b []byte) string {
			u := binary.LittleEndian.Uint32(b)
			return ieee(u>>31 == 1, u>>23&0xff == 0xff, u&0x7fffff != 0)
		}
	case "F16":
		return func(b []byte) string {
			u := binary.LittleEndian.Uint16(b)
			return ieee(u>>15 == 1, u>>10&0x1f == 0x1f, u&0x3ff != 0)
		}
	case "BF16":
		return func(b []byte) string {
			u := binary.LittleEndian.Uint16(b)
			return ieee(u>>15 == 1, u>>7&0xff == 0xff, u&0x7f != 0)
		}
	case "F8_E5M2":
		return func(b []byte) string {
			return ieee(b[0]>>7 == 1, b[0]>>2&0x1f == 0x1f, b[0]&0x3 != 0)
		}
	case "F8_E4M3": // the "fn" variant: no infinities, S.1111.111 is NaN
		return func(b []byte) string {
			if b[0]&0x7f == 0x7f {
				return "NaN"
			}
			return ""
		}
	}
	return nil
}

// unravel turns a flat row-major index into a position in shape.
func unravel(i int64, shape []int64) []int64 {
	pos := make([]int64, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			pos[d] = i % shape[d]
			i /= shape[d]
		}
	}
	return pos
}
