"""Full-size ResNet-18 / ResNet-50 references for `resnet/tests/full_size.rs` (ignored by
default: the files are 170 MB and stay out of git).

torchvision's models with their own random initialisation and random batch-norm statistics
and affine parameters, in eval mode; the logits of a random batch of 1 and of 16 images at
224x224 computed in float64 from the float32 weights and input, stored as float32.

    python3 scripts/gen_full_size_resnet.py DIR
    CONVNETS_FULL_SIZE_DIR=DIR cargo test --release -p convnets-resnet --test full_size -- --ignored
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    torch.manual_seed(0)
    for name in ["resnet18", "resnet50"]:
        m = getattr(torchvision.models, name)()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.2, 0.2)
        m.eval()
        sd = {k: v.contiguous() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
        save_file(sd, f"{out}/{name}.safetensors")
        for b in [1, 16]:
            x = torch.randn(b, 3, 224, 224)
            with torch.no_grad():
                y = m.double()(x.double()).float()
            m.float()
            save_file({"x": x, "y": y}, f"{out}/{name}_b{b}_io.safetensors")


if __name__ == "__main__":
    main()
