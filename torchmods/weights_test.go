package torchmods

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	a := NewStore(gotch.CPU)
	defer a.Drop()
	la := NewEncoderLayer(a.Root().Sub("enc"), EncoderLayerOptions{Dim: 8, Heads: 2, FF: 16})
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	require.NoError(t, a.Save(p, "", map[string]string{"step": "7"}))

	f, err := safetensors.Read(p)
	require.NoError(t, err)
	assert.Equal(t, "7", f.Metadata["step"])
	assert.Len(t, f.Tensors, 12)

	b := NewStore(gotch.CPU)
	defer b.Drop()
	lb := NewEncoderLayer(b.Root().Sub("enc"), EncoderLayerOptions{Dim: 8, Heads: 2, FF: 16})
	w, err := LoadWeights(p, gotch.CPU)
	require.NoError(t, err)
	_, err = b.Load(w, true)
	require.NoError(t, err)
	assert.Equal(t, la.Linear1.Weight.Float64Values(), lb.Linear1.Weight.Float64Values(), "float32 round trip is exact")

	// Half precision on disk, float32 again after loading.
	ph := filepath.Join(dir, "m16.safetensors")
	require.NoError(t, a.Save(ph, "BF16", nil))
	f16, err := safetensors.Read(ph)
	require.NoError(t, err)
	w32, _ := f.Get("enc.linear1.weight")
	w16b, _ := f16.Get("enc.linear1.weight")
	assert.Equal(t, "BF16", w16b.DType)
	assert.Equal(t, len(w32.Data)/2, len(w16b.Data), "half the bytes")
	w16, err := LoadWeights(ph, gotch.CPU)
	require.NoError(t, err)
	_, err = b.Load(w16, true)
	require.NoError(t, err)
	assert.Equal(t, gotch.Float, lb.Linear1.Weight.DType())
	assert.Less(t, relErr(t, lb.Linear1.Weight, la.Linear1.Weight), 1e-2, "bf16 keeps about 3 digits")

	assert.ErrorContains(t, a.Save(p, "Q8", nil), `dtype "Q8"`)
}

func TestShardedSafetensors(t *testing.T) {
	dir := t.TempDir()
	one := []safetensors.Tensor{{Name: "a", DType: "F32", Shape: []int64{1}, Data: []byte{0, 0, 128, 63}}}
	two := []safetensors.Tensor{{Name: "b", DType: "F32", Shape: []int64{1}, Data: []byte{0, 0, 0, 64}}}
	require.NoError(t, safetensors.Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), one, nil))
	require.NoError(t, safetensors.Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), two, nil))
	index := filepath.Join(dir, "model.safetensors.index.json")
	write := func(js string) { require.NoError(t, os.WriteFile(index, []byte(js), 0o644)) }

	write(`{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`)
	w, err := ReadWeights(index)
	require.NoError(t, err)
	require.Len(t, w.Tensors, 2)
	assert.Equal(t, "a", w.Tensors[0].Name)
	assert.Equal(t, "b", w.Tensors[1].Name)

	write(`{"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00003-of-00003.safetensors"}}`)
	_, err = ReadWeights(index)
	assert.ErrorContains(t, err, "names shard model-00003-of-00003.safetensors")

	write(`{"weight_map":{"b":"model-00001-of-00002.safetensors"}}`)
	_, err = ReadWeights(index)
	assert.ErrorContains(t, err, `tensor "b" is not in shard model-00001-of-00002.safetensors`)

	write(`{"weight_map":{"a":"../../etc/passwd"}}`)
	_, err = ReadWeights(index)
	assert.ErrorContains(t, err, "must be a file name beside the index")
}

// transformers shards big pickled checkpoints as pytorch_model-0000N-of-0000M.bin
// with a pytorch_model.bin.index.json; gen_hf_bert.py writes one.
func TestShardedTorchSave(t *testing.T) {
	w, err := ReadWeights("testdata/hf_bert_mlm_bin_sharded/pytorch_model.bin.index.json")
	require.NoError(t, err)
	assert.Equal(t, "torch.save (sharded)", w.Format)
	assert.Len(t, w.Tensors, 45)
	names := map[string]bool{}
	for _, x := range w.Tensors {
		names[x.Name] = true
	}
	assert.True(t, names["bert.embeddings.LayerNorm.gamma"], "the legacy names, as stored")
	assert.True(t, names["cls.predictions.decoder.weight"], "the tied copy, as stored")
}
