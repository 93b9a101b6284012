package textclf

import (
	"fmt"
	"math"
	"sort"
)

// The metrics are computed in Go on the predictions, not with tensors: they
// are GLUE's definitions (HF's glue_compute_metrics, through scikit-learn and
// SciPy), and holding them in plain float64 keeps them exact and testable by
// hand.

// Metric names a config may list in `metrics`.
const (
	MetricAccuracy = "accuracy" // share of predictions equal to the label
	MetricF1       = "f1"       // binary F1 of class 1 (GLUE's MRPC and QQP)
	MetricF1Macro  = "f1_macro" // unweighted mean of every class's F1
	MetricMatthews = "matthews" // Matthews correlation (GLUE's CoLA), multi-class as scikit-learn
	MetricPearson  = "pearson"  // Pearson correlation (GLUE's STS-B)
	MetricSpearman = "spearman" // Spearman correlation with average ranks for ties (GLUE's STS-B)
)

// classMetrics and regressionMetrics say which metric takes which kind of
// prediction, so a config asking Pearson of a classifier is refused early.
var (
	classMetrics      = map[string]bool{MetricAccuracy: true, MetricF1: true, MetricF1Macro: true, MetricMatthews: true}
	regressionMetrics = map[string]bool{MetricPearson: true, MetricSpearman: true}
)

// Accuracy is the share of pred equal to label.
func Accuracy(pred, label []int) float64 {
	if len(pred) == 0 {
		return math.NaN()
	}
	n := 0
	for i := range pred {
		if pred[i] == label[i] {
			n++
		}
	}
	return float64(n) / float64(len(pred))
}

// F1 is the F1 score of class pos (scikit-learn's f1_score with
// average="binary", pos_label=pos): 2TP / (2TP + FP + FN), and 0 when the
// class is neither predicted nor present, as scikit-learn returns then.
func F1(pred, label []int, pos int) float64 {
	var tp, fp, fn float64
	for i := range pred {
		switch {
		case pred[i] == pos && label[i] == pos:
			tp++
		case pred[i] == pos:
			fp++
		case label[i] == pos:
			fn++
		}
	}
	if tp+fp+fn == 0 {
		return 0
	}
	return 2 * tp / (2*tp + fp + fn)
}

// F1Macro is the unweighted mean of the F1 of each of classes classes.
func F1Macro(pred, label []int, classes int) float64 {
	var s float64
	for c := range classes {
		s += F1(pred, label, c)
	}
	return s / float64(classes)
}

// Matthews is the Matthews correlation coefficient of a classification
// with any number of classes, as scikit-learn's matthews_corrcoef (the
// R_K of Gorodkin, 2004): from the confusion matrix C with s samples, c
// correct, t_k true and p_k predicted samples of class k,
//
//	MCC = (c·s - Σ p_k t_k) / sqrt((s² - Σ p_k²)(s² - Σ t_k²)),
//
// and 0 when a factor under the root is 0 (every prediction, or every
// label, one class), as scikit-learn returns then.
func Matthews(pred, label []int) float64 {
	t, p := map[int]float64{}, map[int]float64{}
	var c, s float64
	for i := range pred {
		t[label[i]]++
		p[pred[i]]++
		if pred[i] == label[i] {
			c++
		}
		s++
	}
	var pt, pp, tt float64
	for k, v := range p {
		pt += v * t[k]
		pp += v * v
	}
	for _, v := range t {
		tt += v * v
	}
	den := (s*s - pp) * (s*s - tt)
	if den == 0 {
		return 0
	}
	return (c*s - pt) / math.Sqrt(den)
}

// Pearson is the Pearson correlation of x and y (scipy.stats.pearsonr's
// statistic), NaN when either is constant, as SciPy returns then.
func Pearson(x, y []float64) float64 {
	n := float64(len(x))
	if n == 0 {
		return math.NaN()
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	return sxy / math.Sqrt(sxx*syy)
}

// Spearman is Spearman's rank correlation (scipy.stats.spearmanr's
// statistic): the Pearson correlation of the ranks, tied values sharing
// the mean of the ranks they span.
func Spearman(x, y []float64) float64 { return Pearson(Ranks(x), Ranks(y)) }

// Ranks are x's ranks from 1, ties given their average rank
// (scipy.stats.rankdata's "average" method).
func Ranks(x []float64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] < x[idx[b]] })
	r := make([]float64, len(x))
	for lo := 0; lo < len(idx); {
		hi := lo + 1
		for hi < len(idx) && x[idx[hi]] == x[idx[lo]] {
			hi++
		}
		avg := float64(lo+hi+1) / 2 // mean of ranks lo+1 .. hi
		for k := lo; k < hi; k++ {
			r[idx[k]] = avg
		}
		lo = hi
	}
	return r
}

// Scores holds one evaluation's predictions, for Compute.
type Scores struct {
	Pred, Label   []int     // classification: predicted and true class indices
	Value, Target []float64 // regression: predicted and true values
	Classes       int
}

// Compute evaluates the named metrics.
func (s Scores) Compute(names []string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, n := range names {
		switch n {
		case MetricAccuracy:
			out[n] = Accuracy(s.Pred, s.Label)
		case MetricF1:
			if s.Classes != 2 {
				return nil, fmt.Errorf("metric f1 is binary (class 1 positive, as GLUE's MRPC and QQP) and there are %d classes; use f1_macro", s.Classes)
			}
			out[n] = F1(s.Pred, s.Label, 1)
		case MetricF1Macro:
			out[n] = F1Macro(s.Pred, s.Label, s.Classes)
		case MetricMatthews:
			out[n] = Matthews(s.Pred, s.Label)
		case MetricPearson:
			out[n] = Pearson(s.Value, s.Target)
		case MetricSpearman:
			out[n] = Spearman(s.Value, s.Target)
		default:
			return nil, fmt.Errorf("unknown metric %q", n)
		}
	}
	return out, nil
}
