package ir

import (
	"fmt"
	"math"
	"os"
	"syscall"
)

// mapFile maps the whole file at path read-only, for the BM25 and dense
// indexes, which are searched in place. An empty file maps to an empty
// slice (mmap refuses length 0), so that the caller's format check names
// it as truncated.
func mapFile(path string) (data []byte, unmap func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("ir: %s: %d bytes, too large to map", path, size)
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("ir: %s: mmap: %w", path, err)
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
