package train

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// GradScaler is dynamic loss scaling for trainer.precision = "fp16", as
// torch.cuda.amp.GradScaler with its defaults, which the official MAE code
// uses through NativeScalerWithGradNormCount. float16 has a narrow range:
// small gradients underflow to zero unless the loss, and with it every
// gradient, is first multiplied by a large scale. The scale then has to be
// divided out before clipping and the update, and lowered when it made a
// gradient overflow:
//
//   - ScaleLoss multiplies each micro-batch's loss by the scale before its
//     backward pass;
//   - Unscale, once per optimizer step (after all micro-batches), multiplies
//     every gradient by 1/scale and reports whether all are finite;
//   - a step whose gradients are not all finite is skipped: no optimizer
//     update, no change to the optimizer's state or step count, gradients
//     zeroed (MAE zeroes them after every update step);
//   - Update multiplies the scale by BackoffFactor after a skipped step and
//     by GrowthFactor after GrowthInterval finite steps in a row.
//
// The scale stays a power of two, so scaling and unscaling are exact in
// float32 (short of overflow): unscaled gradients are bit for bit those of
// an unscaled run. Its state (the scale, the count of finite steps since the
// last change, the skipped steps) is task state that checkpoints hold
// (Session.Train registers it as "amp_scaler", MAE's state_dict key), so a
// resumed run scales exactly as the uninterrupted one.
type GradScaler struct {
	GrowthFactor   float64 // the scale's factor after GrowthInterval finite steps (2)
	BackoffFactor  float64 // the scale's factor after a step with inf/NaN gradients (0.5)
	GrowthInterval int64   // finite steps in a row before the scale grows (2000)

	// scale is float32, as GradScaler's _scale tensor, so that its values
	// (and what JSON checkpoints of it hold) are those PyTorch has.
	scale   float32
	tracker int64 // finite steps since the scale last changed (GradScaler's _growth_tracker)
	skipped int64 // optimizer steps skipped over the whole run (ours; PyTorch does not count)
}

// NewGradScaler is torch.cuda.amp.GradScaler() with its defaults:
// init_scale 2^16, growth_factor 2, backoff_factor 0.5, growth_interval 2000.
func NewGradScaler() *GradScaler {
	return &GradScaler{GrowthFactor: 2, BackoffFactor: 0.5, GrowthInterval: 2000, scale: 65536}
}

// Scale is the current loss scale: what the next step's loss is multiplied by.
func (g *GradScaler) Scale() float64 { return float64(g.scale) }

// Skipped is the number of optimizer steps skipped for inf/NaN gradients.
func (g *GradScaler) Skipped() int64 { return g.skipped }

// ScaleLoss returns loss times the scale. A float16 or bfloat16 loss is
// promoted to float32 first, as PyTorch's loss * _scale (a float32 tensor)
// promotes a 0-dim loss, so the scaled loss itself cannot overflow float16.
func (g *GradScaler) ScaleLoss(loss *ts.Tensor) *ts.Tensor {
	if k := loss.DType(); k == gotch.Half || k == gotch.BFloat16 {
		loss = loss.MustTotype(gotch.Float, false)
	}
	return loss.MustMulScalar(ts.FloatScalar(float64(g.scale)), false)
}

// Unscale multiplies the gradient of every parameter of store that has one
// by 1/scale, in place, and reports whether they were all finite, as
// GradScaler.unscale_ (torch._amp_foreach_non_finite_check_and_unscale_,
// which libtorch 1.13 has for CUDA only, so it is written here with plain
// ops: the same float32 products). Call it once per optimizer step, after
// the last micro-batch's backward pass and before clipping: a second call
// would divide the gradients by the scale again. The finiteness is read
// back once for all gradients, so a CUDA step synchronizes once here.
func (g *GradScaler) Unscale(store *torchmods.Store) (finite bool, err error) {
	// 1/scale rounded to float32, as GradScaler's scale.double().reciprocal().float().
	inv := float64(float32(1 / float64(g.scale)))
	err = torchmods.Try(func() {
		ts.NoGrad(func() {
			var ok []*ts.Tensor
			for _, p := range store.Params() {
				grad := p.Tensor.MustGrad(false)
				if !grad.MustDefined() {
					continue
				}
				ok = append(ok, grad.MustIsfinite(false).MustAll(true))
				grad.MustMulScalar_(ts.FloatScalar(inv))
			}
			finite = true
			if len(ok) > 0 {
				finite = ts.MustStack(ok, 0).MustAll(true).Int64Values()[0] != 0
			}
		})
	})
	return finite, err
}

// Update moves the scale after an optimizer step whose gradients were
// finite or not, as torch._amp_update_scale_: a non-finite step multiplies
// it by BackoffFactor (and counts as skipped); the GrowthInterval-th finite
// step in a row multiplies it by GrowthFactor (kept only if finite, as the
// current kernel does).
func (g *GradScaler) Update(finite bool) {
	if !finite {
		g.scale = float32(float64(g.scale) * g.BackoffFactor)
		g.tracker = 0
		g.skipped++
		return
	}
	g.tracker++
	if g.tracker == g.GrowthInterval {
		if grown := float32(float64(g.scale) * g.GrowthFactor); !math.IsInf(float64(grown), 0) && !math.IsNaN(float64(grown)) {
			g.scale = grown
		}
		g.tracker = 0
	}
}

// scalerState is GradScaler's checkpointed state: GradScaler.state_dict's
// keys, and the skipped steps so the run's count survives a resume.
type scalerState struct {
	Scale          float32 `json:"scale"`
	GrowthFactor   float64 `json:"growth_factor"`
	BackoffFactor  float64 `json:"backoff_factor"`
	GrowthInterval int64   `json:"growth_interval"`
	GrowthTracker  int64   `json:"growth_tracker"`
	Skipped        int64   `json:"skipped_steps"`
}

// SaveState makes GradScaler a State: its state is a few numbers in
// state.json (float32 survives JSON exactly).
func (g *GradScaler) SaveState() (any, map[string]*ts.Tensor, error) {
	return scalerState{Scale: g.scale, GrowthFactor: g.GrowthFactor, BackoffFactor: g.BackoffFactor,
		GrowthInterval: g.GrowthInterval, GrowthTracker: g.tracker, Skipped: g.skipped}, nil, nil
}

// LoadState restores what SaveState saved, as GradScaler.load_state_dict
// (the factors and interval included).
func (g *GradScaler) LoadState(raw json.RawMessage, _ map[string]*ts.Tensor) error {
	var st scalerState
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	if !(st.Scale > 0) || math.IsInf(float64(st.Scale), 0) || st.GrowthInterval < 1 || st.GrowthTracker < 0 || st.Skipped < 0 {
		return fmt.Errorf("the checkpoint's loss scaler state is invalid: %s", raw)
	}
	g.scale, g.GrowthFactor, g.BackoffFactor, g.GrowthInterval = st.Scale, st.GrowthFactor, st.BackoffFactor, st.GrowthInterval
	g.tracker, g.skipped = st.GrowthTracker, st.Skipped
	return nil
}
