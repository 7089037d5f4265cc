"""Run the benchmark modules and print their figures, one ``name value unit`` per line.

``python -m benchmarks`` runs them all (``make bench``); ``python -m benchmarks crypto``
runs only the modules whose name contains one of the words given.
"""

from __future__ import annotations

import importlib
import sys

MODULES = [
    "benchmarks.crypto_bench",
    "benchmarks.directory_bench",
    "benchmarks.sharing_bench",
    "benchmarks.messaging_bench",
]


def main(argv: list[str]) -> None:
    selected = [name for name in MODULES if not argv or any(word in name for word in argv)]
    for name in selected:
        module = importlib.import_module(name)
        for figure, value, unit in module.run():
            print(f"{figure} {value:.1f} {unit}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
