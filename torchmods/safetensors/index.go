package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Index is a sharded checkpoint's index (model.safetensors.index.json or
// pytorch_model.bin.index.json, as transformers writes them): which shard
// file holds each tensor.
type Index struct {
	WeightMap map[string]string // tensor name -> shard file name
	Names     []string          // the tensors, in the index's order
	Shards    []string          // the distinct shard files, sorted
}

// ReadIndex parses the index file at path; errors name the file.
func ReadIndex(path string) (*Index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	idx, err := ParseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return idx, nil
}

// ParseIndex parses a shard index held in b. A tensor named twice in
// weight_map is refused, naming it: encoding/json would keep the last
// shard silently, and which copy of a weight a model gets must not depend
// on key order. Shards must be plain file names, so that an index can
// never make a reader open a file outside its own folder.
func ParseIndex(b []byte) (*Index, error) {
	fields, err := objectFields(b)
	var dup *duplicateKeyError
	switch {
	case errors.As(err, &dup):
		return nil, fmt.Errorf("%q appears twice in the index", dup.key)
	case err != nil:
		return nil, fmt.Errorf("index is not a JSON object: %w", err)
	}
	idx := &Index{WeightMap: map[string]string{}}
	var wm []field
	for _, fd := range fields {
		if fd.key != "weight_map" {
			continue // "metadata" (total_size) and extensions are not needed
		}
		if wm, err = objectFields(fd.value); errors.As(err, &dup) {
			return nil, fmt.Errorf("tensor %q appears twice in weight_map: which shard holds it is ambiguous", dup.key)
		} else if err != nil && string(fd.value) != "null" {
			return nil, fmt.Errorf("weight_map: %w", err)
		}
	}
	if len(wm) == 0 {
		return nil, fmt.Errorf("no weight_map: a shard index maps each tensor name to its shard file")
	}
	seen := map[string]bool{}
	for _, fd := range wm {
		var shard string
		if len(fd.value) == 0 || fd.value[0] != '"' {
			return nil, fmt.Errorf("tensor %q: shard %s is not a file name string", fd.key, fd.value)
		}
		if err := json.Unmarshal(fd.value, &shard); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", fd.key, err)
		}
		if !plainFileName(shard) {
			return nil, fmt.Errorf("tensor %q: shard %q must be a file name beside the index", fd.key, shard)
		}
		idx.WeightMap[fd.key] = shard
		idx.Names = append(idx.Names, fd.key)
		if !seen[shard] {
			seen[shard] = true
			idx.Shards = append(idx.Shards, shard)
		}
	}
	sort.Strings(idx.Shards)
	return idx, nil
}

// plainFileName reports whether s names a file in the current folder on
// every platform: no separator of either kind, not "." or "..", no NUL.
func plainFileName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}
