package cocoop

import (
	"encoding/json"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// This file is cocoop.pretrain: a tiny CLIP trained from scratch on the
// generated scenes, the frozen CLIP of the experiment that runs here (no
// CLIP weights can be fetched). The model is torchmods' CLIP (model.py's,
// OpenAI's names), the objective CLIP's: the symmetric cross-entropy of
// logit_scale.exp() times the cosine of every image and caption of a
// batch, logit_scale learned from log(1/0.07) and clamped at log(100)
// after each step, as OpenAI's paper says and open_clip does. The run
// directory holds what the prompt-learning tasks need to load it: the
// checkpoint (the CLIP under OpenAI's names), vocab.txt (the word
// tokenizer's vocabulary) and clip.json (the config, heads included,
// which build_model's width/64 would get wrong at these widths).

// Files a pre-training run writes beside its checkpoints.
const (
	pretrainVocabFile  = "vocab.txt"
	pretrainConfigFile = "clip.json"
)

// SceneCLIPModel is the tiny CLIP's size; its resolution is the scenes'
// size and its vocabulary the scenes' words.
type SceneCLIPModel struct {
	EmbedDim int64 `toml:"embed_dim"`
	// VisionLayers is one depth for a vision transformer, or the four
	// stage depths of a ModifiedResNet (model.py's vision_layers).
	VisionLayers []int64 `toml:"vision_layers"`
	VisionWidth  int64   `toml:"vision_width"`
	// VisionHeads are the transformer's heads, or the ResNet's attention
	// pool's (over its 32 x vision_width channels).
	VisionHeads   int64 `toml:"vision_heads"`
	PatchSize     int64 `toml:"patch_size"` // the vision transformer's; 0 for a ResNet
	ContextLength int64 `toml:"context_length"`
	TextWidth     int64 `toml:"text_width"`
	TextHeads     int64 `toml:"text_heads"`
	TextLayers    int64 `toml:"text_layers"`
}

// PretrainOptim is the optimizer: AdamW with CLIP's betas and eps, weight
// decay off gains, biases and logit_scale, linear warm-up then cosine.
type PretrainOptim struct {
	LR          float64 `toml:"lr"`
	Beta1       float64 `toml:"beta1"`
	Beta2       float64 `toml:"beta2"`
	Eps         float64 `toml:"eps"`
	WeightDecay float64 `toml:"weight_decay"`
	Warmup      int64   `toml:"warmup"` // steps
	// MaxLogitScale bounds logit_scale.exp(): 100 in CLIP.
	MaxLogitScale float64 `toml:"max_logit_scale"`
}

// PretrainEval is the held-out evaluation: image-to-caption and
// caption-to-image top-1 retrieval within groups of Batch held-out scenes,
// and zero-shot accuracy over every composition of the scenes' attributes
// ("a photo of a {}.") on PerClass one-object images each.
type PretrainEval struct {
	Scenes   int   `toml:"scenes"`
	Batch    int   `toml:"batch"`
	PerClass int   `toml:"per_class"`
	Seed     int64 `toml:"seed"` // the held-out data's seed, apart from the training stream's
}

// PretrainConfig is the config of cocoop.pretrain.
type PretrainConfig struct {
	train.Base
	Model  SceneCLIPModel `toml:"model"`
	Scenes SceneOptions   `toml:"scenes"`
	Batch  int            `toml:"batch"`
	// Twins makes every other scene of a batch the twin of the one before
	// (SceneOptions.Twin: one attribute of one object changed), so that
	// the loss needs every attribute.
	Twins   bool          `toml:"twins"`
	Workers int           `toml:"workers"` // data loader goroutines; 0 for the loader's default
	Optim   PretrainOptim `toml:"optim"`
	Eval    PretrainEval  `toml:"eval"`
}

// Validate checks the config, naming the key.
func (c *PretrainConfig) Validate() error {
	if err := c.Scenes.Validate("scenes"); err != nil {
		return err
	}
	m := c.Model
	for _, f := range []struct {
		key string
		v   int64
	}{{"model.embed_dim", m.EmbedDim}, {"model.vision_width", m.VisionWidth},
		{"model.vision_heads", m.VisionHeads}, {"model.context_length", m.ContextLength},
		{"model.text_width", m.TextWidth}, {"model.text_heads", m.TextHeads}, {"model.text_layers", m.TextLayers}} {
		if f.v < 1 {
			return config.Field(f.key, "must be positive, got %d", f.v)
		}
	}
	for _, l := range m.VisionLayers {
		if l < 1 {
			return config.Field("model.vision_layers", "depths must be positive, got %v", m.VisionLayers)
		}
	}
	switch len(m.VisionLayers) {
	case 1:
		switch {
		case m.VisionWidth%m.VisionHeads != 0:
			return config.Field("model.vision_heads", "%d heads do not divide vision_width %d", m.VisionHeads, m.VisionWidth)
		case m.PatchSize < 1 || int64(c.Scenes.Size)%m.PatchSize != 0:
			return config.Field("model.patch_size", "%d does not divide scenes.size %d", m.PatchSize, c.Scenes.Size)
		}
	case 4:
		switch {
		case m.PatchSize != 0:
			return config.Field("model.patch_size", "a ResNet has no patches: set 0")
		case c.Scenes.Size%32 != 0 || m.VisionWidth%2 != 0:
			return config.Field("model.vision_width", "a ResNet needs an even width and scenes.size a multiple of 32 (width %d, size %d)", m.VisionWidth, c.Scenes.Size)
		case 32*m.VisionWidth%m.VisionHeads != 0:
			return config.Field("model.vision_heads", "%d heads do not divide the attention pool's 32 x vision_width = %d channels", m.VisionHeads, 32*m.VisionWidth)
		}
	default:
		return config.Field("model.vision_layers", "one depth (a vision transformer) or four (a ResNet's stages), got %v", m.VisionLayers)
	}
	switch {
	case m.TextWidth%m.TextHeads != 0:
		return config.Field("model.text_heads", "%d heads do not divide text_width %d", m.TextHeads, m.TextWidth)
	case m.ContextLength < 24:
		return config.Field("model.context_length", "must be at least 24, the longest caption with its start and end tokens; got %d", m.ContextLength)
	case c.Batch < 2:
		return config.Field("batch", "a contrastive batch needs at least 2 scenes, got %d", c.Batch)
	case c.Twins && (c.Batch%2 != 0 || c.Eval.Batch%2 != 0):
		return config.Field("batch", "twins come in pairs: batch (%d) and eval.batch (%d) must be even", c.Batch, c.Eval.Batch)
	case c.Workers < 0:
		return config.Field("workers", "must not be negative, got %d", c.Workers)
	}
	o := c.Optim
	switch {
	case !(o.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", o.LR)
	case !(o.Beta1 >= 0 && o.Beta1 < 1) || !(o.Beta2 >= 0 && o.Beta2 < 1):
		return config.Field("optim.beta1", "beta1 and beta2 must be in [0, 1)")
	case !(o.Eps > 0) || o.WeightDecay < 0 || o.Warmup < 0:
		return config.Field("optim.eps", "eps must be positive, weight_decay and warmup not negative")
	case !(o.MaxLogitScale > 1):
		return config.Field("optim.max_logit_scale", "must be above 1, got %v", o.MaxLogitScale)
	}
	e := c.Eval
	switch {
	case e.Batch < 2 || e.Scenes < e.Batch:
		return config.Field("eval.batch", "retrieval needs groups of at least 2 and eval.scenes (%d) at least one group of eval.batch (%d)", e.Scenes, e.Batch)
	case e.PerClass < 1:
		return config.Field("eval.per_class", "must be positive, got %d", e.PerClass)
	}
	return nil
}

// CLIPConfig is the tiny CLIP's torchmods config for vocab words.
func (c *PretrainConfig) CLIPConfig(vocab int64) torchmods.CLIPConfig {
	m := c.Model
	return torchmods.CLIPConfig{EmbedDim: m.EmbedDim, ImageResolution: int64(c.Scenes.Size), VisionLayers: m.VisionLayers,
		VisionWidth: m.VisionWidth, VisionPatchSize: m.PatchSize, VisionHeads: m.VisionHeads, ContextLength: m.ContextLength,
		VocabSize: vocab, TransformerWidth: m.TextWidth, TransformerHeads: m.TextHeads, TransformerLayers: m.TextLayers}
}

const pretrainName = "cocoop.pretrain"

// DefaultPretrain is the experiment's tiny CLIP (configs/cocoop/scenes_clip.toml).
func DefaultPretrain() *PretrainConfig {
	c := &PretrainConfig{Base: train.Base{Task: pretrainName, Trainer: train.DefaultTrainer()},
		Model: SceneCLIPModel{EmbedDim: 64, VisionLayers: []int64{1, 1, 1, 1}, VisionWidth: 16, VisionHeads: 8, ContextLength: 24,
			TextWidth: 64, TextHeads: 2, TextLayers: 3},
		Scenes: DefaultScenes(), Batch: 64, Twins: true,
		Optim: PretrainOptim{LR: 1e-3, Beta1: 0.9, Beta2: 0.98, Eps: 1e-6, WeightDecay: 0.2, Warmup: 200, MaxLogitScale: 100},
		Eval:  PretrainEval{Scenes: 512, Batch: 128, PerClass: 10, Seed: 1000}}
	c.Trainer.MaxSteps = 2000
	return c
}

// PretrainTask is "cocoop.pretrain".
var PretrainTask = train.TaskSpec[*PretrainConfig, *PretrainResult]{
	Name:    pretrainName,
	Doc:     "a tiny CLIP trained from scratch on generated compositional scenes (CLIP's contrastive loss): the frozen CLIP of the small CoOp/CoCoOp experiment",
	Default: DefaultPretrain,
	Run:     Pretrain,
}

// PretrainResult is what a pre-training run reports.
type PretrainResult struct {
	HeldoutLoss float64 `json:"heldout_loss"`     // the contrastive loss on held-out groups of eval.batch
	ImageToText float64 `json:"image_to_text"`    // top-1 caption retrieval, %
	TextToImage float64 `json:"text_to_image"`    // top-1 image retrieval, %
	ZeroShot    float64 `json:"zeroshot"`         // accuracy over every composition, %, "a photo of a {}."
	Classes     int     `json:"zeroshot_classes"` // compositions scored
	LogitScale  float64 `json:"logit_scale"`      // logit_scale.exp() at the end
	Vocab       int     `json:"vocab"`            // words (ids: words + 3)
	Params      int64   `json:"params"`
	Steps       int64   `json:"steps"`
	Seconds     float64 `json:"seconds"`
	StepSeconds float64 `json:"seconds_per_step"`
}

// sceneBatch is a pre-training batch: images (CHW float32, normalised as
// CLIP's) and tokenized captions.
type sceneBatch struct {
	images []float32
	ids    []int64
	n      int
}

// makeSceneBatch makes a batch of the n scenes next renders, their
// captions tokenized.
func makeSceneBatch(tok *WordTokenizer, context int, n int, next func(i int) renderedScene) (sceneBatch, error) {
	b := sceneBatch{n: n}
	mean, std := f32x3(CLIPPixelMean), f32x3(CLIPPixelStd)
	for i := range n {
		sc := next(i)
		b.images = append(b.images, normalise(sc.img, mean, std)...)
		row, err := tok.Tokenize([]string{sc.caption}, context)
		if err != nil {
			return b, err
		}
		b.ids = append(b.ids, row[0]...)
	}
	return b, nil
}

// renderedScene is a scene's image and caption.
type renderedScene struct {
	img     *image.RGBA
	caption string
}

func f32x3(v []float64) [3]float32 { return [3]float32{float32(v[0]), float32(v[1]), float32(v[2])} }

// contrastiveLogits is logit_scale.exp() * normalised image features @
// normalised text featuresᵀ, [B, B]: CLIP.forward's logits_per_image.
func contrastiveLogits(m *torchmods.CLIP, images, ids *ts.Tensor, train bool) *ts.Tensor {
	img := normalize(m.EncodeImage(images, train))
	txt := normalize(m.EncodeText(ids))
	return img.MustMul(m.LogitScale.MustExp(false), false).MustMatmul(txt.MustT(true), true)
}

// contrastiveLoss is CLIP's loss: (CE(logits, arange) + CE(logitsᵀ,
// arange)) / 2.
func contrastiveLoss(logits *ts.Tensor) *ts.Tensor {
	n := logits.MustSize()[0]
	labels := ts.MustArange(ts.IntScalar(n), gotch.Int64, logits.MustDevice())
	a := torchmods.CrossEntropy(logits, labels, torchmods.CEOptions{})
	b := torchmods.CrossEntropy(logits.MustT(false), labels, torchmods.CEOptions{})
	return a.MustAdd(b, true).MustDivScalar(ts.FloatScalar(2), true)
}

// pretrainMeta is clip.json: what LoadFrozenCLIP needs beyond the weights.
type pretrainMeta struct {
	Task        string               `json:"task"`
	Config      torchmods.CLIPConfig `json:"config"`
	VisionHeads int64                `json:"vision_heads"`
	TextHeads   int64                `json:"text_heads"`
	Scenes      SceneOptions         `json:"scenes"`
}

// Pretrain trains the tiny CLIP.
func Pretrain(s *train.Session, c *PretrainConfig) (*PretrainResult, error) {
	started := time.Now()
	tok, err := NewWordTokenizer(c.Scenes.SceneVocabulary())
	if err != nil {
		return nil, err
	}
	cc := c.CLIPConfig(tok.VocabSize())
	if err := tok.Save(filepath.Join(s.Out, pretrainVocabFile)); err != nil {
		return nil, err
	}
	meta, _ := json.MarshalIndent(pretrainMeta{Task: pretrainName, Config: cc, VisionHeads: cc.VisionHeads, TextHeads: cc.TransformerHeads, Scenes: c.Scenes}, "", "  ")
	if err := os.WriteFile(filepath.Join(s.Out, pretrainConfigFile), append(meta, '\n'), 0o644); err != nil {
		return nil, err
	}
	var m *torchmods.CLIP
	if err := torchmods.Try(func() { m = torchmods.NewCLIP(s.Store.Root(), cc) }); err != nil {
		return nil, err
	}
	var params int64
	for _, p := range s.Store.Params() {
		params += int64(p.Tensor.Numel())
	}
	context := int(cc.ContextLength)
	loader, err := data.NewLoader(data.LoaderOptions{N: c.Batch * 1000, Batch: c.Batch, Seed: uint64(c.Trainer.Seed), Workers: c.Workers},
		func(b data.Batch) (sceneBatch, error) {
			return makeSceneBatch(tok, context, len(b.Indices), sceneStream(c, b.Rand()))
		})
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	sched, err := train.WarmupSchedule(c.Optim.LR, min(c.Optim.Warmup, steps), steps, "cosine")
	if err != nil {
		return nil, err
	}
	held, err := heldoutScenes(c, tok, context)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.W, "cocoop.pretrain: %s; %d parameters; vocabulary %d words; batch %d, %d steps\n", cc.Summary(), params, len(tok.Words), c.Batch, steps)
	r := int64(c.Scenes.Size)
	toTensors := func(b sceneBatch) (*ts.Tensor, *ts.Tensor) {
		return torchmods.FromSlice(b.images, []int64{int64(b.n), 3, r, r}, s.Device), torchmods.FromSlice(b.ids, []int64{int64(b.n), int64(context)}, s.Device)
	}
	var last map[string]float64
	evaluate := func() (map[string]float64, error) {
		var err error
		last, err = evalPretrain(m, tok, c, held, toTensors, s.Device)
		return last, err
	}
	maxScale := math.Log(c.Optim.MaxLogitScale)
	trainStart := time.Now()
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, LR: sched, Opt: train.NewAdamW(s.Store, c.Optim.Beta1, c.Optim.Beta2, c.Optim.Eps, c.Optim.WeightDecay),
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			img, ids := toTensors(b)
			return contrastiveLoss(contrastiveLogits(m, img, ids, true)), nil
		},
		AfterStep: func(int64) error {
			return torchmods.Try(func() {
				ts.NoGrad(func() { m.LogitScale.MustClamp_(ts.FloatScalar(0), ts.FloatScalar(maxScale)) })
			})
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval:  func(int64) (map[string]float64, error) { return evaluate() },
	})
	if err != nil {
		return nil, err
	}
	trainTime := time.Since(trainStart)
	if last == nil {
		if _, err := evaluate(); err != nil {
			return nil, err
		}
	}
	res := &PretrainResult{HeldoutLoss: last["heldout_loss"], ImageToText: last["image_to_text"], TextToImage: last["text_to_image"],
		ZeroShot: last["zeroshot"], Classes: len(c.Scenes.Classes()), LogitScale: math.Exp(m.LogitScale.Float64Values()[0]),
		Vocab: len(tok.Words), Params: params, Steps: steps, Seconds: time.Since(started).Seconds(), StepSeconds: trainTime.Seconds() / float64(steps)}
	fmt.Fprintf(s.W, "held-out contrastive loss %.4f; retrieval image->text %.1f%%, text->image %.1f%% (groups of %d); zero-shot %.1f%% over %d compositions; logit scale %.1f\n",
		res.HeldoutLoss, res.ImageToText, res.TextToImage, c.Eval.Batch, res.ZeroShot, res.Classes, res.LogitScale)
	return res, nil
}

// sceneStream renders scenes from rng. With twins, each odd scene is the
// twin of the one before, captioned with the same template, object order
// and size words (one caption seed for both): a minimal pair, whose
// captions differ in the changed word only.
func sceneStream(c *PretrainConfig, rng *rand.Rand) func(i int) renderedScene {
	var prev []Object
	var seed uint64
	return func(i int) renderedScene {
		var objs []Object
		var img *image.RGBA
		if c.Twins && i%2 == 1 && prev != nil {
			objs = c.Scenes.Twin(prev, rng)
			img = Render(objs, c.Scenes.Size, c.Scenes.Noise, rng)
		} else {
			objs, img = c.Scenes.RandomScene(rng)
			seed = rng.Uint64()
		}
		prev = objs
		return renderedScene{img: img, caption: Caption(objs, c.Scenes.Size, rand.New(rand.NewPCG(seed, 0x7a11)))}
	}
}

// heldoutScenes are the held-out groups, the same for every run of the
// config whatever its seed.
func heldoutScenes(c *PretrainConfig, tok *WordTokenizer, context int) ([]sceneBatch, error) {
	var out []sceneBatch
	for g := 0; g+c.Eval.Batch <= c.Eval.Scenes; g += c.Eval.Batch {
		b, err := makeSceneBatch(tok, context, c.Eval.Batch, sceneStream(c, sceneSeed(c.Eval.Seed, "heldout", 0, g)))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// evalPretrain is the held-out loss and retrieval, and zero-shot accuracy
// over the compositions.
func evalPretrain(m *torchmods.CLIP, tok *WordTokenizer, c *PretrainConfig, held []sceneBatch, toTensors func(sceneBatch) (*ts.Tensor, *ts.Tensor), dev gotch.Device) (map[string]float64, error) {
	var loss, i2t, t2i float64
	var n int
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			for _, b := range held {
				func() {
					sc := ts.NewScope()
					defer sc.Close()
					img, ids := toTensors(b)
					logits := contrastiveLogits(m, img, ids, false)
					loss += contrastiveLoss(logits).Float64Values()[0]
					labels := ts.MustArange(ts.IntScalar(int64(b.n)), gotch.Int64, dev)
					i2t += float64(torchmods.CountCorrect(logits, labels))
					t2i += float64(torchmods.CountCorrect(logits.MustT(false), labels))
					n += b.n
				}()
			}
		})
	})
	if err != nil {
		return nil, err
	}
	classes := c.Scenes.Classes()
	names := make([]string, len(classes))
	for i, cl := range classes {
		names[i] = cl.Name()
	}
	text, err := ZeroShotTextFeatures(m, tok, []string{CustomTemplates[ScenesDataset]}, names)
	if err != nil {
		return nil, err
	}
	_, test := c.Scenes.SceneDataset(c.Eval.Seed, 0, c.Eval.PerClass)
	tf := Transform{Size: c.Scenes.Size, Transforms: []string{TransformNormalize}, Mean: f32x3(CLIPPixelMean), Std: f32x3(CLIPPixelStd)}
	zs, err := scoreItems(test, tf, 256, 1, dev, func(images *ts.Tensor) *ts.Tensor { return ZeroShotLogits(m, text, images) })
	if err != nil {
		return nil, err
	}
	acc := zs.Accuracy
	return map[string]float64{"heldout_loss": loss / float64(len(held)), "image_to_text": 100 * i2t / float64(n),
		"text_to_image": 100 * t2i / float64(n), "zeroshot": acc}, nil
}
