package data

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
)

// RandomErasing is timm's RandomErasing (timm 0.3.2,
// timm/data/random_erasing.py) as create_transform appends it after
// Normalize: with probability Prob, Count boxes (drawn from
// MinCount..MaxCount) are each tried up to ten times at a random area
// (MinArea..MaxArea of the image, divided by the count) and log-uniform
// aspect ratio, and the first box that fits strictly inside the image is
// overwritten: with normal noise per pixel ("pixel", MAE's --remode), one
// normal value per channel ("rand") or zeros ("const"). It works on the
// normalised image, so the noise has the data's normalised scale.
type RandomErasing struct {
	Prob                 float64
	Mode                 string // "pixel", "rand" or "const"
	MinCount, MaxCount   int
	MinArea, MaxArea     float64
	MinAspect, MaxAspect float64
}

// NewRandomErasing is timm's RandomErasing(prob, mode=mode,
// max_count=count) as create_transform builds it from --reprob, --remode
// and --recount: area 0.02 to 1/3, aspect 0.3 to 1/0.3, 1 to count boxes.
func NewRandomErasing(prob float64, mode string, count int) (*RandomErasing, error) {
	switch {
	case prob < 0 || prob > 1:
		return nil, fmt.Errorf("random erasing probability must be in [0, 1], got %v", prob)
	case mode != "pixel" && mode != "rand" && mode != "const":
		return nil, fmt.Errorf(`random erasing mode must be "pixel", "rand" or "const", got %q`, mode)
	case count < 1:
		return nil, fmt.Errorf("random erasing count must be at least 1, got %d", count)
	}
	return &RandomErasing{Prob: prob, Mode: mode, MinCount: 1, MaxCount: count, MinArea: 0.02, MaxArea: 1.0 / 3, MinAspect: 0.3, MaxAspect: 1 / 0.3}, nil
}

// Apply erases boxes of the normalised CHW image x (chans x h x w) in
// place, drawing from rng, and returns the boxes it erased.
func (e *RandomErasing) Apply(x []float32, chans, h, w int, rng *rand.Rand) []image.Rectangle {
	if rng.Float64() > e.Prob {
		return nil
	}
	count := e.MinCount
	if e.MaxCount > e.MinCount {
		count += rng.IntN(e.MaxCount - e.MinCount + 1)
	}
	var boxes []image.Rectangle
	for range count {
		for range 10 {
			bh, bw := e.boxSize(h, w, count, rng.Float64(), rng.Float64())
			if bw < w && bh < h {
				top, left := rng.IntN(h-bh+1), rng.IntN(w-bw+1)
				e.fill(x, chans, h, w, top, left, bh, bw, rng)
				boxes = append(boxes, image.Rect(left, top, left+bw, top+bh))
				break
			}
		}
	}
	return boxes
}

// boxSize is a try's box for uniform draws uArea and uAspect:
// random.uniform(a, b) is a + (b-a)*u, and the sides are rounded half to
// even, as Python's round.
func (e *RandomErasing) boxSize(h, w, count int, uArea, uAspect float64) (bh, bw int) {
	target := (e.MinArea + float64((e.MaxArea-e.MinArea)*uArea)) * float64(h*w) / float64(count)
	la, lb := math.Log(e.MinAspect), math.Log(e.MaxAspect)
	aspect := math.Exp(la + float64((lb-la)*uAspect))
	return int(math.RoundToEven(math.Sqrt(target * aspect))), int(math.RoundToEven(math.Sqrt(target / aspect)))
}

// fill overwrites the box in every channel, in timm's C, H, W order of draws.
func (e *RandomErasing) fill(x []float32, chans, h, w, top, left, bh, bw int, rng *rand.Rand) {
	for c := range chans {
		var v float32
		if e.Mode == "rand" {
			v = float32(rng.NormFloat64())
		}
		for y := top; y < top+bh; y++ {
			row := x[c*h*w+y*w:]
			for i := left; i < left+bw; i++ {
				if e.Mode == "pixel" {
					v = float32(rng.NormFloat64())
				}
				row[i] = v
			}
		}
	}
}
