package mae

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

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
		assert.Less(t, maxRelErr(t, out.Loss, ref["grey.loss"]), 1e-5, file)
		assert.Less(t, maxRelErr(t, out.Pred, ref["grey.pred"]), 1e-5, file)
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
	_, err = LoadForReconstruction(torchmods.NewStore(gotch.CPU), "testdata/official_encoder.pth", nil, false, &report)
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
	o, err := InferOptions(tensors)
	require.NoError(t, err)
	assert.Equal(t, []int64{28, 7, 1, 16, 1, 8, 1}, []int64{o.ImgSize, o.Patch, o.InChans, o.Dim, o.Depth, o.DecoderDim, o.DecoderDepth})
	assert.Equal(t, 4.0, o.MLPRatio)

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
