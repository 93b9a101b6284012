package vampnet

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
)

// TestCodecStepProfile times one training step of configs/vampnet/
// codec_small.toml's codec (forward, loss, backward; per module in
// isolation, forward and backward) and prints the times. It asserts
// nothing about time and runs only with REPRO_CODEC_PROFILE=1 (it takes
// about a minute on a loaded 2-core machine):
//
//	REPRO_CODEC_PROFILE=1 nice -n 10 go test ./vampnet -run CodecStepProfile -v -count=1
//
// REPRO_CODEC_CONFIG names another config, REPRO_CODEC_THREADS sets
// libtorch's thread count (0: its default), REPRO_CODEC_STEPS the number of
// timed steps (3), REPRO_CODEC_BATCH overrides data.batch, and
// REPRO_CODEC_STEPONLY=1 stops after the whole step.
func TestCodecStepProfile(t *testing.T) {
	if os.Getenv("REPRO_CODEC_PROFILE") == "" {
		t.Skip("set REPRO_CODEC_PROFILE=1 to time the codec's training step")
	}
	path := os.Getenv("REPRO_CODEC_CONFIG")
	if path == "" {
		path = "../configs/vampnet/codec_small.toml"
	}
	env := func(name string, def int) int {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			require.NoError(t, err, name)
			return n
		}
		return def
	}
	if n := env("REPRO_CODEC_THREADS", 0); n > 0 {
		ts.SetNumThreads(n)
	}
	steps := env("REPRO_CODEC_STEPS", 3)
	c := CodecTask.Default()
	require.NoError(t, config.Load(path, c, nil))
	batch := int64(env("REPRO_CODEC_BATCH", c.Data.Batch))
	sr := int(c.Codec.SampleRate)
	samples := int64(c.Data.Duration * float64(sr))
	t.Logf("%s: batch %d x %d samples, codec %+v", path, batch, samples, c.Codec)

	ts.ManualSeed(0)
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := NewCodec(store.Root(), c.Codec)
	require.NoError(t, err)
	mel := audio.DACMelLoss(sr)
	x := ts.MustRandn([]int64{batch, 1, samples}, gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(0.1), true)
	ts.Persist(x)
	defer x.MustDrop()

	timeIt := func(f func()) time.Duration {
		sc := ts.NewScope()
		defer sc.Close()
		start := time.Now()
		f()
		return time.Since(start)
	}
	best := func(reps int, f func()) time.Duration {
		var b time.Duration
		for i := range reps + 1 { // the first is a warm-up
			if d := timeIt(f); i == 1 || d < b {
				b = d
			}
		}
		return b
	}

	// The whole step, as RunCodec's loss and Session.Backward run it.
	var fwd, loss, bwd time.Duration
	for i := range steps + 1 {
		var f, l, b time.Duration
		timeIt(func() {
			start := time.Now()
			enc, y := m.Forward(x, 0, true)
			f = time.Since(start)
			start = time.Now()
			total := mel.Forward(y, x).MustMulScalar(ts.FloatScalar(c.Loss.Mel), true)
			total = total.MustAdd(enc.CommitmentLoss.MustMean(gotch.Float, false).MustMulScalar(ts.FloatScalar(c.Loss.Commitment), true), true)
			total = total.MustAdd(enc.CodebookLoss.MustMean(gotch.Float, false).MustMulScalar(ts.FloatScalar(c.Loss.Codebook), true), true)
			total.Float64Values()
			l = time.Since(start)
			start = time.Now()
			require.NoError(t, total.Backward())
			b = time.Since(start)
			for _, p := range store.Params() {
				if g := p.Tensor.MustGrad(false); g.MustDefined() {
					g.MustZero_()
				}
			}
		})
		if i > 0 {
			fwd, loss, bwd = fwd+f, loss+l, bwd+b
		}
	}
	n := time.Duration(steps)
	t.Logf("step (mean of %d): forward %v, loss %v, backward %v, total %v", steps, fwd/n, loss/n, bwd/n, (fwd+loss+bwd)/n)
	if os.Getenv("REPRO_CODEC_STEPONLY") != "" {
		return
	}

	// Each module in isolation, on an input of the shape it sees in the
	// step: forward alone, then forward and backward of (out*r).sum().
	report := func(name string, in *ts.Tensor, f func(*ts.Tensor) *ts.Tensor) *ts.Tensor {
		fw := best(2, func() { f(in) })
		fb := best(2, func() {
			leaf := in.MustDetach(false)
			leaf.MustRequiresGrad_(true)
			o := f(leaf)
			require.NoError(t, o.MustSum(gotch.Float, false).Backward())
		})
		t.Logf("%-34s in %-16v forward %8.1f ms, backward %8.1f ms", name, in.MustSize(), ms(fw), ms(fb-fw))
		var res *ts.Tensor
		ts.NoGrad(func() { res = f(in) })
		ts.Persist(res)
		return res
	}
	var h *ts.Tensor
	ts.NoGrad(func() { h, _ = m.Preprocess(x) })
	ts.Persist(h)
	h = report("encoder.block.0 (conv k7)", h, m.Encoder.In.Forward)
	for i, b := range m.Encoder.Blocks {
		for j, u := range b.Units {
			h2 := report(fmt.Sprintf("encoder.block.%d unit %d", i+1, j), h, u.Forward)
			h = h2
		}
		h = report(fmt.Sprintf("encoder.block.%d down", i+1), h, func(v *ts.Tensor) *ts.Tensor { return b.Down.Forward(b.Snake.Forward(v)) })
	}
	h = report("encoder out", h, func(v *ts.Tensor) *ts.Tensor { return m.Encoder.Out.Forward(m.Encoder.Snake.Forward(v)) })
	h = report("residual VQ", h, func(v *ts.Tensor) *ts.Tensor { q := m.Quantizer.Forward(v, 0, true); return q.Z })
	h = report("decoder.model.0 (conv k7)", h, m.Decoder.In.Forward)
	for i, b := range m.Decoder.Blocks {
		up := report(fmt.Sprintf("decoder.model.%d up", i+1), h, func(v *ts.Tensor) *ts.Tensor { return b.Up.Forward(b.Snake.Forward(v)) })
		for k, stack := range b.MRF {
			report(fmt.Sprintf("decoder.model.%d mrf k%d", i+1, codecMRFKernels[k]), up, func(v *ts.Tensor) *ts.Tensor {
				for _, u := range stack {
					v = u.Forward(v)
				}
				return v
			})
		}
		h = report(fmt.Sprintf("decoder.model.%d whole", i+1), h, b.Forward)
	}
	y := report("decoder out", h, func(v *ts.Tensor) *ts.Tensor { return m.Decoder.Out.Forward(m.Decoder.Snake.Forward(v)).MustTanh(true) })
	y = y.MustNarrow(2, 0, samples, false)
	for i := range mel.NMels {
		one := mel
		one.NMels, one.WindowLengths = mel.NMels[i:i+1], mel.WindowLengths[i:i+1]
		report(fmt.Sprintf("mel loss window %d", one.WindowLengths[0]), y, func(v *ts.Tensor) *ts.Tensor { return one.Forward(v, x) })
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func TestCodecThreadNote(t *testing.T) {
	for _, c := range []struct {
		threads, policy string
		warn            bool
	}{{"", "", false}, {"1", "", false}, {"2", "", true}, {" 4 ", "ACTIVE", true}, {"2", "passive", false}, {"x", "", false}} {
		if got := codecThreadNote(c.threads, c.policy) != ""; got != c.warn {
			t.Errorf("OMP_NUM_THREADS %q, OMP_WAIT_POLICY %q: warning %v, want %v", c.threads, c.policy, got, c.warn)
		}
	}
}
