package audio

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// WriteSpectrogramPNG draws a's log-mel spectrogram (the channels' mean;
// 128 bands, windows of about 46 ms with a quarter-window hop) as a PNG,
// low frequencies at the bottom, over the top 80 dB in a perceptually
// ordered colour map (dark quiet, bright loud), so that what a vamp kept
// and what it made can be seen side by side.
func WriteSpectrogramPNG(path string, a *Audio) error {
	if a.Len() == 0 {
		return fmt.Errorf("spectrogram %s: no samples", path)
	}
	win := 1
	for win < int(0.046*float64(a.SampleRate)) {
		win *= 2
	}
	if a.Len() <= win/2 {
		return fmt.Errorf("spectrogram %s: %d samples, fewer than half a %d-sample window", path, a.Len(), win)
	}
	const mels = 128
	var db []float64
	var frames int
	err := torchmods.Try(func() {
		s := ts.NewScope()
		defer s.Close()
		ts.NoGrad(func() {
			m := MelSpectrogram(AudioTensor(a.Mono()), a.SampleRate, mels, win, win/4, 0, 0) // [1, 1, M, N]
			frames = int(m.MustSize()[3])
			db = m.MustClampMin(ts.FloatScalar(1e-5), true).MustLog10(true).MustMulScalar(ts.FloatScalar(20), true).MustView([]int64{-1}, true).Float64Values()
		})
	})
	if err != nil {
		return fmt.Errorf("spectrogram %s: %w", path, err)
	}
	top := math.Inf(-1)
	for _, v := range db {
		top = max(top, v)
	}
	img := image.NewRGBA(image.Rect(0, 0, frames, 2*mels))
	for b := 0; b < mels; b++ {
		for f := 0; f < frames; f++ {
			c := colormap((db[b*frames+f] - (top - 80)) / 80)
			img.Set(f, 2*(mels-1-b), c)
			img.Set(f, 2*(mels-1-b)+1, c)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(out, img); err != nil {
		out.Close()
		return fmt.Errorf("spectrogram %s: %w", path, err)
	}
	return out.Close()
}

// colormap maps [0, 1] (clamped) through five anchors of matplotlib's
// magma, linearly between them.
func colormap(x float64) color.RGBA {
	anchors := [][3]float64{{0, 0, 4}, {81, 18, 124}, {183, 55, 121}, {252, 137, 97}, {252, 253, 191}}
	x = math.Max(0, math.Min(1, x)) * float64(len(anchors)-1)
	i := min(int(x), len(anchors)-2)
	t := x - float64(i)
	var c [3]uint8
	for k := range c {
		c[k] = uint8(math.Round(anchors[i][k]*(1-t) + anchors[i+1][k]*t))
	}
	return color.RGBA{c[0], c[1], c[2], 255}
}
