package pmlm

import (
	"math"
	"testing"
)

func bleuClose(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

// Two-sentence corpus.
//
// Sentence 1: candidate "the cat sat on the mat" (6 words); references
// "the cat is on the mat" (6) and "there is a cat on the mat" (7).
// Closest reference length: 6. Clipped matches (max count over references):
// 1-grams the 2 (ref 1 has two), cat 1, sat 0, on 1, mat 1 -> 5 of 6;
// 2-grams the-cat, on-the, the-mat -> 3 of 5; 3-grams on-the-mat -> 1 of 4;
// 4-grams none -> 0 of 3.
// Sentence 2: "a dog runs fast" against "a dog runs fast now":
// 4/4, 3/3, 2/2, 1/1, reference length 5.
// Corpus: correct 9 6 3 1, guess 10 8 6 4, testlen 10, reflen 11.
// p = 0.9, 0.75, 0.5, 0.25; BP = exp(1 - 11/10) = exp(-0.1);
// BLEU-4 = (0.9·0.75·0.5·0.25)^(1/4)·exp(-0.1) = 0.084375^(1/4)·0.904837 ≈ 0.48766.
func TestCorpusBLEUHandWorked(t *testing.T) {
	s, err := CorpusBLEU(
		[]string{"the cat sat on the mat", "a dog runs fast"},
		[][]string{{"the cat is on the mat", "there is a cat on the mat"}, {"a dog runs fast now"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Correct != [4]int{9, 6, 3, 1} || s.Guess != [4]int{10, 8, 6, 4} || s.TestLen != 10 || s.RefLen != 11 {
		t.Fatalf("counts: %+v", s)
	}
	bp := math.Exp(-0.1)
	want := [4]float64{
		0.9 * bp,
		math.Sqrt(0.9*0.75) * bp,
		math.Cbrt(0.9*0.75*0.5) * bp,
		math.Pow(0.9*0.75*0.5*0.25, 0.25) * bp,
	}
	for k := range want {
		// The 1e-15/1e-9 guards move the result by about 1e-10 relative.
		if !bleuClose(s.BLEU[k], want[k], 1e-9) {
			t.Errorf("BLEU-%d = %.15g, want %.15g", k+1, s.BLEU[k], want[k])
		}
	}
	if !bleuClose(s.BLEU[3], 0.487660, 1e-5) {
		t.Errorf("BLEU-4 = %v", s.BLEU[3])
	}
	// The exact qgevalcap arithmetic, guards included.
	prod := (9 + 1e-15) / (10 + 1e-9) * (6 + 1e-15) / (8 + 1e-9) * (3 + 1e-15) / (6 + 1e-9) * (1 + 1e-15) / (4 + 1e-9)
	exact := math.Pow(prod, 0.25) * math.Exp(1-1/((10+1e-15)/(11+1e-9)))
	if !bleuClose(s.BLEU[3], exact, 1e-15) {
		t.Errorf("BLEU-4 = %.17g, exact %.17g", s.BLEU[3], exact)
	}
}

// A candidate of 5 words with references of 4 and 6 words is equally far
// from both; qgevalcap's min((|l-c|, l)) takes the shorter, 4, so there is
// no brevity penalty.
func TestCorpusBLEUClosestTie(t *testing.T) {
	s, err := CorpusBLEU([]string{"a b c d e"}, [][]string{{"a b c d x y", "a b c d"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.RefLen != 4 || s.Correct != [4]int{4, 3, 2, 1} {
		t.Fatalf("%+v", s)
	}
	want := math.Pow(0.8*0.75*(2.0/3)*0.5, 0.25)
	if !bleuClose(s.BLEU[3], want, 1e-9) {
		t.Errorf("BLEU-4 = %v, want %v", s.BLEU[3], want)
	}
}

func TestCorpusBLEUEdgeCases(t *testing.T) {
	// Candidate shorter than n: "the" against "the cat". Only a unigram:
	// correct 1 0 0 0, guess 1 0 0 0, so orders 2-4 each contribute
	// 1e-15/1e-9 = 1e-6 (no smoothing, but not exactly zero either):
	// BLEU-4 = (1·1e-18)^(1/4)·exp(1 - 2/1) = 10^-4.5/e ≈ 1.163e-5.
	s, err := CorpusBLEU([]string{"the"}, [][]string{{"the cat"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := math.Pow(10, -4.5) / math.E; !bleuClose(s.BLEU[3], want, 1e-6) {
		t.Errorf("short candidate BLEU-4 = %v, want %v", s.BLEU[3], want)
	}
	if want := math.Exp(-1); !bleuClose(s.BLEU[0], want, 1e-9) {
		t.Errorf("short candidate BLEU-1 = %v, want %v", s.BLEU[0], want)
	}
	// No 4-gram match in the whole corpus: tiny but positive.
	s, _ = CorpusBLEU([]string{"a b c d"}, [][]string{{"a b c x d"}})
	if s.Correct[3] != 0 || !(s.BLEU[3] > 0 && s.BLEU[3] < 1e-3) {
		t.Errorf("no 4-gram match: %+v", s)
	}
	// Empty candidate: the brevity penalty exp(1 - ~1e15) is 0.
	s, _ = CorpusBLEU([]string{""}, [][]string{{"the cat"}})
	if s.BLEU != [4]float64{} || s.TestLen != 0 || s.RefLen != 2 {
		t.Errorf("empty candidate: %+v", s)
	}
	// Empty reference: no penalty, but no match either: 1e-15/(3+1e-9).
	s, _ = CorpusBLEU([]string{"a b c"}, [][]string{{""}})
	if s.BLEU[0] <= 0 || s.BLEU[0] > 1e-15 {
		t.Errorf("empty reference: %+v", s)
	}
	// Extra whitespace is not a token.
	s, _ = CorpusBLEU([]string{"  a\tb  "}, [][]string{{"a b"}})
	if s.TestLen != 2 || !bleuClose(s.BLEU[1], 1, 1e-8) {
		t.Errorf("whitespace: %+v", s)
	}
	if _, err := CorpusBLEU([]string{"a"}, [][]string{{}}); err == nil {
		t.Error("candidate without reference accepted")
	}
	if _, err := CorpusBLEU([]string{"a"}, nil); err == nil {
		t.Error("length mismatch accepted")
	}
}

func TestQGFixTokenization(t *testing.T) {
	cases := []struct{ in, want string }{
		// BERT splits "didn't" into didn ' t; a lone "n" is emptied, leaving
		// a double space, as in Python.
		{"he didn ' t go", "he did n't go"},
		{"he did n ' t go", "he did  n't go"},
		{"it ' s john ' s ' ll ' d", "it 's john 's 'll 'd"},
		{`the ( big ) " dog " [ x ] { y } [UNK]`, "the -lrb- big -rrb- `` dog '' -lsb- x -rsb- -lcb- y -rcb- UNK"},
		{"' hello ' ' again", "` hello ' ` again"},
		{"a & b < c > d", "a &amp; b &lt; c &gt; d"},
		{"wait . . . what", "wait ... what"},
		{"$ 3 , 000 and 3 . 03 .", "$ 3,000 and 3.03 ."},
		// The acronym rule joins "U . N ." and then resumes at the second
		// period, which stays as its own token (as in eval.py).
		{"the U . N . said", "the U.N. . said"},
		{"well - known fact", "well-known fact"},
		{"a - - b", "a -- b"},
		{"- start end -", "- start end -"},
		{"x - ( y", "x - -lrb- y"},
		{"", ""},
	}
	for _, c := range cases {
		if got := QGFixTokenization(c.in); got != c.want {
			t.Errorf("QGFixTokenization(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// eval.py keys examples by the stripped, lowercased source: two questions on
// the same sentence become one example with both references, scored on the
// last prediction only.
func TestQGEvalBLEUGrouping(t *testing.T) {
	sources := []string{"The Sentence .", " the sentence . ", "other one"}
	preds := []string{"a wrong guess here", "What IS ( it ) ?", "who did it ?"}
	refs := []string{"what is -lrb- it -rrb- ?", "which is it ?", "who did that ?"}
	got, err := QGEvalBLEU(sources, preds, refs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := CorpusBLEU(
		[]string{"what is -lrb- it -rrb- ?", "who did it ?"},
		[][]string{{"what is -lrb- it -rrb- ?", "which is it ?"}, {"who did that ?"}})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := QGEvalBLEU(sources, preds[:2], refs); err == nil {
		t.Error("length mismatch accepted")
	}
}
