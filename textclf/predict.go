package textclf

import (
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/train"
)

// PredictRun runs a trained text.classify run on new rows, as `repro
// predict` does: the run's config.toml says how to read the input (its
// columns, GLUE's test layout, max_len), config.json and the tokenizer in
// the run rebuild the model, and weights (default: the run's newest
// checkpoint) load into it. Predictions go to out in GLUE's format
// (index, prediction); when every row has a label, the config's metrics go
// to log.
func PredictRun(run, weights, input string, out, log io.Writer) error {
	c := Default()
	if err := config.Load(filepath.Join(run, "config.toml"), c, nil); err != nil {
		return err
	}
	if c.Task != Task.Name {
		return fmt.Errorf("%s: task %q, not %s", run, c.Task, Task.Name)
	}
	p, err := c.resolve()
	if err != nil {
		return err
	}
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return err
	}
	m, err := Open(run, OpenOptions{Weights: weights, MaxLen: c.MaxLen, Device: dev, W: log})
	if err != nil {
		return err
	}
	defer m.Close()
	ex, skipped, err := ReadExamples(input, p.test, false)
	if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(log, "skipped %d bad rows\n", skipped)
	}
	labeled := true
	for _, e := range ex {
		labeled = labeled && e.Label != ""
	}
	pr := &prepared{plan: p, tok: m.Tok, labels: m.Labels, pair: p.layout.Pair != ""}
	d, err := pr.dataset(input, ex, labeled, m.MaxLen)
	if err != nil {
		return err
	}
	ev, err := m.evaluate(d, c.Data.EvalBatch, p.metrics)
	if err != nil {
		return err
	}
	if err := WritePredictions(out, ev.preds, m.Regression); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(ev.metrics)) {
		fmt.Fprintf(log, "%s %.4f\n", k, ev.metrics[k])
	}
	fmt.Fprintf(log, "%d predictions from %s\n", len(ev.preds), m.Source)
	return nil
}
