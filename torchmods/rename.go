package torchmods

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// A RenameTable maps one model family's weight names and layouts to
// another's (HF checkpoint -> torchmods model, say), on raw tensors, before
// anything reaches libtorch. Patterns use {n} for a layer index and, in
// Rename rules, {*} for any non-empty text (a prefix to add or drop, a
// tail to keep), so that one rule covers what would otherwise be one rule
// per parameter. Steps run in this order: Transpose, Join, Split, Rename;
// names no rule matches pass through unchanged.
type RenameTable struct {
	// Transpose lists 2-D tensors stored as [in, out] that must become
	// [out, in] (GPT-2's Conv1D projections).
	Transpose []string
	// Join concatenates tensors along dim 0 into one (separate q, k, v ->
	// a fused qkv).
	Join []JoinRule
	// Split cuts a tensor along dim 0 into equal parts (fused -> separate).
	Split []SplitRule
	// Rename maps names one to one.
	Rename []RenameRule
}

// RenameRule renames From to To. The placeholders of To ({n}, {*}) take
// what the same placeholders matched in From, in order.
type RenameRule struct{ From, To string }

// JoinRule concatenates From (in order) into To.
type JoinRule struct {
	From []string
	To   string
}

// SplitRule cuts From into len(To) equal parts along dim 0.
type SplitRule struct {
	From string
	To   []string
}

type pattern struct {
	re   *regexp.Regexp
	text string
}

// placeholder matches {n} (a layer index) and {*} (any non-empty text).
var placeholder = regexp.MustCompile(`\{n\}|\{\*\}`)

func compile(p string) pattern {
	var re strings.Builder
	re.WriteString("^")
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(p, -1) {
		re.WriteString(regexp.QuoteMeta(p[last:loc[0]]))
		if p[loc[0]:loc[1]] == "{n}" {
			re.WriteString(`(\d+)`)
		} else {
			re.WriteString(`(.+)`)
		}
		last = loc[1]
	}
	re.WriteString(regexp.QuoteMeta(p[last:]) + "$")
	return pattern{regexp.MustCompile(re.String()), p}
}

// match returns what the placeholders matched, in order, and whether name
// matches.
func (p pattern) match(name string) ([]string, bool) {
	m := p.re.FindStringSubmatch(name)
	if m == nil {
		return nil, false
	}
	return m[1:], true
}

// fill puts the captured values into p's placeholders, in order.
func fill(p string, captured []string) string {
	i := 0
	return placeholder.ReplaceAllStringFunc(p, func(string) string {
		if i >= len(captured) {
			return ""
		}
		i++
		return captured[i-1]
	})
}

// key is the captured values as one map key (a layer index, usually).
func key(captured []string) string { return strings.Join(captured, "\x00") }

// Apply returns the renamed tensors, in input order with joined tensors at
// the position of their first part.
func (rt RenameTable) Apply(in []safetensors.Tensor) ([]safetensors.Tensor, error) {
	out := append([]safetensors.Tensor(nil), in...)
	for _, tp := range rt.Transpose {
		p := compile(tp)
		for i, t := range out {
			if _, ok := p.match(t.Name); !ok {
				continue
			}
			tt, err := transpose2D(t)
			if err != nil {
				return nil, err
			}
			out[i] = tt
		}
	}
	for _, j := range rt.Join {
		var err error
		if out, err = join(out, j); err != nil {
			return nil, err
		}
	}
	for _, s := range rt.Split {
		p := compile(s.From)
		var next []safetensors.Tensor
		for _, t := range out {
			n, ok := p.match(t.Name)
			if !ok {
				next = append(next, t)
				continue
			}
			k := int64(len(s.To))
			if len(t.Shape) == 0 || t.Shape[0]%k != 0 {
				return nil, fmt.Errorf("split %s: shape %v does not divide into %d along dim 0", t.Name, t.Shape, k)
			}
			part := len(t.Data) / int(k)
			for i, to := range s.To {
				shape := append([]int64{t.Shape[0] / k}, t.Shape[1:]...)
				next = append(next, safetensors.Tensor{Name: fill(to, n), DType: t.DType, Shape: shape, Data: t.Data[i*part : (i+1)*part]})
			}
		}
		out = next
	}
	renames := make([]pattern, len(rt.Rename)) // compiled once: tables have hundreds of rules
	for i, r := range rt.Rename {
		renames[i] = compile(r.From)
	}
	seen := map[string]bool{}
	for i, t := range out {
		for k, r := range rt.Rename {
			if n, ok := renames[k].match(t.Name); ok {
				out[i].Name = fill(r.To, n)
				break
			}
		}
		if seen[out[i].Name] {
			return nil, fmt.Errorf("rename table maps two tensors to %q", out[i].Name)
		}
		seen[out[i].Name] = true
	}
	return out, nil
}

func join(in []safetensors.Tensor, j JoinRule) ([]safetensors.Tensor, error) {
	pats := make([]pattern, len(j.From))
	for i, f := range j.From {
		pats[i] = compile(f)
	}
	parts := map[string][]*safetensors.Tensor{} // layer index -> parts in rule order
	first := map[string]int{}
	captured := map[string][]string{}
	for i := range in {
		for k, p := range pats {
			if c, ok := p.match(in[i].Name); ok {
				n := key(c)
				if parts[n] == nil {
					parts[n] = make([]*safetensors.Tensor, len(pats))
					first[n] = i
					captured[n] = c
				}
				parts[n][k] = &in[i]
			}
		}
	}
	var out []safetensors.Tensor
	for i, t := range in {
		consumed := false
		for n, ps := range parts {
			for _, p := range ps {
				if p != nil && p.Name == t.Name {
					consumed = true
				}
			}
			if first[n] != i {
				continue
			}
			c := captured[n]
			var data []byte
			shape := []int64{0}
			for k, p := range ps {
				if p == nil {
					return nil, fmt.Errorf("join into %s: %s is missing", fill(j.To, c), fill(j.From[k], c))
				}
				if p.DType != ps[0].DType || len(p.Shape) == 0 || !equalShape(p.Shape[1:], ps[0].Shape[1:]) {
					return nil, fmt.Errorf("join into %s: %s is %s %v, %s is %s %v", fill(j.To, c), ps[0].Name, ps[0].DType, ps[0].Shape, p.Name, p.DType, p.Shape)
				}
				data = append(data, p.Data...)
				shape[0] += p.Shape[0]
			}
			shape = append(shape, ps[0].Shape[1:]...)
			out = append(out, safetensors.Tensor{Name: fill(j.To, c), DType: ps[0].DType, Shape: shape, Data: data})
		}
		if !consumed {
			out = append(out, t)
		}
	}
	return out, nil
}

func transpose2D(t safetensors.Tensor) (safetensors.Tensor, error) {
	if len(t.Shape) != 2 {
		return t, fmt.Errorf("transpose %s: shape %v is not 2-D", t.Name, t.Shape)
	}
	r, c := t.Shape[0], t.Shape[1]
	es := int64(safetensors.DTypeSize[t.DType])
	data := make([]byte, len(t.Data))
	for i := int64(0); i < r; i++ {
		for j := int64(0); j < c; j++ {
			copy(data[(j*r+i)*es:(j*r+i+1)*es], t.Data[(i*c+j)*es:(i*c+j+1)*es])
		}
	}
	return safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: []int64{c, r}, Data: data}, nil
}
