package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/dist"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/internal/tensorboard"
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
	unlock  func()
	tb      *tensorboard.Writer // nil unless trainer.tensorboard
	stop    atomic.Bool         // set by a signal: checkpoint after this step and stop
	signals bool                // Train stops gracefully on SIGINT and SIGTERM
	scaler  *GradScaler         // loss scaling under fp16, nil otherwise (tests set one on an fp32 session)

	group      *dist.Group   // the data-parallel group, nil for a single process (distributed.go)
	stopAgreed bool          // some rank asked to stop at this step (syncStep)
	commTime   time.Duration // spent averaging gradients, since the last metrics row
}

// NewSession seeds libtorch, picks the device, creates the run directory
// and holds its lock until Close. With resume the run continues in out:
// Train restores the newest checkpoint. Tasks get their session from the
// framework (TaskSpec.Start); NewSession is for tests and Go programs.
func NewSession(cfg TrainerConfig, out string, resume bool, w io.Writer) (*Session, error) {
	lock, err := TryLockRunDir(out)
	if err != nil {
		return nil, err
	}
	s, err := newSession(cfg, out, resume, w, lock, nil)
	if err != nil {
		lock.Unlock()
	}
	return s, err
}

// NewDistSession is NewSession for one rank of a data-parallel run over g
// (see distributed.go): rank 0 takes the run directory and writes it; the
// other ranks write nothing there and only read checkpoints from it when
// resuming. Every rank calls it with the same out. The caller closes g
// after the session.
func NewDistSession(cfg TrainerConfig, out string, resume bool, w io.Writer, g *dist.Group) (*Session, error) {
	if g == nil || g.Rank() != 0 {
		if g == nil {
			return NewSession(cfg, out, resume, w)
		}
		return newSession(cfg, out, resume, w, nil, g)
	}
	lock, err := TryLockRunDir(out)
	if err != nil {
		return nil, err
	}
	s, err := newSession(cfg, out, resume, w, lock, g)
	if err != nil {
		lock.Unlock()
	}
	return s, err
}

// newSession makes the session; with a group, ranks other than 0 get no
// lock and open no file.
func newSession(cfg TrainerConfig, out string, resume bool, w io.Writer, lock *RunDirLock, g *dist.Group) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dev, err := DeviceOf(cfg)
	if err != nil {
		return nil, err
	}
	if g != nil && dev.IsCuda() {
		// The rank's own GPU (LOCAL_RANK's), which NCCL reduces on.
		if !g.Device().IsCuda() {
			return nil, fmt.Errorf("trainer.device is cuda, but the process group's backend is %s, which reduces CPU tensors only (nccl reduces CUDA tensors; repro info says whether this build has it)", g.Backend())
		}
		dev = g.Device()
	}
	ts.ManualSeed(cfg.Seed)
	if g != nil && g.Rank() != 0 {
		data.SetShard(g.Rank(), g.Size())
		s := &Session{Cfg: cfg, Out: out, Device: dev, Store: torchmods.NewStore(dev), W: w, resume: resume, start: time.Now(), unlock: func() {}, group: g}
		if cfg.Precision == "fp16" {
			s.scaler = NewGradScaler()
		}
		return s, nil
	}
	if g != nil {
		data.SetShard(g.Rank(), g.Size())
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resume {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	metrics, err := os.OpenFile(filepath.Join(out, "metrics.jsonl"), flags, 0o644)
	if err != nil {
		return nil, err
	}
	var tb *tensorboard.Writer
	if cfg.TensorBoard {
		if tb, err = tensorboard.NewWriter(out); err != nil {
			metrics.Close()
			return nil, err
		}
	}
	s := &Session{Cfg: cfg, Out: out, Device: dev, Store: torchmods.NewStore(dev), W: w, resume: resume, metrics: metrics, start: time.Now(), unlock: lock.Unlock, tb: tb, group: g}
	if cfg.Precision == "fp16" {
		s.scaler = NewGradScaler()
	}
	return s, nil
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

// Close frees the parameters, closes the metrics file and releases the
// run directory.
func (s *Session) Close() {
	s.Store.Drop()
	if s.group != nil {
		data.SetShard(0, 1)
	}
	if s.metrics != nil {
		s.metrics.Close()
	}
	if s.tb != nil {
		s.tb.Close()
	}
	s.unlock()
}

// Resuming says whether the session continues an earlier run (so a task
// does not, say, load its pre-trained weights over the checkpoint's).
func (s *Session) Resuming() bool { return s.resume }

// Steps works out a run's length in optimizer steps from the loader's
// batches per epoch, trainer.accumulate and trainer.max_steps or
// trainer.epochs: the one rule every task uses. Data too small for one
// optimizer step is an error, never a run of zero steps.
func (s *Session) Steps(batchesPerEpoch int64) (perEpoch, total int64, err error) {
	perEpoch = batchesPerEpoch / s.Cfg.Accumulate
	if perEpoch == 0 {
		return 0, 0, fmt.Errorf("an epoch of the training data makes %d batches, fewer than trainer.accumulate = %d: "+
			"the data is smaller than one optimizer step (data.batch x trainer.accumulate)", batchesPerEpoch, s.Cfg.Accumulate)
	}
	total = s.Cfg.MaxSteps
	if total == 0 {
		total = s.Cfg.Epochs * perEpoch
	}
	return perEpoch, total, nil
}

// Scaler is the session's loss scaler under trainer.precision = "fp16"
// (its scale and skipped steps), nil under fp32 and bf16.
func (s *Session) Scaler() *GradScaler { return s.scaler }

// Forward runs fn under the configured precision: as is for "fp32", under
// libtorch's autocast to bfloat16 for "bf16" and to float16 for "fp16"
// (parameters, gradients and optimizer state stay float32, as with
// torch.autocast). fp16 is CUDA autocast only: libtorch 1.13's CPU autocast
// refuses float16, and Validate refuses fp16 on the CPU before a session
// exists; the check here covers a session whose Cfg was changed after.
func (s *Session) Forward(fn func()) error {
	switch s.Cfg.Precision {
	case "bf16":
		return ts.Autocast(s.Device.IsCuda(), gotch.BFloat16, fn)
	case "fp16":
		if !s.Device.IsCuda() {
			return config.Field("trainer.precision", "fp16 autocast needs CUDA; use bf16 or fp32 on the CPU")
		}
		return ts.Autocast(true, gotch.Half, fn)
	}
	fn()
	return nil
}

// Backward accumulates gradients over trainer.accumulate micro-batches:
// loss(i) builds micro-batch i's mean loss (under Forward's precision), and
// its backward pass runs scaled by 1/accumulate, so the gradients are those
// of the mean over all micro-batches. Each micro-batch's tensors are freed
// before the next. It returns the mean loss.
//
// Under fp16 (a session with a Scaler) each micro-batch's backward pass
// also runs on its loss times the loss scale, as GradScaler.scale(loss)
// .backward(), so the gradients Backward leaves are scaled: Train unscales
// them once per optimizer step (Scaler().Unscale) before clipping and the
// update. The loss it returns is never scaled.
func (s *Session) Backward(loss func(micro int) (*ts.Tensor, error)) (float64, error) {
	n := max(s.Cfg.Accumulate, 1)
	var sum float64
	for i := range int(n) {
		err := func() error {
			sc := ts.NewScope()
			defer sc.Close()
			return torchmods.Try(func() {
				var l *ts.Tensor
				var lerr error
				// The forward pass runs in its own scope, closed before
				// backward: its intermediates' handles go as soon as the
				// loss exists, and autograd keeps only what backward
				// needs, as in PyTorch (about 6% off the ViT-B MAE peak).
				ferr := func() error {
					fwd := ts.NewScope()
					defer fwd.Close()
					err := s.Forward(func() { l, lerr = loss(i) })
					fwd.Keep(l)
					return err
				}()
				if ferr != nil {
					panic(ferr)
				}
				if lerr != nil {
					panic(lerr)
				}
				if l == nil {
					panic(fmt.Errorf("the task's loss function returned no tensor for micro-batch %d", i))
				}
				sum += l.Float64Values()[0]
				if n > 1 {
					l = l.MustMulScalar(ts.FloatScalar(1/float64(n)), false)
				}
				if s.scaler != nil {
					// After the 1/n, as MAE's loss /= accum_iter then
					// loss_scaler(loss); the scale is a power of two, so
					// the order changes no bit.
					l = s.scaler.ScaleLoss(l)
				}
				if err := l.Backward(); err != nil {
					panic(err)
				}
			})
		}()
		if err != nil {
			return 0, err
		}
	}
	return sum / float64(n), nil
}

// Plan is one training run for Session.Train. The task says what one
// micro-batch's loss is; Train owns everything around it: resuming,
// backward, accumulation, autocast, clipping, the optimizer step at the
// scheduled learning rate, metrics, evaluation, progress and checkpoints.
type Plan struct {
	Steps    int64     // optimizer steps in the whole run (Session.Steps)
	PerEpoch int64     // optimizer steps per epoch, for the metrics' epoch column
	Opt      Optimizer // steps the store's parameters
	LR       Schedule  // the learning rate at each step
	Clip     float64   // the gradients' global norm is clipped to Clip; 0 for none
	// Loss builds micro-batch micro's (0..trainer.accumulate-1) mean loss
	// at step, under trainer.precision. The tensors it makes are freed when
	// it returns, except the loss (freed after its backward pass): read
	// what the task needs from them inside Loss.
	Loss func(step int64, micro int) (*ts.Tensor, error)
	// BeforeStep, if set, runs before a step's micro-batches: state that
	// follows the step, such as a masking ratio from a schedule.
	BeforeStep func(step int64) error
	// AfterStep, if set, runs after the optimizer step: state updated once
	// per optimizer step, such as a running statistic or a momentum encoder.
	AfterStep func(step int64) error
	// State is the task's state that checkpoints hold beside the model and
	// optimizer (its data loader's position, running statistics, memory
	// banks), by name. Resuming restores every entry and refuses a
	// checkpoint whose entries differ.
	State map[string]State
	// Eval, if set, runs every trainer.eval_every steps and at the end; its
	// metrics join that step's row in metrics.jsonl.
	Eval func(step int64) (map[string]float64, error)
}

// Train runs the plan's steps in a Loop with the standard hooks: "metrics"
// (a metrics.jsonl row every log_every steps: step, epoch, lr, the
// interval's mean loss, steps/s), "eval", "progress" and "checkpoint".
// When the session resumes, it first restores the newest checkpoint.
func (s *Session) Train(p Plan) error {
	if p.Loss == nil || p.Opt == nil || p.LR == nil {
		return fmt.Errorf("train: a Plan needs Loss, Opt and LR")
	}
	if p.Eval == nil && s.Cfg.EvalEvery > 0 {
		return config.Field("trainer.eval_every", "this task has no evaluation during training; remove the key")
	}
	state := p.State
	if s.scaler != nil {
		// The scaler's state is one more named entry, so runs without
		// fp16 keep their checkpoint format, and resuming an fp16 run
		// restores the scale and growth tracker exactly.
		if _, dup := state[scalerStateName]; dup {
			return fmt.Errorf("train: the task's state has an entry %q, the name the fp16 loss scaler's state takes", scalerStateName)
		}
		state = make(map[string]State, len(p.State)+1)
		for k, v := range p.State {
			state[k] = v
		}
		state[scalerStateName] = s.scaler
	}
	start, err := s.restore(p.Opt, state)
	if err != nil {
		return err
	}
	if err := s.syncStart(); err != nil {
		return err
	}
	if s.signals {
		defer stopOnSignals(&s.stop, s.W)()
	}
	var lossSum float64
	var lossN int
	loop := &Loop{Steps: p.Steps, Step: func(step int64) (StepResult, error) {
		if p.BeforeStep != nil {
			if err := p.BeforeStep(step); err != nil {
				return StepResult{}, err
			}
		}
		loss, err := s.Backward(func(micro int) (*ts.Tensor, error) { return p.Loss(step, micro) })
		if err != nil {
			return StepResult{}, err
		}
		if s.group != nil {
			// Once per optimizer step, after the last micro-batch:
			// gradients and loss averaged over the ranks.
			if loss, err = s.syncStep(loss); err != nil {
				return StepResult{}, err
			}
		}
		// The schedule advances every step, skipped or not: MAE sets the
		// learning rate from the iteration number alone.
		lr := p.LR(step)
		if err := s.update(p.Opt, p.Clip, lr); err != nil {
			return StepResult{}, err
		}
		// AfterStep runs after a skipped fp16 step too: it follows the
		// iteration, as the state BeforeStep sets does.
		if p.AfterStep != nil {
			if err := p.AfterStep(step); err != nil {
				return StepResult{}, err
			}
		}
		lossSum, lossN = lossSum+loss, lossN+1
		return StepResult{Loss: loss, LR: lr}, nil
	}}
	started := time.Now()
	// The time the data loaders made this loop wait since the last row,
	// against the wall time: 0 when the step never waits for a batch.
	lastRow, lastWaited := started, data.Waited()
	row := func(step int64, r StepResult) map[string]any {
		return map[string]any{"step": step + 1, "epoch": float64(step+1) / float64(max(p.PerEpoch, 1)), "lr": r.LR}
	}
	loop.Add(Hook{Name: "metrics", Every: s.Cfg.LogEvery, Fn: func(step int64, r StepResult) error {
		m := row(step, r)
		m["loss"] = lossSum / float64(max(lossN, 1))
		m["steps_per_s"] = float64(step+1-start) / time.Since(started).Seconds()
		now, w := time.Now(), data.Waited()
		m["data_wait_share"] = min(float64(w-lastWaited)/float64(max(now.Sub(lastRow), 1)), 1)
		lastRow, lastWaited = now, w
		if s.group != nil {
			// Seconds per step spent averaging gradients (and the loss)
			// since the last row.
			m["allreduce_s"] = s.commTime.Seconds() / float64(max(lossN, 1))
			s.commTime = 0
		}
		if s.scaler != nil {
			// The scale the next step uses, and the optimizer steps
			// skipped so far in the run (resumes included).
			m["loss_scale"] = s.scaler.Scale()
			m["skipped_steps"] = float64(s.scaler.Skipped())
		}
		lossSum, lossN = 0, 0
		return s.Log(m)
	}})
	if p.Eval != nil {
		every := s.Cfg.EvalEvery
		if every == 0 {
			every = p.Steps // at the end only
		}
		loop.Add(Hook{Name: "eval", Every: every, Fn: func(step int64, r StepResult) error {
			if !s.Main() {
				return nil // rank 0 evaluates the (identical) model
			}
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
	if s.Main() {
		loop.Add(ProgressHook(s.W, s.Cfg.LogEvery, p.Steps))
	}
	saved := int64(-1)
	save := func(step int64) error {
		saved = step + 1
		if !s.Main() {
			return nil
		}
		return saveCheckpoint(s.Out, step+1, s.Store, p.Opt, state, s.Cfg.KeepCheckpoints, s.WorldSize())
	}
	loop.Add(Hook{Name: "checkpoint", Every: s.Cfg.CheckpointEvery, Fn: func(step int64, r StepResult) error { return save(step) }})
	loop.Stop = func(step int64) error {
		stop := s.stop.Load()
		if s.group != nil {
			stop = s.stopAgreed // every rank stops after the same step
		}
		if !stop {
			return nil
		}
		if saved != step+1 {
			if err := save(step); err != nil {
				return err
			}
		}
		if s.Main() {
			fmt.Fprintf(s.W, "stopped after step %d of %d with a checkpoint; continue with: repro train -resume %s CONFIG\n", step+1, p.Steps, s.Out)
		}
		return ErrStopped
	}
	if err := loop.Run(start); err != nil {
		return err
	}
	if s.scaler != nil {
		fmt.Fprintf(s.W, "fp16: %d of %d optimizer steps skipped for inf/NaN gradients; loss scale now %g\n", s.scaler.Skipped(), p.Steps, s.scaler.Scale())
	}
	return nil
}

// scalerStateName is the checkpoint's task-state entry for the fp16 loss
// scaler: the key MAE's NativeScalerWithGradNormCount saves under.
const scalerStateName = "amp_scaler"

// update makes the optimizer step from the accumulated gradients: clip them
// to clip (0 for none), then step opt at lr. Under fp16 it first unscales
// the gradients, once, as NativeScalerWithGradNormCount does before
// clip_grad_norm_, so clipping sees true gradients; when one is inf or NaN
// it skips the update (GradScaler.step) and zeroes the gradients instead,
// then moves the scale (GradScaler.update).
func (s *Session) update(opt Optimizer, clip, lr float64) error {
	if s.scaler != nil {
		finite, err := s.scaler.Unscale(s.Store)
		if err != nil {
			return err
		}
		if !finite {
			s.scaler.Update(false)
			return zeroGrads(s.Store)
		}
	}
	if clip > 0 {
		if _, err := ClipGradNorm(s.Store, clip); err != nil {
			return err
		}
	}
	if err := opt.Step(lr); err != nil {
		return err
	}
	if s.scaler != nil {
		s.scaler.Update(true)
	}
	return nil
}

// zeroGrads zeroes every gradient, as an optimizer's Step does after its
// update: what a skipped fp16 step leaves, so the next step's gradients
// accumulate from zero.
func zeroGrads(store *torchmods.Store) error {
	return torchmods.Try(func() {
		ts.NoGrad(func() {
			for _, p := range store.Params() {
				if g := p.Tensor.MustGrad(false); g.MustDefined() {
					g.MustZero_()
				}
			}
		})
	})
}

// RequestStop asks a running Train to write a checkpoint after the
// current step and return ErrStopped (what the first SIGINT does).
func (s *Session) RequestStop() { s.stop.Store(true) }

// restore loads the newest checkpoint into the store, the optimizer and
// the task's state when the session resumes, and returns the step to
// continue from (0 for a fresh run).
func (s *Session) restore(opt Optimizer, state map[string]State) (int64, error) {
	if !s.resume {
		return 0, nil
	}
	all, err := listCheckpoints(s.Out)
	if err != nil {
		return 0, err
	}
	if len(all) == 0 {
		return 0, fmt.Errorf("nothing to resume: %s has no checkpoint", s.Out)
	}
	for i := len(all) - 1; i >= 0; i-- {
		ck := all[i]
		if err := VerifyCheckpoint(ck); err != nil {
			fmt.Fprintf(s.W, "checkpoint %s does not verify, skipping it: %v\n", ck, err)
			continue
		}
		if i < len(all)-1 {
			fmt.Fprintf(s.W, "falling back to %s, the newest checkpoint that verifies\n", ck)
		}
		if world, err := checkpointWorldSize(ck); err != nil {
			return 0, err
		} else if world != s.WorldSize() {
			return 0, fmt.Errorf("checkpoint %s was written by a run of %d rank(s), and this run has %d: resume with the same number of ranks (the data shards and the global batch depend on it)", ck, world, s.WorldSize())
		}
		step, err := LoadCheckpoint(ck, s.Store, opt, state)
		if err != nil {
			return 0, err
		}
		if !s.Main() {
			return step, nil
		}
		dropped, err := truncateMetrics(filepath.Join(s.Out, "metrics.jsonl"), step)
		if err != nil {
			return 0, err
		}
		if dropped > 0 {
			fmt.Fprintf(s.W, "moved %d metrics rows logged after step %d to metrics.dropped.jsonl\n", dropped, step)
		}
		fmt.Fprintf(s.W, "resuming from %s at step %d\n", ck, step)
		return step, nil
	}
	return 0, fmt.Errorf("nothing to resume: no checkpoint in %s verifies (see above)", s.Out)
}

// Log appends one row to metrics.jsonl and, with trainer.tensorboard, its
// numbers (but the step) as TensorBoard scalars at the row's step. On
// ranks other than 0 of a data-parallel run it writes nothing.
func (s *Session) Log(row map[string]any) error {
	if s.metrics == nil {
		return nil // a rank other than 0 of a data-parallel run
	}
	if err := json.NewEncoder(s.metrics).Encode(row); err != nil {
		return err
	}
	if s.tb == nil {
		return nil
	}
	step, _ := row["step"].(int64)
	now := time.Now()
	for _, k := range sortedKeys(row) {
		if v, ok := row[k].(float64); ok && k != "step" {
			if err := s.tb.Scalar(k, step, v, now); err != nil {
				return err
			}
		}
	}
	return s.tb.Flush()
}

// WriteResults writes v as the run's results.json (rank 0 only, in a
// data-parallel run). Under fp16, when v is a
// JSON object without those keys, it also records "skipped_steps" and
// "loss_scale" (the scaler's at the end), after v's own keys, so that a
// run's summary says how many updates the loss scaling dropped.
func (s *Session) WriteResults(v any) error {
	if !s.Main() {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if s.scaler != nil {
		b = withScalerResults(b, s.scaler)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	return os.WriteFile(filepath.Join(s.Out, "results.json"), out.Bytes(), 0o644)
}

// withScalerResults appends the scaler's keys to a compact JSON object,
// keeping its keys' order; anything else comes back as is.
func withScalerResults(b []byte, g *GradScaler) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil || obj == nil {
		return b
	}
	_, has1 := obj["skipped_steps"]
	_, has2 := obj["loss_scale"]
	if has1 || has2 {
		return b
	}
	extra, _ := json.Marshal(g.Skipped())
	scale, _ := json.Marshal(g.Scale())
	add := `"skipped_steps":` + string(extra) + `,"loss_scale":` + string(scale) + `}`
	b = bytes.TrimRight(b, " \t\r\n")
	if len(obj) > 0 {
		add = "," + add
	}
	return append(b[:len(b)-1:len(b)-1], add...)
}

// Elapsed is the time since the session started.
func (s *Session) Elapsed() time.Duration { return time.Since(s.start) }

// JSONWithMetrics marshals v (a task's result struct, converted to a type
// without this method) and adds metrics at its top level, so that
// `repro exp` reads "dev_accuracy" where another task writes
// "test_accuracy". NaN and infinite values (a correlation of constant
// predictions) are written as null, which JSON can hold; a metric named
// like one of v's fields is an error.
func JSONWithMetrics(v any, metrics map[string]float64) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, x := range metrics {
		if _, clash := m[k]; clash {
			return nil, fmt.Errorf("metric %q clashes with a result field", k)
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			m[k] = nil
		} else {
			m[k] = x
		}
	}
	return json.Marshal(m)
}
