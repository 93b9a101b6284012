package cocoop

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
)

// labelledBatch is a batch of transformed images and their labels.
type labelledBatch struct {
	images []float32
	labels []int64
}

// scoreItems is Dassl's test(): the items' test-transformed images, batch
// at a time (decoded on workers goroutines), through score (logits [B,
// n_cls]) without gradients; it returns the accuracy in % (Dassl's
// Classification evaluator: correct / total * 100) and the item count.
func scoreItems(items []Datum, tf Transform, batch, workers int, dev gotch.Device, score func(images *ts.Tensor) *ts.Tensor) (float64, int, error) {
	if len(items) == 0 {
		return 0, 0, fmt.Errorf("evaluation: no test items")
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(items), Batch: batch, Workers: workers},
		func(b data.Batch) (labelledBatch, error) {
			var out labelledBatch
			for _, i := range b.Indices {
				img, err := LoadImage(items[i])
				if err != nil {
					return out, err
				}
				x, err := tf.Test(img)
				if err != nil {
					return out, fmt.Errorf("%s: %w", items[i].ImPath, err)
				}
				out.images = append(out.images, x...)
				out.labels = append(out.labels, int64(items[i].Label))
			}
			return out, nil
		})
	if err != nil {
		return 0, 0, err
	}
	defer loader.Close()
	var correct, total int64
	r := int64(tf.Size)
	for range loader.PerEpoch() {
		b, err := loader.Next()
		if err != nil {
			return 0, 0, err
		}
		err = func() error {
			sc := ts.NewScope()
			defer sc.Close()
			return torchmods.Try(func() {
				ts.NoGrad(func() {
					n := int64(len(b.labels))
					logits := score(torchmods.FromSlice(b.images, []int64{n, 3, r, r}, dev))
					correct += torchmods.CountCorrect(logits, torchmods.FromSlice(b.labels, []int64{n}, dev))
					total += n
				})
			})
		}()
		if err != nil {
			return 0, 0, err
		}
	}
	return 100 * float64(correct) / float64(total), int(total), nil
}

// harmonicMean is H = 2·base·new / (base + new), the paper's summary of
// the base-to-new trade-off (0 when both are 0).
func harmonicMean(base, nw float64) float64 {
	if base+nw == 0 {
		return 0
	}
	return 2 * base * nw / (base + nw)
}
