package mlm

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/reprolab/repro/torchmods"
)

// LoadHF loads a HF BERT folder (config.json plus model.safetensors or
// pytorch_model.bin), or a weight file, into store by HF's names,
// reporting what loaded.
func LoadHF(store *torchmods.Store, path string, w io.Writer) error {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = ""
		for _, f := range []string{"model.safetensors", "pytorch_model.bin"} {
			if _, err := os.Stat(filepath.Join(path, f)); err == nil {
				file = filepath.Join(path, f)
				break
			}
		}
		if file == "" {
			if f, err := torchmods.ResolveWeights(path); err == nil {
				file = f
			} else {
				return fmt.Errorf("%s: no model.safetensors, pytorch_model.bin or repro checkpoint", path)
			}
		}
	}
	weights, err := torchmods.LoadWeights(file, store.Device)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	dropped := torchmods.BertStateDict(weights)
	rep, err := store.Load(weights, false)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fmt.Fprintf(w, "%s: %s (dropped as tied or buffers: %v)\n", file, rep, dropped)
	if len(rep.Mismatched) > 0 {
		return fmt.Errorf("%s: shapes differ from [model]: %v", file, rep.Mismatched)
	}
	if len(rep.Loaded) == 0 {
		return fmt.Errorf("%s: no BERT tensor matched", file)
	}
	return nil
}
