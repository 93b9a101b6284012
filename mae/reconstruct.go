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
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// InferOptions works out a MAE checkpoint's sizes from its tensors' shapes
// (patch size, widths, depths, channels, image size, MLP ratio). Head
// counts are not in a state dict, and a model built with the wrong count
// loads every tensor and computes something else, so InferOptions never
// picks them silently: it takes the paper's counts (12 for width 768, 16
// for 1024 and 1280, 16 for the decoder) or width/64 (the usual head
// size), and returns each such assumption in words for the caller to
// print, with how to override it. Eps is MAE's 1e-6. NormPixLoss is left
// false: the caller knows how the model was trained.
func InferOptions(tensors []safetensors.Tensor) (Options, []string, error) {
	shape := map[string][]int64{}
	depth, decDepth := int64(0), int64(0)
	seen := map[string]map[int64]bool{"blocks": {}, "decoder_blocks": {}}
	block := regexp.MustCompile(`^(blocks|decoder_blocks)\.(\d+)\.`)
	for _, t := range tensors {
		shape[t.Name] = t.Shape
		if m := block.FindStringSubmatch(t.Name); m != nil {
			i, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil {
				return Options{}, nil, fmt.Errorf("tensor %q: block index %s is out of range", t.Name, m[2])
			}
			seen[m[1]][i] = true
			if m[1] == "blocks" {
				depth = max(depth, i+1)
			} else {
				decDepth = max(decDepth, i+1)
			}
		}
	}
	// The depth read from the names is bounded by what the file holds: a
	// name like blocks.100000000.norm1.weight must not build a model of a
	// hundred million blocks. Every block index below the depth must be
	// present.
	for kind, d := range map[string]int64{"blocks": depth, "decoder_blocks": decDepth} {
		if int64(len(seen[kind])) != d {
			missing := int64(-1)
			for i := int64(0); i < d && missing < 0; i++ {
				if !seen[kind][i] {
					missing = i
				}
			}
			return Options{}, nil, fmt.Errorf("the checkpoint's %s are not numbered 0..%d: it holds %d of them and %s.%d is missing", kind, d-1, len(seen[kind]), kind, missing)
		}
	}
	pe, pos, de := shape["patch_embed.proj.weight"], shape["pos_embed"], shape["decoder_embed.weight"]
	if len(pe) != 4 || len(pos) != 3 {
		return Options{}, nil, fmt.Errorf("not a MAE/ViT checkpoint: no patch_embed.proj.weight [D, C, p, p] and pos_embed [1, 1+L, D]")
	}
	grid := int64(math.Round(math.Sqrt(float64(pos[1] - 1))))
	o := Options{Patch: pe[2], InChans: pe[1], Dim: pe[0], Depth: depth, ImgSize: grid * pe[2], MLPRatio: 4, Eps: 1e-6}
	if fc1 := shape["blocks.0.mlp.fc1.weight"]; len(fc1) == 2 {
		o.MLPRatio = float64(fc1[0]) / float64(o.Dim)
	}
	var assumed []string
	o.Heads, assumed = assumeHeads(o.Dim, "encoder", "-heads", map[int64]int64{768: 12, 1024: 16, 1280: 16}, assumed)
	if len(de) == 2 {
		o.DecoderDim, o.DecoderDepth = de[0], decDepth
		o.DecoderHeads, assumed = assumeHeads(o.DecoderDim, "decoder", "-decoder-heads", map[int64]int64{512: 16}, assumed)
	}
	return o, assumed, nil
}

// assumeHeads is the head count for a width: the paper's, else width/64
// (at least 1, and dividing the width), with the assumption in words.
func assumeHeads(dim int64, which, flag string, paper map[int64]int64, assumed []string) (int64, []string) {
	if h, ok := paper[dim]; ok {
		return h, append(assumed, fmt.Sprintf("%s heads %d (the paper's for width %d; a checkpoint does not store heads, so pass %s N if it was trained otherwise)", which, h, dim, flag))
	}
	h := max(1, dim/64)
	for dim%h != 0 {
		h--
	}
	return h, append(assumed, fmt.Sprintf("%s heads %d (width %d is not one of the paper's, so width/64, the usual head size; a checkpoint does not store heads: "+
		"pass %s N with the count it was trained with, or its outputs will be wrong)", which, h, dim, flag))
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
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory; give the PNG file's path", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Written aside and renamed, so a failure never leaves half a PNG
	// under the final name, nor the temporary file behind.
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = png.Encode(f, img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Hints are what a checkpoint's shapes do not tell and its user may: how
// it was trained, and its head counts (0: from a config.json, else the
// assumption InferOptions says).
type Hints struct {
	NormPix             bool
	Heads, DecoderHeads int64
}

// LoadForReconstruction builds the full model a checkpoint needs and loads
// it. With o nil the sizes come from a HF folder's config.json when there
// is one, and are inferred from the shapes otherwise (InferOptions), with
// h's head counts and norm_pix_loss; every assumption made is written to
// w, so that nothing about the model is guessed silently.
func LoadForReconstruction(store *torchmods.Store, checkpoint string, o *Options, h Hints, w io.Writer) (*Model, error) {
	if o == nil {
		ck, err := OpenCheckpoint(checkpoint)
		if err != nil {
			return nil, err
		}
		var opts Options
		var assumed []string
		if ck.Config != nil {
			opts = *ck.Config
			for _, c := range []struct {
				flag       string
				given, cfg int64
			}{{"-heads", h.Heads, opts.Heads}, {"-decoder-heads", h.DecoderHeads, opts.DecoderHeads}} {
				if c.given != 0 && c.given != c.cfg {
					return nil, fmt.Errorf("%s %d, but %s says %d", c.flag, c.given, ck.Source.Config, c.cfg)
				}
			}
			fmt.Fprintf(w, "model from %s: %d x %d images, patch %d, encoder %d wide x %d deep with %d heads, decoder %d wide x %d deep with %d heads, eps %g, norm_pix_loss %v\n",
				ck.Source.Config, opts.ImgSize, opts.ImgSize, opts.Patch, opts.Dim, opts.Depth, opts.Heads, opts.DecoderDim, opts.DecoderDepth, opts.DecoderHeads, opts.Eps, opts.NormPixLoss)
		} else {
			if opts, assumed, err = InferOptions(ck.Tensors); err != nil {
				return nil, fmt.Errorf("%s: %w", checkpoint, err)
			}
			if opts.DecoderDim == 0 {
				return nil, fmt.Errorf("%s holds an encoder only (like the official mae_pretrain_vit_*.pth); "+
					"reconstruction needs the decoder too: use a *_full.pth or mae_visualize_*.pth file, or a repro pre-training run", checkpoint)
			}
			var kept []string
			for _, a := range assumed {
				switch {
				case strings.HasPrefix(a, "encoder heads") && h.Heads > 0:
					opts.Heads = h.Heads
				case strings.HasPrefix(a, "decoder heads") && h.DecoderHeads > 0:
					opts.DecoderHeads = h.DecoderHeads
				default:
					kept = append(kept, a)
				}
			}
			assumed = kept
			if ck.HF {
				assumed = append(assumed, "layer_norm_eps 1e-6 (MAE's; there is no config.json beside the weights, and HF ViTMAE configs often say 1e-12)")
			}
			opts.NormPixLoss = h.NormPix
			fmt.Fprintf(w, "model inferred from the checkpoint: %d x %d images, patch %d, encoder %d wide x %d deep with %d heads, decoder %d wide x %d deep with %d heads, norm_pix_loss %v\n",
				opts.ImgSize, opts.ImgSize, opts.Patch, opts.Dim, opts.Depth, opts.Heads, opts.DecoderDim, opts.DecoderDepth, opts.DecoderHeads, opts.NormPixLoss)
			for _, a := range assumed {
				fmt.Fprintf(w, "assumed: %s\n", a)
			}
		}
		o = &opts
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
	set, err := openImages(DataConfig{Kind: "fashion_mnist", Dir: dir}, "test", 28, 1, trainExtras{})
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
		img, err := data.DecodeImage(f, p, data.ImageFolderOptions{}) // refuses pixel bombs by their header
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
