"""Exports scikit-learn's bundled handwritten digits (1,797 grey 8x8 images of 0-16, from UCI)
as an image folder split 80/20 per class: OUT/train/<digit>/NNNN.png and OUT/val/<digit>/NNNN.png
(PNG, grey, value * 255 / 16 rounded). Not committed data: a real dataset no one here made, to
measure the defaults of `cargo xtask train` and `finetune` on (issue 26):

    python3 scripts/gen_digits_folder.py /tmp/digits
    cargo xtask train lenet --data /tmp/digits/train --val /tmp/digits/val

Needs scikit-learn and Pillow. The split is seeded (--seed, default 0): the same folder every time.
"""
import argparse
import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder (train/ and val/ are created in it)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digits = load_digits()
    images, labels = digits.images, digits.target
    rng = np.random.default_rng(args.seed)
    counts = {"train": 0, "val": 0}
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * args.val_fraction))
        for split, chosen in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = os.path.join(args.out, split, str(digit))
            os.makedirs(folder, exist_ok=True)
            for i in sorted(chosen):
                pixels = np.rint(images[i] * 255.0 / 16.0).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(os.path.join(folder, f"{i:04d}.png"))
                counts[split] += 1
    print(f"{counts['train']} training and {counts['val']} validation images in {args.out}")


if __name__ == "__main__":
    main()
