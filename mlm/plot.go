package mlm

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// linePlot draws one line per named series (points sorted by x) to a PNG.
func linePlot(path, title, xLabel, yLabel string, names []string, series map[string][][2]float64) error {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	p.Legend.Top = true
	i := 0
	for _, name := range names {
		pts := series[name]
		if len(pts) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(pts))
		for k, pt := range pts {
			xy[k] = plotter.XY{X: pt[0], Y: pt[1]}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / 7)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
		i++
	}
	if i == 0 {
		return fmt.Errorf("nothing to plot")
	}
	p.Add(plotter.NewGrid())
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
