package vampnet

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// CodecTaskConfig is "vampnet.codec": training the LAC codec as lac's
// scripts/train.py does, without its discriminators.
type CodecTaskConfig struct {
	train.Base
	Codec CodecConfig     `toml:"codec"`
	Data  DataConfig      `toml:"data"`
	Optim CodecOptimizer  `toml:"optim"`
	Loss  CodecLossConfig `toml:"loss"`
	// LoudnessTarget (LUFS) normalises every training excerpt, lac's
	// VolumeNorm (-16), after which RescaleAudio divides by the peak when
	// it passes 1. -200 turns both off.
	LoudnessTarget float64 `toml:"loudness_target"`
	// Samples is how many held-out excerpts are written as WAV (original
	// and reconstruction) at the end.
	Samples int `toml:"samples"`
}

// CodecOptimizer is lac's generator optimizer: AdamW (lr 1e-4, betas
// 0.8/0.99, eps 1e-9, PyTorch's weight decay 0.01 on every parameter),
// an ExponentialLR of gamma 0.999996 per step, gradients clipped at 1e3.
type CodecOptimizer struct {
	LR          float64 `toml:"lr"`
	Beta1       float64 `toml:"beta1"`
	Beta2       float64 `toml:"beta2"`
	Eps         float64 `toml:"eps"`
	WeightDecay float64 `toml:"weight_decay"`
	Gamma       float64 `toml:"gamma"`
	Clip        float64 `toml:"clip"`
}

// CodecLossConfig are conf/base.yml's lambdas. The adversarial terms
// (adv/gen_loss 1, adv/feat_loss 2) are left out: no discriminator is
// trained here. Waveform L1 is computed by lac but has no lambda there
// (weight 0); a weight here adds it.
type CodecLossConfig struct {
	Mel        float64 `toml:"mel"`        // 15
	Commitment float64 `toml:"commitment"` // 0.25
	Codebook   float64 `toml:"codebook"`   // 1
	Waveform   float64 `toml:"waveform"`   // 0
}

// CodecResult is written to results.json.
type CodecResult struct {
	HeldoutMelLoss float64  `json:"heldout_mel_loss"` // lac's multi-scale mel loss (the training term, unweighted)
	HeldoutMelDist float64  `json:"heldout_mel_dist"` // audio.MelDistance, mean over the held-out excerpts
	HeldoutWaveL1  float64  `json:"heldout_waveform_l1"`
	TrainTracks    int      `json:"train_tracks"`
	HeldoutTracks  int      `json:"heldout_tracks"`
	Steps          int64    `json:"steps"`
	CodesPerSecond float64  `json:"codes_per_second"`
	BitsPerSecond  float64  `json:"bits_per_second"`
	SamplesWritten []string `json:"samples,omitempty"`
}

// Validate checks the task's keys; errors name the key.
func (c *CodecTaskConfig) Validate() error {
	if err := c.Codec.Validate(); err != nil {
		return err
	}
	if err := c.Data.validate(); err != nil {
		return err
	}
	o := c.Optim
	switch {
	case !(o.LR > 0) || !(o.Eps > 0) || o.WeightDecay < 0 || !(o.Gamma > 0 && o.Gamma <= 1) || o.Clip < 0:
		return config.Field("optim", "lr %v and eps %v must be positive, weight_decay %v and clip %v not negative, gamma %v in (0, 1]", o.LR, o.Eps, o.WeightDecay, o.Clip, o.Gamma)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return config.Field("optim.beta1", "betas must be in [0, 1), got %v and %v", o.Beta1, o.Beta2)
	case c.Loss.Mel < 0 || c.Loss.Commitment < 0 || c.Loss.Codebook < 0 || c.Loss.Waveform < 0:
		return config.Field("loss", "weights must not be negative")
	case c.Samples < 0:
		return config.Field("samples", "must not be negative, got %d", c.Samples)
	}
	return nil
}

// DefaultCodecOptimizer and DefaultCodecLoss are lac's.
func DefaultCodecOptimizer() CodecOptimizer {
	return CodecOptimizer{LR: 1e-4, Beta1: 0.8, Beta2: 0.99, Eps: 1e-9, WeightDecay: 0.01, Gamma: 0.999996, Clip: 1e3}
}

// DefaultCodecLoss is conf/base.yml's lambdas without the adversarial ones.
func DefaultCodecLoss() CodecLossConfig {
	return CodecLossConfig{Mel: 15, Commitment: 0.25, Codebook: 1}
}

// CodecTask is "vampnet.codec".
var CodecTask = train.TaskSpec[*CodecTaskConfig, *CodecResult]{
	Name: "vampnet.codec",
	Doc:  "train VampNet's LAC codec (multi-scale mel, codebook and commitment losses; no discriminator) on music",
	Default: func() *CodecTaskConfig {
		return &CodecTaskConfig{Base: train.Base{Task: "vampnet.codec", Trainer: train.DefaultTrainer()}, Codec: LACConfig(),
			Data:  DataConfig{Source: "debian", Duration: 0.38, LoudnessCutoff: -40, TestFraction: 0.1, Batch: 96, EvalExcerpts: 16},
			Optim: DefaultCodecOptimizer(), Loss: DefaultCodecLoss(), LoudnessTarget: -16, Samples: 4}
	},
	Run: RunCodec,
}

// RunCodec trains the codec and measures its reconstruction on held-out
// tracks.
func RunCodec(s *train.Session, c *CodecTaskConfig) (*CodecResult, error) {
	sr := int(c.Codec.SampleRate)
	trainTracks, testTracks, err := c.Data.tracks(sr, s.W)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.W, "vampnet codec: %d training and %d held-out tracks at %d Hz, excerpts of %.2f s\n", len(trainTracks), len(testTracks), sr, c.Data.Duration)
	if note := codecThreadNote(os.Getenv("OMP_NUM_THREADS"), os.Getenv("OMP_WAIT_POLICY")); note != "" {
		fmt.Fprintln(s.W, note)
	}
	codec, err := NewCodec(s.Store.Root(), c.Codec)
	if err != nil {
		return nil, err
	}
	ld, err := openExcerpts(s, c.Data, trainTracks, testTracks, sr, c.Trainer.Seed, c.LoudnessTarget)
	if err != nil {
		return nil, err
	}
	defer ld.loader.Close()
	loader, heldout, perEpoch, steps := ld.loader, ld.heldout, ld.perEpoch, ld.steps
	mel := audio.DACMelLoss(sr)
	gamma := c.Optim.Gamma
	lr := func(step int64) float64 { return c.Optim.LR * math.Pow(gamma, float64(step)) }
	evaluate := func() (map[string]float64, error) {
		var melLoss, l1 float64
		err := torchmods.Try(func() {
			ts.NoGrad(func() {
				for _, b := range heldout {
					func() {
						sc := ts.NewScope()
						defer sc.Close()
						x := b.tensor(s.Device)
						_, y := codec.Forward(x, 0, false)
						melLoss += mel.Forward(y, x).Float64Values()[0]
						l1 += y.MustSub(x, false).MustAbs(true).MustMean(gotch.Float, true).Float64Values()[0]
					}()
				}
			})
		})
		n := float64(len(heldout))
		return map[string]float64{"heldout_mel_loss": melLoss / n, "heldout_waveform_l1": l1 / n}, err
	}
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, LR: lr, Clip: c.Optim.Clip,
		Opt: train.NewAdamWDecayAll(s.Store, c.Optim.Beta1, c.Optim.Beta2, c.Optim.Eps, c.Optim.WeightDecay),
		Loss: func(step int64, micro int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			x := b.tensor(s.Device)
			enc, y := codec.Forward(x, 0, true)
			loss := mel.Forward(y, x).MustMulScalar(ts.FloatScalar(c.Loss.Mel), true)
			loss = loss.MustAdd(enc.CommitmentLoss.MustMean(gotch.Float, false).MustMulScalar(ts.FloatScalar(c.Loss.Commitment), true), true)
			loss = loss.MustAdd(enc.CodebookLoss.MustMean(gotch.Float, false).MustMulScalar(ts.FloatScalar(c.Loss.Codebook), true), true)
			if c.Loss.Waveform > 0 {
				loss = loss.MustAdd(y.MustSub(x, false).MustAbs(true).MustMean(gotch.Float, true).MustMulScalar(ts.FloatScalar(c.Loss.Waveform), true), true)
			}
			return loss, nil
		},
		Eval:  func(int64) (map[string]float64, error) { return evaluate() },
		State: map[string]train.State{"loader": train.LoaderState(loader)},
	})
	if err != nil {
		return nil, err
	}
	ev, err := evaluate()
	if err != nil {
		return nil, err
	}
	hop := float64(c.Codec.HopLength())
	res := &CodecResult{HeldoutMelLoss: ev["heldout_mel_loss"], HeldoutWaveL1: ev["heldout_waveform_l1"], TrainTracks: len(trainTracks), HeldoutTracks: len(testTracks),
		Steps: steps, CodesPerSecond: float64(sr) / hop, BitsPerSecond: float64(sr) / hop * float64(c.Codec.NCodebooks) * math.Log2(float64(c.Codec.CodebookSize))}
	res.HeldoutMelDist, res.SamplesWritten, err = writeCodecSamples(s, codec, heldout, sr, c.Samples)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.W, "held-out mel loss %.4f, mel distance %.4f, waveform L1 %.5f; %.1f codes/s, %.0f bit/s\n",
		res.HeldoutMelLoss, res.HeldoutMelDist, res.HeldoutWaveL1, res.CodesPerSecond, res.BitsPerSecond)
	return res, nil
}

// heldoutSeed draws the held-out excerpts and their masks. It is not the
// run's seed: every run, whatever its seed, is scored on the same excerpts
// with the same masks, so that the spread over seeds is the training's
// alone and runs of one seed pair with another's (a fixed validation set).
const heldoutSeed = 0

// evalExcerpts draws the held-out excerpts once, with heldoutSeed, in batches.
func evalExcerpts(d DataConfig, tracks []audio.Prepared, sr int) ([]excerptBatch, error) {
	ex := d.excerpts(tracks, sr, heldoutSeed+0x5eed)
	var out []excerptBatch
	for at := 0; at < d.EvalExcerpts; at += d.Batch {
		var idx []int
		for i := at; i < min(at+d.Batch, d.EvalExcerpts); i++ {
			idx = append(idx, i)
		}
		b, err := drawBatch(ex, idx)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, config.Field("data.eval_excerpts", "must be at least 1 to measure the codec")
	}
	return out, nil
}

// normalizeBatch applies volumeNorm to every excerpt of b in place;
// target <= -200 does nothing.
func normalizeBatch(b excerptBatch, target float64, sr int) {
	if target <= -200 {
		return
	}
	for i := 0; i < b.n; i++ {
		volumeNorm(b.samples[i*b.len:(i+1)*b.len], sr, target)
	}
}

// volumeNorm is audiotools' VolumeNorm then RescaleAudio (the same as
// AudioSignal.normalize(target).ensure_max_of_audio(1.0)), in place on
// mono samples: the gain to target LUFS (audiotools' normalize, so
// silence gets a finite gain and stays silent), then a division by the
// peak when it passes 1. lac's third transform, ShiftPhase (a random
// phase rotation of the excerpt's STFT), is left out.
func volumeNorm(x []float32, sr int, target float64) {
	a, _ := audio.Normalize(&audio.Audio{SampleRate: sr, Channels: [][]float32{x}}, target)
	var peak float32
	for j, v := range a.Channels[0] {
		x[j] = v
		peak = max(peak, float32(math.Abs(float64(v))))
	}
	if peak > 1 {
		for j := range x {
			x[j] /= peak
		}
	}
}

// writeCodecSamples writes the first n held-out excerpts and their
// reconstructions (WAVs and spectrograms) to samples/ in the run directory,
// original first, and returns the mean mel distance over every held-out
// excerpt.
func writeCodecSamples(s *train.Session, codec *Codec, heldout []excerptBatch, sr, n int) (float64, []string, error) {
	var dist float64
	var count int
	var written []string
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			for _, b := range heldout {
				func() {
					sc := ts.NewScope()
					defer sc.Close()
					_, y := codec.Forward(b.tensor(s.Device), 0, false)
					// Reshape, not View: Decode narrows y to the input's
					// length (a non-contiguous slice of the padded output).
					rec := y.MustTotype(gotch.Float, false).MustReshape([]int64{-1}, true).Float64Values()
					for i := 0; i < b.n; i++ {
						orig := &audio.Audio{SampleRate: sr, Channels: [][]float32{b.samples[i*b.len : (i+1)*b.len]}}
						r := make([]float32, b.len)
						for j := range r {
							r[j] = float32(rec[i*b.len+j])
						}
						recon := &audio.Audio{SampleRate: sr, Channels: [][]float32{r}}
						d, err := audio.MelDistance(recon, orig)
						if err != nil {
							panic(err)
						}
						dist += d
						if count < n {
							for _, w := range []struct {
								name string
								a    *audio.Audio
							}{{"original", orig}, {"codec", recon}} {
								p, err := writeAudioSample(s.Out, count, w.name, w.a)
								if err != nil {
									panic(err)
								}
								written = append(written, p)
							}
						}
						count++
					}
				}()
			}
		})
	})
	if count == 0 {
		return 0, written, err
	}
	return dist / float64(count), written, err
}

// codecThreadNote warns when libtorch is given several OpenMP threads that
// spin while they wait (OpenMP's default, active). The codec's step is
// hundreds of small convolutions and elementwise ops, each a parallel
// region; on a machine whose cores are busy with other work a spinning
// thread holds a core that the thread it waits for needs. Measured on 2
// cores at load 4-5 (codec_small.toml, batch 16): 27.9 s per step with
// OMP_NUM_THREADS=2, 3.5 s with OMP_WAIT_POLICY=passive added, 2.7 s with
// OMP_NUM_THREADS=1 (PyTorch 1.13 the same: 33 s against 2.2 s).
func codecThreadNote(ompThreads, waitPolicy string) string {
	n, err := strconv.Atoi(strings.TrimSpace(ompThreads))
	if err != nil || n <= 1 || strings.EqualFold(strings.TrimSpace(waitPolicy), "passive") {
		return ""
	}
	return fmt.Sprintf("note: OMP_NUM_THREADS=%d with OpenMP's spinning wait: on a loaded machine this codec's step can run 10x slower than with OMP_NUM_THREADS=1 (or add OMP_WAIT_POLICY=passive)", n)
}
