package mlm

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// tinyBert is torchmods/testdata/hf_bert_mlm's config.
var tinyBert = torchmods.BertConfig{VocabSize: 50, HiddenSize: 32, NumHiddenLayers: 2, NumAttentionHeads: 4, IntermediateSize: 64,
	HiddenAct: "gelu", MaxPositionEmbeddings: 16, TypeVocabSize: 2, LayerNormEps: 1e-12}

// LoadHF takes what torchmods.Resolve takes (here two HF folders, one of
// them sharded pickles with the TF-era names); a classifier's new head
// keeps its initialisation and is reported.
func TestLoadHF(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	for _, dir := range []string{"../torchmods/testdata/hf_bert_mlm", "../torchmods/testdata/hf_bert_mlm_bin_sharded"} {
		store := torchmods.NewStore(gotch.CPU)
		torchmods.NewBertForMaskedLM(store.Root(), tinyBert)
		var report bytes.Buffer
		require.NoError(t, LoadHF(store, dir, &report), dir)
		assert.Contains(t, report.String(), "loaded 42 tensors")
		assert.NotContains(t, report.String(), "missing")
		store.Drop()
	}
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	torchmods.NewBertForSequenceClassification(store.Root(), tinyBert, 3)
	var report bytes.Buffer
	require.NoError(t, LoadHF(store, "../torchmods/testdata/hf_bert_mlm", &report))
	assert.Contains(t, report.String(), "missing (4): bert.pooler.dense.weight, bert.pooler.dense.bias, classifier.weight, classifier.bias")

	require.NoError(t, CheckHFConfig("../torchmods/testdata/hf_bert_mlm", tinyBert))
	eight := tinyBert
	eight.NumAttentionHeads = 8
	assert.ErrorContains(t, CheckHFConfig("../torchmods/testdata/hf_bert_mlm", eight), "says num_attention_heads 4 (model 8)")
}
