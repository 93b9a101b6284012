package torchmods

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The fixture folders gen_llama.py writes, by the case names of
// llama_parity.safetensors.
var llamaFolders = map[string]string{
	"gqa":     "testdata/llama_gqa",
	"tied":    "testdata/llama_tied_sharded",
	"mistral": "testdata/llama_mistral",
}

// openLlama loads a fixture folder onto the CPU; the store is dropped at
// the end of the test.
func openLlama(t *testing.T, dir, dtype string) (*LoadedLlama, string) {
	t.Helper()
	var report bytes.Buffer
	l, err := OpenLlama(dir, LlamaLoadOptions{DType: dtype, Device: gotch.CPU}, &report)
	require.NoError(t, err, report.String())
	t.Cleanup(l.Store.Drop)
	return l, report.String()
}

// Logits, loss and the gradient of every parameter match PyTorch's
// transcription of HF's forward (gen_llama.py) within 1e-5, for a left-
// padded batch with HF generate's position ids: grouped-query attention
// with a head_dim that is not width/heads (4.x config), tied embeddings
// with linear RoPE scaling loaded from two shards (5.x config), and
// Mistral's sliding window.
func TestLlamaParity(t *testing.T) {
	ref := loadRef(t, "llama_parity.safetensors")
	for c, dir := range llamaFolders {
		t.Run(c, func(t *testing.T) {
			s := ts.NewScope()
			defer s.Close()
			l, _ := openLlama(t, dir, "")
			m := l.Model
			logits := m.Forward(LlamaInput{IDs: ref[c+".input_ids"], Mask: ref[c+".attention_mask"], Positions: ref[c+".position_ids"]}, true)
			testutil.Close(t, logits, ref[c+".logits"], 1e-5, "%s logits", c)
			loss := LlamaLoss(logits, ref[c+".labels"])
			testutil.Close(t, loss, ref[c+".loss"], 1e-5, "%s loss", c)
			require.NoError(t, loss.Backward())
			n := testutil.Parity(t, grads(l.Store), testutil.Sub(ref, c+".grad."), 1e-5, "%s grad", c)
			assert.Equal(t, len(l.Store.Params()), n, "every parameter's gradient compared")
		})
	}
}

// `repro hf run`'s path (OpenHF, Run) on the fixture folders: HF's forward
// on their inputs.safetensors gives their outputs.safetensors.
func TestLlamaHFRunMatchesFixtures(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, report := runHFFolder(t, "testdata/llama_gqa", "testdata/llama_gqa")
	assert.Equal(t, "LlamaForCausalLM", m.Architecture.Name)
	assert.Contains(t, report, "LlamaForCausalLM, 2 layers of width 64, 4 heads of 24 over 2 key/value heads")
	assert.Contains(t, report, "(safetensors, transformers names): loaded 21 tensors")
	m, report = runHFFolder(t, "testdata/llama_tied_sharded", "testdata/llama_tied_sharded")
	assert.Contains(t, report, "(safetensors (sharded), transformers names): loaded 20 tensors")
	assert.Contains(t, report, "keys read under other spellings: rope_scaling as rope_parameters, rope_theta as rope_parameters.rope_theta, torch_dtype as dtype")
	m, report = runHFFolder(t, "testdata/llama_mistral", "testdata/llama_mistral")
	assert.Equal(t, "MistralForCausalLM", m.Architecture.Name)
	assert.Contains(t, report, "sliding window 3")

	_, err := m.Run(map[string]*ts.Tensor{"input_ids": FromSlice([]int64{3, 97}, []int64{1, 2}, gotch.CPU)})
	assert.ErrorContains(t, err, "input_ids has ids in [3, 97], outside [0, 97)")
	_, err = m.Run(map[string]*ts.Tensor{"input_ids": FromSlice([]int64{3, 4}, []int64{1, 2}, gotch.CPU),
		"labels": FromSlice([]int64{-100, 97}, []int64{1, 2}, gotch.CPU)})
	assert.ErrorContains(t, err, "labels hold ids outside [0, 97) other than -100")
	_, err = m.Run(map[string]*ts.Tensor{"input_ids": FromSlice([]int64{3, 4}, []int64{1, 2}, gotch.CPU),
		"position_ids": FromSlice([]int64{0, 1, 2}, []int64{1, 3}, gotch.CPU)})
	assert.ErrorContains(t, err, "position_ids has shape [1 3], input_ids [1 2]")
}

// writeFolder copies a fixture folder's config.json and writes tensors as
// its model.safetensors.
func writeFolder(t *testing.T, from string, tensors []safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(from, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644))
	require.NoError(t, safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}))
	return dir
}

// Loading reports what it loaded, dropped and did not expect, and refuses
// a file that lacks a parameter, naming it; older spellings load.
func TestLlamaLoadReport(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	w, err := ReadWeights("testdata/llama_tied_sharded/model.safetensors.index.json")
	require.NoError(t, err)
	require.Len(t, w.Tensors, 20)

	// A tied model's file with the tied copy and pre-4.31 rotary buffers.
	extra := append([]safetensors.Tensor{}, w.Tensors...)
	emb := extra[0]
	for _, x := range extra {
		if x.Name == "model.embed_tokens.weight" {
			emb = x
		}
	}
	require.Equal(t, "model.embed_tokens.weight", emb.Name)
	head := emb
	head.Name = "lm_head.weight"
	inv := safetensors.Tensor{Name: "model.layers.1.self_attn.rotary_emb.inv_freq", DType: "F32", Shape: []int64{8}, Data: make([]byte, 32)}
	extra = append(extra, head, inv)
	_, report := openLlama(t, writeFolder(t, "testdata/llama_tied_sharded", extra), "")
	assert.Contains(t, report, "loaded 20 tensors; unexpected (1): lm_head.weight; dropped as tied copies or buffers: model.layers.1.self_attn.rotary_emb.inv_freq")
	_, err = OpenLlama(writeFolder(t, "testdata/llama_tied_sharded", extra), LlamaLoadOptions{Device: gotch.CPU, Strict: true}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "tensors the model does not have: lm_head.weight")

	// LlamaModel's names, without the model. prefix.
	var bare []safetensors.Tensor
	for _, x := range w.Tensors {
		x.Name = strings.TrimPrefix(x.Name, "model.")
		bare = append(bare, x)
	}
	_, report = openLlama(t, writeFolder(t, "testdata/llama_tied_sharded", bare), "")
	assert.Contains(t, report, "LlamaModel (no model. prefix) names): loaded 20 tensors")

	var missing []safetensors.Tensor
	for _, x := range w.Tensors {
		if x.Name != "model.layers.1.mlp.up_proj.weight" {
			missing = append(missing, x)
		}
	}
	_, err = OpenLlama(writeFolder(t, "testdata/llama_tied_sharded", missing), LlamaLoadOptions{Device: gotch.CPU}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "the model needs tensors the file lacks: model.layers.1.mlp.up_proj.weight")

	// Stop tokens: generation_config.json's eos_token_id over config.json's.
	l, _ := openLlama(t, "testdata/llama_tied_sharded", "")
	assert.Equal(t, []int64{2, 3}, l.EOS)
	dir := writeFolder(t, "testdata/llama_tied_sharded", w.Tensors)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": [7, 9], "do_sample": true}`), 0o644))
	l, _ = openLlama(t, dir, "")
	assert.Equal(t, []int64{7, 9}, l.EOS)

	_, err = OpenLlama("testdata/hf_bert_mlm", LlamaLoadOptions{Device: gotch.CPU}, &bytes.Buffer{})
	assert.ErrorContains(t, err, `model_type "bert" is not a Llama-family decoder`)
	_, err = OpenLlama("testdata/llama_gqa", LlamaLoadOptions{Device: gotch.CPU, DType: "int8"}, &bytes.Buffer{})
	assert.ErrorContains(t, err, `testdata/llama_gqa/config.json: dtype "int8": want float32, bfloat16 or float16`)
}

// Parameters are stored in the dtype asked for; bfloat16 computes in
// bfloat16, float16 on the CPU in float32, both close to float32's logits.
func TestLlamaHalfPrecision(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "llama_parity.safetensors")
	in := LlamaInput{IDs: ref["gqa.input_ids"], Mask: ref["gqa.attention_mask"], Positions: ref["gqa.position_ids"]}
	for _, c := range []struct {
		dtype          string
		param, compute gotch.DType
		tol            float64
	}{{"auto", gotch.Float, gotch.Float, 1e-5}, {"bfloat16", gotch.BFloat16, gotch.BFloat16, 5e-2}, {"float16", gotch.Half, gotch.Float, 5e-3}} {
		l, report := openLlama(t, "testdata/llama_gqa", c.dtype)
		assert.Contains(t, report, "parameters "+c.param.String()+", computing in "+c.compute.String(), c.dtype)
		for _, p := range l.Store.Params() {
			require.Equal(t, c.param, p.Tensor.DType(), "%s %s", c.dtype, p.Name)
		}
		assert.Equal(t, c.compute, l.Model.ComputeDType())
		var logits *ts.Tensor
		ts.NoGrad(func() { logits = l.Model.Forward(in, false) })
		assert.Equal(t, c.compute, logits.DType())
		testutil.Close(t, logits.MustTotype(gotch.Float, false), ref["gqa.logits"], c.tol, c.dtype)
	}
}

// RoPE's frequencies are HF's: Llama 3.1's scaling, at two head sizes, and
// linear scaling (default / factor).
func TestLlamaRopeFrequencies(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "llama_parity.safetensors")
	r := LlamaRope{Type: "llama3", Theta: 500000, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}
	for _, dim := range []int64{24, 128} {
		testutil.Close(t, llamaInvFreq(r, dim), ref["rope.llama3.inv_freq_"+map[int64]string{24: "24", 128: "128"}[dim]], 1e-6, "llama3 %d", dim)
	}
	def := llamaInvFreq(LlamaRope{Type: "default", Theta: 10000}, 16)
	lin := llamaInvFreq(LlamaRope{Type: "linear", Theta: 10000, Factor: 2}, 16)
	testutil.Close(t, lin, def.MustDivScalar(ts.FloatScalar(2), false), 1e-7)
}

// The config reader takes transformers 4.x and 5.x files alike, with HF's
// defaults for what they leave out, and refuses what is not implemented,
// naming the key and its value.
func TestLlamaConfigFromHF(t *testing.T) {
	parse := func(js string) (LlamaConfig, error) {
		c, err := ParseHFConfig("dir/config.json", []byte(js))
		require.NoError(t, err)
		return LlamaConfigFromHF(c)
	}
	v4, err := parse(`{"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
		"rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 8192, "rope_type": "llama3"}, "max_position_embeddings": 131072,
		"tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
		"torch_dtype": "bfloat16"}`)
	require.NoError(t, err)
	v5, err := parse(`{"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
		"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
		"high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "max_position_embeddings": 131072,
		"tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
		"dtype": "bfloat16", "pad_token_id": null}`)
	require.NoError(t, err)
	want := LlamaConfig{ModelType: "llama", VocabSize: 97, HiddenSize: 64, IntermediateSize: 96, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, RMSNormEps: 1e-5,
		Rope:                  LlamaRope{Type: "llama3", Theta: 500000, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192},
		MaxPositionEmbeddings: 131072, TieWordEmbeddings: true, InitializerRange: 0.02, BOSTokenID: 128000, PadTokenID: -1,
		EOSTokenIDs: []int64{128001, 128008, 128009}, TorchDType: "bfloat16"}
	assert.Equal(t, want, v4)
	assert.Equal(t, want, v5)

	// HF's class defaults; Mistral's sliding window: absent is 4096, null none.
	d, err := parse(`{"model_type": "llama"}`)
	require.NoError(t, err)
	def := llamaDefaults("llama")
	def.NumKeyValueHeads, def.HeadDim = 32, 128 // the heads, and hidden_size / heads
	assert.Equal(t, def, d)
	m, err := parse(`{"model_type": "mistral", "eos_token_id": 2}`)
	require.NoError(t, err)
	assert.Equal(t, int64(4096), m.SlidingWindow)
	assert.Equal(t, int64(8), m.NumKeyValueHeads)
	assert.Equal(t, []int64{2}, m.EOSTokenIDs)
	m, err = parse(`{"model_type": "mistral", "sliding_window": null, "head_dim": 128, "hidden_size": 5120}`)
	require.NoError(t, err)
	assert.Equal(t, int64(0), m.SlidingWindow)
	assert.Equal(t, int64(128), m.HeadDim)
	m, err = parse(`{"model_type": "mistral", "num_key_value_heads": null, "attention_bias": true}`)
	require.NoError(t, err)
	assert.Equal(t, int64(32), m.NumKeyValueHeads, "null is the heads, not Mistral's default 8")
	assert.False(t, m.AttentionBias, "MistralConfig has no attention_bias")
	lin, err := parse(`{"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 4.0}}`)
	require.NoError(t, err)
	assert.Equal(t, LlamaRope{Type: "linear", Theta: 10000, Factor: 4}, lin.Rope)

	for js, msg := range map[string]string{
		`{"model_type": "llama", "rope_scaling": {"type": "yarn", "factor": 4.0}}`:                       `dir/config.json: rope_scaling.type "yarn" is not supported`,
		`{"model_type": "llama", "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}`:               `dir/config.json: rope_scaling.rope_type "dynamic" is not supported`,
		`{"model_type": "llama", "rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}}`:       `dir/config.json: rope_parameters.rope_type "longrope" is not supported`,
		`{"model_type": "llama", "rope_scaling": {"rope_type": "linear"}}`:                               `dir/config.json: rope_scaling.factor is missing or not a number; rope type "linear" needs factor`,
		`{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}`:                `rope_scaling.low_freq_factor is missing`,
		`{"model_type": "llama", "hidden_act": "gelu"}`:                                                  `dir/config.json: hidden_act "gelu" is not supported`,
		`{"model_type": "llama", "partial_rotary_factor": 0.5}`:                                          `partial_rotary_factor 0.5 is not supported`,
		`{"model_type": "llama", "num_key_value_heads": 5}`:                                              `num_attention_heads 32 is not a multiple of num_key_value_heads 5`,
		`{"model_type": "llama", "eos_token_id": "eos"}`:                                                 `dir/config.json: eos_token_id is "eos", want a token id or a list of them`,
		`{"model_type": "llama", "vocab_size": 10, "pad_token_id": 10}`:                                  `pad_token_id 10 outside the vocabulary of 10`,
		`{"model_type": "llama", "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "head_dim": 7}`: `head_dim 7 is odd`,
	} {
		_, err := parse(js)
		assert.ErrorContains(t, err, msg, js)
	}
}

// A model exported with ExportHF reopens with the same config and
// parameters, and computes the same logits.
func TestLlamaExportRoundTrip(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	for _, dir := range []string{"testdata/llama_tied_sharded", "testdata/llama_mistral"} {
		l, _ := openLlama(t, dir, "")
		out := filepath.Join(t.TempDir(), "export")
		fam := LlamaFamily
		if l.Model.Cfg.ModelType == "mistral" {
			fam = MistralFamily
		}
		require.NoError(t, ExportHF(out, l.Store, fam, l.Model.Cfg.Class(), NewLlamaForExport(l.Model)))
		back, _ := openLlama(t, out, "")
		assert.Equal(t, l.Model.Cfg, back.Model.Cfg, dir)
		requireSameParams(t, l.Store, back.Store)
	}
}
