#!/usr/bin/env python3
"""torchrun, with its rendezvous stores made without libuv.

PyTorch 2.4 and later make torchrun's TCPStore with libuv whatever USE_LIBUV says, and Debian 13's
python3-torch 2.6 is built without libuv, so its own torchrun stops at the rendezvous ("use_libuv
was requested but PyTorch was build without libuv support"). This runs torch.distributed.run's main
with those stores made by the classic backend, which every build has; everything else is torchrun.
repro's ranks need nothing from it (dist falls back by itself), so on a PyTorch with libuv plain
torchrun does the same:

    python3 scripts/torchrun.py --nnodes 1 --nproc-per-node 2 --master-addr 127.0.0.1 \
        --master-port 29500 --no-python ./repro train configs/basics/mlp.toml
"""
import sys

import torch.distributed as dist
import torch.distributed.elastic.rendezvous.c10d_rendezvous_backend as c10d_backend
import torch.distributed.elastic.rendezvous.static_tcp_rendezvous as static_backend
from torch.distributed.run import main

_store = dist.TCPStore


def store_without_libuv(*args, **kwargs):
    kwargs["use_libuv"] = False
    return _store(*args, **kwargs)


static_backend.TCPStore = store_without_libuv
c10d_backend.TCPStore = store_without_libuv

if __name__ == "__main__":
    sys.exit(main())
