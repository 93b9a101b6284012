package vqa

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// The (input, expected) pairs of TestPreQuestion, TestPreAnswer and
// TestPreCaption were produced by running the official pre_question,
// pre_answer and pre_caption (dataset/utils.py of pengfeiliHEU/MUMC at commit
// 27b544d025901945006113012adfc7d755cd196e, copied into a scratch script)
// with CPython 3.11.2.

func TestPreQuestion(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"Is/are there any abnormalities?", 30, "is there any abnormalities"},
		{"Is the lesion near/in the liver?", 30, "is the lesion in the liver"},
		{"What does the X-ray show?", 30, "what does the xray show"},
		{"Is this an x ray?", 30, "is this an xray"},
		{"Size >5cm? -yes/no", 30, "size more than 5cm"},
		{"a  b   c", 3, "a  b"},
		{"a  b   c", 4, "a  b "},
		{"one two three four five", 3, "one two three"},
		{"trailing spaces   ", 30, "trailing spaces"},
		{"trailing tab\t", 30, "trailing tab\t"},
		{"tab \tafter space", 30, "tab after space"},
		{"  leading", 1, ""},
		{"Where's the (big) mass: left; right~ #1 *2?!", 30, "wheres the big mass left right 1 2"},
		{"", 30, ""},
		{"   ", 30, ""},
		{"one two three", 0, ""},
		{"one two three", -1, "one two"},
		{"IS/ARE THE LUNGS CLEAR", 30, "is the lungs clear"},
		{"near/inside is/area", 30, "inside isa"},
		{"x- ray X Ray x-ray-yes/no", 30, "x- ray xray xray"},
		{"is x > y >> z", 30, "is x more than  y more than more than  z"},
		{"\u0130stanbul \u039f\u0394\u039f\u03a3 \u03a3", 30, "i\u0307stanbul \u03bf\u03b4\u03bf\u03c2 \u03c3"},
		{"\u03a3\u0391\u03a3. \u03a3\u0391\u03a3.\u03a3", 30, "\u03c3\u03b1\u03c2 \u03c3\u03b1\u03c3\u03c2"},
		{"a\u00a0b\u2003c", 30, "a\u00a0b\u2003c"},
		{"multi\nline\nquestion ", 30, "multi\nline\nquestion"},
		{"-yes/no-yes/no", 30, ""},
		{"near/in/are", 30, "in/are"},
		{"is/are/in", 30, "is/in"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, PreQuestion(c.in, c.max), "PreQuestion(%q, %d)", c.in, c.max)
	}
}

func TestPreAnswer(t *testing.T) {
	// Inputs that are numbers, True or None in the Python run are given
	// here as Python's str() of them, which is what pre_answer sees first.
	cases := []struct {
		in   string
		want string
	}{
		{"Yes", "yes"},
		{"No.", "no"},
		{"X-Ray", "xray"},
		{"x ray", "xray"},
		{"Left - side", "left-side"},
		{"left  -  side", "left - side"},
		{"  Padded  ", "  padded  "},
		{"T2 weighted\t", "t2 weighted\t"},
		{"a \tb", "a b"},
		{"1", "1"},
		{"0", "0"},
		{"-3", "-3"},
		{"2.0", "20"},
		{"1.5", "15"},
		{"1e+16", "1e+16"},
		{"1000000000000000.0", "10000000000000000"},
		{"1e-05", "1e-05"},
		{"0.0001", "00001"},
		{"123456789012345678901", "123456789012345678901"},
		{"True", "true"},
		{"None", "none"},
		{"MRI - T2", "mri-t2"},
		{"it's \"quoted\"", "its quoted"},
		{"\u0130", "i\u0307"},
		{"\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2"},
		{"x-ray - image", "xray-image"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, PreAnswer(c.in), "PreAnswer(%q)", c.in)
	}
}

func TestPreCaption(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"A chest X-ray showing <PERSON> with cardiomegaly.", 30, "a chest x ray showing person with cardiomegaly"},
		{"Left/right  lung -- opacity", 30, "left right lung opacity"},
		{"  spaced   out  ", 30, "spaced out"},
		{"trailing newline\n\n", 30, "trailing newline"},
		{"newline\n in middle\n", 30, "newline in middle"},
		{"tab\tsingle", 30, "tab\tsingle"},
		{"tabs\t\tdouble", 30, "tabs double"},
		{"vt\u000b\u000bvt", 30, "vt vt"},
		{"nbsp\u00a0\u00a0x", 30, "nbsp x"},
		{"one two three four five six", 30, "one two three four five six"},
		{"one two three four five six", 3, "one two three"},
		{"", 30, ""},
		{"  -  ", 30, ""},
		{"ends with space and newline \n", 30, "ends with space and newline"},
		{"newline then space\n ", 30, "newline then space"},
		{"\u0130nside \u039f\u0394\u039f\u03a3", 30, "i\u0307nside \u03bf\u03b4\u03bf\u03c2"},
		{"a\u001c\u001cb", 30, "a b"},
		{"a\u2028\u2029b c\u3000\u3000d e\u0085\u0085f", 30, "a b c d e f"},
		{"a\r\n b", 30, "a b"},
		{"one two three", -1, "one two"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, PreCaption(c.in, c.max), "PreCaption(%q, %d)", c.in, c.max)
	}
}

// TestPyRound checks Python's round(x, 2), whose values come from CPython
// 3.11.2: exact ties go to even (3.125 -> 3.12, 9.375 -> 9.38).
func TestPyRound(t *testing.T) {
	cases := []struct {
		correct, n int
		want       float64
	}{
		{1, 32, 3.12},
		{3, 32, 9.38},
		{1, 3, 33.33},
		{2, 3, 66.67},
		{1, 8, 12.5},
		{7, 3, 233.33},
		{0, 5, 0},
		{5, 5, 100},
	}
	for _, c := range cases {
		require.Equal(t, c.want, percent(c.correct, c.n), "percent(%d, %d)", c.correct, c.n)
	}
}

func scoreItems() []Item {
	return []Item{
		{QID: "1", Answer: "Yes", AnswerType: "OPEN", QuestionType: "PRES"},
		{QID: "2", Answer: "No", AnswerType: "CLOSED", QuestionType: "PRES"},
		{QID: "3", Answer: "X-Ray", AnswerType: "OPEN", QuestionType: "ABN"},
		{QID: "4", Answer: "Left - side", AnswerType: "CLOSED", QuestionType: "SIZE"},
		{QID: "5", Answer: "T2 weighted", AnswerType: "OPEN", QuestionType: "ABN"},
		{QID: "6", Answer: "yes", AnswerType: "CLOSED", QuestionType: "PRES"},
		{QID: "7", Answer: "axial", AnswerType: "CLOSED", QuestionType: "PLANE"},
	}
}

func TestScore(t *testing.T) {
	preds := []Prediction{
		{QID: "7", Answer: "axial"},        // right
		{QID: "1", Answer: "yes"},          // right (case)
		{QID: "2", Answer: "yes"},          // wrong
		{QID: "3", Answer: "xray"},         // right ("x-ray" -> "xray")
		{QID: "4", Answer: "left-side"},    // right (" - " -> "-")
		{QID: "5", Answer: "T2  weighted"}, // wrong (spaces are not collapsed)
		{QID: "6", Answer: "Yes."},         // right (punctuation dropped)
	}
	acc, err := Score(scoreItems(), preds)
	require.NoError(t, err)
	require.Equal(t, 7, acc.N)
	require.Equal(t, 5, acc.Correct)
	require.Equal(t, 71.43, acc.Overall) // 500/7 = 71.428...
	require.Equal(t, map[string]float64{"OPEN": 66.67, "CLOSED": 75}, acc.PerAnswerType)
	require.Equal(t, map[string]float64{"PRES": 66.67, "ABN": 50, "SIZE": 100, "PLANE": 100}, acc.PerQuestionType)
	require.Equal(t, map[string]int{"OPEN": 3, "CLOSED": 4}, acc.CountPerAnswerType)
	require.Equal(t, map[string]int{"OPEN": 2, "CLOSED": 3}, acc.CorrectPerAnswerType)
	require.Equal(t, map[string]int{"PRES": 3, "ABN": 2, "SIZE": 1, "PLANE": 1}, acc.CountPerQuestionType)
	require.Equal(t, map[string]int{"PRES": 2, "ABN": 1, "SIZE": 1, "PLANE": 1}, acc.CorrectPerQuestionType)
}

func TestScoreRoundsTiesToEven(t *testing.T) {
	var items []Item
	var preds []Prediction
	for i := range 32 {
		qid := fmt.Sprint(i)
		items = append(items, Item{QID: qid, Answer: "yes", AnswerType: "CLOSED", QuestionType: "PRES"})
		ans := "no"
		if i == 0 {
			ans = "yes"
		}
		preds = append(preds, Prediction{QID: qid, Answer: ans})
	}
	acc, err := Score(items, preds)
	require.NoError(t, err)
	require.Equal(t, 3.12, acc.Overall) // round(3.125, 2) in Python
}

func TestScoreErrors(t *testing.T) {
	all := func() []Prediction {
		var p []Prediction
		for _, it := range scoreItems() {
			p = append(p, Prediction{QID: it.QID, Answer: it.Answer})
		}
		return p
	}
	_, err := Score(scoreItems(), all())
	require.NoError(t, err)

	_, err = Score(scoreItems(), append(all(), Prediction{QID: "99", Answer: "yes"}))
	require.ErrorContains(t, err, `unknown qid "99"`)

	_, err = Score(scoreItems(), all()[1:])
	require.ErrorContains(t, err, `no prediction for qid "1"`)

	_, err = Score(scoreItems(), append(all(), Prediction{QID: "3", Answer: "yes"}))
	require.ErrorContains(t, err, `duplicate prediction for qid "3"`)

	items := append(scoreItems(), Item{QID: "2", Answer: "no"})
	_, err = Score(items, all())
	require.ErrorContains(t, err, `duplicate qid "2" in items`)

	_, err = Score(nil, nil)
	require.Error(t, err)
}

func TestTruncateWordsKeepsEmptyWords(t *testing.T) {
	// "a  b" splits into ["a", "", "b"] in Python: three words.
	require.Equal(t, "a ", truncateWords("a  b", 2))
	require.Equal(t, "a  b", truncateWords("a  b", 3))
	require.Equal(t, "", truncateWords("a b c", -5))
	require.Equal(t, "", truncateWords("", 0))
}
