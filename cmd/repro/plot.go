package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/reprolab/repro/internal/cli"
)

func plotCommand() *cli.Command {
	return &cli.Command{
		Name:  "plot",
		Short: "draw a run's metrics as PNG plots",
		Usage: "RUNDIR",
		Long: `plot reads RUNDIR/metrics.jsonl and writes RUNDIR/plots/<metric>.png for
every numeric metric (loss, lr, throughput, evaluation metrics) against the step.`,
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("plot takes one RUNDIR")
			}
			written, err := plotRun(args[0], env.Stderr)
			if err != nil {
				return err
			}
			for _, p := range written {
				fmt.Fprintln(env.Stdout, p)
			}
			return nil
		},
	}
}

// plotRun writes one PNG per numeric metric and returns their paths. A
// last line cut short (a run killed mid-write) is skipped with a warning;
// a bad line anywhere else is an error.
func plotRun(run string, warn io.Writer) ([]string, error) {
	path := filepath.Join(run, "metrics.jsonl")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	series := map[string]plotter.XYs{}
	lines := strings.Split(string(b), "\n")
	for i, text := range lines {
		if strings.TrimSpace(text) == "" {
			continue
		}
		var row map[string]any
		if err := json.Unmarshal([]byte(text), &row); err != nil {
			if i == len(lines)-1 { // no newline after it: torn by a kill
				fmt.Fprintf(warn, "warning: %s:%d: skipping a truncated last line\n", path, i+1)
				continue
			}
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		step, ok := row["step"].(float64)
		if !ok {
			return nil, fmt.Errorf("%s:%d: no step", path, i+1)
		}
		for k, v := range row {
			if x, ok := v.(float64); ok && k != "step" && k != "epoch" {
				series[k] = append(series[k], plotter.XY{X: step, Y: x})
			}
		}
	}
	if len(series) == 0 {
		return nil, fmt.Errorf("%s has no metrics to plot", path)
	}
	dir := filepath.Join(run, "plots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(series))
	for k := range series {
		names = append(names, k)
	}
	sort.Strings(names)
	var written []string
	for _, k := range names {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s (%s)", k, filepath.Base(run))
		p.X.Label.Text = "step"
		p.Y.Label.Text = k
		p.Add(plotter.NewGrid())
		l, err := plotter.NewLine(series[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		p.Add(l)
		out := filepath.Join(dir, k+".png")
		if err := p.Save(6*vg.Inch, 4*vg.Inch, out); err != nil {
			return nil, err
		}
		written = append(written, out)
	}
	return written, nil
}
