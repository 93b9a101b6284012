package torchinfo

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <string.h>

// at_get_num_threads and friends are defined in gotch's libtch (torch_api.cpp),
// which every binary that imports gotch links; gotch has no Go wrapper for them.
int at_get_num_threads();
int at_get_num_interop_threads();

typedef int (*cu_init_fn)(unsigned int);
typedef int (*cu_count_fn)(int *);
typedef int (*cu_get_fn)(int *, int);
typedef int (*cu_name_fn)(char *, int, int);

// repro_cuda_names writes the names of the CUDA devices the driver sees into
// buf, one per line. It asks the driver library directly so that it needs no
// CUDA headers and works whatever libtorch was linked. It returns the number
// of devices, or -1 when no driver library is present, -2 when the driver
// refuses to start (no device, or a broken install).
static int repro_cuda_names(char *buf, int buflen) {
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) return -1;
	cu_init_fn init = (cu_init_fn)dlsym(h, "cuInit");
	cu_count_fn count = (cu_count_fn)dlsym(h, "cuDeviceGetCount");
	cu_get_fn get = (cu_get_fn)dlsym(h, "cuDeviceGet");
	cu_name_fn name = (cu_name_fn)dlsym(h, "cuDeviceGetName");
	if (!init || !count || !get || !name || init(0) != 0) return -2;
	int n = 0;
	if (count(&n) != 0) return -2;
	buf[0] = 0;
	for (int i = 0; i < n; i++) {
		int dev;
		char one[256];
		if (get(&dev, i) != 0 || name(one, sizeof one, dev) != 0) strcpy(one, "(unnamed)");
		if ((int)(strlen(buf) + strlen(one) + 2) < buflen) {
			strcat(buf, one);
			strcat(buf, "\n");
		}
	}
	return n;
}
*/
import "C"

import (
	"strings"
	"unsafe"
)

// gpuNames lists the CUDA devices the driver reports, and why there are
// none when there are none.
func gpuNames() (names []string, why string) {
	buf := make([]byte, 4096)
	n := C.repro_cuda_names((*C.char)(unsafe.Pointer(&buf[0])), C.int(len(buf)))
	switch {
	case n == -1:
		return nil, "no NVIDIA driver (libcuda.so.1 not found)"
	case n == -2:
		return nil, "the NVIDIA driver did not start (no usable GPU)"
	case n == 0:
		return nil, "the driver sees no GPU"
	}
	s := C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n"), ""
}

func threads() (intra, interop int) {
	return int(C.at_get_num_threads()), int(C.at_get_num_interop_threads())
}
