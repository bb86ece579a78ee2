"""CI: no published crate's library or examples include a file from outside the crate
(`include_str!`, `include_bytes!`, `#[path = ...]` resolving out of its folder): `cargo
package --no-verify` would package it without the file. Exits 1 naming each offender."""
import glob
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PATTERN = re.compile(r'(?:include_(?:str|bytes)!\(\s*"([^"]+)"|#\[path\s*=\s*"([^"]+)"\])')


def main():
    bad = []
    for manifest in sorted(glob.glob(os.path.join(ROOT, "*", "Cargo.toml"))):
        crate = os.path.dirname(os.path.abspath(manifest))
        if re.search(r"^publish\s*=\s*false", open(manifest).read(), re.M):
            continue
        for sub in ("src", "examples"):
            for path in glob.glob(os.path.join(crate, sub, "**", "*.rs"), recursive=True):
                for n, line in enumerate(open(path, encoding="utf-8"), 1):
                    for m in PATTERN.finditer(line):
                        target = m.group(1) or m.group(2)
                        if "concat!" in line or target.startswith("/"):
                            continue
                        full = os.path.abspath(os.path.join(os.path.dirname(path), target))
                        if not full.startswith(crate + os.sep):
                            bad.append(f"{os.path.relpath(path, ROOT)}:{n}: {target} is outside {os.path.basename(crate)}/")
    for b in bad:
        print(b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
