package config

import (
	"testing"
)

// FuzzLoad feeds arbitrary TOML and one -set override to the loader: it
// must return, and whatever it accepts holds only finite floats and no key
// the override did not name.
func FuzzLoad(f *testing.F) {
	f.Add("[trainer]\nmax_steps = 5\nlr = 0.1\n", "trainer.lr=0.5")
	f.Add("[trainer]\nlr = nan\n", "trainer.seed=3")
	f.Add("[optim]\nbetas = [0.9, inf]\n", "")
	f.Add("[[groups]]\ndecay = 1.0\n[[groups]]\nbetas = [nan]\n", "groups=[]")
	f.Add("[weights]\na = -inf\n", "weights.b=1e400")
	f.Add("task = \"x\"\n", "trainer.device=\"cpu\"\nseed = 9")
	f.Add("[trainer]\nmax_steps = 5\n", "trainer.lr=nan")
	f.Add("scale = [1.0, 2.0]\n", "ptr.decay=inf")
	f.Fuzz(func(t *testing.T, src, override string) {
		c := &nested{}
		var overrides []string
		if override != "" {
			overrides = []string{override}
		}
		err := loadSource("fuzz.toml", []byte(src), c, overrides, nil)
		if err != nil {
			return
		}
		if fe := checkFinite(c); fe != nil {
			t.Fatalf("accepted a non-finite value: %v", fe)
		}
	})
}
