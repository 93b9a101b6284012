package train

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// AdamW is PyTorch's torch.optim.AdamW (decoupled weight decay, bias
// correction), written over tensors so its state is ours to checkpoint.
// Parameters in the no-decay group (biases, norms, 1-D) skip weight decay.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// LRScale multiplies the learning rate per parameter name (layer-wise
	// decay, see ViTLayerDecay); missing names use 1.
	LRScale map[string]float64
	groups  []adamGroup
	step    int64
	origin  int64 // the step bias correction counts from (Restart)
}

type adamGroup struct {
	params []*torchmods.Param
	decay  bool
	m, v   []*ts.Tensor
}

// NewAdamW sets up AdamW over the store's trainable parameters.
func NewAdamW(store *torchmods.Store, beta1, beta2, eps, weightDecay float64) *AdamW {
	decay, noDecay := store.Groups()
	return newAdamW([]adamGroup{{params: decay, decay: true}, {params: noDecay}}, beta1, beta2, eps, weightDecay)
}

// NewAdamWDecayAll is AdamW with weight decay on every trainable
// parameter, biases and norms included: torch.optim.AdamW(
// model.parameters(), weight_decay=...), as ALBEF's and MUMC's scripts
// build it, where NewAdamW follows the usual no-decay group.
func NewAdamWDecayAll(store *torchmods.Store, beta1, beta2, eps, weightDecay float64) *AdamW {
	decay, noDecay := store.Groups()
	all := map[*torchmods.Param]bool{}
	for _, p := range append(decay, noDecay...) {
		all[p] = true
	}
	var params []*torchmods.Param
	for _, p := range store.Params() { // creation order, as model.parameters()
		if all[p] {
			params = append(params, p)
		}
	}
	return newAdamW([]adamGroup{{params: params, decay: true}}, beta1, beta2, eps, weightDecay)
}

func newAdamW(groups []adamGroup, beta1, beta2, eps, weightDecay float64) *AdamW {
	a := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay}
	for _, g := range groups {
		for _, p := range g.params {
			var m, v *ts.Tensor
			ts.NoGrad(func() {
				m = p.Tensor.MustZerosLike(false)
				v = p.Tensor.MustZerosLike(false)
			})
			ts.Persist(m)
			ts.Persist(v)
			g.m, g.v = append(g.m, m), append(g.v, v)
		}
		a.groups = append(a.groups, g)
	}
	return a
}

// Steps is the number of updates made.
func (a *AdamW) Steps() int64 { return a.step }

// Step updates every parameter from its gradient with learning rate lr,
// then zeroes the gradients. Call it inside the step's scope.
func (a *AdamW) Step(lr float64) error {
	a.step++
	bc1 := 1 - math.Pow(a.Beta1, float64(a.step-a.origin))
	bc2 := 1 - math.Pow(a.Beta2, float64(a.step-a.origin))
	return torchmods.Try(func() {
		ts.NoGrad(func() {
			for _, g := range a.groups {
				for i, p := range g.params {
					// Each parameter's temporaries (four of its size) are
					// freed before the next parameter's: in the caller's
					// step scope they would pile up to four copies of the
					// model (1.8 GB for ViT-B MAE) until the step ends.
					func() {
						sc := ts.NewScope()
						defer sc.Close() // on a panic too, so the scopes stay nested
						grad := p.Tensor.MustGrad(false)
						if !grad.MustDefined() {
							return
						}
						lr := lr * scaleOf(a.LRScale, p.Name)
						if g.decay && a.WeightDecay != 0 {
							p.Tensor.MustMulScalar_(ts.FloatScalar(1 - lr*a.WeightDecay))
						}
						m, v := g.m[i], g.v[i]
						m.MustMulScalar_(ts.FloatScalar(a.Beta1))
						m.MustAdd_(grad.MustMulScalar(ts.FloatScalar(1-a.Beta1), false))
						v.MustMulScalar_(ts.FloatScalar(a.Beta2))
						v.MustAddcmul_(grad.MustMulScalar(ts.FloatScalar(1-a.Beta2), false), grad)
						denom := v.MustSqrt(false).MustDivScalar(ts.FloatScalar(math.Sqrt(bc2)), true).MustAddScalar(ts.FloatScalar(a.Eps), true)
						p.Tensor.MustAddcdiv_(m.MustMulScalar(ts.FloatScalar(-lr/bc1), false), denom)
						grad.MustZero_()
					}()
				}
			}
		})
	})
}

// Restart zeroes the moments and restarts bias correction: from here on
// the optimizer updates as a newly made torch.optim.AdamW would, while
// Steps keeps counting. For recipes that make a fresh optimizer mid-run
// (CAP's pruning rounds each call trainer.train() anew).
func (a *AdamW) Restart() error {
	a.origin = a.step
	return torchmods.Try(func() {
		ts.NoGrad(func() {
			for _, g := range a.groups {
				for i := range g.params {
					g.m[i].MustZero_()
					g.v[i].MustZero_()
				}
			}
		})
	})
}

// Origin is the step count bias correction counts from: 0, or that of
// the last Restart. A task that restarts its optimizer checkpoints it
// and gives it back to SetOrigin when resuming.
func (a *AdamW) Origin() int64 { return a.origin }

// SetOrigin sets the step bias correction counts from without touching
// the moments: after resuming a run whose optimizer was restarted (a
// checkpoint holds the moments and the step count, not the origin). The
// step is the optimizer's own count (Steps), which fp16's skipped steps
// do not advance, not the loop's.
func (a *AdamW) SetOrigin(step int64) { a.origin = step }

// State lists AdamW's moment tensors by name ("m.<param>", "v.<param>").
func (a *AdamW) State() ([]string, []*ts.Tensor) {
	var names []string
	var tensors []*ts.Tensor
	for _, g := range a.groups {
		for i, p := range g.params {
			names = append(names, "m."+p.Name, "v."+p.Name)
			tensors = append(tensors, g.m[i], g.v[i])
		}
	}
	return names, tensors
}

// LoadState restores the moments saved by state and the step count.
func (a *AdamW) LoadState(saved map[string]*ts.Tensor, step int64) error {
	names, tensors := a.State()
	for _, n := range names {
		if _, ok := saved[n]; !ok {
			return fmt.Errorf("optimizer state has no %s", n)
		}
	}
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			for i, n := range names {
				tensors[i].Copy_(saved[n])
			}
		})
	})
	if err != nil {
		return err
	}
	a.step = step
	return nil
}

func scaleOf(scales map[string]float64, name string) float64 {
	if s, ok := scales[name]; ok {
		return s
	}
	return 1
}
