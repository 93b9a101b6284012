package mae

import (
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// HFNames maps Hugging Face ViTMAE (ViTMAEForPreTraining) names, as
// transformers 4.x writes them and the hub's checkpoints carry them, onto
// the official ones: q, k and v join into the fused qkv (rows [0:D],
// [D:2D], [2D:3D]) and the rest are renamed.
var HFNames = torchmods.RenameTable{
	Join: []torchmods.JoinRule{
		{From: []string{"vit.encoder.layer.{n}.attention.attention.query.weight", "vit.encoder.layer.{n}.attention.attention.key.weight", "vit.encoder.layer.{n}.attention.attention.value.weight"}, To: "blocks.{n}.attn.qkv.weight"},
		{From: []string{"vit.encoder.layer.{n}.attention.attention.query.bias", "vit.encoder.layer.{n}.attention.attention.key.bias", "vit.encoder.layer.{n}.attention.attention.value.bias"}, To: "blocks.{n}.attn.qkv.bias"},
		{From: []string{"decoder.decoder_layers.{n}.attention.attention.query.weight", "decoder.decoder_layers.{n}.attention.attention.key.weight", "decoder.decoder_layers.{n}.attention.attention.value.weight"}, To: "decoder_blocks.{n}.attn.qkv.weight"},
		{From: []string{"decoder.decoder_layers.{n}.attention.attention.query.bias", "decoder.decoder_layers.{n}.attention.attention.key.bias", "decoder.decoder_layers.{n}.attention.attention.value.bias"}, To: "decoder_blocks.{n}.attn.qkv.bias"},
	},
	Rename: hfRenames(),
}

// hfTopLevel are the names outside the layers, HF's -> official.
var hfTopLevel = [][2]string{
	{"vit.embeddings.cls_token", "cls_token"},
	{"vit.embeddings.position_embeddings", "pos_embed"},
	{"vit.embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight"},
	{"vit.embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias"},
	{"vit.layernorm.weight", "norm.weight"},
	{"vit.layernorm.bias", "norm.bias"},
	{"decoder.mask_token", "mask_token"},
	{"decoder.decoder_pos_embed", "decoder_pos_embed"},
	{"decoder.decoder_embed.weight", "decoder_embed.weight"},
	{"decoder.decoder_embed.bias", "decoder_embed.bias"},
	{"decoder.decoder_norm.weight", "decoder_norm.weight"},
	{"decoder.decoder_norm.bias", "decoder_norm.bias"},
	{"decoder.decoder_pred.weight", "decoder_pred.weight"},
	{"decoder.decoder_pred.bias", "decoder_pred.bias"},
}

// hfLayer are a layer's modules other than q, k, v: HF 4.x's -> timm's.
var hfLayer = [][2]string{
	{"layernorm_before", "norm1"}, {"attention.output.dense", "attn.proj"}, {"layernorm_after", "norm2"},
	{"intermediate.dense", "mlp.fc1"}, {"output.dense", "mlp.fc2"},
}

func hfRenames() []torchmods.RenameRule {
	var r []torchmods.RenameRule
	for _, p := range hfTopLevel {
		r = append(r, torchmods.RenameRule{From: p[0], To: p[1]})
	}
	for _, p := range hfLayer {
		for _, wb := range []string{"weight", "bias"} {
			r = append(r, torchmods.RenameRule{From: "vit.encoder.layer.{n}." + p[0] + "." + wb, To: "blocks.{n}." + p[1] + "." + wb},
				torchmods.RenameRule{From: "decoder.decoder_layers.{n}." + p[0] + "." + wb, To: "decoder_blocks.{n}." + p[1] + "." + wb})
		}
	}
	return r
}

// officialToHF is HFNames backwards, for the exporter: the fused qkv split
// into query, key and value, and every name renamed back.
var officialToHF = func() torchmods.RenameTable {
	t := torchmods.RenameTable{}
	for _, side := range [][2]string{{"blocks", "vit.encoder.layer"}, {"decoder_blocks", "decoder.decoder_layers"}} {
		for _, wb := range []string{"weight", "bias"} {
			a := side[1] + ".{n}.attention.attention."
			t.Split = append(t.Split, torchmods.SplitRule{From: side[0] + ".{n}.attn.qkv." + wb,
				To: []string{a + "query." + wb, a + "key." + wb, a + "value." + wb}})
		}
	}
	for _, r := range HFNames.Rename {
		t.Rename = append(t.Rename, torchmods.RenameRule{From: r.To, To: r.From})
	}
	return t
}()

// The layer-name spellings of transformers' ViTMAE. 4.x (and every
// checkpoint on the hub) nests each layer as vit.encoder.layer.N /
// decoder.decoder_layers.N with attention.attention.{query,key,value},
// attention.output.dense, intermediate.dense and output.dense. 5.x's
// modules are vit.layers.N / decoder.decoder_layers.N with
// attention.{q,k,v,o}_proj and mlp.fc{1,2}, which is what a torch.save of
// its state_dict holds; its save_pretrained maps the names back to 4.x's
// but turns decoder.decoder_layers.N into decoder.decoder_encoder.layer.N
// (reversing its "encoder.layer" -> "layers" rule inside "decoder_layers").
var (
	v5Sub = [][2]string{ // 5.x -> 4.x, inside a layer
		{"attention.q_proj", "attention.attention.query"}, {"attention.k_proj", "attention.attention.key"},
		{"attention.v_proj", "attention.attention.value"}, {"attention.o_proj", "attention.output.dense"},
		{"mlp.fc1", "intermediate.dense"}, {"mlp.fc2", "output.dense"},
	}
	v4Sub = []string{"attention.attention.query", "attention.attention.key", "attention.attention.value",
		"attention.output.dense", "intermediate.dense", "output.dense", "layernorm_before", "layernorm_after"}
)

// hfLayerSpellings maps every layer prefix (4.x, 5.x, 5.x save_pretrained)
// with either spelling of the modules inside onto 4.x's names, so a file
// that mixes them (a 5.x save_pretrained keeps 4.x's module names under
// the odd decoder prefix) loads too.
var hfLayerSpellings = func() torchmods.RenameTable {
	t := torchmods.RenameTable{}
	prefixes := [][2]string{
		{"vit.layers.{n}.", "vit.encoder.layer.{n}."}, {"vit.encoder.layer.{n}.", "vit.encoder.layer.{n}."},
		{"decoder.decoder_encoder.layer.{n}.", "decoder.decoder_layers.{n}."}, {"decoder.decoder_layers.{n}.", "decoder.decoder_layers.{n}."},
	}
	for _, p := range prefixes {
		for _, wb := range []string{"weight", "bias"} {
			for _, s := range v5Sub {
				t.Rename = append(t.Rename, torchmods.RenameRule{From: p[0] + s[0] + "." + wb, To: p[1] + s[1] + "." + wb})
			}
			for _, s := range v4Sub {
				if p[0] != p[1] {
					t.Rename = append(t.Rename, torchmods.RenameRule{From: p[0] + s + "." + wb, To: p[1] + s + "." + wb})
				}
			}
		}
	}
	return t
}()

// ViTMAEFamily is HF's model_type "vit_mae": its naming variants, the
// official names the repro model registers, and ViTMAEForPreTraining.
var ViTMAEFamily = &torchmods.Family{
	ModelType: "vit_mae",
	Variants: []torchmods.NamingVariant{
		{Name: "transformers 4.x"},
		{Name: "transformers 5.x save_pretrained", Detect: regexp.MustCompile(`^decoder\.decoder_encoder\.layer\.\d+\.`), ToCanonical: hfLayerSpellings},
		{Name: "transformers 5.x state_dict", Detect: regexp.MustCompile(`^vit\.layers\.\d+\.|\.attention\.[qkvo]_proj\.`), ToCanonical: hfLayerSpellings},
	},
	Import: HFNames,
	Export: officialToHF,
	Architectures: []*torchmods.Architecture{{
		Name:     "ViTMAEForPreTraining",
		Inputs:   []string{"pixel_values", "noise"},
		Required: []string{"pixel_values"},
		Outputs:  []string{"loss", "logits", "mask", "ids_restore"},
		Build: func(store *torchmods.Store, cfg *torchmods.HFConfig, w io.Writer) (torchmods.HFModel, error) {
			o, ratio, err := OptionsFromHF(cfg)
			if err != nil {
				return nil, err
			}
			m, err := New(store.Root(), o)
			if err != nil {
				return nil, err
			}
			return NewHFPretraining(m, ratio), nil
		},
	}},
}

func init() { torchmods.RegisterFamily(ViTMAEFamily) }

// OptionsFromHF reads a ViTMAE config.json: sizes, head counts, eps and
// norm_pix_loss, and the mask ratio HF's forward masks at. Absent keys take
// HF's ViTMAEConfig defaults (eps 1e-12, not MAE's 1e-6, as
// from_pretrained would). What the model cannot be built as (another
// activation, no qkv bias, encoder and decoder MLPs of different ratios,
// a non-square image size) is an error naming the key.
func OptionsFromHF(c *torchmods.HFConfig) (Options, float64, error) {
	o := Options{}
	var err error
	ints := []struct {
		key string
		dst *int64
		def int64
	}{
		{"image_size", &o.ImgSize, 224}, {"patch_size", &o.Patch, 16}, {"num_channels", &o.InChans, 3},
		{"hidden_size", &o.Dim, 768}, {"num_hidden_layers", &o.Depth, 12}, {"num_attention_heads", &o.Heads, 12},
		{"decoder_hidden_size", &o.DecoderDim, 512}, {"decoder_num_hidden_layers", &o.DecoderDepth, 8},
		{"decoder_num_attention_heads", &o.DecoderHeads, 16},
	}
	for _, k := range ints {
		if *k.dst, err = c.Int(k.key, k.def); err != nil {
			return o, 0, err
		}
	}
	inter, err := c.Int("intermediate_size", 3072)
	if err != nil {
		return o, 0, err
	}
	decInter, err := c.Int("decoder_intermediate_size", 2048)
	if err != nil {
		return o, 0, err
	}
	if o.Eps, err = c.Float("layer_norm_eps", 1e-12); err != nil {
		return o, 0, err
	}
	if o.NormPixLoss, err = c.Bool("norm_pix_loss", false); err != nil {
		return o, 0, err
	}
	ratio, err := c.Float("mask_ratio", 0.75)
	if err != nil {
		return o, 0, err
	}
	if act, err := c.String("hidden_act", "gelu"); err != nil {
		return o, 0, err
	} else if act != "gelu" {
		return o, 0, fmt.Errorf("%s: hidden_act %q: the MAE blocks use exact GELU (\"gelu\") only", c.Path, act)
	}
	if bias, err := c.Bool("qkv_bias", true); err != nil {
		return o, 0, err
	} else if !bias {
		return o, 0, fmt.Errorf("%s: qkv_bias false: the MAE blocks have q, k, v biases", c.Path)
	}
	if o.Dim <= 0 || o.DecoderDim <= 0 {
		return o, 0, fmt.Errorf("%s: hidden_size %d and decoder_hidden_size %d must be positive", c.Path, o.Dim, o.DecoderDim)
	}
	o.MLPRatio = float64(inter) / float64(o.Dim)
	if int64(float64(o.Dim)*o.MLPRatio) != inter || int64(float64(o.DecoderDim)*o.MLPRatio) != decInter {
		return o, 0, fmt.Errorf("%s: intermediate_size %d / hidden_size %d and decoder_intermediate_size %d / decoder_hidden_size %d: "+
			"the model takes one MLP ratio for both", c.Path, inter, o.Dim, decInter, o.DecoderDim)
	}
	if ratio <= 0 || ratio >= 1 {
		return o, 0, fmt.Errorf("%s: mask_ratio %v must be in (0, 1)", c.Path, ratio)
	}
	if err := o.Validate(); err != nil {
		return o, 0, fmt.Errorf("%s: %w", c.Path, err)
	}
	return o, ratio, nil
}

// HFConfig is the ViTMAEConfig that builds the same model in Python
// (without model_type and architectures), in transformers 4.x spelling.
func (o Options) HFConfig(maskRatio float64) map[string]any {
	return map[string]any{
		"image_size": o.ImgSize, "patch_size": o.Patch, "num_channels": o.InChans,
		"hidden_size": o.Dim, "num_hidden_layers": o.Depth, "num_attention_heads": o.Heads,
		"intermediate_size":   int64(float64(o.Dim) * o.MLPRatio),
		"decoder_hidden_size": o.DecoderDim, "decoder_num_hidden_layers": o.DecoderDepth, "decoder_num_attention_heads": o.DecoderHeads,
		"decoder_intermediate_size": int64(float64(o.DecoderDim) * o.MLPRatio),
		"hidden_act":                "gelu", "qkv_bias": true, "layer_norm_eps": o.Eps,
		"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
		"mask_ratio": maskRatio, "norm_pix_loss": o.NormPixLoss,
	}
}

// HFPretraining is the model as HF's ViTMAEForPreTraining: its forward
// takes pixel_values (and optionally the masking noise) and masks at the
// config's mask_ratio.
type HFPretraining struct {
	Model     *Model
	MaskRatio float64
}

// NewHFPretraining wraps a model for torchmods.ExportHF and `repro hf run`.
func NewHFPretraining(m *Model, maskRatio float64) *HFPretraining {
	return &HFPretraining{Model: m, MaskRatio: maskRatio}
}

// HFConfig is the model's ViTMAEConfig.
func (h *HFPretraining) HFConfig() map[string]any { return h.Model.Opt.HFConfig(h.MaskRatio) }

// Forward returns HF's ViTMAEForPreTrainingOutput: loss, logits (the
// predicted patches [N, L, p*p*C]), mask [N, L] (1 = removed) and
// ids_restore [N, L].
func (h *HFPretraining) Forward(in map[string]*ts.Tensor) (map[string]*ts.Tensor, error) {
	o := h.Model.Opt
	px := in["pixel_values"]
	if s := px.MustSize(); len(s) != 4 || s[1] != o.InChans || s[2] != o.ImgSize || s[3] != o.ImgSize {
		return nil, fmt.Errorf("pixel_values has shape %v, want [batch, %d, %d, %d]", s, o.InChans, o.ImgSize, o.ImgSize)
	}
	noise := in["noise"]
	if noise != nil {
		if s, n := noise.MustSize(), px.MustSize()[0]; len(s) != 2 || s[0] != n || s[1] != h.Model.NumPatches() {
			return nil, fmt.Errorf("noise has shape %v, want [%d, %d] (batch, patches)", s, n, h.Model.NumPatches())
		}
	}
	latent, mask, ids := h.Model.ForwardEncoder(px, h.MaskRatio, noise, false)
	pred := h.Model.ForwardDecoder(latent, ids, false)
	return map[string]*ts.Tensor{"loss": h.Model.Loss(px, pred, mask), "logits": pred, "mask": mask, "ids_restore": ids}, nil
}

// Checkpoint is MAE weights read from any of their published forms, under
// the official names.
type Checkpoint struct {
	Tensors []safetensors.Tensor
	// Kind says what the file was, for reports: the official torch.save
	// dict, a repro state_dict, or HF weights with their naming variant.
	Kind   string
	Source *torchmods.WeightSource
	// HF reports HF ViTMAE names, whose sizes a config.json gives.
	HF bool
	// Config is the model a HF folder's config.json describes (heads,
	// eps and all), nil without one; MaskRatio is its mask_ratio.
	Config    *Options
	MaskRatio float64
}

// OpenCheckpoint reads MAE weights in any of their published forms: a repro
// run or checkpoint folder, the official mae_pretrain_vit_*.pth /
// *_full.pth / mae_visualize_*.pth (a torch.save dict whose "model" entry
// is the state_dict), HF ViTMAE weights in any transformers version's
// names, a HF folder (with its config.json), or hf:ORG/NAME.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	src, err := torchmods.Resolve(path)
	if err != nil {
		return nil, err
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{Tensors: wf.Tensors, Kind: "MAE state_dict (" + wf.Format + ")", Source: src}
	prefixed := 0
	for _, t := range ck.Tensors {
		if strings.HasPrefix(t.Name, "model.") {
			prefixed++
		}
		ck.HF = ck.HF || strings.HasPrefix(t.Name, "vit.")
	}
	if prefixed == len(ck.Tensors) && prefixed > 0 { // the official checkpoints: {"model": state_dict, ...}
		for i := range ck.Tensors {
			ck.Tensors[i].Name = strings.TrimPrefix(ck.Tensors[i].Name, "model.")
		}
		ck.Kind = "official MAE checkpoint (the \"model\" entry of a torch.save dict)"
	}
	if ck.HF {
		im, err := ViTMAEFamily.ImportNames(ck.Tensors)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.File, err)
		}
		ck.Tensors = im.Tensors
		ck.Kind = fmt.Sprintf("Hugging Face ViTMAE weights (%s, %s names)", wf.Format, im.Variant)
		if src.Config != "" {
			cfg, err := torchmods.ReadHFConfig(src.Config)
			if err != nil {
				return nil, err
			}
			if cfg.ModelType != "" && cfg.ModelType != ViTMAEFamily.ModelType {
				return nil, fmt.Errorf("%s: model_type %q, not %q", src.Config, cfg.ModelType, ViTMAEFamily.ModelType)
			}
			o, ratio, err := OptionsFromHF(cfg)
			if err != nil {
				return nil, err
			}
			ck.Config, ck.MaskRatio = &o, ratio
		}
	}
	ck.Kind += " from " + src.File
	return ck, nil
}

// ReadCheckpoint is OpenCheckpoint's tensors and kind.
func ReadCheckpoint(path string) (tensors []safetensors.Tensor, kind string, err error) {
	ck, err := OpenCheckpoint(path)
	if err != nil {
		return nil, "", err
	}
	return ck.Tensors, ck.Kind, nil
}

// LoadInto loads a checkpoint into store, whose model is a Model (full) or
// an encoder-only ViT (full false: decoder weights are skipped). A
// position table for another image size is interpolated, as the official
// interpolate_pos_embed. A full model loads strictly, and an encoder-only
// checkpoint is refused with the reason; an encoder loads what matches and
// reports the rest (a classifier's head and fc_norm are new). The report
// goes to w.
func LoadInto(store *torchmods.Store, path string, o Options, full bool, w io.Writer) (torchmods.LoadReport, error) {
	ck, err := OpenCheckpoint(path)
	if err != nil {
		return torchmods.LoadReport{}, err
	}
	weights := map[string]*ts.Tensor{}
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	if c := ck.Config; c != nil { // heads are invisible in the shapes: a mismatch loads and computes garbage
		if c.Heads != o.Heads || (full && c.DecoderHeads != o.DecoderHeads) {
			return torchmods.LoadReport{}, fmt.Errorf("%s says num_attention_heads %d, decoder_num_attention_heads %d; the model has heads %d, decoder_heads %d: set [model] to match",
				ck.Source.Config, c.Heads, c.DecoderHeads, o.Heads, o.DecoderHeads)
		}
		if c.Eps != o.Eps {
			fmt.Fprintf(w, "note: %s says layer_norm_eps %g; the model uses eps %g\n", ck.Source.Config, c.Eps, o.Eps)
		}
	}
	hasDecoder := false
	for _, t := range ck.Tensors {
		isDecoder := strings.HasPrefix(t.Name, "decoder") || t.Name == "mask_token"
		hasDecoder = hasDecoder || isDecoder
		if isDecoder && !full {
			continue
		}
		x, err := torchmods.FromSafetensors(t, store.Device)
		if err != nil {
			return torchmods.LoadReport{}, fmt.Errorf("%s: %w", path, err)
		}
		weights[t.Name] = x
	}
	if full && !hasDecoder {
		return torchmods.LoadReport{}, fmt.Errorf("%s holds an encoder only (like the official mae_pretrain_vit_*.pth); "+
			"reconstruction needs the decoder too: use a *_full.pth or mae_visualize_*.pth file, or a repro pre-training run", path)
	}
	if pe, ok := weights["pos_embed"]; ok {
		grid := o.ImgSize / o.Patch
		if np, err := torchmods.InterpolatePosEmbed(pe, grid); err != nil {
			return torchmods.LoadReport{}, fmt.Errorf("%s: pos_embed: %w", path, err)
		} else if np != pe {
			fmt.Fprintf(w, "pos_embed interpolated from %v to %d x %d patches\n", pe.MustSize(), grid, grid)
			pe.MustDrop()
			weights["pos_embed"] = np
		}
	}
	rep, err := store.Load(weights, full)
	fmt.Fprintf(w, "%s: %s\n", ck.Kind, rep)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	if len(rep.Mismatched) > 0 {
		return rep, fmt.Errorf("%s: shapes differ from model (check [model] against the checkpoint): %v", path, rep.Mismatched)
	}
	if len(rep.Loaded) == 0 {
		return rep, fmt.Errorf("%s: no tensor matched the model's names", path)
	}
	return rep, nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d6165)) }
