// Command gotchprep prepares third_party/gotch for one libtorch. It is run by
// scripts/install_libtorch.sh, which installs system packages first; run it
// directly only to re-prepare the copy.
//
//	go run ./internal/cmd/gotchprep [-libtorch DIR] [-source GOTCH_MODULE_DIR] [-dest third_party/gotch]
//
// With no -libtorch, Debian's libtorch-dev is used.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/reprolab/repro/internal/gotchprep"
)

func main() {
	libtorch := flag.String("libtorch", "", "libtorch directory (unpacked zip or PyTorch's torch/ folder); empty for Debian's libtorch-dev")
	source := flag.String("source", "", "gotch module directory to copy pristine files from (only needed once)")
	dest := flag.String("dest", "third_party/gotch", "the prepared copy")
	flag.Parse()

	var lt *gotchprep.Libtorch
	var err error
	if *libtorch != "" {
		lt, err = gotchprep.DetectDir(*libtorch)
	} else {
		lt, err = gotchprep.DetectSystem()
	}
	if err != nil {
		fail(err)
	}
	res, err := gotchprep.Prepare(gotchprep.Options{
		Dest: *dest, Source: *source, Libtorch: lt,
		Check: gotchprep.GXXChecker, Patches: gotchprep.Patches, Log: os.Stdout,
	})
	if err != nil {
		fail(err)
	}
	m := res.Manifest
	state := "prepared"
	if res.Unchanged {
		state = "already prepared, nothing changed"
	}
	fmt.Printf("gotch %s in %s: %s for libtorch %s (%s, C++11 ABI %d, from %s); patches: %s; %d ops stubbed\n",
		m.Gotch, *dest, state, m.Libtorch.Version, m.Device, m.Libtorch.CXX11ABI, m.Libtorch.VersionSource, strings.Join(m.Patches, ", "), len(m.Stubbed))
	if len(m.Stubbed) > 0 && !res.Unchanged {
		fmt.Printf("stubbed (calling one returns an error naming it): %s\n", strings.Join(m.Stubbed, " "))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gotchprep:", err)
	os.Exit(1)
}
