package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/cliptok"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// writePNG writes a w×h image of random colours (seed), opaque or not.
func writePNG(t *testing.T, path string, w, h int, seed int64, alpha bool) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			a := uint8(255)
			if alpha {
				a = uint8(r.Intn(256))
			}
			img.SetNRGBA(x, y, color.NRGBA{uint8(r.Intn(256)), uint8(r.Intn(256)), uint8(r.Intn(256)), a})
		}
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, png.Encode(f, img))
	require.NoError(t, f.Close())
}

// f32Rows reads a float32 [N, D] tensor of a safetensors file.
func f32Rows(t *testing.T, f *safetensors.File, name string) [][]float32 {
	t.Helper()
	x, ok := f.Get(name)
	require.True(t, ok, name)
	require.Equal(t, "F32", x.DType)
	require.Len(t, x.Shape, 2)
	var rows [][]float32
	for i := range int(x.Shape[0]) {
		row := make([]float32, x.Shape[1])
		for j := range row {
			row[j] = math.Float32frombits(binary.LittleEndian.Uint32(x.Data[4*(i*len(row)+j):]))
		}
		rows = append(rows, row)
	}
	return rows
}

// unitFeatures is what embed must give, computed here from the model:
// encode, then divide by the norm.
func unitFeatures(t *testing.T, x *ts.Tensor) [][]float32 {
	t.Helper()
	x = x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false), false)
	d := int(x.MustSize()[1])
	v := x.Vals().([]float32)
	var rows [][]float32
	for i := 0; i < len(v); i += d {
		rows = append(rows, v[i:i+d])
	}
	return rows
}

func maxDiff(a, b [][]float32) float64 {
	d := 0.0
	for i := range a {
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

// expectedImages preprocesses the files and encodes them with l's model.
func expectedImages(t *testing.T, l *torchmods.LoadedCLIP, paths []string) [][]float32 {
	t.Helper()
	n := int(l.Model.Cfg.ImageResolution)
	var pix []float32
	for _, p := range paths {
		img, err := readImage(p)
		require.NoError(t, err)
		x, err := torchmods.CLIPPreprocess(img, n)
		require.NoError(t, err)
		pix = append(pix, x...)
	}
	var rows [][]float32
	ts.NoGrad(func() {
		x := ts.MustOfSlice(pix).MustView([]int64{int64(len(paths)), 3, int64(n), int64(n)}, true)
		rows = unitFeatures(t, l.Model.EncodeImage(x, false))
	})
	return rows
}

func TestClipTokenize(t *testing.T) {
	b, err := os.ReadFile("../../torchmods/cliptok/testdata/ids.json")
	require.NoError(t, err)
	var ref struct {
		Cases []struct {
			Text     string
			IDs      []int64
			Tokenize []int64
			TooLong  bool `json:"too_long"`
		}
	}
	require.NoError(t, json.Unmarshal(b, &ref))
	fields := func(s string) []int64 {
		var out []int64
		for _, f := range strings.Fields(s) {
			v, err := strconv.ParseInt(f, 10, 64)
			require.NoError(t, err)
			out = append(out, v)
		}
		return out
	}
	checked := 0
	for _, c := range ref.Cases {
		if c.Text != "a photo of a cat." && c.Text != "Hello, world!" && !c.TooLong {
			continue
		}
		checked++
		stdout, stderr, code := runRepro(t, "clip", "tokenize", "-truncate", c.Text)
		require.Equal(t, 0, code, stderr)
		assert.Equal(t, c.Tokenize, fields(stdout), "clip.tokenize(%q, truncate=True)", c.Text)
		stdout, stderr, code = runRepro(t, "clip", "tokenize", "-raw", c.Text)
		require.Equal(t, 0, code, stderr)
		assert.Equal(t, c.IDs, fields(stdout), "encode(%q)", c.Text)
		if c.TooLong {
			_, stderr, code = runRepro(t, "clip", "tokenize", "fine", c.Text)
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr, "text 1 (")
			assert.Contains(t, stderr, "more than the context length 77")
		}
	}
	assert.Equal(t, 3, checked)
	stdout, stderr, code := runRepro(t, "clip", "tokenize", "-context", "5", "a cat", "dogs")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "49406 320 2368 49407 0\n49406 3255 49407 0 0\n", stdout)
	_, stderr, code = runRepro(t, "clip", "tokenize")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "give the texts")
}

// clipSDFromParity writes the parity fixture's state dict ("sd.*") as an
// OpenAI-named safetensors file, as LoadCLIP reads one.
func clipSDFromParity(t *testing.T, dir string) string {
	t.Helper()
	ref, err := safetensors.Read("../../torchmods/testdata/clip_vit_parity.safetensors")
	require.NoError(t, err)
	var sd []safetensors.Tensor
	for _, x := range ref.Tensors {
		if strings.HasPrefix(x.Name, "sd.") {
			x.Name = strings.TrimPrefix(x.Name, "sd.")
			sd = append(sd, x)
		}
	}
	p := filepath.Join(dir, "clip_vit_sd.safetensors")
	require.NoError(t, safetensors.Write(p, sd, nil))
	return p
}

// embed on the tiny fixtures (HF folder, OpenAI state dict, TorchScript
// archive, all the same ViT): the image embeddings are the model's on the
// preprocessed files, normalised; the three forms agree (the archive to
// its fp16 weights' precision).
func TestClipEmbedFixtures(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	dir := t.TempDir()
	imgDir := filepath.Join(dir, "imgs")
	require.NoError(t, os.MkdirAll(imgDir, 0o755))
	writePNG(t, filepath.Join(dir, "wide.png"), 50, 40, 1, false)
	writePNG(t, filepath.Join(imgDir, "b.png"), 20, 64, 2, false)
	writePNG(t, filepath.Join(imgDir, "a.png"), 32, 32, 3, true)
	require.NoError(t, os.WriteFile(filepath.Join(imgDir, "notes.txt"), []byte("not an image"), 0o644))
	paths := []string{filepath.Join(dir, "wide.png"), filepath.Join(imgDir, "a.png"), filepath.Join(imgDir, "b.png")}
	sd := clipSDFromParity(t, dir)
	heads := []string{"-vision-heads", "4", "-text-heads", "2"}

	got := map[string][][]float32{}
	for name, model := range map[string][]string{
		"hf":  {"../../torchmods/testdata/clip_hf_vit"},
		"sd":  append([]string{sd}, heads...),
		"jit": append([]string{"../../torchmods/testdata/clip_vit_jit.pt"}, heads...),
	} {
		out := filepath.Join(dir, name+".safetensors")
		args := append([]string{"clip", "embed", "-model"}, model...)
		args = append(args, "-images", paths[0], "-images", imgDir, "-batch", "2", "-out", out)
		stdout, stderr, code := runRepro(t, args...)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "wrote "+out+": image_embeds [3 24]")
		f, err := safetensors.Read(out)
		require.NoError(t, err)
		_, hasText := f.Get("text_embeds")
		assert.False(t, hasText)
		var listed []string
		require.NoError(t, json.Unmarshal([]byte(f.Metadata["images"]), &listed))
		assert.Equal(t, paths, listed, "a folder's image files, sorted, after the file given before it")
		got[name] = f32Rows(t, f, "image_embeds")

		o := torchmods.CLIPLoadOptions{}
		if name != "hf" {
			o.VisionHeads, o.TextHeads = 4, 2
		}
		l, err := torchmods.LoadCLIP(model[0], o, &strings.Builder{})
		require.NoError(t, err)
		want := expectedImages(t, l, paths)
		l.Store.Drop()
		assert.LessOrEqual(t, maxDiff(got[name], want), 1e-6, name)
		for _, r := range got[name] {
			n := 0.0
			for _, v := range r {
				n += float64(v) * float64(v)
			}
			assert.InDelta(t, 1, n, 1e-5, "unit length")
		}
	}
	assert.LessOrEqual(t, maxDiff(got["hf"], got["sd"]), 1e-5, "HF folder and OpenAI state dict")
	d := maxDiff(got["jit"], got["sd"])
	t.Logf("TorchScript archive (fp16 weights) vs float32 state dict: image_embeds max diff %.2g", d)
	assert.LessOrEqual(t, d, 1e-2)

	// The fixtures' vocabulary is 100 ids: CLIP's tokenizer does not fit it.
	_, stderr, code := runRepro(t, "clip", "embed", "-model", "../../torchmods/testdata/clip_hf_vit", "-texts", "a cat", "-out", filepath.Join(dir, "t.safetensors"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "-model's vocabulary has 100 tokens, fewer than the tokenizer's 49408")
}

// writeVocabCLIP saves a small CLIP with CLIP's real vocabulary and
// context (49408 ids, 77 positions) under OpenAI's names, random weights.
func writeVocabCLIP(t *testing.T, dir string) string {
	t.Helper()
	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	torchmods.NewCLIP(store.Root(), torchmods.CLIPConfig{EmbedDim: 8, ImageResolution: 32, VisionLayers: []int64{1}, VisionWidth: 16,
		VisionPatchSize: 16, VisionHeads: 2, ContextLength: 77, VocabSize: 49408, TransformerWidth: 16, TransformerHeads: 2, TransformerLayers: 1})
	p := filepath.Join(dir, "clip_vocab.safetensors")
	require.NoError(t, store.Save(p, "", nil))
	return p
}

// embed and zeroshot on a model of CLIP's vocabulary: text embeddings are
// the model's on clip.tokenize's ids; zeroshot's probabilities are the
// notebook's (template embeddings averaged per class, renormalised,
// exp(logit_scale) × cosine, softmax), computed here with tensors.
func TestClipEmbedAndZeroShot(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	dir := t.TempDir()
	model := writeVocabCLIP(t, dir)
	heads := []string{"-vision-heads", "2", "-text-heads", "2"}
	imgA, imgB := filepath.Join(dir, "a.png"), filepath.Join(dir, "b.png")
	writePNG(t, imgA, 48, 40, 4, false)
	writePNG(t, imgB, 33, 70, 5, false)
	textsFile := filepath.Join(dir, "texts.txt")
	require.NoError(t, os.WriteFile(textsFile, []byte("a dog on the grass\n\nart of the car &amp; road\n"), 0o644))
	l, err := torchmods.LoadCLIP(model, torchmods.CLIPLoadOptions{VisionHeads: 2, TextHeads: 2}, &strings.Builder{})
	require.NoError(t, err)
	defer l.Store.Drop()
	tok := cliptok.Default()
	encodeTexts := func(texts []string) *ts.Tensor {
		ids, err := tok.Tokenize(texts, 77, false)
		require.NoError(t, err)
		var flat []int64
		for _, r := range ids {
			flat = append(flat, r...)
		}
		return l.Model.EncodeText(ts.MustOfSlice(flat).MustView([]int64{int64(len(texts)), 77}, true))
	}

	out := filepath.Join(dir, "emb.safetensors")
	stdout, stderr, code := runRepro(t, append([]string{"clip", "embed", "-model", model, "-texts", "a photo of a cat.", "-texts", "Don’t PANIC",
		"-texts-file", textsFile, "-images", imgA, "-images", imgB, "-batch", "3", "-out", out}, heads...)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "image_embeds [2 8], text_embeds [4 8]")
	f, err := safetensors.Read(out)
	require.NoError(t, err)
	texts := []string{"a photo of a cat.", "Don’t PANIC", "a dog on the grass", "art of the car &amp; road"}
	var listed []string
	require.NoError(t, json.Unmarshal([]byte(f.Metadata["texts"]), &listed))
	assert.Equal(t, texts, listed)
	ts.NoGrad(func() {
		assert.LessOrEqual(t, maxDiff(f32Rows(t, f, "text_embeds"), unitFeatures(t, encodeTexts(texts))), 1e-6)
	})
	assert.LessOrEqual(t, maxDiff(f32Rows(t, f, "image_embeds"), expectedImages(t, l, []string{imgA, imgB})), 1e-6)

	// zeroshot, against the notebook's computation done with tensors.
	classes := []string{"cat", "dog", "car"}
	templates := []string{"a photo of a {}.", "art of the {}.", "a {} in a video game."}
	var prompts []string
	for _, c := range classes {
		for _, tp := range templates {
			prompts = append(prompts, strings.ReplaceAll(tp, "{}", c))
		}
	}
	var probs [][]float64
	ts.NoGrad(func() {
		norm := func(x *ts.Tensor) *ts.Tensor {
			return x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{-1}, true, false), false)
		}
		w := norm(norm(encodeTexts(prompts)).MustView([]int64{3, 3, 8}, false).MustMeanDim([]int64{1}, false, gotch.Float, false))
		img := ts.MustOfSlice(flatten(expectedImages(t, l, []string{imgA, imgB}))).MustView([]int64{2, 8}, false)
		p := img.MustMatmul(w.MustT(false), false).MustMul(l.Model.LogitScale.MustExp(false), false).MustSoftmax(-1, gotch.Double, false)
		v := p.Float64Values()
		probs = [][]float64{v[:3], v[3:]}
	})
	tplFile := filepath.Join(dir, "templates.txt")
	require.NoError(t, os.WriteFile(tplFile, []byte(templates[2]+"\n"), 0o644))
	classFile := filepath.Join(dir, "classes.txt")
	require.NoError(t, os.WriteFile(classFile, []byte("cat\ndog\n\ncar\n"), 0o644))
	for _, cl := range [][]string{{"-classes", "cat, dog ,car"}, {"-classes-file", classFile}} {
		args := append([]string{"clip", "zeroshot", "-model", model, "-templates", templates[0], "-templates", templates[1], "-templates-file", tplFile, "-top", "3"}, heads...)
		args = append(append(args, cl...), imgA, imgB)
		stdout, stderr, code = runRepro(t, args...)
		require.Equal(t, 0, code, stderr)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		require.Len(t, lines, 2, stdout)
		for i, line := range lines {
			head, rest, ok := strings.Cut(line, ": ")
			require.True(t, ok, line)
			assert.Equal(t, []string{imgA, imgB}[i], head)
			parts := strings.Split(rest, ", ")
			require.Len(t, parts, 3)
			prev := 2.0
			for _, part := range parts {
				name, pv, _ := strings.Cut(part, " ")
				p, err := strconv.ParseFloat(pv, 64)
				require.NoError(t, err)
				j := indexOf(classes, name)
				require.GreaterOrEqual(t, j, 0, part)
				assert.InDelta(t, probs[i][j], p, 6e-5, "%s %s", head, name)
				assert.LessOrEqual(t, p, prev, "sorted")
				prev = p
			}
		}
	}
	// -top 1 and the default template.
	stdout, stderr, code = runRepro(t, append([]string{"clip", "zeroshot", "-model", model, "-classes", "cat,dog", "-top", "1", imgA}, heads...)...)
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `^`+regexpQuote(imgA)+`: (cat|dog) [01]\.\d{4}\n$`, stdout)

	// A text too long for the context is refused by index unless -truncate.
	long := strings.Repeat("cat ", 80)
	_, stderr, code = runRepro(t, append([]string{"clip", "embed", "-model", model, "-texts", "fine", "-texts", long, "-out", filepath.Join(dir, "x.safetensors")}, heads...)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `text 1 ("cat cat`)
	assert.Contains(t, stderr, "-truncate cuts such texts")
	_, stderr, code = runRepro(t, append([]string{"clip", "embed", "-model", model, "-truncate", "-texts", long, "-out", filepath.Join(dir, "x.safetensors")}, heads...)...)
	assert.Equal(t, 0, code, stderr)
}

func flatten(rows [][]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func regexpQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `.`, `\.`, `+`, `\+`, `(`, `\(`, `)`, `\)`, `[`, `\[`, `]`, `\]`).Replace(s)
}

// Mistakes are errors that name the flag or file, with exit status 2 for
// misuse, 1 for a bad file; none crashes and nothing is written.
func TestClipErrors(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.png")
	writePNG(t, img, 8, 8, 1, false)
	txt := filepath.Join(dir, "not-an-image.png")
	require.NoError(t, os.WriteFile(txt, []byte("hello"), 0o644))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	out := filepath.Join(dir, "out.safetensors")
	hf := "../../torchmods/testdata/clip_hf_vit"
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"embed", "-images", img, "-out", out}, 2, "-model names the CLIP"},
		{[]string{"embed", "-model", hf, "-images", img}, 2, "-out names the safetensors file"},
		{[]string{"embed", "-model", hf, "-out", out}, 2, "nothing to embed"},
		{[]string{"embed", "-model", hf, "-out", out, img}, 2, "give images with -images"},
		{[]string{"embed", "-model", hf, "-images", img, "-batch", "0", "-out", out}, 2, "-batch 0"},
		{[]string{"embed", "-model", hf, "-images", filepath.Join(dir, "absent.png"), "-out", out}, 1, "-images: stat " + filepath.Join(dir, "absent.png")},
		{[]string{"embed", "-model", hf, "-images", txt, "-out", out}, 1, txt + ": image: unknown format"},
		{[]string{"embed", "-model", hf, "-images", empty, "-out", out}, 1, empty + ": a folder with no image files"},
		{[]string{"embed", "-model", hf, "-texts-file", filepath.Join(dir, "absent.txt"), "-out", out}, 1, "-texts-file: open " + filepath.Join(dir, "absent.txt")},
		{[]string{"embed", "-model", filepath.Join(dir, "absent"), "-images", img, "-out", out}, 1, "-model: weights: stat " + filepath.Join(dir, "absent")},
		{[]string{"embed", "-model", "../../torchmods/testdata/hf_bert_mlm", "-images", img, "-out", out}, 1, `model_type "bert" is not CLIP's`},
		{[]string{"embed", "-model", "../../torchmods/testdata/clip_vit_jit.pt", "-images", img, "-out", out}, 1, "heads 0 for width 40"},
		{[]string{"embed", "-model", hf, "-images", img, "-tokenizer", filepath.Join(dir, "absent.gz"), "-out", out}, 1, "-tokenizer: tokenizer: stat"},
		{[]string{"zeroshot", "-model", hf, img}, 2, "-classes or with -classes-file"},
		{[]string{"zeroshot", "-model", hf, "-classes", "a", "-classes-file", txt, img}, 2, "-classes or with -classes-file"},
		{[]string{"zeroshot", "-model", hf, "-classes", "a,,b", img}, 2, `-classes "a,,b" has an empty class name`},
		{[]string{"zeroshot", "-model", hf, "-classes", "a,b", "-templates", "a photo", img}, 2, `template "a photo" has no {}`},
		{[]string{"zeroshot", "-model", hf, "-classes", "a,b"}, 2, "give the images"},
		{[]string{"zeroshot", "-model", hf, "-classes", "a,b", "-top", "0", img}, 2, "-top 0"},
		{[]string{"zeroshot", "-model", hf, "-classes-file", filepath.Join(dir, "absent.txt"), img}, 1, "-classes-file: open"},
		{[]string{"zeroshot", "-model", hf, "-classes", "a,b", img}, 1, "-model's vocabulary has 100 tokens"},
		{[]string{"tokenize", "-context", "0", "x"}, 2, "-context 0: want at least 1"},
	} {
		_, stderr, code := runRepro(t, append([]string{"clip"}, c.args...)...)
		assert.Equal(t, c.code, code, "%v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.msg, "%v", c.args)
		assert.NotContains(t, stderr, "goroutine", "no crash: %v", c.args)
	}
	_, err := os.Stat(out)
	assert.True(t, os.IsNotExist(err), "nothing written on failure")
}

// `repro hf run` takes one of OpenAI's TorchScript archives and runs it
// as HF's CLIPModel: the embeddings are model.py's features (on the fp16
// weights) normalised, the logits exp(logit_scale) times their products.
func TestHFRunCLIPArchive(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	dir := t.TempDir()
	raw, err := safetensors.Read("../../torchmods/testdata/clip_vit_parity.safetensors")
	require.NoError(t, err)
	ids, ok := raw.Get("text")
	require.True(t, ok)
	px, ok := raw.Get("image")
	require.True(t, ok)
	ids.Name, px.Name = "input_ids", "pixel_values"
	in := filepath.Join(dir, "in.safetensors")
	require.NoError(t, safetensors.Write(in, []safetensors.Tensor{ids, px}, nil))
	out := filepath.Join(dir, "out.safetensors")
	jit := "../../torchmods/testdata/clip_vit_jit.pt"
	stdout, stderr, code := runRepro(t, "hf", "run", jit, "-inputs", in, "-out", out, "-vision-heads", "4", "-text-heads", "2")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "(TorchScript archive, OpenAI names)")
	assert.Contains(t, stdout, "CLIPModel forward on input_ids, pixel_values (HF's defaults for attention_mask): wrote "+out)

	ref, err := torchmods.LoadWeights("../../torchmods/testdata/clip_vit_parity.safetensors", gotch.CPU)
	require.NoError(t, err)
	got, err := torchmods.LoadWeights(out, gotch.CPU)
	require.NoError(t, err)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	assert.ElementsMatch(t, []string{"logits_per_image", "logits_per_text", "image_embeds", "text_embeds"}, names)
	norm := func(x *ts.Tensor) *ts.Tensor {
		return x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false), false)
	}
	img, txt := norm(ref["jit.image_features"]), norm(ref["jit.text_features"])
	testutil.Close(t, got["image_embeds"], img, 1e-5, "image_embeds")
	testutil.Close(t, got["text_embeds"], txt, 1e-5, "text_embeds")
	lpi := img.MustMatmul(txt.MustT(false), false).MustMul(ref["sd.logit_scale"].MustExp(false), false)
	testutil.Close(t, got["logits_per_image"], lpi, 1e-5, "logits_per_image")
	testutil.Close(t, got["logits_per_text"], lpi.MustT(false), 1e-5, "logits_per_text")

	// Without the heads the tiny model needs; a file that is neither.
	_, stderr, code = runRepro(t, "hf", "run", jit, "-inputs", in, "-out", out+"2")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "not an OpenAI CLIP file either")
	assert.Contains(t, stderr, "heads 0 for width 40")
	_, stderr, code = runRepro(t, "hf", "run", "../../torchmods/testdata/hf_bert_mlm/model.safetensors", "-inputs", in, "-out", out+"3")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no config.json beside it")
	assert.NotContains(t, stderr, "goroutine")
}

// interpret on a context made of the token embeddings of "a photo of a"
// (simple_tokenizer's 320, 1125, 539, 320): each vector's nearest word is
// its own, at distance 0; a context of another width is refused.
func TestClipInterpret(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	dir := t.TempDir()
	model := writeVocabCLIP(t, dir)
	l, err := torchmods.LoadCLIP(model, torchmods.CLIPLoadOptions{VisionHeads: 2, TextHeads: 2}, &strings.Builder{})
	require.NoError(t, err)
	defer l.Store.Drop()
	var rows []*ts.Tensor
	for _, id := range []int64{320, 1125, 539, 320} {
		rows = append(rows, l.Model.TokenEmbedding.Weight.MustSelect(0, id, false).MustDetach(true))
	}
	prompt := filepath.Join(dir, "prompt.safetensors")
	require.NoError(t, torchmods.SaveTensors(prompt, []string{"prompt_learner.ctx"}, []*ts.Tensor{ts.MustStack(rows, 0)}, "", nil))
	stdout, stderr, code := runRepro(t, "clip", "interpret", "-model", model, "-prompt", prompt, "-k", "2", "-vision-heads", "2", "-text-heads", "2")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 5, stdout)
	assert.Equal(t, "Return the top-2 matched words", lines[0])
	for i, w := range []string{"a</w>", "photo</w>", "of</w>", "a</w>"} {
		assert.Regexp(t, fmt.Sprintf(`^%d: \["%s", "[^"]+"\] \[0\.0000, \d+\.\d{4}\]$`, i+1, regexpQuote(w)), lines[i+1])
	}

	narrow := filepath.Join(dir, "narrow.safetensors")
	require.NoError(t, torchmods.SaveTensors(narrow, []string{"ctx"}, []*ts.Tensor{ts.MustZeros([]int64{4, 5}, gotch.Float, gotch.CPU)}, "", nil))
	_, stderr, code = runRepro(t, "clip", "interpret", "-model", model, "-prompt", narrow, "-vision-heads", "2", "-text-heads", "2")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "a context of width 5 for a CLIP whose token embedding is 16 wide")
}
