package vqa

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeJSON writes text to a file in a fresh temporary folder and returns
// its path.
func writeJSON(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

func TestReadItemsMUMC(t *testing.T) {
	p := writeJSON(t, "testset.json", `[
 {"qid": 1, "image_name": "synpic54610.jpg", "image_organ": "HEAD", "answer": "Yes",
  "answer_type": "CLOSED", "question_type": "PRES", "question": "Are regions of the brain infarcted?",
  "phrase_type": "freeform"},
 {"qid": "path_7", "image_name": "test_0007.jpg", "question": "What is present?",
  "answer": "necrosis", "answer_type": "OPEN", "question_type": "what"}
]`)
	items, err := ReadItems(p)
	require.NoError(t, err)
	require.Equal(t, []Item{
		{QID: "1", Image: "synpic54610.jpg", Question: "Are regions of the brain infarcted?", Answer: "Yes",
			AnswerType: "CLOSED", QuestionType: "PRES", Organ: "HEAD"},
		{QID: "path_7", Image: "test_0007.jpg", Question: "What is present?", Answer: "necrosis",
			AnswerType: "OPEN", QuestionType: "what"},
	}, items)
}

func TestReadItemsVQARADPublic(t *testing.T) {
	// The shape of "VQA_RAD Dataset Public.json": numeric answers and
	// answer types with stray spaces and case.
	p := writeJSON(t, "VQA_RAD Dataset Public.json", `[
 {"qid": 4, "phrase_type": "freeform", "qid_linked_id": "03f451ca-de62-4617-9679-e836026a7642",
  "image_case_url": "https://medpix.nlm.nih.gov/case?id=x", "image_name": "synpic42202.jpg",
  "image_organ": "CHEST", "evaluation": "not evaluated", "question": "How many lesions are there?",
  "question_rephrase": "NULL", "question_relation": "NULL", "question_frame": "NULL",
  "question_type": "COUNT", "answer": 2, "answer_type": "OPEN"},
 {"qid": 5, "image_name": "synpic42202.jpg", "image_organ": "CHEST", "question": "Is it 1.5 cm?",
  "question_type": "SIZE", "answer": 1.0, "answer_type": "CLOSED ", "phrase_type": "para"},
 {"qid": 6, "image_name": "synpic42202.jpg", "image_organ": "CHEST", "question": "Is it big?",
  "question_type": "SIZE", "answer": "yes", "answer_type": " closed", "phrase_type": "para"}
]`)
	items, err := ReadItems(p)
	require.NoError(t, err)
	require.Len(t, items, 3)
	require.Equal(t, "2", items[0].Answer)
	require.Equal(t, "OPEN", items[0].AnswerType)
	require.Equal(t, "COUNT", items[0].QuestionType)
	require.Equal(t, "1.0", items[1].Answer) // Python: str(1.0)
	require.Equal(t, "CLOSED", items[1].AnswerType)
	require.Equal(t, "CLOSED", items[2].AnswerType)
	require.Equal(t, "CHEST", items[2].Organ)
}

func TestReadItemsSLAKE(t *testing.T) {
	p := writeJSON(t, "test.json", `[
 {"img_id": 102, "img_name": "xmlab102/source.jpg", "question": "Which organ is abnormal?",
  "answer": "Lung", "q_lang": "en", "location": "Lung", "modality": "CT", "answer_type": "OPEN",
  "base_type": "vqa", "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": 11934},
 {"img_id": 102, "img_name": "xmlab102/source.jpg", "question": "哪个器官异常?",
  "answer": "肺", "q_lang": "zh", "answer_type": "OPEN", "content_type": "Organ", "qid": 11935},
 {"img_id": 102, "img_name": "xmlab102/source.jpg", "question": "Is this a CT?",
  "answer": "Yes", "q_lang": "en", "answer_type": "CLOSED", "content_type": "Modality", "qid": "11936"}
]`)
	items, err := ReadItems(p)
	require.NoError(t, err)
	require.Equal(t, []Item{
		{QID: "11934", Image: "xmlab102/source.jpg", Question: "Which organ is abnormal?", Answer: "Lung",
			AnswerType: "OPEN", QuestionType: "Organ"},
		{QID: "11936", Image: "xmlab102/source.jpg", Question: "Is this a CT?", Answer: "Yes",
			AnswerType: "CLOSED", QuestionType: "Modality"},
	}, items)
}

func TestReadItemsEmpty(t *testing.T) {
	items, err := ReadItems(writeJSON(t, "empty.json", `[]`))
	require.NoError(t, err)
	require.Empty(t, items)
}

func TestReadItemsErrors(t *testing.T) {
	const good = `{"qid": 1, "image_name": "a.jpg", "question": "q?", "answer": "yes", "answer_type": "CLOSED", "question_type": "PRES"}`
	cases := []struct {
		name, text, want string
	}{
		{"missing qid", `[` + good + `, {"image_name": "a.jpg", "question": "q?", "answer": "yes", "answer_type": "CLOSED", "question_type": "PRES"}]`,
			`item 1: missing key "qid"`},
		{"missing question_type", `[` + good + `, ` + good + `, {"qid": 3, "image_name": "a.jpg", "question": "q?", "answer": "yes", "answer_type": "CLOSED"}]`,
			`item 2: missing key "question_type"`},
		{"bool qid", `[{"qid": true, "image_name": "a.jpg", "question": "q?", "answer": "yes", "answer_type": "CLOSED", "question_type": "PRES"}]`,
			`item 0: key "qid": want an integer or a string, got true`},
		{"list answer", `[{"qid": 1, "image_name": "a.jpg", "question": "q?", "answer": ["yes"], "answer_type": "CLOSED", "question_type": "PRES"}]`,
			`item 0: key "answer": want a string or a number, got an array`},
		{"null answer", `[{"qid": 1, "image_name": "a.jpg", "question": "q?", "answer": null, "answer_type": "CLOSED", "question_type": "PRES"}]`,
			`item 0: key "answer": want a string or a number, got null`},
		{"numeric question", `[{"qid": 1, "image_name": "a.jpg", "question": 3, "answer": "yes", "answer_type": "CLOSED", "question_type": "PRES"}]`,
			`item 0: key "question": want a string, got a number`},
		{"unknown format", `[{"question_id": 1, "image": "a.jpg"}]`,
			`item 0: unknown format: no key "image_name"`},
		{"slake missing content_type", `[{"img_name": "x/source.jpg", "qid": 1, "question": "q?", "answer": "a", "answer_type": "OPEN", "q_lang": "en"}]`,
			`item 0: missing key "content_type"`},
		{"slake missing q_lang", `[{"img_name": "x/source.jpg", "qid": 1, "question": "q?", "answer": "a", "answer_type": "OPEN", "content_type": "Organ"}]`,
			`item 0: missing key "q_lang"`},
		{"not an object", `[` + good + `, 5]`, `item 1: want a JSON object, got a number`},
		{"not an array", `{"qid": 1}`, `want a JSON array`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeJSON(t, "items.json", c.text)
			_, err := ReadItems(p)
			require.ErrorContains(t, err, p+": ")
			require.ErrorContains(t, err, c.want)
		})
	}
	_, err := ReadItems(filepath.Join(t.TempDir(), "absent.json"))
	require.Error(t, err)
}

func TestReadAnswerList(t *testing.T) {
	p := writeJSON(t, "answer_list.json", `["yes", "no", 1, 2.5, "yes", "x-ray"]`)
	got, err := ReadAnswerList(p)
	require.NoError(t, err)
	require.Equal(t, []string{"yes", "no", "1", "2.5", "yes", "x-ray"}, got) // duplicates kept, in order

	p = writeJSON(t, "bad.json", `["yes", null]`)
	_, err = ReadAnswerList(p)
	require.ErrorContains(t, err, p+": item 1: answer must be a string or a number, got null")

	p = writeJSON(t, "obj.json", `{"yes": 0}`)
	_, err = ReadAnswerList(p)
	require.ErrorContains(t, err, p+": want a JSON array")
}

func TestReadCaptions(t *testing.T) {
	p := writeJSON(t, "pretrain.json", `[
 {"image": "roco/PMC1.jpg", "caption": "Chest X-ray."},
 {"image": "medicat/2.png", "caption": ["first", "second"], "source": "medicat"}
]`)
	got, err := ReadCaptions(p)
	require.NoError(t, err)
	require.Equal(t, []Caption{
		{Image: "roco/PMC1.jpg", Captions: []string{"Chest X-ray."}},
		{Image: "medicat/2.png", Captions: []string{"first", "second"}},
	}, got)

	cases := []struct{ name, text, want string }{
		{"missing image", `[{"image": "a.jpg", "caption": "c"}, {"caption": "c"}]`, `item 1: missing key "image"`},
		{"missing caption", `[{"image": "a.jpg"}]`, `item 0: missing key "caption"`},
		{"empty list", `[{"image": "a.jpg", "caption": []}]`, `item 0: key "caption": empty list`},
		{"bad type", `[{"image": "a.jpg", "caption": 3}]`, `item 0: key "caption": want a string or a list of strings, got a number`},
		{"null", `[{"image": "a.jpg", "caption": null}]`, `item 0: key "caption": want a string or a list of strings, got null`},
		{"mixed list", `[{"image": "a.jpg", "caption": ["a", 1]}]`, `item 0: key "caption": want a string or a list of strings, got an array`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeJSON(t, "captions.json", c.text)
			_, err := ReadCaptions(p)
			require.ErrorContains(t, err, p+": "+c.want)
		})
	}
}

// TestPyStr checks the conversion of JSON scalars against str(json.loads(x))
// as printed by CPython 3.11.2.
func TestPyStr(t *testing.T) {
	cases := []struct{ in, want string }{
		{"1", "1"},
		{"-0", "0"},
		{"0", "0"},
		{"123456789012345678901234", "123456789012345678901234"},
		{"1.0", "1.0"},
		{"2.50", "2.5"},
		{"-0.0", "-0.0"},
		{"1e3", "1000.0"},
		{"1E-7", "1e-07"},
		{"0.0001", "0.0001"},
		{"0.00001", "1e-05"},
		{"1e16", "1e+16"},
		{"1e15", "1000000000000000.0"},
		{"123456789.123456789", "123456789.12345679"},
		{"1e400", "inf"},
		{"-1e400", "-inf"},
		{"5e-324", "5e-324"},
		{"0.1", "0.1"},
		{"true", "True"},
		{"false", "False"},
		{"null", "None"},
		{"\"x\"", "x"},
		{"12.5e1", "125.0"},
		{"100", "100"},
		{"3.14159", "3.14159"},
	}
	for _, c := range cases {
		got, err := pyStr(json.RawMessage(c.in))
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got, "pyStr(%s)", c.in)
	}
	_, err := pyStr(json.RawMessage(`[1]`))
	require.Error(t, err)
}
