package mae

import (
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// InferOptions works out a MAE checkpoint's sizes from its tensors' shapes
// (patch size, widths, depths, channels, image size). Head counts are not
// stored in a checkpoint: they follow the paper's sizes (12 for width 768,
// 16 for 1024 and 1280, 16 for the decoder) and width/64 otherwise.
// NormPixLoss is left false: the caller knows how the model was trained.
func InferOptions(tensors []safetensors.Tensor) (Options, error) {
	shape := map[string][]int64{}
	depth, decDepth := int64(0), int64(0)
	block := regexp.MustCompile(`^(blocks|decoder_blocks)\.(\d+)\.`)
	for _, t := range tensors {
		shape[t.Name] = t.Shape
		if m := block.FindStringSubmatch(t.Name); m != nil {
			i, _ := strconv.ParseInt(m[2], 10, 64)
			if m[1] == "blocks" {
				depth = max(depth, i+1)
			} else {
				decDepth = max(decDepth, i+1)
			}
		}
	}
	pe, pos, de := shape["patch_embed.proj.weight"], shape["pos_embed"], shape["decoder_embed.weight"]
	if len(pe) != 4 || len(pos) != 3 {
		return Options{}, fmt.Errorf("not a MAE/ViT checkpoint: no patch_embed.proj.weight [D, C, p, p] and pos_embed [1, 1+L, D]")
	}
	grid := int64(math.Round(math.Sqrt(float64(pos[1] - 1))))
	o := Options{Patch: pe[2], InChans: pe[1], Dim: pe[0], Depth: depth, ImgSize: grid * pe[2], MLPRatio: 4, Eps: 1e-6}
	if fc1 := shape["blocks.0.mlp.fc1.weight"]; len(fc1) == 2 {
		o.MLPRatio = float64(fc1[0]) / float64(o.Dim)
	}
	o.Heads = map[int64]int64{768: 12, 1024: 16, 1280: 16}[o.Dim]
	if o.Heads == 0 {
		o.Heads = max(1, o.Dim/64)
	}
	if len(de) == 2 {
		o.DecoderDim, o.DecoderDepth, o.DecoderHeads = de[0], decDepth, 16
		if o.DecoderDim%16 != 0 {
			o.DecoderHeads = max(1, o.DecoderDim/64)
		}
	}
	return o, nil
}

// Panels are the official demo's four views of each image, [N, C, H, W] in
// the model's normalised pixel space: the original, the visible patches
// only (removed ones zero), the reconstruction, and the reconstruction
// with the visible patches pasted back.
type Panels struct{ Original, Masked, Reconstruction, Pasted *ts.Tensor }

// Reconstruct runs the model on imgs with masking noise (nil for random).
// With norm_pix_loss the model predicts each patch normalised by its own
// statistics; to show it, each predicted patch is mapped back with the
// true patch's mean and standard deviation, as visualisations of
// norm_pix_loss models do (so the panels show structure, not brightness).
func Reconstruct(m *Model, imgs *ts.Tensor, ratio float64, noise *ts.Tensor) (p Panels, err error) {
	err = torchmods.Try(func() {
		ts.NoGrad(func() {
			out := m.Forward(imgs, ratio, noise, false)
			pred := out.Pred
			if m.Opt.NormPixLoss {
				t := m.Patchify(imgs)
				k := t.MustSize()[2]
				mean := t.MustMeanDim([]int64{-1}, true, gotch.Float, false)
				c := t.MustSub(mean, false)
				std := c.MustMul(c, true).MustSumDimIntlist([]int64{-1}, true, gotch.Float, true).MustDivScalar(ts.FloatScalar(float64(k-1)), true).
					MustAddScalar(ts.FloatScalar(1e-6), true).MustSqrt(true)
				pred = pred.MustMul(std, false).MustAdd(mean, true)
			}
			y := m.Unpatchify(pred)
			pp := m.Opt.Patch * m.Opt.Patch * m.Opt.InChans
			mask := m.Unpatchify(out.Mask.MustUnsqueeze(-1, false).MustExpand([]int64{out.Mask.MustSize()[0], out.Mask.MustSize()[1], pp}, false, true))
			keep := mask.MustRsubScalar(ts.FloatScalar(1), false)
			p = Panels{Original: imgs.MustShallowClone(), Masked: imgs.MustMul(keep, false), Reconstruction: y,
				Pasted: imgs.MustMul(keep, false).MustAdd(y.MustMul(mask, false), true)}
		})
	})
	return p, err
}

// WriteGrid writes the panels as a PNG: one row per image, the four views
// side by side, each pixel mapped back through mean and std (one value per
// channel) and scaled up by scale.
func WriteGrid(path string, p Panels, mean, std []float32, scale int) error {
	views := []*ts.Tensor{p.Original, p.Masked, p.Reconstruction, p.Pasted}
	s := p.Original.MustSize()
	n, c, h, w := int(s[0]), int(s[1]), int(s[2]), int(s[3])
	if len(mean) != c || len(std) != c {
		return fmt.Errorf("grid: %d channels but %d means and %d stds", c, len(mean), len(std))
	}
	const gap = 2
	cell := w*scale + gap
	img := image.NewRGBA(image.Rect(0, 0, 4*cell+gap, n*(h*scale+gap)+gap))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for v, t := range views {
		vals := t.MustTo(gotch.CPU, false).Float64Values()
		for k := range n {
			for y := range h * scale {
				for x := range w * scale {
					var rgb [3]uint8
					for ch := range 3 {
						src := min(ch, c-1) // grey images fill all three
						val := vals[((k*c+src)*h+y/scale)*w+x/scale]*float64(std[src]) + float64(mean[src])
						rgb[ch] = uint8(math.Round(255 * math.Max(0, math.Min(1, val))))
					}
					img.SetRGBA(gap+v*cell+x, gap+k*(h*scale+gap)+y, color.RGBA{rgb[0], rgb[1], rgb[2], 255})
				}
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadForReconstruction builds the full model a checkpoint needs and loads
// it. With o nil the sizes are inferred from the checkpoint (InferOptions)
// and normPix says whether it was trained on normalised patches.
func LoadForReconstruction(store *torchmods.Store, checkpoint string, o *Options, normPix bool, w io.Writer) (*Model, error) {
	if o == nil {
		tensors, _, err := ReadCheckpoint(checkpoint)
		if err != nil {
			return nil, err
		}
		inferred, err := InferOptions(tensors)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", checkpoint, err)
		}
		if inferred.DecoderDim == 0 {
			return nil, fmt.Errorf("%s holds an encoder only (like the official mae_pretrain_vit_*.pth); "+
				"reconstruction needs the decoder too: use a *_full.pth or mae_visualize_*.pth file, or a repro pre-training run", checkpoint)
		}
		inferred.NormPixLoss = normPix
		fmt.Fprintf(w, "model inferred from the checkpoint: %d x %d images, patch %d, encoder %d wide x %d deep, decoder %d wide x %d deep, norm_pix_loss %v\n",
			inferred.ImgSize, inferred.ImgSize, inferred.Patch, inferred.Dim, inferred.Depth, inferred.DecoderDim, inferred.DecoderDepth, normPix)
		o = &inferred
	}
	m, err := New(store.Root(), *o)
	if err != nil {
		return nil, err
	}
	if _, err := LoadInto(store, checkpoint, *o, true, w); err != nil {
		return nil, err
	}
	return m, nil
}

// FashionMNISTBatch returns n test images from first on, normalised as the
// Fashion-MNIST configs train on them: [n, 1, 28, 28].
func FashionMNISTBatch(dir string, first, n int, dev gotch.Device) (*ts.Tensor, error) {
	set, err := openImages(DataConfig{Kind: "fashion_mnist", Dir: dir}, "test", 28, 1)
	if err != nil {
		return nil, err
	}
	if first < 0 || n <= 0 || first+n > set.n {
		return nil, fmt.Errorf("images %d..%d: the Fashion-MNIST test set has %d", first, first+n-1, set.n)
	}
	b, err := set.batch(seq(n + first)[first:], nil, false)
	if err != nil {
		return nil, err
	}
	x, _ := b.tensors(dev)
	return x, nil
}

// FileBatch decodes image files for a model of the given size, resized and
// centre-cropped as for evaluation, normalised with ImageNet's statistics.
func FileBatch(paths []string, size int64, dev gotch.Device) (*ts.Tensor, error) {
	aug := data.Augment{Size: int(size), Mean: data.ImageNetMean, Std: data.ImageNetStd}
	var px []float32
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		img, _, err := image.Decode(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		px = append(px, aug.Eval(img)...)
	}
	var x *ts.Tensor
	err := torchmods.Try(func() {
		x = ts.MustOfSlice(px).MustView([]int64{int64(len(paths)), 3, size, size}, true).MustTo(dev, true)
	})
	return x, err
}
