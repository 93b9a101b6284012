package torchmods

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The BERT of testdata/hf_bert_mlm/config.json as transformers 4.x writes
// it, and as a 5.x-era file may: dtype for torch_dtype, defaults left out,
// null for "the default".
const (
	bert4x = `{"architectures": ["BertForMaskedLM"], "model_type": "bert", "transformers_version": "4.46.0",
		"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
		"hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 16,
		"type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
		"position_embedding_type": "absolute", "torch_dtype": "float32"}`
	bert5x = `{"architectures": ["BertForMaskedLM"], "model_type": "bert", "transformers_version": "5.0.0",
		"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
		"max_position_embeddings": 16, "pad_token_id": null, "dtype": "float32"}`
	// Other families' attribute_map spellings of the same keys.
	bertAliases = `{"model_type": "bert", "vocab_size": 50, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": 64,
		"n_positions": 16, "layer_norm_epsilon": 1e-12, "activation_function": "gelu"}`
)

func TestHFConfigReadsBothSpellings(t *testing.T) {
	var cfgs []BertConfig
	for name, js := range map[string]string{"4x.json": bert4x, "5x.json": bert5x, "aliases.json": bertAliases} {
		c, err := ParseHFConfig(name, []byte(js))
		require.NoError(t, err, name)
		assert.Equal(t, "bert", c.ModelType)
		b, err := BertConfigFromHF(c)
		require.NoError(t, err, name)
		cfgs = append(cfgs, b)
		dtype, err := c.String("torch_dtype", "float32")
		require.NoError(t, err)
		assert.Equal(t, "float32", dtype, name)
		if name == "aliases.json" {
			assert.Equal(t, []string{"hidden_act as activation_function", "hidden_size as n_embd", "intermediate_size as n_inner",
				"layer_norm_eps as layer_norm_epsilon", "max_position_embeddings as n_positions", "num_attention_heads as n_head",
				"num_hidden_layers as n_layer"}, c.Spellings(), "the report says which spelling was read")
		}
	}
	want := BertConfig{VocabSize: 50, HiddenSize: 32, NumHiddenLayers: 2, NumAttentionHeads: 4, IntermediateSize: 64, HiddenAct: "gelu",
		HiddenDropout: 0.1, AttentionDropout: 0.1, MaxPositionEmbeddings: 16, TypeVocabSize: 2, InitializerRange: 0.02, LayerNormEps: 1e-12}
	for _, c := range cfgs {
		assert.Equal(t, want, c)
	}

	// The exporter writes what the reader reads back.
	c, err := ParseHFConfig("x", []byte(bert4x))
	require.NoError(t, err)
	assert.Equal(t, []string{"BertForMaskedLM"}, c.Architectures)
	assert.Equal(t, "4.46.0", c.Version)
}

// RoPE's settings moved in transformers 5: rope_theta and rope_scaling
// became one rope_parameters object.
func TestHFConfigRope(t *testing.T) {
	for name, js := range map[string]string{
		"4.x":        `{"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}}`,
		"4.x (type)": `{"rope_theta": 500000.0, "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}}`,
		"5.x":        `{"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0}}`,
	} {
		c, err := ParseHFConfig(name, []byte(js))
		require.NoError(t, err)
		r, err := c.Rope(10000)
		require.NoError(t, err, name)
		assert.Equal(t, Rope{Type: "llama3", Theta: 500000, Params: map[string]float64{"factor": 8, "low_freq_factor": 1}}, r, name)
	}
	for name, js := range map[string]string{
		"4.x":  `{"rope_theta": 1000000.0, "rope_scaling": null}`,
		"5.x":  `{"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}`,
		"none": `{}`,
	} {
		c, err := ParseHFConfig(name, []byte(js))
		require.NoError(t, err)
		r, err := c.Rope(1000000)
		require.NoError(t, err, name)
		assert.Equal(t, Rope{Type: "default", Theta: 1000000, Params: map[string]float64{}}, r, name)
	}
}

func TestHFConfigErrorsNameFileAndKey(t *testing.T) {
	_, err := ParseHFConfig("dir/config.json", []byte(`{"vocab_size": 50,`))
	assert.ErrorContains(t, err, "dir/config.json: not a JSON object")
	_, err = ParseHFConfig("dir/config.json", []byte(`{"architectures": "BertForMaskedLM"}`))
	assert.ErrorContains(t, err, `dir/config.json: architectures is "BertForMaskedLM", want a list`)
	for js, msg := range map[string]string{
		`{"num_attention_heads": "4"}`:                `dir/config.json: num_attention_heads is "4", want an integer`,
		`{"n_head": 4.5}`:                             `dir/config.json: n_head is 4.5, want an integer`,
		`{"layer_norm_eps": true}`:                    `dir/config.json: layer_norm_eps is true, want a number`,
		`{"position_embedding_type": "relative_key"}`: `position_embedding_type "relative_key": only "absolute" is implemented`,
		`{"is_decoder": true}`:                        `is_decoder true (causal attention) is not implemented`,
		`{"hidden_act": "swish"}`:                     `hidden_act "swish" is not supported`,
		`{"hidden_size": 30}`:                         `hidden_size 30 is not a multiple of num_attention_heads 12`,
	} {
		c, err := ParseHFConfig("dir/config.json", []byte(js))
		require.NoError(t, err)
		_, err = BertConfigFromHF(c)
		assert.ErrorContains(t, err, msg, js)
	}
	c, err := ParseHFConfig("x", []byte(`{"hidden_size": 768.0}`))
	require.NoError(t, err)
	n, err := c.Int("hidden_size", 0)
	require.NoError(t, err)
	assert.Equal(t, int64(768), n, "a float with an integer value is an integer")
}
