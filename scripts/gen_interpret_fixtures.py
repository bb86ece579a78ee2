"""Reference fixtures for the `interpret` crate (Grad-CAM, Grad-CAM++, guided backpropagation
and the deconvnet), computed with the real libraries: torch, torchvision and PyPI's `grad-cam`
(module `pytorch_grad_cam`). Run by hand (not in CI); deterministic:

    pip install torch torchvision grad-cam safetensors numpy
    python scripts/gen_interpret_fixtures.py

Writes into `interpret/tests/fixtures/`:

* `lenet.safetensors`: LeNet-5 weights (torch.manual_seed(0) default init, keys conv1, conv2,
  fc1, fc2, fc3 as this workspace's `lenet` crate), shared by `lenet5` (average pooling) and
  `lenet5_max` (max pooling), and the input `input` [1, 1, 32, 32] (seeded normal).
* `lenet-expected.safetensors`: per model `m` in (lenet5, lenet5_max):
  - `m.logits`;
  - `m.gradcam.{weights,map,upsampled}` and `m.gradcampp.{...}`: pytorch_grad_cam GradCAM /
    GradCAMPlusPlus with target layer `pool2` (the map `forward_features` returns) and
    `ClassifierOutputTarget(predicted class)`: `weights` = `get_cam_weights`, `map` =
    relu(`get_cam_image`) at 5x5, `upsampled` = the cam object's output (scale, cv2.resize to
    32x32, scale);
  - `m.guided`: pytorch_grad_cam `GuidedBackpropReLUModel` on the predicted class, [C, H, W];
  - `m.deconv.<layer>` [3, 1, 32, 32] and `m.deconv.<layer>.channels` (f32) for layer in
    (conv1, pool1, conv2, pool2): the deconvnet written below (Zeiler & Fergus 2013).
* `resnet18-expected.safetensors`: torchvision `resnet18(num_classes=10)` with the closed-form
  weights of `scripts/gen_densenet_fixtures.py` (`fill`, = Rust
  `testkit::densenet_efficientnet::fill_vars`: rank among the sorted state-dict keys without
  `num_batches_tracked`), input `pattern([1, 3, 64, 64], 999, 1.0)`; `logits`, `gradcam.*`,
  `gradcampp.*` (target layer `layer4`) and `guided` as above.

The deconvnet reference: forward through the chain recording each max pooling's indices
(`max_pool2d(return_indices=True)`); at the chosen layer, the top-3 channels by their maximum,
each alone with only its maximum kept; backward: ReLU on the signal for each conv + ReLU, then
`conv_transpose2d` with the conv's weight (same stride and padding, output_padding so the size
matches); max unpooling by scatter-add of the signal at the recorded indices (= `max_unpool2d`
for non-overlapping windows, and additive where overlapping windows share a maximum); average
pooling by its transpose (the autograd of `avg_pool2d`).
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(__file__))
from gen_densenet_fixtures import fill, pattern  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "interpret", "tests", "fixtures")
torch.set_grad_enabled(True)


class LeNet5(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = pool(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = pool(2)
        self.fc1 = nn.Linear(400, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu4(self.fc2(self.relu3(self.fc1(x))))
        return self.fc3(x)


def cams(model, x, layer, prefix, out):
    model.eval()
    logits = model(x).detach()
    cls = int(logits.argmax())
    out[f"{prefix}logits"] = logits
    for name, kind in [("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)]:
        with kind(model=model, target_layers=[layer]) as cam:
            targets = [ClassifierOutputTarget(cls)]
            upsampled = cam(input_tensor=x, targets=targets)
            acts = cam.activations_and_grads.activations[0].cpu().numpy()
            grads = cam.activations_and_grads.gradients[0].cpu().numpy()
            weights = cam.get_cam_weights(x, layer, targets, acts, grads)
            raw = cam.get_cam_image(x, layer, targets, acts, grads, False)
        out[f"{prefix}{name}.weights"] = torch.from_numpy(np.float32(weights[0]))
        out[f"{prefix}{name}.map"] = torch.from_numpy(np.float32(np.maximum(raw[0], 0)))
        out[f"{prefix}{name}.upsampled"] = torch.from_numpy(np.float32(upsampled[0]))
    gb = GuidedBackpropReLUModel(model=model, device="cpu")
    guided = gb(x.clone(), target_category=cls)  # H, W, C
    out[f"{prefix}guided"] = torch.from_numpy(np.ascontiguousarray(guided.transpose(2, 0, 1))).float()
    return cls


def deconv(model, x, layer, top_k=3):
    """Zeiler & Fergus's deconvnet over LeNet's chain, projecting from `layer`."""
    chain = [("conv1", model.conv1, True), ("pool1", model.pool1, None),
             ("conv2", model.conv2, True), ("pool2", model.pool2, None)]
    end = [n for n, _, _ in chain].index(layer)
    inputs, switches = [], []
    with torch.no_grad():
        h = x
        for name, mod, _ in chain[: end + 1]:
            inputs.append(h)
            if isinstance(mod, nn.Conv2d):
                h = F.relu(mod(h))
                switches.append(None)
            elif isinstance(mod, nn.MaxPool2d):
                h, idx = F.max_pool2d(h, 2, 2, return_indices=True)
                switches.append(idx)
            else:
                h = F.avg_pool2d(h, 2, 2)
                switches.append(None)
    c, hh, ww = h.shape[1:]
    flat = h[0].reshape(c, -1)
    maxima, argmax = flat.max(1)
    order = sorted(range(c), key=lambda i: (-float(maxima[i]), i))[:top_k]
    signal = torch.zeros(len(order), c, hh * ww)
    for j, ch in enumerate(order):
        signal[j, ch, argmax[ch]] = maxima[ch]
    signal = signal.reshape(len(order), c, hh, ww)
    for (name, mod, _), inp, sw in reversed(list(zip(chain[: end + 1], inputs, switches))):
        n = signal.shape[0]
        if isinstance(mod, nn.Conv2d):
            signal = F.relu(signal)
            target = inp.shape[2:]
            s, p, k = mod.stride[0], mod.padding[0], mod.kernel_size[0]
            size = (signal.shape[2] - 1) * s - 2 * p + k
            op = target[0] - size
            signal = F.conv_transpose2d(signal, mod.weight.detach(), stride=s, padding=p, output_padding=op)
        elif isinstance(mod, nn.MaxPool2d):
            shape = inp.shape
            up = torch.zeros(n, shape[1], shape[2] * shape[3])
            idx = sw.reshape(1, shape[1], -1).expand(n, -1, -1)
            up.scatter_add_(2, idx, signal.reshape(n, shape[1], -1))
            signal = up.reshape(n, *shape[1:])
        else:
            leaf = inp.expand(n, -1, -1, -1).clone().requires_grad_(True)
            (g,) = torch.autograd.grad(F.avg_pool2d(leaf, 2, 2), leaf, signal)
            signal = g
    return signal.detach(), torch.tensor(order, dtype=torch.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    base = LeNet5(nn.MaxPool2d)
    weights = {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}
    x = torch.randn(1, 1, 32, 32)
    save_file({**weights, "input": x.contiguous()}, os.path.join(OUT, "lenet.safetensors"))
    out = {}
    for name, pool in [("lenet5", nn.AvgPool2d), ("lenet5_max", nn.MaxPool2d)]:
        model = LeNet5(pool)
        model.load_state_dict(weights)
        model.eval()
        cls = cams(model, x, model.pool2, f"{name}.", out)
        for layer in ["conv1", "pool1", "conv2", "pool2"]:
            proj, channels = deconv(model, x, layer)
            out[f"{name}.deconv.{layer}"] = proj.contiguous()
            out[f"{name}.deconv.{layer}.channels"] = channels
        print(name, "class", cls)
    save_file(out, os.path.join(OUT, "lenet-expected.safetensors"))

    model = torchvision.models.resnet18(num_classes=10)
    state = model.state_dict()
    names = sorted(k for k in state if not k.endswith("num_batches_tracked"))
    with torch.no_grad():
        for i, k in enumerate(names):
            state[k].copy_(fill(k, tuple(state[k].shape), i))
    model.eval()
    x = pattern([1, 3, 64, 64], 999, 1.0)
    out = {"input": x.contiguous()}
    cls = cams(model, x, model.layer4, "", out)
    print("resnet18 class", cls)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "resnet18-expected.safetensors"))


if __name__ == "__main__":
    main()
