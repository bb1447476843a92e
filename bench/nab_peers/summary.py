"""Builds OUTDIR/summary.md from the NAB scores (`nightshift eval nab --json`, one file per
detector under OUTDIR/scores/) and the peers' measured speed (OUTDIR/timings.json).

Standard library only, so it runs with any python3.
"""

import argparse
import json
import sys
from collections import deque
from pathlib import Path

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def find(obj, key):
    """First value stored under `key`, breadth-first, so top-level figures win over per-file ones."""
    queue = deque([obj])
    while queue:
        node = queue.popleft()
        if isinstance(node, dict):
            if key in node:
                return node[key]
            queue.extend(node.values())
        elif isinstance(node, list):
            queue.extend(node)
    return None


def as_number(value):
    """A profile may be reported as a number or as an object holding the normalised score."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        for k in ("score", "normalized_score", "normalised_score", "normalized", "normalised", "value"):
            if isinstance(value.get(k), (int, float)):
                return float(value[k])
    return None


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data", default="NAB subset", help="data folder, for the caption")
    ap.add_argument("--wall-seconds", type=float, default=None, help="wall time of the peers step")
    args = ap.parse_args()

    timings = json.loads((args.out / "timings.json").read_text())
    scores_dir = args.out / "scores"
    nightshift = json.loads((scores_dir / "nightshift.json").read_text())
    ns_pps = as_number(find(nightshift, "points_per_second"))

    rows = [("**Nightshift**", nightshift, ns_pps, None)]
    for det in sorted(timings):
        path = scores_dir / f"{det}.json"
        # A timing without results (adtk_online: verdicts on a sample of points) has speed only.
        report = json.loads(path.read_text()) if path.exists() else {}
        pps = timings[det].get("points_per_second")
        ratio = ns_pps / pps if ns_pps and pps else None
        rows.append((det, report, pps, ratio))

    lines = [
        "# NAB: Nightshift and peer detectors",
        "",
        f"Data: `{args.data}`; scores from `nightshift eval nab`; "
        "peer speed from `timings.json` (detector work only, model fitting included).",
        "",
        "| detector | standard | reward_low_FP_rate | reward_low_FN_rate | points/s | Nightshift points/s ÷ this |",
        "|---|---|---|---|---|---|",
    ]
    for name, report, pps, ratio in rows:
        profile = [fmt(as_number(find(report, p))) for p in PROFILES]
        lines.append(
            f"| {name} | {' | '.join(profile)} | {fmt(pps, 0)} | "
            f"{'–' if ratio is None else f'{ratio:,.0f}×'} |"
        )
    cpu = [f"{d} {timings[d]['cpu_seconds']:,.1f} s" for d in sorted(timings) if "cpu_seconds" in timings[d]]
    wall = [f"{d} {timings[d]['seconds']:,.1f} s" for d in sorted(timings)]
    lines += ["", f"Peer wall time: {', '.join(wall)}."]
    if cpu:
        lines += [f"Peer CPU time (less affected by other load on the machine): {', '.join(cpu)}."]
    if args.wall_seconds is not None:
        lines += [f"Peers step, start to end (with start-up and file I/O): {args.wall_seconds:.0f} s."]
    lines += ["", "How each peer is configured: `bench/nab_peers/README.md`.", ""]
    text = "\n".join(lines)
    (args.out / "summary.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
