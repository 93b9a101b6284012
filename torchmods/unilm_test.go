package torchmods

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// unilmTiny is the model of testdata/gen_unilm.py.
var unilmTiny = BertConfig{VocabSize: 50, HiddenSize: 32, NumHiddenLayers: 2, NumAttentionHeads: 4, IntermediateSize: 48, HiddenAct: "gelu",
	MaxPositionEmbeddings: 32, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02, RelPosBins: 32, MaxRelPos: 128}

// TestUniLMParity loads the state dict of gen_unilm.py's transcription of
// s2s-ft's BertForSequenceToSequence, as save_pretrained writes it, and
// compares the relative position buckets exactly, and the hidden states,
// the MLM logits and every parameter's gradient, for a batch with
// repeating explicit positions and 2-D attention masks (a pseudo-masked
// input and a random one); then default positions with a padding mask.
func TestUniLMParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "unilm_parity.safetensors")
	require.NoError(t, unilmTiny.Validate())
	store := NewStore(gotch.CPU)
	defer store.Drop()
	m := NewBertForMaskedLM(store.Root(), unilmTiny)
	sd := map[string]*ts.Tensor{}
	for k, v := range testutil.Sub(ref, "sd.") {
		sd[k] = v.MustShallowClone()
	}
	report, err := UniLMStateDict(sd)
	require.NoError(t, err)
	assert.Equal(t, []string{"cls.predictions.decoder_weight", "crit_mask_lm_smoothed.one_hot"}, report.Dropped)
	assert.Empty(t, report.Renamed)
	_, err = store.Load(sd, true)
	require.NoError(t, err, "s2s-ft's names load strictly")

	in := BertInput{IDs: ref["ids"], TypeIDs: ref["types"], Positions: ref["positions"], Mask: ref["mask"]}
	assert.Equal(t, ref["buckets"].Int64Values(), m.Bert.relPosBuckets(ref["positions"]).Int64Values(), "buckets")
	hidden := m.Bert.ForwardInput(in, false)
	testutil.Close(t, hidden, ref["hidden"], 1e-5, "hidden")
	logits := m.Logits(hidden)
	testutil.Close(t, logits, ref["logits"], 1e-5, "logits")
	t.Logf("relative error: hidden %.2g, logits %.2g", testutil.RelErr(hidden, ref["hidden"]), testutil.RelErr(logits, ref["logits"]))

	require.NoError(t, logits.MustMul(ref["g"], false).MustSum(gotch.Float, true).Backward())
	got, want := grads(store), testutil.Sub(ref, "grad.")
	worst, worstName := 0.0, ""
	for name, g := range got {
		if w, ok := want[name]; ok && strings.HasSuffix(name, "attention.self.key.bias") {
			// Softmax ignores a shift shared by all keys, so this gradient is 0
			// up to rounding on both sides; compare absolutely.
			assert.InDeltaSlice(t, w.Float64Values(), g.Float64Values(), 1e-5, "grad %s", name)
			delete(got, name)
			delete(want, name)
		} else if ok {
			if e := testutil.RelErr(g, w); e > worst {
				worst, worstName = e, name
			}
		}
	}
	n := testutil.Parity(t, got, want, 1e-5, "grad")
	assert.Equal(t, len(store.Params())-2, n, "every parameter has its gradient in both")
	t.Logf("largest gradient relative error %.2g (%s)", worst, worstName)

	ts.NoGrad(func() {
		plain := m.Bert.ForwardInput(BertInput{IDs: ref["ids"], TypeIDs: ref["types"], Mask: ref["plain.mask"]}, false)
		testutil.Close(t, plain, ref["plain.hidden"], 1e-5, "default positions, padding mask")
		t.Logf("relative error: default positions %.2g", testutil.RelErr(plain, ref["plain.hidden"]))
	})
}

// TestRelPosBucketsMatchUniLM compares RelativePositionBucket with the
// official function over relative positions from -140 to 140, beyond
// max_distance on both sides, for both directions and another size.
func TestRelPosBucketsMatchUniLM(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "unilm_parity.safetensors")
	rel := ref["bucket.rel"]
	for _, c := range []struct {
		bi         bool
		bins, dist int64
	}{{true, 32, 128}, {false, 32, 128}, {true, 8, 20}} {
		dir := map[bool]string{true: "bi", false: "uni"}[c.bi]
		want := ref[fmt.Sprintf("bucket.%s.%d.%d", dir, c.bins, c.dist)]
		require.NotNil(t, want)
		got := RelativePositionBucket(rel, c.bi, c.bins, c.dist)
		assert.Equal(t, want.Int64Values(), got.Int64Values(), "%s %d buckets, max distance %d", dir, c.bins, c.dist)
		if c.bins == 32 {
			// The same function as T5's.
			for i, r := range rel.Int64Values() {
				require.Equal(t, T5Bucket(r, c.bi, c.bins, c.dist), want.Int64Values()[i], "T5Bucket at %d", r)
			}
		}
	}
	// Shapes are kept.
	b := RelativePositionBucket(ts.MustOfSlice([]int64{-200, -3, 0, 3, 200}).MustView([]int64{1, 5}, true), true, 32, 128)
	assert.Equal(t, []int64{1, 5}, b.MustSize())
	assert.Equal(t, []int64{15, 3, 0, 19, 31}, b.Int64Values())
	err := Try(func() { RelativePositionBucket(rel, true, 2, 128) })
	assert.ErrorContains(t, err, "exact range")
	err = Try(func() { RelativePositionBucket(rel.MustTotype(gotch.Float, false), true, 32, 128) })
	assert.ErrorContains(t, err, "int64")
}

// TestBertForwardInput checks what ForwardInput adds without a fixture:
// explicit positions 0..L-1 and an all-ones mask change nothing, a [B, L, L]
// mask that repeats a padding mask gives the padding mask's result, and
// bad positions and masks are refused by name.
func TestBertForwardInput(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	store := NewStore(gotch.CPU)
	defer store.Drop()
	m := NewBertForMaskedLM(store.Root(), unilmTiny)
	require.NotNil(t, m.Bert.RelPosBias)
	assert.Equal(t, []int64{4, 32}, m.Bert.RelPosBias.Weight.MustSize())
	ids := ts.MustOfSlice([]int64{2, 7, 9, 11, 4, 3, 2, 5, 6, 3, 0, 0}).MustView([]int64{2, 6}, true)
	pad := ids.MustNe(ts.IntScalar(0), false)
	ts.NoGrad(func() {
		base := m.Bert.Forward(ids, nil, pad, false)
		pos := ts.MustArange(ts.IntScalar(6), gotch.Int64, gotch.CPU).MustUnsqueeze(0, true).MustExpand([]int64{2, 6}, false, true)
		explicit := m.Bert.ForwardInput(BertInput{IDs: ids, Positions: pos, Mask: pad}, false)
		testutil.Close(t, explicit, base, 1e-6, "explicit 0..L-1")
		full := pad.MustUnsqueeze(1, false).MustExpand([]int64{2, 6, 6}, false, true).MustTotype(gotch.Int64, true)
		twoD := m.Bert.ForwardInput(BertInput{IDs: ids, Mask: full}, false)
		testutil.Close(t, twoD, base, 1e-5, "[B, L, L] mask repeating the padding mask")
		logits := m.ForwardInput(BertInput{IDs: ids, Mask: full}, false)
		assert.Equal(t, []int64{2, 6, 50}, logits.MustSize())
	})
	bad := ts.MustOfSlice([]int64{0, 1, 2, 3, 4, 32}).MustView([]int64{1, 6}, true)
	assert.ErrorContains(t, Try(func() { m.Bert.ForwardInput(BertInput{IDs: ids, Positions: bad}, false) }), "max_position_embeddings 32")
	assert.ErrorContains(t, Try(func() { m.Bert.ForwardInput(BertInput{IDs: ids, Positions: bad.MustView([]int64{6, 1}, false)}, false) }), "position ids of shape")
	assert.ErrorContains(t, Try(func() {
		m.Bert.ForwardInput(BertInput{IDs: ids, Mask: ts.MustOnes([]int64{2, 6, 5}, gotch.Int64, gotch.CPU)}, false)
	}), "attention mask of shape")
	// Explicit positions may run past max_position_embeddings in length, as pseudo-masked inputs do.
	long := ts.MustZeros([]int64{1, 40}, gotch.Int64, gotch.CPU)
	assert.NoError(t, Try(func() {
		m.Bert.ForwardInput(BertInput{IDs: long.MustAddScalar(ts.IntScalar(5), false), Positions: long}, false)
	}))
	assert.ErrorContains(t, Try(func() { m.Bert.Forward(long, nil, nil, false) }), "longer than max_position_embeddings")
}

// TestUniLMStateDictNames maps the names of UniLM's checkpoints, as
// s2s-ft, DataParallel, modeling_decoding and the pre-training checkpoints
// write them, onto BertForMaskedLM's.
func TestUniLMStateDictNames(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	one := func() *ts.Tensor { return ts.MustOnes([]int64{1}, gotch.Float, gotch.CPU) }
	w := map[string]*ts.Tensor{}
	for _, n := range []string{
		"unilm_for_seq2seq.bert.encoder.layer.0.attention.self.query.weight",
		"module.cls.predictions.bias",
		"bert_for_seq2seq.cls.predictions.transform.LayerNorm.gamma",
		"embeddings.LayerNorm.beta",
		"rel_pos_bias.weight",
		"bert.embeddings.word_embeddings.weight",
		"cls.predictions.decoder_weight",
		"cls.predictions.decoder.weight",
		"cls.seq_relationship.weight",
		"bert.pooler.dense.bias",
		"pooler.dense.weight",
		"crit_mask_lm_smoothed.one_hot",
	} {
		w[n] = one()
	}
	r, err := UniLMStateDict(w)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"unilm_for_seq2seq.bert.encoder.layer.0.attention.self.query.weight": "bert.encoder.layer.0.attention.self.query.weight",
		"module.cls.predictions.bias":                                        "cls.predictions.bias",
		"bert_for_seq2seq.cls.predictions.transform.LayerNorm.gamma":         "cls.predictions.transform.LayerNorm.weight",
		"embeddings.LayerNorm.beta":                                          "bert.embeddings.LayerNorm.bias",
		"rel_pos_bias.weight":                                                "bert.rel_pos_bias.weight",
	}, r.Renamed)
	assert.Equal(t, []string{"bert.pooler.dense.bias", "cls.predictions.decoder.weight", "cls.predictions.decoder_weight",
		"cls.seq_relationship.weight", "crit_mask_lm_smoothed.one_hot", "pooler.dense.weight"}, r.Dropped)
	var names []string
	for n := range w {
		names = append(names, n)
	}
	assert.ElementsMatch(t, []string{"bert.encoder.layer.0.attention.self.query.weight", "cls.predictions.bias",
		"cls.predictions.transform.LayerNorm.weight", "bert.embeddings.LayerNorm.bias", "bert.rel_pos_bias.weight",
		"bert.embeddings.word_embeddings.weight"}, names)

	clash := map[string]*ts.Tensor{"bert.rel_pos_bias.weight": one(), "module.bert.rel_pos_bias.weight": one()}
	_, err = UniLMStateDict(clash)
	assert.ErrorContains(t, err, "both name bert.rel_pos_bias.weight")
	assert.Len(t, clash, 2, "an error changes nothing")
}

// TestUniLMConfig reads a config.json as s2s-ft saves it
// (BertForSeq2SeqConfig) and round-trips rel_pos_bins and max_rel_pos
// through HFConfig, JSON and TOML.
func TestUniLMConfig(t *testing.T) {
	raw := `{"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
		"num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
		"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
		"type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "label_smoothing": 0.1,
		"source_type_id": 0, "target_type_id": 1, "fix_word_embedding": false, "rel_pos_bins": 32, "max_rel_pos": 128}`
	hf, err := ParseHFConfig("config.json", []byte(raw))
	require.NoError(t, err)
	c, err := BertConfigFromHF(hf)
	require.NoError(t, err)
	assert.Equal(t, int64(32), c.RelPosBins)
	assert.Equal(t, int64(128), c.MaxRelPos)
	out := c.HFConfig()
	assert.Equal(t, int64(32), out["rel_pos_bins"])
	assert.Equal(t, int64(128), out["max_rel_pos"])
	b, err := json.Marshal(out)
	require.NoError(t, err)
	hf2, err := ParseHFConfig("back.json", b)
	require.NoError(t, err)
	back, err := BertConfigFromHF(hf2)
	require.NoError(t, err)
	assert.Equal(t, c, back)

	_, has := BertBase().HFConfig()["rel_pos_bins"]
	assert.False(t, has, "plain BERT's config.json is unchanged")

	var fromTOML BertConfig
	_, err = toml.Decode("rel_pos_bins = 32\nmax_rel_pos = 128\n", &fromTOML)
	require.NoError(t, err)
	assert.Equal(t, int64(32), fromTOML.RelPosBins)
	assert.Equal(t, int64(128), fromTOML.MaxRelPos)

	c.MaxRelPos = 0
	assert.ErrorContains(t, c.Validate(), "max_rel_pos 0")
	c.RelPosBins = -1
	assert.ErrorContains(t, c.Validate(), "rel_pos_bins -1")
	hf3, err := ParseHFConfig("bad.json", []byte(`{"rel_pos_bins": 32}`))
	require.NoError(t, err)
	_, err = BertConfigFromHF(hf3)
	assert.ErrorContains(t, err, "max_rel_pos")
}
