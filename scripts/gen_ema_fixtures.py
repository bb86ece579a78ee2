"""Reference trajectory of timm's weight EMA (`timm.utils.ModelEmaV3`, the class timm 1.0's
train.py builds for --model-ema and updates with `model_ema.update(model, step=num_updates)`
after each optimizer update) for trainer/tests/ema.rs.

Rerun (from the repository root):

    pip install torch timm safetensors && python scripts/gen_ema_fixtures.py

It writes trainer/tests/fixtures/ema.safetensors (a few KiB). A small model (Linear(4, 3),
BatchNorm1d(3): parameters and the running statistics as buffers) is given a seeded sequence of
weights, as an optimizer would; after each one the EMA is updated with step = 1, 2, ... .
Stored, float32:

    model/{k}/{name}   the model's state after update k (1-based), float entries only
    ema/{k}/{name}     the EMA's state after ema.update(model, step=k)
    meta/decay         float64 [1]; meta/steps int64 [1]

`num_batches_tracked` (an integer, copied by timm) is left out: our variables are float.
"""
import os

import torch
from safetensors.torch import save_file
from timm.utils import ModelEmaV3

DECAY = 0.9
STEPS = 6


def main():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ema = ModelEmaV3(model, decay=DECAY)
    out = {
        "meta/decay": torch.tensor([DECAY], dtype=torch.float64),
        "meta/steps": torch.tensor([STEPS], dtype=torch.int64),
    }
    for step in range(1, STEPS + 1):
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if value.is_floating_point():
                    value.copy_(torch.randn_like(value) + (1.0 if "running_var" in name else 0.0))
        ema.update(model, step=step)
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                out[f"model/{step}/{name}"] = value.detach().clone().contiguous()
        for name, value in ema.module.state_dict().items():
            if value.is_floating_point():
                out[f"ema/{step}/{name}"] = value.detach().clone().contiguous()
    path = os.path.join(os.path.dirname(__file__), "..", "trainer", "tests", "fixtures", "ema.safetensors")
    save_file(out, path)
    print(f"wrote {len(out)} tensors to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
