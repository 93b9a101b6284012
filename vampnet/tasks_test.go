package vampnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

func init() { train.Register(CodecTask, TrainTask, EvalTask) }

// writeMusic writes n short "tracks" of generated music at 8 kHz: notes
// of a few partials with decaying envelopes, a different tune each.
func writeMusic(t *testing.T, dir string, n int) {
	require.NoError(t, os.MkdirAll(dir, 0o755))
	const sr = 8000
	for k := range n {
		rng := rand.New(rand.NewPCG(uint64(k), 7))
		a := audio.NewAudio(sr, 1, 2*sr)
		x := a.Channels[0]
		for note := 0; note < 8; note++ {
			f := 110 * math.Pow(2, float64(rng.IntN(24))/12)
			at := note * sr / 4
			for i := 0; i < sr/4 && at+i < len(x); i++ {
				env := math.Exp(-float64(i) / float64(sr) * 8)
				v := 0.0
				for h := 1; h <= 3; h++ {
					v += math.Sin(2*math.Pi*f*float64(h)*float64(i)/sr) / float64(h)
				}
				x[at+i] += float32(0.3 * env * v)
			}
		}
		require.NoError(t, audio.WriteWAV(filepath.Join(dir, fmt.Sprintf("track%02d.wav", k)), a, audio.PCM16))
	}
}

func tinyCodec() CodecConfig {
	return CodecConfig{SampleRate: 8000, EncoderDim: 4, EncoderRates: []int64{2, 4}, DecoderDim: 16, DecoderRates: []int64{4, 2},
		NCodebooks: 3, CodebookSize: 16, CodebookDim: 4, QuantizerDropout: true}
}

func tinyData(dir string, duration float64) DataConfig {
	return DataConfig{Source: "folder", Folder: dir, Duration: duration, LoudnessCutoff: -200, TestFraction: 0.3, Batch: 2, Workers: 1, EvalExcerpts: 3}
}

// The codec then a coarse-to-fine VampNet, end to end on generated music:
// the codec writes its samples and reconstruction metrics; the
// transformer reads the codec's run directory, trains on its codes and
// reports held-out metrics at each r; a resumed run ends where an
// uninterrupted one does.
func TestCodecThenTransformer(t *testing.T) {
	dir := t.TempDir()
	music := filepath.Join(dir, "music")
	writeMusic(t, music, 8)

	cc := CodecTask.Default()
	cc.Codec, cc.Data, cc.Samples = tinyCodec(), tinyData(music, 0.38), 1
	cc.Trainer.MaxSteps, cc.Trainer.LogEvery, cc.Trainer.EvalEvery, cc.Trainer.CheckpointEvery = 3, 1, 3, 3
	var log bytes.Buffer
	cres, err := CodecTask.Start(cc, filepath.Join(dir, "codec"), false, &log)
	require.NoError(t, err, log.String())
	assert.Greater(t, cres.HeldoutMelLoss, 0.0)
	assert.Greater(t, cres.HeldoutMelDist, 0.0)
	assert.Equal(t, 1000.0, cres.CodesPerSecond) // 8000 Hz / hop 8
	assert.Equal(t, 1000.0*3*4, cres.BitsPerSecond)
	assert.Len(t, cres.SamplesWritten, 2)
	for _, p := range cres.SamplesWritten {
		a, err := audio.ReadWAV(p)
		require.NoError(t, err)
		assert.Equal(t, 8000, a.SampleRate)
		assert.FileExists(t, strings.TrimSuffix(p, ".wav")+".png")
	}
	assert.Equal(t, []string{"00-original.wav", "00-codec.wav"}, []string{filepath.Base(cres.SamplesWritten[0]), filepath.Base(cres.SamplesWritten[1])})

	tc := func(steps int64) *TrainConfig {
		c := TrainTask.Default()
		c.Codec = filepath.Join(dir, "codec")
		c.Model = Config{NHeads: 2, NLayers: 2, NCodebooks: 3, NConditioningCodebooks: 1, LatentDim: 4, EmbeddingDim: 16, VocabSize: 16,
			Dropout: 0.1, LoRARank: 8, Buckets: 32, MaxDistance: 128}
		c.Data = tinyData(music, 0.1)
		c.Optim.Warmup = 4
		c.EvalR = []float64{0.5, 0.9}
		c.Trainer.MaxSteps, c.Trainer.LogEvery, c.Trainer.EvalEvery, c.Trainer.CheckpointEvery = steps, 1, 2, 2
		return c
	}
	res, err := TrainTask.Start(tc(4), filepath.Join(dir, "c2f"), false, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, int64(100), res.Frames) // 0.1 s at 1000 frames/s
	for _, k := range []string{"loss_r0.50", "nll_r0.50", "accuracy_r0.50", "loss_r0.90"} {
		v, ok := res.Heldout[k]
		require.True(t, ok, k)
		assert.False(t, math.IsNaN(v), k)
	}
	assert.Greater(t, res.Heldout["nll_r0.50"], 0.0)

	// stop after 2 steps, resume to 4 (the run's config edited, as
	// -allow-change would): the same held-out metrics, data order, Sobol
	// levels and masks following from the seed, the step and the checkpoint
	_, err = TrainTask.Start(tc(2), filepath.Join(dir, "resumed"), false, io.Discard)
	require.NoError(t, err)
	cfg := filepath.Join(dir, "resumed", "config.toml")
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, bytes.Replace(b, []byte("max_steps = 2"), []byte("max_steps = 4"), 1), 0o644))
	res2, err := TrainTask.Start(tc(4), filepath.Join(dir, "resumed"), true, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, res.Heldout, res2.Heldout)

	b, err = os.ReadFile(filepath.Join(dir, "c2f", "results.json"))
	require.NoError(t, err)
	var saved TrainResult
	require.NoError(t, json.Unmarshal(b, &saved))
	assert.Equal(t, res.Heldout, saved.Heldout)

	// the evaluation: every setting measured, the codec baseline's codes
	// exact, the periodic prompt's masked share as its period says, samples
	ec := EvalTask.Default()
	ec.Codec, ec.Coarse = filepath.Join(dir, "codec"), filepath.Join(dir, "c2f")
	ec.Data = tinyData(music, 1.0) // one 0.96 s VGGish example per excerpt (and MelDistance's 2048-sample window)
	// a narrow VGGish with random weights, saved and loaded as a user's
	// torchvggish weights are, gives every setting a FAD
	vs := torchmods.NewStore(gotch.CPU)
	_, err = audio.NewVGGish(vs.Root(), audio.VGGishConfig{Widths: []int64{2, 2, 4, 4, 4, 4}, Hidden: 8, NoPCA: true})
	require.NoError(t, err)
	ec.VGGish = filepath.Join(dir, "vggish.safetensors")
	require.NoError(t, vs.Save(ec.VGGish, "", nil))
	ec.Data.EvalExcerpts = 2
	ec.SamplingSteps, ec.StepsPeriodic, ec.Periodic, ec.Samples = []int{1, 2}, 4, []int64{4, 2}, 1
	ec.Sample.Steps = 2
	eres, err := EvalTask.Start(ec, filepath.Join(dir, "eval"), false, io.Discard)
	require.NoError(t, err)
	for _, k := range []string{"steps_1", "steps_2", "periodic_4", "periodic_2", "codec", "random"} {
		m, ok := eres.Settings[k]
		require.True(t, ok, k)
		assert.Greater(t, m.Mel, 0.0, k)
		assert.False(t, math.IsNaN(m.Frechet), k)
		assert.False(t, math.IsNaN(m.FAD), k)
	}
	assert.NotZero(t, eres.Settings["random"].FAD)
	// 2 excerpts of 1,000 frames: at least one code and at most all of
	// them, and an entropy no larger than a uniform use of those it uses
	assert.GreaterOrEqual(t, eres.Codes.Used, 1.0)
	assert.LessOrEqual(t, eres.Codes.Entropy, math.Log(eres.Codes.Used)+1e-9)
	assert.Equal(t, 1.0, eres.Settings["codec"].CodeAcc)
	assert.Equal(t, 0.0, eres.Settings["codec"].Masked)
	// 1,000 frames, one in 4 kept (frames 0, 4, ...): 75% of the coarse
	// positions masked; the conditioning codebook is masked too (the
	// generation keeps it)
	assert.InDelta(t, 0.75, eres.Settings["periodic_4"].Masked, 1e-9)
	assert.InDelta(t, 0.5, eres.Settings["periodic_2"].Masked, 1e-9)
	assert.FileExists(t, filepath.Join(dir, "eval", "samples", "00-periodic_4.wav"))
	assert.FileExists(t, filepath.Join(dir, "eval", "samples", "00-codec.png"))
	assert.FileExists(t, filepath.Join(dir, "eval", "samples", "00-original.wav"))

	// with a coarse-to-fine pass: as experiment.py runs it (no mask, its own
	// steps) and as the app does (the prompt's mask and steps); the two
	// generate different fine codes, so the audio differs
	cc1 := tc(2)
	cc1.Model.NCodebooks, cc1.Model.NConditioningCodebooks = 1, 0
	_, err = TrainTask.Start(cc1, filepath.Join(dir, "coarse"), false, io.Discard)
	require.NoError(t, err)
	ec.Coarse, ec.C2F, ec.VGGish, ec.Samples = filepath.Join(dir, "coarse"), filepath.Join(dir, "c2f"), "", 0
	ec.SamplingSteps, ec.Periodic = []int{1}, []int64{2}
	paper, err := EvalTask.Start(ec, filepath.Join(dir, "eval-c2f"), false, io.Discard)
	require.NoError(t, err)
	ec.C2FAsApp = true
	app, err := EvalTask.Start(ec, filepath.Join(dir, "eval-c2f-app"), false, io.Discard)
	require.NoError(t, err)
	for _, k := range []string{"steps_1", "periodic_2"} {
		assert.Greater(t, paper.Settings[k].Mel, 0.0, k)
		assert.NotEqual(t, paper.Settings[k].Mel, app.Settings[k].Mel, k)
		// the coarse pass is the same: its codes score the same
		assert.Equal(t, paper.Settings[k].CodeAcc, app.Settings[k].CodeAcc, k)
	}
	// another seed generates differently, but on the same excerpts: the
	// codec's reconstruction of them scores the same
	ec.C2FAsApp, ec.Trainer.Seed = false, 1
	other, err := EvalTask.Start(ec, filepath.Join(dir, "eval-seed1"), false, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, paper.Settings["codec"].Mel, other.Settings["codec"].Mel)
	assert.NotEqual(t, paper.Settings["steps_1"].Mel, other.Settings["steps_1"].Mel)
}

// A transformer whose vocabulary does not fit the codec is refused with
// the sizes named; a missing codec names the path.
func TestTrainRefusesAMismatchedCodec(t *testing.T) {
	dir := t.TempDir()
	music := filepath.Join(dir, "music")
	writeMusic(t, music, 4)
	cc := CodecTask.Default()
	cc.Codec, cc.Data, cc.Samples = tinyCodec(), tinyData(music, 0.38), 0
	cc.Trainer.MaxSteps = 1
	_, err := CodecTask.Start(cc, filepath.Join(dir, "codec"), false, io.Discard)
	require.NoError(t, err)

	c := TrainTask.Default()
	c.Codec, c.Data = filepath.Join(dir, "codec"), tinyData(music, 0.1)
	c.Model = Config{NHeads: 2, NLayers: 1, NCodebooks: 2, LatentDim: 4, EmbeddingDim: 16, VocabSize: 1024, LoRARank: 8, Buckets: 32, MaxDistance: 128}
	c.Trainer.MaxSteps = 1
	_, err = TrainTask.Start(c, filepath.Join(dir, "bad"), false, io.Discard)
	assert.ErrorContains(t, err, "vocab_size 1024")
	c.Codec = filepath.Join(dir, "nowhere")
	_, err = TrainTask.Start(c, filepath.Join(dir, "bad2"), false, io.Discard)
	assert.ErrorContains(t, err, "nowhere")
}

func TestCodeStats(t *testing.T) {
	// codebook 0: two codes, equally often (ln 2); codebook 1: one code (0)
	st := codeStats([]map[int64]int{{3: 5, 7: 5}, {9: 4}})
	assert.InDelta(t, math.Log(2)/2, st.Entropy, 1e-12)
	assert.Equal(t, 1.5, st.Used)
	// four codes, 1/2, 1/4, 1/8, 1/8: 1.75 bits
	st = codeStats([]map[int64]int{{0: 4, 1: 2, 2: 1, 3: 1}})
	assert.InDelta(t, 1.75*math.Log(2), st.Entropy, 1e-12)
	assert.Equal(t, 4.0, st.Used)
}
