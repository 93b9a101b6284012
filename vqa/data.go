package vqa

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"image"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
)

// DataConfig says where the images, captions and questions come from:
// the synthetic scans generated here, or the public datasets' own files.
type DataConfig struct {
	// Kind is "synthetic" (generated from [data.synth], nothing on disk)
	// or "files" (the JSON files below and an image folder).
	Kind  string      `toml:"kind"`
	Synth SynthConfig `toml:"synth"`
	// ImageRoot is the folder image names are relative to (MUMC's
	// image_root for captions, vqa_root for questions).
	ImageRoot string `toml:"image_root"`
	// Captions are pre-training files: JSON lists of {"image", "caption"}
	// (ALBEF's format, as MedICaT, ROCO and ImageCLEF are converted).
	Captions []string `toml:"captions"`
	// Train, Val and Test are VQA files (MUMC's converted JSON, VQA-RAD's
	// public release, SLAKE, PathVQA: see ReadItems); AnswerList is the
	// candidate answers inference ranks (MUMC's answer_list.json).
	Train []string `toml:"train"`
	Val   []string `toml:"val"`
	// ValSplit, when val lists no file (VQA-RAD has no validation split),
	// holds out this share of the training images, with their questions,
	// as the validation split: every image's questions on one side.
	ValSplit   float64  `toml:"val_split"`
	Test       []string `toml:"test"`
	AnswerList string   `toml:"answer_list"`
	// Vocab is a BERT vocab.txt (bert-base-uncased's for the paper); for
	// synthetic data a missing file is trained on the texts and written.
	Vocab     string `toml:"vocab"`
	VocabSize int    `toml:"vocab_size"` // the trained vocabulary's size
	Batch     int64  `toml:"batch"`      // per optimizer step
	EvalBatch int64  `toml:"eval_batch"`
	// The training transform: RandomResizedCrop's area range (MUMC: 0.2-1
	// pre-training, 0.5-1 VQA; [1, 1] keeps the whole image), horizontal
	// flips (MUMC: on; they swap left and right, which questions about
	// position ask) and RandAugment ("" for none; "albef" is MUMC's and
	// ALBEF's RandomAugment(2, 7) with their ten operations, ported exactly;
	// "rand-m9-n2..." is timm's).
	Scale       [2]float64 `toml:"scale"`
	Flip        bool       `toml:"flip"`
	RandAugment string     `toml:"randaugment"`
	Workers     int        `toml:"workers"`
}

// SynthConfig is SynthOptions in the config.
type SynthConfig struct {
	Size              int    `toml:"size"`
	Train             int    `toml:"train"`
	Val               int    `toml:"val"`
	Test              int    `toml:"test"`
	PretrainExtra     int    `toml:"pretrain_extra"`
	QuestionsPerImage int    `toml:"questions_per_image"`
	Seed              uint64 `toml:"seed"`
}

func (s SynthConfig) options() SynthOptions {
	return SynthOptions{Size: s.Size, Train: s.Train, Val: s.Val, Test: s.Test, PretrainExtra: s.PretrainExtra, QuestionsPerImage: s.QuestionsPerImage, Seed: s.Seed}
}

// DefaultData is the synthetic set, without augmentation: flips would
// swap the left and right that questions ask about, crops could cut
// lesions out, and RandomAugment's shears and rotations could move a
// lesion across the midline.
func DefaultData() DataConfig {
	o := DefaultSynthOptions()
	return DataConfig{Kind: "synthetic", Synth: SynthConfig{Size: o.Size, Train: o.Train, Val: o.Val, Test: o.Test, PretrainExtra: o.PretrainExtra,
		QuestionsPerImage: o.QuestionsPerImage, Seed: o.Seed}, VocabSize: 1000, Batch: 32, EvalBatch: 64, Scale: [2]float64{1, 1}}
}

func (d *DataConfig) validate(needQuestions bool) error {
	switch {
	case d.Kind != "synthetic" && d.Kind != "files":
		return config.Field("data.kind", `must be "synthetic" or "files", got %q`, d.Kind)
	case d.Batch < 2:
		return config.Field("data.batch", "must be at least 2 (the contrastive and matching losses need negatives), got %d", d.Batch)
	case d.EvalBatch < 1:
		return config.Field("data.eval_batch", "must be positive, got %d", d.EvalBatch)
	case !(d.Scale[0] > 0 && d.Scale[0] <= d.Scale[1] && d.Scale[1] <= 1):
		return config.Field("data.scale", "must satisfy 0 < scale[0] <= scale[1] <= 1, got %v", d.Scale)
	case d.Vocab == "":
		return config.Field("data.vocab", "must name a BERT vocab.txt (trained and written there for synthetic data)")
	case d.Kind == "files" && d.ImageRoot == "":
		return config.Field("data.image_root", "must name the image folder when data.kind is files")
	case d.Kind == "files" && needQuestions && (len(d.Train) == 0 || len(d.Test) == 0 || d.AnswerList == ""):
		return config.Field("data.train", "train, test and answer_list must all be set when data.kind is files")
	case d.Kind == "files" && needQuestions && len(d.Val) == 0 && !(d.ValSplit > 0 && d.ValSplit < 1):
		return config.Field("data.val", "name the validation files, or set val_split in (0, 1) to hold out training images: the epoch is chosen on val, never on test")
	case len(d.Val) > 0 && d.ValSplit != 0:
		return config.Field("data.val_split", "val names validation files already; remove val_split")
	case d.Kind == "files" && !needQuestions && len(d.Captions) == 0:
		return config.Field("data.captions", "must list the pre-training caption files when data.kind is files")
	}
	return nil
}

// images hands out decoded images by name, from the generated set or
// from the image folder.
type images interface {
	Image(name string) (image.Image, error)
}

type synthImages struct{ s *SynthSet }

func (m synthImages) Image(name string) (image.Image, error) {
	px, err := m.s.Pixels(name)
	if err != nil {
		return nil, err
	}
	n := m.s.Opt.Size
	return &image.Gray{Pix: px, Stride: n, Rect: image.Rect(0, 0, n, n)}, nil
}

type folderImages struct{ root string }

func (f folderImages) Image(name string) (image.Image, error) {
	path := filepath.Join(f.root, name)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return data.DecodeImage(bytes.NewReader(b), path, data.ImageFolderOptions{})
}

// Dataset is everything a task reads: the images, the caption pairs for
// pre-training, the questions of each split and the candidate answers.
type Dataset struct {
	Images           images
	Pairs            []Pair
	Train, Val, Test []Item
	Answers          []string
	Describe         string // what was read or generated, for the log
}

// Pair is one image with its captions (pre-processed by PreCaption);
// pre-training draws one of them each time it visits the image, as
// pretrain_dataset does.
type Pair struct {
	Image    string
	Captions []string
}

// Caption is the caption a visit uses: one drawn by rng, or the first
// when rng is nil (the held-out measurement).
func (p Pair) Caption(rng *rand.Rand) string {
	if rng == nil || len(p.Captions) == 1 {
		return p.Captions[0]
	}
	return p.Captions[rng.IntN(len(p.Captions))]
}

// Open reads or generates the dataset.
func (d DataConfig) Open(needQuestions bool) (*Dataset, error) {
	ds := &Dataset{}
	var caps []Caption
	if d.Kind == "synthetic" {
		s, err := Synthesize(d.Synth.options())
		if err != nil {
			return nil, err
		}
		ds.Images, caps = synthImages{s}, s.Captions
		ds.Train, ds.Val, ds.Test, ds.Answers = s.Train, s.Val, s.Test, s.Answers
		ds.Describe = fmt.Sprintf("synthetic scans (%d px, seed %d): %d caption pairs, questions %d train / %d val / %d test, %d candidate answers; held out: %s",
			s.Opt.Size, s.Opt.Seed, len(s.Captions), len(s.Train), len(s.Val), len(s.Test), len(s.Answers), strings.Join(s.HeldOut, "; "))
	} else {
		ds.Images = folderImages{d.ImageRoot}
		for _, f := range d.Captions {
			c, err := ReadCaptions(f)
			if err != nil {
				return nil, err
			}
			caps = append(caps, c...)
		}
		if needQuestions {
			var err error
			read := func(files []string) ([]Item, error) {
				var all []Item
				for _, f := range files {
					items, err := ReadItems(f)
					if err != nil {
						return nil, err
					}
					all = append(all, items...)
				}
				return all, nil
			}
			if ds.Train, err = read(d.Train); err != nil {
				return nil, err
			}
			if ds.Val, err = read(d.Val); err != nil {
				return nil, err
			}
			if len(d.Val) == 0 {
				ds.Train, ds.Val = splitByImage(ds.Train, d.ValSplit)
				ds.Describe = fmt.Sprintf("val: %d questions of %.0f%% of the training images, held out (data.val_split); ", len(ds.Val), 100*d.ValSplit)
			}
			if ds.Test, err = read(d.Test); err != nil {
				return nil, err
			}
			if ds.Answers, err = ReadAnswerList(d.AnswerList); err != nil {
				return nil, err
			}
		}
		ds.Describe += fmt.Sprintf("%d caption pairs, questions %d train / %d val / %d test, %d candidate answers, images in %s",
			len(caps), len(ds.Train), len(ds.Val), len(ds.Test), len(ds.Answers), d.ImageRoot)
	}
	for _, c := range caps {
		p := Pair{Image: c.Image}
		for _, text := range c.Captions {
			p.Captions = append(p.Captions, PreCaption(text, 30))
		}
		if len(p.Captions) > 0 {
			ds.Pairs = append(ds.Pairs, p)
		}
	}
	return ds, nil
}

// splitByImage moves the questions of a share of the images (every
// image whose FNV hash of its name falls in the share, so the split does
// not depend on the order of the file) to a second list.
func splitByImage(items []Item, share float64) (keep, held []Item) {
	for _, it := range items {
		h := fnv.New64a()
		h.Write([]byte(it.Image))
		if float64(h.Sum64()%10000) < share*10000 {
			held = append(held, it)
		} else {
			keep = append(keep, it)
		}
	}
	return keep, held
}

// texts are what a trained vocabulary is learnt from: captions, questions
// and answers of the training data.
func (ds *Dataset) texts() []string {
	var out []string
	for _, p := range ds.Pairs {
		out = append(out, p.Captions...)
	}
	for _, it := range ds.Train {
		out = append(out, PreQuestion(it.Question, 30), PreAnswer(it.Answer))
	}
	out = append(out, ds.Answers...) // every candidate must be spellable
	return out
}

// Tokenizer loads data.vocab, training and writing it first for
// synthetic data (the words of the texts, as WordPiece pieces).
func (d DataConfig) Tokenizer(ds *Dataset) (*mlm.Tokenizer, error) {
	if _, err := os.Stat(d.Vocab); err != nil {
		if d.Kind != "synthetic" {
			return nil, fmt.Errorf("data.vocab %s: %w (use bert-base-uncased's vocab.txt)", d.Vocab, err)
		}
		vocab, err := mlm.TrainWordPiece(ds.texts(), d.VocabSize, 1)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(d.Vocab), 0o755); err != nil {
			return nil, err
		}
		if err := mlm.WriteVocab(d.Vocab+".tmp", vocab); err != nil {
			return nil, err
		}
		if err := os.Rename(d.Vocab+".tmp", d.Vocab); err != nil {
			return nil, err
		}
	}
	return mlm.LoadTokenizer(d.Vocab)
}

// openData opens the dataset (logging what was read or generated) and
// its tokenizer, and sets the model's vocabulary to the tokenizer's
// when the config leaves it 0, refusing one too small for it.
func openData(d DataConfig, m *ModelConfig, needQuestions bool, w io.Writer) (*Dataset, *mlm.Tokenizer, error) {
	ds, err := d.Open(needQuestions)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintln(w, ds.Describe)
	tok, err := d.Tokenizer(ds)
	if err != nil {
		return nil, nil, err
	}
	if m.Text.VocabSize == 0 {
		m.Text.VocabSize = tok.Size
	} else if m.Text.VocabSize < tok.Size {
		return nil, nil, config.Field("model.text.vocab_size", "%d is smaller than the tokenizer's %d tokens", m.Text.VocabSize, tok.Size)
	}
	return ds, tok, nil
}

// augment is the image transform: CLIP's normalisation, as MUMC's
// create_dataset; training draws the crop, flip and RandAugment.
func (d DataConfig) augment(size int64) (data.Augment, error) {
	a := data.Augment{Size: int(size), Scale: d.Scale, Flip: d.Flip, CropPct: 1,
		Mean: [3]float32{0.48145466, 0.4578275, 0.40821073}, Std: [3]float32{0.26862954, 0.26130258, 0.27577711}}
	switch {
	case strings.HasPrefix(d.RandAugment, "albef"):
		ra, err := data.ParseALBEFRandomAugment(d.RandAugment)
		if err != nil {
			return a, config.Field("data.randaugment", "%v", err)
		}
		a.ALBEF = ra
	case d.RandAugment != "":
		ra, err := data.ParseRandAugment(d.RandAugment, a.Mean, data.Bicubic)
		if err != nil {
			return a, config.Field("data.randaugment", "%v", err)
		}
		a.RandAugment = ra
	}
	return a, nil
}

// imageBatch turns images into one [B, 3, S, S] float slice: training
// images through the random transform, evaluation images resized to the
// square whole (create_dataset's test transform, Resize((S, S))).
func imageBatch(src images, names []string, a data.Augment, train bool, rng *rand.Rand) ([]float32, error) {
	var out []float32
	for _, n := range names {
		img, err := src.Image(n)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", n, err)
		}
		if train {
			out = append(out, a.Train(img, rng)...)
		} else {
			out = append(out, a.Squash(img)...)
		}
	}
	return out, nil
}
