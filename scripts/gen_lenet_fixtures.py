"""Reference outputs of LeNet-5 computed by PyTorch, for lenet/tests/reference.rs.

Run by hand (not in CI):

    pip install torch safetensors numpy
    python scripts/gen_lenet_fixtures.py

The weights and the input are not stored: both sides compute them from the same formula
(`pattern` below, mirrored in the Rust test), so the fixture holds only the logits and a few
gradients (a few KB). For each variant (relu/avg, tanh/avg, relu/max) it stores the eval-mode
logits of a batch of 3 images and the gradients of the mean cross-entropy w.r.t. `conv1.weight`,
`conv2.bias` and `fc3.weight`.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "lenet", "tests", "fixtures", "lenet5.safetensors")


def pattern(shape, index, scale):
    """scale * sin(0.37 * i + index) over the flattened tensor, in float64 then float32."""
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.float64)
    return (scale * torch.sin(0.37 * i + index)).reshape(shape).to(torch.float32)


class LeNet5(nn.Module):
    def __init__(self, act, pool):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.act = act
        self.pool = pool

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)), 2)
        x = self.pool(self.act(self.conv2(x)), 2)
        x = x.flatten(1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


def main():
    variants = {
        "lenet5": (F.relu, F.avg_pool2d),
        "lenet5_tanh": (torch.tanh, F.avg_pool2d),
        "lenet5_max": (F.relu, F.max_pool2d),
    }
    x = pattern((3, 1, 32, 32), 0.5, 1.0)
    targets = torch.tensor([3, 7, 1])
    out = {}
    for name, (act, pool) in variants.items():
        model = LeNet5(act, pool)
        with torch.no_grad():
            for j, (key, p) in enumerate(sorted(model.state_dict().items())):
                fan_in = p.shape[1] * (p[0].numel() // p.shape[1]) if p.dim() > 1 else 10
                p.copy_(pattern(tuple(p.shape), j, 1.0 / math.sqrt(fan_in)))
        model.eval()
        logits = model(x)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        out[f"{name}.logits"] = logits.detach().contiguous()
        out[f"{name}.grad.conv1.weight"] = model.conv1.weight.grad.contiguous()
        out[f"{name}.grad.conv2.bias"] = model.conv2.bias.grad.contiguous()
        out[f"{name}.grad.fc3.weight"] = model.fc3.weight.grad.contiguous()
    save_file(out, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
