package train

import (
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Optimizer is what the loop and checkpoints need of an optimizer. It is
// exported whole so that packages outside train (pruning, meta-learning)
// can bring their own checkpointable optimizers.
type Optimizer interface {
	Step(lr float64) error // update from the gradients, then zero them
	Steps() int64          // updates made so far
	// State lists the optimizer's tensors by unique name, for checkpoints.
	State() (names []string, tensors []*ts.Tensor)
	// LoadState copies saved tensors (named as State names them) into the
	// optimizer's and sets its step count; a missing name is an error.
	LoadState(saved map[string]*ts.Tensor, step int64) error
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
