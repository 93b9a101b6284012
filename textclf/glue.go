package textclf

import "strings"

// GLUETask is what text.classify knows of a GLUE task: its files' columns
// as distributed (glue_data from download_glue_data.py, the files HF's
// run_glue.py and GLUE's own baselines read), its labels in the order HF's
// processors give them ids, and the metrics GLUE reports for it.
type GLUETask struct {
	Name string
	// Train is the layout of train.tsv and the dev files; Test that of the
	// test files, which have no label (and, for CoLA, a header the others
	// lack).
	Train, Test Layout
	Labels      []string // nil for regression
	Metrics     []string
	// Eval and Predict are the dev and test files in the task's folder.
	Eval, Predict []string
}

// Regression says whether the task predicts a value (STS-B's similarity).
func (g *GLUETask) Regression() bool { return g.Labels == nil }

var binary = []string{"0", "1"}
var entail = []string{"entailment", "not_entailment"}

// glueTasks are the nine GLUE tasks. Columns are named as in the files'
// headers, so the test files (with an index column first) read by the same
// names; CoLA's train and dev files have no header: source, label,
// original label, sentence.
var glueTasks = map[string]*GLUETask{
	"cola": {Name: "cola", Train: Layout{Format: "tsv", NoHeader: true, Text: "3", Label: "1"}, Test: Layout{Format: "tsv", Text: "sentence"},
		Labels: binary, Metrics: []string{MetricMatthews}},
	"sst2": {Name: "sst2", Train: Layout{Format: "tsv", Text: "sentence", Label: "label"},
		Labels: binary, Metrics: []string{MetricAccuracy}},
	"mrpc": {Name: "mrpc", Train: Layout{Format: "tsv", Text: "#1 String", Pair: "#2 String", Label: "Quality"},
		Labels: binary, Metrics: []string{MetricAccuracy, MetricF1}},
	"qqp": {Name: "qqp", Train: Layout{Format: "tsv", Text: "question1", Pair: "question2", Label: "is_duplicate"},
		Labels: binary, Metrics: []string{MetricAccuracy, MetricF1}},
	"stsb": {Name: "stsb", Train: Layout{Format: "tsv", Text: "sentence1", Pair: "sentence2", Label: "score"},
		Metrics: []string{MetricPearson, MetricSpearman}},
	// MNLI's label is the last column, gold_label, after one (train) or
	// five (dev) annotator labels.
	"mnli": {Name: "mnli", Train: Layout{Format: "tsv", Text: "sentence1", Pair: "sentence2", Label: "gold_label"},
		Labels: []string{"contradiction", "entailment", "neutral"}, Metrics: []string{MetricAccuracy},
		Eval: []string{"dev_matched.tsv", "dev_mismatched.tsv"}, Predict: []string{"test_matched.tsv", "test_mismatched.tsv"}},
	"qnli": {Name: "qnli", Train: Layout{Format: "tsv", Text: "question", Pair: "sentence", Label: "label"},
		Labels: entail, Metrics: []string{MetricAccuracy}},
	"rte": {Name: "rte", Train: Layout{Format: "tsv", Text: "sentence1", Pair: "sentence2", Label: "label"},
		Labels: entail, Metrics: []string{MetricAccuracy}},
	"wnli": {Name: "wnli", Train: Layout{Format: "tsv", Text: "sentence1", Pair: "sentence2", Label: "label"},
		Labels: binary, Metrics: []string{MetricAccuracy}},
}

func init() {
	for _, g := range glueTasks {
		if g.Test.Text == "" {
			g.Test = g.Train
			g.Test.Label = ""
		}
		if g.Eval == nil {
			g.Eval, g.Predict = []string{"dev.tsv"}, []string{"test.tsv"}
		}
	}
}

// GLUE returns a GLUE task by name: cola, sst2, mrpc, qqp, stsb, mnli,
// qnli, rte, wnli (case and hyphens as in SST-2 or STS-B are ignored).
func GLUE(name string) (*GLUETask, bool) {
	g, ok := glueTasks[strings.ReplaceAll(strings.ToLower(name), "-", "")]
	return g, ok
}

// GLUENames lists the GLUE tasks, for errors and help.
func GLUENames() []string {
	return []string{"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
}
