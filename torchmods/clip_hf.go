package torchmods

import (
	"fmt"
	"io"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// CLIPFamily is HF's model_type "clip" (CLIPModel). The model registers
// OpenAI's names, so that a released state dict loads as it is; Import
// maps HF's names onto them and Export back, as transformers'
// convert_clip_original_pytorch_to_hf.py maps OpenAI's checkpoints:
//
//   - each attention's q_proj, k_proj and v_proj (weights and biases)
//     join, in that order, into nn.MultiheadAttention's packed
//     in_proj_weight [3W, W] and in_proj_bias [3W]; out_proj keeps its name;
//   - layer_norm1/2 are ln_1/2, mlp.fc1/fc2 are mlp.c_fc/c_proj, under
//     text_model.encoder.layers.N (transformer.resblocks.N) and
//     vision_model.encoder.layers.N (visual.transformer.resblocks.N);
//   - the embeddings: text_model.embeddings.token_embedding.weight is
//     token_embedding.weight, its position_embedding.weight is
//     positional_embedding; vision_model.embeddings.patch_embedding.weight
//     is visual.conv1.weight, class_embedding visual.class_embedding,
//     position_embedding.weight visual.positional_embedding;
//   - vision_model.pre_layrnorm (HF's spelling) and post_layernorm are
//     visual.ln_pre and visual.ln_post, text_model.final_layer_norm is
//     ln_final;
//   - visual_projection.weight and text_projection.weight are Linear
//     weights [embed, W], the transposes of visual.proj and
//     text_projection [W, embed]; logit_scale is logit_scale.
//
// The position_ids buffers that files written before transformers 4.31
// hold are ignored.
//
// It is registered, so `repro hf run` and OpenHF open CLIP folders;
// LoadCLIP uses it directly.
var CLIPFamily = &Family{
	ModelType: "clip",
	Variants:  []NamingVariant{{Name: "transformers"}},
	Import:    clipHFToOpenAI,
	Export:    clipOpenAIToHF,
	Ignore:    []string{"text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"},
	Architectures: []*Architecture{{
		Name:     "CLIPModel",
		Inputs:   []string{"input_ids", "pixel_values", "attention_mask"},
		Required: []string{"input_ids", "pixel_values"},
		Outputs:  []string{"logits_per_image", "logits_per_text", "text_embeds", "image_embeds"},
		Build: func(store *Store, cfg *HFConfig, w io.Writer) (HFModel, error) {
			c, err := CLIPConfigFromHF(cfg)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(w, "%s: %s\n", cfg.Path, c.Summary())
			return &clipHF{m: NewCLIP(store.Root(), c)}, nil
		},
	}},
}

func init() { RegisterFamily(CLIPFamily) }

// clipHFTowers are the two transformers: HF's layer prefix, OpenAI's.
var clipHFTowers = [][2]string{
	{"text_model.encoder.layers.{n}.", "transformer.resblocks.{n}."},
	{"vision_model.encoder.layers.{n}.", "visual.transformer.resblocks.{n}."},
}

// clipHFRenames are the one-to-one names, HF's -> OpenAI's.
var clipHFRenames = func() []RenameRule {
	r := []RenameRule{
		{From: "text_model.embeddings.token_embedding.weight", To: "token_embedding.weight"},
		{From: "text_model.embeddings.position_embedding.weight", To: "positional_embedding"},
		{From: "text_model.final_layer_norm.{*}", To: "ln_final.{*}"},
		{From: "vision_model.embeddings.patch_embedding.weight", To: "visual.conv1.weight"},
		{From: "vision_model.embeddings.class_embedding", To: "visual.class_embedding"},
		{From: "vision_model.embeddings.position_embedding.weight", To: "visual.positional_embedding"},
		{From: "vision_model.pre_layrnorm.{*}", To: "visual.ln_pre.{*}"},
		{From: "vision_model.post_layernorm.{*}", To: "visual.ln_post.{*}"},
		{From: "visual_projection.weight", To: "visual.proj"},
		{From: "text_projection.weight", To: "text_projection"},
		{From: "logit_scale", To: "logit_scale"},
	}
	for _, t := range clipHFTowers {
		for _, m := range [][2]string{{"self_attn.out_proj", "attn.out_proj"}, {"layer_norm1", "ln_1"}, {"layer_norm2", "ln_2"}, {"mlp.fc1", "mlp.c_fc"}, {"mlp.fc2", "mlp.c_proj"}} {
			for _, wb := range []string{"weight", "bias"} {
				r = append(r, RenameRule{From: t[0] + m[0] + "." + wb, To: t[1] + m[1] + "." + wb})
			}
		}
	}
	return r
}()

// clipHFToOpenAI is CLIPFamily's Import: HF's names -> OpenAI's.
var clipHFToOpenAI = func() RenameTable {
	t := RenameTable{Transpose: []string{"visual_projection.weight", "text_projection.weight"}, Rename: clipHFRenames}
	for _, tw := range clipHFTowers {
		for _, wb := range []string{"weight", "bias"} {
			a := tw[0] + "self_attn."
			t.Join = append(t.Join, JoinRule{From: []string{a + "q_proj." + wb, a + "k_proj." + wb, a + "v_proj." + wb}, To: tw[1] + "attn.in_proj_" + wb})
		}
	}
	return t
}()

// clipOpenAIToHF is CLIPFamily's Export, clipHFToOpenAI backwards.
var clipOpenAIToHF = func() RenameTable {
	t := RenameTable{Transpose: []string{"visual.proj", "text_projection"}}
	for _, tw := range clipHFTowers {
		for _, wb := range []string{"weight", "bias"} {
			a := tw[0] + "self_attn."
			t.Split = append(t.Split, SplitRule{From: tw[1] + "attn.in_proj_" + wb, To: []string{a + "q_proj." + wb, a + "k_proj." + wb, a + "v_proj." + wb}})
		}
	}
	for _, r := range clipHFRenames {
		t.Rename = append(t.Rename, RenameRule{From: r.To, To: r.From})
	}
	return t
}()

// clipHF is CLIPModel as `repro hf run` calls it.
type clipHF struct{ m *CLIP }

// NewCLIPForExport wraps a CLIP with a vision transformer for ExportHF
// (CLIPFamily, "CLIPModel").
func NewCLIPForExport(m *CLIP) (HFModel, error) {
	if _, err := m.Cfg.HFConfig(); err != nil {
		return nil, err
	}
	return &clipHF{m: m}, nil
}

func (h *clipHF) HFConfig() map[string]any {
	cfg, err := h.m.Cfg.HFConfig()
	if err != nil {
		panic(fmt.Sprintf("torchmods: %v", err)) // NewCLIPForExport and Build make vision transformers only
	}
	return cfg
}

// Forward is CLIPModel.forward: logits_per_image [images, texts],
// logits_per_text, and the projected features normalised to unit length
// (image_embeds, text_embeds). An attention_mask, when given, must be a
// right padding (ones, then zeros) that keeps each row's end-of-text
// token: then, as the causal mask already hides later positions from the
// pooled one, it changes nothing, and nothing else is implemented.
func (h *clipHF) Forward(in map[string]*ts.Tensor) (map[string]*ts.Tensor, error) {
	c := h.m.Cfg
	if err := checkTokenInputs(in, c.VocabSize, "attention_mask"); err != nil {
		return nil, err
	}
	ids, px := in["input_ids"], in["pixel_values"]
	if l := ids.MustSize()[1]; l > c.ContextLength {
		return nil, fmt.Errorf("input_ids has %d positions, more than max_position_embeddings %d", l, c.ContextLength)
	}
	if s := px.MustSize(); len(s) != 4 || s[1] != 3 || s[2] != c.ImageResolution || s[3] != c.ImageResolution {
		return nil, fmt.Errorf("pixel_values has shape %v, want [batch, 3, %d, %d]", s, c.ImageResolution, c.ImageResolution)
	}
	eot := h.m.EOTPositions(ids)
	if mask, ok := in["attention_mask"]; ok {
		m := mask.MustNe(ts.IntScalar(0), false).MustTotype(gotch.Int64, true)
		steps := m.MustNarrow(1, 1, m.MustSize()[1]-1, false).MustGtTensor(m.MustNarrow(1, 0, m.MustSize()[1]-1, false), true) // a 0 followed by a 1
		kept := m.MustGather(1, eot.MustUnsqueeze(1, false), false, false)
		if steps.MustAny(true).Int64Values()[0] != 0 || kept.MustMin(true).Int64Values()[0] == 0 {
			return nil, fmt.Errorf("attention_mask is not a right padding that keeps each row's end-of-text token; only such masks are supported (they change nothing)")
		}
	}
	img := h.m.EncodeImage(px, false)
	txt := h.m.EncodeTokens(h.m.TokenEmbedding.Forward(ids), eot)
	lpi := h.m.Logits(img, txt)
	norm := func(x *ts.Tensor) *ts.Tensor {
		return x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false), false)
	}
	return map[string]*ts.Tensor{"logits_per_image": lpi, "logits_per_text": lpi.MustT(false),
		"image_embeds": norm(img), "text_embeds": norm(txt)}, nil
}
