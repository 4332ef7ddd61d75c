"""Where the gateway's time goes: a py-spy profile (raw, collapsed stacks) summed per function.

    python -m bench.ingest --citizens 120 --profile /tmp/gateway.prof
    python -m bench.profile_summary /tmp/gateway.prof

Prints the share of the gateway's busy samples spent in (inclusive) each of our functions,
largest first: the README's profile table is made with it.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

OURS = re.compile(r"\((bots|channels|store|normalizer|cases|replies)/")


def summarize(path: str) -> tuple[int, Counter[str]]:
    """Total samples and, per function of ours, the samples with it anywhere on the stack."""
    total, inclusive = 0, Counter[str]()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            total += int(count)
            frames = {re.sub(r":\d+\)", ")", f) for f in stack.split(";")}
            for frame in frames:
                if OURS.search(frame):
                    inclusive[frame] += int(count)
    return total, inclusive


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    total, inclusive = summarize(args.profile)
    print(f"{total} samples")
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
