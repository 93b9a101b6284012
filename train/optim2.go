package train

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Optimizer is what the loop and checkpoints need of an optimizer.
type Optimizer interface {
	Step(lr float64) error // update from the gradients, then zero them
	Steps() int64
	state() ([]string, []*ts.Tensor)
	load(saved map[string]*ts.Tensor, step int64) error
}

var (
	_ Optimizer = (*AdamW)(nil)
	_ Optimizer = (*SGD)(nil)
)

// SGD is torch.optim.SGD with momentum, dampening, Nesterov and (coupled)
// weight decay on the decay group; or, with LARS set, the LARS of MAE's
// linear probe (util/lars.py, from MoCo v3): for parameters of more than
// one dimension the update g + wd·p is scaled by trust·‖p‖/‖update‖, and
// 1-D parameters get neither weight decay nor scaling.
type SGD struct {
	Momentum, Dampening, WeightDecay float64
	Nesterov                         bool
	LARS                             bool
	Trust                            float64            // LARS trust coefficient (MAE: 0.001)
	LRScale                          map[string]float64 // per-parameter learning-rate scale; missing names use 1
	params                           []*torchmods.Param
	decay                            []bool
	buf                              []*ts.Tensor
	step                             int64
}

// NewSGD sets up SGD over the store's trainable parameters.
func NewSGD(store *torchmods.Store, momentum, dampening, weightDecay float64, nesterov bool) *SGD {
	s := &SGD{Momentum: momentum, Dampening: dampening, WeightDecay: weightDecay, Nesterov: nesterov}
	s.init(store)
	return s
}

// NewLARS sets up MAE's LARS (momentum 0.9 and trust 0.001 in its recipe).
func NewLARS(store *torchmods.Store, momentum, weightDecay, trust float64) *SGD {
	s := &SGD{Momentum: momentum, WeightDecay: weightDecay, LARS: true, Trust: trust}
	s.init(store)
	return s
}

func (s *SGD) init(store *torchmods.Store) {
	decay, noDecay := store.Groups()
	for _, p := range decay {
		s.params, s.decay = append(s.params, p), append(s.decay, true)
	}
	for _, p := range noDecay {
		s.params, s.decay = append(s.params, p), append(s.decay, false)
	}
	s.buf = make([]*ts.Tensor, len(s.params))
}

// Steps is the number of updates made.
func (s *SGD) Steps() int64 { return s.step }

// Step applies one update with learning rate lr and zeroes the gradients.
func (s *SGD) Step(lr float64) error {
	s.step++
	return torchmods.Try(func() {
		ts.NoGrad(func() {
			for i, p := range s.params {
				grad := p.Tensor.MustGrad(false)
				if !grad.MustDefined() {
					continue
				}
				d := grad.MustShallowClone()
				multiDim := len(p.Tensor.MustSize()) > 1
				switch {
				case s.LARS && multiDim:
					d = d.MustAdd(p.Tensor.MustMulScalar(ts.FloatScalar(s.WeightDecay), false), true)
					pn := p.Tensor.MustNorm(false).Float64Values()[0]
					un := d.MustNorm(false).Float64Values()[0]
					if pn > 0 && un > 0 {
						d = d.MustMulScalar(ts.FloatScalar(s.Trust*pn/un), true)
					}
				case !s.LARS && s.decay[i] && s.WeightDecay != 0:
					d = d.MustAdd(p.Tensor.MustMulScalar(ts.FloatScalar(s.WeightDecay), false), true)
				}
				if s.Momentum != 0 {
					if s.buf[i] == nil {
						// PyTorch's SGD starts the buffer at the first update itself;
						// MAE's LARS starts from zeros, mu = 0*momentum + dp: the same.
						s.buf[i] = d.MustZerosLike(false)
						s.buf[i].Copy_(d)
						ts.Persist(s.buf[i])
					} else if s.LARS {
						s.buf[i].MustMulScalar_(ts.FloatScalar(s.Momentum))
						s.buf[i].MustAdd_(d)
					} else {
						s.buf[i].MustMulScalar_(ts.FloatScalar(s.Momentum))
						s.buf[i].MustAdd_(d.MustMulScalar(ts.FloatScalar(1-s.Dampening), false))
					}
					if s.Nesterov {
						d = d.MustAdd(s.buf[i].MustMulScalar(ts.FloatScalar(s.Momentum), false), true)
					} else {
						d = s.buf[i].MustShallowClone()
					}
				}
				p.Tensor.MustSub_(d.MustMulScalar(ts.FloatScalar(lr*scaleOf(s.LRScale, p.Name)), true))
				grad.MustZero_()
			}
		})
	})
}

func (s *SGD) state() ([]string, []*ts.Tensor) {
	var names []string
	var tensors []*ts.Tensor
	for i, p := range s.params {
		if s.buf[i] != nil {
			names, tensors = append(names, "momentum."+p.Name), append(tensors, s.buf[i])
		}
	}
	return names, tensors
}

func (s *SGD) load(saved map[string]*ts.Tensor, step int64) error {
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			for i, p := range s.params {
				t, ok := saved["momentum."+p.Name]
				if !ok {
					continue
				}
				if s.buf[i] == nil {
					s.buf[i] = p.Tensor.MustDetach(false).MustZerosLike(true)
					ts.Persist(s.buf[i])
				}
				s.buf[i].Copy_(t)
			}
		})
	})
	s.step = step
	return err
}

// ClipGradNorm scales all gradients so their global L2 norm is at most
// maxNorm, as torch.nn.utils.clip_grad_norm_ (coefficient
// maxNorm/(norm+1e-6), applied only when below 1), and returns the norm
// before clipping.
func ClipGradNorm(store *torchmods.Store, maxNorm float64) (float64, error) {
	var total float64
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			var grads []*ts.Tensor
			for _, p := range store.Params() {
				if g := p.Tensor.MustGrad(false); g.MustDefined() {
					grads = append(grads, g)
				}
			}
			for _, g := range grads {
				n := g.MustNorm(false).Float64Values()[0]
				total += n * n
			}
			total = math.Sqrt(total)
			if coef := maxNorm / (total + 1e-6); coef < 1 {
				for _, g := range grads {
					g.MustMulScalar_(ts.FloatScalar(coef))
				}
			}
		})
	})
	return total, err
}

// NoamSchedule is the schedule of "Attention Is All You Need":
// factor · d_model^-0.5 · min(n^-0.5, n · warmup^-1.5) for the n-th update (n = step+1).
func NoamSchedule(factor float64, dModel, warmup int64) (Schedule, error) {
	if dModel <= 0 || warmup <= 0 {
		return nil, fmt.Errorf("noam schedule: d_model %d and warmup %d must be positive", dModel, warmup)
	}
	return func(step int64) float64 {
		n := float64(step + 1)
		return factor / math.Sqrt(float64(dModel)) * math.Min(1/math.Sqrt(n), n*math.Pow(float64(warmup), -1.5))
	}, nil
}
