package imageclf

import (
	"encoding/json"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// Model is a ViT classifier (timm's VisionTransformer, as MAE's
// models_vit.py) with what it needs to classify an image: its classes and
// input transform.
//
// Classify runs each call in its own tensor scope with gradients off and
// only reads the parameters, so goroutines may share a Model as long as
// nothing trains it meanwhile.
type Model struct {
	ViT       *torchmods.ViT
	Classes   []string
	Spec      Spec
	Transform Transform // the evaluation transform (its rng is nil)
	Store     *torchmods.Store
	owned     bool
}

// Spec is what rebuilds a trained classifier: written to model.json in an
// image.classify run, read by Open.
type Spec struct {
	Model      ViTConfig `json:"model"`
	GlobalPool bool      `json:"global_pool"`
	Classes    []string  `json:"classes"`
	Mean       []float32 `json:"mean"`
	Std        []float32 `json:"std"`
	CropPct    float64   `json:"crop_pct"`
}

// SpecFile is the name of an image.classify run's Spec.
const SpecFile = "model.json"

// newModel registers a classifier in store as the spec says; dropPath is
// the training's stochastic depth (0 for inference).
func newModel(store *torchmods.Store, s Spec, dropPath float64) (*Model, error) {
	v := s.Model
	m := &Model{Classes: s.Classes, Spec: s, Store: store,
		Transform: Transform{Size: int(v.ImgSize), Chans: int(v.InChans), CropPct: s.CropPct, Mean: s.Mean, Std: s.Std}}
	err := torchmods.Try(func() {
		m.ViT = torchmods.NewViT(store.Root(), torchmods.ViTOptions{ImgSize: v.ImgSize, Patch: v.Patch, InChans: v.InChans,
			Dim: v.Dim, Depth: v.Depth, Heads: v.Heads, MLPRatio: v.MLPRatio, Eps: v.Eps,
			DropPath: dropPath, GlobalPool: s.GlobalPool, Classes: int64(len(s.Classes))})
	})
	return m, err
}

// OpenOptions say where Open puts the model.
type OpenOptions struct {
	Device gotch.Device // zero value: the CPU
	W      io.Writer    // the load report; nil discards it
}

// Open loads a trained image.classify run (its model.json and newest
// checkpoint, or a checkpoint folder inside it) for inference. Close frees it.
func Open(run string, o OpenOptions) (*Model, error) {
	if o.Device.Name == "" {
		o.Device = gotch.CPU
	}
	if o.W == nil {
		o.W = io.Discard
	}
	root := run
	if !exists(filepath.Join(root, SpecFile)) { // a checkpoint folder: run/checkpoints/step-N
		root = filepath.Dir(filepath.Dir(run))
	}
	s, err := ReadSpec(filepath.Join(root, SpecFile))
	if err != nil {
		return nil, err
	}
	store := torchmods.NewStore(o.Device)
	m, err := newModel(store, s, 0)
	if err != nil {
		store.Drop()
		return nil, err
	}
	m.owned = true
	if err := torchmods.LoadModel(run, store); err != nil {
		store.Drop()
		return nil, err
	}
	fmt.Fprintf(o.W, "%s: a ViT of %d blocks, %d wide, %d classes\n", run, s.Model.Depth, s.Model.Dim, len(s.Classes))
	return m, nil
}

// ReadSpec reads a run's model.json.
func ReadSpec(path string) (Spec, error) {
	var s Spec
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("%w (an image.classify run has %s)", err, SpecFile)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.Model.validate(); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Classes) < 1 || len(s.Mean) != int(s.Model.InChans) || len(s.Std) != int(s.Model.InChans) {
		return s, fmt.Errorf("%s: needs classes, and a mean and std per channel", path)
	}
	return s, nil
}

// WriteSpec writes model.json into a run directory.
func WriteSpec(dir string, s Spec) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, SpecFile)
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// Close frees the parameters of a model Open made.
func (m *Model) Close() {
	if m.owned {
		m.Store.Drop()
	}
}

// Forward is the logits [B, classes] of normalised images [B, C, H, W].
func (m *Model) Forward(x *ts.Tensor, train bool) *ts.Tensor { return m.ViT.Forward(x, train) }

// Scored is a class with its probability.
type Scored struct {
	Class int
	Label string
	Prob  float64
}

// Classify returns each image's k most probable classes, best first. Each
// call runs in its own scope with gradients off, so goroutines may call it
// at once.
func (m *Model) Classify(imgs []image.Image, k int) ([][]Scored, error) {
	t := m.Transform
	per := t.Chans * t.Size * t.Size
	px := make([]float32, len(imgs)*per)
	for i, img := range imgs {
		copy(px[i*per:], t.Pixels(img, nil))
	}
	var probs []float64
	err := torchmods.Try(func() {
		sc := ts.NewScope()
		defer sc.Close()
		ts.NoGrad(func() {
			x := torchmods.FromSlice(px, []int64{int64(len(imgs)), int64(t.Chans), int64(t.Size), int64(t.Size)}, m.Store.Device)
			probs = m.Forward(x, false).MustSoftmax(-1, gotch.Double, false).MustTo(gotch.CPU, true).Float64Values()
		})
	})
	if err != nil {
		return nil, err
	}
	c := len(m.Classes)
	k = min(max(k, 1), c)
	out := make([][]Scored, len(imgs))
	for i := range imgs {
		row := make([]Scored, c)
		for j := range c {
			row[j] = Scored{Class: j, Label: m.Classes[j], Prob: probs[i*c+j]}
		}
		sort.SliceStable(row, func(a, b int) bool { return row[a].Prob > row[b].Prob })
		out[i] = row[:k]
	}
	return out, nil
}

// checkpoint is a ViT's weights under timm's (MAE's official) names, with
// the sizes its source gives.
type checkpoint struct {
	tensors []safetensors.Tensor
	model   ViTConfig // sizes from the source's config; zero where unknown
	known   bool      // model came from a config (else from shapes, heads assumed)
	assumed []string  // what InferOptions assumed
	kind    string
	spec    *Spec // an image.classify run's own spec
}

// openCheckpoint reads a ViT from any of the forms Config.Pretrained
// lists, under timm's names.
func openCheckpoint(path string) (*checkpoint, error) {
	ck := &checkpoint{}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		switch {
		case exists(filepath.Join(path, SpecFile)): // an image.classify run
			s, err := ReadSpec(filepath.Join(path, SpecFile))
			if err != nil {
				return nil, err
			}
			ck.spec, ck.model, ck.known = &s, s.Model, true
		case exists(filepath.Join(path, "config.toml")): // mae.pretrain, mae.finetune, ...
			var rc struct {
				Task  string    `toml:"task"`
				Model ViTConfig `toml:"model"`
			}
			if _, err := toml.DecodeFile(filepath.Join(path, "config.toml"), &rc); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if rc.Model.Dim > 0 {
				ck.model, ck.known = rc.Model, true
			}
		}
	}
	if hf, err := openHFViT(path); err != nil || hf != nil {
		return hf, err
	}
	mk, err := mae.OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	ck.tensors, ck.kind = mk.Tensors, mk.Kind
	if mk.Config != nil {
		c := mk.Config
		ck.model, ck.known = ViTConfig{ImgSize: c.ImgSize, Patch: c.Patch, InChans: c.InChans, Dim: c.Dim, Depth: c.Depth, Heads: c.Heads, MLPRatio: c.MLPRatio, Eps: c.Eps}, true
	}
	if !ck.known {
		o, assumed, err := mae.InferOptions(ck.tensors)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ck.model = ViTConfig{ImgSize: o.ImgSize, Patch: o.Patch, InChans: o.InChans, Dim: o.Dim, Depth: o.Depth, Heads: o.Heads, MLPRatio: o.MLPRatio, Eps: o.Eps}
		ck.assumed = assumed
	}
	return ck, nil
}

// openHFViT reads a HF ViT (model_type "vit": ViTModel,
// ViTForImageClassification), whose encoder names are ViTMAE's, so
// mae's rename table maps them; nil when path is not one.
func openHFViT(path string) (*checkpoint, error) {
	src, err := torchmods.Resolve(path)
	if err != nil || src.Config == "" {
		return nil, nil // mae.OpenCheckpoint reports what path is not
	}
	cfg, err := torchmods.ReadHFConfig(src.Config)
	if err != nil || cfg.ModelType != "vit" {
		return nil, err
	}
	w, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return nil, err
	}
	var keep []safetensors.Tensor
	for _, t := range w.Tensors {
		switch {
		case strings.HasPrefix(t.Name, "vit.pooler."), strings.HasPrefix(t.Name, "classifier."), t.Name == "vit.embeddings.mask_token":
			continue // ViTModel's pooler and the HF head: not in models_vit's ViT
		}
		if !strings.HasPrefix(t.Name, "vit.") {
			t.Name = "vit." + t.Name // ViTModel.save_pretrained writes no prefix
		}
		keep = append(keep, t)
	}
	im, err := mae.ViTMAEFamily.ImportNames(keep)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.File, err)
	}
	ck := &checkpoint{tensors: im.Tensors, known: true, kind: fmt.Sprintf("Hugging Face ViT (%s) from %s", w.Format, src.File)}
	get := func(key string, def int64) int64 {
		v, e := cfg.Int(key, def)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	ck.model = ViTConfig{ImgSize: get("image_size", 224), Patch: get("patch_size", 16), InChans: get("num_channels", 3),
		Dim: get("hidden_size", 768), Depth: get("num_hidden_layers", 12), Heads: get("num_attention_heads", 12)}
	ck.model.MLPRatio = float64(get("intermediate_size", 3072)) / float64(ck.model.Dim)
	if ck.model.Eps, err = cfg.Float("layer_norm_eps", 1e-12); err != nil {
		return nil, err
	}
	if act, e := cfg.String("hidden_act", "gelu"); e != nil || act != "gelu" {
		return nil, fmt.Errorf("%s: hidden_act %q: the ViT blocks use exact GELU", src.Config, act)
	}
	return ck, err
}

// load loads the checkpoint's encoder into the model: the decoder and
// mask token (MAE) and a head of another number of classes (timm's
// ImageNet head) are left out and reported, the position table is
// interpolated to the model's grid, and a missing or mismatched encoder
// tensor is an error. The new head and fc_norm keep their initialisation,
// as main_finetune.py's.
func (m *Model) load(ck *checkpoint, w io.Writer) error {
	weights := map[string]*ts.Tensor{}
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	var dropped []string
	classes := int64(len(m.Classes))
	for _, t := range ck.tensors {
		if strings.HasPrefix(t.Name, "decoder") || t.Name == "mask_token" {
			continue
		}
		if (t.Name == "head.weight" || t.Name == "head.bias") && (len(t.Shape) == 0 || t.Shape[0] != classes) {
			dropped = append(dropped, fmt.Sprintf("%s %v", t.Name, t.Shape))
			continue
		}
		x, err := torchmods.FromSafetensors(t, m.Store.Device)
		if err != nil {
			return err
		}
		weights[t.Name] = x
	}
	if pe, ok := weights["pos_embed"]; ok {
		grid := m.Spec.Model.ImgSize / m.Spec.Model.Patch
		np, err := torchmods.InterpolatePosEmbed(pe, grid)
		if err != nil {
			return fmt.Errorf("pos_embed: %w", err)
		}
		if np != pe {
			fmt.Fprintf(w, "pos_embed interpolated from %v to %d x %d patches\n", pe.MustSize(), grid, grid)
			pe.MustDrop()
			weights["pos_embed"] = np
		}
	}
	rep, err := m.Store.Load(weights, false)
	fmt.Fprintf(w, "%s: %s\n", ck.kind, rep)
	if len(dropped) > 0 {
		fmt.Fprintf(w, "left out (another number of classes; a new head is trained): %s\n", strings.Join(dropped, ", "))
	}
	if err != nil {
		return err
	}
	if len(rep.Mismatched) > 0 {
		return fmt.Errorf("shapes differ from the model (check [model] against the checkpoint): %v", rep.Mismatched)
	}
	var missing []string
	for _, n := range rep.Missing {
		if !strings.HasPrefix(n, "head.") && !strings.HasPrefix(n, "fc_norm.") && !(n == "norm.weight" || n == "norm.bias") {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the checkpoint lacks encoder tensors: %s", strings.Join(missing, ", "))
	}
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
