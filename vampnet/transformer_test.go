package vampnet

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
)

// parityConfig is testdata/gen_transformer_parity.py's VampNet: 3 layers
// of width 16 with 2 heads, 3 codebooks of 10 codes (the first one
// conditioning), latent_dim 4, loralib rank 8 with frozen base weights as
// the official code has them.
func parityConfig() Config {
	return Config{NHeads: 2, NLayers: 3, NCodebooks: 3, NConditioningCodebooks: 1, LatentDim: 4, EmbeddingDim: 16,
		VocabSize: 10, LoRARank: 8, Buckets: 32, MaxDistance: 128}
}

// The fixture comes from RUNNING the official transformer.py, layers.py
// and activations.py (hugofloresgarcia/vampnet ismir-2023 at dce1655) with
// loralib and einops at pinned commits on Debian's torch 1.13 (see the
// generator's docstring): the latents, the logits, the loss and the
// gradient of every trainable parameter and of the codec's codebooks.
func TestTransformerParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, ref, codebooks := loadParity(t)
	store := m.store
	for _, cb := range codebooks {
		cb.MustRequiresGrad_(true)
	}
	latents := m.FromCodes(ref["in.codes"], codebooks)
	testutil.Close(t, latents, ref["out.latents"], 1e-6, "latents")
	logits := m.Forward(latents, true) // train mode, dropout 0 as the generator ran it
	testutil.Close(t, logits, ref["out.logits"], 1e-5, "logits")

	loss := m.Loss(logits, ref["in.target"], ref["in.mask"], 0.1)
	testutil.Close(t, loss, ref["out.loss"], 1e-5, "loss")
	loss.MustBackward()

	got := map[string]*ts.Tensor{}
	for _, p := range store.Params() {
		got[p.Name] = p.Tensor.MustGrad(false)
	}
	for i, cb := range codebooks {
		got[fmt.Sprint("codebook.", i)] = cb.MustGrad(false)
	}
	want := testutil.Sub(ref, "grad.")
	assert.Equal(t, len(want), testutil.Parity(t, got, want, 1e-5), "gradients compared")
	// loralib freezes the base weight of every lora.Linear.
	for _, name := range []string{"transformer.layers.0.self_attn.w_qs.weight", "transformer.layers.2.feed_forward.w_2.weight"} {
		p, ok := store.Param(name)
		require.True(t, ok, name)
		assert.False(t, p.Tensor.MustRequiresGrad(), name)
	}
}

// The relative position buckets agree with MultiHeadRelativeAttention's
// over every pair of 64 positions and over relative positions -350..349
// (past max_distance, where the buckets saturate).
func TestRelativePositionBuckets(t *testing.T) {
	ref, err := torchmods.LoadWeights("testdata/transformer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	want := ref["buckets"].Int64Values()
	for i := int64(0); i < 64; i++ {
		for j := int64(0); j < 64; j++ {
			require.Equal(t, want[i*64+j], torchmods.T5Bucket(j-i, true, 32, 128), "query %d key %d", i, j)
		}
	}
	long := ref["buckets_long"].Int64Values()
	for k, w := range long {
		require.Equal(t, w, torchmods.T5Bucket(int64(k)-350, true, 32, 128), "relative position %d", k-350)
	}
}

// loadParity builds the fixture's model with its weights.
func loadParity(t *testing.T) (*VampNet, map[string]*ts.Tensor, []*ts.Tensor) {
	ref, err := torchmods.LoadWeights("testdata/transformer_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	store := torchmods.NewStore(gotch.CPU)
	m := New(store.Root(), parityConfig())
	weights := map[string]*ts.Tensor{}
	for _, p := range store.Params() {
		weights[p.Name] = ref[p.Name]
	}
	rep, err := store.Load(weights, true)
	require.NoError(t, err, "%v", rep)
	var codebooks []*ts.Tensor
	for i := range 3 {
		codebooks = append(codebooks, ref[fmt.Sprint("codebook.", i)])
	}
	return m, ref, codebooks
}

// In evaluation loralib has merged each update into its weight; the
// logits agree with the official model's in eval mode, and generate,
// seeded alike, draws the same tokens: the same libtorch generator, used
// in the same order (a multinomial, then the Gumbel noise, per step).
func TestGenerateParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, ref, codebooks := loadParity(t)
	logits := m.Forward(m.FromCodes(ref["in.codes"], codebooks), false)
	testutil.Close(t, logits, ref["out.logits_eval"], 1e-6, "eval logits")

	cases := map[string]SampleOptions{
		"sample":      {Steps: 6, Temperature: 1, MaskTemperature: 10.5, SampleCutoff: 1},
		"topp_cutoff": {Steps: 5, Temperature: 0.8, MaskTemperature: 10.5, TopP: 0.9, SampleCutoff: 0.5},
		"one_step":    {Steps: 1, Temperature: 1, MaskTemperature: 10.5, SampleCutoff: 1},
	}
	codes, mask := ref["gen.in.codes"], ref["gen.in.mask"]
	for name, o := range cases {
		ts.ManualSeed(5)
		got := m.Generate(codes, mask, codebooks, o)
		assert.Equal(t, ref["gen.out."+name].Int64Values(), got.Int64Values(), name)
		// what was not masked is kept, the conditioning codebook included
		g, c, k := got.Int64Values(), codes.Int64Values(), mask.Int64Values()
		for i := range g {
			if k[i] == 0 {
				assert.Equal(t, c[i], g[i], "%s: unmasked position %d changed", name, i)
			}
			assert.Less(t, g[i], int64(10), "%s: position %d left MASK", name, i)
		}
	}
}
