package vampnet

import (
	"fmt"
	"math"
)

// FrechetDistance is the Fréchet distance between Gaussians fitted to two
// sets of embeddings (rows), as FAD and FID compute it:
//
//	|mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a^½ S_b S_a^½)^½)
//
// with unbiased covariances. The matrix square roots come from Jacobi
// eigendecompositions of symmetric matrices (S_a^½ S_b S_a^½ is symmetric
// and positive semi-definite, so its square root's trace is the sum of the
// square roots of its eigenvalues), in float64; eigenvalues that rounding
// makes slightly negative count as 0.
func FrechetDistance(a, b [][]float64) (float64, error) {
	if len(a) < 2 || len(b) < 2 {
		return 0, fmt.Errorf("frechet distance: %d and %d embeddings; need at least 2 of each", len(a), len(b))
	}
	d := len(a[0])
	for _, set := range [][][]float64{a, b} {
		for i, row := range set {
			if len(row) != d {
				return 0, fmt.Errorf("frechet distance: embedding %d has %d dimensions, the first has %d", i, len(row), d)
			}
		}
	}
	ma, sa := meanCov(a)
	mb, sb := meanCov(b)
	var dist float64
	for i := range ma {
		dist += (ma[i] - mb[i]) * (ma[i] - mb[i])
	}
	for i := 0; i < d; i++ {
		dist += sa[i][i] + sb[i][i]
	}
	ra := symSqrt(sa)
	m := mul(mul(ra, sb), ra)
	for i := range m { // symmetrise away rounding
		for j := 0; j < i; j++ {
			v := (m[i][j] + m[j][i]) / 2
			m[i][j], m[j][i] = v, v
		}
	}
	vals, _ := jacobiEigen(m)
	for _, v := range vals {
		dist -= 2 * math.Sqrt(math.Max(v, 0))
	}
	return dist, nil
}

func meanCov(x [][]float64) ([]float64, [][]float64) {
	n, d := len(x), len(x[0])
	mu := make([]float64, d)
	for _, r := range x {
		for j, v := range r {
			mu[j] += v / float64(n)
		}
	}
	cov := make([][]float64, d)
	for i := range cov {
		cov[i] = make([]float64, d)
	}
	for _, r := range x {
		for i := 0; i < d; i++ {
			di := r[i] - mu[i]
			for j := 0; j <= i; j++ {
				cov[i][j] += di * (r[j] - mu[j])
			}
		}
	}
	for i := 0; i < d; i++ {
		for j := 0; j <= i; j++ {
			cov[i][j] /= float64(n - 1)
			cov[j][i] = cov[i][j]
		}
	}
	return mu, cov
}

// symSqrt is the principal square root of a symmetric positive
// semi-definite matrix: V diag(sqrt(max(l, 0))) Vᵀ.
func symSqrt(s [][]float64) [][]float64 {
	vals, vecs := jacobiEigen(s)
	d := len(s)
	out := make([][]float64, d)
	for i := range out {
		out[i] = make([]float64, d)
		for j := 0; j < d; j++ {
			var v float64
			for k := 0; k < d; k++ {
				v += vecs[i][k] * math.Sqrt(math.Max(vals[k], 0)) * vecs[j][k]
			}
			out[i][j] = v
		}
	}
	return out
}

func mul(a, b [][]float64) [][]float64 {
	n, m, p := len(a), len(b), len(b[0])
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, p)
		for k := 0; k < m; k++ {
			if a[i][k] == 0 {
				continue
			}
			for j := 0; j < p; j++ {
				out[i][j] += a[i][k] * b[k][j]
			}
		}
	}
	return out
}

// jacobiEigen diagonalises a symmetric matrix by cyclic Jacobi rotations:
// eigenvalues and the eigenvectors as columns of vecs. It converges
// quadratically; 50 sweeps bound it.
func jacobiEigen(s [][]float64) (vals []float64, vecs [][]float64) {
	d := len(s)
	a := make([][]float64, d)
	vecs = make([][]float64, d)
	for i := range a {
		a[i] = append([]float64(nil), s[i]...)
		vecs[i] = make([]float64, d)
		vecs[i][i] = 1
	}
	for sweep := 0; sweep < 50; sweep++ {
		var off, norm float64
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				if i != j {
					off += a[i][j] * a[i][j]
				}
				norm += a[i][j] * a[i][j]
			}
		}
		if off <= 1e-22*norm || off == 0 {
			break
		}
		for p := 0; p < d; p++ {
			for q := p + 1; q < d; q++ {
				if a[p][q] == 0 {
					continue
				}
				theta := (a[q][q] - a[p][p]) / (2 * a[p][q])
				t := math.Copysign(1, theta) / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				c := 1 / math.Sqrt(t*t+1)
				sn := t * c
				for k := 0; k < d; k++ { // A = Jᵀ A J: columns p, q
					akp, akq := a[k][p], a[k][q]
					a[k][p], a[k][q] = c*akp-sn*akq, sn*akp+c*akq
				}
				for k := 0; k < d; k++ { // rows p, q
					apk, aqk := a[p][k], a[q][k]
					a[p][k], a[q][k] = c*apk-sn*aqk, sn*apk+c*aqk
				}
				for k := 0; k < d; k++ {
					vkp, vkq := vecs[k][p], vecs[k][q]
					vecs[k][p], vecs[k][q] = c*vkp-sn*vkq, sn*vkp+c*vkq
				}
			}
		}
	}
	vals = make([]float64, d)
	for i := range vals {
		vals[i] = a[i][i]
	}
	return vals, vecs
}
