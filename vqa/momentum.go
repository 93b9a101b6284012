package vqa

import (
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Momentum pairs each online parameter with its momentum copy (ALBEF's
// model_pairs): the copy of module "name" is registered as "name_m" with
// the same inner names. The copies are frozen, start equal to the online
// weights, and follow them as an exponential moving average.
type Momentum struct {
	Online, Target []*ts.Tensor
	Names          []string // the online parameters' names, for errors and tests
	M              float64  // the momentum, 0.995
}

// NewMomentum pairs the parameters under each module prefix with those
// under prefix+"_m", freezes the copies and copies the online values
// into them (copy_params). Every online parameter needs its copy, of the
// same shape.
func NewMomentum(p torchmods.Path, m float64, modules ...string) (*Momentum, error) {
	if !(m >= 0 && m <= 1) {
		return nil, fmt.Errorf("vqa: momentum %v outside [0, 1]", m)
	}
	store := p.Store()
	mo := &Momentum{M: m}
	for _, mod := range modules {
		on := p.Sub(mod).Prefix() + "."
		off := p.Sub(mod+"_m").Prefix() + "."
		n := 0
		for _, prm := range store.Params() {
			if !strings.HasPrefix(prm.Name, on) {
				continue
			}
			target, ok := store.Param(off + strings.TrimPrefix(prm.Name, on))
			if !ok {
				return nil, fmt.Errorf("vqa: %s has no momentum copy %s", prm.Name, off+strings.TrimPrefix(prm.Name, on))
			}
			if a, b := prm.Tensor.MustSize(), target.Tensor.MustSize(); fmt.Sprint(a) != fmt.Sprint(b) {
				return nil, fmt.Errorf("vqa: %s %v and its momentum copy %v differ in shape", prm.Name, a, b)
			}
			mo.Online, mo.Target, mo.Names = append(mo.Online, prm.Tensor), append(mo.Target, target.Tensor), append(mo.Names, prm.Name)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("vqa: no parameters under %s to pair with a momentum copy", strings.TrimSuffix(on, "."))
		}
		store.Freeze(off)
	}
	mo.Copy()
	return mo, nil
}

// Copy sets every copy to its online parameter (copy_params; also after
// loading weights into the online modules only).
func (m *Momentum) Copy() {
	ts.NoGrad(func() {
		for i, t := range m.Target {
			t.Copy_(m.Online[i])
		}
	})
}

// Update moves every copy towards its parameter: m·copy + (1-m)·online
// (_momentum_update).
func (m *Momentum) Update() {
	ts.NoGrad(func() {
		for i, t := range m.Target {
			m.update(t, m.Online[i])
		}
	})
}

// update moves one copy, in a scope of its own so that the temporary
// (1-m)·online is freed at once, not one per parameter (a whole model's
// worth) at the end of the caller's step.
func (m *Momentum) update(target, online *ts.Tensor) {
	sc := ts.NewScope()
	defer sc.Close()
	target.MustMulScalar_(ts.FloatScalar(m.M))
	target.MustAdd_(online.MustMulScalar(ts.FloatScalar(1-m.M), false))
}

// Queue holds the momentum features of past batches, the extra negatives
// of the contrastive loss: image_queue and text_queue [dim, size], one
// unit column per feature, and queue_ptr, the column the next batch is
// written at. They are buffers, saved in checkpoints.
type Queue struct {
	Image, Text, Ptr *ts.Tensor
	Size             int64
}

// NewQueue registers the queues under p, filled with random unit columns
// (the official randn, normalised), and the pointer at 0.
func NewQueue(p torchmods.Path, dim, size int64) *Queue {
	unit := func(shape []int64, dev gotch.Device) *ts.Tensor {
		return Normalize(ts.MustRandn(shape, gotch.Float, dev), 0)
	}
	return &Queue{
		Image: p.NewBuffer("image_queue", []int64{dim, size}, unit),
		Text:  p.NewBuffer("text_queue", []int64{dim, size}, unit),
		Ptr:   p.NewBuffer("queue_ptr", []int64{1}, func(s []int64, dev gotch.Device) *ts.Tensor { return ts.MustZeros(s, gotch.Int64, dev) }),
		Size:  size,
	}
}

// Enqueue writes a batch's momentum features [B, dim] into the columns
// from the pointer on and advances it, wrapping at the end
// (_dequeue_and_enqueue). As the official code, it requires the batch to
// divide the queue size, so that a batch never straddles the end.
func (q *Queue) Enqueue(image, text *ts.Tensor) {
	b := image.MustSize()[0]
	if q.Size%b != 0 {
		panic(fmt.Errorf("vqa: queue_size %d is not a multiple of the batch %d (the official code asserts it too)", q.Size, b))
	}
	ts.NoGrad(func() {
		ptr := q.Ptr.Int64Values()[0]
		q.Image.MustNarrow(1, ptr, b, false).Copy_(image.MustT(false))
		q.Text.MustNarrow(1, ptr, b, false).Copy_(text.MustT(false))
		q.Ptr.MustFill_(ts.IntScalar((ptr + b) % q.Size))
	})
}

// Normalize is F.normalize(x, dim): x over its L2 norm along dim, the
// norm floored at 1e-12.
func Normalize(x *ts.Tensor, dim int64) *ts.Tensor {
	return x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{dim}, true, false).MustClampMin(ts.FloatScalar(1e-12), true), false)
}
