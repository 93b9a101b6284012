package basics

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/internal/memstat"
	"github.com/reprolab/repro/train"
)

func init() { train.Register(Task) }

func needData(t *testing.T) {
	if _, err := os.Stat(data.FashionMNISTDir); err != nil {
		t.Skip("dataset-fashion-mnist not installed (scripts/install_libtorch.sh installs it)")
	}
}

func load(t *testing.T, name string, sets ...string) *Config {
	_, c, err := train.LoadConfig(filepath.Join("..", "configs", "basics", name), sets)
	require.NoError(t, err)
	return c.(*Config)
}

// The two configs in configs/basics reach the accuracy the Fashion-MNIST
// benchmark reports for their model classes, on the real test set.
func TestSoftmaxRegressionReaches84(t *testing.T) {
	needData(t)
	res, err := Task.Start(load(t, "softmax.toml"), t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	t.Logf("softmax regression: %.2f%% in %.0f s", 100*res.TestAccuracy, res.Seconds)
	assert.GreaterOrEqual(t, res.TestAccuracy, 0.84)
}

func TestMLPReaches88(t *testing.T) {
	needData(t)
	if testing.Short() {
		t.Skip("about a minute of training")
	}
	res, err := Task.Start(load(t, "mlp.toml"), t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	t.Logf("MLP: %.2f%% in %.0f s", 100*res.TestAccuracy, res.Seconds)
	assert.GreaterOrEqual(t, res.TestAccuracy, 0.88)
}

func TestSameSeedSameNumbers(t *testing.T) {
	needData(t)
	run := func() *Result {
		res, err := Task.Start(load(t, "mlp.toml", "trainer.max_steps=150", "optim.warmup=20", "data.train_limit=6000"), t.TempDir(), false, io.Discard)
		require.NoError(t, err)
		return res
	}
	a, b := run(), run()
	assert.Equal(t, a.TestLoss, b.TestLoss, "bit for bit on CPU")
	assert.Equal(t, a.TestAccuracy, b.TestAccuracy)
	c, err := Task.Start(load(t, "mlp.toml", "trainer.max_steps=150", "optim.warmup=20", "data.train_limit=6000", "trainer.seed=1"), t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	assert.NotEqual(t, a.TestLoss, c.TestLoss, "another seed, other numbers")
}

func TestConfigRangeErrors(t *testing.T) {
	c := Default()
	err := config.Load(filepath.Join("..", "configs", "basics", "mlp.toml"), c, []string{"model.kind=cnn"})
	assert.ErrorContains(t, err, `mlp.toml:15: model.kind: must be "softmax" or "mlp", got "cnn"`)
	err = config.Load(filepath.Join("..", "configs", "basics", "mlp.toml"), Default(), []string{"data.batch=0"})
	assert.ErrorContains(t, err, "data.batch: must be positive, got 0")
}

// TestLongRunKeepsMemoryFlat compares the process's RSS after a 500-step
// run with that after a 5,000-step run of the same config in the same
// process: a per-step leak would show as growth.
func TestLongRunKeepsMemoryFlat(t *testing.T) {
	needData(t)
	if testing.Short() {
		t.Skip("5,500 training steps")
	}
	rss := func() float64 {
		runtime.GC()
		debug.FreeOSMemory()
		v, err := memstat.RSS()
		require.NoError(t, err)
		return float64(v)
	}
	_, err := Task.Start(load(t, "softmax.toml", "trainer.max_steps=500"), t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	warm := rss()
	_, err = Task.Start(load(t, "softmax.toml", "trainer.max_steps=5000"), t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	end := rss()
	t.Logf("RSS after 500 steps %.1f MiB, after 5,000 more %.1f MiB", warm/(1<<20), end/(1<<20))
	assert.LessOrEqual(t, end, 1.05*warm)
}
