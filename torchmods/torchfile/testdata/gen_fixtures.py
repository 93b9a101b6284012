"""Makes torchfile's fixtures with Debian's python3-torch 1.13.1:
    /usr/bin/python3 torchmods/torchfile/testdata/gen_fixtures.py

- checkpoint.pt: a nested checkpoint as training scripts save it ({"model": state_dict, "epoch": 3,
  "args": {...}}), with float32/float16/bfloat16/int64/bool tensors, a transposed view, a view with
  a storage offset, two tensors sharing one storage, and an empty tensor;
- checkpoint_expected.safetensors: the same tensors, contiguous, named as torchfile flattens them;
- hostile.pt: a torch.save file whose pickle calls os.system when loaded with pickle.
"""
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "testdata"))
import st_write  # noqa: E402

torch.manual_seed(7)
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
model = {
    "fc.weight": torch.randn(3, 5),
    "fc.bias": torch.randn(3),
    "half": torch.randn(2, 3).half(),
    "bf16": torch.randn(4).bfloat16(),
    "steps": torch.tensor([1, -2, 3**30], dtype=torch.int64),
    "mask": torch.tensor([True, False, True]),
    "transposed": base.t(),               # non-contiguous
    "window": base[1:3, 2:5],             # offset into a shared storage
    "row": base[3],                       # the same storage again
    "empty": torch.zeros(0, 4),
    "scalar": torch.tensor(2.5),
}
torch.save({"model": model, "epoch": 3, "args": {"lr": 1e-3}}, os.path.join(here, "checkpoint.pt"))
st_write.write(os.path.join(here, "checkpoint_expected.safetensors"),
               {"model." + k: v for k, v in model.items()})


class Pwn:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/repro-hostile-pickle-ran",))


torch.save({"weight": torch.ones(1), "payload": Pwn()}, os.path.join(here, "hostile.pt"))
print("wrote checkpoint.pt, checkpoint_expected.safetensors, hostile.pt")


class Scripted(torch.nn.Module):  # torch.jit.save'd, as OpenAI's CLIP ships its weights
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.ln = torch.nn.LayerNorm(2)
        self.register_buffer("buf", torch.arange(4.0))

    def forward(self, x):
        return self.ln(self.fc(x)) + self.buf[:2]


scripted = torch.jit.script(Scripted())
scripted.save(os.path.join(here, "scripted.pt"))
st_write.write(os.path.join(here, "scripted_expected.safetensors"), dict(scripted.state_dict()))
print("wrote scripted.pt, scripted_expected.safetensors")
