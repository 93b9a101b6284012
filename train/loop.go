// Package train runs experiments: a Loop whose logging, evaluation and
// progress reporting are named hooks, the optimizers and schedules the
// papers' recipes use, and a registry of tasks that configs pick by name.
package train

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/sugarme/gotch/ts"
)

// StepResult is what one training step reports.
type StepResult struct {
	Loss float64
	LR   float64
}

// Hook runs after every Every-th step (and after the last), by name.
type Hook struct {
	Name  string
	Every int64
	Fn    func(step int64, r StepResult) error
}

// Loop calls Step for steps 0..Steps-1 (reported 1-based, as checkpoints
// count steps done), each inside a ts.Scope so its
// tensors are freed when it ends, then the hooks that are due. A NaN or
// infinite loss stops the run with an error naming the step.
type Loop struct {
	Steps int64
	Step  func(step int64) (StepResult, error)
	// Stop, if set, is asked after each step's hooks; an error ends the
	// run with it (a graceful stop after a checkpoint).
	Stop  func(step int64) error
	hooks []Hook
}

// Add registers a hook; names must be unique.
func (l *Loop) Add(h Hook) {
	for _, o := range l.hooks {
		if o.Name == h.Name {
			panic(fmt.Sprintf("train: hook %q added twice", h.Name))
		}
	}
	l.hooks = append(l.hooks, h)
}

// Hooks lists the registered hook names in order.
func (l *Loop) Hooks() []string {
	names := make([]string, len(l.hooks))
	for i, h := range l.hooks {
		names[i] = h.Name
	}
	return names
}

// Run runs the loop from step start.
func (l *Loop) Run(start int64) error {
	for step := start; step < l.Steps; step++ {
		r, err := l.step(step)
		if err != nil {
			return fmt.Errorf("step %d: %w", step+1, err)
		}
		if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
			return fmt.Errorf("step %d: loss is %v; stopping", step+1, r.Loss)
		}
		last := step == l.Steps-1
		for _, h := range l.hooks {
			if (h.Every > 0 && (step+1)%h.Every == 0) || last {
				if err := h.Fn(step, r); err != nil {
					return fmt.Errorf("hook %s at step %d: %w", h.Name, step+1, err)
				}
			}
		}
		if l.Stop != nil && !last {
			if err := l.Stop(step); err != nil {
				return err
			}
		}
	}
	return nil
}

// step runs one step in its own scope, closed by defer so that a panic in
// the step surfaces with its own message rather than the scope's.
func (l *Loop) step(step int64) (StepResult, error) {
	s := ts.NewScope()
	defer s.Close()
	return l.Step(step)
}

// ProgressHook reports the step, loss, learning rate, steps/s and time
// left: on a terminal as one bar redrawn in place, elsewhere (logs, CI) as a
// line every `every` steps.
func ProgressHook(w io.Writer, every, total int64) Hook {
	start, first := time.Now(), int64(-1)
	tty := isTerminal(w)
	if tty {
		every = max(1, every/10) // redraw ten times per logging interval
	}
	return Hook{Name: "progress", Every: every, Fn: func(step int64, r StepResult) error {
		if first < 0 {
			first, start = step, time.Now()
			if step != total-1 {
				return nil
			}
		}
		rate := float64(step-first) / math.Max(time.Since(start).Seconds(), 1e-9)
		left := time.Duration(0)
		if rate > 0 {
			left = time.Duration(float64(total-step-1)/rate) * time.Second
		}
		if !tty {
			fmt.Fprintf(w, "step %d/%d  loss %.4f  lr %.3g  %.1f steps/s  eta %s\n", step+1, total, r.Loss, r.LR, rate, left.Round(time.Second))
			return nil
		}
		const width = 30
		done := int(width * (step + 1) / total)
		bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
		fmt.Fprintf(w, "\r[%s] %d/%d  loss %.4f  lr %.3g  %.1f it/s  eta %s ", bar, step+1, total, r.Loss, r.LR, rate, left.Round(time.Second))
		if step == total-1 {
			fmt.Fprintln(w)
		}
		return nil
	}}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
