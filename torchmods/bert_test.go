package torchmods

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// TestBertParity loads the state dicts of HF's own BertForMaskedLM and
// BertForSequenceClassification (transformers v4.26.1's modeling_bert.py,
// run by testdata/gen_bert_parity.py on torch 1.13), as HF saves them (tied
// decoder, position_ids), and compares the logits and every parameter's
// gradient with HF's, with padding in the batch.
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
		worst, worstName := 0.0, ""
		for name, g := range got {
			if w, ok := want[name]; ok {
				if e := testutil.RelErr(g, w); e > worst {
					worst, worstName = e, name
				}
			}
		}
		t.Logf("%s: logits relative error %.2g; %d gradients, largest relative error %.2g (%s)",
			c, testutil.RelErr(logits, ref[c+".logits"]), n, worst, worstName)
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

// TestBertAddedKeysCoverNewKeys fails when a key is added to BertConfig
// without a line in BertAddedKeys: every run saved before it would then
// count as a changed experiment in repro exp and refuse -resume (as
// fusion_layer and encoder_width did to mlm's and pmlm's runs).
func TestBertAddedKeysCoverNewKeys(t *testing.T) {
	// The [model] keys of the first saved runs (configs/mlm/wordnet_*.toml, 2026-11-26).
	original := map[string]bool{}
	for _, k := range strings.Fields(`vocab_size hidden_size num_hidden_layers num_attention_heads
		intermediate_size hidden_act hidden_dropout_prob attention_probs_dropout_prob
		max_position_embeddings type_vocab_size layer_norm_eps initializer_range pad_token_id`) {
		original[k] = true
	}
	added := BertAddedKeys(nil)
	typ := reflect.TypeOf(BertConfig{})
	for i := 0; i < typ.NumField(); i++ {
		key, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ",")
		if key == "" || key == "-" || original[key] {
			continue
		}
		v, ok := added["model."+key]
		if assert.True(t, ok, "BertConfig key %q is neither original nor in BertAddedKeys", key) {
			assert.Equal(t, reflect.Zero(typ.Field(i).Type).Interface(), v, "model.%s's absent value must be its zero value (omitempty)", key)
		}
	}
}
