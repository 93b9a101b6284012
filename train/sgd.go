package train

import (
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

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
	// DecayAll puts the weight decay on every parameter, biases, gains and
	// other 1-D ones included: torch.optim.SGD over model.parameters() in
	// one group, as Dassl (CoOp's trainer) builds it. By default, as in
	// most recipes here, the store's no-decay group is spared.
	DecayAll bool
	params   []*torchmods.Param
	decay    []bool
	buf      []*ts.Tensor
	step     int64
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
				// Each parameter's temporaries are freed before the next
				// parameter's, not at the end of the caller's step scope
				// (the momentum buffers are persistent, so they stay).
				func() {
					sc := ts.NewScope()
					defer sc.Close() // on a panic too, so the scopes stay nested
					grad := p.Tensor.MustGrad(false)
					if !grad.MustDefined() {
						return
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
					case !s.LARS && (s.decay[i] || s.DecayAll) && s.WeightDecay != 0:
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
				}()
			}
		})
	})
}

func (s *SGD) State() ([]string, []*ts.Tensor) {
	var names []string
	var tensors []*ts.Tensor
	for i, p := range s.params {
		if s.buf[i] != nil {
			names, tensors = append(names, "momentum."+p.Name), append(tensors, s.buf[i])
		}
	}
	return names, tensors
}

func (s *SGD) LoadState(saved map[string]*ts.Tensor, step int64) error {
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
