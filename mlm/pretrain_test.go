package mlm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// A tiny PTW pre-training on a folder corpus packed as the official
// pipeline packs it, with two micro-batches per step: it runs end to end,
// its examples are [CLS] seg_A [SEP] of whole paragraphs of at least 80
// characters, and the running loss has the 17 official tags, the three
// the WordNet tagger never emits still at 0.
func TestPretrainOfficialPackingPTW(t *testing.T) {
	if _, err := NewTagger(""); err != nil {
		t.Skip("wordnet-base not installed")
	}
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	require.NoError(t, os.MkdirAll(corpus, 0o755))
	words := strings.Fields("the a dog cat runs quickly over under green large river city and or because people walk eat red small house tree of in on with")
	rng := rand.New(rand.NewPCG(1, 2))
	for f := range 12 {
		var paras []string
		for range 3 + rng.IntN(6) {
			n := 4 + rng.IntN(40) // some under 80 characters, which the packer drops
			var ws []string
			for range n {
				ws = append(ws, words[rng.IntN(len(words))])
			}
			paras = append(paras, strings.Join(ws, " ")+".")
		}
		require.NoError(t, os.WriteFile(filepath.Join(corpus, fmt.Sprintf("doc%02d.txt", f)), []byte(strings.Join(paras, "\n")+"\n"), 0o644))
	}
	c := PretrainTask.Default()
	c.Trainer.MaxSteps, c.Trainer.Accumulate, c.Trainer.LogEvery = 3, 2, 1
	c.Model = torchmods.BertConfig{HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 2, IntermediateSize: 32, HiddenAct: "gelu",
		MaxPositionEmbeddings: 64, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02}
	c.Masking = MaskingConfig{Mode: "cosine", Ratio: 0.15, PTW: true, Warmup: LinWarmDecayWarmup}
	c.Optim = OptimConfig{LR: 1e-3, Warmup: 1, WeightDecay: 0.01, Clip: 1}
	c.Data = DataConfig{Corpus: corpus, Vocab: filepath.Join(dir, "vocab.txt"), VocabSize: 100, MaxLen: 64, Batch: 2, Heldout: 0.3, Packing: PackOfficial}
	res, err := PretrainTask.StartWith(c, train.RunOptions{Out: filepath.Join(dir, "run")})
	require.NoError(t, err)
	assert.Equal(t, Tags, res.PTWTags)
	require.Len(t, res.PTWLoss, 17)
	for _, tg := range Untagged {
		assert.Zero(t, res.PTWLoss[TagID(tg)], tg)
	}
	assert.Positive(t, res.PTWLoss[TagID("NOUN")], "nouns were masked and folded in")

	tok, prep, err := Prepare(c.Data, &strings.Builder{})
	require.NoError(t, err)
	require.NotEmpty(t, prep.Seqs)
	for i, s := range prep.Seqs {
		assert.Equal(t, tok.CLS, s.IDs[0], "example %d", i)
		assert.Equal(t, tok.SEP, s.IDs[len(s.IDs)-1], "example %d", i)
		assert.LessOrEqual(t, len(s.IDs), 64)
		assert.Equal(t, -1, prep.Docs[i].Lexname)
		for _, id := range s.IDs[1 : len(s.IDs)-1] {
			assert.NotEqual(t, tok.SEP, id, "one segment only")
		}
	}
}
