// Command opcost takes gotch's small-op path apart: it times, per call, each
// layer that a Go `c := a.MustAdd(b, false); c.MustDrop()` adds on top of
// libtorch, from a bare cgo call up to the full op in a scope, so that
// BENCHMARKS.md can say where the small op's time goes. Each line is the
// fastest of REPS repetitions of N calls (the fastest, not the median,
// because on a shared machine the other jobs only ever add time).
//
//	go run ./bench/opcost [-n 20000] [-reps 15]
//
// bench/torch_bench.py --workload smallop is PyTorch's side of the full op.
package main

/*
static void repro_noop(void) {}
*/
import "C"

import (
	"flag"
	"fmt"
	"time"

	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

func main() {
	n := flag.Int("n", 20000, "calls per repetition")
	reps := flag.Int("reps", 15, "repetitions; the fastest is reported")
	flag.Parse()
	ts.SetNumThreads(1)

	a := ts.MustOnes([]int64{16}, gotch.Float, gotch.CPU)
	b := ts.MustOnes([]int64{16}, gotch.Float, gotch.CPU)
	out := ts.MustZeros([]int64{16}, gotch.Float, gotch.CPU)
	ca, cb, cout := lib.Ctensor(a.Ctensor()), lib.Ctensor(b.Ctensor()), lib.Ctensor(out.Ctensor())
	buf := new([8]lib.Ctensor)

	best := func(run func(int)) float64 {
		run(*n) // warm-up
		m := 0.0
		for i := 0; i < *reps; i++ {
			start := time.Now()
			run(*n)
			if s := time.Since(start).Seconds() / float64(*n); i == 0 || s < m {
				m = s
			}
		}
		return m * 1e9
	}
	rows := []struct {
		name string
		run  func(int)
	}{
		{"cgo call to an empty C function", func(k int) {
			for range k {
				C.repro_noop()
			}
		}},
		{"read libtorch's last error (the check after every op)", func(k int) {
			for range k {
				lib.GetAndResetLastErr()
			}
		}},
		{"at::add_out into an existing tensor (no allocation)", func(k int) {
			for range k {
				lib.AtgAddOut(&buf[0], cout, ca, cb)
				lib.AtFree(buf[0]) // the returned handle (a new reference to out)
			}
		}},
		{"at::add + free, bare C API (2 cgo calls)", func(k int) {
			for range k {
				lib.AtgAdd(&buf[0], ca, cb)
				lib.AtFree(buf[0])
			}
		}},
		{"  + the error check", func(k int) {
			for range k {
				lib.AtgAdd(&buf[0], ca, cb)
				if p := lib.GetAndResetLastErr(); p != nil {
					panic("add failed")
				}
				lib.AtFree(buf[0])
			}
		}},
		{"gotch Add + Drop, no scope (finalizer, byte count)", func(k int) {
			for range k {
				c, err := a.Add(b, false)
				if err != nil {
					panic(err)
				}
				c.MustDrop()
			}
		}},
		{"gotch MustAdd in a scope, freed by Close (per op)", func(k int) {
			s := ts.NewScope()
			for i := range k {
				a.MustAdd(b, false)
				if i%1000 == 999 {
					s.Close()
					s = ts.NewScope()
				}
			}
			s.Close()
		}},
		{"gotch MustAdd + MustDrop in a scope", func(k int) {
			s := ts.NewScope()
			for range k {
				a.MustAdd(b, false).MustDrop()
			}
			s.Close()
		}},
	}
	fmt.Printf("%-58s %10s\n", "layer", "ns per call")
	for _, r := range rows {
		fmt.Printf("%-58s %10.0f\n", r.name, best(r.run))
	}
}
