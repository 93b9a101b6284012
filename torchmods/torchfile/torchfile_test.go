package torchfile

import (
	"archive/zip"
	"bytes"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/torchmods/safetensors"
)

func TestReadsACheckpointExactly(t *testing.T) {
	f, err := Read("testdata/checkpoint.pt")
	require.NoError(t, err)
	want, err := safetensors.Read("testdata/checkpoint_expected.safetensors")
	require.NoError(t, err)
	require.Len(t, f.Tensors, len(want.Tensors))
	for _, w := range want.Tensors {
		var got *safetensors.Tensor
		for i := range f.Tensors {
			if f.Tensors[i].Name == w.Name {
				got = &f.Tensors[i]
			}
		}
		require.NotNil(t, got, "missing %s", w.Name)
		assert.Equal(t, w.DType, got.DType, w.Name)
		assert.Equal(t, w.Shape, got.Shape, w.Name)
		assert.Equal(t, w.Data, got.Data, "%s: bytes differ from PyTorch's contiguous copy", w.Name)
	}
	assert.Equal(t, []string{"args.lr", "epoch"}, f.Skipped)
	assert.Equal(t, "model.fc.weight", f.Tensors[0].Name, "file order is kept")
}

func TestHostilePickleIsRefusedAndNotRun(t *testing.T) {
	const marker = "/tmp/repro-hostile-pickle-ran"
	os.Remove(marker)
	_, err := Read("testdata/hostile.pt")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing global posix.system")
	assert.NoFileExists(t, marker, "nothing in the file was executed")
}

func TestReadsTorchScriptWeights(t *testing.T) {
	f, err := Read("testdata/scripted.pt")
	require.NoError(t, err)
	want, err := safetensors.Read("testdata/scripted_expected.safetensors")
	require.NoError(t, err)
	var names []string
	for _, tn := range f.Tensors {
		names = append(names, tn.Name)
		w, ok := want.Get(tn.Name)
		require.True(t, ok, "unexpected %s", tn.Name)
		assert.Equal(t, w.Data, tn.Data, tn.Name)
	}
	assert.ElementsMatch(t, []string{"fc.weight", "fc.bias", "ln.weight", "ln.bias", "buf"}, names, "state_dict names")
	assert.Contains(t, f.Skipped, "training", "non-tensor attributes are reported, not loaded")
}

func TestNewObjOfAnythingElseIsRefused(t *testing.T) {
	_, err := unpickle([]byte("\x80\x02ccollections\nOrderedDict\n)\x81."))
	assert.ErrorContains(t, err, "NEWOBJ of collections.OrderedDict is refused")
}

func TestBadFilesGiveReasons(t *testing.T) {
	good, err := os.ReadFile("testdata/checkpoint.pt")
	require.NoError(t, err)
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"truncated": {good[:len(good)/2], "not a torch.save zip file"},
		"legacy":    {[]byte{0x80, 0x02, 0x8a, 0x0a}, "legacy (pre-1.6) format"},
		"not torch": {zipOf(t, map[string][]byte{"a.txt": []byte("hi")}), "no <name>/data.pkl"},
		"missing storage": {zipOf(t, map[string][]byte{"m/data.pkl": pickleOf(t, good)}),
			"storage 0 missing from the zip"},
		"bad pickle": {zipOf(t, map[string][]byte{"m/data.pkl": {0x80}}), "truncated pickle"},
	} {
		_, err := Parse(c.b)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

func TestStorageShorterThanThePickleSays(t *testing.T) {
	good, err := os.ReadFile("testdata/checkpoint.pt")
	require.NoError(t, err)
	entries := map[string][]byte{}
	zr, err := zip.NewReader(bytes.NewReader(good), int64(len(good)))
	require.NoError(t, err)
	for _, f := range zr.File {
		r, _ := f.Open()
		b := new(bytes.Buffer)
		b.ReadFrom(r)
		entries[f.Name] = b.Bytes()
		if f.Name == "checkpoint/data/0" {
			entries[f.Name] = b.Bytes()[:4]
		}
	}
	_, err = Parse(zipOf(t, entries))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the pickle says")
}

func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, b := range files {
		f, err := w.Create(name)
		require.NoError(t, err)
		f.Write(b)
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func pickleOf(t *testing.T, zipBytes []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	require.NoError(t, err)
	for _, f := range zr.File {
		if f.Name == "checkpoint/data.pkl" {
			r, _ := f.Open()
			b := new(bytes.Buffer)
			b.ReadFrom(r)
			return b.Bytes()
		}
	}
	t.Fatal("no data.pkl")
	return nil
}

func FuzzUnpickle(f *testing.F) {
	good, err := os.ReadFile("testdata/checkpoint.pt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pickleOf(&testing.T{}, good))
	f.Add([]byte("\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u."))
	f.Add([]byte("cos\nsystem\n(X\x02\x00\x00\x00lstR."))
	f.Fuzz(func(t *testing.T, b []byte) {
		unpickle(b) // must return, never panic or hang
	})
}

func TestViewPastItsStorageIsRefused(t *testing.T) {
	st := &storageRef{key: "0", dtype: "F32", numel: 6}
	_, err := materialize("w", &tensorRef{storage: st, offset: 2, size: []int64{2, 3}, stride: []int64{3, 1}}, make([]byte, 24), math.MaxInt64)
	assert.ErrorContains(t, err, `tensor "w": shape [2 3] stride [3 1] offset 2 reaches past its storage of 6 elements`)
	_, err = materialize("w", &tensorRef{storage: st, offset: 0, size: []int64{1 << 40, 1 << 40}, stride: []int64{1, 1}}, make([]byte, 24), math.MaxInt64)
	assert.Error(t, err)
	got, err := materialize("w", &tensorRef{storage: st, offset: 1, size: []int64{2, 2}, stride: []int64{1, 2}}, []byte{
		0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64}, math.MaxInt64)
	require.NoError(t, err)
	// storage [0 1 2 3 4 5], offset 1, size [2 2], stride [1 2] -> [[1 3] [2 4]]
	assert.Equal(t, []byte{0, 0, 128, 63, 0, 0, 64, 64, 0, 0, 0, 64, 0, 0, 128, 64}, got.Data)
}
