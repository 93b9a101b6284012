package mae

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// HFNames maps Hugging Face ViTMAE (ViTMAEForPreTraining) names onto the
// official ones: q, k and v join into the fused qkv (rows [0:D], [D:2D],
// [2D:3D]) and the rest are renamed.
var HFNames = torchmods.RenameTable{
	Join: []torchmods.JoinRule{
		{From: []string{"vit.encoder.layer.{n}.attention.attention.query.weight", "vit.encoder.layer.{n}.attention.attention.key.weight", "vit.encoder.layer.{n}.attention.attention.value.weight"}, To: "blocks.{n}.attn.qkv.weight"},
		{From: []string{"vit.encoder.layer.{n}.attention.attention.query.bias", "vit.encoder.layer.{n}.attention.attention.key.bias", "vit.encoder.layer.{n}.attention.attention.value.bias"}, To: "blocks.{n}.attn.qkv.bias"},
		{From: []string{"decoder.decoder_layers.{n}.attention.attention.query.weight", "decoder.decoder_layers.{n}.attention.attention.key.weight", "decoder.decoder_layers.{n}.attention.attention.value.weight"}, To: "decoder_blocks.{n}.attn.qkv.weight"},
		{From: []string{"decoder.decoder_layers.{n}.attention.attention.query.bias", "decoder.decoder_layers.{n}.attention.attention.key.bias", "decoder.decoder_layers.{n}.attention.attention.value.bias"}, To: "decoder_blocks.{n}.attn.qkv.bias"},
	},
	Rename: hfRenames(),
}

func hfRenames() []torchmods.RenameRule {
	r := []torchmods.RenameRule{
		{From: "vit.embeddings.cls_token", To: "cls_token"},
		{From: "vit.embeddings.position_embeddings", To: "pos_embed"},
		{From: "vit.embeddings.patch_embeddings.projection.weight", To: "patch_embed.proj.weight"},
		{From: "vit.embeddings.patch_embeddings.projection.bias", To: "patch_embed.proj.bias"},
		{From: "vit.layernorm.weight", To: "norm.weight"},
		{From: "vit.layernorm.bias", To: "norm.bias"},
		{From: "decoder.mask_token", To: "mask_token"},
		{From: "decoder.decoder_pos_embed", To: "decoder_pos_embed"},
	}
	for _, mod := range []string{"decoder_embed", "decoder_norm", "decoder_pred"} {
		for _, wb := range []string{"weight", "bias"} {
			r = append(r, torchmods.RenameRule{From: "decoder." + mod + "." + wb, To: mod + "." + wb})
		}
	}
	layer := map[string]string{"layernorm_before": "norm1", "attention.output.dense": "attn.proj", "layernorm_after": "norm2",
		"intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
	for hf, timm := range layer {
		for _, wb := range []string{"weight", "bias"} {
			r = append(r, torchmods.RenameRule{From: "vit.encoder.layer.{n}." + hf + "." + wb, To: "blocks.{n}." + timm + "." + wb},
				torchmods.RenameRule{From: "decoder.decoder_layers.{n}." + hf + "." + wb, To: "decoder_blocks.{n}." + timm + "." + wb})
		}
	}
	return r
}

// ReadCheckpoint reads MAE weights in any of their published forms and
// returns them under the official names: a repro run or checkpoint folder,
// the official mae_pretrain_vit_*.pth / *_full.pth / mae_visualize_*.pth
// (a torch.save dict whose "model" entry is the state_dict), or a HF
// ViTMAE model.safetensors / pytorch_model.bin. It says which it found.
func ReadCheckpoint(path string) (tensors []safetensors.Tensor, kind string, err error) {
	file, err := torchmods.ResolveWeights(path)
	if err != nil {
		return nil, "", err
	}
	wf, err := torchmods.ReadWeights(file)
	if err != nil {
		return nil, "", err
	}
	tensors, kind = wf.Tensors, "MAE state_dict ("+wf.Format+")"
	prefixed := 0
	hf := false
	for _, t := range tensors {
		if strings.HasPrefix(t.Name, "model.") {
			prefixed++
		}
		if strings.HasPrefix(t.Name, "vit.") {
			hf = true
		}
	}
	if prefixed == len(tensors) && prefixed > 0 { // the official checkpoints: {"model": state_dict, ...}
		for i := range tensors {
			tensors[i].Name = strings.TrimPrefix(tensors[i].Name, "model.")
		}
		kind = "official MAE checkpoint (the \"model\" entry of a torch.save dict)"
	}
	if hf {
		if tensors, err = HFNames.Apply(tensors); err != nil {
			return nil, "", fmt.Errorf("%s: %w", file, err)
		}
		kind = "Hugging Face ViTMAE weights (" + wf.Format + "), renamed through mae.HFNames"
	}
	return tensors, kind + " from " + file, nil
}

// LoadInto loads a checkpoint into store, whose model is a Model (full) or
// an encoder-only ViT (full false: decoder weights are skipped). A
// position table for another image size is interpolated, as the official
// interpolate_pos_embed. A full model loads strictly, and an encoder-only
// checkpoint is refused with the reason; an encoder loads what matches and
// reports the rest (a classifier's head and fc_norm are new). The report
// goes to w.
func LoadInto(store *torchmods.Store, path string, o Options, full bool, w io.Writer) (torchmods.LoadReport, error) {
	tensors, kind, err := ReadCheckpoint(path)
	if err != nil {
		return torchmods.LoadReport{}, err
	}
	weights := map[string]*ts.Tensor{}
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	hasDecoder := false
	for _, t := range tensors {
		isDecoder := strings.HasPrefix(t.Name, "decoder") || t.Name == "mask_token"
		hasDecoder = hasDecoder || isDecoder
		if isDecoder && !full {
			continue
		}
		x, err := torchmods.FromSafetensors(t, store.Device)
		if err != nil {
			return torchmods.LoadReport{}, fmt.Errorf("%s: %w", path, err)
		}
		weights[t.Name] = x
	}
	if full && !hasDecoder {
		return torchmods.LoadReport{}, fmt.Errorf("%s holds an encoder only (like the official mae_pretrain_vit_*.pth); "+
			"reconstruction needs the decoder too: use a *_full.pth or mae_visualize_*.pth file, or a repro pre-training run", path)
	}
	if pe, ok := weights["pos_embed"]; ok {
		grid := o.ImgSize / o.Patch
		if np, err := torchmods.InterpolatePosEmbed(pe, grid); err != nil {
			return torchmods.LoadReport{}, fmt.Errorf("%s: pos_embed: %w", path, err)
		} else if np != pe {
			fmt.Fprintf(w, "pos_embed interpolated from %v to %d x %d patches\n", pe.MustSize(), grid, grid)
			pe.MustDrop()
			weights["pos_embed"] = np
		}
	}
	rep, err := store.Load(weights, full)
	fmt.Fprintf(w, "%s: %s\n", kind, rep)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	if len(rep.Mismatched) > 0 {
		return rep, fmt.Errorf("%s: shapes differ from model (check [model] against the checkpoint): %v", path, rep.Mismatched)
	}
	if len(rep.Loaded) == 0 {
		return rep, fmt.Errorf("%s: no tensor matched the model's names", path)
	}
	return rep, nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d6165)) }
