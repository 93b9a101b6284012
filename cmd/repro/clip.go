package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	_ "image/gif"  // decoders for -images
	_ "image/jpeg" // "
	_ "image/png"  // "
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
	_ "golang.org/x/image/bmp"  // "
	_ "golang.org/x/image/webp" // "

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/cliptok"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/train"
)

func clipCommand() *cli.Command {
	return &cli.Command{
		Name:  "clip",
		Short: "CLIP (Radford et al., 2021): tokenize, embed images and texts, zero-shot classification, interpret learned prompts",
		Long: `clip runs OpenAI's CLIP as github.com/openai/CLIP does: its tokenizer (clip.tokenize,
the vocabulary built in), its image preprocessing (clip.load's preprocess: bicubic resize of the
shorter side as PIL resizes, center crop, CLIP's normalisation) and the model from anything
torchmods.LoadCLIP reads: a released TorchScript archive (ViT-B-16.pt, RN50.pt, ...), an
OpenAI-named state dict (torch.save or safetensors), or a HF CLIPModel folder (or hf:ORG/NAME).

	repro clip tokenize "a photo of a cat."
	repro clip embed -model ViT-B-16.pt -images photos/ -texts "a photo of a cat." -out emb.safetensors
	repro clip zeroshot -model ViT-B-16.pt -classes "cat,dog,car" photos/
	repro clip interpret -model ViT-B-16.pt -prompt output/.../CoOp/seed1   # a learned prompt's nearest words

Images are PNG, JPEG, GIF, BMP or WebP files, or folders of them. The preprocessed pixels of a
PNG are PIL's exactly, so the features are the Python code's; Go's JPEG decoder rounds a few
pixels differently from libjpeg's (PIL's), by a level or two (a mean 0.05), so JPEG features
differ from Python's by about that much.`,
		Sub: []*cli.Command{clipTokenize(), clipEmbed(), clipZeroShot(), clipInterpret()},
	}
}

func clipTokenize() *cli.Command {
	var tokenizer string
	context := 77
	var truncate, raw bool
	return &cli.Command{
		Name:  "tokenize",
		Short: "print CLIP's token ids of texts (clip.tokenize)",
		Usage: "[-context 77] [-truncate] [-raw] [-tokenizer PATH] TEXT...",
		Long: `tokenize prints, for each TEXT, one line of ids as clip.tokenize gives them:
<|startoftext|> (49406), the text's BPE ids, <|endoftext|> (49407), zeros up to -context. A
text too long for -context is an error unless -truncate, which cuts it and ends it with
<|endoftext|>. -raw prints the BPE ids alone (SimpleTokenizer.encode). The text is cleaned as
simple_tokenizer.py cleans it (ftfy's fixes but its mojibake repair, HTML unescaping,
whitespace, lower case: see package cliptok).`,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&context, "context", 77, "the context length: rows are padded to it")
			fs.BoolVar(&truncate, "truncate", false, "cut texts longer than -context instead of failing")
			fs.BoolVar(&raw, "raw", false, "print the BPE ids only: no start, end or padding")
			fs.StringVar(&tokenizer, "tokenizer", "", "a vocabulary: a bpe_simple_vocab_16e6.txt[.gz] merges file or a HF tokenizer folder (default: OpenAI's, built in)")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) == 0 {
				return cli.Usagef("give the texts to tokenize")
			}
			if context < 1 && !raw {
				return cli.Usagef("-context %d: want at least 1", context)
			}
			tok, err := clipTokenizer(tokenizer)
			if err != nil {
				return err
			}
			var rows [][]int64
			if raw {
				for _, a := range args {
					rows = append(rows, tok.Encode(a))
				}
			} else if rows, err = tok.Tokenize(args, context, truncate); err != nil {
				return fmt.Errorf("%w; -truncate cuts such texts", err)
			}
			for _, r := range rows {
				s := make([]string, len(r))
				for i, id := range r {
					s[i] = strconv.FormatInt(id, 10)
				}
				fmt.Fprintln(env.Stdout, strings.Join(s, " "))
			}
			return nil
		},
	}
}

func clipTokenizer(path string) (*cliptok.Tokenizer, error) {
	if path == "" {
		return cliptok.Default(), nil
	}
	t, err := cliptok.Load(path)
	if err != nil {
		return nil, fmt.Errorf("-tokenizer: %w", err)
	}
	return t, nil
}

// clipModelFlags are the flags of the commands that run a model.
type clipModelFlags struct {
	model, device, tokenizer string
	visionHeads, textHeads   int64
	batch                    int
	truncate                 bool
}

func (f *clipModelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.model, "model", "", "the CLIP: an OpenAI archive or state dict, a HF CLIPModel folder or hf:ORG/NAME")
	fs.StringVar(&f.device, "device", "cpu", "cpu or cuda")
	fs.StringVar(&f.tokenizer, "tokenizer", "", "a vocabulary: a bpe_simple_vocab_16e6.txt[.gz] merges file or a HF tokenizer folder (default: OpenAI's, built in)")
	fs.Int64Var(&f.visionHeads, "vision-heads", 0, "an OpenAI file's vision heads (0: width/64, as build_model; every released model)")
	fs.Int64Var(&f.textHeads, "text-heads", 0, "an OpenAI file's text heads (0: width/64, as build_model)")
	fs.IntVar(&f.batch, "batch", 32, "images or texts per forward pass")
	fs.BoolVar(&f.truncate, "truncate", false, "cut texts longer than the model's context instead of failing")
}

// clipSession is a loaded model with its tokenizer.
type clipSession struct {
	*clipModelFlags
	l   *torchmods.LoadedCLIP
	tok *cliptok.Tokenizer
	dev gotch.Device
}

// openCLIP loads -model (what LoadCLIP reports goes to stderr, so that
// stdout holds the results) and the tokenizer.
func openCLIP(f *clipModelFlags, env *cli.Env) (*clipSession, error) {
	if f.model == "" {
		return nil, cli.Usagef("-model names the CLIP to run")
	}
	if f.batch < 1 {
		return nil, cli.Usagef("-batch %d: want at least 1", f.batch)
	}
	dev, err := train.DeviceOf(train.TrainerConfig{Device: f.device})
	if err != nil {
		return nil, err
	}
	tok, err := clipTokenizer(f.tokenizer)
	if err != nil {
		return nil, err
	}
	l, err := torchmods.LoadCLIP(f.model, torchmods.CLIPLoadOptions{Device: dev, VisionHeads: f.visionHeads, TextHeads: f.textHeads}, env.Stderr)
	if err != nil {
		if strings.Contains(err.Error(), "heads 0 for width") {
			return nil, fmt.Errorf("-model: %w (-vision-heads, -text-heads)", err)
		}
		return nil, fmt.Errorf("-model: %w", err)
	}
	return &clipSession{clipModelFlags: f, l: l, tok: tok, dev: dev}, nil
}

func (c *clipSession) drop() { c.l.Store.Drop() }

// unitRows runs f, tensor code, without gradients in its own scope, and
// returns its [B, D] output normalised to unit length per row (as HF's
// CLIPModel normalises image_embeds and text_embeds), as float32 rows.
func unitRows(f func() *ts.Tensor) (rows [][]float32, err error) {
	err = torchmods.Try(func() {
		s := ts.NewScope()
		defer s.Close()
		ts.NoGrad(func() {
			x := f()
			x = x.MustDiv(x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false), false).
				MustTotype(gotch.Float, true).MustTo(gotch.CPU, true)
			d := int(x.MustSize()[1])
			v := x.Vals().([]float32)
			for i := 0; i < len(v); i += d {
				rows = append(rows, v[i:i+d])
			}
		})
	})
	return rows, err
}

// embedImages is the normalised image features of the files, -batch at a
// time; an unreadable file is an error naming it.
func (c *clipSession) embedImages(paths []string) ([][]float32, error) {
	n := int(c.l.Model.Cfg.ImageResolution)
	var out [][]float32
	for start := 0; start < len(paths); start += c.batch {
		batch := paths[start:min(start+c.batch, len(paths))]
		pix := make([]float32, 0, len(batch)*3*n*n)
		for _, p := range batch {
			img, err := readImage(p)
			if err != nil {
				return nil, err
			}
			x, err := torchmods.CLIPPreprocess(img, n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			pix = append(pix, x...)
		}
		rows, err := unitRows(func() *ts.Tensor {
			x := ts.MustOfSlice(pix).MustView([]int64{int64(len(batch)), 3, int64(n), int64(n)}, true).MustTo(c.dev, true)
			return c.l.Model.EncodeImage(x, false)
		})
		if err != nil {
			return nil, fmt.Errorf("encoding %s ...: %w", batch[0], err)
		}
		out = append(out, rows...)
	}
	return out, nil
}

// embedTexts is the normalised text features of texts, tokenized to the
// model's context, -batch at a time.
func (c *clipSession) embedTexts(texts []string) ([][]float32, error) {
	cfg := c.l.Model.Cfg
	if int64(c.tok.VocabSize()) > cfg.VocabSize {
		return nil, fmt.Errorf("-model's vocabulary has %d tokens, fewer than the tokenizer's %d: the model was not trained with this tokenizer (-tokenizer reads another)", cfg.VocabSize, c.tok.VocabSize())
	}
	ids, err := c.tok.Tokenize(texts, int(cfg.ContextLength), c.truncate)
	if err != nil {
		return nil, fmt.Errorf("%w; -truncate cuts such texts", err)
	}
	var out [][]float32
	for start := 0; start < len(ids); start += c.batch {
		batch := ids[start:min(start+c.batch, len(ids))]
		flat := make([]int64, 0, len(batch)*int(cfg.ContextLength))
		for _, r := range batch {
			flat = append(flat, r...)
		}
		rows, err := unitRows(func() *ts.Tensor {
			x := ts.MustOfSlice(flat).MustView([]int64{int64(len(batch)), cfg.ContextLength}, true).MustTo(c.dev, true)
			return c.l.Model.EncodeText(x)
		})
		if err != nil {
			return nil, fmt.Errorf("encoding text %d ...: %w", start, err)
		}
		out = append(out, rows...)
	}
	return out, nil
}

// readImage decodes an image file, naming it in any error.
func readImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (want PNG, JPEG, GIF, BMP or WebP)", path, err)
	}
	return img, nil
}

// clipImageExts are the files a folder of images is read for.
var clipImageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".gif": true, ".bmp": true, ".webp": true}

// imagePaths expands folders into their image files, sorted; a file is
// kept as it is (its decoding says whether it is an image).
func imagePaths(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		var files []string
		for _, e := range ents {
			if !e.IsDir() && clipImageExts[strings.ToLower(filepath.Ext(e.Name()))] {
				files = append(files, filepath.Join(a, e.Name()))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: a folder with no image files (.png, .jpg, .jpeg, .gif, .bmp, .webp)", a)
		}
		sort.Strings(files)
		out = append(out, files...)
	}
	return out, nil
}

// listFlag is a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// readLines reads a file of one entry per line, blank lines skipped.
func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no lines", path)
	}
	return out, nil
}

func clipEmbed() *cli.Command {
	var f clipModelFlags
	var images, texts listFlag
	var textsFile, out string
	return &cli.Command{
		Name:  "embed",
		Short: "write the CLIP embeddings of images and texts to a safetensors file",
		Usage: "-model SPEC [-images FILE|DIR]... [-texts TEXT]... [-texts-file FILE] -out FILE.safetensors",
		Long: `embed encodes images (each -images a file or a folder of image files, read in order) and
texts (each -texts one text, and the lines of -texts-file) with the model, -batch at a time, and
writes to -out image_embeds [images, embed] and text_embeds [texts, embed] (float32, only those
given): the projected features normalised to unit length, as HF's CLIPModel returns image_embeds
and text_embeds (OpenAI's encode_image and encode_text, divided by their norms). Their dot
products are cosine similarities; CLIP's logits are them times exp(logit_scale), 100 for the
released models. The file's metadata lists the images and texts in order.`,
		Flags: func(fs *flag.FlagSet) {
			f.register(fs)
			fs.Var(&images, "images", "an image file or a folder of them (repeatable)")
			fs.Var(&texts, "texts", "a text (repeatable)")
			fs.StringVar(&textsFile, "texts-file", "", "a file of texts, one per line")
			fs.StringVar(&out, "out", "", "the safetensors file to write")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("unexpected argument %q: give images with -images, texts with -texts", args[0])
			}
			if out == "" {
				return cli.Usagef("-out names the safetensors file to write")
			}
			allTexts := append([]string(nil), texts...)
			if textsFile != "" {
				lines, err := readLines(textsFile)
				if err != nil {
					return fmt.Errorf("-texts-file: %w", err)
				}
				allTexts = append(allTexts, lines...)
			}
			paths, err := imagePaths(images)
			if err != nil {
				return fmt.Errorf("-images: %w", err)
			}
			if len(paths) == 0 && len(allTexts) == 0 {
				return cli.Usagef("nothing to embed: give -images, -texts or -texts-file")
			}
			s := ts.NewScope()
			defer s.Close()
			c, err := openCLIP(&f, env)
			if err != nil {
				return err
			}
			defer c.drop()
			var tensors []safetensors.Tensor
			meta := map[string]string{"model": f.model, "normalized": "unit L2 norm per row, as HF CLIPModel's image_embeds and text_embeds"}
			var lines []string
			if len(paths) > 0 {
				rows, err := c.embedImages(paths)
				if err != nil {
					return err
				}
				tensors = append(tensors, f32Tensor("image_embeds", rows))
				meta["images"] = jsonString(paths)
				lines = append(lines, fmt.Sprintf("image_embeds [%d %d]", len(rows), len(rows[0])))
			}
			if len(allTexts) > 0 {
				rows, err := c.embedTexts(allTexts)
				if err != nil {
					return err
				}
				tensors = append(tensors, f32Tensor("text_embeds", rows))
				meta["texts"] = jsonString(allTexts)
				lines = append(lines, fmt.Sprintf("text_embeds [%d %d]", len(rows), len(rows[0])))
			}
			if err := safetensors.Write(out, tensors, meta); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "wrote %s: %s\n", out, strings.Join(lines, ", "))
			return nil
		},
	}
}

// f32Tensor lays rows out as a float32 safetensors tensor.
func f32Tensor(name string, rows [][]float32) safetensors.Tensor {
	d := len(rows[0])
	b := make([]byte, 0, 4*len(rows)*d)
	for _, r := range rows {
		for _, v := range r {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return safetensors.Tensor{Name: name, DType: "F32", Shape: []int64{int64(len(rows)), int64(d)}, Data: b}
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("clip: %v", err)) // strings always marshal
	}
	return string(b)
}

// clipTemplates are the templates zeroshot uses without -templates: the
// README's and CoOp's zero-shot prompt.
var clipTemplates = []string{"a photo of a {}."}

func clipZeroShot() *cli.Command {
	var f clipModelFlags
	var classes, classesFile, templatesFile string
	var templates listFlag
	top := 5
	return &cli.Command{
		Name:  "zeroshot",
		Short: "classify images against class names with CLIP, as its zero-shot notebook does",
		Usage: "-model SPEC (-classes \"a,b,c\" | -classes-file FILE) [-templates TEMPLATE]... [-templates-file FILE] [-top 5] IMAGE|DIR...",
		Long: `zeroshot classifies each image among the classes as CLIP's
Prompt_Engineering_for_ImageNet notebook does: each class name is put into every template (its
"{}"), the texts encoded and normalised, their mean per class normalised again into the class's
weight; each image's normalised features are scored against every class, times the model's
exp(logit_scale) (100 for the released models, the notebook's constant), and a softmax over the
classes gives the probabilities. It prints, per image, the -top classes and probabilities.
Without -templates or -templates-file the template is "a photo of a {}.".`,
		Flags: func(fs *flag.FlagSet) {
			f.register(fs)
			fs.StringVar(&classes, "classes", "", "the class names, separated by commas")
			fs.StringVar(&classesFile, "classes-file", "", "a file of class names, one per line")
			fs.Var(&templates, "templates", `a prompt template with "{}" for the class name (repeatable)`)
			fs.StringVar(&templatesFile, "templates-file", "", "a file of templates, one per line")
			fs.IntVar(&top, "top", 5, "how many classes to print per image")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) == 0 {
				return cli.Usagef("give the images to classify (files or folders)")
			}
			if (classes == "") == (classesFile == "") {
				return cli.Usagef("give the classes with -classes or with -classes-file (one of them)")
			}
			if top < 1 {
				return cli.Usagef("-top %d: want at least 1", top)
			}
			var names []string
			if classes != "" {
				for _, c := range strings.Split(classes, ",") {
					if c = strings.TrimSpace(c); c == "" {
						return cli.Usagef("-classes %q has an empty class name", classes)
					}
					names = append(names, c)
				}
			} else {
				var err error
				if names, err = readLines(classesFile); err != nil {
					return fmt.Errorf("-classes-file: %w", err)
				}
			}
			tpls := append([]string(nil), templates...)
			if templatesFile != "" {
				lines, err := readLines(templatesFile)
				if err != nil {
					return fmt.Errorf("-templates-file: %w", err)
				}
				tpls = append(tpls, lines...)
			}
			if len(tpls) == 0 {
				tpls = clipTemplates
			}
			for _, t := range tpls {
				if !strings.Contains(t, "{}") {
					return cli.Usagef("template %q has no {} for the class name", t)
				}
			}
			paths, err := imagePaths(args)
			if err != nil {
				return err
			}
			s := ts.NewScope()
			defer s.Close()
			c, err := openCLIP(&f, env)
			if err != nil {
				return err
			}
			defer c.drop()
			var texts []string
			for _, n := range names {
				for _, t := range tpls {
					texts = append(texts, strings.ReplaceAll(t, "{}", n))
				}
			}
			temb, err := c.embedTexts(texts)
			if err != nil {
				return err
			}
			weights := classWeights(temb, len(tpls))
			var scale float64
			if err := torchmods.Try(func() { scale = c.l.Model.LogitScale.MustExp(false).Float64Values()[0] }); err != nil {
				return err
			}
			iemb, err := c.embedImages(paths)
			if err != nil {
				return err
			}
			for i, p := range paths {
				probs := zeroShotProbs(iemb[i], weights, scale)
				order := make([]int, len(probs))
				for j := range order {
					order[j] = j
				}
				sort.SliceStable(order, func(a, b int) bool { return probs[order[a]] > probs[order[b]] })
				var parts []string
				for _, j := range order[:min(top, len(order))] {
					parts = append(parts, fmt.Sprintf("%s %.4f", names[j], probs[j]))
				}
				fmt.Fprintf(env.Stdout, "%s: %s\n", p, strings.Join(parts, ", "))
			}
			return nil
		},
	}
}

// classWeights is the notebook's zeroshot_classifier on normalised text
// features laid out class by class, perTemplate rows each: per class the
// mean of its rows, normalised.
func classWeights(rows [][]float32, perTemplate int) [][]float64 {
	var out [][]float64
	for start := 0; start < len(rows); start += perTemplate {
		w := make([]float64, len(rows[start]))
		for _, r := range rows[start : start+perTemplate] {
			for k, v := range r {
				w[k] += float64(v) / float64(perTemplate)
			}
		}
		out = append(out, unit(w))
	}
	return out
}

func unit(w []float64) []float64 {
	n := 0.0
	for _, v := range w {
		n += v * v
	}
	n = math.Sqrt(n)
	for k := range w {
		w[k] /= n
	}
	return w
}

// zeroShotProbs is softmax(scale × img · w) over the classes.
func zeroShotProbs(img []float32, weights [][]float64, scale float64) []float64 {
	logits := make([]float64, len(weights))
	hi := math.Inf(-1)
	for j, w := range weights {
		for k, v := range img {
			logits[j] += float64(v) * w[k]
		}
		logits[j] *= scale
		hi = math.Max(hi, logits[j])
	}
	sum := 0.0
	for j := range logits {
		logits[j] = math.Exp(logits[j] - hi)
		sum += logits[j]
	}
	for j := range logits {
		logits[j] /= sum
	}
	return logits
}
