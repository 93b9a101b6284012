package torchmods

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// ExportTensors is the store's parameters under the family's canonical HF
// names (through Export), float32, ready for a HF model.safetensors.
func ExportTensors(store *Store, f *Family) ([]safetensors.Tensor, error) {
	var out []safetensors.Tensor
	for _, p := range store.Params() {
		t, err := ToSafetensors(p.Name, p.Tensor, gotch.Float)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", p.Name, err)
		}
		out = append(out, t)
	}
	out, err := f.Export.Apply(out)
	if err != nil {
		return nil, fmt.Errorf("export %s names: %w", f.ModelType, err)
	}
	return out, nil
}

// ExportHF writes dir as a HF model folder, so that a model trained or
// fine-tuned here loads in Python with from_pretrained(dir):
//
//   - config.json: m.HFConfig() with model_type, architectures (arch) and
//     torch_dtype, in transformers 4.x spelling, which both 4.x and 5.x
//     read;
//   - model.safetensors: the parameters under the family's canonical names
//     (those of the hub's checkpoints), float32, with the metadata
//     {"format": "pt"}: from_pretrained refuses a safetensors file whose
//     metadata names no framework it knows.
//
// Tied copies (BERT's decoder weight) are left out, as save_pretrained
// leaves them out: from_pretrained ties them again. Files are replaced
// atomically; dir is created if needed.
func ExportHF(dir string, store *Store, f *Family, arch string, m HFModel) error {
	if _, err := f.Architecture([]string{arch}); err != nil {
		return err
	}
	tensors, err := ExportTensors(store, f)
	if err != nil {
		return err
	}
	cfg := m.HFConfig()
	if bins, ok := cfg["rel_pos_bins"]; ok && f.ModelType == "bert" {
		// transformers' BertModel has no relative position bias: it would
		// load the folder, ignore bert.rel_pos_bias.weight and compute
		// something else without a word.
		return fmt.Errorf("export to %s: the model has UniLMv2's relative position bias (rel_pos_bins %v), which HF's BERT classes do not compute; keep the run directory (or s2s-ft's format) instead", dir, bins)
	}
	cfg["model_type"] = f.ModelType
	cfg["architectures"] = []string{arch}
	cfg["torch_dtype"] = "float32"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return WriteHFConfig(filepath.Join(dir, "config.json"), cfg)
}
