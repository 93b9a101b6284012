package cocoop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// This file reads the datasets as CoOp's datasets/*.py (at ff61507c) find
// them under DATASET.ROOT, laid out as its DATASETS.md says: the fixed
// splits split_zhou_<Name>.json of [impath, label, classname] triples
// (OxfordPets, OxfordFlowers, DescribableTextures, EuroSAT, StanfordCars,
// Food101, SUN397, Caltech101, UCF101), FGVCAircraft's own text files,
// ImageNet's images/{train,val}/<wnid>/ with classnames.txt, and the
// test-only ImageNet variants (V2, Sketch, A, R). Where the official code
// writes a split when the file is missing (a random one, with Python's
// generator), this refuses and says where the published split is: the
// paper's numbers are on those.

// Dataset is a dataset's splits, Dassl's train_x, val and test.
type Dataset struct {
	Name             string
	Train, Val, Test []Datum
	// TestOnly marks the ImageNet variants: one set, used as train and
	// test (their classes name the prompts), never trained on.
	TestOnly bool
}

// splitZhou is a dataset read from a split file: its folder under the
// root, its image folder (the split's paths are relative to it) and file.
type splitZhou struct{ dir, images, split string }

var splitZhouDatasets = map[string]splitZhou{
	"OxfordPets":          {"oxford_pets", "images", "split_zhou_OxfordPets.json"},
	"OxfordFlowers":       {"oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"},
	"DescribableTextures": {"dtd", "images", "split_zhou_DescribableTextures.json"},
	"EuroSAT":             {"eurosat", "2750", "split_zhou_EuroSAT.json"},
	"StanfordCars":        {"stanford_cars", "", "split_zhou_StanfordCars.json"}, // paths relative to the dataset folder
	"Food101":             {"food-101", "images", "split_zhou_Food101.json"},
	"SUN397":              {"sun397", "SUN397", "split_zhou_SUN397.json"},
	"Caltech101":          {"caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"},
	"UCF101":              {"ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"},
}

// imageNetVariants are the test-only datasets: folder, image folder.
var imageNetVariants = map[string][2]string{
	"ImageNetV2":     {"imagenetv2", "imagenetv2-matched-frequency-format-val"},
	"ImageNetSketch": {"imagenet-sketch", "images"},
	"ImageNetA":      {"imagenet-adversarial", "imagenet-a"},
	"ImageNetR":      {"imagenet-rendition", "imagenet-r"},
}

// DatasetNames lists the datasets ReadDataset knows (Dassl's DATASET.NAME
// spelling), and Scenes, the generated one (read by SceneDataset).
func DatasetNames() []string {
	out := []string{"ImageNet", "FGVCAircraft", ScenesDataset}
	for k := range splitZhouDatasets {
		out = append(out, k)
	}
	for k := range imageNetVariants {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ScenesDataset is the generated dataset's name.
const ScenesDataset = "Scenes"

// ReadDataset reads the named dataset from root (DATASET.ROOT, the folder
// holding oxford_pets/, imagenet/, ...). Errors name the file.
func ReadDataset(name, root string) (*Dataset, error) {
	if s, ok := splitZhouDatasets[name]; ok {
		dir := filepath.Join(root, s.dir)
		train, val, test, err := ReadSplit(filepath.Join(dir, s.split), filepath.Join(dir, s.images))
		if err != nil {
			return nil, err
		}
		return &Dataset{Name: name, Train: train, Val: val, Test: test}, nil
	}
	if v, ok := imageNetVariants[name]; ok {
		dir := filepath.Join(root, v[0])
		classes, err := ReadClassNames(filepath.Join(dir, "classnames.txt"))
		if err != nil {
			return nil, err
		}
		var items []Datum
		if name == "ImageNetV2" {
			items, err = readImageNetV2(filepath.Join(dir, v[1]), classes)
		} else {
			items, err = readClassFolders(filepath.Join(dir, v[1]), classes)
		}
		if err != nil {
			return nil, err
		}
		return &Dataset{Name: name, Train: items, Test: items, TestOnly: true}, nil
	}
	switch name {
	case "ImageNet":
		dir := filepath.Join(root, "imagenet")
		classes, err := ReadClassNames(filepath.Join(dir, "classnames.txt"))
		if err != nil {
			return nil, err
		}
		train, err := readClassFolders(filepath.Join(dir, "images", "train"), classes)
		if err != nil {
			return nil, err
		}
		// The val set is the test set, and the official val set too.
		test, err := readClassFolders(filepath.Join(dir, "images", "val"), classes)
		if err != nil {
			return nil, err
		}
		return &Dataset{Name: name, Train: train, Val: test, Test: test}, nil
	case "FGVCAircraft":
		return readAircraft(filepath.Join(root, "fgvc_aircraft"))
	case ScenesDataset:
		return nil, fmt.Errorf("dataset Scenes is generated, not read: set data.scenes")
	}
	return nil, fmt.Errorf("unknown dataset %q (known: %s)", name, strings.Join(DatasetNames(), ", "))
}

// ReadSplit reads a split_zhou_*.json file, OxfordPets.read_split: its
// "train", "val" and "test" lists of [impath, label, classname], impath
// relative to imageDir. A missing file names the download to look for;
// an entry of the wrong form is an error naming the split and index.
func ReadSplit(path, imageDir string) (train, val, test []Datum, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, nil, fmt.Errorf("%s is missing: download it as CoOp's DATASETS.md says (the published fixed split; repro does not make a random one)", path)
		}
		return nil, nil, nil, err
	}
	var raw map[string][][]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w (want {\"train\": [[impath, label, classname], ...], \"val\": ..., \"test\": ...})", path, err)
	}
	conv := func(split string) ([]Datum, error) {
		entries, ok := raw[split]
		if !ok {
			return nil, fmt.Errorf("%s: no %q list", path, split)
		}
		out := make([]Datum, len(entries))
		for i, e := range entries {
			var im, cls string
			var label float64
			if len(e) != 3 || json.Unmarshal(e[0], &im) != nil || json.Unmarshal(e[1], &label) != nil || json.Unmarshal(e[2], &cls) != nil ||
				label != math.Trunc(label) || label < 0 {
				return nil, fmt.Errorf("%s: %s[%d] is not [impath, label, classname] with a label a non-negative integer", path, split, i)
			}
			out[i] = Datum{ImPath: filepath.Join(imageDir, im), Label: int(label), ClassName: cls}
		}
		return out, nil
	}
	if train, err = conv("train"); err != nil {
		return nil, nil, nil, err
	}
	if val, err = conv("val"); err != nil {
		return nil, nil, nil, err
	}
	if test, err = conv("test"); err != nil {
		return nil, nil, nil, err
	}
	return train, val, test, nil
}

// ClassNamesFile is ImageNet.read_classnames: lines "<folder> <class name>",
// in file order.
type ClassNamesFile struct {
	Folders []string
	Names   map[string]string
}

// ReadClassNames reads a classnames.txt (ImageNet's, copied into each
// variant's folder).
func ReadClassNames(path string) (*ClassNamesFile, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%s is missing: CoOp's DATASETS.md links ImageNet's classnames.txt (CLIP's class names); the variants need a copy", path)
		}
		return nil, err
	}
	defer f.Close()
	c := &ClassNamesFile{Names: map[string]string{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		folder, name, ok := strings.Cut(line, " ")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%s:%d: want \"<folder> <class name>\", got %q", path, n, line)
		}
		if _, dup := c.Names[folder]; dup {
			return nil, fmt.Errorf("%s:%d: folder %q listed twice", path, n, folder)
		}
		c.Folders = append(c.Folders, folder)
		c.Names[folder] = strings.TrimSpace(name)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(c.Folders) == 0 {
		return nil, fmt.Errorf("%s: no class names", path)
	}
	return c, nil
}

// listVisible is Dassl's listdir_nohidden: the names in dir not starting
// with ".", here sorted (the official code takes os.listdir's order for
// the images of a class, which the file system decides; sorting makes the
// few-shot draws the same on every machine). dirs picks folders or files.
func listVisible(dir string, dirs bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		isDir := e.IsDir()
		if e.Type()&os.ModeSymlink != 0 {
			st, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			isDir = st.IsDir()
		}
		if isDir == dirs {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// readClassFolders is ImageNet.read_data and the variants': the class
// folders of dir, sorted, labelled 0, 1, ... in that order, each named by
// classnames.txt, with their images.
func readClassFolders(dir string, classes *ClassNamesFile) ([]Datum, error) {
	folders, err := listVisible(dir, true)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w", err)
	}
	if len(folders) == 0 {
		return nil, fmt.Errorf("%s has no class folders", dir)
	}
	var items []Datum
	for label, folder := range folders {
		name, ok := classes.Names[folder]
		if !ok {
			return nil, fmt.Errorf("%s: folder %q has no line in classnames.txt", dir, folder)
		}
		files, err := listVisible(filepath.Join(dir, folder), false)
		if err != nil {
			return nil, fmt.Errorf("image folder: %w", err)
		}
		for _, f := range files {
			items = append(items, Datum{ImPath: filepath.Join(dir, folder, f), Label: label, ClassName: name})
		}
	}
	return items, nil
}

// readImageNetV2 is ImageNetV2.read_data: folders named by the label,
// 0..n-1, the name of label i being classnames.txt's i-th (the official
// code loops over range(1000), the number of lines of ImageNet's file).
func readImageNetV2(dir string, classes *ClassNamesFile) ([]Datum, error) {
	var items []Datum
	for label, folder := range classes.Folders {
		sub := filepath.Join(dir, strconv.Itoa(label))
		files, err := listVisible(sub, false)
		if err != nil {
			return nil, fmt.Errorf("ImageNetV2: %w", err)
		}
		for _, f := range files {
			items = append(items, Datum{ImPath: filepath.Join(sub, f), Label: label, ClassName: classes.Names[folder]})
		}
	}
	return items, nil
}

// readAircraft is FGVCAircraft: variants.txt gives the classes (labels in
// file order), images_variant_{train,val,test}.txt the images, a line
// "<image id> <variant>".
func readAircraft(dir string) (*Dataset, error) {
	b, err := os.ReadFile(filepath.Join(dir, "variants.txt"))
	if err != nil {
		return nil, fmt.Errorf("FGVCAircraft: %w (the data/ folder of fgvc-aircraft-2013b, renamed fgvc_aircraft)", err)
	}
	labels := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if _, dup := labels[l]; !dup {
				labels[l] = len(labels)
			}
		}
	}
	read := func(file string) ([]Datum, error) {
		path := filepath.Join(dir, file)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("FGVCAircraft: %w", err)
		}
		var out []Datum
		for n, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l == "" {
				continue
			}
			id, cls, ok := strings.Cut(l, " ")
			y, known := labels[cls]
			if !ok || !known {
				return nil, fmt.Errorf("%s:%d: want \"<image id> <variant of variants.txt>\", got %q", path, n+1, l)
			}
			out = append(out, Datum{ImPath: filepath.Join(dir, "images", id+".jpg"), Label: y, ClassName: cls})
		}
		return out, nil
	}
	d := &Dataset{Name: "FGVCAircraft"}
	if d.Train, err = read("images_variant_train.txt"); err != nil {
		return nil, err
	}
	if d.Val, err = read("images_variant_val.txt"); err != nil {
		return nil, err
	}
	if d.Test, err = read("images_variant_test.txt"); err != nil {
		return nil, err
	}
	return d, nil
}
