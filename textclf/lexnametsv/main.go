// Command lexnametsv writes WordNet's lexname task (mlm.finetune's: classify
// a gloss into its synset's lexicographer file, held-out synsets for
// testing) as TSV files for text.classify:
//
//	go run ./textclf/lexnametsv -out runs/lexname
//
// It reads Debian's wordnet-base (/usr/share/wordnet).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/reprolab/repro/textclf"
)

func main() {
	out := flag.String("out", "runs/lexname", "folder for train.tsv and test.tsv")
	heldout := flag.Float64("heldout", 0.05, "share of synsets held out for testing (configs/mlm's data.heldout)")
	flag.Parse()
	tr, te, err := textclf.WriteLexname(*out, *heldout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lexnametsv:", err)
		os.Exit(1)
	}
	fmt.Printf("%s/train.tsv: %d glosses, %s/test.tsv: %d glosses\n", *out, tr, *out, te)
}
