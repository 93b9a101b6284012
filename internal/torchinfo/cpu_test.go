package torchinfo

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKernels(t *testing.T) {
	t.Setenv("ATEN_CPU_CAPABILITY", "")
	assert.Equal(t, "avx512", kernels(map[string]bool{"avx512f": true, "avx512bw": true, "avx512vl": true, "avx512dq": true, "avx2": true, "fma": true}))
	assert.Equal(t, "avx2", kernels(map[string]bool{"avx512f": true, "avx2": true, "fma": true}))
	assert.Equal(t, "default", kernels(map[string]bool{"sse4_2": true}))
	t.Setenv("ATEN_CPU_CAPABILITY", "avx2")
	assert.Equal(t, "avx2 (ATEN_CPU_CAPABILITY)", kernels(map[string]bool{"avx512f": true}))
	assert.Contains(t, CPUKernels(), ", kernels ")
}
