package torchmods

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// runHFFolder opens a fixture folder written by a gen_hf_*.py script, runs
// the inputs.safetensors of io (a folder with the same model) and compares
// every output with its outputs.safetensors: floats within 1e-5
// (relative), integers exactly.
func runHFFolder(t *testing.T, dir, io string) (*OpenedHF, string) {
	t.Helper()
	store := NewStore(gotch.CPU)
	t.Cleanup(store.Drop)
	var report bytes.Buffer
	m, err := OpenHF(dir, store, &report)
	require.NoError(t, err, report.String())
	in, err := LoadWeights(filepath.Join(io, "inputs.safetensors"), gotch.CPU)
	require.NoError(t, err)
	want, err := LoadWeights(filepath.Join(io, "outputs.safetensors"), gotch.CPU)
	require.NoError(t, err)
	got, err := m.Run(in)
	require.NoError(t, err)
	for name, w := range want {
		g, ok := got[name]
		require.True(t, ok, "output %s", name)
		if w.DType() == gotch.Float {
			testutil.Close(t, g, w, 1e-5, "%s %s", dir, name)
		} else {
			assert.Equal(t, w.Int64Values(), g.Int64Values(), "%s %s", dir, name)
		}
	}
	return m, report.String()
}

// `repro hf run`'s core on the folders gen_hf_bert.py writes: the
// save_pretrained folder, and the same model as old hub checkpoints carry
// it (sharded pytorch_model.bin, LayerNorm.gamma/beta, tied copies).
func TestOpenHFBertMatchesFixture(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, report := runHFFolder(t, "testdata/hf_bert_mlm", "testdata/hf_bert_mlm")
	assert.Equal(t, "BertForMaskedLM", m.Architecture.Name)
	assert.Contains(t, report, "(safetensors, transformers names): loaded 42 tensors")

	_, report = runHFFolder(t, "testdata/hf_bert_mlm_bin_sharded", "testdata/hf_bert_mlm")
	assert.Contains(t, report, "(torch.save (sharded), TensorFlow-converted (LayerNorm.gamma/beta) names): loaded 42 tensors")
	assert.Contains(t, report, "dropped as tied copies or buffers: bert.embeddings.position_ids, cls.predictions.decoder.bias, cls.predictions.decoder.weight")
}

// Bad folders and inputs are errors that name what is wrong, never a crash.
func TestOpenHFErrors(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	dir := t.TempDir()
	weights, err := os.ReadFile("testdata/hf_bert_mlm/model.safetensors")
	require.NoError(t, err)
	folder := func(name, config string) string {
		d := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(d, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, "model.safetensors"), weights, 0o644))
		if config != "" {
			require.NoError(t, os.WriteFile(filepath.Join(d, "config.json"), []byte(config), 0o644))
		}
		return d
	}
	open := func(d string) error {
		store := NewStore(gotch.CPU)
		defer store.Drop()
		_, err := OpenHF(d, store, &bytes.Buffer{})
		return err
	}
	err = open(folder("gpt2", `{"model_type": "gpt2"}`))
	assert.ErrorContains(t, err, `model_type "gpt2" is not supported; supported: bert (BertForMaskedLM); clip (CLIPModel); llama (LlamaForCausalLM); mistral (MistralForCausalLM)`)
	assert.ErrorContains(t, open(folder("noconfig", "")), "no config.json")
	assert.ErrorContains(t, open(folder("cls", `{"model_type": "bert", "architectures": ["BertForSequenceClassification"]}`)),
		"repro builds BertForMaskedLM only")
	err = open(folder("heads", `{"model_type": "bert", "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2,
		"num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 8}`))
	assert.ErrorContains(t, err, "bert.embeddings.position_embeddings.weight: model [8 32] weights [16 32]")
	err = open(folder("layers", `{"model_type": "bert", "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 3,
		"num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 16}`))
	assert.ErrorContains(t, err, "the model needs tensors the file lacks: bert.encoder.layer.2.")

	store := NewStore(gotch.CPU)
	defer store.Drop()
	m, err := OpenHF("testdata/hf_bert_mlm", store, &bytes.Buffer{})
	require.NoError(t, err)
	ids := ts.MustOfSlice([]int64{2, 7, 9}).MustView([]int64{1, 3}, true)
	_, err = m.Run(map[string]*ts.Tensor{"attention_mask": ids})
	assert.ErrorContains(t, err, `BertForMaskedLM needs input "input_ids"`)
	_, err = m.Run(map[string]*ts.Tensor{"input_ids": ids, "pixel_values": ids})
	assert.ErrorContains(t, err, `does not take input "pixel_values" (inputs: input_ids, attention_mask, token_type_ids, labels)`)
	_, err = m.Run(map[string]*ts.Tensor{"input_ids": ts.MustOfSlice([]int64{2, 70, 9}).MustView([]int64{1, 3}, true)})
	assert.ErrorContains(t, err, "input_ids has ids in [2, 70], outside [0, 50)")
	_, err = m.Run(map[string]*ts.Tensor{"input_ids": ids, "attention_mask": ts.MustOfSlice([]int64{1, 1})})
	assert.ErrorContains(t, err, "attention_mask has shape [2], input_ids [1 3]")
	long := make([]int64, 20)
	_, err = m.Run(map[string]*ts.Tensor{"input_ids": ts.MustOfSlice(long).MustView([]int64{1, 20}, true)})
	assert.ErrorContains(t, err, "longer than max_position_embeddings 16", "a panic inside the model is an error")
}

// A model exported from a store re-imports to identical tensors and
// config, and Python reads the export as the fixture script's HF-named
// state dict (names, shapes, values), loads it into HF's module tree and
// reproduces the fixture's logits.
func TestBertExportRoundTrip(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	src := NewStore(gotch.CPU)
	defer src.Drop()
	m, err := OpenHF("testdata/hf_bert_mlm", src, &bytes.Buffer{})
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "export")
	require.NoError(t, ExportHF(out, src, BertFamily, "BertForMaskedLM", m.Model))

	dst := NewStore(gotch.CPU)
	defer dst.Drop()
	back, err := OpenHF(out, dst, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, m.Model.HFConfig(), back.Model.HFConfig())
	requireSameParams(t, src, dst)
	want, err := ReadBertConfig("testdata/hf_bert_mlm/config.json")
	require.NoError(t, err)
	got, err := ReadBertConfig(filepath.Join(out, "config.json"))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	checkWithPython(t, out, "testdata/hf_bert_mlm")
}

func requireSameParams(t *testing.T, a, b *Store) {
	t.Helper()
	require.Equal(t, len(a.Params()), len(b.Params()))
	for _, p := range a.Params() {
		q, ok := b.Param(p.Name)
		require.True(t, ok, p.Name)
		require.True(t, slices.Equal(p.Tensor.Float64Values(), q.Tensor.Float64Values()), p.Name)
	}
}

// checkWithPython runs check_hf_export.py with Debian's python3-torch,
// skipping where there is none.
func checkWithPython(t *testing.T, exported, reference string) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skip("no /usr/bin/python3 with torch: the Python check of the export is skipped")
	}
	cmd := exec.Command("/usr/bin/python3", "testdata/check_hf_export.py", exported, reference)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	t.Log(string(bytes.TrimSpace(out)))
}

// A BERT with UniLMv2's relative position bias is refused by the HF
// export, which would write a folder transformers loads into a model
// without the bias, and nothing is written.
func TestBertExportRefusesRelativePositionBias(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	c := BertConfig{VocabSize: 30, HiddenSize: 8, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 16, HiddenAct: "gelu",
		MaxPositionEmbeddings: 16, TypeVocabSize: 2, RelPosBins: 8, MaxRelPos: 20}
	m := NewBertForMaskedLM(store.Root(), c)
	out := filepath.Join(t.TempDir(), "export")
	err := ExportHF(out, store, BertFamily, "BertForMaskedLM", NewBertMLMForExport(m))
	require.ErrorContains(t, err, "relative position bias")
	_, statErr := os.Stat(out)
	assert.True(t, os.IsNotExist(statErr), "nothing written")
}
