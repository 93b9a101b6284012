package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
)

// `repro hf run` on the HF folders the fixture scripts write
// (torchmods/testdata/gen_hf_bert.py, mae/testdata/gen_hf_vitmae.py,
// torchmods/testdata/gen_llama.py): the
// outputs, under HF's names, match the scripts' reference outputs.
func TestHFRunMatchesFixtures(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	for dir, outputs := range map[string][]string{
		"../../torchmods/testdata/hf_bert_mlm":        {"logits", "loss"},
		"../../mae/testdata/hf_vitmae_grey":           {"ids_restore", "logits", "loss", "mask"},
		"../../mae/testdata/hf_vitmae_rgb":            {"ids_restore", "logits", "loss", "mask"},
		"../../torchmods/testdata/llama_gqa":          {"logits", "loss"},
		"../../torchmods/testdata/llama_tied_sharded": {"logits", "loss"},
		"../../torchmods/testdata/llama_mistral":      {"logits", "loss"},
	} {
		out := filepath.Join(t.TempDir(), "out.safetensors")
		stdout, stderr, code := runRepro(t, "hf", "run", dir, "-inputs", filepath.Join(dir, "inputs.safetensors"), "-out", out)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "wrote "+out)
		got, err := torchmods.LoadWeights(out, gotch.CPU)
		require.NoError(t, err)
		want, err := torchmods.LoadWeights(filepath.Join(dir, "outputs.safetensors"), gotch.CPU)
		require.NoError(t, err)
		var names []string
		for n := range got {
			names = append(names, n)
		}
		assert.ElementsMatch(t, outputs, names, dir)
		for n, w := range want {
			if w.DType() == gotch.Float {
				testutil.Close(t, got[n], w, 1e-5, "%s %s", dir, n)
			} else {
				assert.Equal(t, w.Int64Values(), got[n].Int64Values(), "%s %s", dir, n)
			}
		}
	}
}

// An unknown model_type lists the supported ones, a missing input is
// named, a bad file is named; none crashes.
func TestHFRunErrors(t *testing.T) {
	dir := t.TempDir()
	gpt2 := filepath.Join(dir, "gpt2")
	require.NoError(t, os.MkdirAll(gpt2, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(gpt2, "config.json"), []byte(`{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}`), 0o644))
	w, err := os.ReadFile("../../torchmods/testdata/hf_bert_mlm/model.safetensors")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(gpt2, "model.safetensors"), w, 0o644))
	bertIn := "../../torchmods/testdata/hf_bert_mlm/inputs.safetensors"
	out := filepath.Join(dir, "out.safetensors")

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{gpt2, "-inputs", bertIn, "-out", out}, 1,
			`model_type "gpt2" is not supported; supported: bert (BertForMaskedLM); clip (CLIPModel); llama (LlamaForCausalLM); mistral (MistralForCausalLM); vit_mae (ViTMAEForPreTraining)`},
		{[]string{"../../mae/testdata/hf_vitmae_grey", "-inputs", bertIn, "-out", out}, 1,
			`ViTMAEForPreTraining needs input "pixel_values" (inputs: pixel_values, noise)`},
		{[]string{"../../torchmods/testdata/hf_bert_mlm", "-inputs", "../../torchmods/testdata/hf_bert_mlm/config.json", "-out", out}, 1,
			"-inputs: ../../torchmods/testdata/hf_bert_mlm/config.json"},
		{[]string{filepath.Join(dir, "absent"), "-inputs", bertIn, "-out", out}, 1, "absent"},
		{[]string{"../../torchmods/testdata/hf_bert_mlm", "-out", out}, 2, "run needs -inputs and -out"},
	} {
		_, stderr, code := runRepro(t, append([]string{"hf", "run"}, c.args...)...)
		assert.Equal(t, c.code, code, stderr)
		assert.Contains(t, stderr, c.msg)
		assert.NotContains(t, stderr, "goroutine", "no crash")
	}
	_, err = os.Stat(out)
	assert.True(t, os.IsNotExist(err), "nothing written on failure")
}

// `repro mae reconstruct` on an official checkpoint of a width the paper
// does not use says which head counts it assumed, takes -heads and
// -decoder-heads, and reads them from a HF folder's config.json.
func TestMAEReconstructSaysHeads(t *testing.T) {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("dataset-fashion-mnist not installed")
	}
	grid := filepath.Join(t.TempDir(), "grid.png")
	for _, c := range []struct {
		args     []string
		has, not string
	}{
		{[]string{"-checkpoint", "../../mae/testdata/official_full.pth"}, "assumed: encoder heads 1 (width 16", ""},
		{[]string{"-checkpoint", "../../mae/testdata/official_full.pth", "-heads", "2", "-decoder-heads", "2"}, "with 2 heads", "assumed"},
		{[]string{"-checkpoint", "../../mae/testdata/hf_vitmae_grey"}, "model from ../../mae/testdata/hf_vitmae_grey/config.json", "assumed"},
	} {
		stdout, stderr, code := runRepro(t, append(append([]string{"mae", "reconstruct", "-out", grid, "-n", "2"}, c.args...), "fashion-mnist")...)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, c.has)
		if c.not != "" {
			assert.NotContains(t, stdout, c.not)
		}
	}
}
