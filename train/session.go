package train

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
)

// Session is what every task's run shares: the device, the parameter store,
// the run directory with its metrics.jsonl, resuming, checkpoints, mixed
// precision and gradient accumulation, all as the [trainer] table says. A
// task builds its model in Store, then calls Train with its step function.
type Session struct {
	Cfg    TrainerConfig
	Out    string
	Device gotch.Device
	Store  *torchmods.Store
	W      io.Writer // progress and messages

	resume  bool
	metrics *os.File
	start   time.Time
}

// NewSession seeds libtorch, picks the device and creates the run
// directory. With resume the run continues in out; call Resume once the
// model and optimizer exist.
func NewSession(cfg TrainerConfig, out string, resume bool, w io.Writer) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dev, err := DeviceOf(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	ts.ManualSeed(cfg.Seed)
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resume {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	metrics, err := os.OpenFile(filepath.Join(out, "metrics.jsonl"), flags, 0o644)
	if err != nil {
		return nil, err
	}
	return &Session{Cfg: cfg, Out: out, Device: dev, Store: torchmods.NewStore(dev), W: w, resume: resume, metrics: metrics, start: time.Now()}, nil
}

// DeviceOf is the device trainer.device names, checked to exist.
func DeviceOf(cfg TrainerConfig) (gotch.Device, error) {
	if cfg.Device != "cuda" {
		return gotch.CPU, nil
	}
	if !gotch.CUDA.IsAvailable() {
		return gotch.CPU, fmt.Errorf("trainer.device is cuda, but libtorch sees no CUDA device (see repro info)")
	}
	return gotch.CudaBuilder(0), nil
}

// Close frees the parameters and closes the metrics file.
func (s *Session) Close() {
	s.Store.Drop()
	s.metrics.Close()
}

// Resume restores the newest checkpoint into the store, opt and taskState
// (a pointer the task's state is decoded into) when the session resumes,
// and returns the step to continue from (0 for a fresh run).
func (s *Session) Resume(opt Optimizer, taskState any) (int64, error) {
	if !s.resume {
		return 0, nil
	}
	ck, err := LatestCheckpoint(s.Out)
	if err != nil {
		return 0, err
	}
	if ck == "" {
		return 0, fmt.Errorf("nothing to resume: %s has no checkpoint", s.Out)
	}
	step, err := LoadCheckpoint(ck, s.Store, opt, taskState)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(s.W, "resuming from %s at step %d\n", ck, step)
	return step, nil
}

// Restorer is a data loader that can move to a checkpointed position.
type Restorer interface {
	Restore(data.LoaderState) error
}

// ResumeLoader is Resume for tasks whose only state is their data
// loader's position: it restores the checkpoint and moves loader there.
func (s *Session) ResumeLoader(opt Optimizer, loader Restorer) (int64, error) {
	var pos data.LoaderState
	start, err := s.Resume(opt, &pos)
	if err != nil || start == 0 {
		return start, err
	}
	return start, loader.Restore(pos)
}

// Forward runs fn under the configured precision: as is for "fp32", under
// libtorch's autocast to bfloat16 for "bf16" (parameters, gradients and
// optimizer state stay float32, as with torch.autocast).
func (s *Session) Forward(fn func()) error {
	if s.Cfg.Precision != "bf16" {
		fn()
		return nil
	}
	return ts.Autocast(s.Device.IsCuda(), gotch.BFloat16, fn)
}

// Backward accumulates gradients over trainer.accumulate micro-batches:
// loss(i) builds micro-batch i's mean loss (under Forward's precision), and
// its backward pass runs scaled by 1/accumulate, so the gradients are those
// of the mean over all micro-batches. Each micro-batch's tensors are freed
// before the next. It returns the mean loss.
func (s *Session) Backward(loss func(micro int) (*ts.Tensor, error)) (float64, error) {
	n := max(s.Cfg.Accumulate, 1)
	var sum float64
	for i := range int(n) {
		sc := ts.NewScope()
		err := torchmods.Try(func() {
			var l *ts.Tensor
			var lerr error
			if err := s.Forward(func() { l, lerr = loss(i) }); err != nil {
				panic(err)
			}
			if lerr != nil {
				panic(lerr)
			}
			sum += l.Float64Values()[0]
			if n > 1 {
				l = l.MustMulScalar(ts.FloatScalar(1/float64(n)), false)
			}
			if err := l.Backward(); err != nil {
				panic(err)
			}
		})
		sc.Close()
		if err != nil {
			return 0, err
		}
	}
	return sum / float64(n), nil
}

// Update finishes an optimizer step after Backward: it clips the
// gradients' global norm to clip (0 for none), then steps opt at lr, and
// returns what the step reports.
func (s *Session) Update(opt Optimizer, loss, lr, clip float64) (StepResult, error) {
	if clip > 0 {
		if _, err := ClipGradNorm(s.Store, clip); err != nil {
			return StepResult{}, err
		}
	}
	return StepResult{Loss: loss, LR: lr}, opt.Step(lr)
}

// Plan is one training run for Session.Train.
type Plan struct {
	Steps    int64 // optimizer steps in the whole run
	PerEpoch int64 // optimizer steps per epoch, for the metrics' epoch column
	Start    int64 // the step to start from (Resume's answer)
	Opt      Optimizer
	// Step does one optimizer step: typically Backward, then Opt.Step.
	Step func(step int64) (StepResult, error)
	// State is the task's state to checkpoint (its data loader position);
	// Resume decodes it back.
	State func() any
	// Eval, if set, runs every trainer.eval_every steps and at the end; its
	// metrics join that step's row in metrics.jsonl.
	Eval func(step int64) (map[string]float64, error)
}

// Train runs the plan's steps in a Loop with the standard hooks: "metrics"
// (a metrics.jsonl row every log_every steps: step, epoch, lr, the
// interval's mean loss, steps/s), "eval", "progress" and "checkpoint".
func (s *Session) Train(p Plan) error {
	var lossSum float64
	var lossN int
	loop := &Loop{Steps: p.Steps, Step: func(step int64) (StepResult, error) {
		r, err := p.Step(step)
		lossSum, lossN = lossSum+r.Loss, lossN+1
		return r, err
	}}
	started := time.Now()
	row := func(step int64, r StepResult) map[string]any {
		return map[string]any{"step": step + 1, "epoch": float64(step+1) / float64(max(p.PerEpoch, 1)), "lr": r.LR}
	}
	loop.Add(Hook{Name: "metrics", Every: s.Cfg.LogEvery, Fn: func(step int64, r StepResult) error {
		m := row(step, r)
		m["loss"] = lossSum / float64(max(lossN, 1))
		m["steps_per_s"] = float64(step+1-p.Start) / time.Since(started).Seconds()
		lossSum, lossN = 0, 0
		return s.Log(m)
	}})
	if p.Eval != nil {
		every := s.Cfg.EvalEvery
		if every == 0 {
			every = p.Steps // at the end only
		}
		loop.Add(Hook{Name: "eval", Every: every, Fn: func(step int64, r StepResult) error {
			sc := ts.NewScope()
			defer sc.Close()
			var metrics map[string]float64
			var err error
			ts.NoGrad(func() { err = torchmods.Try(func() { metrics, err = p.Eval(step) }) })
			if err != nil {
				return err
			}
			m := row(step, r)
			for k, v := range metrics {
				m[k] = v
			}
			fmt.Fprintf(s.W, "eval at step %d: %v\n", step+1, metrics)
			return s.Log(m)
		}})
	}
	loop.Add(ProgressHook(s.W, s.Cfg.LogEvery, p.Steps))
	loop.Add(Hook{Name: "checkpoint", Every: s.Cfg.CheckpointEvery, Fn: func(step int64, r StepResult) error {
		var st any
		if p.State != nil {
			st = p.State()
		}
		return SaveCheckpoint(s.Out, step+1, s.Store, p.Opt, st, s.Cfg.KeepCheckpoints)
	}})
	return loop.Run(p.Start)
}

// Log appends one row to metrics.jsonl.
func (s *Session) Log(row map[string]any) error {
	return json.NewEncoder(s.metrics).Encode(row)
}

// WriteResults writes v as the run's results.json.
func (s *Session) WriteResults(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Out, "results.json"), append(b, '\n'), 0o644)
}

// Elapsed is the time since the session started.
func (s *Session) Elapsed() time.Duration { return time.Since(s.start) }
