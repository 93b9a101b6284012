package audio

// VGGish (Hershey et al., ICASSP 2017) as harritaylor/torchvggish defines
// it (commit f3f90969ce8fb77a05d984b892ddf662e8466377; torchvggish/ last
// changed in f70241b), for the Fréchet Audio Distance (Kilgour et al.,
// 2019), which compares Gaussians fitted to VGGish embeddings of two sets
// of audio. FAD is not computed here: vampnet.FrechetDistance does it and
// vampnet imports audio, so audio gives the embeddings and the caller
// composes:
//
//	m, err := audio.LoadVGGish("vggish-10086976.pth", "", gotch.CPU)
//	a, err := m.Embeddings(real)   // one 128-d row per 0.96 s
//	b, err := m.Embeddings(fake)
//	fad, err := vampnet.FrechetDistance(a, b)
//
// Three parts, each matched to the official code by a parity test
// (testdata/gen_vggish_parity.py runs it):
//
//   - the input pipeline of vggish_input.py and mel_features.py, in Go
//     float64 as the numpy code computes it: mono, 16 kHz, |STFT| with a
//     25 ms periodic Hann window and a 10 ms hop (FFT 512), 64 HTK-mel bands
//     from 125 to 7500 Hz (spectrogram_to_mel_matrix, which is not librosa's
//     Slaney filterbank, see HzToMel), log(mel + 0.01), framed into
//     examples of 96 frames every 96 frames;
//   - the network of vggish.py: make_layers' VGG stack and VGG's embeddings
//     MLP, with the state-dict names features.N.* and embeddings.N.*;
//   - the Postprocessor (pproc.pca_eigen_vectors, pproc.pca_means): PCA,
//     clipping to [-2, 2] and 8-bit quantisation, as AudioSet's released
//     embeddings were made.

import (
	"fmt"
	"math"
	"math/cmplx"
	"slices"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// VGGish's input constants (vggish_params.py).
const (
	VGGishSampleRate    = 16000
	VGGishWindow        = 400 // 25 ms at 16 kHz
	VGGishHop           = 160 // 10 ms
	VGGishFFT           = 512 // the next power of 2 above the window
	VGGishMelBands      = 64
	VGGishMelMin        = 125.0
	VGGishMelMax        = 7500.0
	VGGishLogOffset     = 0.01
	VGGishExampleFrames = 96 // 0.96 s of 10 ms frames, with a 0.96 s hop
	VGGishEmbeddingSize = 128
	vggishQuantizeMin   = -2.0
	vggishQuantizeMax   = 2.0
)

// vggishHzToMel is mel_features.hertz_to_mel, HTK's formula
// 1127 ln(1 + f/700), which VGGish's filterbank is built on (not the
// Slaney scale of HzToMel and librosa's default).
func vggishHzToMel(f float64) float64 { return 1127.0 * math.Log(1+f/700.0) }

// linspace is np.linspace(start, stop, n): start + i*step, the last point
// exactly stop.
func linspace(start, stop float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (stop - start) / float64(n-1)
	for i := range out {
		out[i] = start + float64(i)*step
	}
	out[n-1] = stop
	return out
}

// VGGishMelMatrix is mel_features.spectrogram_to_mel_matrix(64, 257,
// 16000, 125, 7500): [257 bins][64 bands], triangles linear in HTK mel
// between band edges evenly spaced in mel, each band's peak 1 (no area
// normalisation), and the DC bin's row zero as HTK has it.
func VGGishMelMatrix() [][]float64 {
	return melMatrixHTK(VGGishMelBands, VGGishFFT/2+1, VGGishSampleRate, VGGishMelMin, VGGishMelMax)
}

func melMatrixHTK(nMel, nSpec int, rate, lo, hi float64) [][]float64 {
	binsMel := linspace(0, rate/2, nSpec)
	for i, f := range binsMel {
		binsMel[i] = vggishHzToMel(f)
	}
	edges := linspace(vggishHzToMel(lo), vggishHzToMel(hi), nMel+2)
	m := make([][]float64, nSpec)
	for k := range m {
		m[k] = make([]float64, nMel)
		if k == 0 {
			continue // DC gets no weight
		}
		for i := range nMel {
			lower := (binsMel[k] - edges[i]) / (edges[i+1] - edges[i])
			upper := (edges[i+2] - binsMel[k]) / (edges[i+2] - edges[i+1])
			m[k][i] = max(0, min(lower, upper))
		}
	}
	return m
}

// fft is an in-place iterative radix-2 FFT; len(x) must be a power of 2.
func fft(x []complex128) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j |= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		w := cmplx.Exp(complex(0, -2*math.Pi/float64(size)))
		for start := 0; start < n; start += size {
			wk := complex(1, 0)
			for k := range size / 2 {
				u, v := x[start+k], x[start+k+size/2]*wk
				x[start+k], x[start+k+size/2] = u+v, u-v
				wk *= w
			}
		}
	}
}

// VGGishLogMel is mel_features.log_mel_spectrogram as vggish_input calls
// it, for 16 kHz samples x: frames of 400 samples every 160 (no padding;
// an incomplete last frame is dropped, so fewer than 400 samples give no
// frame), each times the periodic Hann window 0.5 - 0.5 cos(2πn/400),
// |rfft| with 512 points, times VGGishMelMatrix, then log(mel + 0.01).
// Rows are frames, columns the 64 bands. float64 throughout, as numpy.
func VGGishLogMel(x []float64) [][]float64 {
	if len(x) < VGGishWindow {
		return nil
	}
	nFrames := 1 + (len(x)-VGGishWindow)/VGGishHop
	win := make([]float64, VGGishWindow)
	for i := range win {
		win[i] = 0.5 - 0.5*math.Cos(2*math.Pi/float64(VGGishWindow)*float64(i))
	}
	mel := VGGishMelMatrix()
	out := make([][]float64, nFrames)
	buf := make([]complex128, VGGishFFT)
	mag := make([]float64, VGGishFFT/2+1)
	for t := range out {
		clear(buf)
		for i, w := range win {
			buf[i] = complex(x[t*VGGishHop+i]*w, 0)
		}
		fft(buf)
		for k := range mag {
			mag[k] = cmplx.Abs(buf[k])
		}
		row := make([]float64, VGGishMelBands)
		for k, s := range mag {
			if s == 0 {
				continue
			}
			for b, w := range mel[k] {
				row[b] += s * w
			}
		}
		for b := range row {
			row[b] = math.Log(row[b] + VGGishLogOffset)
		}
		out[t] = row
	}
	return out
}

// VGGishExamples is vggish_input.waveform_to_examples: a's channels
// averaged to mono (np.mean over channels), resampled to 16 kHz when a has
// another rate, VGGishLogMel, then examples of 96 frames (0.96 s) every 96
// frames, [example][frame][band], an incomplete last example dropped (so
// audio under 0.975 s gives none).
//
// The resampling differs from the official code's: torchvggish calls
// resampy (a Kaiser-windowed sinc), this package's Resample is julius'
// windowed sinc, so audio at another rate gets slightly different
// features; 16 kHz audio is bit-for-bit the official path.
func VGGishExamples(a *Audio) ([][][]float64, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	if a.NumChannels() == 0 {
		return nil, fmt.Errorf("vggish: audio has no channels")
	}
	m := a.Mono()
	if a.SampleRate != VGGishSampleRate {
		var err error
		if m, err = m.Resample(VGGishSampleRate); err != nil {
			return nil, fmt.Errorf("vggish: %w", err)
		}
	}
	x := make([]float64, m.Len())
	for i, v := range m.Channels[0] {
		x[i] = float64(v)
	}
	logMel := VGGishLogMel(x)
	var out [][][]float64
	for s := 0; s+VGGishExampleFrames <= len(logMel); s += VGGishExampleFrames {
		out = append(out, logMel[s:s+VGGishExampleFrames])
	}
	return out, nil
}

// VGGishConfig sizes a VGGish. The zero value is the released model;
// the other widths exist for tests (the parity fixture's model is narrow).
type VGGishConfig struct {
	// Widths are the six conv widths of make_layers; nil is
	// 64, 128, 256, 256, 512, 512.
	Widths []int64
	// Hidden is the width of the two hidden embeddings layers; 0 is 4096.
	Hidden int64
	// NoPCA leaves out the Postprocessor (pproc.*), as
	// VGGish(postprocess=False) does.
	NoPCA bool
}

// vggishConfigFromShapes reads the conv widths and the hidden width from a
// state dict's shapes (features.N.weight [out, in, 3, 3], embeddings.0.weight
// [hidden, ...]), so that a narrower VGGish (a test's) loads as the
// released one does; names it lacks keep the released sizes, and the
// strict load then reports them.
func vggishConfigFromShapes(tensors []safetensors.Tensor, noPCA bool) VGGishConfig {
	c := VGGishConfig{NoPCA: noPCA}.withDefaults()
	widths := append([]int64(nil), c.Widths...)
	for _, t := range tensors {
		for i, l := range vggishLayout {
			if t.Name == fmt.Sprintf("features.%d.weight", l.index) && len(t.Shape) == 4 {
				widths[i] = t.Shape[0]
			}
		}
		if t.Name == "embeddings.0.weight" && len(t.Shape) == 2 {
			c.Hidden = t.Shape[0]
		}
	}
	c.Widths = widths
	return c
}

func (c VGGishConfig) withDefaults() VGGishConfig {
	if c.Widths == nil {
		c.Widths = []int64{64, 128, 256, 256, 512, 512}
	}
	if c.Hidden == 0 {
		c.Hidden = 4096
	}
	return c
}

// vggishLayout is make_layers' [64, M, 128, M, 256, 256, M, 512, 512, M]:
// the index in features of each conv (its ReLU follows at index+1) and
// whether a 2x2 max pool comes after that ReLU.
var vggishLayout = []struct {
	index int
	pool  bool
}{{0, true}, {3, true}, {6, false}, {8, true}, {11, false}, {13, true}}

// VGGish is torchvggish's VGGish network (VGG) with its optional
// Postprocessor, parameters named as its state_dict:
//
//	features.{0,3,6,8,11,13}.{weight,bias}   Conv2d 3x3, padding 1
//	embeddings.{0,2,4}.{weight,bias}         Linear 512*4*6 -> 4096 -> 4096 -> 128
//	pproc.pca_eigen_vectors [128, 128]       (unless NoPCA)
//	pproc.pca_means [128, 1]
//
// Every conv and linear layer is followed by a ReLU, the last linear
// layer's included: torchvggish has that ReLU, Google's TensorFlow VGGish
// (fc2 with no activation) has not; see EmbedOptions.
type VGGish struct {
	Config          VGGishConfig // with defaults filled in
	ConvW, ConvB    []*ts.Tensor
	FC              [3]*torchmods.Linear
	PCAEigenVectors *ts.Tensor // nil with NoPCA
	PCAMeans        *ts.Tensor
	path            torchmods.Path
}

// NewVGGish registers a VGGish under p with PyTorch's default
// initialisation (nn.Conv2d's and nn.Linear's U(±1/sqrt(fan_in))); the PCA
// parameters, torch.empty in torchvggish, are zeros until loaded. It
// fails on a config that cannot build a model.
func NewVGGish(p torchmods.Path, c VGGishConfig) (*VGGish, error) {
	c = c.withDefaults()
	if len(c.Widths) != len(vggishLayout) {
		return nil, fmt.Errorf("vggish: %d conv widths, want %d", len(c.Widths), len(vggishLayout))
	}
	for _, w := range c.Widths {
		if w <= 0 {
			return nil, fmt.Errorf("vggish: conv widths %v must be positive", c.Widths)
		}
	}
	if c.Hidden <= 0 {
		return nil, fmt.Errorf("vggish: hidden width %d must be positive", c.Hidden)
	}
	m := &VGGish{Config: c, path: p}
	err := torchmods.Try(func() {
		in := int64(1)
		feat := p.Sub("features")
		for i, l := range vggishLayout {
			q := feat.Sub(fmt.Sprint(l.index))
			out := c.Widths[i]
			fanIn := in * 9
			m.ConvW = append(m.ConvW, q.New("weight", []int64{out, in, 3, 3}, torchmods.FanInUniform(fanIn), false))
			m.ConvB = append(m.ConvB, q.New("bias", []int64{out}, torchmods.FanInUniform(fanIn), true))
			in = out
		}
		emb := p.Sub("embeddings")
		dims := []int64{in * 4 * 6, c.Hidden, c.Hidden, VGGishEmbeddingSize}
		for i := range m.FC {
			m.FC[i] = torchmods.NewLinear(emb.Sub(fmt.Sprint(2*i)), torchmods.LinearOptions{In: dims[i], Out: dims[i+1]})
		}
		if !c.NoPCA {
			pp := p.Sub("pproc")
			m.PCAEigenVectors = pp.NewBuffer("pca_eigen_vectors", []int64{VGGishEmbeddingSize, VGGishEmbeddingSize}, torchmods.Const(0))
			m.PCAMeans = pp.NewBuffer("pca_means", []int64{VGGishEmbeddingSize, 1}, torchmods.Const(0))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("vggish: %w", err)
	}
	return m, nil
}

// Features is the VGG stack: x [N, 1, 96, 64] (examples of frames x
// bands) to [N, Widths[5], 6, 4].
func (m *VGGish) Features(x *ts.Tensor) *ts.Tensor {
	if s := x.MustSize(); len(s) != 4 || s[1] != 1 || s[2] != VGGishExampleFrames || s[3] != VGGishMelBands {
		panic(fmt.Errorf("vggish: input shape %v, want [N, 1, %d, %d]", s, VGGishExampleFrames, VGGishMelBands))
	}
	for i, l := range vggishLayout {
		x = ts.MustConv2d(x, m.ConvW[i], m.ConvB[i], []int64{1, 1}, []int64{1, 1}, []int64{1, 1}, 1).MustRelu(true)
		if l.pool {
			x = x.MustMaxPool2d([]int64{2, 2}, []int64{2, 2}, []int64{0, 0}, []int64{1, 1}, false, true)
		}
	}
	return x
}

// Embed is VGG.forward on examples x [N, 1, 96, 64]: Features, then
// transposed to [N, 6, 4, C] (channels last, as the TensorFlow model that
// the weights come from flattened them) and flattened, then the embeddings
// MLP, to [N, 128]. finalReLU applies the last layer's ReLU, which
// torchvggish has and TensorFlow's VGGish has not.
func (m *VGGish) Embed(x *ts.Tensor, finalReLU bool) *ts.Tensor {
	h := m.Features(x).MustPermute([]int64{0, 2, 3, 1}, true).MustContiguous(true)
	h = h.MustFlatten(1, -1, true)
	for i, l := range m.FC {
		h = l.Forward(h)
		if i < len(m.FC)-1 || finalReLU {
			h = h.MustRelu(true)
		}
	}
	return h
}

// Forward is torchvggish's VGG.forward: Embed with the final ReLU.
func (m *VGGish) Forward(x *ts.Tensor) *ts.Tensor { return m.Embed(x, true) }

// Postprocess is Postprocessor.postprocess on embeddings e [N, 128]:
// pca_eigen_vectors (e - pca_means) per row, clipped to [-2, 2] and
// quantised to round((v + 2) * 255/4), integers 0..255 as float32 (round
// half to even, as torch.round). The official code squeezes the result (a
// single example comes back as [128]); this keeps [N, 128].
func (m *VGGish) Postprocess(e *ts.Tensor) *ts.Tensor {
	if m.PCAEigenVectors == nil {
		panic(fmt.Errorf("vggish: Postprocess on a model built with NoPCA"))
	}
	mustLastDimVGGish(e, VGGishEmbeddingSize)
	centred := e.MustT(false).MustSub(m.PCAMeans, true)
	p := m.PCAEigenVectors.MustMm(centred, false).MustT(true)
	p = p.MustClamp(ts.FloatScalar(vggishQuantizeMin), ts.FloatScalar(vggishQuantizeMax), true)
	p = p.MustSubScalar(ts.FloatScalar(vggishQuantizeMin), true).
		MustMulScalar(ts.FloatScalar(255.0/(vggishQuantizeMax-vggishQuantizeMin)), true)
	return p.MustRound(true)
}

func mustLastDimVGGish(x *ts.Tensor, want int64) {
	s := x.MustSize()
	if len(s) != 2 || s[1] != want {
		panic(fmt.Errorf("vggish: embeddings shape %v, want [N, %d]", s, want))
	}
}

// EmbedOptions chooses which of VGGish's outputs EmbeddingsWith returns.
type EmbedOptions struct {
	// FinalReLU keeps torchvggish's ReLU after the last layer.
	FinalReLU bool
	// PCA applies the Postprocessor (PCA, clipping, 8-bit quantisation) to
	// the output, as AudioSet's released embeddings; it needs a model
	// with PCA parameters loaded.
	PCA bool
	// Batch is how many examples go through the network at once; 0 is 64.
	Batch int
}

// Embeddings are a's VGGish embeddings for FAD: one 128-d row per 0.96 s
// example (VGGishExamples; audio under 0.975 s has none), the raw output
// of the last layer, with neither its ReLU nor the PCA postprocessing.
// That is the embedding the FAD paper used (Google's TensorFlow VGGish,
// whose last layer has no activation, and no PCA), and what the
// frechet_audio_distance package computes from torchvggish by default
// (use_pca=False, use_activation=False, dropping embeddings' last ReLU),
// so FAD values compare with published ones. A ReLU'd embedding would
// put half its coordinates at 0, and the quantised PCA one is coarse;
// EmbeddingsWith gives both.
func (m *VGGish) Embeddings(a *Audio) ([][]float64, error) {
	return m.EmbeddingsWith(a, EmbedOptions{})
}

// EmbeddingsWith is Embeddings with the chosen outputs; EmbedOptions{
// FinalReLU: true, PCA: true} is torchvggish's VGGish() as the hub makes
// it (preprocess and postprocess on). Rows are float64 copies of the
// model's float32 outputs.
func (m *VGGish) EmbeddingsWith(a *Audio, o EmbedOptions) ([][]float64, error) {
	if o.PCA && m.PCAEigenVectors == nil {
		return nil, fmt.Errorf("vggish: PCA asked of a model built without the Postprocessor")
	}
	ex, err := VGGishExamples(a)
	if err != nil {
		return nil, err
	}
	return m.embedExamples(ex, o)
}

func (m *VGGish) embedExamples(ex [][][]float64, o EmbedOptions) ([][]float64, error) {
	batch := o.Batch
	if batch <= 0 {
		batch = 64
	}
	out := make([][]float64, 0, len(ex))
	dev := m.path.Store().Device
	for start := 0; start < len(ex); start += batch {
		chunk := ex[start:min(start+batch, len(ex))]
		err := torchmods.Try(func() {
			s := ts.NewScope()
			defer s.Close()
			flat := make([]float32, 0, len(chunk)*VGGishExampleFrames*VGGishMelBands)
			for _, e := range chunk {
				for _, row := range e {
					for _, v := range row {
						flat = append(flat, float32(v))
					}
				}
			}
			x := torchmods.FromSlice(flat, []int64{int64(len(chunk)), 1, VGGishExampleFrames, VGGishMelBands}, dev)
			var y *ts.Tensor
			ts.NoGrad(func() {
				y = m.Embed(x, o.FinalReLU)
				if o.PCA {
					y = m.Postprocess(y)
				}
			})
			vals := y.MustTotype(gotch.Double, false).MustTo(gotch.CPU, true).Float64Values()
			for i := range chunk {
				out = append(out, vals[i*VGGishEmbeddingSize:(i+1)*VGGishEmbeddingSize])
			}
		})
		if err != nil {
			return nil, fmt.Errorf("vggish: %w", err)
		}
	}
	return out, nil
}

// LoadStateDict copies tensors named as torchvggish's state dicts into the
// model, strictly: every parameter must be there with its shape, and no
// other name. It takes the names of both released files:
//
//   - vggish-10086976.pth, VGG's state_dict: features.N.{weight,bias} and
//     embeddings.N.{weight,bias}, loaded as named;
//   - vggish_pca_params-970ea276.pth, the Postprocessor's:
//     pca_eigen_vectors and pca_means, loaded as pproc.pca_eigen_vectors
//     and pproc.pca_means, a pca_means of shape [128] reshaped to
//     [128, 1] as VGGish.__init__ does.
//
// A whole VGGish state_dict (pproc.* included) loads too.
func (m *VGGish) LoadStateDict(tensors []safetensors.Tensor) (torchmods.LoadReport, error) {
	var rep torchmods.LoadReport
	store := m.path.Store()
	prefix := m.path.Prefix()
	if prefix != "" {
		prefix += "."
	}
	byName := map[string]safetensors.Tensor{}
	for _, t := range tensors {
		name := t.Name
		if name == "pca_eigen_vectors" || name == "pca_means" {
			name = "pproc." + name
		}
		if name == "pproc.pca_means" && len(t.Shape) == 1 {
			t.Shape = []int64{t.Shape[0], 1}
		}
		name = prefix + name
		if _, dup := byName[name]; dup {
			return rep, fmt.Errorf("vggish: %s given twice", name)
		}
		t.Name = name
		byName[name] = t
	}
	mine := map[string]bool{}
	for _, p := range store.Params() {
		if !strings.HasPrefix(p.Name, prefix) {
			continue
		}
		mine[p.Name] = true
		t, ok := byName[p.Name]
		if !ok {
			rep.Missing = append(rep.Missing, p.Name)
		} else if !slices.Equal(t.Shape, p.Tensor.MustSize()) {
			rep.Mismatched = append(rep.Mismatched, fmt.Sprintf("%s: model %v weights %v", p.Name, p.Tensor.MustSize(), t.Shape))
		}
	}
	for name := range byName {
		if !mine[name] {
			rep.Unexpected = append(rep.Unexpected, name)
		}
	}
	sort.Strings(rep.Unexpected)
	if len(rep.Missing)+len(rep.Unexpected)+len(rep.Mismatched) > 0 {
		return rep, fmt.Errorf("vggish: load refused, nothing changed: %s", rep)
	}
	weights := map[string]*ts.Tensor{}
	defer func() {
		for _, w := range weights {
			w.MustDrop()
		}
	}()
	for name, t := range byName {
		x, err := torchmods.FromSafetensors(t, gotch.CPU)
		if err != nil {
			return rep, fmt.Errorf("vggish: %w", err)
		}
		weights[name] = x
	}
	// The store may hold other models: Load is not strict, so their
	// parameters, absent here, stay as they are; ours were all checked.
	loaded, err := store.Load(weights, false)
	rep.Loaded = loaded.Loaded
	if err != nil {
		return rep, fmt.Errorf("vggish: %w", err)
	}
	return rep, nil
}

// convertHint is how to turn torchvggish's release files into a file this
// package reads: they may be in PyTorch's pre-1.6 format, and the PCA file
// holds numpy arrays (vggish.py converts them with torch.as_tensor at
// load), neither of which the torch.save reader here takes.
const convertHint = `if it is one of torchvggish's release files, re-save it once with a current PyTorch: ` +
	`python3 -c "import sys, torch; sd = torch.load(sys.argv[1]); ` +
	`torch.save({k: torch.as_tensor(v, dtype=torch.float) for k, v in sd.items()}, sys.argv[2])" IN.pth OUT.pt`

// LoadVGGish builds the full-size VGGish on dev and loads torchvggish's
// released weights by name: weightsPath is vggish-10086976.pth (the
// features.* and embeddings.* of VGG's state_dict) and pcaPath
// vggish_pca_params-970ea276.pth (pca_eigen_vectors [128, 128] and
// pca_means [128], which become pproc.*), both downloaded by the user
// from github.com/harritaylor/torchvggish/releases/tag/v0.1 (or re-saved
// from them, see the error a file that cannot be read gives). An empty
// pcaPath builds the model without the Postprocessor, enough for
// Embeddings and FAD. Files are read as torch.save zips or safetensors.
func LoadVGGish(weightsPath, pcaPath string, dev gotch.Device) (*VGGish, error) {
	read := func(path string) ([]safetensors.Tensor, error) {
		w, err := torchmods.ReadWeights(path)
		if err != nil {
			return nil, fmt.Errorf("vggish: %w; %s", err, convertHint)
		}
		if len(w.Skipped) > 0 {
			return nil, fmt.Errorf("vggish: %s: entries that are not tensors (%s); %s", path, strings.Join(w.Skipped, ", "), convertHint)
		}
		return w.Tensors, nil
	}
	tensors, err := read(weightsPath)
	if err != nil {
		return nil, err
	}
	if pcaPath != "" {
		pca, err := read(pcaPath)
		if err != nil {
			return nil, err
		}
		tensors = append(tensors, pca...)
	}
	store := torchmods.NewStore(dev)
	m, err := NewVGGish(store.Root(), vggishConfigFromShapes(tensors, pcaPath == ""))
	if err != nil {
		return nil, err
	}
	if _, err := m.LoadStateDict(tensors); err != nil {
		store.Drop()
		return nil, fmt.Errorf("vggish: %s, %s: %w", weightsPath, pcaPath, err)
	}
	store.Freeze()
	return m, nil
}
