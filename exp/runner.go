package exp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/reprolab/repro/train"
)

// Runner runs an experiment's runs as child `repro train` processes.
type Runner struct {
	Exp      *Experiment
	Resolved map[*Run][]byte // from Experiment.Resolve
	// Runs, if set, are the runs to run (Experiment.Select gives a subset
	// with what it depends on); by default every run of Exp.
	Runs    []*Run
	Exe     string    // the repro binary (os.Executable)
	Out     io.Writer // a status line per change
	Jobs    int       // runs at a time (default Exp.Jobs)
	Threads int       // intra-op threads per run (default Exp.Threads)
	// Poll is how often a run held by another process is tried again
	// (default 2 s).
	Poll time.Duration
	// Signals, if set, stops the runs gracefully: on the first signal each
	// child gets SIGTERM (repro train then checkpoints and exits), on the
	// second SIGKILL. Cancelling Run's context kills them at once.
	Signals <-chan os.Signal
}

// phase is a run's place in this invocation.
type phase int

const (
	waiting phase = iota
	held          // locked by another process; tried again every Poll
	running
	finished // done, now or before
	failed
	blocked // a dependency failed or is blocked
)

// Failure is a run that failed in this invocation.
type Failure struct {
	Run *Run
	Err error
	Log string // its train.log
}

// Summary is what Run did.
type Summary struct {
	Done, Already, Ran int // done in all; done before this invocation; run (or resumed) to the end now
	Failed             []Failure
	Blocked            []*Run
}

type exit struct {
	r   *Run
	err error
}

// Run runs every run not done yet, dependencies first, Jobs at a time,
// until all are done or can not be. It returns an error if any run failed or
// was blocked (the summary lists them), or if ctx was cancelled (the
// children are killed; the next invocation resumes them).
func (rn *Runner) Run(ctx context.Context) (*Summary, error) {
	e := rn.Exp
	jobs, threads := rn.Jobs, rn.Threads
	if jobs <= 0 {
		jobs = e.Jobs
	}
	if threads <= 0 {
		threads = e.Threads
	}
	runs := rn.Runs
	if runs == nil {
		runs = e.Runs
	}
	poll := rn.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	// Refuse before starting anything if a finished or started run's saved
	// config differs from the one the file now gives it.
	var changed []string
	pre := map[*Run]State{}
	for _, r := range runs {
		if pid, held := heldBy(r.Dir); held {
			// another process is at it: decided under its lock, later
			pre[r] = State{Kind: Running, Holder: pid}
			continue
		}
		st, err := Inspect(r.Dir, rn.Resolved[r])
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", r.ID, err)
		}
		pre[r] = st
		if st.Kind == Changed {
			changed = append(changed, fmt.Sprintf("  %s (%s):\n    %s", r.ID, r.Dir, strings.Join(st.Diff, "\n    ")))
		}
	}
	if len(changed) > 0 {
		return nil, fmt.Errorf("%d run(s) were made with a different config than %s now gives them; "+
			"refusing to reuse or overwrite them (restore the file, or delete or move those directories to rerun them):\n%s",
			len(changed), e.Path, strings.Join(changed, "\n"))
	}
	counts := map[Kind]int{}
	for _, st := range pre {
		counts[st.Kind]++
	}
	elsewhere := ""
	if counts[Running] > 0 {
		elsewhere = fmt.Sprintf(", %d running in another process", counts[Running])
	}
	rn.printf("exp %s: %d runs in %s: %d done, %d to resume or restart, %d not started%s; %d job(s), %d thread(s) each\n",
		e.Name, len(runs), e.Root, counts[Done], counts[Partial], counts[NotStarted], elsewhere, jobs, threads)

	phases := map[*Run]phase{}
	retry := map[*Run]time.Time{}
	heldMsg := map[*Run]int{}
	locks := map[*Run]*train.RunDirLock{}
	started := map[*Run]time.Time{}
	procs := map[*Run]*exec.Cmd{}
	sum := &Summary{}
	exits := make(chan exit)
	nRunning := 0
	tally := func() string {
		var n [6]int
		for _, r := range runs {
			n[phases[r]]++
		}
		return fmt.Sprintf("[done %d/%d · running %d · waiting %d · failed %d · blocked %d]",
			n[finished], len(runs), n[running], n[waiting]+n[held], n[failed], n[blocked])
	}
	event := func(what string, r *Run, detail string) {
		if detail != "" {
			detail = " (" + detail + ")"
		}
		rn.printf("%s %-8s %s%s  %s\n", time.Now().Format("15:04:05"), what, r.ID, detail, tally())
	}
	var block func(r *Run)
	block = func(r *Run) {
		for _, o := range runs {
			if phases[o] != waiting && phases[o] != held {
				continue
			}
			for _, d := range o.Deps {
				if d == r {
					phases[o] = blocked
					sum.Blocked = append(sum.Blocked, o)
					event("blocked", o, "needs "+r.ID)
					block(o)
					break
				}
			}
		}
	}
	fail := func(r *Run, err error) {
		phases[r] = failed
		sum.Failed = append(sum.Failed, Failure{Run: r, Err: err, Log: filepath.Join(r.Dir, train.RunLogFile)})
		event("FAILED", r, err.Error())
		block(r)
	}
	ready := func(r *Run) bool {
		for _, d := range r.Deps {
			if phases[d] != finished {
				return false
			}
		}
		return true
	}
	// try takes a ready run's lock and decides, under it, what to do.
	try := func(r *Run) {
		lock, err := train.TryLockRunDir(r.Dir)
		var le *train.LockedError
		if errors.As(err, &le) {
			phases[r] = held
			retry[r] = time.Now().Add(poll)
			if heldMsg[r] != le.PID {
				heldMsg[r] = le.PID
				event("held", r, fmt.Sprintf("locked by pid %d; waiting for it", le.PID))
			}
			return
		}
		if err != nil {
			fail(r, err)
			return
		}
		st, err := Inspect(r.Dir, rn.Resolved[r])
		if err != nil {
			lock.Unlock()
			fail(r, err)
			return
		}
		switch st.Kind {
		case Done:
			lock.Unlock()
			phases[r] = finished
			sum.Done++
			if pre[r].Kind == Done {
				sum.Already++
			} else {
				event("done", r, "finished by another process")
			}
			return
		case Changed:
			lock.Unlock()
			fail(r, fmt.Errorf("its saved config differs: %s", strings.Join(st.Diff, "; ")))
			return
		}
		resume := st.Kind == Partial && (st.Ckpt != "" || r.Stage.Spec.Resume == "always")
		cmd, logf, err := rn.command(r, resume, st, threads)
		if err != nil {
			lock.Unlock()
			fail(r, err)
			return
		}
		lock.PassTo(cmd)
		startErr := make(chan error, 1)
		go func() {
			// Pdeathsig goes with the thread that started the child: keep
			// this goroutine on it until the child is gone.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			err := cmd.Start()
			startErr <- err
			if err == nil {
				err = cmd.Wait()
			}
			logf.Close()
			exits <- exit{r, err}
		}()
		if err := <-startErr; err != nil {
			<-exits
			lock.Unlock()
			fail(r, fmt.Errorf("starting %s: %w", rn.Exe, err))
			return
		}
		locks[r], procs[r], started[r] = lock, cmd, time.Now()
		phases[r] = running
		nRunning++
		switch {
		case resume && st.Ckpt != "":
			event("resume", r, fmt.Sprintf("from step %d", st.Step))
		case resume:
			event("resume", r, "")
		case st.Kind == Partial:
			event("restart", r, "no checkpoint to resume from")
		default:
			event("start", r, "")
		}
	}
	finish := func(x exit) {
		r := x.r
		nRunning--
		locks[r].Unlock()
		delete(locks, r)
		delete(procs, r)
		took := time.Since(started[r]).Round(time.Second)
		if x.err == nil && !resultsOK(r.Dir) {
			x.err = errors.New("it exited without writing results.json")
		}
		if x.err != nil {
			msg := fmt.Sprintf("%v after %s", x.err, took)
			if last := lastLine(filepath.Join(r.Dir, train.RunLogFile)); last != "" {
				msg += ": " + last
			}
			fail(r, errors.New(msg))
			return
		}
		phases[r] = finished
		sum.Done++
		sum.Ran++
		event("done", r, took.String())
	}

	stopping := false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Start what can start, in order.
		now := time.Now()
		for _, r := range runs {
			if nRunning >= jobs || stopping {
				break
			}
			p := phases[r]
			if (p == waiting || (p == held && !now.Before(retry[r]))) && ready(r) {
				try(r)
			}
		}
		// Wait for a child to end, a held run's retry, or cancellation. A
		// held run's retry only wakes the loop when a slot is free to try
		// it in: with every slot busy its retry time stays in the past, and
		// waking for it would spin until a child ends.
		var next time.Time
		pending := nRunning > 0
		canTry := nRunning < jobs && !stopping
		for _, r := range runs {
			switch phases[r] {
			case waiting:
				pending = pending || ready(r)
			case held:
				pending = true
				if canTry && (next.IsZero() || retry[r].Before(next)) {
					next = retry[r]
				}
			}
		}
		if !pending {
			break
		}
		var wake <-chan time.Time
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
			wake = timer.C
		}
		select {
		case x := <-exits:
			if stopping && !(x.err == nil && resultsOK(x.r.Dir)) {
				nRunning--
				locks[x.r].Unlock()
				delete(locks, x.r)
				delete(procs, x.r)
				phases[x.r] = waiting
				event("stopped", x.r, "")
			} else {
				finish(x)
			}
		case <-wake:
		case sig := <-rn.Signals:
			if !stopping {
				stopping = true
				rn.printf("%v: asking %d run(s) to checkpoint and stop (again to kill them)\n", sig, len(procs))
				signalAll(procs, syscall.SIGTERM)
			} else {
				rn.printf("%v: killing %d run(s)\n", sig, len(procs))
				signalAll(procs, syscall.SIGKILL)
			}
		case <-ctx.Done():
			signalAll(procs, syscall.SIGKILL)
			for nRunning > 0 {
				x := <-exits
				nRunning--
				locks[x.r].Unlock()
			}
			return sum, fmt.Errorf("interrupted (%v); run it again to resume", context.Cause(ctx))
		}
		if stopping && nRunning == 0 {
			return sum, errors.New("stopped; run it again to resume")
		}
	}
	for _, r := range runs {
		if phases[r] == waiting {
			// unreachable unless a dependency is missing from the run list
			sum.Blocked = append(sum.Blocked, r)
		}
	}
	rn.printf("exp %s: %d of %d runs done (%d already, %d now), %d failed, %d blocked\n",
		e.Name, sum.Done, len(runs), sum.Already, sum.Ran, len(sum.Failed), len(sum.Blocked))
	if len(sum.Failed)+len(sum.Blocked) == 0 {
		return sum, nil
	}
	var b strings.Builder
	for _, f := range sum.Failed {
		fmt.Fprintf(&b, "\n  FAILED  %s: %v\n          log: %s", f.Run.ID, f.Err, f.Log)
	}
	for _, r := range sum.Blocked {
		var bad []string
		for _, d := range r.Deps {
			if phases[d] == failed || phases[d] == blocked {
				bad = append(bad, d.ID)
			}
		}
		fmt.Fprintf(&b, "\n  blocked %s: needs %s", r.ID, strings.Join(bad, ", "))
	}
	return sum, fmt.Errorf("%d run(s) failed and %d blocked:%s", len(sum.Failed), len(sum.Blocked), b.String())
}

// lastLine is the last non-empty line of a log (its error, usually),
// shortened to 300 bytes.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-4096, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return ""
	}
	lines := strings.Split(strings.ReplaceAll(string(buf), "\r", "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			if len(l) > 300 {
				l = l[:300] + "..."
			}
			return l
		}
	}
	return ""
}

func signalAll(procs map[*Run]*exec.Cmd, sig syscall.Signal) {
	for _, cmd := range procs {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, sig) // its process group
		}
	}
}

func (rn *Runner) printf(format string, a ...any) {
	if rn.Out != nil {
		fmt.Fprintf(rn.Out, format, a...)
	}
}

// command builds a run's `repro train` child, its output appended to
// DIR/train.log after a header line saying how it starts.
func (rn *Runner) command(r *Run, resume bool, st State, threads int) (*exec.Cmd, *os.File, error) {
	args := r.TrainArgs(resume, !resume && st.Kind == Partial)
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, nil, err
	}
	logf, err := os.OpenFile(filepath.Join(r.Dir, train.RunLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	how := "fresh start"
	switch {
	case resume && st.Ckpt != "":
		how = fmt.Sprintf("resuming from %s (step %d)", st.Ckpt, st.Step)
	case resume:
		how = "resuming"
	case st.Kind == Partial:
		how = "fresh start (an earlier attempt left no checkpoint)"
	}
	fmt.Fprintf(logf, "=== repro exp %s, %s: %s, pid %d\n$ %s %s\n", rn.Exp.Name, time.Now().Format(time.RFC3339), how, os.Getpid(),
		rn.Exe, quoteArgs(args))
	cmd := exec.Command(rn.Exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), ThreadEnv(threads)...)
	// Its own process group (so a kill reaches anything it starts), killed
	// with this process (Pdeathsig), so a kill of repro exp is a kill of its
	// runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, logf, nil
}

// TrainArgs are the arguments of the run's `repro train`: a fresh start
// (-out DIR; with overwrite, -overwrite too, for a directory an earlier
// attempt left without a checkpoint, whose files train moves aside) or a
// resume (-resume DIR).
func (r *Run) TrainArgs(resume, overwrite bool) []string {
	args := []string{"train"}
	switch {
	case resume:
		args = append(args, "-resume", r.Dir)
	case overwrite:
		args = append(args, "-out", r.Dir, "-overwrite")
	default:
		args = append(args, "-out", r.Dir)
	}
	for _, s := range r.Sets {
		args = append(args, "-set", s)
	}
	return append(args, r.Config)
}

// ThreadEnv sets a child's thread counts. repro sets no thread count of its
// own, so libtorch's intra-op pool takes OMP_NUM_THREADS (and MKL's),
// OpenBLAS its own variable.
func ThreadEnv(threads int) []string {
	n := fmt.Sprint(threads)
	return []string{"OMP_NUM_THREADS=" + n, "MKL_NUM_THREADS=" + n, "OPENBLAS_NUM_THREADS=" + n}
}

func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"'$\\[]*?;&|()<>") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
