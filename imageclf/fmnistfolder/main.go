// Command fmnistfolder saves Fashion-MNIST as an ImageNet-style image
// folder (train/<class>/*.png, val/<class>/*.png), the input of the
// README's image.classify run:
//
//	go run ./imageclf/fmnistfolder -out runs/fmnist-folder
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/reprolab/repro/imageclf"
)

func main() {
	out := flag.String("out", "runs/fmnist-folder", "the folder to write")
	src := flag.String("src", "", "Fashion-MNIST's folder (default: Debian's dataset-fashion-mnist)")
	trainN := flag.Int("train", 0, "training images to write (0: all 60,000)")
	valN := flag.Int("val", 0, "test images to write as val/ (0: all 10,000)")
	flag.Parse()
	n, err := imageclf.WriteFashionMNISTFolder(*src, *out, *trainN, *valN)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fmnistfolder:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d training and %d validation images\n", *out, n[0], n[1])
}
