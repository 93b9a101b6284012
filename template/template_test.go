package template

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/train"
)

func init() { train.Register(Task) }

func load(t *testing.T, sets ...string) *Config {
	t.Helper()
	_, c, err := train.LoadConfig("../configs/template/spirals.toml", sets)
	require.NoError(t, err)
	return c.(*Config)
}

// The template learns its task: far above the 50% of chance.
func TestTemplateLearnsSpirals(t *testing.T) {
	res, err := Task.Start(load(t), t.TempDir(), false, io.Discard)
	require.NoError(t, err)
	require.Greater(t, res.TestAccuracy, 0.9)
}

// A run cut back to its checkpoint at step 200 and resumed ends with the
// same result as the run straight through: the loader's position, the
// optimizer and the weights all come back.
func TestTemplateResumesExactly(t *testing.T) {
	dir := t.TempDir()
	whole, err := Task.Start(load(t, "trainer.keep_checkpoints=10"), dir, false, io.Discard)
	require.NoError(t, err)
	final := filepath.Join(dir, "checkpoints", "step-00000400", "model.safetensors")
	want, err := os.ReadFile(final)
	require.NoError(t, err)
	for _, step := range []string{"step-00000300", "step-00000400"} {
		require.NoError(t, os.RemoveAll(filepath.Join(dir, "checkpoints", step)))
	}
	require.NoError(t, os.Remove(filepath.Join(dir, "results.json")))
	resumed, err := Task.Start(load(t, "trainer.keep_checkpoints=10"), dir, true, io.Discard)
	require.NoError(t, err)
	require.Equal(t, whole.TestAccuracy, resumed.TestAccuracy)
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	var r Result
	require.NoError(t, json.Unmarshal(b, &r))
	require.Equal(t, *resumed, r, "the framework writes the task's result")
	got, err := os.ReadFile(final)
	require.NoError(t, err, "the resumed run went on to the end")
	require.Equal(t, want, got, "the same weights, byte for byte")
}
