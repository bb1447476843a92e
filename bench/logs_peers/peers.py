"""Runs PyPI's drain3 (default configuration) on the Loghub 2k samples and on a large log, and
writes its grouping accuracy and lines/s as JSON, for bench/logs_peers/run.sh.

GA follows the Loghub definition, as `nightshift eval logs` computes it: a line is right when
the lines sharing its cluster are exactly the lines sharing its true EventId.
"""

import argparse
import csv
import json
import resource
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from drain3 import TemplateMiner


def grouping_accuracy(predicted, truth):
    by_pred = defaultdict(list)
    for i, p in enumerate(predicted):
        by_pred[p].append(i)
    true_sizes = Counter(truth)
    correct = 0
    for lines in by_pred.values():
        events = Counter(truth[i] for i in lines)
        if len(events) == 1 and true_sizes[next(iter(events))] == len(lines):
            correct += len(lines)
    return correct / max(1, len(truth))


def loghub(data: Path):
    out = {}
    for system in sorted(p for p in data.iterdir() if p.is_dir()):
        f = system / f"{system.name}_2k.log_structured.csv"
        if not f.exists():
            continue
        with f.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        contents = [r["Content"] for r in rows]
        truth = [r["EventId"] for r in rows]
        miner = TemplateMiner()
        start = time.perf_counter()
        ids = [miner.add_log_message(c)["cluster_id"] for c in contents]
        secs = time.perf_counter() - start
        out[system.name] = {"ga": grouping_accuracy(ids, truth), "lines_per_s": len(rows) / secs}
    return out


def large(path: Path):
    with path.open(encoding="utf-8") as fh:
        lines = [l.rstrip("\n") for l in fh]
    miner = TemplateMiner()
    start = time.perf_counter()
    for l in lines:
        miner.add_log_message(l)
    secs = time.perf_counter() - start
    return {
        "lines": len(lines),
        "seconds": secs,
        "lines_per_s": len(lines) / secs,
        "templates": len(miner.drain.clusters),
        # Peak RSS of this process (the lines themselves included), in KiB.
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--loghub", type=Path, required=True)
    ap.add_argument("--large", type=Path, required=True)
    args = ap.parse_args()
    systems = loghub(args.loghub)
    report = {
        "systems": systems,
        "mean_ga": sum(s["ga"] for s in systems.values()) / max(1, len(systems)),
        "large": large(args.large),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
