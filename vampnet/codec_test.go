package vampnet

import (
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/internal/testutil/parity"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The fixture comes from testdata/gen_codec_parity.py, which RUNS the
// official lac code (hugofloresgarcia/lac at 7761206: LAC, its layers and
// ResidualVectorQuantize) on Debian's torch 1.13, with stubs for the
// audiotools and einops imports that compute nothing here.

const codecParityTol = 1e-5

// codecParityConfig is the generator's LAC.
func codecParityConfig() CodecConfig {
	return CodecConfig{SampleRate: 16000, EncoderDim: 4, EncoderRates: []int64{2, 4}, DecoderDim: 16, DecoderRates: []int64{4, 2},
		NCodebooks: 3, CodebookSize: 32, CodebookDim: 4}
}

func readCodecParity(t *testing.T) parity.Fixture {
	return parity.Read(t, "testdata/codec_parity.safetensors")
}

func codecFloats(t *ts.Tensor) []float64 {
	return t.MustDetach(false).MustTotype(gotch.Double, true).Float64Values()
}

// loadParityCodec builds the generator's codec and loads the official
// weights strictly: every lac name is matched.
func loadParityCodec(t *testing.T, x parity.Fixture) (*torchmods.Store, *Codec) {
	store := torchmods.NewStore(gotch.CPU)
	m, err := NewCodec(store.Root(), codecParityConfig())
	require.NoError(t, err)
	rep, err := LoadCodecWeights(store, "", x.StateDict("w."), true)
	require.NoError(t, err)
	require.Len(t, rep.Loaded, len(store.Params()))
	return store, m
}

// codecAssertClose checks got against want within codecParityTol of
// want's scale and returns the worst relative difference.
func codecAssertClose(t *testing.T, want, got []float64, msg string) float64 {
	t.Helper()
	return testutil.CloseFloats(t, want, got, codecParityTol, msg)
}

// The whole codec: encode (padding, encoder, residual VQ), decode, the
// codes exactly, and the gradient of audio² + the VQ losses with respect
// to every parameter and the input.
func TestCodecMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readCodecParity(t)
	store, m := loadParityCodec(t, x)
	audio := x.Tensor("in.audio")
	audio.MustRequiresGrad_(true)
	e, y := m.Forward(audio, 0, false)
	assert.Equal(t, x.Tensor("out.codes").Int64Values(), e.Codes.Int64Values(), "codes")
	assert.Equal(t, int64(203), e.Length)
	worst := 0.0
	for _, o := range []struct {
		name string
		got  *ts.Tensor
	}{{"out.z", e.Z}, {"out.latents", e.Latents}, {"out.commitment_loss", e.CommitmentLoss}, {"out.codebook_loss", e.CodebookLoss}, {"out.audio", y}} {
		worst = math.Max(worst, codecAssertClose(t, x.Floats(o.name), codecFloats(o.got), o.name))
	}
	loss := y.MustPowTensorScalar(ts.IntScalar(2), false).MustMean(gotch.Float, true).MustAdd(e.CommitmentLoss, true).MustAdd(e.CodebookLoss, true)
	codecAssertClose(t, x.Floats("out.loss"), codecFloats(loss), "out.loss")
	loss.MustBackward()
	gworst := 0.0
	for _, p := range store.Params() {
		g := p.Tensor.MustGrad(false)
		require.True(t, g.MustDefined(), p.Name)
		gworst = math.Max(gworst, codecAssertClose(t, x.Floats("grad."+p.Name), codecFloats(g), "grad."+p.Name))
	}
	gworst = math.Max(gworst, codecAssertClose(t, x.Floats("grad.in.audio"), codecFloats(audio.MustGrad(false)), "grad.in.audio"))
	t.Logf("%d parameters; worst output difference %.2g, worst gradient difference %.2g (of each tensor's scale)", len(store.Params()), worst, gworst)
}

// n_quantizers = 2 at eval: every codebook's codes come back, z and the
// losses use the first two.
func TestCodecNQuantizersMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readCodecParity(t)
	_, m := loadParityCodec(t, x)
	ts.NoGrad(func() {
		e, y := m.Forward(x.Tensor("in.audio"), 2, false)
		assert.Equal(t, x.Tensor("nq2.codes").Int64Values(), e.Codes.Int64Values())
		codecAssertClose(t, x.Floats("nq2.z"), codecFloats(e.Z), "nq2.z")
		codecAssertClose(t, x.Floats("nq2.commitment_loss"), codecFloats(e.CommitmentLoss), "nq2.commitment_loss")
		codecAssertClose(t, x.Floats("nq2.codebook_loss"), codecFloats(e.CodebookLoss), "nq2.codebook_loss")
		codecAssertClose(t, x.Floats("nq2.audio"), codecFloats(y), "nq2.audio")
	})
}

// A per-item number of codebooks (what quantizer dropout draws): the mask
// on z and on each item's losses, and the gradient through it.
func TestCodecQuantizerMaskMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readCodecParity(t)
	_, m := loadParityCodec(t, x)
	z := x.Tensor("mask.in.z")
	z.MustRequiresGrad_(true)
	q := m.Quantizer.ForwardPerItem(z, x.Tensor("mask.in.n"))
	codecAssertClose(t, x.Floats("mask.z"), codecFloats(q.Z), "mask.z")
	codecAssertClose(t, x.Floats("mask.commitment_loss"), codecFloats(q.CommitmentLoss), "mask.commitment_loss")
	codecAssertClose(t, x.Floats("mask.codebook_loss"), codecFloats(q.CodebookLoss), "mask.codebook_loss")
	q.Z.MustPowTensorScalar(ts.IntScalar(2), false).MustMean(gotch.Float, true).MustAdd(q.CommitmentLoss, true).MustAdd(q.CodebookLoss, true).MustBackward()
	codecAssertClose(t, x.Floats("mask.grad.z"), codecFloats(z.MustGrad(false)), "mask.grad.z")
}

// from_codes (and decoding its output) and from_latents, with all
// codebooks and with the latents of the first two only.
func TestCodecFromCodesAndLatentsMatchOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readCodecParity(t)
	_, m := loadParityCodec(t, x)
	ts.NoGrad(func() {
		codes := x.Tensor("out.codes")
		z, zp := m.Quantizer.FromCodes(codes)
		codecAssertClose(t, x.Floats("fc.z"), codecFloats(z), "fc.z")
		codecAssertClose(t, x.Floats("fc.z_p"), codecFloats(zp), "fc.z_p")
		codecAssertClose(t, x.Floats("fc.audio"), codecFloats(m.DecodeCodes(codes, 0)), "fc.audio")

		latents := x.Tensor("out.latents")
		z, zp, c := m.Quantizer.FromLatents(latents)
		codecAssertClose(t, x.Floats("fl.z"), codecFloats(z), "fl.z")
		codecAssertClose(t, x.Floats("fl.z_p"), codecFloats(zp), "fl.z_p")
		assert.Equal(t, x.Tensor("fl.codes").Int64Values(), c.Int64Values())
		z, _, c = m.Quantizer.FromLatents(latents.MustNarrow(1, 0, 8, false))
		codecAssertClose(t, x.Floats("fl2.z"), codecFloats(z), "fl2.z")
		assert.Equal(t, x.Tensor("fl2.codes").Int64Values(), c.Int64Values())
		assert.Equal(t, []int64{2, 2, 26}, c.MustSize())
	})
	err := torchmods.Try(func() { m.Quantizer.FromCodes(ts.MustFull([]int64{1, 1, 3}, ts.IntScalar(32), gotch.Int64, gotch.CPU)) })
	assert.ErrorContains(t, err, "out of range", "a code past codebook_size")
}

func TestCodecConfigErrors(t *testing.T) {
	for _, c := range []struct {
		key string
		mod func(*CodecConfig)
	}{
		{"codec.sample_rate", func(c *CodecConfig) { c.SampleRate = 0 }},
		{"codec.encoder_dim", func(c *CodecConfig) { c.EncoderDim = -1 }},
		{"codec.encoder_rates", func(c *CodecConfig) { c.EncoderRates = nil }},
		{"codec.encoder_rates", func(c *CodecConfig) { c.EncoderRates = []int64{2, 3, 8, 8} }},
		{"codec.encoder_rates", func(c *CodecConfig) { c.EncoderRates = make([]int64, 30) }},
		{"codec.decoder_dim", func(c *CodecConfig) { c.DecoderDim = 0 }},
		{"codec.decoder_dim", func(c *CodecConfig) { c.DecoderDim = 32 }}, // 6 blocks halve 32 to 0
		{"codec.decoder_rates", func(c *CodecConfig) { c.DecoderRates = []int64{8, 8, 4} }},
		{"codec.decoder_rates", func(c *CodecConfig) { c.DecoderRates = []int64{1 << 30, 2} }},
		{"codec.n_codebooks", func(c *CodecConfig) { c.NCodebooks = 0 }},
		{"codec.codebook_size", func(c *CodecConfig) { c.CodebookSize = 0 }},
		{"codec.codebook_dim", func(c *CodecConfig) { c.CodebookDim = 0 }},
	} {
		cfg := LACConfig()
		c.mod(&cfg)
		err := cfg.Validate()
		var fe *config.FieldError
		if assert.True(t, errors.As(err, &fe), "%s: %v", c.key, err) {
			assert.Equal(t, c.key, fe.Key, err.Error())
		}
		_, err = NewCodec(torchmods.NewStore(gotch.CPU).Root(), cfg)
		assert.Error(t, err, c.key)
	}
	assert.NoError(t, LACConfig().Validate())
	assert.NoError(t, codecParityConfig().Validate())
}

func TestCodecHopAndPadding(t *testing.T) {
	c := LACConfig()
	assert.Equal(t, int64(512), c.HopLength())
	assert.Equal(t, int64(1024), c.LatentDim())
	for _, l := range []struct{ samples, padded, frames int64 }{{1, 512, 1}, {511, 512, 1}, {512, 512, 1}, {513, 1024, 2}, {44100, 44544, 87}} {
		assert.Equal(t, l.padded, c.PaddedLength(l.samples), "%d samples", l.samples)
		assert.Equal(t, l.frames, c.Frames(l.samples), "%d samples", l.samples)
	}
	p := codecParityConfig()
	assert.Equal(t, int64(8), p.HopLength())
	assert.Equal(t, int64(16), p.LatentDim())

	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	m, err := NewCodec(store.Root(), p)
	require.NoError(t, err)
	audio := ts.MustRandn([]int64{2, 1, 203}, gotch.Float, gotch.CPU)
	padded, n := m.Preprocess(audio)
	assert.Equal(t, int64(203), n)
	assert.Equal(t, []int64{2, 1, 208}, padded.MustSize())
	assert.Equal(t, codecFloats(audio), codecFloats(padded.MustNarrow(2, 0, 203, false)))
	assert.Equal(t, make([]float64, 2*5), codecFloats(padded.MustNarrow(2, 203, 5, false)))
	err = torchmods.Try(func() { m.Preprocess(ts.MustZeros([]int64{2, 2, 16}, gotch.Float, gotch.CPU)) })
	assert.ErrorContains(t, err, "[B, 1, samples]")
}

// Shapes through a codec built from a config, with names as lac's.
func TestCodecShapes(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	cfg := CodecConfig{SampleRate: 8000, EncoderDim: 2, EncoderRates: []int64{2, 2}, DecoderDim: 8, DecoderRates: []int64{4},
		NCodebooks: 4, CodebookSize: 16, CodebookDim: 3, QuantizerDropout: true}
	store := torchmods.NewStore(gotch.CPU)
	m, err := NewCodec(store.Root(), cfg)
	require.NoError(t, err)
	for _, name := range []string{"encoder.block.0.weight_g", "encoder.block.1.block.2.block.1.weight_v", "encoder.block.2.block.4.bias",
		"encoder.block.4.weight_v", "quantizer.quantizers.3.codebook.weight", "quantizer.quantizers.0.in_proj.weight_g",
		"decoder.model.1.block.1.weight_g", "decoder.model.1.block.2.mrf_blocks.2.block.2.layer.3.weight_v", "decoder.model.3.bias"} {
		_, ok := store.Param(name)
		assert.True(t, ok, name)
	}
	g, _ := store.Param("decoder.model.1.block.1.weight_g") // ConvTranspose: weight_norm over its input channels
	assert.Equal(t, []int64{8, 1, 1}, g.Tensor.MustSize())

	audio := ts.MustRandn([]int64{2, 1, 37}, gotch.Float, gotch.CPU)
	for _, train := range []bool{false, true} {
		e, y := m.Forward(audio, 0, train)
		assert.Equal(t, []int64{2, 8, 10}, e.Z.MustSize())
		assert.Equal(t, []int64{2, 4, 10}, e.Codes.MustSize())
		assert.Equal(t, []int64{2, 12, 10}, e.Latents.MustSize())
		assert.Empty(t, e.CommitmentLoss.MustSize())
		assert.Equal(t, []int64{2, 1, 37}, y.MustSize())
	}
	assert.Equal(t, []int64{2, 1, 40}, m.DecodeCodes(m.Encode(audio, 0, false).Codes.MustNarrow(1, 0, 2, false), 0).MustSize())
	e := m.Encode(audio, 0, false)
	assert.Equal(t, []int64{2, 1, 25}, m.Decode(e.Z, 25).MustSize())
}

// Chunked encoding gives the whole file's codes and latents, chunked
// decoding its audio, with context on either side of each chunk.
func TestCodecChunkedMatchesWhole(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readCodecParity(t)
	_, m := loadParityCodec(t, x)
	ts.ManualSeed(3)
	audio := ts.MustRandn([]int64{2, 1, 1001}, gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(0.3), true)
	t.Logf("context: encoder %d samples, decoder %d frames", m.Cfg.EncoderContext(), m.Cfg.DecoderContext())
	ts.NoGrad(func() {
		whole := m.Encode(audio, 0, false)
		wholeAudio := m.DecodeCodes(whole.Codes, 1001)
		for _, chunk := range []int64{5, 48, 1000} {
			codes, latents := m.EncodeChunked(audio, chunk)
			assert.Equal(t, whole.Codes.Int64Values(), codes.Int64Values(), "chunk %d", chunk)
			codecAssertClose(t, codecFloats(whole.Latents), codecFloats(latents), "latents")
			y := m.DecodeChunked(whole.Codes, chunk, 1001)
			assert.Equal(t, []int64{2, 1, 1001}, y.MustSize())
			codecAssertClose(t, codecFloats(wholeAudio), codecFloats(y), "audio")
		}
		// The context is what makes them equal: a chunk decoded alone
		// differs from the whole decoding near its edges.
		alone := m.DecodeCodes(whole.Codes.MustNarrow(2, 50, 20, false), 0)
		diff := alone.MustSub(wholeAudio.MustNarrow(2, 50*8, 20*8, false), true).MustAbs(true).MustMax(true)
		assert.Greater(t, codecFloats(diff)[0], 1e-4)
	})
}

// The sizes come from the weights; LoadCodec reads audiotools' file
// layout ("state_dict." names) and refuses a file that is not exactly a LAC.
func TestCodecLoadFromFile(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readCodecParity(t)
	sd := x.StateDict("w.")
	cfg, err := CodecConfigFromWeights(sd, 16000)
	require.NoError(t, err)
	assert.Equal(t, codecParityConfig(), cfg)

	var prefixed []safetensors.Tensor
	for _, st := range sd {
		st.Name = "state_dict." + st.Name
		prefixed = append(prefixed, st)
	}
	path := filepath.Join(t.TempDir(), "codec.safetensors")
	require.NoError(t, safetensors.Write(path, prefixed, nil))
	m, store, rep, err := LoadCodec(path, 16000, gotch.CPU)
	require.NoError(t, err)
	assert.Len(t, rep.Loaded, len(store.Params()))
	assert.Empty(t, rep.Missing)
	ts.NoGrad(func() {
		assert.Equal(t, x.Tensor("out.codes").Int64Values(), m.Encode(x.Tensor("in.audio"), 0, false).Codes.Int64Values())
	})

	// One tensor missing and one extra: strict refuses and names both; the
	// partial load reports them and loads the rest.
	bad := append([]safetensors.Tensor{}, sd[1:]...)
	extra := sd[0]
	extra.Name = "quantizer.quantizers.9.codebook.weight"
	bad = append(bad, extra)
	store2 := torchmods.NewStore(gotch.CPU)
	_, err = NewCodec(store2.Root(), codecParityConfig())
	require.NoError(t, err)
	rep, err = LoadCodecWeights(store2, "", bad, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), sd[0].Name)
	assert.Contains(t, err.Error(), extra.Name)
	assert.Empty(t, rep.Loaded)
	rep, err = LoadCodecWeights(store2, "", bad, false)
	require.NoError(t, err)
	assert.Equal(t, []string{sd[0].Name}, rep.Missing)
	assert.Equal(t, []string{extra.Name}, rep.Unexpected)
	assert.Len(t, rep.Loaded, len(sd)-1)

	// Under a prefix, as part of a larger model.
	store3 := torchmods.NewStore(gotch.CPU)
	store3.Root().New("other", []int64{2}, torchmods.Const(0), true)
	_, err = NewCodec(store3.Root().Sub("codec"), codecParityConfig())
	require.NoError(t, err)
	rep, err = LoadCodecWeights(store3, "codec.", sd, true)
	require.NoError(t, err)
	assert.Len(t, rep.Loaded, len(sd))
}
