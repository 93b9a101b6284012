package cap

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// ExportOptions say what Export writes.
type ExportOptions struct {
	// Checkpoint is a checkpoint folder of the run; "" takes the newest.
	Checkpoint string
	// Threshold is an unstructured run's mask threshold (the share of
	// weights kept for topK and magnitude, the sigmoid cut for soft
	// movement); 0 takes the config's final threshold, as bertarize.py's
	// --threshold does.
	Threshold float64
	Device    gotch.Device
	W         io.Writer
}

// Export writes the pruned model of a cap.prune run's checkpoint to out,
// as a finished run writes pruned/: a structured run's really pruned
// BERT, an unstructured run's masks applied to its weights. For a run
// stopped early, or an earlier round's model. It returns the checkpoint
// it read.
func Export(c *Config, run, out string, o ExportOptions) (string, error) {
	if o.W == nil {
		o.W = io.Discard
	}
	if o.Device.Name == "" {
		o.Device = gotch.CPU
	}
	ckpt := o.Checkpoint
	if ckpt == "" {
		var err error
		if ckpt, err = train.LatestCheckpoint(run); err != nil {
			return "", err
		}
		if ckpt == "" {
			return "", fmt.Errorf("%s has no checkpoint", run)
		}
	}
	var st struct {
		Step int64                      `json:"step"`
		Task map[string]json.RawMessage `json:"task"`
	}
	b, err := os.ReadFile(filepath.Join(ckpt, "state.json"))
	if err != nil {
		return ckpt, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return ckpt, fmt.Errorf("%s: %w", filepath.Join(ckpt, "state.json"), err)
	}
	store := torchmods.NewStore(o.Device)
	defer store.Drop()
	r := &runner{c: c, s: &train.Session{Store: store, Device: o.Device, W: o.W, Out: run}}
	if _, _, err := r.open(store, false); err != nil {
		return ckpt, err
	}
	structured := c.Prune.Method == "structured"
	if !structured {
		if r.masked, err = NewMasked(store, r.student.Bert, Method(c.Prune.Method), c.Prune.MaskScale); err != nil {
			return ckpt, err
		}
	}
	w, err := torchmods.LoadWeights(filepath.Join(ckpt, "model.safetensors"), o.Device)
	if err != nil {
		return ckpt, err
	}
	_, err = store.Load(w, true)
	for _, t := range w {
		t.MustDrop()
	}
	if err != nil {
		return ckpt, fmt.Errorf("%s: %w", ckpt, err)
	}
	if structured {
		raw, ok := st.Task["prune"]
		if !ok {
			return ckpt, fmt.Errorf("%s: no pruning state: not a cap.prune checkpoint", ckpt)
		}
		bc := r.student.Bert.Cfg
		r.headMask, r.ffnMask = Ones(bc.NumHiddenLayers, bc.NumAttentionHeads), Ones(bc.NumHiddenLayers, bc.IntermediateSize)
		if err := (pruneState{r}).LoadState(raw, nil); err != nil {
			return ckpt, fmt.Errorf("%s: %w", ckpt, err)
		}
		fmt.Fprintf(o.W, "cap: %s (step %d): %d of %d heads and %d of %d neurons kept\n", ckpt, st.Step, Kept(r.headMask), bc.NumHiddenLayers*bc.NumAttentionHeads,
			Kept(r.ffnMask), bc.NumHiddenLayers*bc.IntermediateSize)
		_, _, err = r.shrinkTo(out)
		return ckpt, err
	}
	th := o.Threshold
	if th == 0 {
		th = c.Prune.FinalThreshold
	}
	var kept float64
	if err := torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		kept = r.masked.Remaining(th)
	}); err != nil {
		return ckpt, err
	}
	fmt.Fprintf(o.W, "cap: %s (step %d): threshold %g keeps %.2f%% of the encoder's linear weights\n", ckpt, st.Step, th, 100*kept)
	_, err = r.bertarizeTo(out, th)
	return ckpt, err
}
