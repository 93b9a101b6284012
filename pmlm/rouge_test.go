package pmlm

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func rougeClose(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func rougeCheck(t *testing.T, name string, got, want RougeScore) {
	t.Helper()
	if !rougeClose(got.Precision, want.Precision) || !rougeClose(got.Recall, want.Recall) || !rougeClose(got.F, want.F) {
		t.Errorf("%s: got %+v, want %+v", name, got, want)
	}
}

func TestRougeTokenize(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"The quick-brown fox, isn't it? 3.14", []string{"the", "quick", "brown", "fox", "isn", "t", "it", "3", "14"}},
		{"  ,,, ", nil},
		{"", nil},
		{"café Ωmega", []string{"caf", "mega"}},     // non-ASCII letters separate
		{"\u0130stanbul", []string{"i", "stanbul"}}, // Python: "i\u0307stanbul"
		{"\u212Aelvin", []string{"kelvin"}},         // KELVIN SIGN lowercases to k
		{"line1\nline2\tTAB", []string{"line1", "line2", "tab"}},
	}
	for _, c := range cases {
		if got := RougeTokenize(c.in, nil); !slices.Equal(got, c.want) {
			t.Errorf("RougeTokenize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// The stemmer sees only tokens longer than 3 characters, and what it
	// returns must still be [a-z0-9]+.
	var seen []string
	stem := func(s string) string {
		seen = append(seen, s)
		if s == "drop" {
			return "dr!p"
		}
		return strings.TrimSuffix(s, "s")
	}
	got := RougeTokenize("Cats and its dogs drop", stem)
	if want := []string{"cat", "and", "its", "dog"}; !slices.Equal(got, want) {
		t.Errorf("stemmed: %q, want %q", got, want)
	}
	if want := []string{"cats", "dogs", "drop"}; !slices.Equal(seen, want) {
		t.Errorf("stemmer saw %q, want %q", seen, want)
	}
}

// target:     the cat sat on the mat       (6 tokens)
// prediction: the cat lay on the mat today (7 tokens)
//
// ROUGE-1: overlap the×2 + cat + on + mat = 5; P = 5/7, R = 5/6,
// F = 2·(5/7)(5/6) / (5/7 + 5/6) = (50/42) / (65/42) = 10/13.
// ROUGE-2: target bigrams the-cat cat-sat sat-on on-the the-mat (5),
// prediction the-cat cat-lay lay-on on-the the-mat mat-today (6), overlap
// the-cat on-the the-mat = 3; P = 3/6, R = 3/5, F = (2·0.5·0.6)/1.1 = 6/11.
// ROUGE-L: LCS "the cat on the mat" = 5, so as ROUGE-1: 5/7, 5/6, 10/13.
//
// target "police killed the gunman", prediction "the gunman killed police"
// (Lin 2004): ROUGE-1 = 1; ROUGE-2 overlap the-gunman = 1 of 3 each: 1/3;
// ROUGE-L LCS length 2 ("the gunman"): 2/4 = 1/2.
func TestRougeHandWorked(t *testing.T) {
	s := ScoreRouge("The cat sat on the mat.", "the cat lay on the mat today", nil)
	rougeCheck(t, "R1", s.Rouge1, RougeScore{5.0 / 7, 5.0 / 6, 10.0 / 13})
	rougeCheck(t, "R2", s.Rouge2, RougeScore{0.5, 0.6, 6.0 / 11})
	rougeCheck(t, "RL", s.RougeL, RougeScore{5.0 / 7, 5.0 / 6, 10.0 / 13})
	rougeCheck(t, "RLsum one line", s.RougeLsum, RougeScore{5.0 / 7, 5.0 / 6, 10.0 / 13})

	s = ScoreRouge("police killed the gunman", "the gunman killed police", nil)
	rougeCheck(t, "R1", s.Rouge1, RougeScore{1, 1, 1})
	rougeCheck(t, "R2", s.Rouge2, RougeScore{1.0 / 3, 1.0 / 3, 1.0 / 3})
	rougeCheck(t, "RL", s.RougeL, RougeScore{0.5, 0.5, 0.5})

	// Clipping: "the the the" against "the cat": 1 match of 3 predicted,
	// of 2 target tokens.
	rougeCheck(t, "R1 clipped", RougeN([]string{"the", "cat"}, []string{"the", "the", "the"}, 1),
		RougeScore{1.0 / 3, 0.5, 2 * (1.0 / 3) * 0.5 / (1.0/3 + 0.5)})
}

// Summary-level LCS, the example of Lin (2004) section 3.2:
// reference w1 w2 w3 w4 w5; candidate sentences w1 w2 w6 w7 w8 and
// w1 w3 w8 w9 w5. LCS with the first is w1 w2, with the second w1 w3 w5;
// their union w1 w2 w3 w5 gives 4 hits: R = 4/5, P = 4/10,
// F = 2·0.4·0.8/1.2 = 8/15.
// Double counting: reference lines "a b" and "a b", candidate "a b": each
// reference line's union is a b, but the candidate has one a and one b, so
// only 2 hits: R = 2/4, P = 2/2, F = 2/3.
func TestRougeLsum(t *testing.T) {
	s := ScoreRouge("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", nil)
	rougeCheck(t, "Lin example", s.RougeLsum, RougeScore{0.4, 0.8, 8.0 / 15})
	s = ScoreRouge("a b\n\na b\n", "a b", nil)
	rougeCheck(t, "double count", s.RougeLsum, RougeScore{1, 0.5, 2.0 / 3})
	// Sentence-level ROUGE-L of the same pair sees one sequence a b a b.
	rougeCheck(t, "RL", s.RougeL, RougeScore{1, 0.5, 2.0 / 3})
	if got := RougeLsum(nil, [][]string{{"a"}}); got != (RougeScore{}) {
		t.Errorf("no target sentences: %+v", got)
	}
	if got := RougeLsum([][]string{{}}, [][]string{{"a"}}); got != (RougeScore{}) {
		t.Errorf("empty target sentence: %+v", got)
	}
}

func TestRougeEdgeCases(t *testing.T) {
	zero := RougeScores{}
	if s := ScoreRouge("the cat", "", nil); s != zero {
		t.Errorf("empty prediction: %+v", s)
	}
	if s := ScoreRouge("", "the cat", nil); s != zero {
		t.Errorf("empty target: %+v", s)
	}
	if s := ScoreRouge("", "", nil); s != zero {
		t.Errorf("both empty: %+v", s)
	}
	if s := ScoreRouge("!!!", "...", nil); s != zero {
		t.Errorf("punctuation only: %+v", s)
	}
	// Prediction shorter than n: no bigrams, so ROUGE-2 is 0/max(0,1) = 0,
	// while ROUGE-1 is P = 1/1, R = 1/2, F = 2/3.
	s := ScoreRouge("the cat", "cat", nil)
	rougeCheck(t, "R1", s.Rouge1, RougeScore{1, 0.5, 2.0 / 3})
	rougeCheck(t, "R2", s.Rouge2, RougeScore{})
	rougeCheck(t, "RL", s.RougeL, RougeScore{1, 0.5, 2.0 / 3})
}

// The corpus score is the mean of the per-example values:
// example 1 is the cat/mat pair (R1 F 10/13), example 2 an exact match (1),
// example 3 an empty prediction (0).
func TestCorpusRouge(t *testing.T) {
	got, err := CorpusRouge(
		[]string{"The cat sat on the mat.", "a b c", "x y"},
		[]string{"the cat lay on the mat today", "A B C", ""}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rougeCheck(t, "R1 mean", got.Rouge1, RougeScore{(5.0/7 + 1) / 3, (5.0/6 + 1) / 3, (10.0/13 + 1) / 3})
	rougeCheck(t, "R2 mean", got.Rouge2, RougeScore{(0.5 + 1) / 3, (0.6 + 1) / 3, (6.0/11 + 1) / 3})
	if _, err := CorpusRouge([]string{"a"}, nil, nil); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := CorpusRouge(nil, nil, nil); err == nil {
		t.Error("empty corpus accepted")
	}
}
