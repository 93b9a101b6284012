// C interface to libtorch's c10d for package dist. Every function that can
// fail returns NULL on success or an error message the caller frees with
// free(); no C++ exception crosses this interface.
#ifndef REPRO_DIST_SHIM_H
#define REPRO_DIST_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct repro_dist_group repro_dist_group;

// repro_dist_backends says which backends this build compiled:
// bit 0 Gloo, bit 1 NCCL.
int repro_dist_backends(void);

// repro_dist_init creates a TCPStore (the server when is_server, else a
// client of host:port) and on it a process group of the backend ("gloo" or
// "nccl"). prefix namespaces the group's store keys. For Gloo, iface names
// a network interface to bind, else bind_host an address or hostname, else
// libtorch picks (this machine's hostname, or loopback). For NCCL,
// cuda_device is the device the group's collectives run on.
char *repro_dist_init(const char *backend, const char *host, int port, int is_server,
                      const char *prefix, int rank, int size, int64_t timeout_ms,
                      const char *iface, const char *bind_host, int cuda_device,
                      repro_dist_group **out);

// repro_dist_allreduce sums tensors across ranks, in place; with mean it
// then divides by the world size. Tensors of one dtype and device travel
// flattened together in one collective.
char *repro_dist_allreduce(repro_dist_group *g, void **tensors, int n, int mean, int64_t timeout_ms);

// repro_dist_broadcast copies root's tensors into every rank's, in place.
char *repro_dist_broadcast(repro_dist_group *g, void **tensors, int n, int root, int64_t timeout_ms);

// repro_dist_allgather writes rank r's input into out[r]; out has shape
// [size, input's shape...], input's dtype and device.
char *repro_dist_allgather(repro_dist_group *g, void *input, void *out, int64_t timeout_ms);

// repro_dist_barrier returns when every rank has reached it.
char *repro_dist_barrier(repro_dist_group *g, int64_t timeout_ms);

// repro_dist_destroy frees the group and its store. A group whose last
// collective failed is leaked instead: its worker threads may still be
// blocked on a dead peer, and destroying it would wait for them.
void repro_dist_destroy(repro_dist_group *g, int broken);

#ifdef __cplusplus
}
#endif

#endif
