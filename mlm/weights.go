package mlm

import (
	"fmt"
	"io"
	"strings"

	"github.com/reprolab/repro/torchmods"
)

// LoadHF loads BERT weights into store by HF's names from anything
// torchmods.Resolve accepts: a HF folder (model.safetensors, sharded or
// not, or pytorch_model.bin), hf:ORG/NAME, a weight file, or a repro run or
// checkpoint. The older spellings of BERT's names (LayerNorm.gamma/beta,
// BertModel without the bert. prefix) are mapped by torchmods.BertFamily.
// A task head the file cannot have (classifier., a pooler, the MLM head of
// a BertModel checkpoint) keeps its initialisation and is reported; any
// other missing tensor or shape mismatch is an error.
func LoadHF(store *torchmods.Store, path string, w io.Writer) error {
	src, err := torchmods.Resolve(path)
	if err != nil {
		return err
	}
	_, err = torchmods.BertFamily.LoadHFWeights(store, src.File,
		torchmods.LoadOptions{NewParams: []string{"classifier.", "bert.pooler.", "cls."}}, w)
	return err
}

// CheckHFConfig compares the sizes a HF folder's config.json gives with
// model's (the [model] keys of a config), since a checkpoint's shapes do
// not show head counts or eps: a BERT built with the wrong number of heads
// loads every tensor and computes something else. Paths without a
// config.json pass unchecked.
func CheckHFConfig(path string, model torchmods.BertConfig) error {
	src, err := torchmods.Resolve(path)
	if err != nil || src.Config == "" {
		return err
	}
	hf, err := torchmods.ReadBertConfig(src.Config)
	if err != nil {
		return err
	}
	var diff []string
	if hf.NumAttentionHeads != model.NumAttentionHeads {
		diff = append(diff, fmt.Sprintf("num_attention_heads %d (model %d)", hf.NumAttentionHeads, model.NumAttentionHeads))
	}
	if hf.HiddenAct != model.HiddenAct && model.HiddenAct != "" {
		diff = append(diff, fmt.Sprintf("hidden_act %q (model %q)", hf.HiddenAct, model.HiddenAct))
	}
	if model.LayerNormEps != 0 && hf.LayerNormEps != model.LayerNormEps {
		diff = append(diff, fmt.Sprintf("layer_norm_eps %g (model %g)", hf.LayerNormEps, model.LayerNormEps))
	}
	if len(diff) > 0 {
		return fmt.Errorf("%s says %s: set [model] to match", src.Config, strings.Join(diff, ", "))
	}
	return nil
}
