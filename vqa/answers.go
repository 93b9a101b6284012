package vqa

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/reprolab/repro/torchmods/cliptok"
)

// This file ports the text normalisation of MUMC's dataset/utils.py
// (pre_question, pre_answer, pre_caption) and the scoring of its modified
// vqaTools/vqaEval.py (VQAEval.evaluate with n=2), at commit
// 27b544d025901945006113012adfc7d755cd196e of pengfeiliHEU/MUMC. The ports
// are exact, quirks included, because the published accuracies are exact
// string matches of these normalised strings: any deviation changes the
// numbers that are compared with the paper.

// PreQuestion ports pre_question: lower-case (Python str.lower), drop the
// characters , . ' ! ? " ( ) * # : ; ~, then, in this order, replace
// " \t" by " ", "is/are" by "is", "near/in" by "in", ">" by "more than ",
// "-yes/no" by "", "x ray" by "xray" and "x-ray" by "xray"; strip trailing
// spaces (only ' ', not tabs or newlines) and keep the first maxWords words
// of a split on single spaces.
//
// As in Python, the split is on ' ' exactly, so the empty strings between
// consecutive spaces count as words ("a  b" has three words), and the words
// are joined back with single spaces, keeping those empty words. A negative
// maxWords behaves like a Python slice words[:maxWords]: it drops the last
// -maxWords words (MUMC uses 30 for training and 50 for testing).
func PreQuestion(q string, maxWords int) string {
	q = stripPunct(cliptok.PyLower(q))
	q = strings.ReplaceAll(q, " \t", " ")
	q = strings.ReplaceAll(q, "is/are", "is")
	q = strings.ReplaceAll(q, "near/in", "in")
	q = strings.ReplaceAll(q, ">", "more than ")
	q = strings.ReplaceAll(q, "-yes/no", "")
	q = strings.ReplaceAll(q, "x ray", "xray")
	q = strings.ReplaceAll(q, "x-ray", "xray")
	q = strings.TrimRight(q, " ")
	return truncateWords(q, maxWords)
}

// PreAnswer ports pre_answer (identical in dataset/utils.py and
// vqaTools/vqaEval.py): lower-case, drop the characters
// , . ' ! ? " ( ) * # : ; ~, then replace " \t" by " ", "x ray" by "xray",
// "x-ray" by "xray" and " - " by "-". It does not strip whitespace, so
// "yes " and "yes" are different answers. Because '.' is dropped, numeric
// answers lose their decimal point ("1.5" becomes "15").
//
// Python's pre_answer first applies str() to its argument; callers that read
// numbers from JSON get the same text from ReadItems and ReadAnswerList,
// which convert numbers with Python's str() semantics.
func PreAnswer(a string) string {
	a = stripPunct(cliptok.PyLower(a))
	a = strings.ReplaceAll(a, " \t", " ")
	a = strings.ReplaceAll(a, "x ray", "xray")
	a = strings.ReplaceAll(a, "x-ray", "xray")
	a = strings.ReplaceAll(a, " - ", "-")
	return a
}

// PreCaption ports pre_caption (used for the pre-training captions):
// lower-case, drop the characters , . ' ! ? " ( ) * # : ; ~, replace "-" and
// "/" by " " and "<person>" by "person", collapse every run of two or more
// whitespace characters (Python's Unicode \s) into one space, strip trailing
// newlines and then leading and trailing spaces, and keep the first maxWords
// words of a split on single spaces. A single whitespace character that is
// not a space (a lone tab, say) is kept as it is.
func PreCaption(c string, maxWords int) string {
	c = stripPunct(cliptok.PyLower(c))
	c = strings.ReplaceAll(c, "-", " ")
	c = strings.ReplaceAll(c, "/", " ")
	c = strings.ReplaceAll(c, "<person>", "person")
	c = collapseSpaces(c)
	c = strings.TrimRight(c, "\n")
	c = strings.Trim(c, " ")
	return truncateWords(c, maxWords)
}

// stripPunct is re.sub(r"([,.'!?\"()*#:;~])", "", s).
func stripPunct(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ',', '.', '\'', '!', '?', '"', '(', ')', '*', '#', ':', ';', '~':
			return -1
		}
		return r
	}, s)
}

// truncateWords is
//
//	words = s.split(' ')
//	if len(words) > maxWords: s = ' '.join(words[:maxWords])
//
// including Python's meaning of a negative slice bound.
func truncateWords(s string, maxWords int) string {
	words := strings.Split(s, " ")
	if len(words) <= maxWords {
		return s
	}
	end := maxWords
	if end < 0 {
		end = max(len(words)+end, 0)
	}
	return strings.Join(words[:end], " ")
}

// isPySpace reports whether Python's str.isspace is true for r, which is
// also what the re module's \s matches in a str pattern. Go's regexp \s
// matches only ASCII [\t\n\f\r ] (not even \v), hence the explicit list.
func isPySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ',
		0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// collapseSpaces is re.sub(r"\s{2,}", ' ', s).
func collapseSpaces(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i := 0; i < len(rs); {
		if !isPySpace(rs[i]) {
			b.WriteRune(rs[i])
			i++
			continue
		}
		j := i
		for j < len(rs) && isPySpace(rs[j]) {
			j++
		}
		if j-i >= 2 {
			b.WriteByte(' ')
		} else {
			b.WriteRune(rs[i])
		}
		i = j
	}
	return b.String()
}

// Prediction is one line of MUMC's result file ({"qid": ..., "answer": ...}),
// the answer chosen by the model for a question.
type Prediction struct {
	QID    string
	Answer string
}

// Accuracy is the result of Score: the percentages of VQAEval.accuracy
// ('overall', 'perAnswerType', 'perQuestionType', rounded as VQAEval
// rounds them) and the counts they come from, so that results can be pooled
// or checked without the rounding.
type Accuracy struct {
	// Overall is the percentage of questions answered exactly right.
	Overall float64
	// PerAnswerType maps an item's AnswerType (OPEN, CLOSED) to its
	// percentage.
	PerAnswerType map[string]float64
	// PerQuestionType maps an item's QuestionType to its percentage.
	PerQuestionType map[string]float64
	// N is the number of questions scored, Correct the number right.
	N       int
	Correct int
	// CountPerAnswerType and CorrectPerAnswerType are the numbers of
	// questions and of right answers per answer type; likewise per
	// question type.
	CountPerAnswerType     map[string]int
	CorrectPerAnswerType   map[string]int
	CountPerQuestionType   map[string]int
	CorrectPerQuestionType map[string]int
}

// scoreDigits is VQAEval's n: MUMC builds VQAEval(vqa, vqaRes, n=2).
const scoreDigits = 2

// Score reproduces VQAEval.evaluate as MUMC modified it: a question counts
// as right when PreAnswer of the ground truth equals PreAnswer of the
// prediction (no VQA-v2 style soft accuracy over ten annotators, no
// contraction or article handling: those helpers are left unused in MUMC's
// vqaEval.py). Accuracies are grouped by the item's AnswerType and
// QuestionType and each is round(100*correct/n, 2) as Python computes it.
//
// MUMC's loadRes asserts that the predicted qids are exactly the set of
// annotated qids; Score returns an error naming the qid instead, for a
// prediction of an unknown qid, an item without a prediction, and a qid
// given twice in items or in preds (Python would silently keep the last
// one). QIDs are compared as strings, so a JSON qid 1 and "1" are the same
// question here, unlike in Python's dicts.
func Score(items []Item, preds []Prediction) (Accuracy, error) {
	if len(items) == 0 {
		return Accuracy{}, fmt.Errorf("vqa: score: no items")
	}
	gt := make(map[string]int, len(items))
	for i, it := range items {
		if _, dup := gt[it.QID]; dup {
			return Accuracy{}, fmt.Errorf("vqa: score: duplicate qid %q in items (index %d)", it.QID, i)
		}
		gt[it.QID] = i
	}
	pred := make(map[string]string, len(preds))
	for i, p := range preds {
		if _, ok := gt[p.QID]; !ok {
			return Accuracy{}, fmt.Errorf("vqa: score: prediction %d has unknown qid %q", i, p.QID)
		}
		if _, dup := pred[p.QID]; dup {
			return Accuracy{}, fmt.Errorf("vqa: score: duplicate prediction for qid %q (index %d)", p.QID, i)
		}
		pred[p.QID] = p.Answer
	}
	acc := Accuracy{
		PerAnswerType:          map[string]float64{},
		PerQuestionType:        map[string]float64{},
		CountPerAnswerType:     map[string]int{},
		CorrectPerAnswerType:   map[string]int{},
		CountPerQuestionType:   map[string]int{},
		CorrectPerQuestionType: map[string]int{},
	}
	for _, it := range items {
		p, ok := pred[it.QID]
		if !ok {
			return Accuracy{}, fmt.Errorf("vqa: score: no prediction for qid %q", it.QID)
		}
		right := 0
		if PreAnswer(it.Answer) == PreAnswer(p) {
			right = 1
		}
		acc.N++
		acc.Correct += right
		acc.CountPerAnswerType[it.AnswerType]++
		acc.CorrectPerAnswerType[it.AnswerType] += right
		acc.CountPerQuestionType[it.QuestionType]++
		acc.CorrectPerQuestionType[it.QuestionType] += right
	}
	acc.Overall = percent(acc.Correct, acc.N)
	for t, n := range acc.CountPerAnswerType {
		acc.PerAnswerType[t] = percent(acc.CorrectPerAnswerType[t], n)
	}
	for t, n := range acc.CountPerQuestionType {
		acc.PerQuestionType[t] = percent(acc.CorrectPerQuestionType[t], n)
	}
	return acc, nil
}

// percent is VQAEval.setAccuracy's round(100 * float(sum(acc)) / len(acc), n).
func percent(correct, n int) float64 {
	return pyRound(100*float64(correct)/float64(n), scoreDigits)
}

// pyRound is Python 3's round(x, digits) for a float: the exact binary value
// rounded to digits decimals, ties to even (round(3.125, 2) == 3.12), read
// back as the nearest float. strconv formats the exact value with the same
// tie rule, so formatting and parsing back gives the same float.
func pyRound(x float64, digits int) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(x, 'f', digits, 64), 64)
	if err != nil {
		// FormatFloat's output always parses; this is unreachable.
		panic(err)
	}
	return r
}
