"""Run every benchmark module and print its figures, one ``name value unit`` per line."""

from __future__ import annotations

import importlib

MODULES = ["benchmarks.crypto_bench"]


def main() -> None:
    for name in MODULES:
        module = importlib.import_module(name)
        for figure, value, unit in module.run():
            print(f"{figure} {value:.1f} {unit}", flush=True)


if __name__ == "__main__":
    main()
