package data

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ReadCorpus reads a plain-text corpus: a file holds one document per
// non-empty line; a folder holds one document per .txt file (searched
// recursively, in sorted path order), with its whitespace runs collapsed.
func ReadCorpus(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	var docs []string
	if !st.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				docs = append(docs, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("corpus %s: %w", path, err)
		}
	} else {
		var files []string
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".txt") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		slices.Sort(files)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("corpus: %w", err)
			}
			if doc := strings.Join(strings.Fields(string(b)), " "); doc != "" {
				docs = append(docs, doc)
			}
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("corpus %s: no text (want one document per line, or a folder of .txt files)", path)
	}
	return docs, nil
}
