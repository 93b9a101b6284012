package torchmods

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
)

// LlamaConfig is HF's LlamaConfig or MistralConfig (config.json): the keys
// that the Llama-family decoder reads. Mistral is Llama's network with a
// sliding-window mask; the two share this type so that one model serves
// both.
type LlamaConfig struct {
	ModelType             string // "llama" or "mistral"
	VocabSize             int64
	HiddenSize            int64
	IntermediateSize      int64
	NumHiddenLayers       int64
	NumAttentionHeads     int64
	NumKeyValueHeads      int64 // fewer than the heads: grouped-query attention
	HeadDim               int64 // config.json's head_dim, else hidden_size / heads
	RMSNormEps            float64
	Rope                  LlamaRope
	MaxPositionEmbeddings int64 // informative: RoPE itself has no limit, and neither has HF's forward
	TieWordEmbeddings     bool  // lm_head is embed_tokens' weight
	AttentionBias         bool  // biases on q/k/v/o_proj (llama's attention_bias)
	MLPBias               bool  // biases on gate/up/down_proj (llama's mlp_bias)
	AttentionDropout      float64
	// SlidingWindow, when positive, masks keys that many positions or more
	// behind the query (Mistral's sliding_window); 0 means none.
	SlidingWindow    int64
	InitializerRange float64
	BOSTokenID       int64   // -1 when config.json names none
	PadTokenID       int64   // -1 when none; else embed_tokens' padding_idx, as in HF
	EOSTokenIDs      []int64 // eos_token_id, one id or a list (Llama 3 has several)
	TorchDType       string  // torch_dtype (dtype in 5.x): "float32", "bfloat16", ...; "" when absent
}

// LlamaRope is the rotary position embedding of a Llama-family config:
// rope_theta and rope_scaling in transformers 4.x, rope_parameters in 5.x.
type LlamaRope struct {
	Type  string  // "default", "linear" or "llama3" (rope_type, or type in older files)
	Theta float64 // rope_theta, the base
	// Factor divides the frequencies ("linear") or the low ones ("llama3").
	Factor float64
	// Llama 3.1's low_freq_factor, high_freq_factor and
	// original_max_position_embeddings ("llama3" only).
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          int64
}

// llamaRopeTypes are the rope types implemented, with the keys each needs
// beside rope_type.
var llamaRopeTypes = map[string][]string{
	"default": nil,
	"linear":  {"factor"},
	"llama3":  {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
}

// llamaDefaults are HF's class defaults (LlamaConfig, MistralConfig), which
// from_pretrained gives the keys a config.json leaves out.
func llamaDefaults(modelType string) LlamaConfig {
	c := LlamaConfig{ModelType: modelType, VocabSize: 32000, HiddenSize: 4096, IntermediateSize: 11008, NumHiddenLayers: 32,
		NumAttentionHeads: 32, RMSNormEps: 1e-6, MaxPositionEmbeddings: 2048, InitializerRange: 0.02,
		BOSTokenID: 1, PadTokenID: -1, EOSTokenIDs: []int64{2}, Rope: LlamaRope{Type: "default", Theta: 10000}}
	if modelType == "mistral" {
		c.IntermediateSize, c.NumKeyValueHeads, c.MaxPositionEmbeddings, c.SlidingWindow = 14336, 8, 4096*32, 4096
	}
	return c
}

// ReadLlamaConfig reads a llama or mistral config.json (LlamaConfigFromHF).
func ReadLlamaConfig(path string) (LlamaConfig, error) {
	c, err := ReadHFConfig(path)
	if err != nil {
		return LlamaConfig{}, err
	}
	return LlamaConfigFromHF(c)
}

// LlamaConfigFromHF reads a LlamaConfig from a HF config.json of
// model_type "llama" or "mistral", in transformers 4.x or 5.x spelling,
// any key it lacks taking HF's class default. Settings that would change
// what the model computes and that are not implemented (other RoPE types,
// partial rotary, another activation) are refused with an error naming
// the key and its value, rather than ignored.
func LlamaConfigFromHF(c *HFConfig) (LlamaConfig, error) {
	if c.ModelType != "llama" && c.ModelType != "mistral" {
		return LlamaConfig{}, fmt.Errorf("%s: model_type %q, want \"llama\" or \"mistral\"", c.Path, c.ModelType)
	}
	out := llamaDefaults(c.ModelType)
	var err error
	ints := []struct {
		key string
		dst *int64
	}{
		{"vocab_size", &out.VocabSize}, {"hidden_size", &out.HiddenSize}, {"intermediate_size", &out.IntermediateSize},
		{"num_hidden_layers", &out.NumHiddenLayers}, {"num_attention_heads", &out.NumAttentionHeads},
		{"max_position_embeddings", &out.MaxPositionEmbeddings},
	}
	for _, k := range ints {
		if *k.dst, err = c.Int(k.key, *k.dst); err != nil {
			return out, err
		}
	}
	// num_key_value_heads and head_dim default to values derived from
	// others, as HF's __init__ derives them (null included).
	if v, ok := c.Raw("num_key_value_heads"); ok && v == nil {
		out.NumKeyValueHeads = 0 // null: the heads, even where the class default is not (Mistral's 8)
	} else if out.NumKeyValueHeads, err = c.Int("num_key_value_heads", out.NumKeyValueHeads); err != nil {
		return out, err
	}
	if out.NumKeyValueHeads == 0 {
		out.NumKeyValueHeads = out.NumAttentionHeads
	}
	if out.HeadDim, err = c.Int("head_dim", 0); err != nil {
		return out, err
	}
	if out.HeadDim == 0 && out.NumAttentionHeads > 0 {
		out.HeadDim = out.HiddenSize / out.NumAttentionHeads
	}
	if out.RMSNormEps, err = c.Float("rms_norm_eps", out.RMSNormEps); err != nil {
		return out, err
	}
	if out.InitializerRange, err = c.Float("initializer_range", out.InitializerRange); err != nil {
		return out, err
	}
	if out.AttentionDropout, err = c.Float("attention_dropout", 0); err != nil {
		return out, err
	}
	type flag struct {
		key string
		dst *bool
	}
	bools := []flag{{"tie_word_embeddings", &out.TieWordEmbeddings}}
	if c.ModelType == "llama" { // MistralConfig has no biases
		bools = append(bools, flag{"attention_bias", &out.AttentionBias}, flag{"mlp_bias", &out.MLPBias})
	}
	for _, b := range bools {
		if *b.dst, err = c.Bool(b.key, *b.dst); err != nil {
			return out, err
		}
	}
	if c.ModelType == "mistral" {
		// null means no window (Mistral v0.2 and later); absent means the
		// class default, 4096. HFConfig's readers take null for absent, so
		// the raw value decides.
		if v, ok := c.Raw("sliding_window"); ok && v == nil {
			out.SlidingWindow = 0
		} else if out.SlidingWindow, err = c.Int("sliding_window", out.SlidingWindow); err != nil {
			return out, err
		}
	}
	act, err := c.String("hidden_act", "silu")
	if err != nil {
		return out, err
	}
	if act != "silu" && act != "swish" {
		return out, fmt.Errorf("%s: hidden_act %q is not supported: the Llama MLP here is SwiGLU (silu)", c.Path, act)
	}
	if f, err := c.Float("partial_rotary_factor", 1); err != nil {
		return out, err
	} else if f != 1 {
		return out, fmt.Errorf("%s: partial_rotary_factor %v is not supported: RoPE here rotates the whole head", c.Path, f)
	}
	if out.Rope, err = llamaRope(c); err != nil {
		return out, err
	}
	if out.TorchDType, err = c.String("torch_dtype", ""); err != nil {
		return out, err
	}
	if out.BOSTokenID, err = tokenID(c, "bos_token_id", out.BOSTokenID); err != nil {
		return out, err
	}
	if out.PadTokenID, err = tokenID(c, "pad_token_id", -1); err != nil {
		return out, err
	}
	if out.EOSTokenIDs, err = tokenIDs(c, "eos_token_id", out.EOSTokenIDs); err != nil {
		return out, err
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("%s: %w", c.Path, err)
	}
	return out, nil
}

// llamaRope reads RoPE's settings. The type is rope_type, or type in
// files older than transformers 4.43 (rope_type wins when both are there,
// as in HF); the error for a type not implemented names the key it was
// read from and the value.
func llamaRope(c *HFConfig) (LlamaRope, error) {
	r, err := c.Rope(10000)
	if err != nil {
		return LlamaRope{}, err
	}
	out := LlamaRope{Type: "default", Theta: r.Theta}
	v, name, ok := c.lookup("rope_scaling")
	if !ok {
		return out, nil
	}
	m := v.(map[string]any) // c.Rope has checked that it is an object
	typeKey := "rope_type"
	t, ok := m[typeKey]
	if !ok {
		typeKey = "type"
		t = m[typeKey]
	}
	if t != nil {
		s, ok := t.(string)
		if !ok {
			return out, fmt.Errorf("%s: %s.%s is %s, want a string", c.Path, name, typeKey, jsonText(t))
		}
		out.Type = s
	}
	need, ok := llamaRopeTypes[out.Type]
	if !ok {
		return out, fmt.Errorf("%s: %s.%s %q is not supported: RoPE types implemented here are default, linear and llama3", c.Path, name, typeKey, out.Type)
	}
	for _, k := range need {
		if _, ok := r.Params[k]; !ok {
			return out, fmt.Errorf("%s: %s.%s is missing or not a number; rope type %q needs %s", c.Path, name, k, out.Type, strings.Join(need, ", "))
		}
	}
	out.Factor = r.Params["factor"]
	out.LowFreqFactor, out.HighFreqFactor = r.Params["low_freq_factor"], r.Params["high_freq_factor"]
	out.OriginalMaxPositions = int64(r.Params["original_max_position_embeddings"])
	if out.Type != "default" && out.Factor <= 0 {
		return out, fmt.Errorf("%s: %s.factor is %v, want a positive number", c.Path, name, out.Factor)
	}
	if out.Type == "llama3" && (out.HighFreqFactor <= out.LowFreqFactor || out.OriginalMaxPositions <= 0) {
		return out, fmt.Errorf("%s: %s: llama3 needs high_freq_factor > low_freq_factor and a positive original_max_position_embeddings", c.Path, name)
	}
	return out, nil
}

// tokenID reads a token id key: an integer, def when absent, -1 (none)
// when null, as HF's None.
func tokenID(c *HFConfig, key string, def int64) (int64, error) {
	if v, ok := c.Raw(key); ok && v == nil {
		return -1, nil
	}
	return c.Int(key, def)
}

// tokenIDs reads eos_token_id: one integer or a list of them (Llama 3's
// [128001, 128008, 128009]); null means none.
func tokenIDs(c *HFConfig, key string, def []int64) ([]int64, error) {
	v, ok := c.Raw(key)
	if !ok {
		return def, nil
	}
	if v == nil {
		return nil, nil
	}
	list, isList := v.([]any)
	if !isList {
		list = []any{v}
	}
	var out []int64
	for _, x := range list {
		n, ok := x.(json.Number)
		var id int64
		var err error
		if ok {
			id, err = n.Int64()
		}
		if !ok || err != nil {
			return nil, fmt.Errorf("%s: %s is %s, want a token id or a list of them", c.Path, key, jsonText(v))
		}
		out = append(out, id)
	}
	return out, nil
}

// Validate checks that the sizes fit together and the token ids are in
// the vocabulary.
func (c LlamaConfig) Validate() error {
	switch {
	case c.VocabSize <= 0 || c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumHiddenLayers <= 0 || c.NumAttentionHeads <= 0 || c.HeadDim <= 0:
		return fmt.Errorf("%s: vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and head_dim must be positive", c.ModelType)
	case c.NumKeyValueHeads <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return fmt.Errorf("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", c.ModelType, c.NumAttentionHeads, c.NumKeyValueHeads)
	case c.HeadDim%2 != 0:
		return fmt.Errorf("%s: head_dim %d is odd; RoPE rotates half of each head", c.ModelType, c.HeadDim)
	case c.RMSNormEps <= 0:
		return fmt.Errorf("%s: rms_norm_eps %v, want a positive number", c.ModelType, c.RMSNormEps)
	case c.Rope.Theta <= 0:
		return fmt.Errorf("%s: rope_theta %v, want a positive number", c.ModelType, c.Rope.Theta)
	case c.SlidingWindow < 0:
		return fmt.Errorf("%s: sliding_window %d is negative", c.ModelType, c.SlidingWindow)
	case c.PadTokenID >= c.VocabSize || c.PadTokenID < -1:
		return fmt.Errorf("%s: pad_token_id %d outside the vocabulary of %d", c.ModelType, c.PadTokenID, c.VocabSize)
	}
	if _, ok := llamaRopeTypes[c.Rope.Type]; !ok {
		return fmt.Errorf("%s: rope type %q is not implemented (default, linear, llama3)", c.ModelType, c.Rope.Type)
	}
	return nil
}

// Class is the HF class of the config's model_type: LlamaForCausalLM or
// MistralForCausalLM.
func (c LlamaConfig) Class() string {
	if c.ModelType == "mistral" {
		return "MistralForCausalLM"
	}
	return "LlamaForCausalLM"
}

// HFConfig is the config.json content of the model (without model_type
// and architectures), in transformers 4.x spelling, which 5.x reads too.
func (c LlamaConfig) HFConfig() map[string]any {
	out := map[string]any{
		"vocab_size": c.VocabSize, "hidden_size": c.HiddenSize, "intermediate_size": c.IntermediateSize,
		"num_hidden_layers": c.NumHiddenLayers, "num_attention_heads": c.NumAttentionHeads,
		"num_key_value_heads": c.NumKeyValueHeads, "head_dim": c.HeadDim, "hidden_act": "silu",
		"max_position_embeddings": c.MaxPositionEmbeddings, "initializer_range": c.InitializerRange,
		"rms_norm_eps": c.RMSNormEps, "rope_theta": c.Rope.Theta, "tie_word_embeddings": c.TieWordEmbeddings,
		"attention_dropout": c.AttentionDropout, "bos_token_id": nullID(c.BOSTokenID), "pad_token_id": nullID(c.PadTokenID),
		"rope_scaling": nil,
	}
	switch c.Rope.Type {
	case "linear":
		out["rope_scaling"] = map[string]any{"rope_type": "linear", "factor": c.Rope.Factor}
	case "llama3":
		out["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": c.Rope.Factor, "low_freq_factor": c.Rope.LowFreqFactor,
			"high_freq_factor": c.Rope.HighFreqFactor, "original_max_position_embeddings": c.Rope.OriginalMaxPositions}
	}
	switch len(c.EOSTokenIDs) {
	case 0:
		out["eos_token_id"] = nil
	case 1:
		out["eos_token_id"] = c.EOSTokenIDs[0]
	default:
		out["eos_token_id"] = c.EOSTokenIDs
	}
	if c.ModelType == "mistral" {
		out["sliding_window"] = nil
		if c.SlidingWindow > 0 {
			out["sliding_window"] = c.SlidingWindow
		}
	} else {
		out["attention_bias"], out["mlp_bias"] = c.AttentionBias, c.MLPBias
	}
	return out
}

func nullID(id int64) any {
	if id < 0 {
		return nil
	}
	return id
}

// ParseLlamaDType maps a torch_dtype name ("float32", "bfloat16",
// "float16", and their torch.* spellings) to the parameters' dtype.
func ParseLlamaDType(name string) (gotch.DType, error) {
	switch strings.TrimPrefix(name, "torch.") {
	case "", "float32", "float":
		return gotch.Float, nil
	case "bfloat16":
		return gotch.BFloat16, nil
	case "float16", "half":
		return gotch.Half, nil
	}
	return gotch.Float, fmt.Errorf("dtype %q: want float32, bfloat16 or float16", name)
}
