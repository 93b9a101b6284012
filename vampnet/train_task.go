package vampnet

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// TrainConfig is "vampnet.train": a coarse or coarse-to-fine VampNet
// trained on codes of a frozen codec, as scripts/exp/train.py does.
type TrainConfig struct {
	train.Base
	// Codec is a vampnet.codec run directory (its sample rate is read from
	// its config.toml) or a lac weights file (CodecSampleRate then says its
	// rate, lac's 44100 by default).
	Codec           string      `toml:"codec"`
	CodecSampleRate int64       `toml:"codec_sample_rate"`
	Model           Config      `toml:"model"`
	Data            DataConfig  `toml:"data"`
	Masking         MaskingOpts `toml:"masking"`
	Optim           NoamOpts    `toml:"optim"`
	// LoudnessTarget (LUFS) normalises every excerpt, train.py's
	// VolumeNorm(-24) then RescaleAudio; -200 turns both off.
	LoudnessTarget float64 `toml:"loudness_target"`
	// EvalR are the masking levels r at which held-out excerpts are
	// scored (the share masked is cos(pi r/2)); each r gets its own
	// seeded masks, the same at every evaluation.
	EvalR []float64 `toml:"eval_r"`
}

// MaskingOpts say how training masks are drawn.
type MaskingOpts struct {
	// Schedule "cosine" is the paper's: r from the scrambled Sobol
	// sequence per item, each token masked with probability cos(pi r/2).
	// "fixed" masks each token with probability Ratio (a BERT-style
	// baseline for the experiment; not in the official code).
	Schedule string  `toml:"schedule"`
	Ratio    float64 `toml:"ratio"`
}

// NoamOpts is train.py's optimisation: AdamW (PyTorch's defaults, weight
// decay 0.01 on every parameter) under the Noam schedule with factor 2
// and 10,000 warm-up steps over d_model, gradients clipped at 5, label
// smoothing 0.1.
type NoamOpts struct {
	Factor         float64 `toml:"factor"`
	Warmup         int64   `toml:"warmup"`
	Beta1          float64 `toml:"beta1"`
	Beta2          float64 `toml:"beta2"`
	Eps            float64 `toml:"eps"`
	WeightDecay    float64 `toml:"weight_decay"`
	Clip           float64 `toml:"clip"`
	LabelSmoothing float64 `toml:"label_smoothing"`
}

// TrainResult is written to results.json: the held-out metrics at each
// evaluation r, by the name "<metric>_r<r>".
type TrainResult struct {
	Heldout       map[string]float64 `json:"heldout"`
	TrainTracks   int                `json:"train_tracks"`
	HeldoutTracks int                `json:"heldout_tracks"`
	Steps         int64              `json:"steps"`
	Frames        int64              `json:"frames"`
}

// Validate checks the task's keys; errors name the key.
func (c *TrainConfig) Validate() error {
	if c.Codec == "" {
		return config.Field("codec", "a vampnet.codec run directory or a lac weights file is needed")
	}
	if err := c.Model.Validate(); err != nil {
		return config.Field("model", "%v", err)
	}
	if err := c.Data.validate(); err != nil {
		return err
	}
	m, o := c.Masking, c.Optim
	switch {
	case m.Schedule != "cosine" && m.Schedule != "fixed":
		return config.Field("masking.schedule", `"cosine" (the paper's) or "fixed", got %q`, m.Schedule)
	case m.Schedule == "fixed" && !(m.Ratio > 0 && m.Ratio <= 1):
		return config.Field("masking.ratio", "must be in (0, 1] with the fixed schedule, got %v", m.Ratio)
	case !(o.Factor > 0) || o.Warmup < 1:
		return config.Field("optim.factor", "factor %v and warmup %d must be positive", o.Factor, o.Warmup)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1 || !(o.Eps > 0) || o.WeightDecay < 0 || o.Clip < 0:
		return config.Field("optim", "betas in [0, 1), eps positive, weight_decay and clip not negative")
	case o.LabelSmoothing < 0 || o.LabelSmoothing >= 1:
		return config.Field("optim.label_smoothing", "must be in [0, 1), got %v", o.LabelSmoothing)
	}
	for _, r := range c.EvalR {
		if !(r >= 0 && r <= 1) {
			return config.Field("eval_r", "levels must be in [0, 1], got %v", r)
		}
	}
	return nil
}

// DefaultNoam is train.py's optimisation.
func DefaultNoam() NoamOpts {
	return NoamOpts{Factor: 2, Warmup: 10000, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Clip: 5, LabelSmoothing: 0.1}
}

// TrainTask is "vampnet.train".
var TrainTask = train.TaskSpec[*TrainConfig, *TrainResult]{
	Name: "vampnet.train",
	Doc:  "train a VampNet (coarse or coarse-to-fine) on a frozen codec's codes: cosine-scheduled masking with Sobol levels, masked-token cross-entropy",
	Default: func() *TrainConfig {
		return &TrainConfig{Base: train.Base{Task: "vampnet.train", Trainer: train.DefaultTrainer()}, CodecSampleRate: 44100, Model: CoarseConfig(),
			Data:    DataConfig{Source: "debian", Duration: 10, LoudnessCutoff: -30, TestFraction: 0.1, Batch: 8, EvalExcerpts: 16},
			Masking: MaskingOpts{Schedule: "cosine", Ratio: 0.15}, Optim: DefaultNoam(), EvalR: []float64{0.5}, LoudnessTarget: -24}
	},
	Run: RunTrain,
}

// OpenCodec loads a frozen codec from a vampnet.codec run directory (its
// config gives the sample rate) or a weights file of the given rate.
func OpenCodec(path string, sampleRate int64, dev gotch.Device) (*Codec, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		var rc struct {
			Codec CodecConfig `toml:"codec"`
		}
		cfgPath := filepath.Join(path, "config.toml")
		if _, err := toml.DecodeFile(cfgPath, &rc); err != nil {
			return nil, fmt.Errorf("codec %s: %w", cfgPath, err)
		}
		sampleRate = rc.Codec.SampleRate
		file, err := torchmods.ResolveWeights(path)
		if err != nil {
			return nil, fmt.Errorf("codec: %w", err)
		}
		path = file
	}
	codec, store, _, err := LoadCodec(path, sampleRate, dev)
	if err != nil {
		return nil, err
	}
	for _, p := range store.Params() {
		p.Tensor.MustRequiresGrad_(false)
	}
	return codec, nil
}

// codebooks are the codec's codebook tables, [codebook_size, codebook_dim] each.
func (m *Codec) codebooks() []*ts.Tensor {
	out := make([]*ts.Tensor, len(m.Quantizer.Quantizers))
	for i, q := range m.Quantizer.Quantizers {
		out[i] = q.Codebook.Weight
	}
	return out
}

// RunTrain trains the transformer on excerpts encoded by the frozen codec
// at every step, as train.py does (codec.encode under inference mode).
func RunTrain(s *train.Session, c *TrainConfig) (*TrainResult, error) {
	codec, err := OpenCodec(c.Codec, c.CodecSampleRate, s.Device)
	if err != nil {
		return nil, err
	}
	cc := codec.Cfg
	if cc.NCodebooks < c.Model.NCodebooks || cc.CodebookSize != c.Model.VocabSize || cc.CodebookDim != c.Model.LatentDim {
		return nil, config.Field("model", "n_codebooks %d, vocab_size %d and latent_dim %d do not fit the codec's %d codebooks of %d codes of dimension %d",
			c.Model.NCodebooks, c.Model.VocabSize, c.Model.LatentDim, cc.NCodebooks, cc.CodebookSize, cc.CodebookDim)
	}
	sr := int(cc.SampleRate)
	trainTracks, testTracks, err := c.Data.tracks(sr, s.W)
	if err != nil {
		return nil, err
	}
	frames := cc.Frames(int64(c.Data.Duration * float64(sr)))
	fmt.Fprintf(s.W, "vampnet train: %d training and %d held-out tracks, excerpts of %.2f s = %d frames of %d codebooks (%d conditioning), masking %s\n",
		len(trainTracks), len(testTracks), c.Data.Duration, frames, c.Model.NCodebooks, c.Model.NConditioningCodebooks, c.Masking.Schedule)
	model := New(s.Store.Root(), c.Model)
	codebooks := codec.codebooks()
	ld, err := openExcerpts(s, c.Data, trainTracks, testTracks, sr, c.Trainer.Seed, c.LoudnessTarget)
	if err != nil {
		return nil, err
	}
	defer ld.loader.Close()
	loader, heldout, perEpoch, steps := ld.loader, ld.heldout, ld.perEpoch, ld.steps
	sobol := NewSobol(c.Trainer.Seed)
	ts.ManualSeed(c.Trainer.Seed) // NewSobol seeded the global generator for its scramble
	lr, err := train.NoamSchedule(c.Optim.Factor, c.Model.EmbeddingDim, c.Optim.Warmup)
	if err != nil {
		return nil, err
	}
	encode := func(b excerptBatch) *ts.Tensor {
		var z *ts.Tensor
		ts.NoGrad(func() {
			z = codec.Encode(b.tensor(s.Device), 0, false).Codes.MustNarrow(1, 0, c.Model.NCodebooks, false)
		})
		return z
	}
	var final map[string]float64
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, LR: lr, Clip: c.Optim.Clip,
		Opt: train.NewAdamWDecayAll(s.Store, c.Optim.Beta1, c.Optim.Beta2, c.Optim.Eps, c.Optim.WeightDecay),
		Loss: func(step int64, micro int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			z := encode(b)
			rng := rand.New(rand.NewPCG(uint64(c.Trainer.Seed), uint64(step)<<8|uint64(micro)))
			var r []float32
			if c.Masking.Schedule == "cosine" {
				r = sobol.Draw(b.n)
			}
			mask, err := c.Masking.draw(z, r, c.Model.NConditioningCodebooks, rng)
			if err != nil {
				return nil, err
			}
			return model.step(z, mask, codebooks, c.Optim.LabelSmoothing, true), nil
		},
		Eval: func(step int64) (map[string]float64, error) {
			ev, err := model.evaluate(heldout, encode, codebooks, c.EvalR, c.Optim.LabelSmoothing, heldoutSeed, s.Device)
			if err == nil && step == steps-1 { // hooks count steps from 0
				final = ev // every hook runs at the last step: its evaluation is the result's, not run twice
			}
			return ev, err
		},
		State: map[string]train.State{"loader": train.LoaderState(loader), "sobol": sobolState{sobol}},
	})
	if err != nil {
		return nil, err
	}
	ev := final
	if ev == nil { // a run resumed after its last step: no hook ran
		if ev, err = model.evaluate(heldout, encode, codebooks, c.EvalR, c.Optim.LabelSmoothing, heldoutSeed, s.Device); err != nil {
			return nil, err
		}
	}
	for _, r := range c.EvalR {
		k := rKey(r)
		fmt.Fprintf(s.W, "held-out at r %.2f (%.0f%% masked): loss %.4f, NLL %.4f, accuracy %.2f%%\n", r, 100*Gamma(r), ev["loss_"+k], ev["nll_"+k], 100*ev["accuracy_"+k])
	}
	return &TrainResult{Heldout: ev, TrainTracks: len(trainTracks), HeldoutTracks: len(testTracks), Steps: steps, Frames: frames}, nil
}

// draw makes a training mask for codes z [B, C, T]: the cosine schedule
// masks each token with probability gamma(r_b) (mask.random), the fixed
// one with Ratio; the conditioning codebooks are never masked
// (codebook_unmask).
func (m MaskingOpts) draw(z *ts.Tensor, r []float32, nCond int64, rng *rand.Rand) (*ts.Tensor, error) {
	B := z.MustSize()[0]
	rr := make([]float32, B)
	for i := range rr {
		if m.Schedule == "cosine" {
			rr[i] = r[i]
		} else {
			rr[i] = float32(InvGamma(m.Ratio))
		}
	}
	mask, err := Random(z, torchmods.FromSlice(rr, []int64{B}, z.MustDevice()), rng)
	if err != nil {
		return nil, err
	}
	return CodebookUnmask(mask, nCond)
}

// step is one forward pass and the masked-token loss.
func (m *VampNet) step(z, mask *ts.Tensor, codebooks []*ts.Tensor, smoothing float64, train bool) *ts.Tensor {
	zm, err := ApplyMask(z, mask, m.Cfg.MaskToken())
	if err != nil {
		panic(err)
	}
	return m.Loss(m.Forward(m.FromCodes(zm, codebooks), train), z, mask, smoothing)
}

func rKey(r float64) string { return fmt.Sprintf("r%.2f", r) }

// evaluate scores the held-out excerpts at each level r: the label-smoothed
// loss train.py reports, the plain NLL and the accuracy of the argmax, over
// the masked tokens of the predicted codebooks. Masks are seeded by (seed,
// r), so every evaluation sees the same ones (seed is heldoutSeed: every
// run's too).
func (m *VampNet) evaluate(heldout []excerptBatch, encode func(excerptBatch) *ts.Tensor, codebooks []*ts.Tensor, levels []float64, smoothing float64, seed int64, dev gotch.Device) (map[string]float64, error) {
	out := map[string]float64{}
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			for li, r := range levels {
				rng := rand.New(rand.NewPCG(uint64(seed), 0xe7a1+uint64(li)))
				var loss, nll, correct, count float64
				for _, b := range heldout {
					func() {
						sc := ts.NewScope()
						defer sc.Close()
						z := encode(b)
						rr := make([]float32, b.n)
						for i := range rr {
							rr[i] = float32(r)
						}
						mask, err := Random(z, torchmods.FromSlice(rr, []int64{int64(b.n)}, dev), rng)
						if err != nil {
							panic(err)
						}
						if mask, err = CodebookUnmask(mask, m.Cfg.NConditioningCodebooks); err != nil {
							panic(err)
						}
						zm, err := ApplyMask(z, mask, m.Cfg.MaskToken())
						if err != nil {
							panic(err)
						}
						logits := m.Forward(m.FromCodes(zm, codebooks), false)
						nc, np := m.Cfg.NConditioningCodebooks, m.Cfg.NPredict()
						target := CodebookFlatten(z.MustNarrow(1, nc, np, false))
						flat := CodebookFlatten(mask.MustNarrow(1, nc, np, false)).MustTotype(gotch.Bool, true)
						n := flat.MustSum(gotch.Int64, false).Int64Values()[0]
						if n == 0 {
							return
						}
						sum := func(t *ts.Tensor) float64 {
							return t.MustMaskedSelect(flat, true).MustSum(gotch.Double, true).Float64Values()[0]
						}
						ce := torchmods.CrossEntropy(logits, target, torchmods.CEOptions{Reduction: torchmods.ReduceNone})
						smooth := torchmods.CrossEntropy(logits, target, torchmods.CEOptions{Reduction: torchmods.ReduceNone, LabelSmoothing: smoothing})
						hit := logits.MustArgmax([]int64{1}, false, false).MustEqTensor(target, true).MustTotype(gotch.Double, true)
						nll += sum(ce)
						loss += sum(smooth)
						correct += sum(hit)
						count += float64(n)
					}()
				}
				k := rKey(r)
				out["loss_"+k], out["nll_"+k], out["accuracy_"+k] = loss/count, nll/count, correct/count
				if count == 0 {
					out["loss_"+k], out["nll_"+k], out["accuracy_"+k] = math.NaN(), math.NaN(), math.NaN()
				}
			}
		})
	})
	return out, err
}

// sobolState checkpoints the Sobol engine by the number of points drawn.
type sobolState struct{ s *Sobol }

func (st sobolState) SaveState() (any, map[string]*ts.Tensor, error) {
	return map[string]int64{"generated": st.s.Generated()}, nil, nil
}

func (st sobolState) LoadState(raw json.RawMessage, _ map[string]*ts.Tensor) error {
	var v struct {
		Generated int64 `json:"generated"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("sobol state: %w", err)
	}
	st.s.SkipTo(v.Generated)
	return nil
}
