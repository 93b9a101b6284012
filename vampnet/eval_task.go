package vampnet

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// EvalConfig is "vampnet.eval": what the paper measures of a trained
// VampNet, on held-out excerpts, at batch 1 as the app generates:
// sampling steps, periodic prompts, and baselines that bound them.
type EvalConfig struct {
	train.Base
	Codec           string `toml:"codec"`
	CodecSampleRate int64  `toml:"codec_sample_rate"`
	Coarse          string `toml:"coarse"` // a vampnet.train run
	// C2F, if set, fills the fine codebooks after the coarse model, and
	// the audio is decoded from every codebook; otherwise from the coarse
	// ones only (and the codec reference too).
	C2F string `toml:"c2f"`
	// C2FAsApp gives the coarse-to-fine pass the prompt's mask and the
	// setting's sampling steps, as app.py does. By default it runs as the
	// paper's scripts/exp/experiment.py runs it: coarse_to_fine(zv) with no
	// mask, so every fine code is generated, and generate's defaults (the
	// sample options, with sample.sampling_steps), so a 1-step setting
	// is 1 coarse step, not also 1 fine step.
	C2FAsApp bool `toml:"c2f_as_app"`
	// Data's held-out tracks give the excerpts (data.eval_excerpts of
	// them, data.duration seconds: 0 takes the coarse run's).
	Data DataConfig `toml:"data"`
	// SamplingSteps are compared with the prompt StepsPeriodic (one frame
	// in P kept), the paper's Figure on sampling steps.
	SamplingSteps []int `toml:"sampling_steps"`
	StepsPeriodic int64 `toml:"steps_periodic"`
	// Periodic prompts are compared at Sample.Steps.
	Periodic []int64       `toml:"periodic"`
	Sample   SampleOptions `toml:"sample"`
	// VGGish, if set, is torchvggish's weights (vggish-10086976.pth, or a
	// safetensors re-save; audio.LoadVGGish): each setting then also gets
	// its FAD, the Fréchet distance of VGGish embeddings (without the final
	// ReLU and PCA, as FAD uses them) to the originals'.
	VGGish string `toml:"vggish"`
	// Samples WAVs (the original excerpt at the loudness the model sees,
	// the codec's reconstruction, random codes and each periodic prompt's
	// output) are written for the first excerpts, with their spectrograms.
	Samples int `toml:"samples"`
}

// EvalResult is written to results.json. Each setting ("steps_12",
// "periodic_8", "codec", "random") has the mean over the excerpts of:
// mel (audio.MelDistance to the original excerpt, VampNet's eval.py
// metric), code accuracy over the coarse positions the prompt masked (all
// positions for the codec baseline), pseudo-NLL
// (the coarse model's NLL of the generated codes, each scored once with a
// quarter of the positions masked: the model as its own judge), and the
// Fréchet distance between codec-encoder embeddings of the generated and
// the original excerpts (frames pooled; not FAD: no VGGish here).
type EvalResult struct {
	Settings map[string]EvalMetrics `json:"settings"`
	Excerpts int                    `json:"excerpts"`
	Frames   int64                  `json:"frames"`
	// Codes describes the original excerpts' coarse codes: the bar that
	// masked-token NLL is read against, since a model that knew only how
	// often each code occurs would score their entropy.
	Codes CodeStats `json:"codes"`
}

// CodeStats are the coarse codebooks' unigram statistics over the
// evaluation excerpts' codes, averaged over the coarse codebooks.
type CodeStats struct {
	Entropy float64 `json:"entropy"` // nats, of the codes' frequencies pooled over the excerpts
	Used    float64 `json:"used"`    // distinct codes that occur, of the codebook's size
}

// codeStats computes CodeStats from per-codebook counts.
func codeStats(counts []map[int64]int) CodeStats {
	var st CodeStats
	for _, cnt := range counts {
		n := 0
		for _, k := range cnt {
			n += k
		}
		for _, k := range cnt {
			p := float64(k) / float64(n)
			st.Entropy -= p * math.Log(p)
		}
		st.Used += float64(len(cnt))
	}
	st.Entropy /= float64(len(counts))
	st.Used /= float64(len(counts))
	return st
}

// EvalMetrics are one setting's means.
type EvalMetrics struct {
	Mel       float64 `json:"mel"`
	CodeAcc   float64 `json:"code_accuracy"`
	PseudoNLL float64 `json:"pseudo_nll"`
	Frechet   float64 `json:"frechet_codec"`
	FAD       float64 `json:"fad,omitempty"` // with a VGGish only
	Masked    float64 `json:"masked_share"`
}

// Validate checks the task's keys.
func (c *EvalConfig) Validate() error {
	if c.Codec == "" || c.Coarse == "" {
		return config.Field("coarse", "codec and coarse are needed (a vampnet.codec run or lac file, and a vampnet.train run)")
	}
	d := c.Data
	if d.Duration == 0 {
		d.Duration = 1 // validated once the coarse run says its own
	}
	if err := d.validate(); err != nil {
		return err
	}
	if d.EvalExcerpts < 2 {
		return config.Field("data.eval_excerpts", "at least 2 excerpts are needed for a Fréchet distance, got %d", d.EvalExcerpts)
	}
	for _, s := range c.SamplingSteps {
		if s < 1 {
			return config.Field("sampling_steps", "steps must be positive, got %d", s)
		}
	}
	for _, p := range append([]int64{c.StepsPeriodic}, c.Periodic...) {
		if p < 1 {
			return config.Field("periodic", "periods must be positive, got %d", p)
		}
	}
	if err := c.Sample.Validate(); err != nil {
		return config.Field("sample", "%v", err)
	}
	return nil
}

// EvalTask is "vampnet.eval".
var EvalTask = train.TaskSpec[*EvalConfig, *EvalResult]{
	Name: "vampnet.eval",
	// It generates and measures; it trains nothing.
	Ignores: []string{"epochs", "max_steps", "eval_every", "checkpoint_every", "keep_checkpoints", "accumulate", "precision"},
	Doc:     "measure a trained VampNet on held-out music: sampling steps, periodic prompts, codec and random baselines (mel distance, code accuracy, pseudo-NLL, Fréchet distance of codec embeddings)",
	Default: func() *EvalConfig {
		return &EvalConfig{Base: train.Base{Task: "vampnet.eval", Trainer: train.DefaultTrainer()}, CodecSampleRate: 44100,
			Data:          DataConfig{Source: "debian", LoudnessCutoff: -30, TestFraction: 0.1, Batch: 1, EvalExcerpts: 16},
			SamplingSteps: []int{1, 4, 12, 36}, StepsPeriodic: 16, Periodic: []int64{32, 16, 8, 4}, Sample: DefaultSampleOptions(), Samples: 2}
	},
	Run: RunEval,
}

// RunEval generates every setting for every held-out excerpt and averages.
func RunEval(s *train.Session, c *EvalConfig) (*EvalResult, error) {
	in, err := OpenInterface(c.Codec, c.CodecSampleRate, c.Coarse, c.C2F, s.Device)
	if err != nil {
		return nil, err
	}
	d := c.Data
	if d.Duration == 0 {
		d.Duration = in.CoarseChunkS
	}
	sr := in.SampleRate()
	var vggish *audio.VGGish
	if c.VGGish != "" {
		if vggish, err = audio.LoadVGGish(c.VGGish, "", s.Device); err != nil {
			return nil, err
		}
	}
	fad := map[string][][]float64{}
	_, test, err := d.tracks(sr, s.W)
	if err != nil {
		return nil, err
	}
	ex := d.excerpts(test, sr, heldoutSeed+0xe7a1) // the same excerpts for every run
	nDecode := in.Coarse.Cfg.NCodebooks
	if in.C2F != nil {
		nDecode = in.C2F.Cfg.NCodebooks
	}
	type setting struct {
		name     string
		steps    int
		period   int64
		baseline string // "", "codec" or "random"
	}
	var settings []setting
	for _, n := range c.SamplingSteps {
		settings = append(settings, setting{name: fmt.Sprintf("steps_%d", n), steps: n, period: c.StepsPeriodic})
	}
	for _, p := range c.Periodic {
		settings = append(settings, setting{name: fmt.Sprintf("periodic_%d", p), steps: c.Sample.Steps, period: p})
	}
	settings = append(settings, setting{name: "codec", baseline: "codec"}, setting{name: "random", baseline: "random", period: c.StepsPeriodic})

	sums := map[string]*EvalMetrics{}
	embed := map[string][][]float64{}
	var frames int64
	counts := make([]map[int64]int, in.Coarse.Cfg.NCodebooks)
	for k := range counts {
		counts[k] = map[int64]int{}
	}
	for i := 0; i < d.EvalExcerpts; i++ {
		// each excerpt's tensors in a scope of their own: only the Go
		// slices of metrics and embeddings outlive it
		err := func() error {
			sc := ts.NewScope()
			defer sc.Close()
			e, err := ex.Item(i)
			if err != nil {
				return err
			}
			orig := e.Audio
			volumeNorm(orig.Channels[0], sr, PreprocessLoudness) // Interface.preprocess and train.py's VolumeNorm
			z, err := in.Encode(orig)
			if err != nil {
				return err
			}
			frames = z.MustSize()[2]
			for k := range counts {
				for _, v := range z.MustSelect(1, int64(k), false).Int64Values() {
					counts[k][v]++
				}
			}
			origEmb, err := in.embeddings(orig)
			if err != nil {
				return err
			}
			embed["original"] = append(embed["original"], origEmb...)
			if i < c.Samples {
				if _, err := writeAudioSample(s.Out, i, "original", orig); err != nil {
					return err
				}
			}
			if vggish != nil {
				v, err := vggish.Embeddings(orig)
				if err != nil {
					return fmt.Errorf("excerpt %d: %w", i, err)
				}
				fad["original"] = append(fad["original"], v...)
			}
			for si, st := range settings {
				seed := evalSeed(c.Trainer.Seed, i, si)
				var gen, mask *ts.Tensor
				var maskShare float64
				err := torchmods.Try(func() {
					mask = ts.MustZeros(z.MustSize(), gotch.Int64, s.Device)
					if st.baseline != "codec" {
						m, err := PeriodicMask(z, st.period, 1, false, nil)
						if err != nil {
							panic(err)
						}
						mask = m
					}
					maskShare = mask.MustNarrow(1, 0, in.Coarse.Cfg.NCodebooks, false).MustTotype(gotch.Double, true).MustMean(gotch.Double, true).Float64Values()[0]
					switch st.baseline {
					case "codec":
						gen = z
					case "random":
						rng := rand.New(rand.NewPCG(seed, 1))
						rnd := make([]int64, z.Numel())
						for k := range rnd {
							rnd[k] = rng.Int64N(in.Codec.Cfg.CodebookSize)
						}
						noise := torchmods.FromSlice(rnd, z.MustSize(), s.Device)
						gen = z.MustWhereSelf(mask.MustEq(ts.IntScalar(0), false), noise, false)
					default:
						o := c.Sample
						o.Steps = st.steps
						ts.ManualSeed(int64(seed))
						out, err := CoarseVamp(in.Coarse, z, mask, in.codebooks, 0, o)
						if err != nil {
							panic(err)
						}
						if in.C2F != nil {
							fineMask, fineOpts := (*ts.Tensor)(nil), c.Sample
							if c.C2FAsApp {
								fineMask, fineOpts = mask, o
							}
							if out, err = CoarseToFine(in.C2F, out, fineMask, in.codebooks, S2T(in.C2FChunkS, sr, in.hop), fineOpts); err != nil {
								panic(err)
							}
						}
						gen = out
					}
				})
				if err != nil {
					return fmt.Errorf("%s, excerpt %d: %w", st.name, i, err)
				}
				m, genEmb, out, err := in.score(gen, z, mask, orig, nDecode, seed)
				if err != nil {
					return fmt.Errorf("%s, excerpt %d: %w", st.name, i, err)
				}
				if vggish != nil {
					v, err := vggish.Embeddings(out)
					if err != nil {
						return fmt.Errorf("%s, excerpt %d: %w", st.name, i, err)
					}
					fad[st.name] = append(fad[st.name], v...)
				}
				m.Masked = maskShare
				if sums[st.name] == nil {
					sums[st.name] = &EvalMetrics{}
				}
				sums[st.name].Mel += m.Mel
				sums[st.name].CodeAcc += m.CodeAcc
				sums[st.name].PseudoNLL += m.PseudoNLL
				sums[st.name].Masked += m.Masked
				embed[st.name] = append(embed[st.name], genEmb...)
				if i < c.Samples && (st.baseline != "" || st.steps == c.Sample.Steps) {
					if err := in.writeSample(s.Out, i, st.name, gen, nDecode); err != nil {
						return err
					}
				}
			}
			return nil
		}()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(s.W, "\rvampnet eval: excerpt %d/%d", i+1, d.EvalExcerpts)
	}
	fmt.Fprintln(s.W)
	res := &EvalResult{Settings: map[string]EvalMetrics{}, Excerpts: d.EvalExcerpts, Frames: frames, Codes: codeStats(counts)}
	fmt.Fprintf(s.W, "original coarse codes: unigram entropy %.3f nats, %.1f distinct codes per codebook (mean over %d codebooks)\n", res.Codes.Entropy, res.Codes.Used, len(counts))
	for _, st := range settings {
		m := *sums[st.name]
		n := float64(d.EvalExcerpts)
		m.Mel, m.CodeAcc, m.PseudoNLL, m.Masked = m.Mel/n, m.CodeAcc/n, m.PseudoNLL/n, m.Masked/n
		fd, err := FrechetDistance(embed[st.name], embed["original"])
		if err != nil {
			return nil, err
		}
		m.Frechet = fd
		if vggish != nil {
			if m.FAD, err = FrechetDistance(fad[st.name], fad["original"]); err != nil {
				return nil, fmt.Errorf("FAD: %w (the excerpts must hold at least one 0.96 s VGGish example each)", err)
			}
		}
		res.Settings[st.name] = m
		fad := ""
		if vggish != nil {
			fad = fmt.Sprintf("  FAD %.3f", m.FAD)
		}
		fmt.Fprintf(s.W, "%-12s masked %5.1f%%  mel %.4f  code accuracy %.3f  pseudo-NLL %.3f  Fréchet (codec) %.3f%s\n", st.name, 100*m.Masked, m.Mel, m.CodeAcc, m.PseudoNLL, m.Frechet, fad)
	}
	return res, nil
}

// evalSeed gives each (excerpt, setting) its own seed: a hash, so that no
// two collide however many there are.
func evalSeed(seed int64, excerpt, setting int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d/%d", seed, excerpt, setting)
	return h.Sum64() >> 1 // ts.ManualSeed takes an int64
}

// embeddings are the codec encoder's outputs for mono audio at the codec
// rate, one row per frame: the representation whose Fréchet distance the
// evaluation reports.
func (in *Interface) embeddings(a *audio.Audio) ([][]float64, error) {
	var rows [][]float64
	err := torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			x, _ := in.Codec.Preprocess(torchmods.FromSlice(a.Channels[0], []int64{1, 1, int64(a.Len())}, in.Device))
			e := in.Codec.Encoder.Forward(x) // [1, D, T]
			s := e.MustSize()
			v := e.MustSqueezeDim(0, true).MustT(true).MustContiguous(true).MustTotype(gotch.Double, true).Float64Values()
			for t := int64(0); t < s[2]; t++ {
				rows = append(rows, v[t*s[1]:(t+1)*s[1]])
			}
		})
	})
	return rows, err
}

// score decodes gen's first nDecode codebooks and measures it against
// the original excerpt and codes z; code accuracy counts the coarse
// positions mask generated (all of them when it masks none).
func (in *Interface) score(gen, z, mask *ts.Tensor, orig *audio.Audio, nDecode int64, seed uint64) (EvalMetrics, [][]float64, *audio.Audio, error) {
	var m EvalMetrics
	out, err := in.Decode(gen.MustNarrow(1, 0, nDecode, false))
	if err != nil {
		return m, nil, nil, err
	}
	out.Channels[0] = out.Channels[0][:min(len(out.Channels[0]), orig.Len())]
	if m.Mel, err = audio.MelDistance(out, orig); err != nil {
		return m, nil, nil, err
	}
	nc := in.Coarse.Cfg.NCodebooks
	err = torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			g, o := gen.MustNarrow(1, 0, nc, false), z.MustNarrow(1, 0, nc, false)
			hit := g.MustEqTensor(o, false)
			if sel := mask.MustNarrow(1, 0, nc, false).MustTotype(gotch.Bool, false); sel.MustAny(false).Int64Values()[0] != 0 {
				hit = hit.MustMaskedSelect(sel, true)
			}
			m.CodeAcc = hit.MustTotype(gotch.Double, true).MustMean(gotch.Double, true).Float64Values()[0]
			m.PseudoNLL = in.Coarse.pseudoNLL(g, in.codebooks, seed)
		})
	})
	if err != nil {
		return m, nil, nil, err
	}
	emb, err := in.embeddings(out)
	return m, emb, out, err
}

// pseudoNLL is the model's mean NLL of codes [1, C, T], every predicted
// position scored once: the positions are dealt into 4 random folds and
// each fold is masked and predicted from the rest.
func (m *VampNet) pseudoNLL(codes *ts.Tensor, codebooks []*ts.Tensor, seed uint64) float64 {
	s := codes.MustSize()
	rng := rand.New(rand.NewPCG(seed, 0x9e11))
	fold := make([]int64, s[1]*s[2])
	for i := range fold {
		fold[i] = int64(rng.IntN(4))
	}
	folds := torchmods.FromSlice(fold, s, codes.MustDevice())
	var sum float64
	var count int64
	nc, np := m.Cfg.NConditioningCodebooks, m.Cfg.NPredict()
	for f := int64(0); f < 4; f++ {
		mask := folds.MustEq(ts.IntScalar(f), false).MustTotype(gotch.Int64, true)
		mask.MustNarrow(1, 0, nc, false).MustFill_(ts.IntScalar(0))
		zm, err := ApplyMask(codes, mask, m.Cfg.MaskToken())
		if err != nil {
			panic(err)
		}
		logits := m.Forward(m.FromCodes(zm, codebooks), false)
		target := CodebookFlatten(codes.MustNarrow(1, nc, np, false))
		sel := CodebookFlatten(mask.MustNarrow(1, nc, np, false)).MustTotype(gotch.Bool, true)
		ce := torchmods.CrossEntropy(logits, target, torchmods.CEOptions{Reduction: torchmods.ReduceNone})
		sum += ce.MustMaskedSelect(sel, true).MustSum(gotch.Double, true).Float64Values()[0]
		count += sel.MustSum(gotch.Int64, true).Int64Values()[0]
	}
	return sum / float64(max(count, 1))
}

// writeSample writes a setting's decoded audio and spectrogram for
// excerpt i under samples/.
func (in *Interface) writeSample(run string, i int, name string, gen *ts.Tensor, nDecode int64) error {
	a, err := in.Decode(gen.MustNarrow(1, 0, nDecode, false))
	if err != nil {
		return err
	}
	_, err = writeAudioSample(run, i, name, a)
	return err
}

// writeAudioSample writes a as samples/NN-name.wav in the run directory,
// with its spectrogram as NN-name.png, and returns the WAV's path. The
// codec and evaluation tasks both write their samples through it.
func writeAudioSample(run string, i int, name string, a *audio.Audio) (string, error) {
	dir := filepath.Join(run, "samples")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(dir, fmt.Sprintf("%02d-%s", i, name))
	if err := audio.WriteWAV(base+".wav", a, audio.PCM16); err != nil {
		return "", err
	}
	return base + ".wav", audio.WriteSpectrogramPNG(base+".png", a)
}
