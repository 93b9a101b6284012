package train

import (
	"math"
	"strconv"
	"strings"

	"github.com/reprolab/repro/torchmods"
)

// ViTLayerDecay is the layer-wise learning-rate decay of MAE's fine-tuning
// (util/lr_decay.py, after BEiT): with L = depth+1, parameters named
// cls_token, pos_embed or patch_embed.* are layer 0, blocks.i.* layer i+1,
// everything else (final norm, head) layer L; layer l's learning rate is
// scaled by decay^(L-l). It returns the scale of every parameter of store.
func ViTLayerDecay(store *torchmods.Store, depth int, decay float64) map[string]float64 {
	L := depth + 1
	scales := map[string]float64{}
	for _, p := range store.Params() {
		scales[p.Name] = math.Pow(decay, float64(L-vitLayerID(p.Name, L)))
	}
	return scales
}

func vitLayerID(name string, numLayers int) int {
	switch {
	case name == "cls_token" || name == "pos_embed" || strings.HasPrefix(name, "patch_embed"):
		return 0
	case strings.HasPrefix(name, "blocks."):
		if i, err := strconv.Atoi(strings.SplitN(name, ".", 3)[1]); err == nil {
			return i + 1
		}
	}
	return numLayers
}
