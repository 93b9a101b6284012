package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/mlm"
)

var tinyBert = []string{"-set", "model.hidden_size=32", "-set", "model.num_hidden_layers=1", "-set", "model.num_attention_heads=2",
	"-set", "model.intermediate_size=64", "-set", "data.vocab_size=300", "-set", "data.batch=32"}

// TestMLMEndToEnd pre-trains a tiny BERT with PTW under the cosine MRD
// schedule on a small text corpus: the logged masking ratio follows the
// schedule, PTW's tag weights move away from their uniform start, and the
// held-out loss falls. Then, if WordNet is installed, it fine-tunes on the
// lexname task from that run.
func TestMLMEndToEnd(t *testing.T) {
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus.txt")
	var lines []string
	animals := []string{"cat", "dog", "horse", "bird", "fish", "mouse"}
	verbs := []string{"runs", "sleeps", "eats", "jumps", "swims", "sings"}
	for i := range 600 {
		a, v := animals[i%6], verbs[(i/6)%6]
		lines = append(lines, fmt.Sprintf("the %s %s quickly and the small %s %s in the garden", a, v, animals[(i+1)%6], verbs[(i+2)%6]))
	}
	require.NoError(t, os.WriteFile(corpus, []byte(strings.Join(lines, "\n")), 0o644))
	run := filepath.Join(dir, "pretrain")
	args := append([]string{"train", "-out", run, "-set", `data.corpus="` + corpus + `"`, "-set", `data.vocab="` + filepath.Join(dir, "vocab.txt") + `"`,
		"-set", "trainer.max_steps=120", "-set", "trainer.eval_every=40", "-set", "trainer.log_every=40", "-set", "optim.warmup=10",
		"-set", "data.heldout=0.1"}, append(tinyBert, "../../configs/mlm/wordnet_ptw_cosine.toml")...)
	out, stderr, code := runRepro(t, args...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "training a 300-token WordPiece vocabulary")

	f, err := os.Open(filepath.Join(run, "metrics.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	var evals []map[string]float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row map[string]float64
		require.NoError(t, json.Unmarshal(sc.Bytes(), &row))
		if _, ok := row["heldout_mlm_loss"]; ok {
			evals = append(evals, row)
		}
	}
	require.Len(t, evals, 3)
	for _, e := range evals {
		want, _ := mlm.Ratio("cosine", 0.15, int64(e["step"])-1, 120, 0) // the last step's ratio
		assert.InDelta(t, want, e["mask_ratio"], 1e-12, "at step %v", e["step"])
	}
	assert.Greater(t, evals[0]["mask_ratio"], evals[2]["mask_ratio"], "the ratio decays")
	moved := 0.0
	for _, tag := range []string{"NOUN", "VERB", "DET", "ADV"} {
		moved = math.Max(moved, math.Abs(evals[2]["ptw_weight_"+tag]-0.5))
	}
	assert.Greater(t, moved, 0.05, "PTW weights leave 0.5 as per-tag losses separate")
	var res map[string]any
	readJSON(t, filepath.Join(run, "results.json"), &res)
	assert.Less(t, res["heldout_mlm_loss"].(float64), math.Log(300), "below a uniform guess over the vocabulary")
	_, err = os.Stat(filepath.Join(run, "ptw_weights.png"))
	assert.NoError(t, err)

	if _, err := os.Stat("/usr/share/wordnet/data.noun"); err != nil {
		return
	}
	ft := filepath.Join(dir, "lexname")
	args = append([]string{"train", "-out", ft, "-set", `pretrained="` + run + `"`, "-set", `data.vocab="` + filepath.Join(dir, "vocab.txt") + `"`,
		"-set", "trainer.max_steps=30"}, append(tinyBert, "../../configs/mlm/wordnet_lexname.toml")...)
	out, stderr, code = runRepro(t, args...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "loaded ")
	assert.Contains(t, out, "missing (4): bert.pooler.dense.weight, bert.pooler.dense.bias, classifier.weight, classifier.bias")
	assert.Contains(t, out, "45 classes")
}
