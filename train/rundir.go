package train

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A run directory is locked while a process trains in it or decides what to
// do with it, so two processes never write the same run: an exclusive
// flock(2) on DIR/.lock, which holds the holder's pid for the error message.
// The kernel drops the lock when its holder exits, however it exits, so a
// killed run never leaves a stale lock behind.
//
// A process that starts a training child for a directory it has locked (repro
// exp does) hands the lock down: PassTo gives the child the locked file and
// names it in REPRO_RUNDIR_LOCK, and the child's LockRunDir takes that
// inherited lock instead of refusing. The lock then lasts until both have
// let go of it.

// RunDirLockEnv names the lock a parent handed to its child: "FD:DIR", the
// child's file descriptor of the locked file and the run directory's
// absolute path.
const RunDirLockEnv = "REPRO_RUNDIR_LOCK"

// RunLogFile is where repro exp sends a run's output: DIR/train.log.
const RunLogFile = "train.log"

// IsRunDirBookkeeping says whether a run directory's entry is bookkeeping
// around the run (the lock, repro exp's log of it) rather than the run's
// own output: a fresh run may start in a directory holding only these, and
// -overwrite leaves them where they are (repro exp creates both before it
// starts a run, and the log is open for the child's output).
func IsRunDirBookkeeping(name string) bool { return name == ".lock" || name == RunLogFile }

// RunDirLock is a held run-directory lock.
type RunDirLock struct {
	dir       string // absolute
	f         *os.File
	inherited bool
}

// LockRunDir takes the lock of the run directory dir (created if missing),
// without waiting: if another process holds it, the error names that
// process's pid. unlock releases it.
func LockRunDir(dir string) (unlock func(), err error) {
	l, err := TryLockRunDir(dir)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

// TryLockRunDir is LockRunDir returning the lock itself, for PassTo.
func TryLockRunDir(dir string) (*RunDirLock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if l, ok, err := inheritedLock(abs); ok || err != nil {
		return l, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(abs, ".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: holder(path)}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// The pid is for other processes' error messages only: the flock, not
	// the file's content, is the lock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &RunDirLock{dir: abs, f: f}, nil
}

// LockedError is LockRunDir's refusal: another process holds the lock.
type LockedError struct {
	Dir string
	PID int // 0 if the holder had not written its pid yet
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("run directory %s is locked by another process (pid not yet written)", e.Dir)
	}
	return fmt.Sprintf("run directory %s is locked by pid %d (another repro train or repro exp is using it)", e.Dir, e.PID)
}

func holder(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// inheritedLock takes the lock a parent handed down for abs, if any.
func inheritedLock(abs string) (*RunDirLock, bool, error) {
	v := os.Getenv(RunDirLockEnv)
	fdText, dir, ok := strings.Cut(v, ":")
	if !ok || dir != abs {
		return nil, false, nil
	}
	fd, err := strconv.Atoi(fdText)
	if err != nil || fd < 3 {
		return nil, false, fmt.Errorf("%s=%q: want FD:DIR", RunDirLockEnv, v)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(abs, ".lock"))
	if f == nil {
		return nil, false, fmt.Errorf("%s=%q: no such file descriptor", RunDirLockEnv, v)
	}
	// The descriptor shares the parent's open file description, which
	// holds the lock, so this succeeds at once; it fails if the descriptor
	// is not that file.
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("%s=%q: the inherited lock is not held: %w", RunDirLockEnv, v, err)
	}
	os.Unsetenv(RunDirLockEnv) // taken once; the child's own children must not reuse it
	return &RunDirLock{dir: abs, f: f, inherited: true}, true, nil
}

// Dir is the locked run directory's absolute path.
func (l *RunDirLock) Dir() string { return l.dir }

// Unlock releases the lock. An inherited lock is only closed: the parent
// still holds it until it lets go.
func (l *RunDirLock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	if !l.inherited {
		flock(l.f, syscall.LOCK_UN)
	}
	l.f.Close()
	l.f = nil
}

// PassTo hands the lock to cmd's process (before cmd.Start): the child
// inherits the locked file, and REPRO_RUNDIR_LOCK tells its LockRunDir so.
// cmd.Env is filled from os.Environ if it is nil.
func (l *RunDirLock) PassTo(cmd *exec.Cmd) {
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, l.f)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	env := cmd.Env[:0:0]
	for _, kv := range cmd.Env {
		if !strings.HasPrefix(kv, RunDirLockEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, fmt.Sprintf("%s=%d:%s", RunDirLockEnv, fd, l.dir))
}
