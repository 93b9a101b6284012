package causal

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/train"
)

// FitConfig is the "causal.fit" task: a user's K tasks, one CSV each,
// estimated jointly (or in groups, or separately).
type FitConfig struct {
	train.Base               // [trainer]: seed, device, max_steps (solver iterations), log_every
	Data       []string      `toml:"data"` // one CSV per task, sharing the header (paths relative to the working directory)
	GroupSize  int           `toml:"group_size"`
	Solver     SolverOptions `toml:"solver"`
}

// DefaultFit is the official solver on all tasks jointly.
func DefaultFit() *FitConfig {
	t := train.DefaultTrainer()
	t.MaxSteps, t.LogEvery = 20000, 1000
	return &FitConfig{Base: train.Base{Task: "causal.fit", Trainer: t}, Solver: DefaultSolver()}
}

// Validate checks the config, naming the key.
func (c *FitConfig) Validate() error {
	switch {
	case c.Trainer.MaxSteps < 1:
		return config.Field("trainer.max_steps", "is the solver's iteration count and must be positive, got %d", c.Trainer.MaxSteps)
	case len(c.Data) == 0:
		return config.Field("data", "must list the tasks' CSV files")
	case c.GroupSize < 0:
		return config.Field("group_size", "must not be negative (0 fits all tasks jointly), got %d", c.GroupSize)
	}
	if err := c.Solver.Validate(); err != nil {
		return config.Field("solver", "%v", err)
	}
	if c.Solver.RhoMode == RhoOfficial {
		return config.Field("solver.rho_mode", "%q adapts rho from the true graphs' squared error and group norm, and a fit of CSV files has no true graphs (only causal.sweep's generated data does): use %q", RhoOfficial, RhoFixed)
	}
	return nil
}

func (c *FitConfig) solver() SolverOptions {
	o := c.Solver
	o.Iters, o.Seed = int(c.Trainer.MaxSteps), c.Trainer.Seed
	return o
}

// FitResult is what a fit writes to results.json.
type FitResult struct {
	Variables []string   `json:"variables"`
	Order     []string   `json:"order"` // the recovered causal order (per group when fitted in groups: the first group's)
	Tasks     []TaskInfo `json:"tasks"`
	Seconds   float64    `json:"seconds"`
}

// TaskInfo describes one task's estimate.
type TaskInfo struct {
	File      string   `json:"file"`
	Adjacency string   `json:"adjacency"` // the weighted adjacency CSV written for it
	Edges     int      `json:"edges"`     // at or above the threshold
	Order     []string `json:"order"`     // the order of the group it was fitted in
	SE        float64  `json:"se"`        // the group's final squared error
	H         float64  `json:"h"`         // the group's final h(T)
}

// solverIgnores are the [trainer] keys a solver run does not use: it is
// full-batch, in float64, with no optimizer checkpoints.
var solverIgnores = []string{"epochs", "eval_every", "checkpoint_every", "keep_checkpoints", "accumulate", "precision"}

// FitTask is "causal.fit". A fit cannot resume (it is one solver run).
var FitTask = train.TaskSpec[*FitConfig, *FitResult]{
	Name:     "causal.fit",
	Doc:      "joint estimation of order-consistent Gaussian DAGs from K CSV files",
	Default:  DefaultFit,
	Run:      RunFit,
	Ignores:  solverIgnores,
	NoResume: true,
	Added:    rhoModeAdded,
}

// SweepTask is "causal.sweep"; resuming keeps the fits in fits.jsonl.
var SweepTask = train.TaskSpec[*SweepConfig, *SweepResult]{
	Name:    "causal.sweep",
	Doc:     "order recovery of joint against separate estimation over a synthetic grid (the paper's heatmap)",
	Default: DefaultSweep,
	Run:     RunSweep,
	Ignores: solverIgnores,
	Added:   rhoModeAdded,
}

// rhoModeAdded: runs made before solver.rho_mode existed used rho fixed,
// so they resume under "fixed".
var rhoModeAdded = map[string]any{"solver.rho_mode": RhoFixed}

// RunFit reads the tasks, fits them, and writes adjacency_<file>.csv per
// task and order.txt to the run directory (results.json is the result).
func RunFit(s *train.Session, c *FitConfig) (*FitResult, error) {
	names, x, err := ReadTasks(c.Data)
	if err != nil {
		return nil, err
	}
	dev, out, w := s.Device, s.Out, s.W
	g := c.GroupSize
	if g == 0 || g > len(x) {
		g = len(x)
	}
	start := time.Now()
	res := &FitResult{Variables: names}
	for lo := 0; lo < len(x); lo += g {
		hi := min(lo+g, len(x))
		o := c.solver()
		o.ProgressEvery = int(c.Trainer.LogEvery)
		o.Progress = func(it int, se, h float64) {
			fmt.Fprintf(w, "tasks %d-%d: iteration %d/%d  squared error %.4f  h(T) %.3g\n", lo+1, hi, it, o.Iters, se, h)
		}
		est, err := Fit(x[lo:hi], o, dev)
		if err != nil {
			return nil, err
		}
		order := make([]string, len(est.Order))
		for i, j := range est.Order {
			order[i] = names[j]
		}
		if lo == 0 {
			res.Order = order
		}
		for m, wk := range est.W {
			base := strings.TrimSuffix(filepath.Base(c.Data[lo+m]), filepath.Ext(c.Data[lo+m]))
			adj := filepath.Join(out, fmt.Sprintf("adjacency_%d_%s.csv", lo+m, base))
			thr, edges := Thresholded(wk, c.Solver.Threshold)
			if err := WriteAdjacency(adj, names, thr); err != nil {
				return nil, err
			}
			res.Tasks = append(res.Tasks, TaskInfo{File: c.Data[lo+m], Adjacency: adj, Edges: edges, Order: order, SE: est.SE, H: est.H})
		}
	}
	res.Seconds = time.Since(start).Seconds()
	if err := os.WriteFile(filepath.Join(out, "order.txt"), []byte(strings.Join(res.Order, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "order: %s\nwrote %d adjacency CSVs, order.txt and results.json to %s\n", strings.Join(res.Order, " -> "), len(res.Tasks), out)
	return res, nil
}

// Thresholded is w with the weights that are not edges (Binary: |w| below
// threshold) set to 0, and the number of edges left: what a fit writes to
// its adjacency files.
func Thresholded(w [][]float64, threshold float64) ([][]float64, int) {
	out := newFloat(len(w))
	edges := 0
	for i := range w {
		for j := range w[i] {
			if isEdge(w[i][j], threshold) {
				out[i][j] = w[i][j]
				edges++
			}
		}
	}
	return out, edges
}
