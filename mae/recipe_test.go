package mae

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The schedule is util/lr_sched.py's at fractional epochs: 0 at step 0,
// linear to lr at the end of warm-up, half-cosine to min_lr at the end.
func TestScheduleMatchesOfficialFormula(t *testing.T) {
	const lr, minLR, warm, epochs, per = 1e-3, 1e-6, 5.0, 100.0, 10
	s := Schedule(lr, minLR, warm, epochs, per)
	assert.Equal(t, 0.0, s(0))
	assert.InDelta(t, lr*0.1/5, s(1), 1e-15)       // epoch 0.1
	assert.InDelta(t, lr*2.5/5, s(25), 1e-15)      // epoch 2.5
	assert.InDelta(t, lr, s(50), 1e-15)            // epoch 5: warm-up ends
	assert.InDelta(t, (lr+minLR)/2, s(525), 1e-15) // halfway through the cosine
	assert.InDelta(t, minLR, s(1000), 1e-15)       // the end
	want := minLR + (lr-minLR)*0.5*(1+math.Cos(math.Pi*(33.3-5)/95))
	assert.InDelta(t, want, s(333), 1e-15)
	// lr = blr * effective batch / 256
	assert.InDelta(t, 2.4e-3, OptimConfig{BLR: 1.5e-4}.AbsLR(4096), 1e-15)
	assert.Equal(t, 0.5, OptimConfig{BLR: 1.5e-4, LR: 0.5}.AbsLR(4096))
}

func TestBetaSamplerMoments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range []float64{0.8, 1.0, 2.5} {
		var sum, sq float64
		const n = 200000
		for range n {
			x := sampleBeta(rng, a)
			require.True(t, x >= 0 && x <= 1)
			sum, sq = sum+x, sq+x*x
		}
		mean, variance := sum/n, sq/n-(sum/n)*(sum/n)
		assert.InDelta(t, 0.5, mean, 0.003, "alpha %v", a)
		assert.InDelta(t, 1/(4*(2*a+1)), variance, 0.002, "Beta(a, a) variance, alpha %v", a)
	}
}

func TestMixupAndCutmix(t *testing.T) {
	const n, c, h, w, classes = 4, 1, 8, 8, 3
	mk := func() imageBatch {
		b := imageBatch{pixels: make([]float32, n*c*h*w), labels: []int64{0, 1, 2, 0}, shape: []int64{n, c, h, w}}
		for k := range n {
			for i := range c * h * w {
				b.pixels[k*c*h*w+i] = float32(k)
			}
		}
		return b
	}
	rng := rand.New(rand.NewPCG(5, 6))
	// Mixup only: every pixel of image k is lam*k + (1-lam)*(n-1-k), and the
	// soft target mixes the two smoothed one-hots by the same lam.
	b := mk()
	mixer{mixup: 0.8, prob: 1, smoothing: 0.1, classes: classes}.apply(&b, rng)
	lam := float64(b.pixels[0]-3) / (0 - 3) // image 0 mixed with image 3
	require.True(t, lam > 0 && lam < 1)
	for k := range n {
		assert.InDelta(t, lam*float64(k)+(1-lam)*float64(n-1-k), float64(b.pixels[k*h*w+17]), 1e-5)
	}
	off, on := 0.1/3, 0.9+0.1/3
	// image 1 (label 1) mixed with image 2 (label 2)
	assert.InDelta(t, off, float64(b.soft[3+0]), 1e-6)
	assert.InDelta(t, on*lam+off*(1-lam), float64(b.soft[3+1]), 1e-6)
	assert.InDelta(t, off*lam+on*(1-lam), float64(b.soft[3+2]), 1e-6)
	for k := range n {
		var sum float32
		for j := range classes {
			sum += b.soft[k*classes+j]
		}
		assert.InDelta(t, 1, sum, 1e-6)
	}
	// Cutmix only: a box of image n-1-k pasted into image k, and lam is the
	// kept area's share.
	b = mk()
	mixer{cutmix: 1, prob: 1, classes: classes}.apply(&b, rng)
	pasted := 0
	for i := range h * w {
		if b.pixels[h*w+i] == 2 { // image 1 gets a box of image 2
			pasted++
		}
	}
	require.Positive(t, pasted)
	lam = 1 - float64(pasted)/float64(h*w)
	assert.InDelta(t, lam, float64(b.soft[3+1]), 1e-6, "image 1 keeps its label 1 with weight lam")
	assert.InDelta(t, 1-lam, float64(b.soft[3+2]), 1e-6, "and takes label 2 with the box's share")
	// prob 0: nothing is mixed, the targets are the smoothed one-hots.
	b = mk()
	mixer{mixup: 0.8, cutmix: 1, prob: 0, smoothing: 0.1, classes: classes}.apply(&b, rng)
	assert.Equal(t, mk().pixels, b.pixels)
	assert.InDelta(t, on, float64(b.soft[0]), 1e-6)
}
