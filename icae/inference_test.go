package icae

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// A trained ICAE compresses a context once to a slots file; generating
// from the file is generating from the slots in memory, and the slots
// are the encoder's for [BOS] context. A pre-trained ICAE refuses a
// prompt; a fine-tuned one answers it in its format.
func TestInferenceCompressesOnceAndGeneratesFromSlots(t *testing.T) {
	if _, err := train.Lookup(PretrainTask.Name); err != nil {
		train.Register(LMTask, PretrainTask, FinetuneTask)
	}
	s := ts.NewScope()
	defer s.Close()
	run := t.TempDir()
	c := tinyPretrainConfig(t)
	c.Trainer.MaxSteps, c.Eval.Generate = 2, false
	_, err := PretrainTask.Start(c, run, false, io.Discard)
	require.NoError(t, err)

	in, err := LoadInference(run, "", gotch.CPU, io.Discard)
	require.NoError(t, err)
	defer in.Drop()
	text := "a tangible and visible entity; an entity that can cast a shadow. it was full of rackets, balls and other objects."
	slots, n, err := in.Compress(text)
	require.NoError(t, err)
	ids, err := in.Tok.Encode(text)
	require.NoError(t, err)
	assert.Equal(t, len(ids)+1, n, "BOS and the text")
	assert.Equal(t, []int64{int64(in.Model.SlotCount(n)), 32}, slots.MustSize())
	ts.NoGrad(func() {
		want, _ := in.Model.Compress([][]int64{append([]int64{in.BOS}, ids...)}, false)
		testutil.Close(t, slots, want, 1e-7)
	})

	path := filepath.Join(t.TempDir(), "slots.safetensors")
	require.NoError(t, in.SaveSlots(path, slots, n))
	read, err := in.ReadSlots(path, gotch.CPU)
	require.NoError(t, err)
	testutil.Close(t, read, slots, 1e-9, "the file holds the slots")
	o := torchmods.GenerateOptions{MaxNewTokens: 12}
	a, err := in.Generate(slots, ModeAE, "", false, o)
	require.NoError(t, err)
	b, err := in.Generate(read, ModeAE, "", false, o)
	require.NoError(t, err)
	assert.Equal(t, a, b)
	_, err = in.Generate(read, ModeLM, "", false, o)
	require.NoError(t, err)
	_, err = in.Generate(read, ModePrompt, "what is it?", false, o)
	assert.ErrorContains(t, err, "fine-tuned")

	ft := FinetuneTask.Default()
	ft.Trainer.MaxSteps, ft.Trainer.CheckpointEvery, ft.Trainer.TensorBoard = 1, 1, false
	ft.LLM, ft.Memory, ft.LoRA = c.LLM, c.Memory, c.LoRA
	ft.Format = FormatConfig{Format: "v1", MaxContext: 40}
	ft.Data = FinetuneData{Train: "testdata/pwc_train.jsonl", Eval: "testdata/pwc_eval.jsonl", Batch: 4}
	ft.Eval.Generate = false
	ftRun := t.TempDir()
	_, err = FinetuneTask.Start(ft, ftRun, false, io.Discard)
	require.NoError(t, err)
	fin, err := LoadInference(filepath.Join(ftRun, "checkpoints", "step-00000001"), "", gotch.CPU, io.Discard)
	require.NoError(t, err)
	defer fin.Drop()
	require.NotNil(t, fin.Format)
	_, err = fin.Generate(read, ModePrompt, "repeat the definition.", false, o)
	require.NoError(t, err)
}
