package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type optim struct {
	Betas []float64 `toml:"betas"`
	Decay float32   `toml:"decay"`
}

type nested struct {
	Trainer trainer            `toml:"trainer"`
	Optim   optim              `toml:"optim"`
	Scale   [2]float64         `toml:"scale"`
	Groups  []optim            `toml:"groups"`
	Weights map[string]float64 `toml:"weights"`
	Ptr     *optim             `toml:"ptr"`
	Untyped float64
	ignored float64
}

// TestNonFiniteFloatsAreRefused is the reliability issue's item 8: NaN
// passes every range check (NaN < 0 and NaN > 1 are both false), so
// mask_ratio = nan or lr = nan used to run. Every float key is refused
// when NaN or infinite, naming the key and its line, whether it comes from
// the file or from -set, however deep in the struct it sits.
func TestNonFiniteFloatsAreRefused(t *testing.T) {
	for name, c := range map[string]struct{ text, want string }{
		"lr nan":          {"[trainer]\nmax_steps = 5\nlr = nan\n", ":3: trainer.lr: must be a finite number, got NaN"},
		"lr inf":          {"[trainer]\n\nlr = +inf\n", ":3: trainer.lr: must be a finite number, got +Inf"},
		"float32":         {"[optim]\ndecay = nan\n", ":2: optim.decay: must be a finite number, got NaN"},
		"slice":           {"[optim]\nbetas = [0.9, nan]\n", ":2: optim.betas[1]: must be a finite number, got NaN"},
		"array":           {"scale = [inf, 1.0]\n", ":1: scale[0]: must be a finite number"},
		"array of tables": {"[[groups]]\ndecay = 1.0\n[[groups]]\nbetas = [nan]\n", "groups[1].betas[0]: must be a finite number"},
		"map":             {"[weights]\na = 1.0\nb = nan\n", ":3: weights.b: must be a finite number"},
		"pointer":         {"[ptr]\ndecay = nan\n", ":2: ptr.decay: must be a finite number"},
		"untagged":        {"Untyped = nan\n", ":1: Untyped: must be a finite number"},
	} {
		p := write(t, c.text)
		c2 := &nested{}
		err := LoadWith(p, c2, nil, nil)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), p+":", name)
			assert.Contains(t, err.Error(), c.want, name)
		}
	}

	p := write(t, "[trainer]\nmax_steps = 5\nlr = 0.1\n")
	err := Load(p, defaults(), []string{"trainer.lr=nan"})
	assert.EqualError(t, err, "--set trainer.lr=nan: trainer.lr: must be a finite number, got NaN")
	err = Load(p, defaults(), []string{"trainer.lr=-inf"})
	assert.ErrorContains(t, err, "must be a finite number, got -Inf")
	assert.NoError(t, LoadWith(p, &nested{Optim: optim{Betas: []float64{0.9, 0.999}}}, []string{"optim.decay=0.05"}, nil))
}

// TestSetCannotInjectKeys is item 8's other half: a -set value with a
// newline used to append arbitrary TOML after the key it named.
func TestSetCannotInjectKeys(t *testing.T) {
	p := write(t, "[trainer]\nmax_steps = 5\n")
	for _, o := range []string{
		"trainer.device=cpu\n[trainer]\nmax_steps = -1",
		"trainer.device=cpu\nseed = 9",
		"trainer.device=\"cpu\"\nseed = 9",
		"trainer.max_steps=7\n[trainer2]",
		"trainer.device=cpu\rseed = 9",
		"trainer.device=\"cpu\"\x00",
		"trainer]\nseed=9\n[trainer.device=cpu",
		"trainer.dev ice=cpu",
		"trainer.=cpu",
		"[trainer].device=cpu",
		"\"trainer\".device=cpu",
	} {
		c := defaults()
		err := Load(p, c, []string{o})
		if assert.Error(t, err, "%q", o) {
			assert.Contains(t, err.Error(), "--set", "%q", o)
		}
		assert.Equal(t, int64(1), c.Trainer.Seed, "%q", o)
		assert.Equal(t, int64(5), c.Trainer.MaxSteps, "%q", o)
	}
	c := defaults()
	require.NoError(t, Load(p, c, []string{"trainer.device=cuda:1", "task=a # b", "trainer.seed = 7"}))
	assert.Equal(t, "cuda:1", c.Trainer.Device)
	assert.Equal(t, "a # b", c.Task, "a bare word keeps what follows #")
	assert.Equal(t, int64(7), c.Trainer.Seed)
}
