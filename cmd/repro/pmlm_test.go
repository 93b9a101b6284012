package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var tinyUniLM = []string{"-set", "model.hidden_size=16", "-set", "model.num_hidden_layers=1", "-set", "model.num_attention_heads=2",
	"-set", "model.intermediate_size=32"}

// The configs run through the CLI: PMLM pre-training on a text file
// (which trains the vocabulary), s2s fine-tuning from it on s2s-ft JSON
// lines, then `repro pmlm generate` decodes a JSON-lines file and
// arguments with the run, one line per source, and a bad line is an error
// naming the file and line.
func TestPMLMEndToEnd(t *testing.T) {
	dir := t.TempDir()
	words := strings.Fields("red green blue cat dog bird runs sleeps eats big small old")
	var lines []string
	for i := range 120 {
		lines = append(lines, fmt.Sprintf("the %s %s %s and the %s %s", words[i%12], words[(i/12)%12], words[(i+5)%12], words[(i+7)%12], words[(i/3)%12]))
	}
	corpus := filepath.Join(dir, "corpus.txt")
	require.NoError(t, os.WriteFile(corpus, []byte(strings.Join(lines, "\n")), 0o644))
	vocab := filepath.Join(dir, "vocab.txt")
	pre := filepath.Join(dir, "pretrain")
	args := append([]string{"train", "-out", pre, "-set", `data.corpus="` + corpus + `"`, "-set", `data.vocab="` + vocab + `"`,
		"-set", "data.vocab_size=200", "-set", "trainer.max_steps=3", "-set", "optim.warmup=1", "-set", "eval_sequences=16"},
		append(tinyUniLM, "../../configs/pmlm/wordnet_pmlm.toml")...)
	_, stderr, code := runRepro(t, args...)
	require.Equal(t, 0, code, stderr)

	jsonl := func(name string, from, n int) string {
		var b strings.Builder
		for i := from; i < from+n; i++ {
			src := strings.Join(strings.Fields(lines[i])[:4], " ")
			j, _ := json.Marshal(map[string]string{"src": src, "tgt": src})
			b.Write(append(j, '\n'))
		}
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
		return p
	}
	trainFile, testFile := jsonl("train.jsonl", 0, 40), jsonl("test.jsonl", 100, 4)
	s2s := filepath.Join(dir, "s2s")
	args = append([]string{"train", "-out", s2s, "-set", `data.corpus="jsonl"`, "-set", `data.train="` + trainFile + `"`,
		"-set", `data.test="` + testFile + `"`, "-set", `data.vocab="` + vocab + `"`, "-set", `pretrained="` + pre + `"`,
		"-set", "trainer.max_steps=3", "-set", "optim.warmup=1", "-set", "decode.beam_size=2", "-set", "decode.max_tgt_length=6"},
		append(tinyUniLM, "../../configs/pmlm/wordnet_gloss2word.toml")...)
	_, stderr, code = runRepro(t, args...)
	require.Equal(t, 0, code, stderr)
	res, err := os.ReadFile(filepath.Join(s2s, "results.json"))
	require.NoError(t, err)
	assert.Contains(t, string(res), `"test_examples": 4`)

	out, stderr, code := runRepro(t, "pmlm", "generate", "-run", s2s, "-in", testFile)
	require.Equal(t, 0, code, stderr)
	assert.Len(t, strings.Split(strings.TrimRight(out, "\n"), "\n"), 4, "one line per source: %q", out)
	out, stderr, code = runRepro(t, "pmlm", "generate", "-run", s2s, "-beam", "1", "the red cat", "a green bird")
	require.Equal(t, 0, code, stderr)
	assert.Len(t, strings.Split(strings.TrimRight(out, "\n"), "\n"), 2)

	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte("{\"src\": \"a\"}\n{\"tgt\": \"b\"}\n"), 0o644))
	_, stderr, code = runRepro(t, "pmlm", "generate", "-run", s2s, "-in", bad)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "bad.jsonl:2")
	_, stderr, code = runRepro(t, "pmlm", "generate", "-run", pre, "x")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "not pmlm.s2s")
}
