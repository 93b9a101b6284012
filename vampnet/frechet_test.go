package vampnet

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func gaussianRows(rng *rand.Rand, n int, mu, sd []float64, mix [][]float64) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		z := make([]float64, len(mu))
		for j := range z {
			z[j] = rng.NormFloat64() * sd[j]
		}
		row := make([]float64, len(mu))
		for j := range row {
			row[j] = mu[j]
			for k := range z {
				row[j] += mix[j][k] * z[k]
			}
		}
		out[i] = row
	}
	return out
}

// With diagonal covariances the distance has a closed form; a rotation of
// both sets leaves it unchanged; a set against itself is 0; the sample
// estimate approaches the population value.
func TestFrechetDistance(t *testing.T) {
	// exact: two sets whose sample means and covariances are known
	a := [][]float64{{1, 0}, {-1, 0}, {0, 2}, {0, -2}} // mean 0, cov diag(2/3, 8/3)
	b := [][]float64{{4, 1}, {2, 1}, {3, 2}, {3, 0}}   // mean (3, 1), cov diag(2/3, 2/3)
	got, err := FrechetDistance(a, b)
	require.NoError(t, err)
	want := 9 + 1 + (2.0/3 + 2.0/3 - 2*math.Sqrt(4.0/9)) + (8.0/3 + 2.0/3 - 2*math.Sqrt(16.0/9))
	assert.InDelta(t, want, got, 1e-10)

	self, err := FrechetDistance(a, a)
	require.NoError(t, err)
	assert.InDelta(t, 0, self, 1e-10)

	// rotation invariance and convergence to the population distance
	rng := rand.New(rand.NewPCG(1, 2))
	id := [][]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
	x := gaussianRows(rng, 20000, []float64{0, 0, 0}, []float64{1, 2, 0.5}, id)
	y := gaussianRows(rng, 20000, []float64{1, 0, -1}, []float64{2, 1, 0.5}, id)
	d, err := FrechetDistance(x, y)
	require.NoError(t, err)
	pop := 2.0 + (1 + 4 - 4) + (4 + 1 - 4) + 0
	assert.InDelta(t, pop, d, 0.1)
	c, s := math.Cos(0.7), math.Sin(0.7)
	rot := func(rows [][]float64) [][]float64 {
		out := make([][]float64, len(rows))
		for i, r := range rows {
			out[i] = []float64{c*r[0] - s*r[1], s*r[0] + c*r[1], r[2]}
		}
		return out
	}
	dr, err := FrechetDistance(rot(x), rot(y))
	require.NoError(t, err)
	assert.InDelta(t, d, dr, 1e-8)

	_, err = FrechetDistance(a[:1], b)
	assert.ErrorContains(t, err, "at least 2")
	_, err = FrechetDistance([][]float64{{1}, {2, 3}}, b)
	assert.ErrorContains(t, err, "dimensions")
}
