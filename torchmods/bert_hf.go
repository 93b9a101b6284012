package torchmods

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"github.com/sugarme/gotch/ts"
)

// BertFamily is HF's model_type "bert": the store registers HF's own
// names, so there is no Import or Export table, only the older spellings
// still found in checkpoints on the hub.
var BertFamily = &Family{
	ModelType: "bert",
	Variants: []NamingVariant{
		{Name: "transformers"},
		{
			// bert-base-uncased's own pytorch_model.bin, converted from
			// Google's TensorFlow checkpoint, names LayerNorm's parameters
			// gamma and beta; transformers renames them on load.
			Name:        "TensorFlow-converted (LayerNorm.gamma/beta)",
			Detect:      regexp.MustCompile(`LayerNorm\.(gamma|beta)$`),
			ToCanonical: bertLegacyNames,
		},
		{
			// BertModel.save_pretrained writes the encoder without the
			// bert. prefix that the task models (BertForMaskedLM) add;
			// from_pretrained adds it back (base_model_prefix).
			Name:        "BertModel (no bert. prefix)",
			Detect:      regexp.MustCompile(`^(embeddings|encoder|pooler)\.`),
			ToCanonical: bertLegacyNames,
		},
	},
	// What save_pretrained may write that the store does not hold: the MLM
	// decoder, tied to the word embeddings and to cls.predictions.bias
	// (older versions saved both copies), and the position_ids and
	// token_type_ids buffers (persistent before transformers 4.31).
	Ignore: []string{"cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
		"bert.embeddings.position_ids", "bert.embeddings.token_type_ids"},
	Architectures: []*Architecture{{
		Name:     "BertForMaskedLM",
		Inputs:   []string{"input_ids", "attention_mask", "token_type_ids", "labels"},
		Required: []string{"input_ids"},
		Outputs:  []string{"logits", "loss"},
		Build: func(store *Store, cfg *HFConfig, w io.Writer) (HFModel, error) {
			c, err := BertConfigFromHF(cfg)
			if err != nil {
				return nil, err
			}
			return &bertMLMHF{m: NewBertForMaskedLM(store.Root(), c)}, nil
		},
	}},
}

// bertLegacyNames maps both older spellings (and their mix) onto HF's
// current names: gamma/beta to weight/bias, and the bert. prefix added.
var bertLegacyNames = RenameTable{Rename: []RenameRule{
	{From: "embeddings.{*}.gamma", To: "bert.embeddings.{*}.weight"},
	{From: "embeddings.{*}.beta", To: "bert.embeddings.{*}.bias"},
	{From: "encoder.{*}.gamma", To: "bert.encoder.{*}.weight"},
	{From: "encoder.{*}.beta", To: "bert.encoder.{*}.bias"},
	{From: "{*}LayerNorm.gamma", To: "{*}LayerNorm.weight"},
	{From: "{*}LayerNorm.beta", To: "{*}LayerNorm.bias"},
	{From: "embeddings.{*}", To: "bert.embeddings.{*}"},
	{From: "encoder.{*}", To: "bert.encoder.{*}"},
	{From: "pooler.{*}", To: "bert.pooler.{*}"},
}}

func init() { RegisterFamily(BertFamily) }

// BertConfigFromHF reads a BertConfig from a HF config.json, any key it
// lacks taking HF's BertConfig default, as from_pretrained does. Settings
// that would change what the model computes and that torchmods' BERT does
// not implement (relative position embeddings, a causal decoder) are
// refused, naming the key, rather than ignored.
func BertConfigFromHF(c *HFConfig) (BertConfig, error) {
	d := BertBase()
	var out BertConfig
	var err error
	ints := []struct {
		key string
		dst *int64
		def int64
	}{
		{"vocab_size", &out.VocabSize, d.VocabSize}, {"hidden_size", &out.HiddenSize, d.HiddenSize},
		{"num_hidden_layers", &out.NumHiddenLayers, d.NumHiddenLayers}, {"num_attention_heads", &out.NumAttentionHeads, d.NumAttentionHeads},
		{"intermediate_size", &out.IntermediateSize, d.IntermediateSize}, {"max_position_embeddings", &out.MaxPositionEmbeddings, d.MaxPositionEmbeddings},
		{"type_vocab_size", &out.TypeVocabSize, d.TypeVocabSize}, {"pad_token_id", &out.PadTokenID, 0},
		// UniLMv2 (s2s-ft's BertForSeq2SeqConfig, whose defaults are 0).
		{"rel_pos_bins", &out.RelPosBins, 0}, {"max_rel_pos", &out.MaxRelPos, 0},
	}
	for _, k := range ints {
		if *k.dst, err = c.Int(k.key, k.def); err != nil {
			return out, err
		}
	}
	floats := []struct {
		key string
		dst *float64
		def float64
	}{
		{"hidden_dropout_prob", &out.HiddenDropout, d.HiddenDropout}, {"attention_probs_dropout_prob", &out.AttentionDropout, d.AttentionDropout},
		{"layer_norm_eps", &out.LayerNormEps, d.LayerNormEps}, {"initializer_range", &out.InitializerRange, d.InitializerRange},
	}
	for _, k := range floats {
		if *k.dst, err = c.Float(k.key, k.def); err != nil {
			return out, err
		}
	}
	if out.HiddenAct, err = c.String("hidden_act", d.HiddenAct); err != nil {
		return out, err
	}
	if pe, err := c.String("position_embedding_type", "absolute"); err != nil {
		return out, err
	} else if pe != "absolute" {
		return out, fmt.Errorf("%s: position_embedding_type %q: only \"absolute\" is implemented", c.Path, pe)
	}
	if dec, err := c.Bool("is_decoder", false); err != nil {
		return out, err
	} else if dec {
		return out, fmt.Errorf("%s: is_decoder true (causal attention) is not implemented", c.Path)
	}
	// Cross-attention: HF's add_cross_attention (every layer), or ALBEF's
	// fusion_layer (the layers from it on) with encoder_width.
	if out.CrossAttention, err = c.Bool("add_cross_attention", false); err != nil {
		return out, err
	}
	if c.Has("fusion_layer") {
		out.CrossAttention = true
		if out.FusionLayer, err = c.Int("fusion_layer", 0); err != nil {
			return out, err
		}
	}
	if out.EncoderWidth, err = c.Int("encoder_width", 0); err != nil {
		return out, err
	}
	if out.Pruned, err = prunedFromHF(c); err != nil {
		return out, err
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("%s: %w", c.Path, err)
	}
	return out, nil
}

// HFConfig is the config.json content of the model (without model_type
// and architectures), in transformers 4.x spelling, with UniLMv2's
// rel_pos_bins and max_rel_pos when the model has the relative position
// bias (transformers' BertModel ignores them, and the bias).
func (c BertConfig) HFConfig() map[string]any {
	eps, init := c.LayerNormEps, c.InitializerRange
	if eps == 0 {
		eps = 1e-12
	}
	if init == 0 {
		init = 0.02
	}
	m := map[string]any{
		"vocab_size": c.VocabSize, "hidden_size": c.HiddenSize, "num_hidden_layers": c.NumHiddenLayers,
		"num_attention_heads": c.NumAttentionHeads, "intermediate_size": c.IntermediateSize, "hidden_act": c.HiddenAct,
		"hidden_dropout_prob": c.HiddenDropout, "attention_probs_dropout_prob": c.AttentionDropout,
		"max_position_embeddings": c.MaxPositionEmbeddings, "type_vocab_size": c.TypeVocabSize,
		"initializer_range": init, "layer_norm_eps": eps, "pad_token_id": c.PadTokenID,
		"position_embedding_type": "absolute",
	}
	if c.RelPosBins > 0 {
		m["rel_pos_bins"], m["max_rel_pos"] = c.RelPosBins, c.MaxRelPos
	}
	if c.CrossAttention {
		// ALBEF's spelling, which HF's BertModel ignores (it would need
		// add_cross_attention, and then in every layer).
		m["fusion_layer"], m["encoder_width"] = c.FusionLayer, c.ContextWidth()
	}
	if c.Pruned != nil {
		heads := map[string][]int64{}
		for l, h := range c.Pruned.Heads {
			if len(h) > 0 {
				heads[strconv.Itoa(l)] = h
			}
		}
		m["pruned_heads"] = heads
		if len(c.Pruned.Intermediate) > 0 {
			m["intermediate_sizes"] = c.Pruned.Intermediate
		}
	}
	return m
}

// jsonInt is an integer JSON value, as a config decodes it.
func jsonInt(v any) (int64, bool) {
	switch v := v.(type) {
	case json.Number:
		i, err := v.Int64()
		return i, err == nil
	case float64:
		return int64(v), v == float64(int64(v))
	}
	return 0, false
}

// prunedFromHF reads HF's pruned_heads ({"layer": [heads]}) and repro's
// intermediate_sizes; nil when neither is there (or pruned_heads is empty,
// as HF writes it for every model).
func prunedFromHF(c *HFConfig) (*BertPruned, error) {
	p := &BertPruned{Heads: map[int][]int64{}}
	if raw, ok := c.Raw("pruned_heads"); ok && raw != nil {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: pruned_heads is %s, want an object of layer: [head indices]", c.Path, jsonText(raw))
		}
		for k, v := range m {
			l, err := strconv.Atoi(k)
			list, ok := v.([]any)
			if err != nil || !ok {
				return nil, fmt.Errorf("%s: pruned_heads[%q] = %s: want a layer number and a list of head indices", c.Path, k, jsonText(v))
			}
			for _, h := range list {
				i, ok := jsonInt(h)
				if !ok {
					return nil, fmt.Errorf("%s: pruned_heads[%q] has %s, not a head index", c.Path, k, jsonText(h))
				}
				p.Heads[l] = append(p.Heads[l], i)
			}
		}
	}
	if raw, ok := c.Raw("intermediate_sizes"); ok && raw != nil {
		list, ok := raw.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: intermediate_sizes is %s, want a list of widths per layer", c.Path, jsonText(raw))
		}
		for _, v := range list {
			i, ok := jsonInt(v)
			if !ok {
				return nil, fmt.Errorf("%s: intermediate_sizes has %s, not a width", c.Path, jsonText(v))
			}
			p.Intermediate = append(p.Intermediate, i)
		}
	}
	if len(p.Heads) == 0 && len(p.Intermediate) == 0 {
		return nil, nil
	}
	return p, nil
}

// bertMLMHF is BertForMaskedLM as `repro hf run` calls it.
type bertMLMHF struct{ m *BertForMaskedLM }

// NewBertMLMForExport wraps a BertForMaskedLM for ExportHF.
func NewBertMLMForExport(m *BertForMaskedLM) HFModel { return &bertMLMHF{m: m} }

func (b *bertMLMHF) HFConfig() map[string]any { return b.m.Bert.Cfg.HFConfig() }

// Forward is BertForMaskedLM.forward: logits [B, L, V], and with labels
// (-100 = not a target) the mean cross-entropy over the targets as loss.
// Shapes and id ranges are checked first so that a bad input is an error
// naming it, not libtorch's "index out of range".
func (b *bertMLMHF) Forward(in map[string]*ts.Tensor) (map[string]*ts.Tensor, error) {
	c := b.m.Bert.Cfg
	ids := in["input_ids"]
	if err := checkTokenInputs(in, c.VocabSize, "attention_mask", "token_type_ids", "labels"); err != nil {
		return nil, err
	}
	if tt, ok := in["token_type_ids"]; ok {
		if err := idsIn("token_type_ids", tt, c.TypeVocabSize); err != nil {
			return nil, err
		}
	}
	logits := b.m.Forward(ids, in["token_type_ids"], in["attention_mask"], false)
	out := map[string]*ts.Tensor{"logits": logits}
	if labels, ok := in["labels"]; ok {
		out["loss"] = CrossEntropy(logits.MustView([]int64{-1, c.VocabSize}, false), labels.MustView([]int64{-1}, false), CEOptions{})
	}
	return out, nil
}

// idsIn checks that every id is in [0, n).
// checkTokenInputs checks HF-style inputs before they reach libtorch:
// input_ids is [batch, length] with ids below vocab, and each of the named
// inputs present has its shape.
func checkTokenInputs(in map[string]*ts.Tensor, vocab int64, sameShape ...string) error {
	ids := in["input_ids"]
	s := ids.MustSize()
	if len(s) != 2 {
		return fmt.Errorf("input_ids has shape %v, want [batch, length]", s)
	}
	if err := idsIn("input_ids", ids, vocab); err != nil {
		return err
	}
	for _, n := range sameShape {
		if x, ok := in[n]; ok && !equalShape(x.MustSize(), s) {
			return fmt.Errorf("%s has shape %v, input_ids %v", n, x.MustSize(), s)
		}
	}
	return nil
}

func idsIn(name string, x *ts.Tensor, n int64) error {
	if x.Numel() == 0 {
		return nil
	}
	lo, hi := x.MustMin(false).Int64Values()[0], x.MustMax(false).Int64Values()[0]
	if lo < 0 || hi >= n {
		return fmt.Errorf("%s has ids in [%d, %d], outside [0, %d)", name, lo, hi, n)
	}
	return nil
}
