package torchmods

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// LlamaFamily and MistralFamily are HF's model_type "llama" and "mistral".
// The model registers HF's own names, so there is no Import or Export
// table; what files in the wild add is a naming variant and two ignored
// kinds of tensor.
var (
	LlamaFamily   = llamaFamily("llama", "LlamaForCausalLM", "LlamaModel")
	MistralFamily = llamaFamily("mistral", "MistralForCausalLM", "MistralModel")
)

func init() {
	RegisterFamily(LlamaFamily)
	RegisterFamily(MistralFamily)
}

func llamaFamily(modelType, class, base string) *Family {
	return &Family{
		ModelType: modelType,
		Variants: []NamingVariant{
			{Name: "transformers"},
			{
				// The base model's save_pretrained writes its names
				// without the model. prefix that the causal LM adds;
				// from_pretrained adds it back (base_model_prefix). Such a
				// file has no lm_head, which a tied model does not need.
				Name:   base + " (no model. prefix)",
				Detect: regexp.MustCompile(`^(embed_tokens|layers|norm)\.`),
				ToCanonical: RenameTable{Rename: []RenameRule{
					{From: "embed_tokens.{*}", To: "model.embed_tokens.{*}"},
					{From: "layers.{*}", To: "model.layers.{*}"},
					{From: "norm.{*}", To: "model.norm.{*}"},
				}},
			},
		},
		// Checkpoints written before transformers 4.31 saved RoPE's
		// frequencies as a persistent buffer in every layer; they are
		// recomputed from the config.
		Ignore: []string{"model.layers.{n}.self_attn.rotary_emb.inv_freq"},
		Architectures: []*Architecture{{
			Name:     class,
			Inputs:   []string{"input_ids", "attention_mask", "position_ids", "labels"},
			Required: []string{"input_ids"},
			Outputs:  []string{"logits", "loss"},
			Build: func(store *Store, cfg *HFConfig, w io.Writer) (HFModel, error) {
				c, err := LlamaConfigFromHF(cfg)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(w, "%s: %s\n", cfg.Path, c.Summary())
				if c.TorchDType != "" && c.TorchDType != "float32" {
					fmt.Fprintf(w, "%s: torch_dtype %s: parameters held in float32, as from_pretrained does without torch_dtype\n", cfg.Path, c.TorchDType)
				}
				return &llamaHF{m: NewLlamaForCausalLM(store.Root(), c, LlamaBuild{ForLoading: true})}, nil
			},
		}},
	}
}

// Summary is one line on what the config builds, for load reports.
func (c LlamaConfig) Summary() string {
	rope := fmt.Sprintf("RoPE %s, theta %g", c.Rope.Type, c.Rope.Theta)
	if c.Rope.Type != "default" {
		rope += fmt.Sprintf(", factor %g", c.Rope.Factor)
	}
	s := fmt.Sprintf("%s, %d layers of width %d, %d heads of %d over %d key/value heads, MLP %d, vocabulary %d, %s",
		c.Class(), c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.HeadDim, c.NumKeyValueHeads, c.IntermediateSize, c.VocabSize, rope)
	if c.SlidingWindow > 0 {
		s += fmt.Sprintf(", sliding window %d", c.SlidingWindow)
	}
	if c.TieWordEmbeddings {
		s += ", lm_head tied to embed_tokens"
	}
	return s
}

// llamaHF is LlamaForCausalLM (or MistralForCausalLM) as `repro hf run`
// calls it.
type llamaHF struct{ m *LlamaForCausalLM }

// NewLlamaForExport wraps a LlamaForCausalLM for ExportHF.
func NewLlamaForExport(m *LlamaForCausalLM) HFModel { return &llamaHF{m: m} }

func (l *llamaHF) HFConfig() map[string]any { return l.m.Cfg.HFConfig() }

// Forward is LlamaForCausalLM.forward: logits [B, L, V] and, with labels
// (-100 = not a target), the shifted cross-entropy as loss. Without
// position_ids, positions count from 0 whatever the padding, as in HF's
// forward (generate passes LlamaPositionIDs). Shapes and ids are checked
// first, so that a bad input is an error naming it.
func (l *llamaHF) Forward(in map[string]*ts.Tensor) (map[string]*ts.Tensor, error) {
	c := l.m.Cfg
	ids := in["input_ids"]
	if err := checkTokenInputs(in, c.VocabSize, "attention_mask", "position_ids", "labels"); err != nil {
		return nil, err
	}
	if labels, ok := in["labels"]; ok {
		bad := labels.MustNe(ts.IntScalar(-100), false).MustLogicalAnd(labels.MustLt(ts.IntScalar(0), false).
			MustLogicalOr(labels.MustGe(ts.IntScalar(c.VocabSize), false), true), true)
		if bad.MustAny(true).Int64Values()[0] != 0 {
			return nil, fmt.Errorf("labels hold ids outside [0, %d) other than -100", c.VocabSize)
		}
	}
	logits := l.m.Forward(LlamaInput{IDs: ids, Mask: in["attention_mask"], Positions: in["position_ids"]}, false)
	out := map[string]*ts.Tensor{"logits": logits}
	if labels, ok := in["labels"]; ok {
		out["loss"] = LlamaLoss(logits, labels)
	}
	return out, nil
}

// LlamaLoadOptions configures OpenLlama.
type LlamaLoadOptions struct {
	// DType is the parameters' dtype: "" or "float32" (what
	// from_pretrained gives without torch_dtype), "bfloat16", "float16",
	// or "auto" for config.json's torch_dtype (float32 when it names
	// none). What computes in which dtype: see LlamaForCausalLM.
	DType  string
	Device gotch.Device
	// Strict refuses a file with tensors the model does not have (else
	// they are reported and left out).
	Strict bool
}

// LoadedLlama is a Llama-family model OpenLlama built and loaded.
type LoadedLlama struct {
	Model  *LlamaForCausalLM
	Store  *Store // holds the parameters; Drop frees them
	Source *WeightSource
	Report LoadReport
	// EOS are the stop tokens generation uses by default:
	// generation_config.json's eos_token_id when the folder has one (as
	// generate reads it), else config.json's.
	EOS []int64
}

// OpenLlama builds the Llama or Mistral model that a HF folder (anything
// Resolve accepts that has a config.json: a folder with model.safetensors
// or a sharded model.safetensors.index.json, hf:ORG/NAME) describes,
// creates its parameters in o.DType on o.Device, and loads the weights
// through the family's names, converting them to that dtype. The report
// (what was built, the file, loaded/missing/unexpected tensors) goes to w.
// A missing parameter or a shape mismatch is an error naming the tensors.
func OpenLlama(spec string, o LlamaLoadOptions, w io.Writer) (*LoadedLlama, error) {
	src, err := Resolve(spec)
	if err != nil {
		return nil, err
	}
	if src.Config == "" {
		return nil, fmt.Errorf("%s: no config.json beside %s; a HF model folder has one", spec, src.File)
	}
	hc, err := ReadHFConfig(src.Config)
	if err != nil {
		return nil, err
	}
	fam, err := LookupFamily(hc.ModelType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hc.Path, err)
	}
	if fam != LlamaFamily && fam != MistralFamily {
		return nil, fmt.Errorf("%s: model_type %q is not a Llama-family decoder (llama, mistral)", hc.Path, hc.ModelType)
	}
	if _, err := fam.Architecture(hc.Architectures); err != nil {
		return nil, fmt.Errorf("%s: %w", hc.Path, err)
	}
	c, err := LlamaConfigFromHF(hc)
	if err != nil {
		return nil, err
	}
	dtype := o.DType
	if dtype == "auto" {
		dtype = c.TorchDType
	}
	dt, err := ParseLlamaDType(dtype)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hc.Path, err)
	}
	store := NewStore(o.Device)
	// The store counts 4 bytes an element; scale its bound so that it
	// bounds the real bytes of 2-byte parameters.
	store.MaxBytes = store.MaxBytes * 4 / int64(dt.Size())
	var m *LlamaForCausalLM
	if err := Try(func() { m = NewLlamaForCausalLM(store.Root(), c, LlamaBuild{DType: dtype, ForLoading: true}) }); err != nil {
		store.Drop()
		return nil, fmt.Errorf("%s: %s: %w", hc.Path, c.Class(), err)
	}
	fmt.Fprintf(w, "%s: %s; parameters %v, computing in %v on %v\n", hc.Path, c.Summary(), dt, m.ComputeDType(), o.Device)
	if sp := hc.Spellings(); len(sp) > 0 {
		fmt.Fprintf(w, "%s: keys read under other spellings: %s\n", hc.Path, strings.Join(sp, ", "))
	}
	rep, err := fam.LoadHFWeights(store, src.File, LoadOptions{Strict: o.Strict}, w)
	if err != nil {
		store.Drop()
		return nil, err
	}
	eos, err := generationEOS(filepath.Dir(src.Config), c.EOSTokenIDs)
	if err != nil {
		store.Drop()
		return nil, err
	}
	return &LoadedLlama{Model: m, Store: store, Source: src, Report: rep, EOS: eos}, nil
}

// generationEOS is generation_config.json's eos_token_id in dir when the
// file exists and names one, else def.
func generationEOS(dir string, def []int64) ([]int64, error) {
	path := filepath.Join(dir, "generation_config.json")
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return def, nil
	}
	if err != nil {
		return nil, err
	}
	gc, err := ParseHFConfig(path, b)
	if err != nil {
		return nil, err
	}
	if _, ok := gc.Raw("eos_token_id"); !ok {
		return def, nil
	}
	return tokenIDs(gc, "eos_token_id", def)
}
