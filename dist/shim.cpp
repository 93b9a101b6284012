// C++ side of package dist: libtorch's c10d (TCPStore, ProcessGroupGloo,
// ProcessGroupNCCL) behind the C interface of shim.h. Every entry point
// catches every exception and returns it as a malloc'd message.
//
// The macros come from zz_libtorch_generated.go, which scripts/install_libtorch.sh
// writes for the prepared libtorch: REPRO_DIST_PREPARED always,
// REPRO_DIST_GLOO (with USE_C10D_GLOO) when gloo's headers were found,
// REPRO_DIST_NCCL (with USE_C10D_NCCL) when the libtorch has CUDA and
// ProcessGroupNCCL compiled against it, or REPRO_DIST_DISABLED when this
// libtorch has no usable c10d (the generated Go file says why).

#ifndef REPRO_DIST_PREPARED
#error "package dist is not prepared for this libtorch: run scripts/install_libtorch.sh, which writes dist/zz_libtorch_generated.go"
#endif

#include "shim.h"

#ifdef REPRO_DIST_DISABLED

// This libtorch was built without c10d (or its headers do not compile):
// every entry point says so.
#include <cstdlib>
#include <cstring>

static char *repro_dist_disabled(void) {
  const char *msg = "this build of repro has no distributed backend (see repro info)";
  char *out = static_cast<char *>(std::malloc(std::strlen(msg) + 1));
  if (out != nullptr) std::strcpy(out, msg);
  return out;
}

extern "C" {
int repro_dist_backends(void) { return 0; }
char *repro_dist_init(const char *, const char *, int, int, const char *, int, int, int64_t, const char *,
                      const char *, int, repro_dist_group **out) {
  *out = nullptr;
  return repro_dist_disabled();
}
char *repro_dist_allreduce(repro_dist_group *, void **, int, int, int64_t) { return repro_dist_disabled(); }
char *repro_dist_broadcast(repro_dist_group *, void **, int, int, int64_t) { return repro_dist_disabled(); }
char *repro_dist_allgather(repro_dist_group *, void *, void *, int64_t) { return repro_dist_disabled(); }
char *repro_dist_barrier(repro_dist_group *, int64_t) { return repro_dist_disabled(); }
void repro_dist_destroy(repro_dist_group *, int) {}
}

#else  // REPRO_DIST_DISABLED

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#ifdef REPRO_DIST_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef REPRO_DIST_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

struct repro_dist_group {
  c10::intrusive_ptr<c10d::Store> store;
#ifdef REPRO_DIST_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef REPRO_DIST_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
  int cuda_device = -1;
#endif
  int rank = 0;
  int size = 0;
};

namespace {

char *dup_error(const std::string &what, const std::string &msg) {
  std::string s = what + ": " + msg;
  // c10 errors end in a newline or carry "Exception raised from ..." lines.
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  char *out = static_cast<char *>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

// guarded runs fn, turning any exception into an error message.
// what is read when an exception is caught, so a caller may update it
// between stages.
template <class F>
char *guarded(const std::string &what, F &&fn) {
  try {
    fn();
    return nullptr;
  } catch (const std::invalid_argument &e) {
    // Raised only before any communication: the group is still usable.
    return dup_error(what, std::string("invalid argument: ") + e.what());
  } catch (const c10::Error &e) {
    return dup_error(what, e.what_without_backtrace());
  } catch (const std::exception &e) {
    return dup_error(what, e.what());
  } catch (...) {
    return dup_error(what, "unknown C++ exception");
  }
}

std::chrono::milliseconds ms(int64_t v) { return std::chrono::milliseconds(v); }

// Work::wait with a timeout slightly longer than the collective's own, so
// that a peer's failure is reported by the backend (with its address)
// rather than by the generic "Operation timed out!". A Work keeps its
// tensors alive (at::Tensor is reference counted), so returning on a
// timeout never leaves the backend writing into freed memory.
template <class W>
void wait_work(W &work, int64_t timeout_ms) {
  int64_t slack = std::max<int64_t>(timeout_ms / 10, 5000);
  if (!work->wait(ms(timeout_ms + slack))) {
    throw std::runtime_error("the collective did not complete");
  }
}

template <class F>
void with_pg(repro_dist_group *g, F &&fn) {
#ifdef REPRO_DIST_GLOO
  if (g->gloo) {
    fn(*g->gloo);
    return;
  }
#endif
#ifdef REPRO_DIST_NCCL
  if (g->nccl) {
    fn(*g->nccl);
    return;
  }
#endif
  throw std::runtime_error("the group has no process group (closed?)");
}

at::Tensor *as_tensor(void *p) {
  if (p == nullptr) throw std::invalid_argument("nil tensor");
  auto *t = static_cast<at::Tensor *>(p);
  if (!t->defined()) throw std::invalid_argument("undefined tensor");
  if (t->is_sparse()) throw std::invalid_argument("sparse tensors are not supported");
  return t;
}

// groups splits tensors by dtype and device, in order of first appearance,
// so that each group travels as one flat buffer in one collective. Every
// rank passes the same list, so every rank makes the same groups.
std::vector<std::vector<at::Tensor *>> groups(void **tensors, int n) {
  std::vector<std::vector<at::Tensor *>> out;
  std::vector<std::pair<at::ScalarType, at::Device>> keys;
  for (int i = 0; i < n; i++) {
    at::Tensor *t = as_tensor(tensors[i]);
    std::pair<at::ScalarType, at::Device> k{t->scalar_type(), t->device()};
    size_t j = 0;
    while (j < keys.size() && keys[j] != k) j++;
    if (j == keys.size()) {
      keys.push_back(k);
      out.emplace_back();
    }
    out[j].push_back(t);
  }
  return out;
}

// flat is one group's tensors as one contiguous 1-D buffer: the tensor
// itself when the group is one contiguous tensor (the collective then works
// in place), a concatenated copy otherwise (copied back by unflatten).
at::Tensor flat(const std::vector<at::Tensor *> &g, bool &inplace) {
  inplace = g.size() == 1 && g[0]->is_contiguous();
  if (inplace) return *g[0];
  std::vector<at::Tensor> parts;
  parts.reserve(g.size());
  for (auto *t : g) parts.push_back(t->reshape({-1}));
  return at::cat(parts);
}

void unflatten(const at::Tensor &buf, const std::vector<at::Tensor *> &g) {
  int64_t off = 0;
  for (auto *t : g) {
    int64_t n = t->numel();
    t->copy_(buf.narrow(0, off, n).view(t->sizes()));
    off += n;
  }
}

// without_libuv turns off TCPStoreOptions::useLibUV where the options have
// it (libtorch 2.2 and later; 1.13.1's do not) and says whether it did.
template <typename O>
auto without_libuv(O &o, int) -> decltype(o.useLibUV = false, bool()) {
  bool was = o.useLibUV;
  o.useLibUV = false;
  return was;
}
template <typename O>
bool without_libuv(O &, long) { return false; }

}  // namespace

extern "C" {

int repro_dist_backends(void) {
  int b = 0;
#ifdef REPRO_DIST_GLOO
  b |= 1;
#endif
#ifdef REPRO_DIST_NCCL
  b |= 2;
#endif
  return b;
}

char *repro_dist_init(const char *backend, const char *host, int port, int is_server,
                      const char *prefix, int rank, int size, int64_t timeout_ms,
                      const char *iface, const char *bind_host, int cuda_device,
                      repro_dist_group **out) {
  *out = nullptr;
  std::string be = backend ? backend : "";
  auto *g = new repro_dist_group();
  g->rank = rank;
  g->size = size;
  std::string stage = "rendezvous at " + std::string(host) + ":" + std::to_string(port);
  char *err = guarded(stage, [&] {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = is_server != 0;
    so.numWorkers = size;
    // The process group's own rendezvous waits for every rank (within the
    // timeout), so the store does not wait for its workers too.
    so.waitWorkers = false;
    so.timeout = ms(timeout_ms);
    c10::intrusive_ptr<c10d::TCPStore> tcp;
    try {
      tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    } catch (const std::exception &e) {
      // libtorch 2.4 and later ask for the libuv store by default, and a
      // build without libuv (Debian 13's 2.6) refuses it; the classic
      // store is what those builds have.
      if (std::string(e.what()).find("libuv") == std::string::npos || !without_libuv(so, 0)) throw;
      tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    }
    g->store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    if (be == "gloo") {
#ifdef REPRO_DIST_GLOO
      stage = "creating the gloo process group, which waits " + std::to_string(timeout_ms) + " ms for all " +
              std::to_string(size) + " ranks to join at " + host + ":" + std::to_string(port);
      auto opts = c10d::ProcessGroupGloo::Options::create(ms(timeout_ms));
      if (iface != nullptr && *iface) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      } else if (bind_host != nullptr && *bind_host) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind_host));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      opts->threads = 2;
      g->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, size, opts);
#else
      throw std::runtime_error("this build has no gloo backend (gloo's headers were not found when scripts/install_libtorch.sh ran)");
#endif
    } else if (be == "nccl") {
#ifdef REPRO_DIST_NCCL
      stage = "creating the nccl process group, which waits " + std::to_string(timeout_ms) + " ms for all " +
              std::to_string(size) + " ranks to join at " + host + ":" + std::to_string(port);
      // Blocking wait makes Work::wait honour the timeout on the host, so a
      // dead peer ends in an error rather than a hang.
      setenv("NCCL_BLOCKING_WAIT", "1", 0);
      setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
      if (cuda_device >= 0) c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
      g->cuda_device = cuda_device;
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = ms(timeout_ms);
      g->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, rank, size, opts);
#else
      throw std::runtime_error("this build has no nccl backend (the prepared libtorch has no CUDA, or ProcessGroupNCCL did not compile against it)");
#endif
    } else {
      throw std::invalid_argument("unknown backend \"" + be + "\" (gloo or nccl)");
    }
  });
  if (err != nullptr) {
    // A half-made group is leaked rather than destroyed: its store server
    // may be serving peers that are still connecting.
    return err;
  }
  *out = g;
  return nullptr;
}

char *repro_dist_allreduce(repro_dist_group *g, void **tensors, int n, int mean, int64_t timeout_ms) {
  return guarded(mean ? "allreduce (mean)" : "allreduce (sum)", [&] {
    at::NoGradGuard no_grad;
    auto gs = groups(tensors, n);
    if (mean) {
      for (auto &grp : gs) {
        if (!at::isFloatingType(grp[0]->scalar_type()) && !at::isComplexType(grp[0]->scalar_type())) {
          throw std::invalid_argument(std::string("the mean of ") + c10::toString(grp[0]->scalar_type()) + " tensors is not defined; use the sum");
        }
      }
    }
    for (auto &grp : gs) {
      bool inplace = false;
      at::Tensor buf = flat(grp, inplace);
      std::vector<at::Tensor> v{buf};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      o.timeout = ms(timeout_ms);
      with_pg(g, [&](auto &pg) {
        auto work = pg.allreduce(v, o);
        wait_work(work, timeout_ms);
      });
      if (mean) buf.div_(g->size);
      if (!inplace) unflatten(buf, grp);
    }
  });
}

char *repro_dist_broadcast(repro_dist_group *g, void **tensors, int n, int root, int64_t timeout_ms) {
  return guarded("broadcast", [&] {
    at::NoGradGuard no_grad;
    if (root < 0 || root >= g->size) {
      throw std::invalid_argument("root " + std::to_string(root) + " is not a rank of a group of " + std::to_string(g->size));
    }
    for (auto &grp : groups(tensors, n)) {
      bool inplace = false;
      at::Tensor buf = flat(grp, inplace);
      std::vector<at::Tensor> v{buf};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      o.rootTensor = 0;
      o.timeout = ms(timeout_ms);
      with_pg(g, [&](auto &pg) {
        auto work = pg.broadcast(v, o);
        wait_work(work, timeout_ms);
      });
      if (!inplace && g->rank != root) unflatten(buf, grp);
    }
  });
}

char *repro_dist_allgather(repro_dist_group *g, void *input, void *out, int64_t timeout_ms) {
  return guarded("allgather", [&] {
    at::NoGradGuard no_grad;
    at::Tensor in = as_tensor(input)->contiguous();
    at::Tensor *o = as_tensor(out);
    if (o->dim() != in.dim() + 1 || o->size(0) != g->size || o->scalar_type() != in.scalar_type() ||
        o->device() != in.device()) {
      throw std::invalid_argument("the output must have shape [size, input's shape...] and the input's dtype and device");
    }
    for (int64_t d = 0; d < in.dim(); d++) {
      if (o->size(d + 1) != in.size(d)) throw std::invalid_argument("the output's shape does not match the input's");
    }
    bool direct = o->is_contiguous();
    at::Tensor dst = direct ? *o : at::empty(o->sizes(), o->options());
    std::vector<std::vector<at::Tensor>> outs(1);
    for (int r = 0; r < g->size; r++) outs[0].push_back(dst.select(0, r));
    std::vector<at::Tensor> ins{in};
    c10d::AllgatherOptions opt;
    opt.timeout = ms(timeout_ms);
    with_pg(g, [&](auto &pg) {
      auto work = pg.allgather(outs, ins, opt);
      wait_work(work, timeout_ms);
    });
    if (!direct) o->copy_(dst);
  });
}

char *repro_dist_barrier(repro_dist_group *g, int64_t timeout_ms) {
  return guarded("barrier", [&] {
    c10d::BarrierOptions o;
    o.timeout = ms(timeout_ms);
#ifdef REPRO_DIST_NCCL
    if (g->nccl && g->cuda_device >= 0) o.device_ids = {g->cuda_device};
#endif
    with_pg(g, [&](auto &pg) {
      auto work = pg.barrier(o);
      wait_work(work, timeout_ms);
    });
  });
}

void repro_dist_destroy(repro_dist_group *g, int broken) {
  if (g == nullptr || broken) return;
  try {
    delete g;
  } catch (...) {
  }
}

}  // extern "C"

#endif  // REPRO_DIST_DISABLED
