// Package testutil holds what repro's tests share: the relative error
// between two tensors and a parity check of named tensors (outputs,
// gradients) against a PyTorch fixture; its subpackage parity reads such
// fixtures. It imports "testing" and is for _test.go files only:
// importing it into a program panics at start.
package testutil

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch/ts"
)

func init() {
	if !testing.Testing() {
		panic("internal/testutil is for tests only, and this program is not a test")
	}
}

// RelErr is max|got-want| / max|want| over all elements (the denominator
// at least 1e-12): the error relative to the reference's scale, so that
// elements near zero do not inflate it. It is +Inf when the shapes differ
// or either tensor is undefined; Close says which.
func RelErr(got, want *ts.Tensor) float64 {
	if got == nil || want == nil || !got.MustDefined() || !want.MustDefined() || !slices.Equal(got.MustSize(), want.MustSize()) {
		return math.Inf(1)
	}
	g, w := got.Float64Values(), want.Float64Values()
	var diff, scale float64
	for i := range w {
		diff = math.Max(diff, math.Abs(g[i]-w[i]))
		scale = math.Max(scale, math.Abs(w[i]))
	}
	return diff / math.Max(scale, 1e-12)
}

// Close stops the test unless got has want's shape, then asserts that
// RelErr(got, want) < tol. msgAndArgs name the comparison, as testify's.
func Close(t testing.TB, got, want *ts.Tensor, tol float64, msgAndArgs ...any) bool {
	t.Helper()
	require.NotNil(t, want, msgAndArgs...)
	require.NotNil(t, got, msgAndArgs...)
	require.Equal(t, want.MustSize(), got.MustSize(), msgAndArgs...)
	return assert.Less(t, RelErr(got, want), tol, msgAndArgs...)
}

// Sub is the entries of a fixture whose names start with prefix, with the
// prefix taken off: Sub(ref, "mlp.grad.") gives {"fc1.weight": ...}.
func Sub(ref map[string]*ts.Tensor, prefix string) map[string]*ts.Tensor {
	out := map[string]*ts.Tensor{}
	for name, t := range ref {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			out[rest] = t
		}
	}
	return out
}

// Parity compares named tensors (typically gradients: name -> the
// parameter's grad) with a fixture's (Sub of it). A name is consistent when
// both have it (then RelErr < tol, shapes equal) or neither does, where a
// nil or undefined tensor in got counts as absent: so a gradient PyTorch
// did not make (a frozen parameter) must be undefined in Go, and one it
// made must be defined. Each failure names the tensor. It returns how many
// tensors it compared. msgAndArgs, if any, prefix each failure.
func Parity(t testing.TB, got, want map[string]*ts.Tensor, tol float64, msgAndArgs ...any) int {
	t.Helper()
	prefix := ""
	if m := message(msgAndArgs); m != "" {
		prefix = m + ": "
	}
	var names []string
	for n := range got {
		names = append(names, n)
	}
	for n := range want {
		if _, ok := got[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	compared := 0
	for _, n := range names {
		g, w := got[n], want[n]
		defined := g != nil && g.MustDefined()
		switch {
		case !defined && w == nil:
		case w == nil:
			t.Errorf("%s%s: defined in Go but absent from the fixture", prefix, n)
		case !defined:
			t.Errorf("%s%s: in the fixture but undefined in Go", prefix, n)
		case !slices.Equal(g.MustSize(), w.MustSize()):
			t.Errorf("%s%s: shape %v in Go, %v in the fixture", prefix, n, g.MustSize(), w.MustSize())
		default:
			if e := RelErr(g, w); !(e < tol) {
				t.Errorf("%s%s: relative error %.3g, want < %.3g", prefix, n, e, tol)
			}
			compared++
		}
	}
	return compared
}

// message formats msgAndArgs as testify does: a format and its arguments,
// or any values.
func message(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(f, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}

// Sentiment words for WriteSentiment's separable two-class task.
var (
	SentimentPositive = []string{"good", "great", "excellent", "fine", "loved"}
	SentimentNegative = []string{"bad", "awful", "terrible", "boring", "hated"}
	sentimentFiller   = []string{"the", "movie", "film", "plot", "acting", "story", "music", "was", "is", "very", "really", "it", "this", "end"}
)

// WriteSentiment writes n rows of a separable two-class task as a TSV
// (columns sentence and label, labels pos and neg): a sentence of 2 to 5
// filler words with one positive or negative word, the fine-tuning tests'
// data.
func WriteSentiment(t testing.TB, path string, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	b.WriteString("sentence\tlabel\n")
	for range n {
		var words []string
		for range 2 + rng.IntN(4) {
			words = append(words, sentimentFiller[rng.IntN(len(sentimentFiller))])
		}
		label, pool := "pos", SentimentPositive
		if rng.IntN(2) == 0 {
			label, pool = "neg", SentimentNegative
		}
		k := rng.IntN(len(words) + 1)
		words = append(words[:k], append([]string{pool[rng.IntN(len(pool))]}, words[k:]...)...)
		fmt.Fprintf(&b, "%s\t%s\n", strings.Join(words, " "), label)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
}

// CloseFloats reports an error unless got has want's length and every
// element is within tol of want's, relative to want's scale (its largest
// magnitude, at least 1), naming the worst element. A NaN or infinite
// difference counts as the worst and fails. It returns the worst relative
// difference, for a test that logs it.
func CloseFloats(t testing.TB, want, got []float64, tol float64, msg string) float64 {
	t.Helper()
	return closeFloats(t, want, got, tol, 1, msg)
}

// CloseToScale is CloseFloats relative to want's largest magnitude with no
// floor of 1: for values far below 1 (log-mel features, embeddings of a
// quiet signal), where a floor of 1 would loosen tol by the values' scale. A
// want of all zeros has no scale and fails.
func CloseToScale(t testing.TB, want, got []float64, tol float64, msg string) float64 {
	t.Helper()
	return closeFloats(t, want, got, tol, 0, msg)
}

func closeFloats(t testing.TB, want, got []float64, tol, floor float64, msg string) float64 {
	t.Helper()
	require.Len(t, got, len(want), msg)
	scale := floor
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	require.Greater(t, scale, 0.0, "%s: want is all zeros, so it has no scale", msg)
	worst, at := 0.0, -1
	for i := range want {
		d := math.Abs(want[i]-got[i]) / scale
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > worst || at < 0 {
			worst, at = d, i
		}
	}
	if at >= 0 && !(worst <= tol) {
		t.Errorf("%s: element %d: want %v, got %v (difference %.2g of the scale %.3g, more than %g)", msg, at, want[at], got[at], worst, scale, tol)
	}
	return worst
}

// Flatten concatenates rows, for comparing a matrix with CloseFloats.
func Flatten(rows [][]float64) []float64 {
	var out []float64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}
