package vampnet

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Sobol is torch.quasirandom.SobolEngine in one dimension, which
// scripts/exp/train.py draws each batch's masking levels r from
// (SobolEngine(1, scramble=True, seed=seed)): a low-discrepancy sequence
// covers [0, 1) more evenly than independent draws, so every batch sees
// light and heavy masking alike. It runs libtorch's own Sobol kernels, so
// the points are PyTorch's to the bit.
//
// PyTorch scrambles with a torch.Generator of its own, seeded by seed;
// gotch exposes only the global generator, so NewSobol seeds the global
// one with seed for the scramble's draws. Callers that need the global
// stream afterwards reseed it.
type Sobol struct {
	seed         int64
	state, quasi *ts.Tensor // sobolstate [1, 30] and the current point, int64
	first        float32
	generated    int64
}

const sobolMaxBit = 30

// NewSobol is SobolEngine(1, scramble=True, seed=seed).
func NewSobol(seed int64) *Sobol {
	s := &Sobol{seed: seed}
	ts.NoGrad(func() {
		s.state = ts.MustZeros([]int64{1, sobolMaxBit}, gotch.Int64, gotch.CPU)
		s.state.Must_SobolEngineInitializeState_(1)
		ts.ManualSeed(seed)
		bits := ts.MustRandint(2, []int64{1, sobolMaxBit}, gotch.Int64, gotch.CPU)
		pow := ts.MustArange(ts.IntScalar(sobolMaxBit), gotch.Int64, gotch.CPU)
		pow = ts.MustPowScalar(ts.IntScalar(2), pow) // torch.pow(2, arange(30))
		shift := bits.MustMv(pow, true)
		ltm := ts.MustRandint(2, []int64{1, sobolMaxBit, sobolMaxBit}, gotch.Int64, gotch.CPU).MustTril(0, true)
		s.state.Must_SobolEngineScramble_(ltm, 1)
		s.quasi = shift
		s.first = float32(float64(s.quasi.Int64Values()[0]) / float64(int64(1)<<sobolMaxBit))
		ts.Persist(s.state)
		ts.Persist(s.quasi)
		ltm.MustDrop()
		pow.MustDrop()
	})
	return s
}

// Draw is draw(n)[:, 0]: the next n points.
func (s *Sobol) Draw(n int) []float32 {
	if n < 1 {
		panic(fmt.Errorf("vampnet: Sobol.Draw(%d): n must be positive", n))
	}
	var out []float32
	ts.NoGrad(func() {
		k, from := int64(n), s.generated-1
		if s.generated == 0 {
			out = append(out, s.first)
			k, from = k-1, 0
		}
		if k > 0 {
			res, quasi := ts.Must_SobolEngineDraw(s.quasi, k, s.state, 1, from, gotch.Float)
			s.quasi.MustDrop()
			s.quasi = quasi
			ts.Persist(s.quasi)
			for _, v := range res.Float64Values() {
				out = append(out, float32(v))
			}
			res.MustDrop()
		}
	})
	s.generated += int64(n)
	return out
}

// Generated is how many points have been drawn: what a checkpoint keeps
// (SkipTo restores the sequence from it).
func (s *Sobol) Generated() int64 { return s.generated }

// SkipTo draws and discards points until n have been drawn, for resuming.
func (s *Sobol) SkipTo(n int64) {
	for s.generated < n {
		s.Draw(int(min(n-s.generated, 1<<16)))
	}
}
