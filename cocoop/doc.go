// Package cocoop is CoOp and CoCoOp (Zhou et al., "Learning to Prompt for
// Vision-Language Models", IJCV 2022, and "Conditional Prompt Learning for
// Vision-Language Models", CVPR 2022) after KaiyangZhou/CoOp at ff61507c:
// prompt learners whose context vectors are trained, with the CLIP frozen,
// to classify images by the cosine of their features with the prompts'
// (CoCoOp shifting the context by a Meta-Net's output on each image), the
// zero-shot CLIP baseline, the base-to-new and cross-dataset protocols with
// Dassl's few-shot sampling, and readers for the datasets' layouts. The
// CLIP is torchmods'. For the experiment that runs without CLIP weights, a
// tiny CLIP is trained here on generated compositional scenes. README.md
// says what is implemented, how it departs from the official code, and how
// to run it.
package cocoop
