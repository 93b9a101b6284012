package exp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/train"
)

// TestMain doubles as a child process for the lock tests: with
// EXP_TEST_LOCK_CHILD=DIR it tries train.LockRunDir(DIR) and prints the
// outcome.
func TestMain(m *testing.M) {
	if dir := os.Getenv("EXP_TEST_LOCK_CHILD"); dir != "" {
		unlock, err := train.LockRunDir(dir)
		if err != nil {
			fmt.Println("refused:", err)
			os.Exit(3)
		}
		unlock()
		fmt.Println("locked")
		os.Exit(0)
	}
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

func child(t *testing.T, dir string, lock *train.RunDirLock) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EXP_TEST_LOCK_CHILD="+dir)
	if lock != nil {
		lock.PassTo(cmd)
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestLockRunDirRefusesASecondLockerWithThePid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	unlock, err := train.LockRunDir(dir)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, ".lock"))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("%d\n", os.Getpid()), string(b))

	_, err = train.LockRunDir(dir)
	var le *train.LockedError
	require.ErrorAs(t, err, &le, "a second locker in the same process is refused too (flock is per open file)")
	assert.Equal(t, os.Getpid(), le.PID)
	assert.Contains(t, err.Error(), fmt.Sprintf("locked by pid %d", os.Getpid()))

	out, err := child(t, dir, nil)
	assert.Error(t, err)
	assert.Contains(t, out, fmt.Sprintf("refused: run directory %s is locked by pid %d", dir, os.Getpid()), "another process is refused with the holder's pid")
	pid, held := heldBy(dir)
	assert.True(t, held)
	assert.Equal(t, os.Getpid(), pid)

	unlock()
	_, held = heldBy(dir)
	assert.False(t, held)
	out, err = child(t, dir, nil)
	require.NoError(t, err, out)
	assert.Equal(t, "locked", out)
	unlock2, err := train.LockRunDir(dir)
	require.NoError(t, err, "free again once the child is gone")
	unlock2()
}

func TestLockPassedToAChild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	lock, err := train.TryLockRunDir(dir)
	require.NoError(t, err)
	defer lock.Unlock()
	out, err := child(t, dir, lock)
	require.NoError(t, err, out)
	assert.Equal(t, "locked", out, "the child takes the lock it inherited")
	out, err = child(t, dir, nil)
	assert.Error(t, err)
	assert.Contains(t, out, "refused", "the child's unlock did not release the parent's lock")

	other := filepath.Join(t.TempDir(), "other")
	out, err = child(t, other, lock)
	require.NoError(t, err, out)
	assert.Equal(t, "locked", out, "an inherited lock for another directory is ignored")
	_, err = os.Stat(filepath.Join(dir, ".lock"))
	assert.NoError(t, err)
}

func TestHeldByCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	_, held := heldBy(dir)
	assert.False(t, held)
	_, err := os.Stat(dir)
	assert.True(t, os.IsNotExist(err))
}
