package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// repro vqa synth writes the synthetic scans in the public formats and,
// with -imagefolder, mae.pretrain's folder; answer and eval refuse a run
// that is not a vqa.finetune run, naming it.
func TestVQACommands(t *testing.T) {
	dir := t.TempDir()
	out, stderr, code := runRepro(t, "vqa", "synth", "-size", "48", "-train", "6", "-val", "3", "-test", "12", "-extra", "2", "-questions", "2",
		"-imagefolder", filepath.Join(dir, "folder"), filepath.Join(dir, "synth"))
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "wrote 23 images, 12 / 6 / 24 questions and 8 caption pairs")
	for _, f := range []string{"trainset.json", "valset.json", "testset.json", "answer_list.json", "captions.json", "README.txt", "images/test_00001.png"} {
		assert.FileExists(t, filepath.Join(dir, "synth", f))
	}
	tr, err := os.ReadDir(filepath.Join(dir, "folder", "train", "scan"))
	require.NoError(t, err)
	assert.Len(t, tr, 8, "training and caption-only images, no test image")

	run := filepath.Join(dir, "notvqa")
	require.NoError(t, os.MkdirAll(run, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(run, "config.toml"), []byte("task = \"template.spirals\"\n"), 0o644))
	_, stderr, code = runRepro(t, "vqa", "eval", run)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, run+" is not a vqa.finetune run")
	_, stderr, code = runRepro(t, "vqa", "answer", "-run", run, "x.png")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "want -run RUN, an IMAGE and at least one QUESTION")
}
