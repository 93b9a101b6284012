package textclf

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/mlm"
)

// WriteLexname writes mlm.finetune's lexname task as text.classify data:
// dir/train.tsv and dir/test.tsv, a header "sentence\tlabel" and one row
// per WordNet gloss with its synset's lexicographer file. The glosses, their
// order and the split are mlm.finetune's own (mlm.LoadCorpus, synsets held
// out by hash at the share heldout, 0.05 in configs/mlm), so text.classify
// on these files trains on the same examples in the same order. It returns
// the row counts.
func WriteLexname(dir string, heldout float64) (trainRows, testRows int, err error) {
	docs, err := mlm.LoadCorpus(mlm.DataConfig{Corpus: "wordnet", Heldout: heldout})
	if err != nil {
		return 0, 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	write := func(name string, keep func(mlm.Doc) bool) (int, error) {
		p := filepath.Join(dir, name)
		f, err := os.Create(p + ".tmp")
		if err != nil {
			return 0, err
		}
		defer f.Close()
		w := bufio.NewWriter(f)
		fmt.Fprintln(w, "sentence\tlabel")
		n := 0
		for _, d := range docs {
			if !d.Gloss || !keep(d) {
				continue
			}
			if strings.ContainsAny(d.Text, "\t\r\n") { // would break the row; WordNet's glosses have none
				return 0, fmt.Errorf("gloss %q holds a tab or line break", d.Text)
			}
			fmt.Fprintf(w, "%s\t%s\n", d.Text, data.WordNetLexNames[d.Lexname])
			n++
		}
		if err := w.Flush(); err != nil {
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
		return n, os.Rename(p+".tmp", p)
	}
	if trainRows, err = write("train.tsv", func(d mlm.Doc) bool { return !d.Heldout }); err != nil {
		return 0, 0, err
	}
	testRows, err = write("test.tsv", func(d mlm.Doc) bool { return d.Heldout })
	return trainRows, testRows, err
}
