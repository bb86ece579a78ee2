"""Writes trainer/assets/imagenet_classes.txt: the 1000 ImageNet-1k class names, one per line,
in the standard class-index order (line 1 is class 0, "tench"), as torchvision lists them.

    pip install torchvision
    python scripts/gen_imagenet_classes.py

timm's hub configurations carry no label names, so `trainer::imagenet::imagenet_classes` embeds
this file. torchvision's list is the usual human-readable one (the first WordNet synonym of each
synset, with the duplicate names of the original list, such as the two "crane" and the two
"maillot", made unique).
"""
import pathlib

from torchvision.models._meta import _IMAGENET_CATEGORIES

OUT = pathlib.Path(__file__).resolve().parent.parent / "trainer" / "assets" / "imagenet_classes.txt"


def main():
    names = list(_IMAGENET_CATEGORIES)
    assert len(names) == 1000, f"expected 1000 names, got {len(names)}"
    assert len(set(names)) == 1000, "the names are not unique"
    for i, name in enumerate(names):
        assert name and name == name.strip() and "\n" not in name and "\r" not in name, (i, name)
    assert names[0] == "tench" and names[207] == "golden retriever" and names[999] == "toilet tissue"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(name + "\n" for name in names), encoding="utf-8")
    print(f"wrote {len(names)} names to {OUT}")


if __name__ == "__main__":
    main()
