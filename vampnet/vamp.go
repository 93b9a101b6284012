package vampnet

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// Interface is the official Interface: a codec, a coarse model and,
// optionally, a coarse-to-fine model, with the chunk lengths they were
// trained on (10 s and 3 s officially).
type Interface struct {
	Codec           *Codec
	Coarse, C2F     *VampNet
	CoarseChunkS    float64
	C2FChunkS       float64
	Device          gotch.Device
	codebooks       []*ts.Tensor
	sampleRate, hop int
}

// OpenModel builds a VampNet from a vampnet.train run directory (its
// config.toml's [model] and its newest checkpoint), and returns the run's
// excerpt length in seconds as its chunk size.
func OpenModel(run string, dev gotch.Device) (*VampNet, float64, error) {
	var rc struct {
		Model Config     `toml:"model"`
		Data  DataConfig `toml:"data"`
	}
	cfg := filepath.Join(run, "config.toml")
	if _, err := toml.DecodeFile(cfg, &rc); err != nil {
		return nil, 0, fmt.Errorf("vampnet model %s: %w", cfg, err)
	}
	if err := rc.Model.Validate(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", cfg, err)
	}
	store := torchmods.NewStore(dev)
	var m *VampNet
	if err := torchmods.Try(func() { m = New(store.Root(), rc.Model) }); err != nil {
		return nil, 0, err
	}
	if err := torchmods.LoadModel(run, store); err != nil {
		return nil, 0, fmt.Errorf("vampnet model: %w", err)
	}
	for _, p := range store.Params() {
		p.Tensor.MustRequiresGrad_(false)
	}
	return m, rc.Data.Duration, nil
}

// OpenInterface loads the codec (a vampnet.codec run or a lac file of
// codecRate Hz) and the models (vampnet.train runs; c2f may be "").
func OpenInterface(codec string, codecRate int64, coarse, c2f string, dev gotch.Device) (*Interface, error) {
	cd, err := OpenCodec(codec, codecRate, dev)
	if err != nil {
		return nil, err
	}
	in := &Interface{Codec: cd, Device: dev, codebooks: cd.codebooks(), sampleRate: int(cd.Cfg.SampleRate), hop: int(cd.Cfg.HopLength())}
	if coarse != "" {
		if in.Coarse, in.CoarseChunkS, err = OpenModel(coarse, dev); err != nil {
			return nil, err
		}
	}
	if c2f != "" {
		if in.C2F, in.C2FChunkS, err = OpenModel(c2f, dev); err != nil {
			return nil, err
		}
	}
	if in.Coarse != nil && in.C2F != nil && in.C2F.Cfg.NConditioningCodebooks != in.Coarse.Cfg.NCodebooks {
		return nil, fmt.Errorf("vampnet: the c2f model is conditioned on %d codebooks, the coarse model makes %d: they are not a pair",
			in.C2F.Cfg.NConditioningCodebooks, in.Coarse.Cfg.NCodebooks)
	}
	for name, m := range map[string]*VampNet{"coarse": in.Coarse, "c2f": in.C2F} {
		if m != nil && (m.Cfg.VocabSize != cd.Cfg.CodebookSize || m.Cfg.LatentDim != cd.Cfg.CodebookDim || m.Cfg.NCodebooks > cd.Cfg.NCodebooks) {
			return nil, fmt.Errorf("vampnet: the %s model (%d codebooks of %d codes, latent %d) does not fit the codec (%d of %d, dim %d)",
				name, m.Cfg.NCodebooks, m.Cfg.VocabSize, m.Cfg.LatentDim, cd.Cfg.NCodebooks, cd.Cfg.CodebookSize, cd.Cfg.CodebookDim)
		}
	}
	return in, nil
}

// SampleRate is the codec's.
func (in *Interface) SampleRate() int { return in.sampleRate }

// Prepare is Interface.preprocess: resample to the codec's rate, mix to
// mono, normalise to -24 LUFS and divide by the peak if it passes 1 (a
// new signal; a is left alone). It says on w what it converted, so that
// a rate that does not match is converted, never misread, and returns
// a's own loudness, which the app restores on the output.
func (in *Interface) Prepare(a *audio.Audio, w func(format string, args ...any)) (*audio.Audio, float64, error) {
	loud := audio.Loudness(a)
	if a.SampleRate != in.sampleRate {
		w("resampling %d Hz to the codec's %d Hz", a.SampleRate, in.sampleRate)
		var err error
		if a, err = a.Resample(in.sampleRate); err != nil {
			return nil, 0, err
		}
	}
	if a.NumChannels() > 1 {
		w("mixing %d channels down to mono (the codec is mono)", a.NumChannels())
		a = a.Mono()
	} else {
		a = a.Clone()
	}
	volumeNorm(a.Channels[0], in.sampleRate, PreprocessLoudness)
	return a, loud, nil
}

// PreprocessLoudness is the level (LUFS) Interface.preprocess and
// train.py's VolumeNorm bring audio to before encoding.
const PreprocessLoudness = -24.0

// Encode turns mono audio at the codec's rate into codes [1, n_codebooks,
// frames], chunk by chunk (EncodeChunked) so that long files fit.
func (in *Interface) Encode(a *audio.Audio) (codes *ts.Tensor, err error) {
	if a.SampleRate != in.sampleRate || a.NumChannels() != 1 {
		return nil, fmt.Errorf("vampnet: encode wants mono audio at %d Hz, got %d channels at %d Hz (Prepare converts)", in.sampleRate, a.NumChannels(), a.SampleRate)
	}
	err = torchmods.Try(func() {
		x := torchmods.FromSlice(a.Channels[0], []int64{1, 1, int64(a.Len())}, in.Device)
		codes, _ = in.Codec.EncodeChunked(x, 4096)
	})
	return codes, err
}

// Decode turns codes [1, n, frames] into audio at the codec's rate.
func (in *Interface) Decode(codes *ts.Tensor) (*audio.Audio, error) {
	var out []float32
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			y := in.Codec.DecodeChunked(codes, 1024, 0)
			v := y.MustTotype(gotch.Float, false).MustView([]int64{-1}, true).Float64Values()
			out = make([]float32, len(v))
			for i, x := range v {
				out[i] = float32(x)
			}
		})
	})
	if err != nil {
		return nil, err
	}
	return &audio.Audio{SampleRate: in.sampleRate, Channels: [][]float32{out}}, nil
}

// VampResult is a vamp's output codes and the mask that made them.
type VampResult struct {
	Codes, Mask *ts.Tensor
}

// Vamp is the app's _vamp: encode, build the prompt mask (BuildMask with
// opts), coarse vamp, then coarse-to-fine if there is a c2f model (which
// regenerates the fine codebooks under the same mask). seed seeds the
// mask's draws and libtorch's generator for the sampling.
func (in *Interface) Vamp(a *audio.Audio, opts BuildMaskOptions, so SampleOptions, seed uint64) (*VampResult, error) {
	if in.Coarse == nil {
		return nil, fmt.Errorf("vampnet: vamping needs a coarse model")
	}
	z, err := in.Encode(a)
	if err != nil {
		return nil, err
	}
	opts.SampleRate, opts.HopLength = in.sampleRate, in.hop
	mask, err := BuildMask(z, opts, MaskPrompt{Samples: a.Channels[0], SampleRate: a.SampleRate}, rand.New(rand.NewPCG(seed, 0x7a4d)))
	if err != nil {
		return nil, err
	}
	ts.ManualSeed(int64(seed))
	maxFrames := S2T(in.CoarseChunkS, in.sampleRate, in.hop)
	out, err := CoarseVamp(in.Coarse, z, mask, in.codebooks, maxFrames, so)
	if err != nil {
		return nil, err
	}
	if in.C2F != nil {
		if out, err = CoarseToFine(in.C2F, out, mask, in.codebooks, S2T(in.C2FChunkS, in.sampleRate, in.hop), so); err != nil {
			return nil, err
		}
	}
	return &VampResult{Codes: out, Mask: mask}, nil
}

// WriteCodes saves codes [B, n, frames] as safetensors ("codes", I64),
// with the codec's sample rate and hop in the metadata.
func (in *Interface) WriteCodes(path string, codes *ts.Tensor) error {
	vals := codes.MustTotype(gotch.Int64, false).Int64Values()
	b := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return safetensors.Write(path, []safetensors.Tensor{{Name: "codes", DType: "I64", Shape: codes.MustSize(), Data: b}},
		map[string]string{"sample_rate": fmt.Sprint(in.sampleRate), "hop_length": fmt.Sprint(in.hop)})
}

// ReadCodes reads WriteCodes' file, refusing codes made for another codec
// rate or hop, or out of the codec's range.
func (in *Interface) ReadCodes(path string) (*ts.Tensor, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if sr, hop := f.Metadata["sample_rate"], f.Metadata["hop_length"]; sr != fmt.Sprint(in.sampleRate) || hop != fmt.Sprint(in.hop) {
		return nil, fmt.Errorf("%s: codes of a codec at %q Hz with hop %q; this codec is %d Hz with hop %d", path, sr, hop, in.sampleRate, in.hop)
	}
	t, ok := f.Get("codes")
	if !ok || t.DType != "I64" || len(t.Shape) != 3 || t.Shape[0] != 1 || t.Shape[1] < 1 || t.Shape[1] > in.Codec.Cfg.NCodebooks || t.Shape[2] < 1 {
		return nil, fmt.Errorf("%s: want an I64 tensor \"codes\" [1, 1 to %d codebooks, frames > 0] (got %s %v)", path, in.Codec.Cfg.NCodebooks, t.DType, t.Shape)
	}
	vals := make([]int64, len(t.Data)/8)
	for i := range vals {
		vals[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
		if vals[i] < 0 || vals[i] >= in.Codec.Cfg.CodebookSize {
			return nil, fmt.Errorf("%s: code %d at index %d is outside the codec's [0, %d)", path, vals[i], i, in.Codec.Cfg.CodebookSize)
		}
	}
	var codes *ts.Tensor
	err = torchmods.Try(func() { codes = torchmods.FromSlice(vals, t.Shape, in.Device) })
	return codes, err
}
