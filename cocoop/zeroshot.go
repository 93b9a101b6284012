package cocoop

import (
	"fmt"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// This file is zero-shot CLIP as trainers/zsclip.py (at ff61507c) runs it:
// ZeroshotCLIP, one hand-written template per dataset (CUSTOM_TEMPLATES),
// and ZeroshotCLIP2, the prompt ensemble of IMAGENET_TEMPLATES_SELECT plus
// the dataset's own template.

// CustomTemplates is zsclip.py's CUSTOM_TEMPLATES, by Dassl dataset name,
// plus "Scenes", the generated dataset here, whose captions use the same
// "a photo of a {}." phrase.
var CustomTemplates = map[string]string{
	"OxfordPets":          "a photo of a {}, a type of pet.",
	"OxfordFlowers":       "a photo of a {}, a type of flower.",
	"FGVCAircraft":        "a photo of a {}, a type of aircraft.",
	"DescribableTextures": "{} texture.",
	"EuroSAT":             "a centered satellite photo of {}.",
	"StanfordCars":        "a photo of a {}.",
	"Food101":             "a photo of {}, a type of food.",
	"SUN397":              "a photo of a {}.",
	"Caltech101":          "a photo of a {}.",
	"UCF101":              "a photo of a person doing {}.",
	"ImageNet":            "a photo of a {}.",
	"ImageNetSketch":      "a photo of a {}.",
	"ImageNetV2":          "a photo of a {}.",
	"ImageNetA":           "a photo of a {}.",
	"ImageNetR":           "a photo of a {}.",
	"Scenes":              "a photo of a {}.",
}

// ImageNetTemplatesSelect is imagenet_templates.py's
// IMAGENET_TEMPLATES_SELECT, the seven templates ZeroshotCLIP2 ensembles
// (its full list of 80 is commented out there).
var ImageNetTemplatesSelect = []string{
	"itap of a {}.",
	"a bad photo of the {}.",
	"a origami {}.",
	"a photo of the large {}.",
	"a {} in a video game.",
	"art of the {}.",
	"a photo of the small {}.",
}

// Templates are the templates zero-shot CLIP uses for dataset: its custom
// template, or with ensemble IMAGENET_TEMPLATES_SELECT plus the custom
// template unless the dataset is ImageNet (ZeroshotCLIP2.build_model).
// override, when not "", replaces the custom template; with ensemble it
// joins the seven on ImageNet too, since a template the user set is never
// dropped without a word.
func Templates(dataset string, ensemble bool, override string) ([]string, error) {
	custom := override
	if custom == "" {
		var ok bool
		if custom, ok = CustomTemplates[dataset]; !ok {
			return nil, fmt.Errorf("zero-shot: no template for dataset %q (zsclip.py's CUSTOM_TEMPLATES has none); set one", dataset)
		}
	}
	if strings.Count(custom, "{}") != 1 {
		return nil, fmt.Errorf("zero-shot: template %q must hold {} once, where the class name goes", custom)
	}
	if !ensemble {
		return []string{custom}, nil
	}
	out := append([]string(nil), ImageNetTemplatesSelect...)
	if dataset != "ImageNet" || override != "" {
		out = append(out, custom)
	}
	return out, nil
}

// ZeroShotTexts are the class prompts of one template, temp.format(c with
// "_" read as " ") per class.
func ZeroShotTexts(template string, classnames []string) []string {
	out := make([]string, len(classnames))
	for i, c := range classnames {
		out[i] = strings.Replace(template, "{}", strings.ReplaceAll(c, "_", " "), 1)
	}
	return out
}

// ZeroShotTextFeatures is the classifier zsclip.py builds: for each
// template, the normalised encode_text of its class prompts; with one
// template those, with several their mean, normalised again. [n_cls,
// embed]. Errors are the tokenizer's (a word it lacks, a prompt too long).
func ZeroShotTextFeatures(clip *torchmods.CLIP, tok Tokenizer, templates, classnames []string) (*ts.Tensor, error) {
	rows := make([][][]int64, len(templates))
	for i, temp := range templates {
		var err error
		if rows[i], err = tok.Tokenize(ZeroShotTexts(temp, classnames), int(clip.Cfg.ContextLength)); err != nil {
			return nil, fmt.Errorf("zero-shot: %w", err)
		}
	}
	var out *ts.Tensor
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			var sum *ts.Tensor
			for _, r := range rows {
				var flat []int64
				for _, row := range r {
					flat = append(flat, row...)
				}
				ids := torchmods.FromSlice(flat, []int64{int64(len(r)), int64(len(r[0]))}, clip.PositionalEmbedding.MustDevice())
				f := normalize(clip.EncodeText(ids))
				if len(rows) == 1 {
					out = f
					return
				}
				if sum == nil {
					sum = f
				} else {
					sum = sum.MustAdd(f, true)
				}
			}
			out = normalize(sum.MustDivScalar(ts.IntScalar(int64(len(rows))), true))
		})
	})
	return out, err
}

// ZeroShotLogits is model_inference: logit_scale.exp() * normalised
// encode_image @ text featuresᵀ, [B, n_cls].
func ZeroShotLogits(clip *torchmods.CLIP, text, images *ts.Tensor) *ts.Tensor {
	return coopLogitsFrom(clip, normalize(clip.EncodeImage(images, false)), text)
}
