package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type trainer struct {
	Seed     int64   `toml:"seed"`
	MaxSteps int64   `toml:"max_steps"`
	LR       float64 `toml:"lr"`
	Device   string  `toml:"device"`
}

type cfg struct {
	Task    string  `toml:"task"`
	Trainer trainer `toml:"trainer"`
}

func (c *cfg) Validate() error {
	if c.Trainer.MaxSteps <= 0 {
		return Field("trainer.max_steps", "must be positive, got %d", c.Trainer.MaxSteps)
	}
	return nil
}

func defaults() *cfg { return &cfg{Trainer: trainer{Seed: 1, MaxSteps: 100, LR: 1e-3, Device: "cpu"}} }

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

func TestLoadKeepsDefaultsAndAppliesOverrides(t *testing.T) {
	p := write(t, "task = \"basics\"\n\n[trainer]\nmax_steps = 50\n")
	c := defaults()
	require.NoError(t, Load(p, c, []string{"trainer.lr=0.5", "trainer.device=cuda", "task=other"}))
	assert.Equal(t, &cfg{Task: "other", Trainer: trainer{Seed: 1, MaxSteps: 50, LR: 0.5, Device: "cuda"}}, c)

	out := filepath.Join(t.TempDir(), "resolved.toml")
	require.NoError(t, Save(out, c))
	again := defaults()
	require.NoError(t, Load(out, again, nil))
	assert.Equal(t, c, again, "the saved config reproduces the run's")
}

func TestUnknownKeyNamesKeyAndLine(t *testing.T) {
	p := write(t, "task = \"basics\"\n\n[trainer]\nmax_steps = 50\nmax_stpes = 70\n")
	err := Load(p, defaults(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), p+`:5: unknown key "trainer.max_stpes"`)

	err = Load(write(t, "[trainer]\nmax_steps = 5\n"), defaults(), []string{"trainer.nope=1"})
	assert.ErrorContains(t, err, `unknown key "trainer.nope"`)
}

func TestWrongTypeAndRangeNameTheLine(t *testing.T) {
	p := write(t, "[trainer]\nseed = 1\nmax_steps = \"many\"\n")
	err := Load(p, defaults(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), p+":3:")
	assert.Contains(t, err.Error(), "max_steps")

	p = write(t, "[trainer]\nseed = 1\n\nmax_steps = -3\n")
	err = Load(p, defaults(), nil)
	assert.EqualError(t, err, p+":4: trainer.max_steps: must be positive, got -3")

	p = write(t, "[trainer\n")
	assert.ErrorContains(t, Load(p, defaults(), nil), p+":2: expected '.' or ']' to end table name")
	assert.ErrorContains(t, Load(p, defaults(), []string{"junk"}), p)
	assert.ErrorContains(t, Load(write(t, ""), defaults(), []string{"junk"}), `want section.key=value`)
}
