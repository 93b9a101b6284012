package torchmods

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// TestBertParity loads the state dicts of testdata/gen_bert_parity.py's
// transcription of HF's BertForMaskedLM and BertForSequenceClassification,
// as HF saves them (tied decoder, position_ids), and compares the logits
// and every parameter's gradient, with padding in the batch.
func TestBertParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref, err := LoadWeights("testdata/bert_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	cfg := BertConfig{VocabSize: 50, HiddenSize: 32, NumHiddenLayers: 2, NumAttentionHeads: 4, IntermediateSize: 64, HiddenAct: "gelu",
		MaxPositionEmbeddings: 16, TypeVocabSize: 2, LayerNormEps: 1e-12}
	for _, c := range []string{"mlm", "cls"} {
		store := NewStore(gotch.CPU)
		var forward func(ids, types, mask *ts.Tensor) *ts.Tensor
		if c == "mlm" {
			m := NewBertForMaskedLM(store.Root(), cfg)
			forward = func(ids, types, mask *ts.Tensor) *ts.Tensor { return m.Forward(ids, types, mask, false) }
		} else {
			m := NewBertForSequenceClassification(store.Root(), cfg, 3)
			forward = func(ids, types, mask *ts.Tensor) *ts.Tensor { return m.Forward(ids, types, mask, false) }
		}
		sd := map[string]*ts.Tensor{}
		for k, v := range ref {
			if rest, ok := strings.CutPrefix(k, c+".sd."); ok {
				sd[rest] = v.MustShallowClone()
			}
		}
		dropped := BertStateDict(sd)
		if c == "mlm" {
			assert.Equal(t, []string{"bert.embeddings.position_ids", "cls.predictions.decoder.bias", "cls.predictions.decoder.weight"}, dropped)
		}
		_, err := store.Load(sd, true)
		require.NoError(t, err, "HF's names load strictly")
		logits := forward(ref[c+".ids"], ref[c+".types"], ref[c+".mask"])
		testutil.Close(t, logits, ref[c+".logits"], 1e-5, c)
		require.NoError(t, logits.MustMul(ref[c+".g"], false).MustSum(gotch.Float, true).Backward())
		got, want := grads(store), testutil.Sub(ref, c+".grad.")
		absolute := 0
		for name := range got {
			if strings.HasSuffix(name, "attention.self.key.bias") {
				// Softmax ignores a shift shared by all keys, so this gradient is 0
				// up to rounding on both sides; compare absolutely.
				require.Contains(t, want, name)
				assert.InDeltaSlice(t, want[name].Float64Values(), got[name].Float64Values(), 1e-5, "%s grad %s", c, name)
				delete(got, name)
				delete(want, name)
				absolute++
			}
		}
		n := testutil.Parity(t, got, want, 1e-5, "%s grad", c)
		assert.Equal(t, len(store.Params()), n+absolute, "%s: every parameter has its gradient in both", c)
		store.Drop()
	}
}

func TestBertLegacyNamesAndConfig(t *testing.T) {
	assert.Equal(t, []string{"bert.encoder.layer.0.output.LayerNorm.weight", "bert.embeddings.LayerNorm.bias", "x.gamma"},
		RenameLegacyBert([]string{"bert.encoder.layer.0.output.LayerNorm.gamma", "bert.embeddings.LayerNorm.beta", "x.gamma"}))
	c := BertBase()
	c.HiddenSize = 100
	assert.ErrorContains(t, c.Validate(), "not a multiple")
	c = BertBase()
	c.HiddenAct = "swish"
	assert.ErrorContains(t, c.Validate(), "hidden_act")
}
