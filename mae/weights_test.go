package mae

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
)

// The "grey" case of testdata/gen_mae_parity.py, saved as the official and
// HF files are.
var greyOptions = Options{ImgSize: 28, Patch: 7, InChans: 1, Dim: 16, Depth: 1, Heads: 2, DecoderDim: 8, DecoderDepth: 1, DecoderHeads: 2, MLPRatio: 4, Eps: 1e-6}

func TestOfficialAndHFCheckpointsLoadWithParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := torchmods.LoadWeights("testdata/mae_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	for _, file := range []string{"testdata/official_full.pth", "testdata/hf_vitmae.safetensors"} {
		store := torchmods.NewStore(gotch.CPU)
		m, err := New(store.Root(), greyOptions)
		require.NoError(t, err)
		var report bytes.Buffer
		rep, err := LoadInto(store, file, greyOptions, true, &report)
		require.NoError(t, err, file)
		assert.Empty(t, rep.Missing)
		assert.Contains(t, report.String(), map[string]string{
			"testdata/official_full.pth":     "official MAE checkpoint",
			"testdata/hf_vitmae.safetensors": "Hugging Face ViTMAE"}[file])
		out := m.Forward(ref["grey.imgs"], 0.6, ref["grey.noise"], false)
		testutil.Close(t, out.Loss, ref["grey.loss"], 1e-5, file)
		testutil.Close(t, out.Pred, ref["grey.pred"], 1e-5, file)
		store.Drop()
	}
}

func TestEncoderOnlyCheckpoint(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	_, err := New(store.Root(), greyOptions)
	require.NoError(t, err)
	var report bytes.Buffer
	_, err = LoadInto(store, "testdata/official_encoder.pth", greyOptions, true, &report)
	require.ErrorContains(t, err, "holds an encoder only")
	_, err = LoadForReconstruction(torchmods.NewStore(gotch.CPU), "testdata/official_encoder.pth", nil, Hints{}, &report)
	require.ErrorContains(t, err, "holds an encoder only")

	// Fine-tuning loads it into a ViT classifier: head and fc_norm are new,
	// and the pre-training norm is unused with global pooling (as main_finetune.py).
	cls := torchmods.NewStore(gotch.CPU)
	defer cls.Drop()
	torchmods.NewViT(cls.Root(), torchmods.ViTOptions{ImgSize: 28, Patch: 7, InChans: 1, Dim: 16, Depth: 1, Heads: 2, GlobalPool: true, Classes: 10})
	rep, err := LoadInto(cls, "testdata/official_encoder.pth", greyOptions, false, &report)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}, rep.Missing)
	assert.ElementsMatch(t, []string{"norm.weight", "norm.bias"}, rep.Unexpected)
	assert.Contains(t, report.String(), "loaded 16 tensors")
}

func TestInferOptionsAndPosEmbedInterpolation(t *testing.T) {
	tensors, kind, err := ReadCheckpoint("testdata/official_full.pth")
	require.NoError(t, err)
	assert.Contains(t, kind, "official")
	o, assumed, err := InferOptions(tensors)
	require.NoError(t, err)
	assert.Equal(t, []int64{28, 7, 1, 16, 1, 8, 1}, []int64{o.ImgSize, o.Patch, o.InChans, o.Dim, o.Depth, o.DecoderDim, o.DecoderDepth})
	assert.Equal(t, 4.0, o.MLPRatio)
	require.Len(t, assumed, 2, "both head counts are assumptions, and say so")
	assert.Contains(t, assumed[0], "encoder heads 1 (width 16 is not one of the paper's")
	assert.Contains(t, assumed[1], "decoder heads 1 (width 8 is not one of the paper's")

	// A 28x28 (4x4 patches) checkpoint into a 56x56 (8x8) classifier: the
	// table is interpolated, its cls row kept.
	s := ts.NewScope()
	defer s.Close()
	cls := torchmods.NewStore(gotch.CPU)
	defer cls.Drop()
	vit := torchmods.NewViT(cls.Root(), torchmods.ViTOptions{ImgSize: 56, Patch: 7, InChans: 1, Dim: 16, Depth: 1, Heads: 2, Classes: 3})
	big := greyOptions
	big.ImgSize = 56
	var report bytes.Buffer
	_, err = LoadInto(cls, "testdata/official_full.pth", big, false, &report)
	require.NoError(t, err)
	assert.Contains(t, report.String(), "pos_embed interpolated")
	assert.Equal(t, []int64{1, 65, 16}, vit.PosEmbed.MustSize())
	assert.Equal(t, make([]float64, 16), vit.PosEmbed.MustSelect(1, 0, false).Float64Values(), "the cls row is zero in MAE's table")
	// Bicubic interpolation of a table to its own size changes nothing.
	same, err := torchmods.InterpolatePosEmbed(vit.PosEmbed, 8)
	require.NoError(t, err)
	assert.Equal(t, vit.PosEmbed.Float64Values(), same.Float64Values())
}

// One ViTMAE checkpoint in each naming variant (gen_hf_vitmae.py renames
// the HF fixture as transformers 4.x, 5.x's state_dict and 5.x's
// save_pretrained write it): each loads, the report names the variant, and
// the outputs match the parity fixture.
func TestHFViTMAENamingVariants(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := torchmods.LoadWeights("testdata/mae_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	for file, variant := range map[string]string{
		"testdata/hf_vitmae_grey/model.safetensors":      "(safetensors, transformers 4.x names)",
		"testdata/vitmae_v5_state_dict.pt":               "(torch.save, transformers 5.x state_dict names)",
		"testdata/vitmae_v5_save_pretrained.safetensors": "(safetensors, transformers 5.x save_pretrained names)",
	} {
		store := torchmods.NewStore(gotch.CPU)
		m, err := New(store.Root(), greyOptions)
		require.NoError(t, err)
		var report bytes.Buffer
		rep, err := LoadInto(store, file, greyOptions, true, &report)
		require.NoError(t, err, file)
		assert.Len(t, rep.Loaded, 38, file)
		assert.Contains(t, report.String(), "Hugging Face ViTMAE weights "+variant, file)
		out := m.Forward(ref["grey.imgs"], 0.6, ref["grey.noise"], false)
		testutil.Close(t, out.Loss, ref["grey.loss"], 1e-5, file)
		testutil.Close(t, out.Pred, ref["grey.pred"], 1e-5, file)
		store.Drop()
	}
}

// Heads are not in a state dict: an official checkpoint of a width the
// paper does not use (16, trained with 2 heads) says what it assumed, a
// user-given count is honoured (and then the outputs are right), and a HF
// folder's config.json gives the counts with nothing assumed.
func TestHeadsAreNeverGuessedSilently(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := torchmods.LoadWeights("testdata/mae_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	load := func(path string, h Hints) (*Model, string, error) {
		store := torchmods.NewStore(gotch.CPU)
		t.Cleanup(store.Drop)
		var report bytes.Buffer
		m, err := LoadForReconstruction(store, path, nil, h, &report)
		return m, report.String(), err
	}

	m, report, err := load("testdata/official_full.pth", Hints{})
	require.NoError(t, err)
	assert.Contains(t, report, "assumed: encoder heads 1 (width 16 is not one of the paper's")
	assert.Contains(t, report, "pass -heads N")
	assert.Contains(t, report, "assumed: decoder heads 1")
	wrong := m.Forward(ref["grey.imgs"], 0.6, ref["grey.noise"], false)
	assert.Greater(t, testutil.RelErr(wrong.Pred, ref["grey.pred"]), 1e-3, "which is why it must be said: 1 head is not 2")

	m, report, err = load("testdata/official_full.pth", Hints{Heads: 2, DecoderHeads: 2})
	require.NoError(t, err)
	assert.NotContains(t, report, "assumed")
	assert.Contains(t, report, "encoder 16 wide x 1 deep with 2 heads, decoder 8 wide x 1 deep with 2 heads")
	out := m.Forward(ref["grey.imgs"], 0.6, ref["grey.noise"], false)
	testutil.Close(t, out.Pred, ref["grey.pred"], 1e-5)

	m, report, err = load("testdata/hf_vitmae_grey", Hints{})
	require.NoError(t, err)
	assert.NotContains(t, report, "assumed")
	assert.Contains(t, report, "model from testdata/hf_vitmae_grey/config.json")
	assert.Contains(t, report, "with 2 heads, decoder 8 wide x 1 deep with 2 heads, eps 1e-06")
	out = m.Forward(ref["grey.imgs"], 0.6, ref["grey.noise"], false)
	testutil.Close(t, out.Pred, ref["grey.pred"], 1e-5)

	_, _, err = load("testdata/hf_vitmae_grey", Hints{Heads: 4})
	assert.ErrorContains(t, err, "-heads 4, but testdata/hf_vitmae_grey/config.json says 2")

	// HF weights without their config.json: the eps is an assumption too.
	_, report, err = load("testdata/vitmae_v5_state_dict.pt", Hints{Heads: 2, DecoderHeads: 2})
	require.NoError(t, err)
	assert.Contains(t, report, "assumed: layer_norm_eps 1e-6")

	// A fine-tuning [model] whose heads contradict the folder's config.json.
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	four := greyOptions
	four.Heads = 4
	_, err = New(store.Root(), four)
	require.NoError(t, err)
	_, err = LoadInto(store, "testdata/hf_vitmae_grey", four, true, &bytes.Buffer{})
	assert.ErrorContains(t, err, "config.json says num_attention_heads 2, decoder_num_attention_heads 2; the model has heads 4")
}

// `repro hf run`'s core on the HF folders gen_hf_vitmae.py writes: grey
// (pixel loss, mask ratio 0.6) and rgb (norm_pix_loss, 0.75). The model and
// mask ratio come from config.json; outputs match models_mae.py's.
func TestHFFolderRunMatchesFixture(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	for _, c := range []string{"grey", "rgb"} {
		dir := "testdata/hf_vitmae_" + c
		store := torchmods.NewStore(gotch.CPU)
		var report bytes.Buffer
		m, err := torchmods.OpenHF(dir, store, &report)
		require.NoError(t, err, report.String())
		assert.Equal(t, "ViTMAEForPreTraining", m.Architecture.Name)
		assert.Contains(t, report.String(), "transformers 4.x names")
		in, err := torchmods.LoadWeights(dir+"/inputs.safetensors", gotch.CPU)
		require.NoError(t, err)
		want, err := torchmods.LoadWeights(dir+"/outputs.safetensors", gotch.CPU)
		require.NoError(t, err)
		got, err := m.Run(in)
		require.NoError(t, err)
		require.Len(t, got, 4)
		testutil.Close(t, got["loss"], want["loss"], 1e-5, c)
		testutil.Close(t, got["logits"], want["logits"], 1e-5, c)
		assert.Equal(t, want["mask"].Float64Values(), got["mask"].Float64Values(), c)
		assert.Equal(t, want["ids_restore"].Int64Values(), got["ids_restore"].Int64Values(), c)

		_, err = m.Run(map[string]*ts.Tensor{"pixel_values": in["noise"]})
		assert.ErrorContains(t, err, "pixel_values has shape")
		store.Drop()
	}
}

// Export from a store and re-import: identical tensors and config; and
// Python sees exactly the fixture script's HF-named state dict (names,
// shapes, values) and config.
func TestViTMAEExportRoundTrip(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	src := torchmods.NewStore(gotch.CPU)
	defer src.Drop()
	m, err := torchmods.OpenHF("testdata/hf_vitmae_rgb", src, &bytes.Buffer{})
	require.NoError(t, err)
	out := t.TempDir() + "/export"
	require.NoError(t, torchmods.ExportHF(out, src, ViTMAEFamily, "ViTMAEForPreTraining", m.Model))

	dst := torchmods.NewStore(gotch.CPU)
	defer dst.Drop()
	back, err := torchmods.OpenHF(out, dst, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, m.Model.HFConfig(), back.Model.HFConfig())
	require.Equal(t, len(src.Params()), len(dst.Params()))
	for _, p := range src.Params() {
		q, ok := dst.Param(p.Name)
		require.True(t, ok, p.Name)
		assert.Equal(t, p.Tensor.Float64Values(), q.Tensor.Float64Values(), p.Name)
	}
	for _, f := range []string{"testdata/hf_vitmae_rgb/config.json", out + "/config.json"} {
		c, err := torchmods.ReadHFConfig(f)
		require.NoError(t, err)
		o, ratio, err := OptionsFromHF(c)
		require.NoError(t, err)
		assert.Equal(t, Options{ImgSize: 16, Patch: 4, InChans: 3, Dim: 32, Depth: 2, Heads: 4, DecoderDim: 24, DecoderDepth: 2,
			DecoderHeads: 4, MLPRatio: 4, NormPixLoss: true, Eps: 1e-6}, o, f)
		assert.Equal(t, 0.75, ratio)
	}

	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skip("no /usr/bin/python3 with torch: the Python check of the export is skipped")
	}
	res, err := exec.Command("/usr/bin/python3", "../torchmods/testdata/check_hf_export.py", out, "testdata/hf_vitmae_rgb").CombinedOutput()
	require.NoError(t, err, string(res))
	t.Log(strings.TrimSpace(string(res)))
}

// ViTMAE config.json in 4.x spelling and with what 5.x-era files may do
// (dtype for torch_dtype, defaults left out); HF's defaults (eps 1e-12, not
// MAE's 1e-6) fill what is absent; what the model cannot be is refused.
func TestOptionsFromHFConfig(t *testing.T) {
	read := func(js string) (Options, float64, error) {
		c, err := torchmods.ParseHFConfig("config.json", []byte(js))
		require.NoError(t, err)
		return OptionsFromHF(c)
	}
	v4 := `{"model_type": "vit_mae", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
		"hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3, "qkv_bias": true,
		"decoder_hidden_size": 512, "decoder_num_hidden_layers": 8, "decoder_num_attention_heads": 16, "decoder_intermediate_size": 2048,
		"mask_ratio": 0.75, "norm_pix_loss": false, "torch_dtype": "float32", "transformers_version": "4.46.0"}`
	v5 := `{"model_type": "vit_mae", "dtype": "float32", "transformers_version": "5.0.0"}`
	a, ra, err := read(v4)
	require.NoError(t, err)
	b, rb, err := read(v5)
	require.NoError(t, err)
	assert.Equal(t, a, b)
	assert.Equal(t, ra, rb)
	want := ViTBase16()
	want.Eps, want.NormPixLoss = 1e-12, false
	assert.Equal(t, want, a, "facebook/vit-mae-base's config is the paper's ViT-B with HF's eps")

	for js, msg := range map[string]string{
		`{"hidden_act": "relu"}`:                  `config.json: hidden_act "relu": the MAE blocks use exact GELU`,
		`{"qkv_bias": false}`:                     "qkv_bias false",
		`{"decoder_intermediate_size": 1024}`:     "the model takes one MLP ratio for both",
		`{"image_size": [224, 224]}`:              "config.json: image_size is [224,224], want an integer",
		`{"num_attention_heads": 5}`:              "dim 768 must be a multiple of 4 and of heads 5",
		`{"mask_ratio": 1.5}`:                     "mask_ratio 1.5 must be in (0, 1)",
		`{"decoder_num_attention_heads": "many"}`: `decoder_num_attention_heads is "many"`,
	} {
		_, _, err := read(js)
		assert.ErrorContains(t, err, msg, js)
	}
}
