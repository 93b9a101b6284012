package imageclf

import (
	"fmt"
	"image"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/train"
)

// PredictRun classifies new images with a trained image.classify run, as
// `repro predict` does: the run's config.toml and model.json say how, and
// weights (default: its newest checkpoint) load into the model. Inputs are
// image files, folders (searched for .jpg, .jpeg and .png) or CSVs (their
// data.path_column). Each image's k best classes go to out as a TSV row:
// path, then class and probability k times.
func PredictRun(run, weights string, inputs []string, k int, out, log io.Writer) error {
	c := Default()
	if err := config.Load(filepath.Join(run, "config.toml"), c, nil); err != nil {
		return err
	}
	if c.Task != Task.Name {
		return fmt.Errorf("%s: task %q, not %s", run, c.Task, Task.Name)
	}
	dev, err := train.DeviceOf(c.Trainer)
	if err != nil {
		return err
	}
	if weights == "" {
		weights = run
	}
	m, err := Open(weights, OpenOptions{Device: dev, W: log})
	if err != nil {
		return err
	}
	defer m.Close()
	var paths []string
	for _, in := range inputs {
		p, err := imagePaths(in, c.Data.PathColumn)
		if err != nil {
			return err
		}
		paths = append(paths, p...)
	}
	k = min(max(k, 1), len(m.Classes))
	fmt.Fprint(out, "path")
	for i := range k {
		sfx := ""
		if i > 0 {
			sfx = fmt.Sprint(i + 1)
		}
		fmt.Fprintf(out, "\tprediction%s\tprobability%s", sfx, sfx)
	}
	fmt.Fprintln(out)
	for lo := 0; lo < len(paths); lo += c.Data.EvalBatch {
		batch := paths[lo:min(lo+c.Data.EvalBatch, len(paths))]
		imgs := make([]image.Image, len(batch))
		for i, p := range batch {
			if imgs[i], err = decode(p); err != nil {
				return err
			}
		}
		res, err := m.Classify(imgs, k)
		if err != nil {
			return err
		}
		for i, r := range res {
			fmt.Fprint(out, batch[i])
			for _, s := range r {
				fmt.Fprintf(out, "\t%s\t%.4f", s.Label, s.Prob)
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(log, "%d images classified\n", len(paths))
	return nil
}

// imagePaths lists the images an input names: itself, a folder's images
// (sorted, recursively) or a CSV's path column.
func imagePaths(in, pathCol string) ([]string, error) {
	st, err := os.Stat(in)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		var out []string
		err := filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && isImage(p) {
				out = append(out, p)
			}
			return err
		})
		if err == nil && len(out) == 0 {
			err = fmt.Errorf("%s: no .jpg, .jpeg or .png images", in)
		}
		return out, err
	}
	if strings.EqualFold(filepath.Ext(in), ".csv") {
		s, err := readCSV(in, pathCol, pathCol)
		if err != nil {
			return nil, err
		}
		return s.Paths, nil
	}
	return []string{in}, nil
}

func isImage(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".jpg", ".jpeg", ".png":
		return true
	}
	return false
}

func decode(p string) (image.Image, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return data.DecodeImage(f, p, data.ImageFolderOptions{})
}
