package cocoop

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Dassl's Classification evaluator on cases worked by hand: accuracy,
// sklearn's macro-F1 over the labels present, per-class accuracy and its
// mean.
func TestClassificationScoresByHand(t *testing.T) {
	// label 0: TP 1, FN 1, FP 1 -> F1 2/4; accuracy 1/2
	// label 1: TP 2, FN 1, FP 2 -> F1 4/7; accuracy 2/3
	// label 2: TP 0, FN 1, FP 0 -> F1 0;   accuracy 0
	s := classificationScores([]int64{0, 0, 1, 1, 1, 2}, []int64{0, 1, 1, 1, 0, 1}, 3)
	assert.InDelta(t, 50, s.Accuracy, 1e-12)
	assert.InDelta(t, 100*(0.5+4.0/7)/3, s.MacroF1, 1e-12)
	assert.InDeltaSlice(t, []float64{50, 200.0 / 3, 0}, s.PerClassAccuracy, 1e-12)
	assert.InDelta(t, (50+200.0/3)/3, s.MeanPerClass, 1e-12)
	assert.Equal(t, 6, s.Items)

	// A label only predicted, never true, counts in no mean (sklearn's
	// labels = np.unique(y_true)): label 0 alone, F1 2/3, accuracy 50.
	s = classificationScores([]int64{0, 0}, []int64{0, 2}, 3)
	assert.InDelta(t, 200.0/3, s.MacroF1, 1e-12)
	assert.InDelta(t, 50, s.MeanPerClass, 1e-12)
	assert.Equal(t, []float64{50, 0, 0}, s.PerClassAccuracy)

	// Every prediction right: 100 everywhere.
	s = classificationScores([]int64{2, 1, 0}, []int64{2, 1, 0}, 3)
	assert.Equal(t, 100.0, s.Accuracy)
	assert.Equal(t, 100.0, s.MacroF1)
	assert.Equal(t, 100.0, s.MeanPerClass)
}
