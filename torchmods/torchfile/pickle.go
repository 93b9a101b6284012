package torchfile

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// The unpickler builds only what a state dict needs: dicts (OrderedDict),
// lists, tuples, strings, bytes, numbers, booleans, None, tensors rebuilt
// from storages, and storage classes. A pickle that names any other global
// (os.system, builtins.eval, ...) is refused with the name, before anything
// is called: nothing in a file is ever executed. This is the policy of
// PyTorch's weights_only loader.

// global is a class or function a pickle named and this unpickler allows.
type global struct{ module, name string }

func (g global) String() string { return g.module + "." + g.name }

var storageDTypes = map[string]string{
	"FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
	"LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
	"ByteStorage": "U8", "BoolStorage": "BOOL",
}

// scripted reports a TorchScript class (module "__torch__..."). Such a class
// is only ever recorded as a name: NEWOBJ makes an inert attribute map of it
// and BUILD fills the map, so a TorchScript archive's weights can be read
// without running its code.
func scripted(g global) bool {
	return g.module == "__torch__" || strings.HasPrefix(g.module, "__torch__.")
}

func allowed(g global) bool {
	if scripted(g) {
		return true
	}
	switch g.String() {
	case "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
		"torch._utils._rebuild_parameter_with_state":
		return true
	}
	_, isStorage := storageDTypes[g.name]
	return g.module == "torch" && isStorage
}

// tensorRef is a tensor as the pickle describes it: a view into a storage.
type tensorRef struct {
	storage *storageRef
	offset  int64
	size    []int64
	stride  []int64
}

// storageRef is a storage named by a persistent id; its bytes are read later.
type storageRef struct {
	key    string
	dtype  string
	numel  int64
	device string
}

type mark struct{}

// Dict keeps insertion order, as OrderedDict does. Class is set when it
// stands for a TorchScript object, whose attributes it holds.
type Dict struct {
	Keys   []any
	Values []any
	Class  string
}

type tuple []any

const maxItems = 1 << 24 // bound on memo and stack growth, against hostile files

// unpickle runs the pickle program in data.
func unpickle(data []byte) (any, error) {
	u := &unpickler{data: data, memo: map[int64]any{}}
	v, err := u.run()
	if err != nil {
		return nil, fmt.Errorf("data.pkl at byte %d: %w", u.pos, err)
	}
	return v, nil
}

type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[int64]any
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || u.pos+n > len(u.data) || u.pos+n < u.pos {
		return nil, fmt.Errorf("truncated pickle: need %d bytes", n)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) line() (string, error) {
	for i := u.pos; i < len(u.data); i++ {
		if u.data[i] == '\n' {
			s := string(u.data[u.pos:i])
			u.pos = i + 1
			return s, nil
		}
	}
	return "", fmt.Errorf("truncated pickle: unterminated line")
}

func (u *unpickler) push(v any) error {
	if len(u.stack) >= maxItems {
		return fmt.Errorf("pickle stack exceeds %d items", maxItems)
	}
	u.stack = append(u.stack, v)
	return nil
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || u.stackTopIsMark() {
		return nil, fmt.Errorf("pickle stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) stackTopIsMark() bool {
	return len(u.marks) > 0 && u.marks[len(u.marks)-1] == len(u.stack)
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 {
		return nil, fmt.Errorf("pickle stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items pushed since the last MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, fmt.Errorf("no MARK on the pickle stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	if m > len(u.stack) {
		return nil, fmt.Errorf("corrupt MARK")
	}
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoize(idx int64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	if len(u.memo) >= maxItems {
		return fmt.Errorf("pickle memo exceeds %d items", maxItems)
	}
	u.memo[idx] = v
	return nil
}

func (u *unpickler) run() (any, error) {
	for {
		b, err := u.read(1)
		if err != nil {
			return nil, err
		}
		op := b[0]
		switch op {
		case 0x80: // PROTO
			if _, err := u.read(1); err != nil {
				return nil, err
			}
		case 0x95: // FRAME
			if _, err := u.read(8); err != nil {
				return nil, err
			}
		case '.': // STOP
			return u.pop()
		case '(': // MARK
			u.marks = append(u.marks, len(u.stack))
		case '}', 0x8f: // EMPTY_DICT, EMPTY_SET (a set is only ever a container here)
			err = u.push(&Dict{})
		case ']': // EMPTY_LIST
			err = u.push(&[]any{})
		case ')': // EMPTY_TUPLE
			err = u.push(tuple{})
		case 'N':
			err = u.push(nil)
		case 0x88:
			err = u.push(true)
		case 0x89:
			err = u.push(false)
		case 'K': // BININT1
			b, err := u.read(1)
			if err != nil {
				return nil, err
			}
			err = u.push(int64(b[0]))
			if err != nil {
				return nil, err
			}
		case 'M': // BININT2
			b, err := u.read(2)
			if err != nil {
				return nil, err
			}
			err = u.push(int64(binary.LittleEndian.Uint16(b)))
			if err != nil {
				return nil, err
			}
		case 'J': // BININT
			b, err := u.read(4)
			if err != nil {
				return nil, err
			}
			err = u.push(int64(int32(binary.LittleEndian.Uint32(b))))
			if err != nil {
				return nil, err
			}
		case 0x8a: // LONG1
			n, err := u.read(1)
			if err != nil {
				return nil, err
			}
			b, err := u.read(int(n[0]))
			if err != nil {
				return nil, err
			}
			v, err := decodeLong(b)
			if err != nil {
				return nil, err
			}
			err = u.push(v)
			if err != nil {
				return nil, err
			}
		case 'G': // BINFLOAT, big-endian
			b, err := u.read(8)
			if err != nil {
				return nil, err
			}
			err = u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			if err != nil {
				return nil, err
			}
		case 'X', 0x8c, 'B', 'C', 'T', 'U': // BINUNICODE, SHORT_BINUNICODE, BINBYTES, SHORT_BINBYTES, BINSTRING, SHORT_BINSTRING
			var n int
			if op == 0x8c || op == 'C' || op == 'U' {
				b, err := u.read(1)
				if err != nil {
					return nil, err
				}
				n = int(b[0])
			} else {
				b, err := u.read(4)
				if err != nil {
					return nil, err
				}
				n = int(binary.LittleEndian.Uint32(b))
			}
			s, err := u.read(n)
			if err != nil {
				return nil, err
			}
			if op == 'B' || op == 'C' {
				err = u.push(append([]byte(nil), s...))
			} else {
				err = u.push(string(s))
			}
			if err != nil {
				return nil, err
			}
		case 'q': // BINPUT
			b, err := u.read(1)
			if err != nil {
				return nil, err
			}
			if err := u.memoize(int64(b[0])); err != nil {
				return nil, err
			}
		case 'r': // LONG_BINPUT
			b, err := u.read(4)
			if err != nil {
				return nil, err
			}
			if err := u.memoize(int64(binary.LittleEndian.Uint32(b))); err != nil {
				return nil, err
			}
		case 0x94: // MEMOIZE
			if err := u.memoize(int64(len(u.memo))); err != nil {
				return nil, err
			}
		case 'h', 'j': // BINGET, LONG_BINGET
			var idx int64
			if op == 'h' {
				b, err := u.read(1)
				if err != nil {
					return nil, err
				}
				idx = int64(b[0])
			} else {
				b, err := u.read(4)
				if err != nil {
					return nil, err
				}
				idx = int64(binary.LittleEndian.Uint32(b))
			}
			v, ok := u.memo[idx]
			if !ok {
				return nil, fmt.Errorf("memo entry %d does not exist", idx)
			}
			err = u.push(v)
		case '0': // POP
			_, err = u.pop()
		case '1': // POP_MARK
			_, err = u.popMark()
		case '2': // DUP
			var v any
			if v, err = u.top(); err == nil {
				err = u.push(v)
			}
		case 't': // TUPLE
			var items []any
			if items, err = u.popMark(); err == nil {
				err = u.push(tuple(items))
			}
		case 0x85, 0x86, 0x87: // TUPLE1..3
			n := int(op - 0x84)
			if len(u.stack) < n {
				return nil, fmt.Errorf("pickle stack underflow")
			}
			t := append(tuple(nil), u.stack[len(u.stack)-n:]...)
			u.stack = u.stack[:len(u.stack)-n]
			err = u.push(t)
		case 'c': // GLOBAL "module\nname\n"
			mod, err := u.line()
			if err != nil {
				return nil, err
			}
			name, err := u.line()
			if err != nil {
				return nil, err
			}
			if err := u.pushGlobal(global{mod, name}); err != nil {
				return nil, err
			}
		case 0x93: // STACK_GLOBAL
			name, err1 := u.pop()
			mod, err2 := u.pop()
			ms, ok1 := mod.(string)
			ns, ok2 := name.(string)
			if err1 != nil || err2 != nil || !ok1 || !ok2 {
				return nil, fmt.Errorf("STACK_GLOBAL needs two strings")
			}
			if err := u.pushGlobal(global{ms, ns}); err != nil {
				return nil, err
			}
		case 'Q': // BINPERSID: a storage
			pid, err := u.pop()
			if err != nil {
				return nil, err
			}
			s, err := persistentStorage(pid)
			if err != nil {
				return nil, err
			}
			err = u.push(s)
			if err != nil {
				return nil, err
			}
		case 'R': // REDUCE: call an allowed global
			args, err := u.pop()
			if err != nil {
				return nil, err
			}
			fn, err := u.pop()
			if err != nil {
				return nil, err
			}
			v, err := reduce(fn, args)
			if err != nil {
				return nil, err
			}
			err = u.push(v)
			if err != nil {
				return nil, err
			}
		case 's': // SETITEM
			v, err1 := u.pop()
			k, err2 := u.pop()
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("pickle stack underflow")
			}
			if err := u.setItems([]any{k, v}); err != nil {
				return nil, err
			}
		case 'u': // SETITEMS
			items, err := u.popMark()
			if err != nil {
				return nil, err
			}
			if err := u.setItems(items); err != nil {
				return nil, err
			}
		case 'a', 'e', 0x90: // APPEND, APPENDS, ADDITEMS
			var items []any
			if op == 'a' {
				v, err := u.pop()
				if err != nil {
					return nil, err
				}
				items = []any{v}
			} else if items, err = u.popMark(); err != nil {
				return nil, err
			}
			t, err := u.top()
			if err != nil {
				return nil, err
			}
			switch c := t.(type) {
			case *[]any:
				if len(*c)+len(items) > maxItems {
					return nil, fmt.Errorf("list exceeds %d items", maxItems)
				}
				*c = append(*c, items...)
			case *Dict: // a set
				for _, it := range items {
					c.Keys, c.Values = append(c.Keys, it), append(c.Values, nil)
				}
			default:
				return nil, fmt.Errorf("APPEND to a %T", t)
			}
		case 0x81: // NEWOBJ: only a TorchScript class, made an inert attribute map
			args, err1 := u.pop()
			cls, err2 := u.pop()
			g, ok := cls.(global)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("pickle stack underflow")
			}
			if !ok || !scripted(g) {
				return nil, fmt.Errorf("NEWOBJ of %s is refused: only TorchScript modules are rebuilt, as attribute maps", describe(cls))
			}
			if a, ok := args.(tuple); !ok || len(a) != 0 {
				return nil, fmt.Errorf("NEWOBJ of %s with arguments is refused", g)
			}
			if err := u.push(&Dict{Class: g.String()}); err != nil {
				return nil, err
			}
		case 'b': // BUILD: a TorchScript object's attributes; OrderedDict's _metadata is dropped
			state, err := u.pop()
			if err != nil {
				return nil, err
			}
			t, err := u.top()
			if err != nil {
				return nil, err
			}
			d, ok := t.(*Dict)
			if !ok {
				return nil, fmt.Errorf("BUILD on a %T is not part of a state dict", t)
			}
			if st, ok := state.(*Dict); ok && d.Class != "" {
				if len(d.Keys)+len(st.Keys) > maxItems {
					return nil, fmt.Errorf("object exceeds %d attributes", maxItems)
				}
				d.Keys, d.Values = append(d.Keys, st.Keys...), append(d.Values, st.Values...)
			}
		default:
			return nil, fmt.Errorf("pickle opcode 0x%02x (%q) is not needed for a state dict and is refused", op, rune(op))
		}
		if err != nil {
			return nil, err
		}
	}
}

func (u *unpickler) pushGlobal(g global) error {
	if !allowed(g) {
		return fmt.Errorf("refusing global %s: a state dict does not need it, and unpickling it could run code", g)
	}
	return u.push(g)
}

func (u *unpickler) setItems(items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("SETITEMS with an odd number of items")
	}
	t, err := u.top()
	if err != nil {
		return err
	}
	d, ok := t.(*Dict)
	if !ok {
		return fmt.Errorf("SETITEM on a %T", t)
	}
	if len(d.Keys)+len(items)/2 > maxItems {
		return fmt.Errorf("dict exceeds %d items", maxItems)
	}
	for i := 0; i < len(items); i += 2 {
		d.Keys, d.Values = append(d.Keys, items[i]), append(d.Values, items[i+1])
	}
	return nil
}

func decodeLong(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) > 8 {
		return 0, fmt.Errorf("integer of %d bytes is out of range", len(b))
	}
	be := make([]byte, len(b)) // little-endian two's complement -> big.Int
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if !v.IsInt64() {
		return 0, fmt.Errorf("integer out of range")
	}
	return v.Int64(), nil
}

// persistentStorage decodes ('storage', storage_type, key, location, numel).
func persistentStorage(pid any) (*storageRef, error) {
	t, ok := pid.(tuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, fmt.Errorf("persistent id %s is not a storage reference", describe(pid))
	}
	g, ok1 := t[1].(global)
	key, ok2 := t[2].(string)
	loc, ok3 := t[3].(string)
	numel, ok4 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 || numel < 0 {
		return nil, fmt.Errorf("malformed storage reference %s", describe(pid))
	}
	dt, ok := storageDTypes[g.name]
	if !ok {
		return nil, fmt.Errorf("storage type %s is not supported", g)
	}
	return &storageRef{key: key, dtype: dt, numel: numel, device: loc}, nil
}

func reduce(fn, args any) (any, error) {
	g, ok := fn.(global)
	if !ok {
		return nil, fmt.Errorf("REDUCE on a %T", fn)
	}
	a, ok := args.(tuple)
	if !ok {
		return nil, fmt.Errorf("REDUCE arguments are a %T, not a tuple", args)
	}
	switch g.String() {
	case "collections.OrderedDict":
		return &Dict{}, nil
	case "torch._utils._rebuild_tensor_v2":
		// (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
		if len(a) < 4 {
			return nil, fmt.Errorf("_rebuild_tensor_v2 with %d arguments", len(a))
		}
		s, ok := a[0].(*storageRef)
		off, ok2 := a[1].(int64)
		size, err1 := ints(a[2])
		stride, err2 := ints(a[3])
		if !ok || !ok2 || err1 != nil || err2 != nil || len(size) != len(stride) {
			return nil, fmt.Errorf("malformed _rebuild_tensor_v2 arguments")
		}
		return &tensorRef{storage: s, offset: off, size: size, stride: stride}, nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(a) < 1 {
			return nil, fmt.Errorf("%s without a tensor", g)
		}
		t, ok := a[0].(*tensorRef)
		if !ok {
			return nil, fmt.Errorf("%s of a %T", g, a[0])
		}
		return t, nil
	}
	return nil, fmt.Errorf("calling %s is not allowed", g)
}

func ints(v any) ([]int64, error) {
	t, ok := v.(tuple)
	if !ok {
		return nil, fmt.Errorf("not a tuple")
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("not a non-negative integer")
		}
		out[i] = n
	}
	return out, nil
}

// describe formats an unpickled value for an error message or a name,
// in at most about 200 bytes. fmt's %v would walk the value in full, and a
// pickle can share one tuple between two slots at every level, so that 60
// levels print 2^60 elements: a few hundred bytes of file that never
// finish formatting.
func describe(v any) string {
	var b strings.Builder
	describeTo(&b, v, 3)
	return b.String()
}

func describeTo(b *strings.Builder, v any, depth int) {
	const maxLen, maxItems = 200, 8
	if b.Len() > maxLen {
		b.WriteString("...")
		return
	}
	items := func(open, close string, xs []any) {
		b.WriteString(open)
		for i, x := range xs {
			if i > 0 {
				b.WriteString(", ")
			}
			if i == maxItems || depth == 0 || b.Len() > maxLen {
				fmt.Fprintf(b, "... (%d items)", len(xs))
				break
			}
			describeTo(b, x, depth-1)
		}
		b.WriteString(close)
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case string:
		if len(x) > 64 {
			fmt.Fprintf(b, "%q... (%d bytes)", x[:64], len(x))
		} else {
			fmt.Fprintf(b, "%q", x)
		}
	case []byte:
		fmt.Fprintf(b, "<%d bytes>", len(x))
	case int64, float64, bool:
		fmt.Fprint(b, x)
	case global:
		b.WriteString(x.String())
	case tuple:
		items("(", ")", x)
	case *[]any:
		items("[", "]", *x)
	case *Dict:
		if x.Class != "" {
			fmt.Fprintf(b, "<%s object>", x.Class)
		} else {
			fmt.Fprintf(b, "<dict of %d items>", len(x.Keys))
		}
	case *storageRef:
		fmt.Fprintf(b, "<storage %s>", x.key)
	case *tensorRef:
		fmt.Fprintf(b, "<tensor %v>", x.size)
	case mark:
		b.WriteString("<mark>")
	default:
		fmt.Fprintf(b, "<%T>", v)
	}
}
