package causal

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/train"
)

// SweepConfig is the "causal.sweep" task: the paper's synthetic grid. For
// each replicate and sample size it draws K tasks, fits them in groups of
// each size (1 is separate estimation), and scores every task.
type SweepConfig struct {
	train.Base               // [trainer]: seed, device, max_steps (solver iterations per fit)
	Data       GenOptions    `toml:"data"`    // p, s, s0, d, k (n comes from samples)
	Samples    []int         `toml:"samples"` // samples per task
	Groups     []int         `toml:"groups"`  // tasks per joint fit; each must divide k
	Replicates int           `toml:"replicates"`
	Solver     SolverOptions `toml:"solver"`
}

// DefaultSweep is a small grid.
func DefaultSweep() *SweepConfig {
	t := train.DefaultTrainer()
	t.MaxSteps = 6000
	return &SweepConfig{Base: train.Base{Task: "causal.sweep", Trainer: t}, Data: GenOptions{P: 16, S: 60, S0: 20, D: 4, K: 16},
		Samples: []int{10, 20, 40}, Groups: []int{1, 4, 16}, Replicates: 1, Solver: DefaultSolver()}
}

// Validate checks the grid, naming the key.
func (c *SweepConfig) Validate() error {
	if c.Trainer.MaxSteps < 1 {
		return config.Field("trainer.max_steps", "is the solver's iteration count per fit and must be positive, got %d", c.Trainer.MaxSteps)
	}
	d := c.Data
	d.N = 1
	if err := d.Validate(); err != nil {
		return config.Field("data", "%v", err)
	}
	if len(c.Samples) == 0 || len(c.Groups) == 0 {
		return config.Field("samples", "samples and groups must both list at least one value")
	}
	for _, n := range c.Samples {
		if n < 2 {
			return config.Field("samples", "each sample size must be at least 2, got %d", n)
		}
	}
	for _, g := range c.Groups {
		if g < 1 || c.Data.K%g != 0 {
			return config.Field("groups", "each group size must divide data.k = %d, got %d", c.Data.K, g)
		}
	}
	if c.Replicates < 1 {
		return config.Field("replicates", "must be at least 1, got %d", c.Replicates)
	}
	if err := c.Solver.Validate(); err != nil {
		return config.Field("solver", "%v", err)
	}
	return nil
}

// FitRecord is one joint fit of a sweep, as fits.jsonl stores it. Every
// task estimate is scored twice, so one run gives both columns of
// causal/RESULTS.md: with the official rule for cyclic estimates (scored
// as the empty graph, Official) and with the greedy projection (Greedy).
type FitRecord struct {
	Replicate int        `json:"replicate"`
	N         int        `json:"n"`
	Group     int        `json:"group"`
	Start     int        `json:"start"`   // first task of the group
	Success   []bool     `json:"success"` // order recovered, per task (Official)
	Accuracy  []Accuracy `json:"accuracy"`
	// SuccessGreedy and AccuracyGreedy score the same estimates with
	// cycles projected away by ProjectDAG (Greedy).
	SuccessGreedy  []bool     `json:"success_greedy"`
	AccuracyGreedy []Accuracy `json:"accuracy_greedy"`
	// CyclicOrder and Cyclic say which task estimates had a cycle at the
	// order-recovery threshold and at solver.threshold: the ones the two
	// scorings disagree on.
	CyclicOrder []bool  `json:"cyclic_order"`
	Cyclic      []bool  `json:"cyclic"`
	Seconds     float64 `json:"seconds"`
	Rho         float64 `json:"rho"` // the final rho (solver.rho unless solver.rho_mode is "official")
}

func (r FitRecord) key() [4]int { return [4]int{r.Replicate, r.N, r.Group, r.Start} }

// Cell summarises one (group size, n) cell over every task and replicate:
// the official scores, the greedy-projection ones, and how many task
// estimates were cyclic (where the two differ).
type Cell struct {
	Group          int     `json:"group"`
	N              int     `json:"n"`
	Recovery       float64 `json:"recovery"`    // order-recovery probability (Official)
	SHD            float64 `json:"shd"`         // mean structural Hamming distance (Official)
	RecoverySD     float64 `json:"recovery_sd"` // standard deviation (n - 1) over replicates of each replicate's Recovery; 0 with one
	SHDSD          float64 `json:"shd_sd"`      // and of its SHD
	TPR            float64 `json:"tpr"`
	FDR            float64 `json:"fdr"`
	RecoveryGreedy float64 `json:"recovery_greedy"` // the same with cycles projected away (Greedy)
	SHDGreedy      float64 `json:"shd_greedy"`
	TPRGreedy      float64 `json:"tpr_greedy"`
	FDRGreedy      float64 `json:"fdr_greedy"`
	CyclicOrder    int     `json:"cyclic_order"` // task estimates with a cycle at the order-recovery threshold
	Cyclic         int     `json:"cyclic"`       // and at solver.threshold
	Tasks          int     `json:"tasks"`
	SecondsEach    float64 `json:"seconds_per_fit"`
}

// RunSweep runs the grid, appending each fit to out/fits.jsonl (with
// resume, fits already there are kept and skipped), then writes
// results.json, shd.md and recovery.png: the heatmap of order-recovery
// probability over (tasks per group x samples per task).
func RunSweep(s *train.Session, c *SweepConfig) (*SweepResult, error) {
	dev, out, resume, w := s.Device, s.Out, s.Resuming(), s.W
	var err error
	path := filepath.Join(out, "fits.jsonl")
	done := map[[4]int]FitRecord{}
	if resume {
		if done, err = readFits(path); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "resuming: %d fits already in %s\n", len(done), path)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resume {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	total := 0
	for _, g := range c.Groups {
		total += c.Replicates * len(c.Samples) * c.Data.K / g
	}
	count := 0
	for rep := range c.Replicates {
		for _, n := range c.Samples {
			o := c.Data
			o.N = n
			rng := rand.New(rand.NewPCG(uint64(c.Trainer.Seed), uint64(rep)<<32|uint64(n)))
			pr, err := Generate(o, rng)
			if err != nil {
				return nil, err
			}
			for _, g := range c.Groups {
				for start := 0; start < o.K; start += g {
					count++
					rec := FitRecord{Replicate: rep, N: n, Group: g, Start: start}
					if _, ok := done[rec.key()]; ok {
						continue
					}
					so := c.Solver
					so.Iters, so.Seed = int(c.Trainer.MaxSteps), c.Trainer.Seed+int64(start)
					so.Truth = pr.W[start : start+g] // used by rho_mode "official" only
					t0 := time.Now()
					est, err := Fit(pr.X[start:start+g], so, dev)
					if err != nil {
						return nil, err
					}
					rec.Seconds, rec.Rho = time.Since(t0).Seconds(), est.Rho
					scoreFit(&rec, est.W, pr, start, float64(o.P)/3, SuccessThreshold(n), c.Solver.Threshold)
					b, _ := json.Marshal(rec)
					if _, err := f.Write(append(b, '\n')); err != nil {
						return nil, err
					}
					done[rec.key()] = rec
					ok := 0
					for _, s := range rec.Success {
						if s {
							ok++
						}
					}
					fmt.Fprintf(w, "fit %d/%d: replicate %d, n %d, tasks %d-%d jointly: order recovered for %d/%d, %.1f s\n",
						count, total, rep, n, start+1, start+g, ok, g, rec.Seconds)
				}
			}
		}
	}
	cells := summarise(c, done)
	res := &SweepResult{Cells: cells, RhoMode: rhoMode(c.Solver), P: c.Data.P, S: c.Data.S, S0: c.Data.S0, D: c.Data.D, K: c.Data.K,
		Iterations: c.Trainer.MaxSteps, Replicates: c.Replicates}
	table := shdTable(c, cells)
	if err := os.WriteFile(filepath.Join(out, "shd.md"), []byte(table), 0o644); err != nil {
		return nil, err
	}
	if err := heatmap(filepath.Join(out, "recovery.png"), c, cells); err != nil {
		return nil, err
	}
	fmt.Fprint(w, table)
	fmt.Fprintf(w, "wrote fits.jsonl, shd.md and recovery.png to %s\n", out)
	return res, nil
}

// SweepResult is a sweep's results.json: the grid's cells and its setting.
type SweepResult struct {
	Cells      []Cell `json:"cells"`
	RhoMode    string `json:"rho_mode"` // "fixed" or "official" (solver.rho_mode)
	P          int    `json:"p"`
	S          int    `json:"s"`
	S0         int    `json:"s0"`
	D          int    `json:"d"`
	K          int    `json:"k"`
	Iterations int64  `json:"iterations"`
	Replicates int    `json:"replicates"`
}

// scoreFit scores each task estimate of a fit under both projections:
// order recovery at the success threshold and count_accuracy at the edge
// threshold, as recovery_probability.py and plot_syn_acc.py do.
func scoreFit(rec *FitRecord, w [][][]float64, pr *Problem, start int, minEdges, successThr, edgeThr float64) {
	for m, wk := range w {
		truth := Binary(pr.W[start+m], 0)
		ord, edges := Binary(wk, successThr), Binary(wk, edgeThr)
		_, okOrd := TopoOrder(ord)
		_, ok := TopoOrder(edges)
		rec.CyclicOrder = append(rec.CyclicOrder, !okOrd)
		rec.Cyclic = append(rec.Cyclic, !ok)
		rec.Success = append(rec.Success, OrderSuccess(ord, wk, pr.Order, minEdges, Official))
		rec.SuccessGreedy = append(rec.SuccessGreedy, OrderSuccess(ord, wk, pr.Order, minEdges, Greedy))
		rec.Accuracy = append(rec.Accuracy, CountAccuracy(truth, edges, wk, Official))
		rec.AccuracyGreedy = append(rec.AccuracyGreedy, CountAccuracy(truth, edges, wk, Greedy))
	}
}

func readFits(path string) (map[[4]int]FitRecord, error) {
	done := map[[4]int]FitRecord{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return done, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r FitRecord
		// A torn last line, or a record from before both scorings were
		// kept (no success_greedy), is dropped and refitted.
		if json.Unmarshal(sc.Bytes(), &r) == nil && len(r.Success) == r.Group && len(r.SuccessGreedy) == r.Group &&
			len(r.AccuracyGreedy) == r.Group && len(r.Cyclic) == r.Group && len(r.CyclicOrder) == r.Group {
			done[r.key()] = r
		}
	}
	return done, sc.Err()
}

func summarise(c *SweepConfig, done map[[4]int]FitRecord) []Cell {
	var cells []Cell
	for _, g := range c.Groups {
		for _, n := range c.Samples {
			cell := Cell{Group: g, N: n}
			fits := 0
			repRec, repSHD, repTasks := make([]float64, c.Replicates), make([]float64, c.Replicates), make([]float64, c.Replicates)
			for _, r := range done {
				if r.Group != g || r.N != n || r.Replicate >= c.Replicates {
					continue
				}
				fits++
				cell.SecondsEach += r.Seconds
				for m := range r.Success {
					repRec[r.Replicate] += b2f(r.Success[m])
					repSHD[r.Replicate] += float64(r.Accuracy[m].SHD)
					repTasks[r.Replicate]++
					cell.Recovery += b2f(r.Success[m])
					cell.SHD += float64(r.Accuracy[m].SHD)
					cell.TPR += r.Accuracy[m].TPR
					cell.FDR += r.Accuracy[m].FDR
					cell.RecoveryGreedy += b2f(r.SuccessGreedy[m])
					cell.SHDGreedy += float64(r.AccuracyGreedy[m].SHD)
					cell.TPRGreedy += r.AccuracyGreedy[m].TPR
					cell.FDRGreedy += r.AccuracyGreedy[m].FDR
					cell.CyclicOrder += int(b2f(r.CyclicOrder[m]))
					cell.Cyclic += int(b2f(r.Cyclic[m]))
					cell.Tasks++
				}
			}
			if cell.Tasks > 0 {
				t := float64(cell.Tasks)
				cell.Recovery, cell.SHD, cell.TPR, cell.FDR = cell.Recovery/t, cell.SHD/t, cell.TPR/t, cell.FDR/t
				cell.RecoveryGreedy, cell.SHDGreedy, cell.TPRGreedy, cell.FDRGreedy = cell.RecoveryGreedy/t, cell.SHDGreedy/t, cell.TPRGreedy/t, cell.FDRGreedy/t
				cell.SecondsEach /= float64(fits)
				var recs, shds []float64
				for rep, tk := range repTasks {
					if tk > 0 {
						recs, shds = append(recs, repRec[rep]/tk), append(shds, repSHD[rep]/tk)
					}
				}
				cell.RecoverySD, cell.SHDSD = sampleSD(recs), sampleSD(shds)
			}
			cells = append(cells, cell)
		}
	}
	return cells
}

// sampleSD is the standard deviation with n - 1, 0 for fewer than 2 values.
func sampleSD(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	mean, ss := 0.0, 0.0
	for _, x := range v {
		mean += x / float64(len(v))
	}
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss / float64(len(v)-1))
}

// rhoMode is o.RhoMode with "" read as "fixed".
func rhoMode(o SolverOptions) string {
	if o.RhoMode == "" {
		return RhoFixed
	}
	return o.RhoMode
}

func b2f(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// shdTable is shd.md: per cell the official scores, then the same with
// cycles projected away greedily, and the count of cyclic estimates.
func shdTable(c *SweepConfig, cells []Cell) string {
	var b strings.Builder
	rho := fmt.Sprintf("rho fixed at %g", c.Solver.Rho)
	if rhoMode(c.Solver) == RhoOfficial {
		rho = fmt.Sprintf("rho from %g, adapted from the true graphs (official rule)", c.Solver.Rho)
	}
	fmt.Fprintf(&b, "p = %d, s = %d, s0 = %d, d = %d, %d tasks, %d replicate(s), %d iterations per fit, %s.\n"+
		"Order recovered: share of tasks; SHD, TPR and FDR: means over tasks, edges |w| >= %.2g;\n"+
		"± is the standard deviation over replicates of each replicate's value (with 2 or more).\n"+
		"Official: a cyclic estimate scores as the empty graph, as the official project_to_dag returns it.\n"+
		"Greedy: the weakest edge of each cycle is removed instead. Cyclic: task estimates with a cycle\n"+
		"at the order-recovery threshold / at the edge threshold.\n\n",
		c.Data.P, c.Data.S, c.Data.S0, c.Data.D, c.Data.K, c.Replicates, c.Trainer.MaxSteps, rho, c.Solver.Threshold)
	b.WriteString("| tasks per fit | n per task | order recovered | SHD | TPR | FDR | order recovered (greedy) | SHD (greedy) | TPR (greedy) | FDR (greedy) | cyclic | s per fit |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, cl := range cells {
		name := fmt.Sprint(cl.Group)
		if cl.Group == 1 {
			name = "1 (separate)"
		}
		rec, shd := fmt.Sprintf("%.2f", cl.Recovery), fmt.Sprintf("%.1f", cl.SHD)
		if c.Replicates > 1 {
			rec, shd = fmt.Sprintf("%.2f ± %.2f", cl.Recovery, cl.RecoverySD), fmt.Sprintf("%.1f ± %.1f", cl.SHD, cl.SHDSD)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %d / %d of %d | %.1f |\n", name, cl.N,
			rec, shd, cl.TPR, cl.FDR, cl.RecoveryGreedy, cl.SHDGreedy, cl.TPRGreedy, cl.FDRGreedy, cl.CyclicOrder, cl.Cyclic, cl.Tasks, cl.SecondsEach)
	}
	return b.String()
}

// grid adapts the cells to gonum's heat map: x is the group-size index, y the sample-size index.
type grid struct {
	c     *SweepConfig
	cells []Cell
}

func (g grid) Dims() (int, int) { return len(g.c.Groups), len(g.c.Samples) }
func (g grid) Z(x, y int) float64 {
	return g.cells[x*len(g.c.Samples)+y].Recovery
}
func (g grid) X(x int) float64 { return float64(x) }
func (g grid) Y(y int) float64 { return float64(y) }

type indexTicks []string

func (t indexTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for i, l := range t {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: l})
	}
	return ticks
}

// heatmap draws order-recovery probability (official scoring) over (tasks
// per fit x samples per task) with the values written in the cells, as
// the paper's figure.
func heatmap(path string, c *SweepConfig, cells []Cell) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Order recovery, p = %d, %d tasks", c.Data.P, c.Data.K)
	p.X.Label.Text = "tasks per joint fit (1 = separate)"
	p.Y.Label.Text = "samples per task"
	pal := moreland.SmoothBlueRed().Palette(255)
	hm := plotter.NewHeatMap(grid{c, cells}, pal)
	hm.Min, hm.Max = 0, 1
	p.Add(hm)
	var xs, ys []string
	for _, g := range c.Groups {
		xs = append(xs, fmt.Sprint(g))
	}
	for _, n := range c.Samples {
		ys = append(ys, fmt.Sprint(n))
	}
	p.X.Tick.Marker, p.Y.Tick.Marker = indexTicks(xs), indexTicks(ys)
	var xys plotter.XYs
	var labels []string
	for x := range c.Groups {
		for y := range c.Samples {
			xys = append(xys, plotter.XY{X: float64(x), Y: float64(y)})
			labels = append(labels, fmt.Sprintf("%.2f", cells[x*len(c.Samples)+y].Recovery))
		}
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Color = color.Black
		l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = -0.5, -0.5
	}
	p.Add(l)
	p.X.Min, p.X.Max = -0.5, float64(len(c.Groups))-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(len(c.Samples))-0.5
	return p.Save(vg.Length(110+70*len(c.Groups))*vg.Points(1), vg.Length(90+60*len(c.Samples))*vg.Points(1), path)
}
