package mae

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
)

// TestParityWithOfficialModel checks mae.Model against the official code:
// testdata/gen_mae_parity.py runs facebookresearch/mae's models_mae.py
// (commit efb2a80) with timm v0.3.3's Block and PatchEmbed, patched in
// memory only where torch 1.13 and numpy 1.24 removed a name (and, for the
// 1-channel case, patchify's hard-coded 3 channels made in_chans). With the
// fixture's weights, images and masking noise (the noise the official
// random_masking drew), it compares the loss, prediction, mask, ids_restore
// and the gradient of every trainable parameter: encoder, decoder and loss,
// with and without norm_pix_loss, RGB and grey.
func TestParityWithOfficialModel(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := torchmods.LoadWeights("testdata/mae_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	cases := map[string]struct {
		o     Options
		ratio float64
	}{
		"rgb":  {Options{ImgSize: 16, Patch: 4, InChans: 3, Dim: 32, Depth: 2, Heads: 4, DecoderDim: 24, DecoderDepth: 2, DecoderHeads: 4, MLPRatio: 4, NormPixLoss: true, Eps: 1e-6}, 0.75},
		"grey": {Options{ImgSize: 28, Patch: 7, InChans: 1, Dim: 16, Depth: 1, Heads: 2, DecoderDim: 8, DecoderDepth: 1, DecoderHeads: 2, MLPRatio: 4, Eps: 1e-6}, 0.6},
	}
	for name, c := range cases {
		store := torchmods.NewStore(gotch.CPU)
		m, err := New(store.Root(), c.o)
		require.NoError(t, err)
		weights := map[string]*ts.Tensor{}
		for k, v := range ref {
			if rest, ok := strings.CutPrefix(k, name+"."); ok && !strings.HasPrefix(rest, "grad.") && !slices.Contains([]string{"imgs", "noise", "loss", "pred", "mask", "ids_restore"}, rest) {
				weights[rest] = v
			}
		}
		_, err = store.Load(weights, true)
		require.NoError(t, err, "the official state_dict names load strictly")

		out := m.Forward(ref[name+".imgs"], c.ratio, ref[name+".noise"], true)
		testutil.Close(t, out.Loss, ref[name+".loss"], 1e-5, "%s loss", name)
		testutil.Close(t, out.Pred, ref[name+".pred"], 1e-5, "%s pred", name)
		assert.Equal(t, ref[name+".mask"].Float64Values(), out.Mask.Float64Values(), "%s mask", name)
		noise := ref[name+".noise"]
		_, _, ids := RandomMasking(ts.MustZeros(append(noise.MustSize(), 1), gotch.Float, gotch.CPU), c.ratio, noise)
		assert.Equal(t, ref[name+".ids_restore"].Int64Values(), ids.Int64Values(), "%s ids_restore", name)
		worst := map[string]float64{"loss": testutil.RelErr(out.Loss, ref[name+".loss"]), "pred": testutil.RelErr(out.Pred, ref[name+".pred"])}
		require.NoError(t, out.Loss.Backward())
		// A fixed parameter (the sin-cos tables) has no gradient here and none
		// in the official model; every trainable one has one in both.
		grads, trainable := map[string]*ts.Tensor{}, 0
		for _, p := range store.Params() {
			grads[p.Name] = p.Tensor.MustGrad(false)
			if p.Tensor.MustRequiresGrad() {
				trainable++
			}
		}
		n := testutil.Parity(t, grads, testutil.Sub(ref, name+".grad."), 1e-5, "%s grad", name)
		for k, g := range testutil.Sub(ref, name+".grad.") {
			if e := testutil.RelErr(grads[k], g); e > worst["grad"] {
				worst["grad"] = e
			}
		}
		t.Logf("%s: max relative error loss %.2g, pred %.2g, gradients %.2g", name, worst["loss"], worst["pred"], worst["grad"])
		assert.Equal(t, trainable, n, "%s: every trainable parameter compared", name)
		assert.Greater(t, n, 20)
		store.Drop()
	}
}

func TestRandomMaskingIsExact(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	const n, l, d = 4, 49, 3
	x := ts.MustArange(ts.IntScalar(n*l*d), gotch.Float, gotch.CPU).MustView([]int64{n, l, d}, true)
	for _, ratio := range []float64{0.75, 0.5, 0.9, 0} {
		kept, mask, ids := RandomMasking(x, ratio, nil)
		keep := KeepCount(l, ratio)
		require.Equal(t, []int64{n, keep, d}, kept.MustSize())
		require.Equal(t, int64(float64(l)*(1-ratio)), keep)
		m := mask.Float64Values()
		idx := ids.Int64Values()
		kv := kept.Float64Values()
		for b := range n {
			removed := 0.0
			for i := range l {
				removed += m[b*l+i]
			}
			require.Equal(t, float64(l-keep), removed, "ratio %v", ratio)
			// ids_restore is a permutation: position i of the original
			// sequence sits at slot ids_restore[i] of the shuffled one,
			// and the first keep slots are the kept tokens.
			perm := slices.Clone(idx[b*l : (b+1)*l])
			slices.Sort(perm)
			for i := range perm {
				require.Equal(t, int64(i), perm[i])
			}
			for i := range l {
				slot := idx[b*l+i]
				require.Equal(t, slot >= keep, m[b*l+i] == 1, "mask agrees with the shuffle")
				if slot < keep { // the kept token at that slot is token i of sample b
					require.Equal(t, float64((b*l+i)*d), kv[(b*int(keep)+int(slot))*d])
				}
			}
		}
	}
	// KeepCount rounds down as Python's int().
	assert.Equal(t, int64(12), KeepCount(49, 0.75))
	assert.Equal(t, int64(49), KeepCount(196, 0.75))
	assert.Equal(t, int64(64), KeepCount(256, 0.75))
}

func TestPatchifyRoundTripAndLayout(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := New(store.Root(), Options{ImgSize: 8, Patch: 4, InChans: 3, Dim: 8, Depth: 1, Heads: 2, DecoderDim: 8, DecoderDepth: 1, DecoderHeads: 2, MLPRatio: 4})
	require.NoError(t, err)
	imgs := ts.MustRandn([]int64{2, 3, 8, 8}, gotch.Float, gotch.CPU)
	p := m.Patchify(imgs)
	require.Equal(t, []int64{2, 4, 48}, p.MustSize())
	require.Equal(t, imgs.Float64Values(), m.Unpatchify(p).Float64Values())
	// Patch 1 is the top-right one; inside it, values run (row, col, channel).
	v := imgs.Float64Values()
	pv := p.Float64Values()
	at := func(c, y, x int) float64 { return v[(c*8+y)*8+x] }
	assert.Equal(t, at(0, 0, 4), pv[48+0])
	assert.Equal(t, at(1, 0, 4), pv[48+1])
	assert.Equal(t, at(0, 0, 5), pv[48+3])
	assert.Equal(t, at(2, 1, 4), pv[48+12+2])
}

func TestOfficialSizes(t *testing.T) {
	for _, c := range []struct {
		o                        Options
		patch, dim, depth, heads int64
	}{{ViTBase16(), 16, 768, 12, 12}, {ViTLarge16(), 16, 1024, 24, 16}, {ViTHuge14(), 14, 1280, 32, 16}} {
		assert.Equal(t, []int64{c.patch, c.dim, c.depth, c.heads, 512, 8, 16}, []int64{c.o.Patch, c.o.Dim, c.o.Depth, c.o.Heads, c.o.DecoderDim, c.o.DecoderDepth, c.o.DecoderHeads})
		assert.NoError(t, c.o.Validate())
		assert.True(t, c.o.NormPixLoss)
	}
	o := ViTBase16()
	o.ImgSize = 225
	assert.ErrorContains(t, o.Validate(), "multiple of patch")
}
