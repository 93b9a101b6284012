// Package data reads the datasets repro's experiments use and turns them
// into batches. Readers are pure Go; batches become tensors only at the
// training step, so loader goroutines never hold libtorch tensors.
package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Images is a set of equally sized grey-scale images with integer labels.
type Images struct {
	Pixels        []uint8 // N*Rows*Cols, row-major
	Labels        []uint8
	Rows, Cols, N int
}

// Image returns image i's pixels.
func (im *Images) Image(i int) []uint8 {
	n := im.Rows * im.Cols
	return im.Pixels[i*n : (i+1)*n]
}

// FashionMNISTDir is where Debian's dataset-fashion-mnist package puts the data.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// FashionMNISTClasses are the labels' names, in label order.
var FashionMNISTClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// FashionMNIST reads the "train" (60,000) or "test" (10,000) split from dir
// ("" for FashionMNISTDir).
func FashionMNIST(dir, split string) (*Images, error) {
	if dir == "" {
		dir = FashionMNISTDir
	}
	prefix := map[string]string{"train": "train", "test": "t10k"}[split]
	if prefix == "" {
		return nil, fmt.Errorf("fashion-mnist: split %q, want train or test", split)
	}
	img := filepath.Join(dir, prefix+"-images-idx3-ubyte.gz")
	lab := filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz")
	for _, p := range []string{img, lab} {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			hint := ""
			if dir == FashionMNISTDir {
				hint = " (install Debian's dataset-fashion-mnist: scripts/install_libtorch.sh does)"
			}
			return nil, fmt.Errorf("fashion-mnist: %s not found%s", p, hint)
		}
	}
	pixels, dims, err := ReadIDX(img)
	if err != nil {
		return nil, err
	}
	labels, ldims, err := ReadIDX(lab)
	if err != nil {
		return nil, err
	}
	if len(dims) != 3 || len(ldims) != 1 || dims[0] != ldims[0] {
		return nil, fmt.Errorf("fashion-mnist: %s has shape %v and %s %v; want [N rows cols] and [N]", img, dims, lab, ldims)
	}
	// A label past the classes would fail at the first training step deep
	// in libtorch (an index out of range in the loss); here it names the
	// file and the example.
	for i, l := range labels {
		if int(l) >= len(FashionMNISTClasses) {
			return nil, fmt.Errorf("fashion-mnist: %s: example %d has label %d, but the dataset has %d classes (labels 0 to %d)", lab, i, l, len(FashionMNISTClasses), len(FashionMNISTClasses)-1)
		}
	}
	return &Images{Pixels: pixels, Labels: labels, N: dims[0], Rows: dims[1], Cols: dims[2]}, nil
}

// ReadIDX reads an IDX file of unsigned bytes (gzip-compressed when its name
// ends in .gz): the format of MNIST and Fashion-MNIST.
func ReadIDX(path string) ([]uint8, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	limit := int64(-1) // the data's size when known: the file's, less the header
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	} else if st, err := f.Stat(); err == nil {
		limit = st.Size()
	}
	data, dims, err := parseIDX(r, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, dims, nil
}

// parseIDX reads an IDX stream of unsigned bytes; size is the stream's
// length when known (an uncompressed file), or -1. The header's dimensions
// are not trusted for an allocation: data is read as it comes, so a
// 40-byte file claiming 2 GiB costs what it holds, not what it claims.
func parseIDX(r io.Reader, size int64) ([]uint8, []int, error) {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, nil, fmt.Errorf("truncated header: %w", err)
	}
	if magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] == 0 || magic[3] > 4 {
		return nil, nil, fmt.Errorf("not an IDX file of unsigned bytes (magic % x)", magic)
	}
	dims := make([]int, magic[3])
	total := 1
	for i := range dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, nil, fmt.Errorf("truncated header: %w", err)
		}
		if d == 0 || d > 1<<24 || total > (1<<31)/int(d) {
			return nil, nil, fmt.Errorf("implausible dimension %d", d)
		}
		dims[i] = int(d)
		total *= int(d)
	}
	header := int64(4 + 4*len(dims))
	if size >= 0 && size-header < int64(total) {
		return nil, nil, fmt.Errorf("%d bytes of data expected: the file has %d", total, max(size-header, 0))
	}
	buf, err := io.ReadAll(io.LimitReader(r, int64(total)))
	if err != nil {
		return nil, nil, fmt.Errorf("%d bytes of data expected: %w", total, err)
	}
	if len(buf) != total {
		return nil, nil, fmt.Errorf("%d bytes of data expected: %w", total, io.ErrUnexpectedEOF)
	}
	return buf, dims, nil
}
