package vampnet

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The codec is the "LAC" of hugofloresgarcia/lac, the DAC-style codec
// VampNet's ismir-2023 branch imports (`from lac.model.lac import LAC as
// DAC`). It is ported from lac at 7761206878d1fba79aad314a38f975e9589af0a4
// (HEAD); its lac/ tree is the same at every commit since fac6b9b
// (2023-03-16), so this is also what that branch installed in mid 2023.
// Parameter names are lac's state_dict names, so a released codec loads
// by name (LoadCodec).
//
// descriptinc/descript-audio-codec (DAC, c7cfc5d) grew from the same code
// and differs in ways that change names and numbers, so its checkpoints do
// not load here:
//   - DAC's decoder blocks (DecoderBlock) are the transposed convolution
//     and three ResidualUnits with kernel 7, dilations 1, 3, 9
//     (block.2..4); lac's Block has one HiFi-GAN MRF block (block.2.
//     mrf_blocks.K.block.J.layer.*: kernels 3, 7, 11, dilations 1, 3, 5
//     each, the three branches averaged).
//   - DAC pads its strided convolutions ceil(stride/2), lac stride//2
//     (the same for the even rates both use), and DAC's ResidualUnit crops
//     the skip to the block's output length (a no-op with padding).
//   - DAC has a latent_dim (the encoder's last convolution may change the
//     width); lac's latent is encoder_dim * 2^len(encoder_rates).
//   - DAC takes hop_length from the encoder rates, lac from the decoder
//     rates (np.prod(decoder_rates)), which is the same number whenever the
//     codec reconstructs its input's length; CodecConfig.Validate requires
//     that.
//   - DAC's quantizer_dropout is the fraction of a batch that drops
//     codebooks, and at eval it stops running codebooks past n_quantizers;
//     lac's is a bool (the whole batch) and always runs every codebook.
//   - DAC's encode/decode take and return tensors (and it has chunked
//     compress/decompress with unpadded convolutions); lac's return dicts.

// CodecConfig is the LAC constructor's arguments (quantizer_dropout
// included), with their names.
type CodecConfig struct {
	SampleRate   int64   `toml:"sample_rate"`   // Hz; the codec only checks it (lac asserts the input's rate)
	EncoderDim   int64   `toml:"encoder_dim"`   // the first convolution's width; each encoder block doubles it
	EncoderRates []int64 `toml:"encoder_rates"` // the encoder blocks' strides, even numbers
	DecoderDim   int64   `toml:"decoder_dim"`   // the first decoder convolution's width; each decoder block halves it
	DecoderRates []int64 `toml:"decoder_rates"` // the decoder blocks' upsampling, even numbers, same product as encoder_rates
	NCodebooks   int64   `toml:"n_codebooks"`
	CodebookSize int64   `toml:"codebook_size"`
	CodebookDim  int64   `toml:"codebook_dim"` // lac also takes a list (one per codebook); only one value here
	// QuantizerDropout makes each training item use only its first n
	// codebooks, n uniform in 1..n_codebooks.
	QuantizerDropout bool `toml:"quantizer_dropout"`
}

// LACConfig is the LAC constructor's defaults (lac/model/lac.py): 44.1
// kHz, hop 512, 9 codebooks of 1024 codes of dimension 8. A released
// checkpoint's own sizes come from CodecConfigFromWeights.
func LACConfig() CodecConfig {
	return CodecConfig{SampleRate: 44100, EncoderDim: 64, EncoderRates: []int64{2, 4, 8, 8}, DecoderDim: 512,
		DecoderRates: []int64{4, 4, 4, 2, 2, 2}, NCodebooks: 9, CodebookSize: 1024, CodebookDim: 8}
}

// codecMaxRates bounds the number of blocks (widths double per block) and
// codecMaxHop the product of the rates, so that sizes cannot overflow.
const (
	codecMaxRates = 16
	codecMaxHop   = 1 << 24
)

// Validate checks the sizes fit together; errors name the key.
func (c CodecConfig) Validate() error {
	if c.SampleRate <= 0 {
		return config.Field("codec.sample_rate", "must be positive, got %d", c.SampleRate)
	}
	if c.EncoderDim <= 0 || c.EncoderDim > 1<<20 {
		return config.Field("codec.encoder_dim", "must be in [1, 2^20], got %d", c.EncoderDim)
	}
	enc, err := codecRateProduct("codec.encoder_rates", c.EncoderRates)
	if err != nil {
		return err
	}
	if c.DecoderDim <= 0 || c.DecoderDim > 1<<30 {
		return config.Field("codec.decoder_dim", "must be in [1, 2^30], got %d", c.DecoderDim)
	}
	dec, err := codecRateProduct("codec.decoder_rates", c.DecoderRates)
	if err != nil {
		return err
	}
	if c.DecoderDim>>len(c.DecoderRates) < 1 {
		return config.Field("codec.decoder_dim", "each of the %d decoder blocks halves the width: %d leaves the last one no channels", len(c.DecoderRates), c.DecoderDim)
	}
	if dec != enc {
		return config.Field("codec.decoder_rates", "must multiply to the hop length, the product of encoder_rates (%d), got %d: lac pads the input to a multiple of the decoder's product and the encoder divides it by its own", enc, dec)
	}
	switch {
	case c.NCodebooks <= 0:
		return config.Field("codec.n_codebooks", "must be positive, got %d", c.NCodebooks)
	case c.CodebookSize <= 0:
		return config.Field("codec.codebook_size", "must be positive, got %d", c.CodebookSize)
	case c.CodebookDim <= 0:
		return config.Field("codec.codebook_dim", "must be positive, got %d", c.CodebookDim)
	}
	return nil
}

// codecRateProduct checks one list of rates and returns its product.
func codecRateProduct(key string, rates []int64) (int64, error) {
	if len(rates) == 0 || len(rates) > codecMaxRates {
		return 0, config.Field(key, "must list 1 to %d rates, got %d", codecMaxRates, len(rates))
	}
	p := int64(1)
	for i, r := range rates {
		// lac pads a stride-r convolution (kernel 2r) by r//2, which keeps
		// exactly samples/r frames only for even r: an odd rate loses a
		// frame in the encoder and gains a sample in the decoder.
		if r < 2 || r%2 != 0 {
			return 0, config.Field(key, "rate %d is %d: must be an even number >= 2 (lac pads a stride r by r//2, exact only for even r)", i, r)
		}
		if p > codecMaxHop/r {
			return 0, config.Field(key, "the rates multiply past %d", codecMaxHop)
		}
		p *= r
	}
	return p, nil
}

// HopLength is the samples per frame, the product of the encoder rates
// (equal to the decoder's, which is where lac takes it from).
func (c CodecConfig) HopLength() int64 {
	p := int64(1)
	for _, r := range c.EncoderRates {
		p *= r
	}
	return p
}

// LatentDim is the encoder's output width, encoder_dim * 2^len(encoder_rates).
func (c CodecConfig) LatentDim() int64 { return c.EncoderDim << len(c.EncoderRates) }

// PaddedLength is lac's preprocess: samples rounded up to a multiple of the
// hop, the zeros going on the right.
func (c CodecConfig) PaddedLength(samples int64) int64 {
	h := c.HopLength()
	return (samples + h - 1) / h * h
}

// Frames is the number of code frames for samples of audio, ceil(samples/hop).
func (c CodecConfig) Frames(samples int64) int64 { return c.PaddedLength(samples) / c.HopLength() }

// Kernel sizes and dilations that lac fixes in code rather than in the
// constructor's arguments.
var (
	codecEncoderDilations = []int64{1, 3, 9}                           // EncoderLayer, kernel 7
	codecMRFKernels       = []int64{3, 7, 11}                          // Block's MRFBlock (resblock_kernel_sizes)
	codecMRFDilations     = [][]int64{{1, 3, 5}, {1, 3, 5}, {1, 3, 5}} // resblock_dilation_sizes
)

// EncoderContext is a bound, in samples, on how far on either side of a
// frame's hop the encoder looks: the sum of its convolutions' spans
// (kernel-1)*dilation at their input's sample rate. EncodeChunked gives
// each chunk this much context.
func (c CodecConfig) EncoderContext() int64 {
	span := int64(6) // block.0, kernel 7
	step := int64(1) // input samples per sample at this depth
	for _, r := range c.EncoderRates {
		for _, d := range codecEncoderDilations {
			span += 6 * d * step
		}
		span += (2*r - 1) * step // the strided convolution, kernel 2r
		step *= r
	}
	return span + 2*step // the last convolution, kernel 3
}

// DecoderContext is a bound, in frames, on how far on either side of a
// frame the decoder looks for the samples it writes: the sum over its
// layers of their spans at their sample rate, the widest MRF branch for
// each block (the three run side by side), 2 input samples for each
// transposed convolution (kernel 2r, stride r), rounded up, plus one.
// DecodeChunked gives each chunk this much context.
func (c CodecConfig) DecoderContext() int64 {
	span := 6.0 // model.0, kernel 7, at the frame rate
	rate := 1.0 // samples per frame at this depth
	for _, r := range c.DecoderRates {
		span += 2 / rate
		rate *= float64(r)
		widest := int64(0)
		for i, k := range codecMRFKernels {
			w := int64(0)
			for _, d := range codecMRFDilations[i] {
				w += (k-1)*d + (k - 1)
			}
			widest = max(widest, w)
		}
		span += float64(widest) / rate
	}
	span += 6 / rate // the last convolution, kernel 7
	return int64(math.Ceil(span)) + 1
}

// WNConvOptions configures a weight-normalised convolution. Dilation 0 means 1.
type WNConvOptions struct {
	In, Out, Kernel, Stride, Padding, Dilation int64
}

func (o WNConvOptions) withDefaults() WNConvOptions {
	if o.Stride == 0 {
		o.Stride = 1
	}
	if o.Dilation == 0 {
		o.Dilation = 1
	}
	return o
}

// wnConv holds torch.nn.utils.weight_norm's parameters (dim 0):
// weight = g * v / ||v||, the norm over every dimension but the first.
// Names: weight_g, weight_v, and the convolution's bias.
type wnConv struct {
	WeightG, WeightV, Bias *ts.Tensor
	WNConvOptions
}

// newWNConv registers bias, weight_g and weight_v (state_dict's order:
// weight_norm removes weight and appends g and v after the bias) with v
// and the bias drawn as PyTorch initialises the convolution,
// U(±1/sqrt(fanIn)), and g = ||v|| so that the weight starts as v, as
// weight_norm does.
func newWNConv(p torchmods.Path, o WNConvOptions, shape []int64, fanIn int64, zeroBias bool) wnConv {
	bound := 1 / math.Sqrt(float64(fanIn))
	biasInit := torchmods.Uniform(bound)
	if zeroBias {
		biasInit = torchmods.Const(0)
	}
	w := wnConv{WNConvOptions: o}
	w.Bias = p.New("bias", []int64{o.Out}, biasInit, true)
	gShape := []int64{shape[0], 1, 1}
	w.WeightG = p.New("weight_g", gShape, torchmods.Const(1), true)
	w.WeightV = p.New("weight_v", shape, torchmods.Uniform(bound), false)
	ts.NoGrad(func() {
		w.WeightG.Copy_(ts.MustNormExceptDim(w.WeightV, 2, 0))
	})
	return w
}

// Weight is the effective weight, torch._weight_norm(v, g, 0), the op
// weight_norm's hook runs before each forward.
func (w *wnConv) Weight() *ts.Tensor { return ts.Must_WeightNorm(w.WeightV, w.WeightG, 0) }

// checkInput panics unless x is [B, In, T].
func (w *wnConv) checkInput(layer string, x *ts.Tensor) {
	if s := x.MustSize(); len(s) != 3 || s[1] != w.In {
		panic(fmt.Errorf("%s: input must be [B, %d, T], got %v", layer, w.In, s))
	}
}

// WNConv1d is lac's WNConv1d: weight_norm(nn.Conv1d). Its weight_v is
// [Out, In, Kernel] and weight_g [Out, 1, 1].
type WNConv1d struct{ wnConv }

// NewWNConv1d registers a convolution under p. Its bias starts at zero, as
// LAC's init_weights sets every nn.Conv1d's. (init_weights' trunc_normal_
// on m.weight writes to the tensor weight_norm computed, not to weight_v
// or weight_g, so it changes nothing: v keeps PyTorch's default.)
func NewWNConv1d(p torchmods.Path, o WNConvOptions) *WNConv1d {
	o = o.withDefaults()
	return &WNConv1d{newWNConv(p, o, []int64{o.Out, o.In, o.Kernel}, o.In*o.Kernel, true)}
}

// Forward convolves x [B, In, T].
func (c *WNConv1d) Forward(x *ts.Tensor) *ts.Tensor {
	c.checkInput("WNConv1d", x)
	return ts.MustConv1d(x, c.Weight(), c.Bias, []int64{c.Stride}, []int64{c.Padding}, []int64{c.Dilation}, 1)
}

// WNConvTranspose1d is lac's WNConvTranspose1d: weight_norm(nn.ConvTranspose1d).
// Its weight_v is [In, Out, Kernel], so weight_norm's dim 0 normalises per
// input channel and weight_g is [In, 1, 1].
type WNConvTranspose1d struct{ wnConv }

// NewWNConvTranspose1d registers a transposed convolution under p, with
// PyTorch's default initialisation (fan_in = Out*Kernel, the weight's
// second dimension; init_weights skips it: it is no nn.Conv1d).
func NewWNConvTranspose1d(p torchmods.Path, o WNConvOptions) *WNConvTranspose1d {
	o = o.withDefaults()
	return &WNConvTranspose1d{newWNConv(p, o, []int64{o.In, o.Out, o.Kernel}, o.Out*o.Kernel, false)}
}

// Forward upsamples x [B, In, T].
func (c *WNConvTranspose1d) Forward(x *ts.Tensor) *ts.Tensor {
	c.checkInput("WNConvTranspose1d", x)
	return ts.MustConvTranspose1d(x, c.Weight(), c.Bias, []int64{c.Stride}, []int64{c.Padding}, []int64{0}, 1, []int64{c.Dilation})
}

// Snake1d is the snake activation x + sin²(αx)/(α + 1e-9), α learned per
// channel. Name: alpha, [1, C, 1] as lac has it.
type Snake1d struct{ Alpha *ts.Tensor }

// NewSnake1d registers alpha, ones, under p.
func NewSnake1d(p torchmods.Path, channels int64) *Snake1d {
	return &Snake1d{Alpha: p.New("alpha", []int64{1, channels, 1}, torchmods.Const(1), true)}
}

// Forward applies snake to x [B, C, T], in lac's order of operations.
func (s *Snake1d) Forward(x *ts.Tensor) *ts.Tensor {
	if sz := x.MustSize(); len(sz) != 3 || sz[1] != s.Alpha.MustSize()[1] {
		panic(fmt.Errorf("Snake1d: input must be [B, %d, T], got %v", s.Alpha.MustSize()[1], sz))
	}
	inv := s.Alpha.MustAddScalar(ts.FloatScalar(1e-9), false).MustReciprocal(true)
	sin2 := s.Alpha.MustMul(x, false).MustSin(true).MustPowTensorScalar(ts.IntScalar(2), true)
	return x.MustAdd(inv.MustMul(sin2, true), false)
}

// CodecResidualUnit is x + conv2(snake(conv1(snake(x)))), lac's EncoderLayer
// (names block.0..3; kernel 7 dilated, then kernel 1) and ResidualLayer
// (names layer.0..3; kernel k dilated, then kernel k), both padded to keep
// the length.
type CodecResidualUnit struct {
	Snake1 *Snake1d
	Conv1  *WNConv1d
	Snake2 *Snake1d
	Conv2  *WNConv1d
}

// newCodecResidualUnit registers a unit under p (its Sequential's path).
func newCodecResidualUnit(p torchmods.Path, dim, kernel, dilation, kernel2 int64) *CodecResidualUnit {
	return &CodecResidualUnit{
		Snake1: NewSnake1d(p.Sub("0"), dim),
		Conv1:  NewWNConv1d(p.Sub("1"), WNConvOptions{In: dim, Out: dim, Kernel: kernel, Dilation: dilation, Padding: (kernel - 1) * dilation / 2}),
		Snake2: NewSnake1d(p.Sub("2"), dim),
		Conv2:  NewWNConv1d(p.Sub("3"), WNConvOptions{In: dim, Out: dim, Kernel: kernel2, Padding: (kernel2 - 1) / 2}),
	}
}

// Forward applies the unit to x [B, dim, T].
func (u *CodecResidualUnit) Forward(x *ts.Tensor) *ts.Tensor {
	h := u.Conv2.Forward(u.Snake2.Forward(u.Conv1.Forward(u.Snake1.Forward(x))))
	return x.MustAdd(h, false)
}

// CodecEncoderBlock is three residual units (dilations 1, 3, 9) at dim/2
// channels, a snake, and a strided convolution to dim channels (kernel
// 2*stride, padding stride/2) that divides the length by the stride.
// Names: block.0..2, block.3.alpha, block.4.
type CodecEncoderBlock struct {
	Units []*CodecResidualUnit
	Snake *Snake1d
	Down  *WNConv1d
}

// NewCodecEncoderBlock registers a block under p.
func NewCodecEncoderBlock(p torchmods.Path, dim, stride int64) *CodecEncoderBlock {
	b := &CodecEncoderBlock{}
	for i, d := range codecEncoderDilations {
		b.Units = append(b.Units, newCodecResidualUnit(p.Sub(fmt.Sprintf("block.%d.block", i)), dim/2, 7, d, 1))
	}
	n := len(codecEncoderDilations)
	b.Snake = NewSnake1d(p.Sub(fmt.Sprintf("block.%d", n)), dim/2)
	b.Down = NewWNConv1d(p.Sub(fmt.Sprintf("block.%d", n+1)), WNConvOptions{In: dim / 2, Out: dim, Kernel: 2 * stride, Stride: stride, Padding: stride / 2})
	return b
}

// Forward applies the block to x [B, dim/2, T].
func (b *CodecEncoderBlock) Forward(x *ts.Tensor) *ts.Tensor {
	for _, u := range b.Units {
		x = u.Forward(x)
	}
	return b.Down.Forward(b.Snake.Forward(x))
}

// CodecEncoder is lac's Encoder: a kernel-7 convolution from the waveform to
// encoder_dim channels, one CodecEncoderBlock per rate (each doubling the
// width), a snake and a kernel-3 convolution. Names: block.0 .. block.N+2.
type CodecEncoder struct {
	In     *WNConv1d
	Blocks []*CodecEncoderBlock
	Snake  *Snake1d
	Out    *WNConv1d
	Dim    int64 // the output width, lac's enc_dim
}

// NewCodecEncoder registers an encoder under p.
func NewCodecEncoder(p torchmods.Path, dim int64, rates []int64) *CodecEncoder {
	e := &CodecEncoder{In: NewWNConv1d(p.Sub("block.0"), WNConvOptions{In: 1, Out: dim, Kernel: 7, Padding: 3})}
	for i, r := range rates {
		dim *= 2
		e.Blocks = append(e.Blocks, NewCodecEncoderBlock(p.Sub(fmt.Sprintf("block.%d", i+1)), dim, r))
	}
	n := len(rates)
	e.Snake = NewSnake1d(p.Sub(fmt.Sprintf("block.%d", n+1)), dim)
	e.Out = NewWNConv1d(p.Sub(fmt.Sprintf("block.%d", n+2)), WNConvOptions{In: dim, Out: dim, Kernel: 3, Padding: 1})
	e.Dim = dim
	return e
}

// Forward encodes audio [B, 1, S] (S a multiple of the hop) to [B, Dim,
// S/hop]. Each block runs in a scope of its own and keeps only its output,
// so that a long file's intermediates are freed as it goes (autograd keeps
// what backward needs).
func (e *CodecEncoder) Forward(x *ts.Tensor) *ts.Tensor {
	x = e.In.Forward(x)
	for _, b := range e.Blocks {
		x = codecScoped(func() *ts.Tensor { return b.Forward(x) })
	}
	return e.Out.Forward(e.Snake.Forward(x))
}

// codecScoped runs f in a scope of its own and keeps only its result.
func codecScoped(f func() *ts.Tensor) *ts.Tensor {
	sc := ts.NewScope()
	defer sc.Close()
	out := f()
	sc.Keep(out)
	return out
}

// CodecDecoderBlock is lac's Block: a snake, a transposed convolution from In
// to Out channels (kernel 2*stride, padding stride/2) multiplying the
// length by the stride, and an MRF block: three residual stacks (kernels
// 3, 7, 11, dilations 1, 3, 5 each) whose outputs are averaged. Names:
// block.0.alpha, block.1, block.2.mrf_blocks.K.block.J.layer.0..3.
type CodecDecoderBlock struct {
	Snake *Snake1d
	Up    *WNConvTranspose1d
	MRF   [][]*CodecResidualUnit // [kernel][dilation]
}

// NewCodecDecoderBlock registers a block under p.
func NewCodecDecoderBlock(p torchmods.Path, in, out, stride int64) *CodecDecoderBlock {
	b := &CodecDecoderBlock{
		Snake: NewSnake1d(p.Sub("block.0"), in),
		Up:    NewWNConvTranspose1d(p.Sub("block.1"), WNConvOptions{In: in, Out: out, Kernel: 2 * stride, Stride: stride, Padding: stride / 2}),
	}
	for k, kernel := range codecMRFKernels {
		var stack []*CodecResidualUnit
		for j, d := range codecMRFDilations[k] {
			stack = append(stack, newCodecResidualUnit(p.Sub(fmt.Sprintf("block.2.mrf_blocks.%d.block.%d.layer", k, j)), out, kernel, d, kernel))
		}
		b.MRF = append(b.MRF, stack)
	}
	return b
}

// Forward applies the block to x [B, In, T].
func (b *CodecDecoderBlock) Forward(x *ts.Tensor) *ts.Tensor {
	x = b.Up.Forward(b.Snake.Forward(x))
	var sum *ts.Tensor
	for _, stack := range b.MRF {
		h := x
		for _, u := range stack {
			h = u.Forward(h)
		}
		sum = vqAddOrFirst(sum, h)
	}
	return sum.MustDivScalar(ts.IntScalar(int64(len(b.MRF))), true)
}

// CodecDecoder is lac's Decoder: a kernel-7 convolution from the latent to
// decoder_dim channels, one CodecDecoderBlock per rate (each halving the width),
// a snake, a kernel-7 convolution to one channel and tanh. Names:
// model.0 .. model.N+2 (model.N+3 is the tanh).
type CodecDecoder struct {
	In     *WNConv1d
	Blocks []*CodecDecoderBlock
	Snake  *Snake1d
	Out    *WNConv1d
}

// NewCodecDecoder registers a decoder under p.
func NewCodecDecoder(p torchmods.Path, latent, channels int64, rates []int64) *CodecDecoder {
	d := &CodecDecoder{In: NewWNConv1d(p.Sub("model.0"), WNConvOptions{In: latent, Out: channels, Kernel: 7, Padding: 3})}
	out := channels
	for i, r := range rates {
		in := channels >> i
		out = channels >> (i + 1)
		d.Blocks = append(d.Blocks, NewCodecDecoderBlock(p.Sub(fmt.Sprintf("model.%d", i+1)), in, out, r))
	}
	n := len(rates)
	d.Snake = NewSnake1d(p.Sub(fmt.Sprintf("model.%d", n+1)), out)
	d.Out = NewWNConv1d(p.Sub(fmt.Sprintf("model.%d", n+2)), WNConvOptions{In: out, Out: 1, Kernel: 7, Padding: 3})
	return d
}

// Forward decodes z [B, latent, T] to audio [B, 1, T*hop] in [-1, 1],
// each block in a scope of its own as CodecEncoder.Forward.
func (d *CodecDecoder) Forward(z *ts.Tensor) *ts.Tensor {
	x := d.In.Forward(z)
	for _, b := range d.Blocks {
		x = codecScoped(func() *ts.Tensor { return b.Forward(x) })
	}
	return d.Out.Forward(d.Snake.Forward(x)).MustTanh(true)
}

// Codec is lac's LAC: encoder, residual VQ and decoder, named encoder.*,
// quantizer.quantizers.N.* and decoder.model.*.
type Codec struct {
	Encoder   *CodecEncoder
	Quantizer *ResidualVQ
	Decoder   *CodecDecoder
	Cfg       CodecConfig
}

// NewCodec validates c and registers a codec under p, initialised as LAC's
// constructor does (PyTorch's defaults, zero biases for the plain
// convolutions, snake alphas one, codebooks N(0, 1)).
func NewCodec(p torchmods.Path, c CodecConfig) (*Codec, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var m *Codec
	err := torchmods.Try(func() {
		enc := NewCodecEncoder(p.Sub("encoder"), c.EncoderDim, c.EncoderRates)
		m = &Codec{
			Encoder:   enc,
			Quantizer: NewResidualVQ(p.Sub("quantizer"), enc.Dim, c.NCodebooks, c.CodebookSize, c.CodebookDim, c.QuantizerDropout),
			Decoder:   NewCodecDecoder(p.Sub("decoder"), enc.Dim, c.DecoderDim, c.DecoderRates),
			Cfg:       c,
		}
	})
	if err != nil {
		return nil, fmt.Errorf("codec: %w", err)
	}
	return m, nil
}

// codecCheckAudio panics unless audio is [B, 1, S] with S > 0.
func codecCheckAudio(audio *ts.Tensor) {
	if s := audio.MustSize(); len(s) != 3 || s[1] != 1 || s[2] < 1 {
		panic(fmt.Errorf("codec: audio must be [B, 1, samples] (mono, samples > 0), got %v", s))
	}
}

// Preprocess pads audio [B, 1, S] on the right with zeros to a multiple of
// the hop and returns it with S, as LAC.preprocess.
func (m *Codec) Preprocess(audio *ts.Tensor) (*ts.Tensor, int64) {
	codecCheckAudio(audio)
	n := audio.MustSize()[2]
	return audio.MustConstantPadNd([]int64{0, m.Cfg.PaddedLength(n) - n}, false), n
}

// EncodedAudio is LAC.encode's output: the residual VQ's and the input's length.
type EncodedAudio struct {
	Quantized
	Length int64 // samples before padding, for Decode
}

// Encode encodes audio [B, 1, S] as LAC.encode: pad, encode, quantize
// with the first nQuantizers codebooks (0: all; in training with quantizer
// dropout, a draw per item). Codes are [B, n_codebooks, ceil(S/hop)].
func (m *Codec) Encode(audio *ts.Tensor, nQuantizers int64, train bool) EncodedAudio {
	x, n := m.Preprocess(audio)
	return EncodedAudio{Quantized: m.Quantizer.Forward(m.Encoder.Forward(x), nQuantizers, train), Length: n}
}

// Decode decodes the quantized signal z [B, latent, T] to audio [B, 1,
// length] (length 0 or past T*hop: all T*hop samples), as LAC.decode.
func (m *Codec) Decode(z *ts.Tensor, length int64) *ts.Tensor {
	y := m.Decoder.Forward(z)
	if full := y.MustSize()[2]; length > 0 && length < full {
		y = y.MustNarrow(2, 0, length, true)
	}
	return y
}

// DecodeCodes decodes codes [B, n, T] (the first n codebooks) to audio, as
// codec.decode(codec.quantizer.from_codes(codes)[0]).
func (m *Codec) DecodeCodes(codes *ts.Tensor, length int64) *ts.Tensor {
	z, _ := m.Quantizer.FromCodes(codes)
	return m.Decode(z, length)
}

// Forward is LAC.forward: encode, then decode the quantized signal to the
// input's length. The training loss adds the returned VQ losses.
func (m *Codec) Forward(audio *ts.Tensor, nQuantizers int64, train bool) (EncodedAudio, *ts.Tensor) {
	e := m.Encode(audio, nQuantizers, train)
	return e, m.Decode(e.Z, e.Length)
}

// EncodeChunked encodes a long file, audio [B, 1, S], chunkFrames frames
// at a time, without gradients, and returns the codes and latents of
// every codebook, as Encode would for the whole file.
//
// Chunks are not overlapped and added (lac's CodecMixin.reconstruct
// cross-fades windows encoded apart, which yields audio but no single code
// sequence). Instead each chunk is encoded with EncoderContext samples of
// the file on either side (rounded up to whole frames; fewer at the file's
// ends, where the whole-file encoding sees lac's zero padding too), and
// only its own frames are kept. A kept frame's receptive field then lies
// inside the chunk, so it is computed from the same samples as in the
// whole-file encoding: the codes are the same, the latents equal up to
// float rounding (a convolution over a shorter input may sum in another
// order), which could flip a code only at a near tie. Memory is bounded by
// the chunk plus its context.
func (m *Codec) EncodeChunked(audio *ts.Tensor, chunkFrames int64) (codes, latents *ts.Tensor) {
	if chunkFrames < 1 {
		panic(fmt.Errorf("codec: EncodeChunked: chunkFrames must be positive, got %d", chunkFrames))
	}
	hop := m.Cfg.HopLength()
	margin := (m.Cfg.EncoderContext() + hop - 1) / hop
	ts.NoGrad(func() {
		x, _ := m.Preprocess(audio)
		frames := x.MustSize()[2] / hop
		var cs, ls []*ts.Tensor
		for f0 := int64(0); f0 < frames; f0 += chunkFrames {
			f1 := min(frames, f0+chunkFrames)
			a, b := max(0, f0-margin), min(frames, f1+margin)
			c, l := func() (*ts.Tensor, *ts.Tensor) {
				sc := ts.NewScope()
				defer sc.Close()
				q := m.Quantizer.Forward(m.Encoder.Forward(x.MustNarrow(2, a*hop, (b-a)*hop, false)), 0, false)
				c := q.Codes.MustNarrow(2, f0-a, f1-f0, false).MustContiguous(true)
				l := q.Latents.MustNarrow(2, f0-a, f1-f0, false).MustContiguous(true)
				sc.Keep(c, l)
				return c, l
			}()
			cs, ls = append(cs, c), append(ls, l)
		}
		codes, latents = ts.MustCat(cs, 2), ts.MustCat(ls, 2)
	})
	return codes, latents
}

// DecodeChunked decodes codes [B, n, T] chunkFrames frames at a time,
// without gradients, to audio [B, 1, length] (0: T*hop), as DecodeCodes
// would for the whole sequence. Each chunk is decoded with DecoderContext
// frames of codes on either side (fewer at the ends) and only its own
// samples are kept, so they come from the same codes as in the whole
// decoding: equal up to float rounding.
func (m *Codec) DecodeChunked(codes *ts.Tensor, chunkFrames, length int64) *ts.Tensor {
	if chunkFrames < 1 {
		panic(fmt.Errorf("codec: DecodeChunked: chunkFrames must be positive, got %d", chunkFrames))
	}
	if s := codes.MustSize(); len(s) != 3 {
		panic(fmt.Errorf("codec: DecodeChunked: codes must be [B, n, T], got %v", s))
	}
	hop, margin := m.Cfg.HopLength(), m.Cfg.DecoderContext()
	var out *ts.Tensor
	ts.NoGrad(func() {
		frames := codes.MustSize()[2]
		var ys []*ts.Tensor
		for f0 := int64(0); f0 < frames; f0 += chunkFrames {
			f1 := min(frames, f0+chunkFrames)
			a, b := max(0, f0-margin), min(frames, f1+margin)
			ys = append(ys, codecScoped(func() *ts.Tensor {
				y := m.DecodeCodes(codes.MustNarrow(2, a, b-a, false), 0)
				return y.MustNarrow(2, (f0-a)*hop, (f1-f0)*hop, true).MustContiguous(true)
			}))
		}
		out = ts.MustCat(ys, 2)
		if length > 0 && length < frames*hop {
			out = out.MustNarrow(2, 0, length, true)
		}
	})
	return out
}

// ReadCodecWeights reads a lac codec's state dict from a safetensors or
// torch.save file. A torch.save file may hold the bare state dict or
// audiotools' BaseModel file, {"state_dict": ..., "metadata": {"kwargs":
// ...}} (what LAC.save(..., package=False) and lac's training script
// write; the kwargs, not tensors, are skipped, which is why the sizes are
// read from the tensors' shapes); its "state_dict." prefix is removed.
// audiotools' default torch.package archives hold pickled code and are not
// read: load one in Python and torch.save its state_dict().
func ReadCodecWeights(path string) ([]safetensors.Tensor, error) {
	w, err := torchmods.ReadWeights(path)
	if err != nil {
		return nil, err
	}
	tensors := w.Tensors
	prefixed := 0
	for _, t := range tensors {
		if strings.HasPrefix(t.Name, "state_dict.") {
			prefixed++
		}
	}
	if prefixed > 0 && prefixed == len(tensors) {
		for i := range tensors {
			tensors[i].Name = strings.TrimPrefix(tensors[i].Name, "state_dict.")
		}
	}
	if len(tensors) == 0 {
		return nil, fmt.Errorf("%s: no tensors", path)
	}
	return tensors, nil
}

// CodecConfigFromWeights reads a lac codec's sizes from its state dict's
// shapes: encoder_dim from encoder.block.0, a rate per encoder block from
// its strided convolution's kernel (2*rate), decoder_dim and a rate per
// decoder block likewise, the codebooks from quantizer.quantizers.N.
// codebook.weight. The sample rate is not in the weights: sampleRate (0:
// LAC's default, 44100) is taken as given. A DAC state dict is recognised
// and refused.
func CodecConfigFromWeights(tensors []safetensors.Tensor, sampleRate int64) (CodecConfig, error) {
	shapes := map[string][]int64{}
	for _, t := range tensors {
		shapes[t.Name] = t.Shape
	}
	get := func(format string, a ...any) ([]int64, bool) {
		s, ok := shapes[fmt.Sprintf(format, a...)]
		return s, ok
	}
	if sampleRate == 0 {
		sampleRate = LACConfig().SampleRate
	}
	c := CodecConfig{SampleRate: sampleRate}
	s, ok := get("encoder.block.0.weight_v")
	if !ok || len(s) != 3 {
		return c, fmt.Errorf("not a lac codec state dict: no encoder.block.0.weight_v [encoder_dim, 1, 7]")
	}
	c.EncoderDim = s[0]
	for i := 1; ; i++ {
		s, ok := get("encoder.block.%d.block.4.weight_v", i)
		if !ok || len(s) != 3 {
			break
		}
		c.EncoderRates = append(c.EncoderRates, s[2]/2)
	}
	if _, dac := get("decoder.model.1.block.4.block.0.alpha"); dac {
		return c, fmt.Errorf("a descript-audio-codec (DAC) state dict: its decoder blocks are residual units (decoder.model.N.block.2..4), not lac's MRF blocks, so it does not load into lac's LAC")
	}
	s, ok = get("decoder.model.0.weight_v")
	if !ok || len(s) != 3 {
		return c, fmt.Errorf("not a lac codec state dict: no decoder.model.0.weight_v [decoder_dim, latent, 7]")
	}
	c.DecoderDim = s[0]
	for i := 1; ; i++ {
		s, ok := get("decoder.model.%d.block.1.weight_v", i)
		if !ok || len(s) != 3 {
			break
		}
		c.DecoderRates = append(c.DecoderRates, s[2]/2)
	}
	for i := 0; ; i++ {
		s, ok := get("quantizer.quantizers.%d.codebook.weight", i)
		if !ok || len(s) != 2 {
			break
		}
		if i > 0 && (s[0] != c.CodebookSize || s[1] != c.CodebookDim) {
			return c, fmt.Errorf("codebook %d is %v, codebook 0 [%d %d]: per-codebook sizes are not supported", i, s, c.CodebookSize, c.CodebookDim)
		}
		c.NCodebooks, c.CodebookSize, c.CodebookDim = int64(i+1), s[0], s[1]
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("sizes read from the weights: %w", err)
	}
	return c, nil
}

// LoadCodecWeights loads a codec state dict into the store's parameters
// under prefix ("" when the codec is the store's root, "codec." when a
// larger model holds it), converting each tensor to the parameter's dtype
// and device. The report lists the codec's parameters the weights lack
// (under prefix only), the weights' tensors that name no parameter and
// shape mismatches. Strict loading fails, changing nothing, unless the
// codec's parameters and the weights match one to one.
func LoadCodecWeights(store *torchmods.Store, prefix string, tensors []safetensors.Tensor, strict bool) (torchmods.LoadReport, error) {
	var rep torchmods.LoadReport
	names := map[string]bool{}
	for _, t := range tensors {
		names[prefix+t.Name] = true
		p, ok := store.Param(prefix + t.Name)
		if !ok {
			rep.Unexpected = append(rep.Unexpected, prefix+t.Name)
		} else if !slices.Equal(p.Tensor.MustSize(), t.Shape) {
			rep.Mismatched = append(rep.Mismatched, fmt.Sprintf("%s: model %v weights %v", p.Name, p.Tensor.MustSize(), t.Shape))
		}
	}
	for _, p := range store.Params() {
		if strings.HasPrefix(p.Name, prefix) && !names[p.Name] {
			rep.Missing = append(rep.Missing, p.Name)
		}
	}
	sort.Strings(rep.Unexpected)
	if strict && len(rep.Missing)+len(rep.Unexpected)+len(rep.Mismatched) > 0 {
		return rep, fmt.Errorf("strict codec load refused, nothing changed: %s", rep)
	}
	weights := map[string]*ts.Tensor{}
	defer func() {
		for _, w := range weights {
			w.MustDrop()
		}
	}()
	for _, t := range tensors {
		if _, ok := store.Param(prefix + t.Name); !ok {
			continue
		}
		x, err := torchmods.FromSafetensors(t, store.Device)
		if err != nil {
			return rep, err
		}
		weights[prefix+t.Name] = x
	}
	loaded, err := store.Load(weights, false)
	rep.Loaded = loaded.Loaded
	return rep, err
}

// LoadCodec reads a released lac codec (ReadCodecWeights), builds a codec
// of the sizes its shapes give (sampleRate 0: 44100) in a new store on dev
// and loads it strictly, so that a file that is not exactly a LAC of those
// sizes is an error listing the missing and unexpected names.
func LoadCodec(path string, sampleRate int64, dev gotch.Device) (*Codec, *torchmods.Store, torchmods.LoadReport, error) {
	tensors, err := ReadCodecWeights(path)
	if err != nil {
		return nil, nil, torchmods.LoadReport{}, err
	}
	cfg, err := CodecConfigFromWeights(tensors, sampleRate)
	if err != nil {
		return nil, nil, torchmods.LoadReport{}, fmt.Errorf("%s: %w", path, err)
	}
	store := torchmods.NewStore(dev)
	m, err := NewCodec(store.Root(), cfg)
	if err != nil {
		return nil, nil, torchmods.LoadReport{}, fmt.Errorf("%s: %w", path, err)
	}
	rep, err := LoadCodecWeights(store, "", tensors, true)
	if err != nil {
		store.Drop()
		return nil, nil, rep, fmt.Errorf("%s: %w", path, err)
	}
	return m, store, rep, nil
}
