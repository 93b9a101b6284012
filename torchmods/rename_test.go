package torchmods

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/torchmods/safetensors"
)

func f32(name string, shape []int64, vals ...float32) safetensors.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return safetensors.Tensor{Name: name, DType: "F32", Shape: shape, Data: b}
}

func vals(t safetensors.Tensor) []float32 {
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

// HF-style separate q/k/v per layer -> a fused qkv (timm layout), and back.
var toFused = RenameTable{
	Join: []JoinRule{{From: []string{"layer.{n}.q.weight", "layer.{n}.k.weight", "layer.{n}.v.weight"}, To: "blocks.{n}.attn.qkv.weight"}},
	Rename: []RenameRule{
		{From: "layer.{n}.o.weight", To: "blocks.{n}.attn.proj.weight"},
		{From: "embeddings.word", To: "embed.weight"},
	},
}

var toSeparate = RenameTable{
	Split: []SplitRule{{From: "blocks.{n}.attn.qkv.weight", To: []string{"layer.{n}.q.weight", "layer.{n}.k.weight", "layer.{n}.v.weight"}}},
	Rename: []RenameRule{
		{From: "blocks.{n}.attn.proj.weight", To: "layer.{n}.o.weight"},
		{From: "embed.weight", To: "embeddings.word"},
	},
}

func TestRenameJoinSplitRoundTrip(t *testing.T) {
	in := []safetensors.Tensor{
		f32("embeddings.word", []int64{2}, 9, 8),
		f32("layer.0.q.weight", []int64{1, 2}, 1, 2),
		f32("layer.0.k.weight", []int64{1, 2}, 3, 4),
		f32("layer.0.v.weight", []int64{1, 2}, 5, 6),
		f32("layer.0.o.weight", []int64{2, 2}, 7, 7, 7, 7),
		f32("layer.11.q.weight", []int64{1, 2}, 10, 20),
		f32("layer.11.k.weight", []int64{1, 2}, 30, 40),
		f32("layer.11.v.weight", []int64{1, 2}, 50, 60),
		f32("untouched", []int64{1}, 0),
	}
	fused, err := toFused.Apply(in)
	require.NoError(t, err)
	var names []string
	for _, x := range fused {
		names = append(names, x.Name)
	}
	assert.Equal(t, []string{"embed.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.11.attn.qkv.weight", "untouched"}, names)
	assert.Equal(t, []int64{3, 2}, fused[1].Shape)
	assert.Equal(t, []float32{1, 2, 3, 4, 5, 6}, vals(fused[1]))
	assert.Equal(t, []float32{10, 20, 30, 40, 50, 60}, vals(fused[3]))

	back, err := toSeparate.Apply(fused)
	require.NoError(t, err)
	byName := map[string]safetensors.Tensor{}
	for _, x := range back {
		byName[x.Name] = x
	}
	for _, x := range in {
		assert.Equal(t, x.Shape, byName[x.Name].Shape, x.Name)
		assert.Equal(t, vals(x), vals(byName[x.Name]), x.Name)
	}
}

func TestRenameTransposeAndErrors(t *testing.T) {
	tt := RenameTable{Transpose: []string{"h.{n}.attn.c_attn.weight"}} // GPT-2 Conv1D stores [in, out]
	out, err := tt.Apply([]safetensors.Tensor{f32("h.0.attn.c_attn.weight", []int64{2, 3}, 1, 2, 3, 4, 5, 6)})
	require.NoError(t, err)
	assert.Equal(t, []int64{3, 2}, out[0].Shape)
	assert.Equal(t, []float32{1, 4, 2, 5, 3, 6}, vals(out[0]))

	_, err = toFused.Apply([]safetensors.Tensor{f32("layer.0.q.weight", []int64{1, 2}, 1, 2), f32("layer.0.v.weight", []int64{1, 2}, 1, 2)})
	assert.ErrorContains(t, err, "layer.0.k.weight is missing")
	_, err = toSeparate.Apply([]safetensors.Tensor{f32("blocks.0.attn.qkv.weight", []int64{2, 1}, 1, 2)})
	assert.ErrorContains(t, err, "does not divide into 3")
	_, err = RenameTable{Rename: []RenameRule{{From: "a", To: "c"}, {From: "b", To: "c"}}}.Apply([]safetensors.Tensor{f32("a", []int64{1}, 1), f32("b", []int64{1}, 1)})
	assert.ErrorContains(t, err, `two tensors to "c"`)
}

// {*} matches any text, so one rule adds or drops a prefix (BertModel's
// names under BertForMaskedLM's bert.) or keeps a tail; captures fill To in
// order, with {n} still a layer index.
func TestRenameWildcards(t *testing.T) {
	rt := RenameTable{Rename: []RenameRule{
		{From: "embeddings.{*}.gamma", To: "bert.embeddings.{*}.weight"},
		{From: "{*}LayerNorm.gamma", To: "{*}LayerNorm.weight"},
		{From: "decoder.decoder_encoder.layer.{n}.{*}", To: "decoder.decoder_layers.{n}.{*}"},
		{From: "encoder.{*}", To: "bert.encoder.{*}"},
	}}
	out, err := rt.Apply([]safetensors.Tensor{
		f32("embeddings.LayerNorm.gamma", []int64{1}, 1),
		f32("bert.encoder.layer.3.output.LayerNorm.gamma", []int64{1}, 2),
		f32("decoder.decoder_encoder.layer.12.attention.attention.query.bias", []int64{1}, 3),
		f32("encoder.layer.0.output.dense.weight", []int64{1}, 4),
		f32("cls.predictions.bias", []int64{1}, 5),
	})
	require.NoError(t, err)
	var names []string
	for _, x := range out {
		names = append(names, x.Name)
	}
	assert.Equal(t, []string{"bert.embeddings.LayerNorm.weight", "bert.encoder.layer.3.output.LayerNorm.weight",
		"decoder.decoder_layers.12.attention.attention.query.bias", "bert.encoder.layer.0.output.dense.weight", "cls.predictions.bias"}, names)
	assert.Equal(t, []float32{3}, vals(out[2]), "data travels with the name")
}
