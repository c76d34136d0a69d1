"""`python -m benchmarks`: run every `benchmarks/bench_*.py` module's `main()` in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def main() -> int:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_")
    )
    failed = []
    for name in names:
        print(f"\n=== benchmarks.{name}", flush=True)
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception as error:  # one broken benchmark must not hide the others' tables
            print(f"benchmarks.{name} failed: {type(error).__name__}: {error}", flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
