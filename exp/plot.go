package exp

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// readMetrics reads a run's metrics.jsonl as metric -> step -> value; a
// step logged twice (rows logged again after a resume) keeps the last.
func readMetrics(dir string) (map[string]map[float64]float64, error) {
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]map[float64]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var row map[string]any
		if json.Unmarshal(sc.Bytes(), &row) != nil {
			continue // a torn last line of a killed run
		}
		step, ok := row["step"].(float64)
		if !ok {
			continue
		}
		for k, v := range row {
			x, ok := v.(float64)
			if !ok || k == "step" || k == "epoch" || math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
			if out[k] == nil {
				out[k] = map[float64]float64{}
			}
			out[k][step] = x
		}
	}
	return out, sc.Err()
}

// curve is one row's metric over steps across its seeds.
type curve struct {
	label           string
	steps           []float64
	mean, low, high []float64
}

// Plots draws, for every stage and every metric its runs log (or the
// stage's plots list), one PNG with a curve per row (the mean over seeds)
// and a band across seeds (min to max, or ± one standard deviation with
// band = "std"). It returns the files written.
func (e *Experiment) Plots(dir string) ([]string, error) {
	var written []string
	for _, st := range e.Stages {
		if st.Spec.Plots != nil && len(*st.Spec.Plots) == 0 {
			continue
		}
		// row key -> metric -> seed runs' series
		type rowData struct {
			label  string
			series map[string][]map[float64]float64
		}
		var rows []*rowData
		byKey := map[string]*rowData{}
		metrics := map[string]bool{}
		for _, r := range st.Runs {
			m, err := readMetrics(r.Dir)
			if err != nil {
				continue
			}
			rd := byKey[r.rowKey()]
			if rd == nil {
				label := r.Label(e)
				if label == "" {
					label = st.Name
				}
				if r.Cond != nil && r.Cond.Baseline {
					label += " (baseline)"
				}
				rd = &rowData{label: label, series: map[string][]map[float64]float64{}}
				byKey[r.rowKey()] = rd
				rows = append(rows, rd)
			}
			for k, s := range m {
				rd.series[k] = append(rd.series[k], s)
				metrics[k] = true
			}
		}
		var names []string
		if st.Spec.Plots != nil {
			names = *st.Spec.Plots
		} else {
			for k := range metrics {
				names = append(names, k)
			}
			sort.Strings(names)
		}
		for _, k := range names {
			var curves []curve
			for _, rd := range rows {
				if c, ok := band(rd.label, rd.series[k], e.Band); ok {
					curves = append(curves, c)
				}
			}
			if len(curves) == 0 {
				continue
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return written, err
			}
			path := filepath.Join(dir, st.Name+"."+k+".png")
			title := fmt.Sprintf("%s: %s", st.Name, k)
			if len(e.Seeds) > 1 {
				what := "min to max"
				if e.Band == "std" {
					what = "± 1 std"
				}
				title += fmt.Sprintf(" (mean over seeds, band %s)", what)
			}
			if err := drawCurves(path, title, k, curves); err != nil {
				return written, fmt.Errorf("%s: %w", path, err)
			}
			written = append(written, path)
		}
	}
	return written, nil
}

// band combines the seeds' series of one row: at every step any seed
// logged, the mean and the band over the seeds that logged it.
func band(label string, series []map[float64]float64, kind string) (curve, bool) {
	c := curve{label: label}
	steps := map[float64]bool{}
	for _, s := range series {
		for x := range s {
			steps[x] = true
		}
	}
	if len(steps) == 0 {
		return c, false
	}
	for x := range steps {
		c.steps = append(c.steps, x)
	}
	sort.Float64s(c.steps)
	for _, x := range c.steps {
		var vals []float64
		for _, s := range series {
			if v, ok := s[x]; ok {
				vals = append(vals, v)
			}
		}
		var sum float64
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, v := range vals {
			sum += v
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		mean := sum / float64(len(vals))
		if kind == "std" {
			var ss float64
			for _, v := range vals {
				ss += (v - mean) * (v - mean)
			}
			sd := 0.0
			if len(vals) > 1 {
				sd = math.Sqrt(ss / float64(len(vals)-1))
			}
			lo, hi = mean-sd, mean+sd
		}
		c.mean, c.low, c.high = append(c.mean, mean), append(c.low, lo), append(c.high, hi)
	}
	return c, true
}

func drawCurves(path, title, yLabel string, curves []curve) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for i, c := range curves {
		col := plotutil.Color(i)
		if len(c.steps) > 1 {
			var poly plotter.XYs
			for j, x := range c.steps {
				poly = append(poly, plotter.XY{X: x, Y: c.high[j]})
			}
			for j := len(c.steps) - 1; j >= 0; j-- {
				poly = append(poly, plotter.XY{X: c.steps[j], Y: c.low[j]})
			}
			bandPoly, err := plotter.NewPolygon(poly)
			if err != nil {
				return err
			}
			r, g, b, _ := col.RGBA()
			bandPoly.Color = color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: 60}
			bandPoly.LineStyle.Width = 0
			p.Add(bandPoly)
		}
		xy := make(plotter.XYs, len(c.steps))
		for j, x := range c.steps {
			xy[j] = plotter.XY{X: x, Y: c.mean[j]}
		}
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		l.Color, l.Width = col, vg.Points(1.5)
		l.Dashes = plotutil.Dashes(i / 7)
		pts.Color, pts.Shape, pts.Radius = col, draw.CircleGlyph{}, vg.Points(1.5)
		p.Add(l)
		if len(c.steps) < 30 {
			p.Add(pts)
		}
		p.Legend.Add(c.label, l)
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
