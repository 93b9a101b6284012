package torchfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pk writes pickle programs by hand, for hostile shapes torch.save would
// never write.
type pk struct{ bytes.Buffer }

func (p *pk) op(b ...byte) *pk { p.Write(b); return p }

func (p *pk) str(s string) *pk {
	p.WriteByte('X')
	binary.Write(p, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}

func (p *pk) int(n int64) *pk {
	p.WriteByte(0x8a) // LONG1, 8 bytes
	p.WriteByte(8)
	binary.Write(p, binary.LittleEndian, n)
	return p
}

func (p *pk) put(i uint32) *pk {
	p.WriteByte('r')
	binary.Write(p, binary.LittleEndian, i)
	return p
}

func (p *pk) get(i uint32) *pk {
	p.WriteByte('j')
	binary.Write(p, binary.LittleEndian, i)
	return p
}

func (p *pk) ints(v []int64) *pk {
	p.op('(')
	for _, x := range v {
		p.int(x)
	}
	return p.op('t')
}

// tensor pushes _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()).
func (p *pk) tensor(class, key string, numel, offset int64, size, stride []int64) *pk {
	p.WriteString("ctorch._utils\n_rebuild_tensor_v2\n")
	p.op('(', '(').str("storage")
	p.WriteString("ctorch\n" + class + "\n")
	p.str(key).str("cpu").int(numel).op('t', 'Q')
	p.int(offset).ints(size).ints(stride).op(0x89)
	p.WriteString("ccollections\nOrderedDict\n")
	return p.op(')', 'R', 't', 'R')
}

// torchZip wraps a pickle and its storages as torch.save does: entries
// stored, not compressed.
func torchZip(t testing.TB, pkl []byte, storages map[string][]byte) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	add := func(name string, b []byte) {
		f, err := w.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		require.NoError(t, err)
		f.Write(b)
	}
	add("m/data.pkl", pkl)
	for _, k := range slices.Sorted(maps.Keys(storages)) {
		add("m/data/"+k, storages[k])
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// TestDuplicateNamesAreRefused is item 7: {"a.b": t1, "a": {"b": t2}}
// flattens both tensors onto "a.b", and which one a model got depended on
// key order.
func TestDuplicateNamesAreRefused(t *testing.T) {
	_, err := Read("testdata/dup.pt")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `tensor "a.b" appears twice`)

	// The same key set twice in one dict (Python would keep the last).
	var p pk
	p.op(0x80, 2, '}', '(').str("w").tensor("FloatStorage", "0", 1, 0, []int64{1}, []int64{1}).
		str("w").tensor("FloatStorage", "0", 1, 0, []int64{1}, []int64{1}).op('u', '.')
	_, err = Parse(torchZip(t, p.Bytes(), map[string][]byte{"0": make([]byte, 4)}))
	assert.ErrorContains(t, err, `tensor "w" appears twice`)
}

// TestStrideZeroExpansionIsRefused is item 10: PyTorch saves an expanded
// tensor as its small storage and stride 0, so a 744-byte file described
// 4 TiB (a Go fatal out-of-memory) and, at 2**61 float64 elements, a byte
// count that wraps to 0 (a slice panic).
func TestStrideZeroExpansionIsRefused(t *testing.T) {
	for _, f := range []string{"testdata/expand.pt", "testdata/wrap.pt"} {
		_, err := Read(f)
		if assert.Error(t, err, f) {
			assert.Contains(t, err.Error(), `tensor "w"`, f)
			assert.Contains(t, err.Error(), "more than its storage", f)
		}
	}
	// Shapes whose byte count overflows 64 bits in every way.
	for _, c := range []struct{ size, stride []int64 }{
		{[]int64{1 << 62, 4}, []int64{0, 0}},
		{[]int64{1 << 61}, []int64{0}},
		{[]int64{3, 1 << 62}, []int64{1 << 62, 0}},
		{[]int64{2, 2}, []int64{1 << 62, 1 << 62}},
	} {
		var p pk
		p.op(0x80, 2, '}').str("w").tensor("DoubleStorage", "0", 1, 0, c.size, c.stride).op('s', '.')
		_, err := Parse(torchZip(t, p.Bytes(), map[string][]byte{"0": make([]byte, 8)}))
		assert.ErrorContains(t, err, `tensor "w"`, "%v %v", c.size, c.stride)
	}
	// A storage declared larger than the whole file is refused before it is read.
	var p pk
	p.op(0x80, 2, '}').str("w").tensor("FloatStorage", "0", 1<<40, 0, []int64{1}, []int64{1}).op('s', '.')
	_, err := Parse(torchZip(t, p.Bytes(), map[string][]byte{"0": make([]byte, 4)}))
	assert.ErrorContains(t, err, "larger than the file")
}

// TestStorageDeclaredTwiceDifferently: two tensors naming one storage key
// with different dtypes or sizes used to index past the bytes read for the
// first (a slice panic).
func TestStorageDeclaredTwiceDifferently(t *testing.T) {
	var p pk
	p.op(0x80, 2, '}', '(').str("a").tensor("FloatStorage", "0", 1, 0, []int64{1}, []int64{1}).
		str("b").tensor("DoubleStorage", "0", 4, 0, []int64{4}, []int64{1}).op('u', '.')
	_, err := Parse(torchZip(t, p.Bytes(), map[string][]byte{"0": make([]byte, 4)}))
	assert.ErrorContains(t, err, `tensor "b": storage 0 is declared as 4 F64 elements, and elsewhere as 1 F32`)
}

// TestSelfReferenceIsRefused is item 10: a dict that contains itself
// (pickle allows it) used to recurse until the process ran out of memory.
func TestSelfReferenceIsRefused(t *testing.T) {
	_, err := Read("testdata/cycle.pt")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"self" contains itself`)
}

// TestNestingAndSharingAreBounded: a dict nested ten thousand deep, and
// dicts shared so that 60 levels reach 2**60 leaves (the pickle form of a
// billion laughs), end with an error, quickly.
func TestNestingAndSharingAreBounded(t *testing.T) {
	var deep pk
	deep.op(0x80, 2)
	for range 10000 {
		deep.op('}').str("k")
	}
	deep.op('N')
	for range 10000 {
		deep.op('s')
	}
	deep.op('.')
	start := time.Now()
	_, err := Parse(torchZip(t, deep.Bytes(), nil))
	assert.ErrorContains(t, err, "nested deeper than")

	var laughs pk
	laughs.op(0x80, 2, '}').str("x").op('N', 's').put(0)
	for i := range uint32(60) {
		laughs.op('}', '(').str("a").get(i).str("b").get(i).op('u').put(i + 1)
	}
	laughs.op('.')
	_, err = Parse(torchZip(t, laughs.Bytes(), nil))
	assert.ErrorContains(t, err, "entries")
	assert.Less(t, time.Since(start), 10*time.Second)
}

// TestErrorsDoNotPrintSharedStructures: an error message that formats a
// value must not expand a pickle's shared tuples (2**60 elements here).
func TestErrorsDoNotPrintSharedStructures(t *testing.T) {
	var p pk
	p.op(0x80, 2, 'N').put(0)
	for i := range uint32(60) {
		p.get(i).get(i).op(0x86).put(i + 1)
	}
	p.op('Q', '.') // BINPERSID of the last tuple
	done := make(chan error)
	go func() { _, err := unpickle(p.Bytes()); done <- err }()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Less(t, len(err.Error()), 1000)
		assert.True(t, strings.Contains(err.Error(), "not a storage reference"), err.Error())
	case <-time.After(10 * time.Second):
		t.Fatal("formatting the error did not end")
	}
}
