package dist

// The cgo flags (libtorch's include and library folders, the backends'
// macros) are in zz_libtorch_generated.go, which scripts/install_libtorch.sh
// writes for the prepared libtorch.

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"encoding/json"
	"errors"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/sugarme/gotch/ts"
)

// cerr turns a shim error (NULL for success) into a Go error and frees it.
func cerr(p *C.char) error {
	if p == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(p))
	return errors.New(C.GoString(p))
}

func ms(d time.Duration) C.int64_t { return C.int64_t(d / time.Millisecond) }

type build struct {
	Gloo    bool              `json:"gloo"`
	NCCL    bool              `json:"nccl"`
	Missing map[string]string `json:"missing"`
}

var readBuild = sync.OnceValue(func() build {
	var b build
	if err := json.Unmarshal([]byte(prepared), &b); err != nil {
		panic("dist: zz_libtorch_generated.go: " + err.Error())
	}
	return b
})

type cgroup = *C.repro_dist_group

func cInit(backend, host string, port int, server bool, prefix string, rank, size int, timeout time.Duration, iface, bindHost string, cudaDevice int) (cgroup, error) {
	cs := func(s string) *C.char { return C.CString(s) }
	cb, ch, cp, ci, cbh := cs(backend), cs(host), cs(prefix), cs(iface), cs(bindHost)
	defer func() {
		for _, p := range []*C.char{cb, ch, cp, ci, cbh} {
			C.free(unsafe.Pointer(p))
		}
	}()
	srv := 0
	if server {
		srv = 1
	}
	var g cgroup
	err := cerr(C.repro_dist_init(cb, ch, C.int(port), C.int(srv), cp, C.int(rank), C.int(size), ms(timeout), ci, cbh, C.int(cudaDevice), &g))
	return g, err
}

// handles are the tensors' C pointers; the tensors must stay reachable
// until the call that uses them returns (runtime.KeepAlive).
func handles(xs []*ts.Tensor) ([]unsafe.Pointer, error) {
	out := make([]unsafe.Pointer, len(xs))
	for i, x := range xs {
		if x == nil {
			return nil, errors.New("nil tensor")
		}
		out[i] = x.Ctensor()
		if out[i] == nil {
			return nil, errors.New("freed tensor")
		}
	}
	return out, nil
}

func cAllReduce(g cgroup, xs []*ts.Tensor, mean bool, timeout time.Duration) error {
	if len(xs) == 0 {
		return nil
	}
	h, err := handles(xs)
	if err != nil {
		return err
	}
	m := 0
	if mean {
		m = 1
	}
	err = cerr(C.repro_dist_allreduce(g, &h[0], C.int(len(h)), C.int(m), ms(timeout)))
	runtime.KeepAlive(xs)
	return err
}

func cBroadcast(g cgroup, xs []*ts.Tensor, root int, timeout time.Duration) error {
	if len(xs) == 0 {
		return nil
	}
	h, err := handles(xs)
	if err != nil {
		return err
	}
	err = cerr(C.repro_dist_broadcast(g, &h[0], C.int(len(h)), C.int(root), ms(timeout)))
	runtime.KeepAlive(xs)
	return err
}

func cAllGather(g cgroup, in, out *ts.Tensor, timeout time.Duration) error {
	h, err := handles([]*ts.Tensor{in, out})
	if err != nil {
		return err
	}
	err = cerr(C.repro_dist_allgather(g, h[0], h[1], ms(timeout)))
	runtime.KeepAlive(in)
	runtime.KeepAlive(out)
	return err
}

func cBarrier(g cgroup, timeout time.Duration) error {
	return cerr(C.repro_dist_barrier(g, ms(timeout)))
}

func cDestroy(g cgroup, broken bool) {
	b := 0
	if broken {
		b = 1
	}
	C.repro_dist_destroy(g, C.int(b))
}
