package imageclf

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"

	"github.com/reprolab/repro/data"
)

// FashionMNISTClasses name Fashion-MNIST's labels as folders: the label's
// digit first, so the folders sort into label order.
var FashionMNISTClasses = []string{"0-tshirt", "1-trouser", "2-pullover", "3-dress", "4-coat", "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-boot"}

// WriteFashionMNISTFolder saves Fashion-MNIST (Debian's package, or dir
// src) as an ImageNet-style folder of grey 28x28 PNGs: out/train/<class>/
// and out/val/<class>/ (the test split), the first trainN and valN images
// of each split (0 for all). It is how the README's image.classify run
// gets a folder to read.
func WriteFashionMNISTFolder(src, out string, trainN, valN int) (written [2]int, err error) {
	for k, split := range []struct{ name, dir string }{{"train", "train"}, {"test", "val"}} {
		im, err := data.FashionMNIST(src, split.name)
		if err != nil {
			return written, err
		}
		n := im.N
		if lim := []int{trainN, valN}[k]; lim > 0 && lim < n {
			n = lim
		}
		for _, c := range FashionMNISTClasses {
			if err := os.MkdirAll(filepath.Join(out, split.dir, c), 0o755); err != nil {
				return written, err
			}
		}
		for i := range n {
			g := image.NewGray(image.Rect(0, 0, im.Cols, im.Rows))
			copy(g.Pix, im.Image(i))
			p := filepath.Join(out, split.dir, FashionMNISTClasses[im.Labels[i]], fmt.Sprintf("%05d.png", i))
			f, err := os.Create(p)
			if err != nil {
				return written, err
			}
			if err := png.Encode(f, g); err != nil {
				f.Close()
				return written, fmt.Errorf("%s: %w", p, err)
			}
			if err := f.Close(); err != nil {
				return written, err
			}
		}
		written[k] = n
	}
	return written, nil
}
