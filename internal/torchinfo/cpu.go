package torchinfo

import (
	"bufio"
	"os"
	"runtime"
	"strings"
)

// CPUKernels names the CPU and the vector kernels libtorch dispatches to
// on it: ATEN_CPU_CAPABILITY when set, else the best of avx512 (libtorch
// 1.13's choice when the CPU has avx512f, bw, vl and dq), avx2 and
// default. Training on another kernel set changes float rounding, and
// with it the last digits of a run's numbers (mlm/RESULTS.md measured a
// 2-of-5,938 difference in a fine-tune's accuracy), so every run prints it.
func CPUKernels() string {
	model, flags := runtime.GOARCH, map[string]bool{}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
			case "flags":
				for _, fl := range strings.Fields(v) {
					flags[fl] = true
				}
				return model + ", kernels " + kernels(flags)
			}
		}
	}
	return model + ", kernels " + kernels(flags)
}

func kernels(flags map[string]bool) string {
	if c := os.Getenv("ATEN_CPU_CAPABILITY"); c != "" {
		return c + " (ATEN_CPU_CAPABILITY)"
	}
	switch {
	case flags["avx512f"] && flags["avx512bw"] && flags["avx512vl"] && flags["avx512dq"]:
		return "avx512"
	case flags["avx2"] && flags["fma"]:
		return "avx2"
	}
	return "default"
}
