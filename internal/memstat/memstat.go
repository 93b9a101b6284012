// Package memstat reads the process's memory use, for leak tests and
// benchmarks. It counts C allocations (libtorch's) as well as Go's, which
// runtime.MemStats does not.
package memstat

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// RSS is the resident set size of this process in bytes, from /proc/self/status.
func RSS() (int64, error) { return statusField("VmRSS:") }

// PeakRSS is the largest resident set size this process has had, in bytes.
func PeakRSS() (int64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return ru.Maxrss * 1024, nil // Linux reports KiB
}

func statusField(name string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		fields := strings.Fields(line[len(name):])
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("/proc/self/status: unexpected %q", line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		return kb * 1024, err
	}
	return 0, fmt.Errorf("/proc/self/status has no %s line", name)
}
