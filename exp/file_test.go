package exp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/template"
	"github.com/reprolab/repro/train"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// mlmLike is the shape of experiments/mlm_wordnet.toml: a shared warm-up,
// per-condition pre-training and fine-tuning that needs the pre-trained run
// of the same condition and seed.
const mlmLike = `name = "toy"
root = "out"
seeds = [0, 1]
jobs = 2
threads = 1

[stage.lexname]
config = "configs/lexname.toml"
set = { pretrained = "${pretrain}", "data.vocab" = "${root}/vocab.txt" }
metrics = ["test_accuracy"]

[stage.pretrain]
config = "configs/${condition}.toml"
after = ["vocab"]
set = { data = { vocab = "${root}/vocab.txt" }, "trainer.max_steps" = 10 }
metrics = ["heldout_mlm_loss"]

[stage.vocab]
config = "configs/fixed.toml"
over = []
set = { "trainer.max_steps" = 1 }

[[condition]]
name = "fixed"
label = "fixed 15%"
baseline = true

[[condition]]
name = "cosine"
set = { "masking.mode" = "cosine", "masking.list" = ["a", "${condition}"] }
`

func ids(runs []*Run) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func TestGridDependencyOrderAndSubstitution(t *testing.T) {
	e, err := Load(writeFile(t, "toy.toml", mlmLike))
	require.NoError(t, err)
	var stages []string
	for _, st := range e.Stages {
		stages = append(stages, st.Name)
	}
	assert.Equal(t, []string{"vocab", "pretrain", "lexname"}, stages, "dependencies first, whatever the file order")
	assert.Equal(t, []string{
		"vocab",
		"pretrain/fixed/seed-0", "lexname/fixed/seed-0",
		"pretrain/cosine/seed-0", "lexname/cosine/seed-0",
		"pretrain/fixed/seed-1", "lexname/fixed/seed-1",
		"pretrain/cosine/seed-1", "lexname/cosine/seed-1",
	}, ids(e.Runs), "seed by seed, each run after what it needs")
	pos := map[*Run]int{}
	for i, r := range e.Runs {
		pos[r] = i
	}
	for _, r := range e.Runs {
		for _, d := range r.Deps {
			assert.Less(t, pos[d], pos[r], "%s needs %s", r.ID, d.ID)
		}
	}

	byID := map[string]*Run{}
	for _, r := range e.Runs {
		byID[r.ID] = r
	}
	lex := byID["lexname/cosine/seed-1"]
	assert.Equal(t, filepath.Join("out", "lexname", "cosine", "seed-1"), lex.Dir)
	assert.Equal(t, []string{"pretrain/cosine/seed-1"}, ids(lex.Deps))
	assert.Equal(t, []string{
		`data.vocab="out/vocab.txt"`,
		`pretrained="` + filepath.Join("out", "pretrain", "cosine", "seed-1") + `"`,
		`masking.list=["a", "cosine"]`,
		`masking.mode="cosine"`,
		"trainer.seed=1",
	}, lex.Sets)
	pre := byID["pretrain/fixed/seed-0"]
	assert.Equal(t, "configs/fixed.toml", pre.Config)
	assert.Equal(t, []string{"vocab"}, ids(pre.Deps), "after: the shared warm-up")
	assert.Equal(t, []string{`data.vocab="out/vocab.txt"`, "trainer.max_steps=10", "trainer.seed=0"}, pre.Sets)
	assert.Equal(t, "configs/cosine.toml", byID["pretrain/cosine/seed-0"].Config)
	voc := byID["vocab"]
	assert.Nil(t, voc.Seed)
	assert.Equal(t, []string{"trainer.max_steps=1"}, voc.Sets, "a stage over nothing keeps the config's seed")
	assert.Equal(t, filepath.Join("out", "report"), e.ReportDir)
	assert.Equal(t, 2, e.Jobs)
	assert.Equal(t, 1, e.Threads)

	var tables []string
	for _, ts := range e.TableSpecs {
		tables = append(tables, ts.Name)
	}
	assert.Equal(t, []string{"pretrain.heldout_mlm_loss", "lexname.test_accuracy"}, tables)
}

// Select keeps the matching runs and what they depend on, in scheduling
// order, and refuses a pattern that matches nothing.
func TestSelectKeepsDependencies(t *testing.T) {
	e, err := Load(writeFile(t, "toy.toml", mlmLike))
	require.NoError(t, err)
	runs, err := e.Select([]string{"lexname/cosine/*"})
	require.NoError(t, err)
	assert.Equal(t, []string{
		"vocab",
		"pretrain/cosine/seed-0", "lexname/cosine/seed-0",
		"pretrain/cosine/seed-1", "lexname/cosine/seed-1",
	}, ids(runs), "a fine-tune brings its pre-training and the vocabulary")

	runs, err = e.Select([]string{"pretrain/*/seed-1", "vocab"})
	require.NoError(t, err)
	assert.Equal(t, []string{"vocab", "pretrain/fixed/seed-1", "pretrain/cosine/seed-1"}, ids(runs))

	runs, err = e.Select([]string{"*"})
	require.NoError(t, err)
	assert.Equal(t, []string{"vocab"}, ids(runs), `"*" does not cross a "/"`)

	_, err = e.Select([]string{"pretrain/fixd/*"})
	assert.ErrorContains(t, err, `run pattern "pretrain/fixd/*" matches none of toy's 9 runs`)
	assert.ErrorContains(t, err, "lexname/cosine/seed-1", "the error shows what an ID looks like")
	_, err = e.Select([]string{"pretrain/[fixed"})
	assert.ErrorContains(t, err, `run pattern "pretrain/[fixed"`)
}

func TestAxesAfterAndRestrictedConditions(t *testing.T) {
	e, err := Load(writeFile(t, "mae.toml", `
seeds = [3]

[stage.pretrain]
config = "pre.toml"
over = ["seed"]

[stage.probe]
config = "probe.toml"

[stage.summary]
config = "sum.toml"
over = ["condition"]
after = ["probe"]

[[condition]]
name = "mae"
stages = ["probe"]
set = { pretrained = "${pretrain}" }

[[condition]]
name = "random"
baseline = true
stages = ["probe", "summary"]
set = { pretrained = "" }

[[condition]]
name = "scratch"
stages = ["probe"]
config = { probe = "scratch.toml" }

[[axis]]
name = "lr"
key = "optim.lr"
values = [0.1, 6.4]
`))
	require.NoError(t, err)
	assert.Equal(t, "mae", e.Name)
	assert.Equal(t, filepath.Join("runs", "exp", "mae"), e.Root)
	byID := map[string]*Run{}
	for _, r := range e.Runs {
		byID[r.ID] = r
	}
	require.Contains(t, byID, "probe/scratch/lr-6.4/seed-3")
	assert.Equal(t, "scratch.toml", byID["probe/scratch/lr-6.4/seed-3"].Config)
	assert.Equal(t, []string{"optim.lr=6.4", "trainer.seed=3"}, byID["probe/scratch/lr-6.4/seed-3"].Sets)
	mae := byID["probe/mae/lr-0.1/seed-3"]
	assert.Equal(t, []string{"pretrain/seed-3"}, ids(mae.Deps))
	assert.Equal(t, `pretrained="`+filepath.Join(e.Root, "pretrain", "seed-3")+`"`, mae.Sets[0])
	// summary/random waits for both lr values of probe/random, and only those.
	assert.Equal(t, []string{"probe/random/lr-0.1/seed-3", "probe/random/lr-6.4/seed-3"}, ids(byID["summary/random"].Deps))
	assert.NotContains(t, byID, "summary/scratch")
	assert.Len(t, e.Runs, 1+3*2+1)
}

// TestAxisSetOnlyInItsStages: an axis of the pre-training's length sets
// trainer.max_steps in the pre-training only; the prompt runs vary over it
// (one per pre-training, in its own directory, waiting for that one) but
// keep their own max_steps.
func TestAxisSetOnlyInItsStages(t *testing.T) {
	e, err := Load(writeFile(t, "clip.toml", `
seeds = [1]

[stage.pretrain]
config = "clip.toml"
over = ["steps"]

[stage.prompt]
config = "coop.toml"
set = { "clip.path" = "${pretrain}" }

[[axis]]
name = "steps"
key = "trainer.max_steps"
values = [400, 2000]
stages = ["pretrain"]

[[axis]]
name = "noise"
key = "data.scenes.noise"
values = [0.03, 0.12]
`))
	require.NoError(t, err)
	byID := map[string]*Run{}
	for _, r := range e.Runs {
		byID[r.ID] = r
	}
	require.Len(t, e.Runs, 2+2*2)
	assert.Equal(t, []string{"trainer.max_steps=400"}, byID["pretrain/steps-400"].Sets)
	p := byID["prompt/steps-2000/noise-0.12/seed-1"]
	require.NotNil(t, p)
	assert.Equal(t, []string{"pretrain/steps-2000"}, ids(p.Deps))
	assert.Equal(t, []string{`clip.path="` + filepath.Join(e.Root, "pretrain", "steps-2000") + `"`, "data.scenes.noise=0.12", "trainer.seed=1"}, p.Sets)

	for _, tc := range []struct{ stages, want string }{
		{`["pretrian"]`, `stages names "pretrian", which is not a stage`},
		{`["prompt"]`, "stage prompt does not vary over it"},
	} {
		_, err := Load(writeFile(t, "bad.toml", `
[stage.pretrain]
config = "clip.toml"

[stage.prompt]
config = "coop.toml"
over = []

[[axis]]
name = "steps"
key = "trainer.max_steps"
values = [400]
stages = `+tc.stages+"\n"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestParserErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"unknown top-level key", "name = \"x\"\njobz = 2\n[stage.a]\nconfig = \"a.toml\"\n",
			[]string{":2: unknown key \"jobz\""}},
		{"unknown stage key", "[stage.a]\nconfig = \"a.toml\"\n\n[stage.b]\nconfig = \"b.toml\"\nmetric = [\"x\"]\n",
			[]string{":6: unknown key \"stage.b.metric\""}},
		{"unknown condition key", "[stage.a]\nconfig = \"a.toml\"\n\n[[condition]]\nname = \"c\"\nlabl = \"C\"\n",
			[]string{":6: unknown key \"condition.labl\""}},
		{"wrong type", "jobs = \"two\"\n[stage.a]\nconfig = \"a.toml\"\n", []string{":1:", "jobs"}},
		{"cycle", "[stage.a]\nconfig = \"a.toml\"\nset = { x = \"${c}\" }\n\n[stage.b]\nconfig = \"b.toml\"\nafter = [\"a\"]\n\n[stage.c]\nconfig = \"c.toml\"\nset = { y = \"${b}/w\" }\n",
			[]string{":1: dependency cycle: a -> c -> b -> a"}},
		{"self reference", "[stage.a]\nconfig = \"a.toml\"\nset = { x = \"${a}\" }\n", []string{"dependency cycle: a -> a"}},
		{"unknown stage in a reference", "[stage.a]\nconfig = \"a.toml\"\n\n[stage.b]\nconfig = \"b.toml\"\nset = { pretrained = \"${pretrian}\" }\n",
			[]string{":6:", "${pretrian}", "not a stage or a variable"}},
		{"unknown stage in after", "[stage.a]\nconfig = \"a.toml\"\nafter = [\"zz\"]\n", []string{":3:", `after names "zz"`}},
		{"unknown stage in a condition", "[stage.a]\nconfig = \"a.toml\"\n\n[[condition]]\nname = \"c\"\nstages = [\"b\"]\n",
			[]string{":6:", `stages names "b"`}},
		{"condition reference to an unknown stage", "[stage.a]\nconfig = \"a.toml\"\n\n[[condition]]\nname = \"c\"\n\n[[condition]]\nname = \"d\"\nset = { p = \"${nope}\" }\n",
			[]string{":9:", "${nope}"}},
		{"ambiguous reference", "seeds = [0, 1]\n[stage.a]\nconfig = \"a.toml\"\n\n[stage.b]\nconfig = \"b.toml\"\nover = []\nset = { p = \"${a}\" }\n",
			[]string{":8:", "varies over seed while b does not"}},
		{"variable the stage does not vary over", "seeds = [0]\n[stage.a]\nconfig = \"a.toml\"\nover = []\nset = { p = \"x${seed}\" }\n",
			[]string{":5:", "does not vary over seed"}},
		{"no stages", "name = \"x\"\n", []string{"no stages"}},
		{"no config", "[stage.a]\nmetrics = [\"x\"]\n", []string{":1:", "no config"}},
		{"bad over", "[stage.a]\nconfig = \"a.toml\"\nover = [\"lr\"]\n", []string{":3:", `"lr"`}},
		{"duplicate condition", "[stage.a]\nconfig = \"a.toml\"\n[[condition]]\nname = \"c\"\n[[condition]]\nname = \"c\"\n", []string{"defined twice"}},
		{"table metric of an unknown stage", "[stage.a]\nconfig = \"a.toml\"\n[[table]]\nname = \"t\"\ncolumns = [{ metric = \"b.acc\" }]\n", []string{`"b.acc"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "e.toml", tc.text)
			_, err := Load(p)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.True(t, strings.HasPrefix(err.Error(), p), "the error names the file: %v", err)
		})
	}
}

func TestTomlValueIsWhatSetTakes(t *testing.T) {
	for v, want := range map[any]string{"a\"b": `"a\"b"`, int64(3): "3", 0.001: "0.001", true: "true"} {
		got, err := tomlValue(v)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
}

func TestDiffConfigsNamesTheKeys(t *testing.T) {
	a := []byte("task = \"x\"\n[trainer]\nseed = 0\nmax_steps = 60\n[optim]\nlr = 0.1\n")
	b := []byte("task = \"x\"\n[trainer]\nseed = 0\nmax_steps = 61\n[optim]\nlr = 0.1\nwarmup = 5\n")
	d, err := DiffConfigs(a, b, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"optim.warmup: not in the saved config, now 5", "trainer.max_steps: saved 60, now 61"}, d)
	d, err = DiffConfigs(a, a, nil)
	require.NoError(t, err)
	assert.Empty(t, d)

	// A key the task added later, absent from the saved config and now at
	// the value its absence stands for, leaves the experiment the same; at
	// another value, or where the saved config has the key, it does not.
	same := func(key string, inSaved bool, now any) bool {
		return key == "optim.warmup" && !inSaved && now == int64(5)
	}
	d, err = DiffConfigs(a, b, same)
	require.NoError(t, err)
	assert.Equal(t, []string{"trainer.max_steps: saved 60, now 61"}, d)
	c := []byte("task = \"x\"\n[trainer]\nseed = 0\nmax_steps = 60\n[optim]\nlr = 0.1\nwarmup = 6\n")
	d, err = DiffConfigs(a, c, same)
	require.NoError(t, err)
	assert.Equal(t, []string{"optim.warmup: not in the saved config, now 6"}, d)
	d, err = DiffConfigs(c, b, same)
	require.NoError(t, err)
	assert.Contains(t, d, "optim.warmup: saved 6, now 5")
}

// TestSameExperimentKeys: logging and checkpointing keys never make a run
// another experiment; a task's added keys do only at another value than
// their absence stood for.
func TestSameExperimentKeys(t *testing.T) {
	if _, err := train.Lookup(template.Task.Name); err != nil {
		train.Register(template.Task)
	}
	same := sameExperiment([]byte("task = \"template.spirals\"\n"))
	require.NotNil(t, same)
	assert.True(t, same("trainer.checkpoint_every", true, int64(10)))
	assert.True(t, same("trainer.tensorboard", false, true), "runs before event files are the same runs")
	assert.False(t, same("trainer.max_steps", true, int64(10)))
	assert.False(t, same("trainer.max_steps", false, int64(10)), "a key nobody declared added")
	assert.Nil(t, sameExperiment([]byte("task = \"no.such\"\n")))
}
