package torchmods

import (
	"fmt"
	"math"
	"strings"
)

// CLIPConfig is what clip/model.py's CLIP takes, plus the few settings a
// HF CLIPConfig may give otherwise (the MLP width, the activation, the
// LayerNorm eps, the end-of-text id); their zero values are model.py's.
type CLIPConfig struct {
	EmbedDim        int64
	ImageResolution int64
	// VisionLayers is one depth for a vision transformer, or the four
	// stage depths of a ModifiedResNet (as model.py's vision_layers, an
	// int or a tuple).
	VisionLayers    []int64
	VisionWidth     int64
	VisionPatchSize int64 // the vision transformer's; 0 for a ResNet
	// VisionHeads: model.py's CLIP takes width/64 heads for a vision
	// transformer, width*32/64 for the ResNet's attention pool.
	VisionHeads       int64
	ContextLength     int64
	VocabSize         int64
	TransformerWidth  int64
	TransformerHeads  int64 // build_model: width/64
	TransformerLayers int64

	VisionMLP, TextMLP int64      // the MLPs' hidden width; 0 means 4 × width
	VisionAct, TextAct Activation // "" means QuickGELU
	VisionEps, TextEps float64    // LayerNorm eps; 0 means 1e-5
	// EOSTokenID, when neither 0 nor 2, makes the text features be taken
	// at the first position holding it, as HF's CLIPTextTransformer does
	// for an eos_token_id other than its legacy 2; otherwise they are
	// taken at the argmax of the ids, as model.py.
	EOSTokenID int64
}

// IsResNet says whether the image encoder is a ModifiedResNet.
func (c CLIPConfig) IsResNet() bool { return len(c.VisionLayers) == 4 }

// Validate refuses a config NewCLIP cannot build, naming the field.
func (c CLIPConfig) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"embed_dim", c.EmbedDim}, {"image_resolution", c.ImageResolution}, {"vision_width", c.VisionWidth},
		{"context_length", c.ContextLength}, {"vocab_size", c.VocabSize}, {"transformer_width", c.TransformerWidth},
		{"transformer_layers", c.TransformerLayers}} {
		if f.v <= 0 {
			return fmt.Errorf("CLIP config: %s is %d, want a positive number", f.name, f.v)
		}
	}
	heads := func(what string, width, heads int64) error {
		if heads <= 0 || width%heads != 0 {
			return fmt.Errorf("CLIP config: %s heads %d for width %d: want a positive divisor of the width (build_model takes width/64, which is 0 below width 64: set the heads)", what, heads, width)
		}
		return nil
	}
	switch len(c.VisionLayers) {
	case 1:
		if c.VisionLayers[0] <= 0 || c.VisionPatchSize <= 0 || c.ImageResolution%c.VisionPatchSize != 0 {
			return fmt.Errorf("CLIP config: vision transformer of %d layers, patch %d, resolution %d: want positive layers and a resolution that is a multiple of the patch", c.VisionLayers[0], c.VisionPatchSize, c.ImageResolution)
		}
		if err := heads("vision", c.VisionWidth, c.VisionHeads); err != nil {
			return err
		}
	case 4:
		for _, l := range c.VisionLayers {
			if l <= 0 {
				return fmt.Errorf("CLIP config: ResNet stages %v, want four positive depths", c.VisionLayers)
			}
		}
		if c.ImageResolution%32 != 0 || c.VisionWidth%2 != 0 {
			return fmt.Errorf("CLIP config: ResNet of width %d at resolution %d: want an even width and a resolution that is a multiple of 32", c.VisionWidth, c.ImageResolution)
		}
		if err := heads("attention-pool", 32*c.VisionWidth, c.VisionHeads); err != nil {
			return err
		}
	default:
		return fmt.Errorf("CLIP config: vision_layers %v, want one depth (a vision transformer) or four (a ResNet)", c.VisionLayers)
	}
	if err := heads("text", c.TransformerWidth, c.TransformerHeads); err != nil {
		return err
	}
	for _, a := range []Activation{c.VisionAct, c.TextAct} {
		switch a {
		case "", QuickGELU, GELU, GELUTanh, ReLU:
		default:
			return fmt.Errorf("CLIP config: activation %q is not one of quick_gelu, gelu, gelu_tanh, relu", a)
		}
	}
	return nil
}

// Summary is one line on what the config builds, for load reports.
func (c CLIPConfig) Summary() string {
	var vis string
	if c.IsResNet() {
		vis = fmt.Sprintf("ModifiedResNet %v of width %d, %d attention-pool heads", c.VisionLayers, c.VisionWidth, c.VisionHeads)
	} else {
		vis = fmt.Sprintf("ViT of %d layers, width %d, %d heads, patch %d", c.VisionLayers[0], c.VisionWidth, c.VisionHeads, c.VisionPatchSize)
	}
	return fmt.Sprintf("CLIP: %s at %d px; text transformer of %d layers, width %d, %d heads, context %d, vocabulary %d; embedding %d",
		vis, c.ImageResolution, c.TransformerLayers, c.TransformerWidth, c.TransformerHeads, c.ContextLength, c.VocabSize, c.EmbedDim)
}

// InferCLIPConfig reads a CLIP config from the shapes of an OpenAI state
// dict (name -> shape), as clip/model.py's build_model does: a vision
// transformer when visual.proj is there (width and patch from
// visual.conv1.weight, depth by counting attn.in_proj_weight under
// visual., resolution patch × round(√(positional rows − 1))), else a
// ModifiedResNet (stage depths by counting the block indices under
// visual.layer1..4, width from visual.layer1.0.conv1.weight, resolution 32
// × the attention pool's grid); embed_dim from text_projection, context
// from positional_embedding, vocabulary from token_embedding.weight,
// width from ln_final.weight, depth by counting the block indices under
// transformer.resblocks, and width/64 heads (width*32/64 for the
// ResNet's pool). A key build_model reads that is missing or has the
// wrong number of dimensions is an error naming it; so is a ResNet grid
// that is not square (build_model's assertion).
func InferCLIPConfig(shapes map[string][]int64) (CLIPConfig, error) {
	dim := func(key string, rank, i int) (int64, error) {
		s, ok := shapes[key]
		if !ok {
			return 0, fmt.Errorf("not a CLIP state dict: no %q (build_model reads it)", key)
		}
		if len(s) != rank {
			return 0, fmt.Errorf("CLIP state dict: %q has shape %v, want %d dimensions", key, s, rank)
		}
		if i < 0 {
			i += rank
		}
		return s[i], nil
	}
	var c CLIPConfig
	var err error
	if _, vit := shapes["visual.proj"]; vit {
		if c.VisionWidth, err = dim("visual.conv1.weight", 4, 0); err != nil {
			return c, err
		}
		if c.VisionPatchSize, err = dim("visual.conv1.weight", 4, -1); err != nil {
			return c, err
		}
		n := int64(0)
		for k := range shapes {
			if strings.HasPrefix(k, "visual.") && strings.HasSuffix(k, ".attn.in_proj_weight") {
				n++
			}
		}
		c.VisionLayers = []int64{n}
		pos, err := dim("visual.positional_embedding", 2, 0)
		if err != nil {
			return c, err
		}
		c.ImageResolution = c.VisionPatchSize * int64(math.Round(math.Sqrt(float64(pos-1))))
		c.VisionHeads = c.VisionWidth / 64
	} else {
		for b := 1; b <= 4; b++ {
			c.VisionLayers = append(c.VisionLayers, int64(len(blockIndices(shapes, fmt.Sprintf("visual.layer%d", b)))))
		}
		if c.VisionWidth, err = dim("visual.layer1.0.conv1.weight", 4, 0); err != nil {
			return c, err
		}
		pos, err := dim("visual.attnpool.positional_embedding", 2, 0)
		if err != nil {
			return c, err
		}
		g := int64(math.Round(math.Sqrt(float64(pos - 1))))
		if g*g+1 != pos {
			return c, fmt.Errorf("CLIP state dict: visual.attnpool.positional_embedding has %d rows, not a square grid plus one", pos)
		}
		c.ImageResolution = 32 * g
		c.VisionHeads = c.VisionWidth * 32 / 64
	}
	for _, f := range []struct {
		key     string
		rank, i int
		dst     *int64
	}{
		{"text_projection", 2, 1, &c.EmbedDim}, {"positional_embedding", 2, 0, &c.ContextLength},
		{"token_embedding.weight", 2, 0, &c.VocabSize}, {"ln_final.weight", 1, 0, &c.TransformerWidth},
	} {
		if *f.dst, err = dim(f.key, f.rank, f.i); err != nil {
			return c, err
		}
	}
	c.TransformerHeads = c.TransformerWidth / 64
	c.TransformerLayers = int64(len(blockIndices(shapes, "transformer.resblocks")))
	return c, nil
}

// blockIndices is build_model's set(k.split(".")[2] for k in state_dict
// if k.startswith(prefix)), for a prefix of two dotted parts.
func blockIndices(shapes map[string][]int64, prefix string) map[string]bool {
	out := map[string]bool{}
	for k := range shapes {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if parts := strings.Split(k, "."); len(parts) > 2 {
			out[parts[2]] = true
		}
	}
	return out
}

// CLIPConfigFromHF reads a HF CLIPConfig (config.json of model_type
// "clip"): projection_dim, and text_config and vision_config, or the
// text_config_dict and vision_config_dict of files written by early 4.x
// releases (which take precedence, as CLIPConfig.__init__ gives them).
// Keys a file leaves out take HF's class defaults (CLIPTextConfig,
// CLIPVisionConfig), as from_pretrained gives them; transformers 5.x
// files, saved as a diff against those defaults, leave many out. Keys
// are read under their 4.x names and 5.x spellings (HFConfig). HF's CLIP
// vision model is a transformer; num_channels other than 3 is refused.
func CLIPConfigFromHF(c *HFConfig) (CLIPConfig, error) {
	var out CLIPConfig
	if c.ModelType != "clip" {
		return out, fmt.Errorf("%s: model_type %q, want \"clip\"", c.Path, c.ModelType)
	}
	text, err := c.subConfig("text_config")
	if err != nil {
		return out, err
	}
	vision, err := c.subConfig("vision_config")
	if err != nil {
		return out, err
	}
	var layers int64
	ints := []struct {
		c   *HFConfig
		key string
		dst *int64
		def int64
	}{
		{c, "projection_dim", &out.EmbedDim, 512},
		{text, "vocab_size", &out.VocabSize, 49408}, {text, "hidden_size", &out.TransformerWidth, 512},
		{text, "intermediate_size", &out.TextMLP, 2048}, {text, "num_hidden_layers", &out.TransformerLayers, 12},
		{text, "num_attention_heads", &out.TransformerHeads, 8}, {text, "max_position_embeddings", &out.ContextLength, 77},
		{text, "eos_token_id", &out.EOSTokenID, 49407},
		{vision, "hidden_size", &out.VisionWidth, 768}, {vision, "intermediate_size", &out.VisionMLP, 3072},
		{vision, "num_hidden_layers", &layers, 12}, {vision, "num_attention_heads", &out.VisionHeads, 12},
		{vision, "image_size", &out.ImageResolution, 224}, {vision, "patch_size", &out.VisionPatchSize, 32},
	}
	for _, k := range ints {
		if *k.dst, err = k.c.Int(k.key, k.def); err != nil {
			return out, err
		}
	}
	out.VisionLayers = []int64{layers}
	if ch, err := vision.Int("num_channels", 3); err != nil {
		return out, err
	} else if ch != 3 {
		return out, fmt.Errorf("%s: num_channels %d: CLIP's patch embedding here takes 3 channels", vision.Path, ch)
	}
	for _, s := range []struct {
		c   *HFConfig
		act *Activation
		eps *float64
	}{{text, &out.TextAct, &out.TextEps}, {vision, &out.VisionAct, &out.VisionEps}} {
		name, err := s.c.String("hidden_act", "quick_gelu")
		if err != nil {
			return out, err
		}
		a, ok := hfActivations[name]
		if !ok {
			return out, fmt.Errorf("%s: hidden_act %q is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu)", s.c.Path, name)
		}
		*s.act = a
		if *s.eps, err = s.c.Float("layer_norm_eps", 1e-5); err != nil {
			return out, err
		}
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("%s: %w", c.Path, err)
	}
	return out, nil
}

// hfActivations maps HF's hidden_act names onto torchmods' activations.
var hfActivations = map[string]Activation{
	"quick_gelu": QuickGELU, "gelu": GELU, "gelu_new": GELUTanh, "gelu_pytorch_tanh": GELUTanh, "relu": ReLU,
}

// subConfig is a nested config (text_config) as an HFConfig of its own:
// key+"_dict" (early 4.x) when the file has it, else key, else an empty
// one (every key its default). Its Path names the file and the key.
func (c *HFConfig) subConfig(key string) (*HFConfig, error) {
	for _, k := range []string{key + "_dict", key} {
		v, ok := c.raw[k]
		if !ok || v == nil {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %s is %s, want an object", c.Path, k, jsonText(v))
		}
		return &HFConfig{Path: c.Path + " " + k, raw: m, used: c.used}, nil
	}
	return &HFConfig{Path: c.Path + " " + key, raw: map[string]any{}, used: c.used}, nil
}

// HFConfig is the config.json content of a HF CLIPModel with this
// config, in transformers 4.x spelling (which 5.x reads). Only a vision
// transformer has one: HF's CLIP has no ResNet.
func (c CLIPConfig) HFConfig() (map[string]any, error) {
	if c.IsResNet() {
		return nil, fmt.Errorf("CLIP with a ModifiedResNet image encoder: transformers' CLIPModel has no ResNet")
	}
	act := func(a Activation) string {
		for name, x := range hfActivations {
			if x == a && name != "gelu_new" {
				return name
			}
		}
		return "quick_gelu"
	}
	mlp := func(m, w int64) int64 {
		if m == 0 {
			return 4 * w
		}
		return m
	}
	eps := func(e float64) float64 {
		if e == 0 {
			return 1e-5
		}
		return e
	}
	eos := c.EOSTokenID
	if eos == 0 {
		eos = 2 // HF's legacy value: pool at the argmax, as model.py
	}
	return map[string]any{
		"projection_dim": c.EmbedDim, "logit_scale_init_value": 2.6592,
		"text_config": map[string]any{
			"vocab_size": c.VocabSize, "hidden_size": c.TransformerWidth, "intermediate_size": mlp(c.TextMLP, c.TransformerWidth),
			"num_hidden_layers": c.TransformerLayers, "num_attention_heads": c.TransformerHeads,
			"max_position_embeddings": c.ContextLength, "hidden_act": act(c.TextAct), "layer_norm_eps": eps(c.TextEps),
			"projection_dim": c.EmbedDim, "eos_token_id": eos,
		},
		"vision_config": map[string]any{
			"hidden_size": c.VisionWidth, "intermediate_size": mlp(c.VisionMLP, c.VisionWidth),
			"num_hidden_layers": c.VisionLayers[0], "num_attention_heads": c.VisionHeads, "num_channels": 3,
			"image_size": c.ImageResolution, "patch_size": c.VisionPatchSize, "hidden_act": act(c.VisionAct),
			"layer_norm_eps": eps(c.VisionEps), "projection_dim": c.EmbedDim,
		},
	}, nil
}
