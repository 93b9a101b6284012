package textclf

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Each value below is worked by hand in the comment above it.
func TestMetricsHandWorked(t *testing.T) {
	label := []int{1, 1, 1, 1, 0, 0, 0, 0, 0, 0}
	pred := []int{1, 1, 1, 0, 1, 1, 0, 0, 0, 0}
	// 3 + 4 right of 10.
	assert.InDelta(t, 0.7, Accuracy(pred, label), 1e-15)
	// Class 1: TP 3, FP 2, FN 1: F1 = 6 / (6 + 2 + 1) = 2/3.
	assert.InDelta(t, 2.0/3, F1(pred, label, 1), 1e-15)
	// Class 0: TP 4, FP 1, FN 2: 8/11; macro (2/3 + 8/11) / 2 = 23/33.
	assert.InDelta(t, 23.0/33, F1Macro(pred, label, 2), 1e-15)
	// Binary MCC = (TP·TN - FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
	// = (3·4 - 2·1) / sqrt(5·4·5·6) = 10 / sqrt(600).
	assert.InDelta(t, 10/math.Sqrt(600), Matthews(pred, label), 1e-15)

	// Three classes (scikit-learn's multi-class formula): labels 0 0 1 1 2 2,
	// predictions 0 1 1 1 2 0. s = 6, c = 4, t = (2, 2, 2), p = (2, 3, 1):
	// (4·6 - (2·2 + 3·2 + 1·2)) / sqrt((36 - (4+9+1)) (36 - 12)) = 12 / sqrt(22·24).
	assert.InDelta(t, 12/math.Sqrt(22*24), Matthews([]int{0, 1, 1, 1, 2, 0}, []int{0, 0, 1, 1, 2, 2}), 1e-15)
	// One predicted class: a zero factor, MCC 0 (scikit-learn's convention).
	assert.Equal(t, 0.0, Matthews([]int{1, 1, 1}, []int{0, 1, 0}))
	// F1 of a class never predicted nor present is 0.
	assert.Equal(t, 0.0, F1([]int{0, 0}, []int{0, 0}, 1))

	// Pearson of x = 1 2 3 4, y = 2 4 5 9: means 2.5 and 5; deviations
	// -1.5 -.5 .5 1.5 and -3 -1 0 4: Sxy = 4.5 + .5 + 0 + 6 = 11,
	// Sxx = 5, Syy = 9 + 1 + 0 + 16 = 26: r = 11 / sqrt(130).
	assert.InDelta(t, 11/math.Sqrt(130), Pearson([]float64{1, 2, 3, 4}, []float64{2, 4, 5, 9}), 1e-15)
	assert.True(t, math.IsNaN(Pearson([]float64{1, 1}, []float64{1, 2})), "constant input, as SciPy")

	// Spearman with ties: x = 10 20 20 30 ranks 1 2.5 2.5 4; y = 1 3 2 2
	// ranks 1 4 2.5 2.5. Means 2.5; deviations x: -1.5 0 0 1.5, y: -1.5 1.5 0 0:
	// Sxy = 2.25, Sxx = 4.5, Syy = 4.5: rho = 2.25 / 4.5 = 0.5.
	x, y := []float64{10, 20, 20, 30}, []float64{1, 3, 2, 2}
	assert.Equal(t, []float64{1, 2.5, 2.5, 4}, Ranks(x))
	assert.Equal(t, []float64{1, 4, 2.5, 2.5}, Ranks(y))
	assert.InDelta(t, 0.5, Spearman(x, y), 1e-15)
	// Three-way tie: 5 5 5 1 ranks 3 3 3 1.
	assert.Equal(t, []float64{3, 3, 3, 1}, Ranks([]float64{5, 5, 5, 1}))

	s := Scores{Pred: pred, Label: label, Classes: 2}
	m, err := s.Compute([]string{MetricAccuracy, MetricF1, MetricMatthews})
	assert.NoError(t, err)
	assert.InDelta(t, 2.0/3, m["f1"], 1e-15)
	_, err = Scores{Pred: pred, Label: label, Classes: 3}.Compute([]string{MetricF1})
	assert.ErrorContains(t, err, "f1_macro", "binary F1 refuses more classes")
}
