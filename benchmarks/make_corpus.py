"""Write the benchmark corpus: N version-detail payloads, one per line, from the simulator's generator.

    python benchmarks/make_corpus.py                 # 20,000 payloads -> benchmarks/data/corpus-20000-s42.jsonl
    python benchmarks/make_corpus.py -n 200000       # the memory check's large corpus

Same seed, same bytes: a corpus already written (with its `.done` marker) is reused.
Writing goes to a temporary name first, so a killed run never leaves a short corpus behind.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
DEFAULT_PAYLOADS = 20_000
DEFAULT_SEED = 42
PROJECT_ID = "bench0project"


def _generator():
    """The simulator's generator module (loaded by path if the simulator package is mid-edit)."""
    sys.path.insert(0, str(ROOT))
    try:
        from pipelines.modelarts.simulator import generator
        return generator
    except ImportError:
        path = ROOT / "pipelines" / "modelarts" / "simulator" / "generator.py"
        spec = importlib.util.spec_from_file_location("_bench_generator", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def corpus_path(n: int = DEFAULT_PAYLOADS, seed: int = DEFAULT_SEED) -> Path:
    return DATA_DIR / f"corpus-{n}-s{seed}.jsonl"


def make_corpus(n: int = DEFAULT_PAYLOADS, seed: int = DEFAULT_SEED, *, force: bool = False, quiet: bool = False) -> Path:
    """Path of the corpus of `n` payloads for `seed`, generating it if needed."""
    path = corpus_path(n, seed)
    done = path.with_suffix(".done")
    if path.exists() and done.exists() and not force:
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".jsonl.tmp")
    count = size = 0
    with tmp.open("wb", buffering=8 << 20) as fh:
        for body in _generator().iter_corpus(n, seed):
            fh.write(body)
            fh.write(b"\n")
            count += 1
            size += len(body) + 1
            if not quiet and count % 20_000 == 0:
                print(f"  {count:,} payloads, {size / 1e6:,.0f} MB", file=sys.stderr)
    os.replace(tmp, path)
    done.write_text(f"{count} payloads, {size} bytes, seed {seed}\n")
    if not quiet:
        print(f"wrote {path} ({count:,} payloads, {size / 1e6:,.1f} MB) in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--payloads", type=int, default=DEFAULT_PAYLOADS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--force", action="store_true", help="write it again even if it exists")
    args = parser.parse_args()
    print(make_corpus(args.payloads, args.seed, force=args.force))


if __name__ == "__main__":
    main()
