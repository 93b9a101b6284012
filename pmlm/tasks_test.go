package pmlm

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

var toyWords = strings.Fields("the a dog cat runs quickly over under green large river city and or because people walk eat red small house tree of in on with")

func toySentence(rng *rand.Rand, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = toyWords[rng.IntN(len(toyWords))]
	}
	return strings.Join(ws, " ")
}

func tinyConfig() torchmods.BertConfig {
	return torchmods.BertConfig{HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 32, HiddenAct: "gelu",
		MaxPositionEmbeddings: 64, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02, RelPosBins: 32, MaxRelPos: 128}
}

// The tiny end-to-end run: PMLM pre-training on a text file, then s2s-ft
// fine-tuning from that run on a JSON-lines copy task, decoding by beam
// search and scoring. Each stage reports finite numbers, writes its
// outputs, and the fine-tuning starts from the pre-trained weights.
func TestPretrainThenFinetune(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	var lines []string
	for range 80 {
		lines = append(lines, toySentence(rng, 6+rng.IntN(10))+".")
	}
	corpus := filepath.Join(dir, "corpus.txt")
	require.NoError(t, os.WriteFile(corpus, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	vocab := filepath.Join(dir, "vocab.txt")

	p := PretrainTask.Default()
	p.Trainer.MaxSteps, p.Trainer.LogEvery = 4, 1
	p.Model = tinyConfig()
	p.Optim.Warmup = 1
	p.Data = mlm.DataConfig{Corpus: corpus, Vocab: vocab, VocabSize: 100, MaxLen: 32, Batch: 4, Heldout: 0.2}
	pre, err := PretrainTask.StartWith(p, train.RunOptions{Out: filepath.Join(dir, "pretrain")})
	require.NoError(t, err)
	assert.Greater(t, pre.HeldoutAE, 0.0)
	assert.Greater(t, pre.HeldoutPAR, 0.0)
	assert.Equal(t, int64(4), pre.Steps)

	// AE only and PAR only run too, and still report both losses.
	for _, obj := range []ObjectiveConfig{{AE: true, PseudoToken: "[MASK]"}, {PAR: true, PseudoToken: "[MASK]"}} {
		q := *p
		q.Objective = obj
		r, err := PretrainTask.StartWith(&q, train.RunOptions{Out: filepath.Join(dir, fmt.Sprintf("pretrain-%v-%v", obj.AE, obj.PAR))})
		require.NoError(t, err)
		assert.Greater(t, r.HeldoutAE, 0.0)
		assert.Greater(t, r.HeldoutPAR, 0.0)
	}

	write := func(name string, n int) string {
		f, err := os.Create(filepath.Join(dir, name))
		require.NoError(t, err)
		enc := json.NewEncoder(f)
		for range n {
			s := toySentence(rng, 3+rng.IntN(4))
			require.NoError(t, enc.Encode(map[string]string{"src": s, "tgt": s}))
		}
		require.NoError(t, f.Close())
		return f.Name()
	}
	f := FinetuneTask.Default()
	f.Trainer.MaxSteps, f.Trainer.LogEvery = 3, 1
	f.Model = tinyConfig()
	f.Pretrained = filepath.Join(dir, "pretrain")
	f.S2S.MaxSourceLen, f.S2S.MaxTargetLen = 16, 10
	f.Decode.BeamSize, f.Decode.MaxTgtLength = 3, 8
	f.Optim.Warmup = 1
	f.Data = GenDataConfig{Corpus: "jsonl", Train: write("train.jsonl", 24), Test: write("test.jsonl", 5), Vocab: vocab, Batch: 4}
	out := filepath.Join(dir, "s2s")
	var log strings.Builder
	res, err := FinetuneTask.StartWith(f, train.RunOptions{Out: out, W: &log})
	require.NoError(t, err)
	assert.Equal(t, 5, res.TestExamples)
	assert.Greater(t, res.HeldoutLoss, 0.0)
	for _, v := range []float64{res.FirstMatch, res.Rouge1, res.Rouge2, res.RougeL, res.BLEU4} {
		assert.True(t, v >= 0 && v <= 1, "score %v", v)
	}
	b, err := os.ReadFile(filepath.Join(out, "predictions.tsv"))
	require.NoError(t, err)
	assert.Len(t, strings.Split(strings.TrimSpace(string(b)), "\n"), 6, "a header and one line per test example")
	assert.Contains(t, log.String(), "names converted", "fine-tuning loaded the pre-trained run")
	assert.Contains(t, log.String(), "test: first match")
}

// A config mistake is an error naming the key, before anything runs.
func TestConfigErrorsNameTheKey(t *testing.T) {
	p := PretrainTask.Default()
	p.Trainer.MaxSteps = 1
	p.Data = mlm.DataConfig{Corpus: "x", Vocab: "v.txt", VocabSize: 100, MaxLen: 32, Batch: 4, Heldout: 0.2}
	p.Objective = ObjectiveConfig{}
	assert.ErrorContains(t, p.Validate(), "objective.ae")
	p.Objective = ObjectiveConfig{AE: true}
	p.Masking.MaxSpan = 1
	assert.ErrorContains(t, p.Validate(), "max_span")

	f := FinetuneTask.Default()
	f.Trainer.MaxSteps = 1
	f.Data = GenDataConfig{Corpus: "wordnet", Task: "poems", Vocab: "v.txt", Batch: 1, Heldout: 0.05}
	assert.ErrorContains(t, f.Validate(), "data.task")
	f.Data.Task = GlossToWord
	f.LabelSmoothing = 1
	assert.ErrorContains(t, f.Validate(), "label_smoothing")
}

func TestReadJSONLErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(`{"src": "a", "tgt": "b"}`+"\n"+`{"src": "a"}`+"\n"), 0o644))
	_, err := ReadJSONL(p)
	assert.ErrorContains(t, err, "bad.jsonl:2")
	require.NoError(t, os.WriteFile(p, []byte("{\"src\": \"a\", \"tgt\": \"b\"}\nnot json\n"), 0o644))
	_, err = ReadJSONL(p)
	assert.ErrorContains(t, err, "bad.jsonl:2")
}

// s2s-ft's label-smoothed loss equals the KL divergence written out per
// token, and with ε = 0 the mean cross-entropy (up to the official +1e-5).
func TestSmoothedLossIsOfficialKL(t *testing.T) {
	logits := [][]float64{{0.5, -1, 2, 0.1, 0.3}, {1, 1, 0, -2, 0.7}}
	targets := []int64{2, 4}
	const eps, pad = 0.1, 0
	V := len(logits[0])
	want := 0.0
	for i, l := range logits {
		z := 0.0
		for _, v := range l {
			z += mathExp(v)
		}
		for c, v := range l {
			q := eps / float64(V-2)
			if c == pad {
				q = 0
			}
			if int64(c) == targets[i] {
				q = 1 - eps
			}
			if q > 0 {
				want += q * (mathLog(q) - (v - mathLog(z)))
			}
		}
	}
	want /= 2 + 1e-5
	got := smoothedLossOf(t, logits, targets, eps, pad)
	assert.InDelta(t, want, got, 1e-6)

	ce := 0.0
	for i, l := range logits {
		z := 0.0
		for _, v := range l {
			z += mathExp(v)
		}
		ce += mathLog(z) - l[targets[i]]
	}
	assert.InDelta(t, ce/(2+1e-5), smoothedLossOf(t, logits, targets, 0, pad), 1e-6)
}

// s2s-ft's tokenized format (lists of word pieces) reads as the text the
// pieces spell.
func TestReadJSONLTokenizedFormat(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tok.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(`{"src": ["media", "playback", "is", "un", "##su", "##pp", "##orted"], "tgt": "a slide ."}`+"\n"), 0o644))
	ex, err := ReadJSONL(p)
	require.NoError(t, err)
	require.Len(t, ex, 1)
	assert.Equal(t, "media playback is unsupported", ex[0].Source)
	assert.Equal(t, "a slide .", ex[0].Target)
}
