package torchmods

import (
	"fmt"
	"io"
	"regexp"
	"sort"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// clipArchiveExtras are the entries of OpenAI's released archives that
// are not weights: build_model deletes input_resolution, context_length
// and vocab_size from the state dict before loading it. A TorchScript
// archive may also hold a block's attn_mask (the text transformer's causal
// mask, a tensor attribute in model.py, rebuilt here).
var clipArchiveExtras = regexp.MustCompile(`^(input_resolution|context_length|vocab_size|(visual\.)?transformer\.resblocks\.\d+\.attn_mask)$`)

// OpenAICLIPTensors drops from a CLIP state dict, as read from a file,
// the entries that are not weights (clipArchiveExtras), returning the
// weights and the names dropped, sorted.
func OpenAICLIPTensors(in []safetensors.Tensor) (weights []safetensors.Tensor, dropped []string) {
	for _, t := range in {
		if clipArchiveExtras.MatchString(t.Name) {
			dropped = append(dropped, t.Name)
		} else {
			weights = append(weights, t)
		}
	}
	sort.Strings(dropped)
	return weights, dropped
}

// CLIPLoadOptions configures LoadCLIP.
type CLIPLoadOptions struct {
	Device gotch.Device // the zero value means the CPU
	// VisionHeads and TextHeads, when positive, replace the head counts
	// build_model infers from an OpenAI state dict (width/64, and
	// width*32/64 for the ResNet's pool), which every released model has;
	// a model of other heads needs them. HF folders name their heads.
	VisionHeads, TextHeads int64
}

// LoadedCLIP is a CLIP LoadCLIP built and loaded.
type LoadedCLIP struct {
	Model  *CLIP
	Store  *Store // holds the parameters; Drop frees them
	Source *WeightSource
	// Names is "OpenAI" or "HF CLIPModel": the names the file used.
	Names string
	// Dropped are the entries of an OpenAI file that are not weights
	// (clipArchiveExtras); those of a HF file (position_ids) are named in
	// the report line LoadHFWeights writes.
	Dropped []string
	Report  LoadReport
}

// LoadCLIP builds a CLIP from anything Resolve accepts and loads its
// weights, strictly:
//
//   - an OpenAI state dict under OpenAI's names: one of the released
//     TorchScript archives (ViT-B-16.pt, RN50.pt, ...; their fp16 weights
//     become float32), a torch.save file or a safetensors file. The config
//     is inferred from the shapes as build_model infers it
//     (InferCLIPConfig), with o's head counts if set;
//   - a HF CLIPModel folder (config.json of model_type "clip" beside
//     model.safetensors or pytorch_model.bin, or hf:ORG/NAME): the config
//     from config.json (CLIPConfigFromHF), the weights through
//     CLIPFamily's names.
//
// A file that is not a CLIP state dict is an error naming the key that
// is missing; a tensor missing, left over or of another shape than the
// config gives is an error naming it. What was built and read goes to w.
func LoadCLIP(spec string, o CLIPLoadOptions, w io.Writer) (*LoadedCLIP, error) {
	if o.Device == (gotch.Device{}) {
		o.Device = gotch.CPU
	}
	src, err := Resolve(spec)
	if err != nil {
		return nil, err
	}
	if src.Config != "" {
		hc, err := ReadHFConfig(src.Config)
		if err != nil {
			return nil, err
		}
		if hc.ModelType != "clip" {
			return nil, fmt.Errorf("%s: model_type %q is not CLIP's (\"clip\")", hc.Path, hc.ModelType)
		}
		return loadHFCLIP(src, hc, o, w)
	}
	wf, err := ReadWeights(src.File)
	if err != nil {
		return nil, err
	}
	weights, dropped := OpenAICLIPTensors(wf.Tensors)
	shapes := make(map[string][]int64, len(weights))
	for _, t := range weights {
		shapes[t.Name] = t.Shape
	}
	c, err := InferCLIPConfig(shapes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.File, err)
	}
	if o.VisionHeads > 0 {
		c.VisionHeads = o.VisionHeads
	}
	if o.TextHeads > 0 {
		c.TransformerHeads = o.TextHeads
	}
	store := NewStore(o.Device)
	var m *CLIP
	if err := Try(func() { m = NewCLIP(store.Root(), c) }); err != nil {
		store.Drop()
		return nil, fmt.Errorf("%s: %w", src.File, err)
	}
	format := wf.Format
	for _, sk := range wf.Skipped {
		if sk == "training" { // a module's flag: the file is a TorchScript archive, not a state dict
			format = "TorchScript archive"
			break
		}
	}
	fmt.Fprintf(w, "%s (%s, OpenAI names): %s\n", src.File, format, c.Summary())
	tensors := make(map[string]*ts.Tensor, len(weights))
	defer func() {
		for _, t := range tensors {
			t.MustDrop()
		}
	}()
	for _, t := range weights {
		x, err := FromSafetensors(t, o.Device)
		if err != nil {
			store.Drop()
			return nil, fmt.Errorf("%s: %w", src.File, err)
		}
		tensors[t.Name] = x
	}
	rep, err := store.Load(tensors, true)
	if err != nil {
		store.Drop()
		return nil, fmt.Errorf("%s: %w", src.File, err)
	}
	fmt.Fprintf(w, "%s: %s; not weights, dropped: %v\n", src.File, rep, dropped)
	return &LoadedCLIP{Model: m, Store: store, Source: src, Names: "OpenAI", Dropped: dropped, Report: rep}, nil
}

// loadHFCLIP builds the CLIP a HF config.json describes and loads the
// folder's weights through CLIPFamily.
func loadHFCLIP(src *WeightSource, hc *HFConfig, o CLIPLoadOptions, w io.Writer) (*LoadedCLIP, error) {
	c, err := CLIPConfigFromHF(hc)
	if err != nil {
		return nil, err
	}
	store := NewStore(o.Device)
	var m *CLIP
	if err := Try(func() { m = NewCLIP(store.Root(), c) }); err != nil {
		store.Drop()
		return nil, fmt.Errorf("%s: %w", hc.Path, err)
	}
	fmt.Fprintf(w, "%s: %s\n", hc.Path, c.Summary())
	rep, err := CLIPFamily.LoadHFWeights(store, src.File, LoadOptions{Strict: true}, w)
	if err != nil {
		store.Drop()
		return nil, err
	}
	return &LoadedCLIP{Model: m, Store: store, Source: src, Names: "HF CLIPModel", Report: rep}, nil
}
