package torchinfo

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestStubbedOpReturnsItsError calls ops whose gotch wrappers do not compile
// against some libtorch releases. Whichever of them the install script
// stubbed for this libtorch must fail with an error naming the op and the
// version, not crash the process.
func TestStubbedOpReturnsItsError(t *testing.T) {
	m, err := ReadManifest()
	require.NoError(t, err)
	x := ts.MustOnes([]int64{2, 1, 3}, gotch.Float, gotch.CPU)
	defer x.MustDrop()
	candidates := map[string]func() error{
		"atg_squeeze_dims": func() error { _, err := x.SqueezeDims([]int64{1}, false); return err },
		"atg_var_correction": func() error {
			_, err := x.VarCorrection([]int64{0}, ts.IntScalar(1), false, false)
			return err
		},
		"atg_scaled_dot_product_attention": func() error {
			_, err := ts.ScaledDotProductAttention(x, x, x, x, 0, false, []float64{}) // gotch dereferences a nil optional mask
			return err
		},
	}
	ran := 0
	for name, call := range candidates {
		if !slices.Contains(m.Stubbed, name) {
			continue
		}
		ran++
		err := call()
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "op "+name[len("atg_"):]+" is not available")
		assert.Contains(t, err.Error(), "libtorch "+m.Libtorch.Version)
	}
	if ran == 0 {
		t.Skipf("none of the candidate ops is stubbed for libtorch %s (stubbed: %d ops)", m.Libtorch.Version, len(m.Stubbed))
	}
	// The tensor library still works after a stubbed op raised.
	y := x.MustAdd(x, false)
	defer y.MustDrop()
	assert.Equal(t, 2.0, y.Float64Values()[0])
}

func TestParseBLAS(t *testing.T) {
	maps := `7f00-7f01 r--p 00000000 fe:01 123 /usr/lib/x86_64-linux-gnu/libc10.so.1.13.0
7f02-7f03 r-xp 00000000 fe:01 456 /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0
`
	p, kind := parseBLAS(stringsReader(maps))
	assert.Equal(t, "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", p)
	assert.Contains(t, kind, "reference BLAS")

	p, kind = parseBLAS(stringsReader("7f-8f r-xp 0 fe:01 9 /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3\n"))
	assert.Equal(t, "openblas", kind)
	assert.NotEmpty(t, p)

	p, kind = parseBLAS(stringsReader("7f-8f r-xp 0 fe:01 9 /opt/torch/lib/libtorch_cpu.so\n"))
	assert.Empty(t, p)
	assert.Contains(t, kind, "no separate BLAS")
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
