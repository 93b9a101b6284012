package vqa

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/train"
)

// loadPrefixed loads tensors into the store's parameters under prefix,
// partially (what matches by name and shape), converting each on the
// way; pos_embed is interpolated to the model's grid when the weights
// were trained at another resolution (interpolate_pos_embed). The
// report lists only the parameters under prefix.
func loadPrefixed(store *torchmods.Store, tensors []safetensors.Tensor, prefix string, grid int64, w io.Writer) (torchmods.LoadReport, error) {
	weights := map[string]*ts.Tensor{}
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	for _, t := range tensors {
		x, err := torchmods.FromSafetensors(t, store.Device)
		if err != nil {
			return torchmods.LoadReport{}, err
		}
		name := prefix + t.Name
		if strings.HasSuffix(name, "pos_embed") && grid > 0 {
			np, err := torchmods.InterpolatePosEmbed(x, grid)
			if err != nil {
				return torchmods.LoadReport{}, fmt.Errorf("%s: %w", name, err)
			}
			if np != x {
				fmt.Fprintf(w, "%s interpolated from %v to %d x %d patches\n", name, x.MustSize(), grid, grid)
				x.MustDrop()
				x = np
			}
		}
		weights[name] = x
	}
	rep, err := store.Load(weights, false)
	rep.Missing = keepPrefix(rep.Missing, prefix)
	return rep, err
}

func keepPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// initEncoders starts the pre-training's encoders from MAE and BERT
// weights where the config names them (MUMC: the MAE ViT-B and
// bert-base-uncased), then copies them into the momentum encoders.
func initEncoders(s *train.Session, m *PretrainModel, c *PretrainConfig) error {
	w := s.W
	if c.VisionInit != "" {
		if err := loadVision(s, c.VisionInit, c.Model); err != nil {
			return err
		}
	}
	if c.TextInit != "" {
		tensors, file, variant, err := readBert(c.TextInit)
		if err != nil {
			return fmt.Errorf("text_init: %w", err)
		}
		rep, err := loadPrefixed(s.Store, tensors, "text_encoder.", 0, w)
		if err != nil {
			return fmt.Errorf("text_init %s: %w", file, err)
		}
		fmt.Fprintf(w, "text_encoder from %s (%s names): %s\n", file, variant, rep)
		if len(rep.Loaded) == 0 {
			return fmt.Errorf("text_init %s: no tensor matched the BERT (%s)", file, rep)
		}
	}
	m.Momentum.Copy()
	if c.Checkpoint != "" {
		tensors, file, err := readStateDict(c.Checkpoint)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		rep, err := loadPrefixed(s.Store, tensors, "", c.Model.ImageRes/c.Model.Patch, w)
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", file, err)
		}
		sort.Strings(rep.Missing)
		fmt.Fprintf(w, "pre-training state from %s: %s\n", file, rep)
		if len(rep.Loaded) == 0 {
			return fmt.Errorf("checkpoint %s: no tensor matched the model (%s)", file, rep)
		}
	}
	return nil
}

// readBert reads a BERT checkpoint (a HF folder, weight file or hub
// name) with its names made HF's current ones (bert.*, cls.*).
func readBert(path string) (tensors []safetensors.Tensor, file, variant string, err error) {
	src, err := torchmods.Resolve(path)
	if err != nil {
		return nil, "", "", err
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return nil, "", "", err
	}
	im, err := torchmods.BertFamily.ImportNames(wf.Tensors)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", src.File, err)
	}
	return im.Tensors, src.File, im.Variant, nil
}

// readStateDict reads a state dict from a run, checkpoint or weight file,
// without the "model." prefix of torch.save({'model': state_dict}).
func readStateDict(path string) ([]safetensors.Tensor, string, error) {
	src, err := torchmods.Resolve(path)
	if err != nil {
		return nil, "", err
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return nil, "", err
	}
	tensors := wf.Tensors
	prefixed := 0
	for _, t := range tensors {
		if strings.HasPrefix(t.Name, "model.") {
			prefixed++
		}
	}
	if prefixed == len(tensors) && prefixed > 0 {
		for i := range tensors {
			tensors[i].Name = strings.TrimPrefix(tensors[i].Name, "model.")
		}
	}
	return tensors, src.File, nil
}

// loadVision loads MAE weights (a repro mae.pretrain run, the official
// mae_pretrain_vit_*.pth, HF ViTMAE) into visual_encoder, reporting
// what loaded.
func loadVision(s *train.Session, path string, c ModelConfig) error {
	ck, err := mae.OpenCheckpoint(path)
	if err != nil {
		return fmt.Errorf("vision_init: %w", err)
	}
	var enc []safetensors.Tensor
	for _, t := range ck.Tensors { // the encoder only: MAE's decoder and mask token have no place here
		if !strings.HasPrefix(t.Name, "decoder") && t.Name != "mask_token" {
			enc = append(enc, t)
		}
	}
	rep, err := loadPrefixed(s.Store, enc, "visual_encoder.", c.ImageRes/c.Patch, s.W)
	if err != nil {
		return fmt.Errorf("vision_init %s: %w", path, err)
	}
	fmt.Fprintf(s.W, "visual_encoder from %s: %s\n", ck.Kind, rep)
	if len(rep.Loaded) == 0 {
		return fmt.Errorf("vision_init %s: no tensor matched the image encoder (%s)", path, rep)
	}
	return nil
}

// PretrainedToVQA renames a pre-training state_dict for the VQA model as
// train_vqa.py does: text_encoder.bert.X becomes text_encoder.X (the
// VQA text encoder is a BertModel); the multimodal layers (fusion_layer
// and up) and the embeddings and MLM head initialise the answer decoder
// (text_encoder.bert.encoder.layer.N becomes
// text_decoder.bert.encoder.layer.N-fusion_layer, text_encoder.cls.* becomes
// text_decoder.cls.*); the momentum copies likewise. The official script
// hard-codes fusion_layer 6, bert-base's. Everything else keeps its
// name: the image encoders load, the projections, ITM head, temperature
// and queues have no place in the VQA model and are reported unused.
func PretrainedToVQA(tensors []safetensors.Tensor, fusion int64) []safetensors.Tensor {
	var out []safetensors.Tensor
	add := func(t safetensors.Tensor, name string) {
		t.Name = name
		out = append(out, t)
	}
	for _, t := range tensors {
		k := t.Name
		var enc string
		switch {
		case strings.HasPrefix(k, "text_encoder.bert."):
			enc = "text_encoder"
		case strings.HasPrefix(k, "text_encoder_m.bert."):
			enc = "text_encoder_m"
		case strings.HasPrefix(k, "text_encoder.cls."), strings.HasPrefix(k, "text_encoder_m.cls."):
			add(t, strings.Replace(k, "text_encoder", "text_decoder", 1))
			continue
		default:
			add(t, k)
			continue
		}
		rest := strings.TrimPrefix(k, enc+".bert.")
		add(t, enc+"."+rest) // the encoder keeps every layer
		dec := strings.Replace(enc, "text_encoder", "text_decoder", 1) + ".bert."
		if layer, tail, ok := cutLayer(rest); ok {
			if layer >= fusion {
				add(t, dec+"encoder.layer."+strconv.FormatInt(layer-fusion, 10)+"."+tail)
			}
			continue
		}
		add(t, dec+rest) // embeddings
	}
	return out
}

// BertToVQA names a BERT checkpoint's tensors (bert.*, cls.*, as
// BertForMaskedLM) for the VQA model as model_vqa.py's from_pretrained
// calls load it: the text encoder takes every layer (its cross-attention
// stays random), the decoder the embeddings, the first decoderLayers
// layers and the MLM head.
func BertToVQA(tensors []safetensors.Tensor, decoderLayers int64) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, t := range tensors {
		if rest, ok := strings.CutPrefix(t.Name, "cls."); ok {
			t.Name = "text_decoder.cls." + rest
			out = append(out, t)
			continue
		}
		rest, ok := strings.CutPrefix(t.Name, "bert.")
		if !ok || strings.HasPrefix(rest, "pooler.") {
			continue
		}
		enc := t
		enc.Name = "text_encoder." + rest
		out = append(out, enc)
		if layer, _, ok := cutLayer(rest); ok && layer >= decoderLayers {
			continue
		}
		t.Name = "text_decoder.bert." + rest
		out = append(out, t)
	}
	return out
}

// cutLayer splits "encoder.layer.N.rest" into N and rest.
func cutLayer(name string) (int64, string, bool) {
	r, ok := strings.CutPrefix(name, "encoder.layer.")
	if !ok {
		return 0, "", false
	}
	num, tail, ok := strings.Cut(r, ".")
	if !ok {
		return 0, "", false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return n, tail, err == nil
}

// LoadPretrained starts a VQA model from a pre-training run or
// checkpoint (repro's vqa.pretrain, or MUMC's med_pretrain_NN.pth with
// its "model" entry), renamed by PretrainedToVQA; what is left out or
// unused is reported on w. Without distillation the momentum copies in
// the file are unused.
func LoadPretrained(store *torchmods.Store, m *VQAModel, path string, w io.Writer) (torchmods.LoadReport, error) {
	tensors, file, err := readStateDict(path)
	if err != nil {
		return torchmods.LoadReport{}, err
	}
	rep, err := loadPrefixed(store, PretrainedToVQA(tensors, m.Cfg.Text.FusionLayer), "", m.Cfg.ImageRes/m.Cfg.Patch, w)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", file, err)
	}
	sort.Strings(rep.Missing)
	fmt.Fprintf(w, "VQA model from %s: %s\n", file, rep)
	if len(rep.Loaded) == 0 {
		return rep, fmt.Errorf("%s: no tensor matched the VQA model (%s)", file, rep)
	}
	if m.Momentum != nil && len(keepPrefix(rep.Loaded, "visual_encoder_m.")) == 0 {
		m.Momentum.Copy() // a file without momentum copies: start them from the loaded weights
	}
	return rep, nil
}
