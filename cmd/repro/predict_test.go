package main

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// textRun writes a text.classify config of the fixture BERT on a tiny
// two-class CSV (and a CSV of new rows) into dir.
func textRun(t *testing.T, dir string) (config string) {
	t.Helper()
	rows := "sentence,label\n"
	for i := range 24 {
		rows += []string{"the movie was good,pos\n", "the plot was awful,neg\n", "it was great,pos\n", "this is bad,neg\n"}[i%4]
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "train.csv"), []byte(rows), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "new.csv"), []byte("sentence,label\nthe film was good,pos\nthe end was awful,neg\n"), 0o644))
	cfg := filepath.Join(dir, "c.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`task = "text.classify"
pretrained = "../../torchmods/testdata/hf_bert_mlm"
tokenizer = "../../textclf/testdata/vocab.txt"
max_len = 16
[trainer]
epochs = 10
checkpoint_every = 20
tensorboard = false
[optim]
lr = 3e-3
[data]
train = %q
batch = 8
`, filepath.Join(dir, "train.csv"))), 0o644))
	return cfg
}

// repro predict runs a trained text.classify run on new rows: config.toml
// says how to read them, the run's config.json, tokenizer and newest
// checkpoint make the model, and the predictions come out in GLUE's
// format, with metrics when the rows have labels.
func TestPredictText(t *testing.T) {
	dir := t.TempDir()
	cfg := textRun(t, dir)
	run := filepath.Join(dir, "run")
	_, stderr, code := runRepro(t, "train", "-out", run, cfg)
	require.Equal(t, 0, code, stderr)

	out := filepath.Join(dir, "pred.tsv")
	_, stderr, code = runRepro(t, "predict", "-out", out, run, filepath.Join(dir, "new.csv"))
	require.Equal(t, 0, code, stderr)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "index\tprediction\n0\tpos\n1\tneg\n", string(b))
	assert.Contains(t, stderr, "new_accuracy 1.0000", "labelled rows are scored")

	// An earlier checkpoint by name; standard output without -out.
	stdout, stderr, code := runRepro(t, "predict", "-checkpoint", filepath.Join(run, "checkpoints", "step-00000020"), run, filepath.Join(dir, "new.csv"))
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(stdout, "index\tprediction\n"), stdout)
	assert.Contains(t, stderr, "step-00000020")

	_, stderr, code = runRepro(t, "predict", dir, "x.csv")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "config.toml")
}

// imageRun writes an image.classify config of the MAE fixture on a tiny
// folder of dark and light images (and a new light image) into dir.
func imageRun(t *testing.T, dir string) (config string) {
	t.Helper()
	img := func(path string, bright bool) {
		g := image.NewGray(image.Rect(0, 0, 28, 28))
		for i := range g.Pix {
			g.Pix[i] = uint8(40 + i%7)
			if bright {
				g.Pix[i] = uint8(200 + i%7)
			}
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		f, err := os.Create(path)
		require.NoError(t, err)
		require.NoError(t, png.Encode(f, g))
		require.NoError(t, f.Close())
	}
	for _, split := range []string{"train", "val"} {
		for i := range 8 {
			img(filepath.Join(dir, "data", split, "dark", fmt.Sprintf("%d.png", i)), false)
			img(filepath.Join(dir, "data", split, "light", fmt.Sprintf("%d.png", i)), true)
		}
	}
	img(filepath.Join(dir, "new", "a.png"), true)
	cfg := filepath.Join(dir, "c.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`task = "image.classify"
pretrained = "../../mae/testdata/hf_vitmae_grey"
[trainer]
epochs = 4
checkpoint_every = 8
tensorboard = false
[optim]
blr = 0.1
warmup_epochs = 1
[data]
dir = %q
batch = 8
scale = [1.0, 1.0]
crop_pct = 1.0
`, filepath.Join(dir, "data"))), 0o644))
	return cfg
}

// repro predict on an image.classify run: images from a folder, the k best
// classes of each with their probabilities.
func TestPredictImages(t *testing.T) {
	dir := t.TempDir()
	cfg := imageRun(t, dir)
	run := filepath.Join(dir, "run")
	_, stderr, code := runRepro(t, "train", "-out", run, cfg)
	require.Equal(t, 0, code, stderr)
	stdout, stderr, code := runRepro(t, "predict", "-k", "2", run, filepath.Join(dir, "new"))
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 2, stdout)
	assert.Equal(t, "path\tprediction\tprobability\tprediction2\tprobability2", lines[0])
	assert.Regexp(t, `a\.png\tlight\t0\.\d{4}\tdark\t0\.\d{4}$`, lines[1])
}

// Both tasks, killed with SIGKILL between checkpoints and resumed, end with
// the weights of an uninterrupted run, byte for byte.
func TestKillAndResumeFineTuning(t *testing.T) {
	for _, tc := range []struct {
		name, kill, final string
		config            func(*testing.T, string) string
	}{
		{"text", "step 25/30 ", "step-00000030", textRun},
		{"image", "step 6/8 ", "step-00000008", imageRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tc.config(t, dir)
			full, killed := filepath.Join(dir, "full"), filepath.Join(dir, "killed")
			sets := []string{"-set", "trainer.log_every=1", "-set", "trainer.checkpoint_every=4", "-set", "trainer.keep_checkpoints=10"}
			if tc.name == "text" {
				sets = append(sets, "-set", "trainer.epochs=10", "-set", "trainer.checkpoint_every=10")
			}
			_, stderr, code := runRepro(t, append(append([]string{"train", "-out", full}, sets...), cfg)...)
			require.Equal(t, 0, code, stderr)
			runKilledAt(t, tc.kill, append(append([]string{"train", "-out", killed}, sets...), cfg)...)
			require.NoFileExists(t, filepath.Join(killed, "results.json"))
			_, stderr, code = runRepro(t, append(append([]string{"train", "-resume", killed}, sets...), cfg)...)
			require.Equal(t, 0, code, stderr)
			a := readFile(t, filepath.Join(full, "checkpoints", tc.final, "model.safetensors"))
			b := readFile(t, filepath.Join(killed, "checkpoints", tc.final, "model.safetensors"))
			assert.True(t, a == b, "model.safetensors differs after kill and resume")
		})
	}
}
