// Package dist runs collectives across processes on libtorch's c10d, the
// engine torch.distributed uses: a TCPStore for the rendezvous,
// ProcessGroupGloo for CPU tensors and ProcessGroupNCCL for CUDA tensors
// where the prepared libtorch has it. train builds data-parallel training
// on it (train/distributed.go).
//
//	g, err := dist.Init(dist.Options{}) // torchrun's environment
//	if err != nil { ... }
//	defer g.Close()
//	err = g.AllReduceMean(grads)         // in place, every rank the same list
//
// # Launching
//
// Every rank runs the same program with torchrun's variables: RANK (0..N-1),
// WORLD_SIZE (N), LOCAL_RANK (the rank on its machine; the GPU under NCCL),
// MASTER_ADDR and MASTER_PORT (where rank 0 serves the TCPStore). Options
// left zero are read from them (FromEnv), with GLOO_SOCKET_IFNAME (the
// network interface Gloo binds), REPRO_DIST_TIMEOUT (a Go duration bounding
// the rendezvous and every collective; default 30m, torch's) and, from
// torchrun 2.x, TORCHELASTIC_USE_AGENT_STORE (the launcher serves the store:
// every rank is a client) and TORCHELASTIC_RESTART_COUNT (the store keys'
// namespace).
//
// On one machine, scripts/launch_local.sh N CONFIG starts N ranks of
// `repro train`, as `torchrun --standalone --nproc-per-node N` does.
// torchrun itself (torchrun --standalone --nproc-per-node N --no-python
// ./repro train CONFIG) sets the same variables, but has not been tried:
// Debian 12's torchrun 1.13 fails under Python 3.11 before it starts any
// worker. On two machines, 10.0.0.1 (ranks 0 and 1) and 10.0.0.2 (ranks 2
// and 3), with the run directory on a file system both see:
//
//	# on 10.0.0.1
//	for r in 0 1; do RANK=$r LOCAL_RANK=$r WORLD_SIZE=4 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 \
//	  GLOO_SOCKET_IFNAME=eth0 ./repro train -out /shared/runs/mae CONFIG & done; wait
//	# on 10.0.0.2
//	for r in 2 3; do RANK=$r LOCAL_RANK=$((r-2)) WORLD_SIZE=4 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 \
//	  GLOO_SOCKET_IFNAME=eth0 ./repro train -out /shared/runs/mae CONFIG & done; wait
//
// (or torchrun --nnodes 2 --nproc-per-node 2 --node-rank {0,1} --master-addr
// 10.0.0.1 --master-port 29500 --no-python ./repro train ... on each). Only
// rank 0 writes the run directory; every rank reads its checkpoints when
// resuming, hence the shared file system (or a copy at the same path).
//
// # Semantics
//
//   - Collectives must be called by every rank in the same order with
//     tensors of the same shapes and dtypes. Tensors of one dtype travel
//     flattened in one collective (a list of many small gradients costs one
//     round trip); train groups gradients into about 25 MB buckets.
//   - Each collective is bounded by the timeout. A peer that dies makes the
//     others' next collective fail, at once when its sockets close (Gloo:
//     "Connection closed by peer"), else within the timeout; the group is
//     then broken, and every later call returns that error. A rank that
//     cannot reach the store fails with the address it tried; a peer that
//     never joins makes Init fail within the timeout.
//   - Calls refused for their arguments (a nil tensor, the mean of an
//     integer tensor, a root out of range) communicate nothing and leave the
//     group usable. Errors never crash: the C++ shim catches every
//     exception.
//   - Close frees the group. A broken group's C side is deliberately leaked:
//     its threads may still be waiting on a dead peer, and the process is
//     expected to exit.
//
// # Build
//
// The C++ shim (shim.cpp) compiles with cgo against the libtorch
// third_party/gotch was prepared for. Its flags are in
// zz_libtorch_generated.go (git-ignored), which scripts/install_libtorch.sh
// writes by running dist/internal/prepare after preparing gotch; rerun the
// script after changing libtorch. That program decides what the build has:
//
//   - Gloo when libtorch_cpu exports ProcessGroupGloo and gloo's headers are
//     found (ProcessGroupGloo.hpp includes them; Debian's libtorch-dev does
//     not ship them, libgloo-dev does, and the install script installs it;
//     for a LIBTORCH directory, its own include/ or GLOO_INCLUDE_DIR).
//   - NCCL when the libtorch has CUDA, libtorch_cuda exports
//     ProcessGroupNCCL and ProcessGroupNCCL.hpp compiles (with CUDA's and
//     NCCL's headers from CUDA_HOME, NCCL_INCLUDE_DIR or a PyTorch install's
//     nvidia/*/include). The NCCL path has not been run: the machine it was
//     written on has neither a GPU nor a CUDA libtorch.
//   - Neither, for a libtorch built without distributed support: every call
//     then returns an error saying so, and the rest of repro builds as ever.
//
// Backends reports the outcome (for repro info).
package dist
