package torchmods

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The fixtures are testdata/gen_clip.py's, made with clip/model.py of
// openai/CLIP at d05afc436d78f1c48dc0dbf8e5980a9d471f35f6.

// maxAbsDiff is max |got - want| over all elements.
func maxAbsDiff(t *testing.T, got, want *ts.Tensor) float64 {
	t.Helper()
	require.Equal(t, want.MustSize(), got.MustSize())
	g, w := got.Float64Values(), want.Float64Values()
	d := 0.0
	for i := range w {
		d = math.Max(d, math.Abs(g[i]-w[i]))
	}
	return d
}

func clipShapes(sd map[string]*ts.Tensor) map[string][]int64 {
	shapes := map[string][]int64{}
	for k, v := range sd {
		shapes[k] = v.MustSize()
	}
	return shapes
}

// clipFromFixture builds the fixture's model: the config inferred from
// its state dict (checked against build_model's arguments), the heads
// gen_clip.py gave it, the state dict loaded strictly.
func clipFromFixture(t *testing.T, ref map[string]*ts.Tensor, visionHeads, textHeads int64) (*CLIP, *Store) {
	t.Helper()
	sd := testutil.Sub(ref, "sd.")
	c, err := InferCLIPConfig(clipShapes(sd))
	require.NoError(t, err)
	want := testutil.Sub(ref, "build_model.")
	assert.Equal(t, want["embed_dim"].Int64Values(), []int64{c.EmbedDim}, "embed_dim")
	assert.Equal(t, want["image_resolution"].Int64Values(), []int64{c.ImageResolution}, "image_resolution")
	assert.Equal(t, want["vision_layers"].Int64Values(), c.VisionLayers, "vision_layers")
	assert.Equal(t, want["vision_width"].Int64Values(), []int64{c.VisionWidth}, "vision_width")
	if p, ok := want["vision_patch_size"]; ok {
		assert.Equal(t, p.Int64Values(), []int64{c.VisionPatchSize}, "vision_patch_size")
	} else {
		assert.Zero(t, c.VisionPatchSize, "a ResNet has no patch size")
	}
	for name, v := range map[string]int64{"context_length": c.ContextLength, "vocab_size": c.VocabSize,
		"transformer_width": c.TransformerWidth, "transformer_heads": c.TransformerHeads, "transformer_layers": c.TransformerLayers} {
		assert.Equal(t, want[name].Int64Values(), []int64{v}, name)
	}
	// model.py's CLIP derives the vision heads from the width.
	if c.IsResNet() {
		assert.Equal(t, c.VisionWidth*32/64, c.VisionHeads)
	} else {
		assert.Equal(t, c.VisionWidth/64, c.VisionHeads)
	}
	c.VisionHeads, c.TransformerHeads = visionHeads, textHeads
	store := NewStore(gotch.CPU)
	m := NewCLIP(store.Root(), c)
	_, err = store.Load(sd, true)
	require.NoError(t, err, "OpenAI's state dict loads strictly")
	return m, store
}

// clipParity compares features, logits and every gradient of the
// fixture's loss with model.py's (float64) within a relative error of
// 1e-5 (testutil.RelErr: the largest difference over the largest
// reference value, as every parity test here), and logs the largest
// absolute and relative differences. Absolute differences scale with the
// tensor: the ResNet's gradients reach 240, where float32 rounding alone
// is 1e-5.
func clipParity(t *testing.T, file string, visionHeads, textHeads int64) (*CLIP, map[string]*ts.Tensor) {
	t.Helper()
	ref := loadRef(t, file)
	m, store := clipFromFixture(t, ref, visionHeads, textHeads)
	t.Cleanup(store.Drop)

	img := m.EncodeImage(ref["image"], false)
	txt := m.EncodeText(ref["text"])
	lpi := m.Logits(img, txt)
	fi, ft := m.Forward(ref["image"], ref["text"], false)
	outWorst := 0.0
	for name, got := range map[string]*ts.Tensor{"image_features": img, "text_features": txt, "logits_per_image": lpi,
		"forward logits_per_image": fi, "forward logits_per_text": ft} {
		want := ref[strings.TrimPrefix(name, "forward ")]
		d := maxAbsDiff(t, got, want)
		testutil.Close(t, got, want, 1e-5, name)
		outWorst = math.Max(outWorst, d)
	}

	loss := lpi.MustMul(ref["g.logits"], false).MustSum(gotch.Float, true).
		MustAdd(img.MustMul(ref["g.image"], false).MustSum(gotch.Float, true), true).
		MustAdd(txt.MustMul(ref["g.text"], false).MustSum(gotch.Float, true), true)
	require.NoError(t, loss.Backward())
	got, want := grads(store), testutil.Sub(ref, "grad.")
	gradWorst, worstName, relWorst, absolute := 0.0, "", 0.0, 0
	for name, g := range got {
		w, ok := want[name]
		if !ok {
			continue
		}
		d := maxAbsDiff(t, g, w)
		if d > gradWorst {
			gradWorst, worstName = d, name
		}
		if w.MustAbs(false).MustMax(true).Float64Values()[0] < 1e-6 {
			// attnpool.k_proj.bias: softmax ignores a shift shared by all
			// keys, so this gradient is 0 up to rounding on both sides;
			// it is compared absolutely.
			assert.Less(t, d, 1e-5, "grad %s: max abs diff", name)
			delete(got, name)
			delete(want, name)
			absolute++
		} else {
			relWorst = math.Max(relWorst, testutil.RelErr(g, w))
		}
	}
	n := testutil.Parity(t, got, want, 1e-5, "grad")
	assert.Equal(t, len(testutil.Sub(ref, "grad.")), n+absolute, "every parameter's gradient compared")
	t.Logf("%s: outputs max abs diff %.2g; %d gradients, max abs diff %.2g (%s), max relative error %.2g",
		file, outWorst, len(testutil.Sub(ref, "grad.")), gradWorst, worstName, relWorst)
	outRel := 0.0
	for _, name := range []string{"image_features", "text_features", "logits_per_image"} {
		g := map[string]*ts.Tensor{"image_features": img, "text_features": txt, "logits_per_image": lpi}[name]
		outRel = math.Max(outRel, testutil.RelErr(g, ref[name]))
	}
	t.Logf("%s: outputs max relative error %.2g", file, outRel)
	return m, ref
}

// TestCLIPViTParity: OpenAI's ViT CLIP (4 vision heads, 2 text heads;
// one row with <eot> twice) against model.py: features, logits and the
// gradient of every parameter.
func TestCLIPViTParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	clipParity(t, "clip_vit_parity.safetensors", 4, 2)
}

// TestCLIPResNetParity: the ModifiedResNet CLIP (stages (2, 1, 1, 1),
// random BatchNorm statistics) in eval mode against model.py, then its
// image features with BatchNorm in training mode.
func TestCLIPResNetParity(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	m, ref := clipParity(t, "clip_rn_parity.safetensors", 2, 2)
	var train *ts.Tensor
	ts.NoGrad(func() { train = m.EncodeImage(ref["image"], true) })
	testutil.Close(t, train, ref["train.image_features"], 1e-5, "image features, BatchNorm training")
	t.Logf("training-mode image features: max abs diff %.2g", maxAbsDiff(t, train, ref["train.image_features"]))
}

// TestInferCLIPConfigErrors: a state dict that is not CLIP's, or whose
// keys build_model reads are misshaped, is an error naming the key.
func TestInferCLIPConfigErrors(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	vit := clipShapes(testutil.Sub(loadRef(t, "clip_vit_parity.safetensors"), "sd."))
	rn := clipShapes(testutil.Sub(loadRef(t, "clip_rn_parity.safetensors"), "sd."))
	with := func(base map[string][]int64, key string, shape []int64) map[string][]int64 {
		out := map[string][]int64{}
		for k, v := range base {
			out[k] = v
		}
		if shape == nil {
			delete(out, key)
		} else {
			out[key] = shape
		}
		return out
	}
	for name, c := range map[string]struct {
		shapes map[string][]int64
		want   string
	}{
		"BERT":                 {map[string][]int64{"bert.embeddings.word_embeddings.weight": {50, 32}}, `not a CLIP state dict: no "visual.layer1.0.conv1.weight"`},
		"no ln_final":          {with(vit, "ln_final.weight", nil), `no "ln_final.weight"`},
		"no token embedding":   {with(rn, "token_embedding.weight", nil), `no "token_embedding.weight"`},
		"no positions":         {with(vit, "visual.positional_embedding", nil), `no "visual.positional_embedding"`},
		"no attention pool":    {with(rn, "visual.attnpool.positional_embedding", nil), `no "visual.attnpool.positional_embedding"`},
		"3-D conv1":            {with(vit, "visual.conv1.weight", []int64{40, 3, 8}), `"visual.conv1.weight" has shape [40 3 8], want 4 dimensions`},
		"1-D text projection":  {with(vit, "text_projection", []int64{32}), `"text_projection" has shape [32], want 2 dimensions`},
		"pool grid not square": {with(rn, "visual.attnpool.positional_embedding", []int64{6, 128}), "6 rows, not a square grid"},
	} {
		_, err := InferCLIPConfig(c.shapes)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
	// build_model's width/64 heads are 0 for the tiny text transformer.
	c, err := InferCLIPConfig(vit)
	require.NoError(t, err)
	assert.ErrorContains(t, c.Validate(), "vision heads 0 for width 40")
	c.VisionHeads = 4
	assert.ErrorContains(t, c.Validate(), "text heads 0 for width 32")
	c.TransformerHeads = 2
	require.NoError(t, c.Validate())
	assert.Contains(t, c.Summary(), "ViT of 2 layers, width 40, 4 heads, patch 8 at 32 px")
}

// TestCLIPEOTPooling: text features are taken at the argmax of the ids,
// the first of equal maxima, as model.py's text.argmax(dim=-1); with an
// eos_token_id other than 2, at that id's first position, as HF's.
func TestCLIPEOTPooling(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ts.ManualSeed(3)
	store := NewStore(gotch.CPU)
	defer store.Drop()
	c := CLIPConfig{EmbedDim: 8, ImageResolution: 16, VisionLayers: []int64{1}, VisionWidth: 16, VisionPatchSize: 8, VisionHeads: 2,
		ContextLength: 6, VocabSize: 20, TransformerWidth: 16, TransformerHeads: 2, TransformerLayers: 1}
	m := NewCLIP(store.Root(), c)
	ids := FromSlice([]int64{
		18, 3, 19, 0, 0, 0, // max at 2
		18, 3, 4, 5, 6, 19, // max at 5, the last position
		18, 19, 2, 19, 0, 0, // two maxima: the first, 1
		7, 3, 7, 1, 0, 0, // no <eot>: the largest id, 0
	}, []int64{4, 6}, gotch.CPU)
	ts.NoGrad(func() {
		assert.Equal(t, []int64{2, 5, 1, 0}, m.EOTPositions(ids).Int64Values())
		assert.Equal(t, []int64{2, 5, 1, 0}, m.EOTPositions(ids.MustTotype(gotch.Int, false)).Int64Values(), "int32 ids, as clip.tokenize gives")
		hidden := m.TextHidden(ids)
		feats := m.EncodeText(ids)
		for b, p := range []int64{2, 5, 1, 0} {
			want := hidden.MustSelect(0, int64(b), false).MustSelect(0, p, true).MustUnsqueeze(0, true).MustMatmul(m.TextProjection, true)
			testutil.Close(t, feats.MustNarrow(0, int64(b), 1, false), want, 1e-6, "row %d pooled at %d", b, p)
		}
		// A shorter input takes the first positions, as HF's position ids.
		short := m.EncodeText(ids.MustNarrow(1, 0, 3, false).MustNarrow(0, 0, 1, true))
		testutil.Close(t, short, feats.MustNarrow(0, 0, 1, false), 1e-5, "3 tokens")
		m.Cfg.EOSTokenID = 7
		assert.Equal(t, []int64{0, 0, 0, 0}, m.EOTPositions(ids).Int64Values(), "the first 7 in the last row; no 7: position 0, as HF's argmax of all-false")
		m.Cfg.EOSTokenID = 3
		assert.Equal(t, []int64{1, 1, 0, 1}, m.EOTPositions(ids).Int64Values())
		m.Cfg.EOSTokenID = 2 // HF's legacy value: argmax
		assert.Equal(t, []int64{2, 5, 1, 0}, m.EOTPositions(ids).Int64Values())
	})
	err := Try(func() { m.EncodeText(FromSlice(make([]int64, 7), []int64{1, 7}, gotch.CPU)) })
	assert.ErrorContains(t, err, "want [B, L ≤ 6, 16]")
}

// TestLoadCLIPTorchScript reads the tiny model as OpenAI releases its
// models (a traced TorchScript archive with fp16 weights and
// input_resolution, context_length, vocab_size beside them) and checks
// the weights against the state dict and the features against model.py's
// on the fp16-rounded weights.
func TestLoadCLIPTorchScript(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "clip_vit_parity.safetensors")
	var log bytes.Buffer
	l, err := LoadCLIP("testdata/clip_vit_jit.pt", CLIPLoadOptions{VisionHeads: 4, TextHeads: 2}, &log)
	require.NoError(t, err)
	defer l.Store.Drop()
	t.Log(log.String())
	assert.Equal(t, "OpenAI", l.Names)
	assert.Contains(t, log.String(), "(TorchScript archive, OpenAI names)")
	assert.Equal(t, []string{"context_length", "input_resolution", "vocab_size"}, l.Dropped)
	assert.Empty(t, l.Report.Missing)
	assert.Len(t, l.Report.Loaded, len(testutil.Sub(ref, "sd.")))
	halved := 0
	for name, w := range testutil.Sub(ref, "sd.") {
		p, ok := l.Store.Param(name)
		require.True(t, ok, name)
		got := p.Tensor.MustDetach(false)
		if got.MustEqual(w, false) {
			continue
		}
		halved++
		assert.True(t, got.MustEqual(w.MustTotype(gotch.Half, false).MustTotype(gotch.Float, true), false), "%s: the fp16 rounding of the weight", name)
	}
	assert.Equal(t, 35, halved, "convert_weights' fp16 tensors, as float32")
	ts.NoGrad(func() {
		img := l.Model.EncodeImage(ref["image"], false)
		txt := l.Model.EncodeText(ref["text"])
		testutil.Close(t, img, ref["jit.image_features"], 1e-5, "image features")
		testutil.Close(t, txt, ref["jit.text_features"], 1e-5, "text features")
		t.Logf("TorchScript archive: features max abs diff %.2g (image), %.2g (text)",
			maxAbsDiff(t, img, ref["jit.image_features"]), maxAbsDiff(t, txt, ref["jit.text_features"]))
	})

	// Without the heads the tiny model needs, build_model's width/64 is refused by name.
	_, err = LoadCLIP("testdata/clip_vit_jit.pt", CLIPLoadOptions{}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "heads 0 for width")
	// A file that is not CLIP's names what is missing.
	_, err = LoadCLIP("testdata/hf_bert_mlm/model.safetensors", CLIPLoadOptions{}, &bytes.Buffer{})
	assert.ErrorContains(t, err, `not a CLIP state dict: no "visual.layer1.0.conv1.weight"`)
	_, err = LoadCLIP("testdata/hf_bert_mlm", CLIPLoadOptions{}, &bytes.Buffer{})
	assert.ErrorContains(t, err, `model_type "bert" is not CLIP's`)
}

// TestLoadCLIPSafetensors loads OpenAI-named state dicts from safetensors:
// the fixture's, and one with a tensor missing or misshaped, refused by
// name.
func TestLoadCLIPSafetensors(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "clip_rn_parity.safetensors")
	sd := testutil.Sub(ref, "sd.")
	write := func(drop, reshape string) string {
		var names []string
		for k := range sd {
			if k != drop {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		var tensors []*ts.Tensor
		for _, n := range names {
			x := sd[n]
			if n == reshape {
				x = x.MustNarrow(0, 0, x.MustSize()[0]-1, false)
			}
			tensors = append(tensors, x)
		}
		p := filepath.Join(t.TempDir(), "rn.safetensors")
		require.NoError(t, SaveTensors(p, names, tensors, "", nil))
		return p
	}
	l, err := LoadCLIP(write("", ""), CLIPLoadOptions{TextHeads: 2}, &bytes.Buffer{})
	require.NoError(t, err)
	defer l.Store.Drop()
	assert.True(t, l.Model.Cfg.IsResNet())
	assert.Equal(t, int64(2), l.Model.Cfg.VisionHeads, "build_model's width*32/64")
	ts.NoGrad(func() {
		testutil.Close(t, l.Model.EncodeImage(ref["image"], false), ref["image_features"], 1e-5, "image features")
	})
	_, err = LoadCLIP(write("visual.layer2.0.bn2.running_var", ""), CLIPLoadOptions{TextHeads: 2}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "missing (1): visual.layer2.0.bn2.running_var")
	_, err = LoadCLIP(write("", "visual.layer3.0.conv2.weight"), CLIPLoadOptions{TextHeads: 2}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "visual.layer3.0.conv2.weight: model [16 16 3 3] weights [15 16 3 3]")
}

// TestCLIPHFMatchesOpenAI: the same weights under HF CLIPModel's names
// (gen_clip.py's transcription of transformers' conversion) give the same
// features as under OpenAI's, through LoadCLIP and through OpenHF
// (`repro hf run`); and Export maps OpenAI's names back onto the HF file's
// tensors, byte for byte.
func TestCLIPHFMatchesOpenAI(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "clip_vit_parity.safetensors")
	openai, store := clipFromFixture(t, ref, 4, 2)
	defer store.Drop()
	var log bytes.Buffer
	hf, err := LoadCLIP("testdata/clip_hf_vit", CLIPLoadOptions{}, &log)
	require.NoError(t, err)
	defer hf.Store.Drop()
	t.Log(log.String())
	assert.Contains(t, log.String(), "dropped as tied copies or buffers: text_model.embeddings.position_ids, vision_model.embeddings.position_ids")
	assert.Equal(t, "HF CLIPModel", hf.Names)
	c := openai.Cfg
	c.VisionMLP, c.TextMLP, c.VisionAct, c.TextAct, c.VisionEps, c.TextEps, c.EOSTokenID = 160, 128, QuickGELU, QuickGELU, 1e-5, 1e-5, 2
	assert.Equal(t, c, hf.Model.Cfg, "config.json gives what the state dict gives")
	ts.NoGrad(func() {
		for name, f := range map[string]func(m *CLIP) *ts.Tensor{
			"image": func(m *CLIP) *ts.Tensor { return m.EncodeImage(ref["image"], false) },
			"text":  func(m *CLIP) *ts.Tensor { return m.EncodeText(ref["text"]) },
		} {
			a, b := f(openai), f(hf.Model)
			assert.Equal(t, 0.0, maxAbsDiff(t, b, a), "%s features: HF names and OpenAI names, the same numbers", name)
			testutil.Close(t, b, ref[name+"_features"], 1e-5, "%s features against model.py", name)
		}
	})

	// repro hf run's path: OpenHF, CLIPModel's inputs and outputs.
	hs := NewStore(gotch.CPU)
	defer hs.Drop()
	o, err := OpenHF("testdata/clip_hf_vit", hs, &bytes.Buffer{})
	require.NoError(t, err)
	out, err := o.Run(map[string]*ts.Tensor{"input_ids": ref["text"], "pixel_values": ref["image"]})
	require.NoError(t, err)
	testutil.Close(t, out["logits_per_image"], ref["logits_per_image"], 1e-5, "logits_per_image")
	testutil.Close(t, out["logits_per_text"], ref["logits_per_text"], 1e-5, "logits_per_text")
	norm := func(x *ts.Tensor) *ts.Tensor {
		return x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false), false)
	}
	testutil.Close(t, out["image_embeds"], norm(ref["image_features"]), 1e-5, "image_embeds")
	testutil.Close(t, out["text_embeds"], norm(ref["text_features"]), 1e-5, "text_embeds")
	pad := FromSlice([]int64{1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0}, []int64{3, 16}, gotch.CPU)
	padded, err := o.Run(map[string]*ts.Tensor{"input_ids": ref["text"], "pixel_values": ref["image"], "attention_mask": pad})
	require.NoError(t, err)
	testutil.Close(t, padded["text_embeds"], out["text_embeds"], 1e-6, "a right padding changes nothing")
	holed := FromSlice([]int64{1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0}, []int64{3, 16}, gotch.CPU)
	_, err = o.Run(map[string]*ts.Tensor{"input_ids": ref["text"], "pixel_values": ref["image"], "attention_mask": holed})
	assert.ErrorContains(t, err, "not a right padding")

	// Export: OpenAI's names -> the HF file's tensors.
	exported, err := ExportTensors(store, CLIPFamily)
	require.NoError(t, err)
	file, err := safetensors.Read("testdata/clip_hf_vit/model.safetensors")
	require.NoError(t, err)
	n := 0
	for _, e := range exported {
		w, ok := file.Get(e.Name)
		if assert.True(t, ok, "exported %s is not in the HF file", e.Name) {
			assert.Equal(t, w.Shape, e.Shape, e.Name)
			assert.True(t, bytes.Equal(w.Data, e.Data), "%s: bytes differ", e.Name)
			n++
		}
	}
	assert.Equal(t, len(file.Tensors)-2, n, "every HF tensor but the position_ids buffers")
	hm, err := NewCLIPForExport(openai)
	require.NoError(t, err)
	cfg := hm.HFConfig()
	assert.Equal(t, int64(24), cfg["projection_dim"])
}

// TestCLIPConfigFromHFSpellings: transformers 4.x's config.json, early
// 4.x's text_config_dict / vision_config_dict (which win), and a 5.x file
// (dtype, keys equal to the defaults left out) give the configs they
// describe.
func TestCLIPConfigFromHFSpellings(t *testing.T) {
	b, err := os.ReadFile("testdata/clip_hf_vit/config.json")
	require.NoError(t, err)
	hc, err := ParseHFConfig("4.x", b)
	require.NoError(t, err)
	v4, err := CLIPConfigFromHF(hc)
	require.NoError(t, err)
	assert.Equal(t, CLIPConfig{EmbedDim: 24, ImageResolution: 32, VisionLayers: []int64{2}, VisionWidth: 40, VisionPatchSize: 8, VisionHeads: 4,
		ContextLength: 16, VocabSize: 100, TransformerWidth: 32, TransformerHeads: 2, TransformerLayers: 2,
		VisionMLP: 160, TextMLP: 128, VisionAct: QuickGELU, TextAct: QuickGELU, VisionEps: 1e-5, TextEps: 1e-5, EOSTokenID: 2}, v4)

	legacy := `{"model_type": "clip", "projection_dim": 24,
		"text_config": {"hidden_size": 999},
		"text_config_dict": {"hidden_size": 32, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2,
			"max_position_embeddings": 16, "vocab_size": 100, "eos_token_id": 2},
		"vision_config_dict": {"hidden_size": 40, "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
			"image_size": 32, "patch_size": 8}}`
	hc, err = ParseHFConfig("legacy", []byte(legacy))
	require.NoError(t, err)
	got, err := CLIPConfigFromHF(hc)
	require.NoError(t, err)
	assert.Equal(t, v4, got, "text_config_dict wins over text_config")

	// A 5.x ViT-B/16: dtype, and only what differs from CLIPTextConfig's
	// and CLIPVisionConfig's defaults.
	v5 := `{"model_type": "clip", "architectures": ["CLIPModel"], "dtype": "float32", "transformers_version": "5.0.0",
		"text_config": {}, "vision_config": {"patch_size": 16}, "projection_dim": 512}`
	hc, err = ParseHFConfig("5.x", []byte(v5))
	require.NoError(t, err)
	got, err = CLIPConfigFromHF(hc)
	require.NoError(t, err)
	assert.Equal(t, CLIPConfig{EmbedDim: 512, ImageResolution: 224, VisionLayers: []int64{12}, VisionWidth: 768, VisionPatchSize: 16, VisionHeads: 12,
		ContextLength: 77, VocabSize: 49408, TransformerWidth: 512, TransformerHeads: 8, TransformerLayers: 12,
		VisionMLP: 3072, TextMLP: 2048, VisionAct: QuickGELU, TextAct: QuickGELU, VisionEps: 1e-5, TextEps: 1e-5, EOSTokenID: 49407}, got)

	for name, c := range map[string]struct{ json, want string }{
		"activation": {`{"model_type": "clip", "text_config": {"hidden_act": "swish"}}`, `text_config: hidden_act "swish" is not supported`},
		"channels":   {`{"model_type": "clip", "vision_config": {"num_channels": 1}}`, "vision_config: num_channels 1"},
		"heads":      {`{"model_type": "clip", "vision_config": {"num_attention_heads": 5}}`, "vision heads 5 for width 768"},
		"not an obj": {`{"model_type": "clip", "vision_config": 3}`, "vision_config is 3, want an object"},
		"other type": {`{"model_type": "bert"}`, `model_type "bert", want "clip"`},
	} {
		hc, err := ParseHFConfig(name, []byte(c.json))
		require.NoError(t, err)
		_, err = CLIPConfigFromHF(hc)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

// TestCLIPForwardLeavesNothing: encoding and forward inside a scope leave
// no tensor behind once it closes, for both image encoders.
func TestCLIPForwardLeavesNothing(t *testing.T) {
	refV := loadRef(t, "clip_vit_parity.safetensors")
	refR := loadRef(t, "clip_rn_parity.safetensors")
	vit, sv := clipFromFixture(t, refV, 4, 2)
	defer sv.Drop()
	rn, sr := clipFromFixture(t, refR, 2, 2)
	defer sr.Drop()
	before := frozenLive(t)
	for _, c := range []struct {
		m   *CLIP
		ref map[string]*ts.Tensor
	}{{vit, refV}, {rn, refR}} {
		func() {
			s := ts.NewScope()
			defer s.Close()
			ts.NoGrad(func() {
				c.m.EncodeImage(c.ref["image"], false)
				c.m.EncodeText(c.ref["text"].MustTotype(gotch.Int, false))
				c.m.Forward(c.ref["image"], c.ref["text"], false)
			})
		}()
		assert.Equal(t, before, ts.LiveTensors(), "a forward pass leaves nothing behind")
	}
}
