package cocoop

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
)

// labelledBatch is a batch of transformed images and their labels.
type labelledBatch struct {
	images []float32
	labels []int64
}

// Scores is what Dassl's Classification evaluator reports for a test set,
// in %: accuracy (correct / total), macro-F1 (sklearn's f1_score with
// average "macro" over the labels present in the test set), and, as with
// TEST.PER_CLASS_RESULT, each label's accuracy and their mean.
type Scores struct {
	Accuracy         float64   `json:"accuracy"`
	MacroF1          float64   `json:"macro_f1"`
	PerClassAccuracy []float64 `json:"per_class_accuracy"` // by label; a label with no test item reads 0 and is left out of the mean
	MeanPerClass     float64   `json:"mean_per_class_accuracy"`
	Items            int       `json:"items"`
}

// classificationScores computes Scores from true and predicted labels in
// 0..nClasses-1. A label's F1 is 2·TP / (2·TP + FP + FN), and 0 when TP
// is 0 (sklearn's zero_division default counts an undefined precision or
// recall as 0). Labels absent from yTrue are left out of both means.
func classificationScores(yTrue, yPred []int64, nClasses int) Scores {
	tp := make([]float64, nClasses)
	fp := make([]float64, nClasses)
	fn := make([]float64, nClasses)
	count := make([]float64, nClasses)
	var correct float64
	for i, y := range yTrue {
		count[y]++
		if yPred[i] == y {
			tp[y]++
			correct++
		} else {
			fn[y]++
			if p := yPred[i]; p >= 0 && int(p) < nClasses {
				fp[p]++
			}
		}
	}
	s := Scores{Items: len(yTrue), PerClassAccuracy: make([]float64, nClasses)}
	if len(yTrue) == 0 {
		return s
	}
	s.Accuracy = 100 * correct / float64(len(yTrue))
	var f1Sum, accSum float64
	present := 0
	for c := range nClasses {
		if count[c] == 0 {
			continue // sklearn's labels = np.unique(y_true); Dassl's per-class keys are the true labels
		}
		present++
		if tp[c] > 0 {
			f1Sum += 2 * tp[c] / (2*tp[c] + fp[c] + fn[c])
		}
		s.PerClassAccuracy[c] = 100 * tp[c] / count[c]
		accSum += s.PerClassAccuracy[c]
	}
	s.MacroF1 = 100 * f1Sum / float64(present)
	s.MeanPerClass = accSum / float64(present)
	return s
}

// scoreItems is Dassl's test(): the items' test-transformed images, batch
// at a time (decoded on workers goroutines), through score (logits [B,
// n_cls]) without gradients, scored as Dassl's Classification evaluator
// does (Scores).
func scoreItems(items []Datum, tf Transform, batch, workers int, dev gotch.Device, score func(images *ts.Tensor) *ts.Tensor) (Scores, error) {
	if len(items) == 0 {
		return Scores{}, fmt.Errorf("evaluation: no test items")
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(items), Batch: batch, Workers: workers},
		func(b data.Batch) (labelledBatch, error) {
			var out labelledBatch
			for _, i := range b.Indices {
				img, err := LoadImage(items[i])
				if err != nil {
					return out, err
				}
				x, err := tf.Test(img)
				if err != nil {
					return out, fmt.Errorf("%s: %w", items[i].ImPath, err)
				}
				out.images = append(out.images, x...)
				out.labels = append(out.labels, int64(items[i].Label))
			}
			return out, nil
		})
	if err != nil {
		return Scores{}, err
	}
	defer loader.Close()
	var yTrue, yPred []int64
	nClasses := 0
	r := int64(tf.Size)
	for range loader.PerEpoch() {
		b, err := loader.Next()
		if err != nil {
			return Scores{}, err
		}
		err = func() error {
			sc := ts.NewScope()
			defer sc.Close()
			return torchmods.Try(func() {
				ts.NoGrad(func() {
					n := int64(len(b.labels))
					logits := score(torchmods.FromSlice(b.images, []int64{n, 3, r, r}, dev))
					nClasses = int(logits.MustSize()[1])
					yPred = append(yPred, logits.MustArgmax([]int64{1}, false, false).MustTotype(gotch.Int64, true).Int64Values()...)
					yTrue = append(yTrue, b.labels...)
				})
			})
		}()
		if err != nil {
			return Scores{}, err
		}
	}
	for _, y := range yTrue {
		if y < 0 || int(y) >= nClasses {
			return Scores{}, fmt.Errorf("evaluation: label %d outside the %d classes scored", y, nClasses)
		}
	}
	return classificationScores(yTrue, yPred, nClasses), nil
}

// harmonicMean is H = 2·base·new / (base + new), the paper's summary of
// the base-to-new trade-off (0 when both are 0).
func harmonicMean(base, nw float64) float64 {
	if base+nw == 0 {
		return 0
	}
	return 2 * base * nw / (base + nw)
}
