package imageclf

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotConfusion draws a confusion matrix (counts [true][predicted]) as a
// PNG: each cell shaded by its share of the true class's images (its row,
// so a class's recall is its diagonal cell) and labelled with its count;
// true classes run down, predictions across.
func PlotConfusion(path string, counts [][]float64, classes []string) error {
	n := len(classes)
	if n == 0 || len(counts) != n {
		return fmt.Errorf("confusion matrix: %d rows for %d classes", len(counts), n)
	}
	g := confusionGrid{share: make([][]float64, n)}
	for i, row := range counts {
		var sum float64
		for _, v := range row {
			sum += v
		}
		g.share[i] = make([]float64, n)
		for j, v := range row {
			if sum > 0 {
				g.share[i][j] = v / sum
			}
		}
	}
	p := plot.New()
	p.Title.Text = "Confusion matrix (shade: share of the true class)"
	p.X.Label.Text, p.Y.Label.Text = "predicted", "true"
	pal := palette.Heat(64, 1)
	rev := make([]color.Color, len(pal.Colors()))
	for i, c := range pal.Colors() {
		rev[len(rev)-1-i] = c // light for 0, dark for 1
	}
	hm := plotter.NewHeatMap(g, customPalette(rev))
	hm.Min, hm.Max = 0, 1
	p.Add(hm)
	var labels plotter.XYLabels
	for i := range n {
		for j := range n {
			labels.XYs = append(labels.XYs, plotter.XY{X: float64(j), Y: float64(n - 1 - i)})
			labels.Labels = append(labels.Labels, fmt.Sprintf("%.0f", counts[i][j]))
		}
	}
	l, err := plotter.NewLabels(labels)
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = -0.5, -0.5
		l.TextStyle[i].Font.Size = vg.Points(7)
	}
	p.Add(l)
	var xt, yt []plot.Tick
	for i, c := range classes {
		xt = append(xt, plot.Tick{Value: float64(i), Label: c})
		yt = append(yt, plot.Tick{Value: float64(n - 1 - i), Label: c})
	}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.ConstantTicks(xt), plot.ConstantTicks(yt)
	p.X.Tick.Label.Rotation, p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = 0.8, -1, -0.5
	side := vg.Length(max(4, 0.5*float64(n)+2)) * vg.Inch
	return p.Save(side, side, path)
}

// confusionGrid is the matrix as gonum's GridXYZ: column j at x = j, row i
// at y = n-1-i (the first class at the top).
type confusionGrid struct{ share [][]float64 }

func (g confusionGrid) Dims() (c, r int)   { return len(g.share), len(g.share) }
func (g confusionGrid) Z(c, r int) float64 { return g.share[len(g.share)-1-r][c] }
func (g confusionGrid) X(c int) float64    { return float64(c) }
func (g confusionGrid) Y(r int) float64    { return float64(r) }

type customPalette []color.Color

func (p customPalette) Colors() []color.Color { return p }
