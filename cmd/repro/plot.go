package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

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
			written, err := plotRun(args[0])
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

// plotRun writes one PNG per numeric metric and returns their paths.
func plotRun(run string) ([]string, error) {
	path := filepath.Join(run, "metrics.jsonl")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	series := map[string]plotter.XYs{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		step, ok := row["step"].(float64)
		if !ok {
			return nil, fmt.Errorf("%s:%d: no step", path, line)
		}
		for k, v := range row {
			if x, ok := v.(float64); ok && k != "step" && k != "epoch" {
				series[k] = append(series[k], plotter.XY{X: step, Y: x})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
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
