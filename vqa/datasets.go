package vqa

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Item is one question of a medical VQA data set, in the fields MUMC's
// vqa_dataset and VQAEval use.
type Item struct {
	// QID identifies the question; JSON integers are kept as their decimal
	// text, so 17 and "17" are the same QID.
	QID string
	// Image is the image file name relative to the data set's image folder
	// (MUMC joins it to vqa_root), e.g. "synpic54610.jpg" or
	// "xmlab102/source.jpg".
	Image    string
	Question string
	// Answer is the ground truth as text; JSON numbers are converted as
	// Python's str() would (see ReadItems).
	Answer string
	// AnswerType is "OPEN" or "CLOSED": trimmed and upper-cased.
	AnswerType string
	// QuestionType is the data set's question category (VQA-RAD's
	// question_type such as "PRES", SLAKE's content_type such as "Organ"),
	// as it is in the file.
	QuestionType string
	// Organ is VQA-RAD's image_organ when the file has it, else "".
	Organ string
}

// ReadItems reads a JSON array of questions. The format is detected from
// the keys of the first item:
//
//   - "image_name": MUMC's converted files (qid, image_name, question,
//     answer, answer_type, question_type; PathVQA is converted to the same
//     keys) and VQA-RAD's public release "VQA_RAD Dataset Public.json",
//     which has the same keys plus image_organ (read into Organ),
//     phrase_type, question_rephrase and others (ignored).
//   - "img_name": SLAKE (img_name, qid, question, answer, answer_type,
//     content_type, q_lang). Only items with q_lang "en" are kept, because
//     MUMC trains and evaluates on SLAKE's English half; content_type is the
//     question type; modality, location and the rest are ignored.
//
// qid may be a JSON integer or string. The answer may be a string or a
// number (VQA-RAD's public release has numeric answers); numbers become the
// text Python's str() gives for the value json.load returns (1 -> "1",
// 2.0 -> "2.0", 1e16 -> "1e+16"), which is what pre_answer compares.
// answer_type is trimmed and upper-cased because the VQA-RAD release has
// values like "CLOSED " and "OPEN" in varying case, and per-type accuracy
// should not split one type into several.
//
// An item that lacks a needed key, or has it with the wrong JSON type, gives
// an error naming the file, the item's index in the file's array (counting
// the SLAKE items that are dropped as non-English) and the key.
func ReadItems(path string) ([]Item, error) {
	raws, err := readArray(path)
	if err != nil {
		return nil, err
	}
	if len(raws) == 0 {
		return []Item{}, nil
	}
	objs := make([]map[string]json.RawMessage, len(raws))
	for i, r := range raws {
		if objs[i], err = decodeObject(path, i, r); err != nil {
			return nil, err
		}
	}
	var keys itemKeys
	switch {
	case has(objs[0], "image_name"):
		keys = mumcKeys
	case has(objs[0], "img_name"):
		keys = slakeKeys
	default:
		return nil, fmt.Errorf("%s: item 0: unknown format: no key %q (MUMC, VQA-RAD, PathVQA) or %q (SLAKE)",
			path, "image_name", "img_name")
	}
	items := make([]Item, 0, len(objs))
	for i, o := range objs {
		it, keep, err := keys.read(o)
		if err != nil {
			return nil, fmt.Errorf("%s: item %d: %w", path, i, err)
		}
		if keep {
			items = append(items, it)
		}
	}
	return items, nil
}

// itemKeys names an item's fields in one format: MUMC's converted files
// (which VQA-RAD's public release and PathVQA's conversion also satisfy)
// or SLAKE's. Organ is optional; Lang, when set, keeps only English
// questions.
type itemKeys struct {
	Image, QuestionType, Organ, Lang string
}

var (
	mumcKeys  = itemKeys{Image: "image_name", QuestionType: "question_type", Organ: "image_organ"}
	slakeKeys = itemKeys{Image: "img_name", QuestionType: "content_type", Lang: "q_lang"}
)

// read reads one item; keep is false for a SLAKE question that is not in
// English.
func (k itemKeys) read(o map[string]json.RawMessage) (it Item, keep bool, err error) {
	if k.Lang != "" {
		lang, err := stringField(o, k.Lang)
		if err != nil || lang != "en" {
			return it, false, err
		}
	}
	if it.QID, err = idField(o, "qid"); err != nil {
		return it, false, err
	}
	if it.Answer, err = answerField(o, "answer"); err != nil {
		return it, false, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{k.Image, &it.Image}, {"question", &it.Question}, {"answer_type", &it.AnswerType}, {k.QuestionType, &it.QuestionType}} {
		if *f.dst, err = stringField(o, f.key); err != nil {
			return it, false, err
		}
	}
	it.AnswerType = normAnswerType(it.AnswerType)
	if k.Organ != "" && has(o, k.Organ) {
		if it.Organ, err = stringField(o, k.Organ); err != nil {
			return it, false, err
		}
	}
	return it, true, nil
}

func normAnswerType(s string) string {
	return strings.ToUpper(strings.TrimSpace(s))
}

// ReadAnswerList reads MUMC's answer_list file (answer_all_list.json,
// answer_trainval_list.json): a JSON array of the candidate answers the
// model ranks at test time. Numbers are converted with Python's str()
// semantics (1 -> "1"); MUMC itself would fail on them when appending the
// [SEP] token, so they only appear in hand-made lists. Duplicates are kept,
// in order, as MUMC keeps them: the index of a candidate is its position in
// the file, and a duplicate only wastes a slot in the ranking.
func ReadAnswerList(path string) ([]string, error) {
	raws, err := readArray(path)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(raws))
	for i, r := range raws {
		s, err := pyStr(r)
		if err != nil || isBoolOrNull(r) {
			return nil, fmt.Errorf("%s: item %d: answer must be a string or a number, got %s", path, i, jsonKind(r))
		}
		out[i] = s
	}
	return out, nil
}

// Caption is one entry of an ALBEF/MUMC pre-training file: an image and
// its captions (one or several; MUMC draws one at random per epoch).
type Caption struct {
	// Image is the image path relative to the pre-training image root.
	Image    string
	Captions []string
}

// ReadCaptions reads an ALBEF/MUMC pre-training JSON file: an array of
// {"image": path, "caption": string or array of strings}. Other keys are
// ignored. An empty caption array is an error, because MUMC's
// random.choice would fail on it.
func ReadCaptions(path string) ([]Caption, error) {
	raws, err := readArray(path)
	if err != nil {
		return nil, err
	}
	out := make([]Caption, len(raws))
	for i, r := range raws {
		o, err := decodeObject(path, i, r)
		if err != nil {
			return nil, err
		}
		var c Caption
		if c.Image, err = stringField(o, "image"); err != nil {
			return nil, fmt.Errorf("%s: item %d: %w", path, i, err)
		}
		raw, ok := o["caption"]
		if !ok {
			return nil, fmt.Errorf("%s: item %d: missing key %q", path, i, "caption")
		}
		var one string
		var many []string
		switch {
		case json.Unmarshal(raw, &one) == nil && !isNull(raw):
			c.Captions = []string{one}
		case json.Unmarshal(raw, &many) == nil && !isNull(raw):
			if len(many) == 0 {
				return nil, fmt.Errorf("%s: item %d: key %q: empty list", path, i, "caption")
			}
			c.Captions = many
		default:
			return nil, fmt.Errorf("%s: item %d: key %q: want a string or a list of strings, got %s",
				path, i, "caption", jsonKind(raw))
		}
		out[i] = c
	}
	return out, nil
}

// readArray reads path as a JSON array, keeping the elements raw.
func readArray(path string) ([]json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("%s: want a JSON array: %w", path, err)
	}
	return raws, nil
}

func decodeObject(path string, i int, r json.RawMessage) (map[string]json.RawMessage, error) {
	var o map[string]json.RawMessage
	if err := json.Unmarshal(r, &o); err != nil || o == nil {
		return nil, fmt.Errorf("%s: item %d: want a JSON object, got %s", path, i, jsonKind(r))
	}
	return o, nil
}

func has(o map[string]json.RawMessage, key string) bool {
	_, ok := o[key]
	return ok
}

// stringField returns o[key], which must be a JSON string.
func stringField(o map[string]json.RawMessage, key string) (string, error) {
	raw, ok := o[key]
	if !ok {
		return "", fmt.Errorf("missing key %q", key)
	}
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("key %q: want a string, got %s", key, jsonKind(raw))
	}
	return s, nil
}

// idField returns o[key], a JSON string or number, as text (a number as
// Python's str() writes it).
func idField(o map[string]json.RawMessage, key string) (string, error) {
	return numberOrString(o, key, "an integer or a string")
}

// answerField returns o[key], a JSON string or number, as Python's str().
func answerField(o map[string]json.RawMessage, key string) (string, error) {
	return numberOrString(o, key, "a string or a number")
}

func numberOrString(o map[string]json.RawMessage, key, want string) (string, error) {
	raw, ok := o[key]
	if !ok {
		return "", fmt.Errorf("missing key %q", key)
	}
	s, err := pyStr(raw)
	if err != nil || isBoolOrNull(raw) {
		return "", fmt.Errorf("key %q: want %s, got %s", key, want, jsonKind(raw))
	}
	return s, nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func isBoolOrNull(raw json.RawMessage) bool {
	switch k := jsonKind(raw); k {
	case "true", "false", "null":
		return true
	}
	return false
}

// jsonKind names the JSON type of raw for error messages.
func jsonKind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't':
		return "true"
	case 'f':
		return "false"
	case 'n':
		return "null"
	}
	return "a number"
}

// pyStr returns str(json.loads(raw)) for a JSON scalar: a string as it is,
// true/false/null as "True"/"False"/"None", an integer literal as its
// decimal text (any size, "-0" -> "0"), and any other number as Python's
// repr of the nearest float ("2.0", "1e-05", "1e+16", "inf" on overflow).
// Arrays and objects are an error.
func pyStr(raw json.RawMessage) (string, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "", fmt.Errorf("empty JSON value")
	}
	switch t[0] {
	case '"':
		var s string
		err := json.Unmarshal(t, &s)
		return s, err
	case 't', 'f', 'n':
		var v any
		if err := json.Unmarshal(t, &v); err != nil {
			return "", err
		}
		switch v {
		case true:
			return "True", nil
		case false:
			return "False", nil
		}
		return "None", nil
	case '{', '[':
		return "", fmt.Errorf("not a scalar: %s", jsonKind(t))
	}
	var n json.Number
	if err := json.Unmarshal(t, &n); err != nil {
		return "", err
	}
	lit := n.String()
	if !strings.ContainsAny(lit, ".eE") {
		// Python's json makes an int; JSON forbids leading zeros, so the
		// literal is already canonical except for "-0".
		if lit == "-0" {
			return "0", nil
		}
		return lit, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !math.IsInf(f, 0) {
		return "", err
	}
	return pyFloatRepr(f), nil
}

// pyFloatRepr is Python's repr (and str) of a float: the shortest digits
// that round-trip, in positional notation with at least one decimal when the
// decimal exponent is in [-4, 16), else in exponent notation with a sign and
// at least two exponent digits.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // e.g. "-1.25e-05"
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	mant, expText, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expText)
	digits := strings.Replace(mant, ".", "", 1)
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		return fmt.Sprintf("%s%se%+03d", sign, m, exp)
	}
	if exp < 0 {
		return sign + "0." + strings.Repeat("0", -exp-1) + digits
	}
	if len(digits) <= exp+1 {
		return sign + digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
	}
	return sign + digits[:exp+1] + "." + digits[exp+1:]
}
