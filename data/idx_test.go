package data

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeIDX(t *testing.T, dir, name string, header []byte, body []byte) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(header)
	w.Write(body)
	w.Close()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b.Bytes(), 0o644))
	return p
}

func TestFashionMNISTSmall(t *testing.T) {
	dir := t.TempDir()
	writeIDX(t, dir, "t10k-images-idx3-ubyte.gz", []byte{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	writeIDX(t, dir, "t10k-labels-idx1-ubyte.gz", []byte{0, 0, 8, 1, 0, 0, 0, 2}, []byte{9, 0})
	im, err := FashionMNIST(dir, "test")
	require.NoError(t, err)
	assert.Equal(t, 2, im.N)
	assert.Equal(t, []uint8{7, 8, 9, 10, 11, 12}, im.Image(1))
	assert.Equal(t, []uint8{9, 0}, im.Labels)
}

func TestFashionMNISTErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := FashionMNIST(dir, "val")
	assert.ErrorContains(t, err, `split "val"`)
	_, err = FashionMNIST(dir, "test")
	assert.ErrorContains(t, err, "t10k-images-idx3-ubyte.gz not found")
	writeIDX(t, dir, "t10k-images-idx3-ubyte.gz", []byte{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3}, []byte{1, 2, 3})
	writeIDX(t, dir, "t10k-labels-idx1-ubyte.gz", []byte{0, 0, 8, 1, 0, 0, 0, 2}, []byte{9, 0})
	_, err = FashionMNIST(dir, "test")
	assert.ErrorContains(t, err, "12 bytes of data expected")
	writeIDX(t, dir, "t10k-images-idx3-ubyte.gz", []byte{0, 0, 13, 3}, nil)
	_, err = FashionMNIST(dir, "test")
	assert.ErrorContains(t, err, "not an IDX file")
}

// TestRealFashionMNIST reads the Debian package's data, which the install
// script puts on every machine that runs the tests.
func TestRealFashionMNIST(t *testing.T) {
	if _, err := os.Stat(FashionMNISTDir); err != nil {
		t.Skip("dataset-fashion-mnist not installed")
	}
	train, err := FashionMNIST("", "train")
	require.NoError(t, err)
	test, err := FashionMNIST("", "test")
	require.NoError(t, err)
	assert.Equal(t, 60000, train.N)
	assert.Equal(t, 10000, test.N)
	assert.Equal(t, 28, train.Rows)
	counts := make([]int, 10)
	for _, l := range test.Labels {
		counts[l]++
	}
	for c, n := range counts {
		assert.Equal(t, 1000, n, "class %s", FashionMNISTClasses[c])
	}
}
