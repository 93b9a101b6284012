package vampnet

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The scrambled Sobol points equal torch.quasirandom.SobolEngine's
// (testdata/gen_sobol.py, torch 1.13), drawn in the same batch sizes, and
// a resumed engine continues the same sequence.
func TestSobolMatchesPyTorch(t *testing.T) {
	b, err := os.ReadFile("testdata/sobol.json")
	require.NoError(t, err)
	var ref map[string]any
	require.NoError(t, json.Unmarshal(b, &ref))
	for _, seed := range []int64{0, 3} {
		s := NewSobol(seed)
		batches := ref[map[int64]string{0: "seed0", 3: "seed3"}[seed]].([]any)
		var all []float32
		for i, n := range []int{8, 1, 5, 8} {
			got := s.Draw(n)
			want := batches[i].([]any)
			require.Len(t, got, len(want))
			for j := range want {
				assert.Equal(t, float32(want[j].(float64)), got[j], "seed %d batch %d point %d", seed, i, j)
			}
			all = append(all, got...)
		}
		r := NewSobol(seed)
		r.SkipTo(9)
		assert.Equal(t, all[9:], append(r.Draw(5), r.Draw(8)...), "seed %d resumed at 9", seed)
	}
}
