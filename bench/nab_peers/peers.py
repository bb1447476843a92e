"""Runs peer anomaly detectors (ADTK, scikit-learn IsolationForest, Prophet) over the NAB
corpus and writes NAB-format results (timestamp,value,anomaly_score) plus wall-time figures.

Each peer is configured the way its users run it; see README.md beside this file for the
settings, the score mappings and the caveats.
"""

import argparse
import csv
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

# ADTK 0.6.2 writes NaN into boolean Series, which pandas 2.2 still accepts but warns about;
# Prophet warns about yearly seasonality on short histories, which is the configuration we copy.
warnings.simplefilter("ignore", FutureWarning)
warnings.simplefilter("ignore", UserWarning)
warnings.simplefilter("ignore", RuntimeWarning)  # statsmodels' ACF divides by zero on a flat line
logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)  # "plotly not installed": not needed

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from adtk.data import validate_series  # noqa: E402
from adtk.detector import LevelShiftAD, PersistAD, SeasonalAD  # noqa: E402
from prophet import Prophet  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402

# Prophet sets its own logger to INFO on import; its per-fit INFO/WARNING lines and cmdstanpy's
# chain progress would drown the progress report.
logging.getLogger("prophet").setLevel(logging.ERROR)
logging.getLogger("cmdstanpy").disabled = True

DETECTORS = ("adtk", "adtk_online", "isolation_forest", "prophet")


class Series:
    """One NAB file: the raw timestamp and value strings (echoed back unchanged) and parsed forms."""

    def __init__(self, category: str, name: str, path: Path):
        self.category = category
        self.name = name  # file stem, e.g. art_daily_jumpsup
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            if header[:2] != ["timestamp", "value"]:
                raise ValueError(f"{path}: expected header timestamp,value, got {header}")
            rows = [r for r in reader if r]
        self.raw_ts = [r[0] for r in rows]
        self.raw_values = [r[1] for r in rows]
        self.ts = pd.to_datetime(pd.Series(self.raw_ts), format="%Y-%m-%d %H:%M:%S")
        self.values = np.array([float(v) for v in self.raw_values], dtype=float)

    def __len__(self) -> int:
        return len(self.raw_ts)

    def head(self, n: int) -> "Series":
        """The first n rows, for an untimed warm-up run."""
        return self.rows(0, n)

    def rows(self, start: int, end: int) -> "Series":
        """Rows start..end (end excluded)."""
        h = object.__new__(Series)
        h.category, h.name = self.category, self.name
        h.raw_ts, h.raw_values = self.raw_ts[start:end], self.raw_values[start:end]
        h.ts, h.values = self.ts.iloc[start:end].reset_index(drop=True), self.values[start:end]
        return h


def load_corpus(data_dir: Path, only: list[str]) -> list[Series]:
    files = sorted((data_dir / "data").glob("*/*.csv"))
    if not files:
        raise SystemExit(f"no NAB files under {data_dir / 'data'}/<category>/<file>.csv")
    corpus = []
    for p in files:
        if only and not any(o in str(p) for o in only):
            continue
        corpus.append(Series(p.parent.name, p.stem, p))
    return corpus


def write_results(out_dir: Path, detector: str, s: Series, scores: np.ndarray) -> None:
    if len(scores) != len(s):
        raise RuntimeError(f"{detector} {s.name}: {len(scores)} scores for {len(s)} rows")
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0, posinf=1.0, neginf=0.0)
    scores = np.clip(scores, 0.0, 1.0)
    d = out_dir / detector / s.category
    d.mkdir(parents=True, exist_ok=True)
    with (d / f"{detector}_{s.name}.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "value", "anomaly_score"])
        for ts, v, sc in zip(s.raw_ts, s.raw_values, scores):
            w.writerow([ts, v, f"{sc:.6g}"])


# ---------------------------------------------------------------------------------------------
# (a) ADTK: SeasonalAD | LevelShiftAD | PersistAD with documented defaults, fit_detect on the
# whole series (batch; it sees the future).


def run_adtk(s: Series, args) -> tuple[np.ndarray, dict]:
    raw = pd.Series(s.values, index=pd.DatetimeIndex(s.ts), name="value")
    # validate_series sorts the index and drops duplicated timestamps (two NAB files have them).
    series = validate_series(raw)
    note = {}

    flags = []
    for det in (LevelShiftAD(c=6.0, side="both", window=5), PersistAD(c=3.0, side="both", window=1)):
        flags.append(det.fit_detect(series).astype(float).fillna(0.0))

    seasonal = None
    try:
        seasonal_input = series
        regularised = False
        if series.index.inferred_freq is None:
            # SeasonalAD needs a regular index; a user resamples to the dominant step first and
            # fills the gaps by time interpolation (ADTK rejects NaN among valid values).
            step = series.index.to_series().diff().mode().iloc[0]
            seasonal_input = (
                series.resample(step, origin=series.index[0]).mean().interpolate(method="time")
            )
            regularised = True
        det = SeasonalAD(c=3.0, side="both")
        sflags = det.fit_detect(seasonal_input).astype(float).fillna(0.0)
        if regularised:
            # Each original row takes the flag of the resampled bin it fell into.
            sflags = sflags.reindex(series.index, method="ffill").fillna(0.0)
            note["seasonal"] = f"used after resampling to {pd.Timedelta(step)} (freq={det.freq_})"
        else:
            note["seasonal"] = f"used (freq={det.freq_})"
        seasonal = sflags
    except Exception as e:  # ADTK raises plain Exception/RuntimeError/IndexError for "no seasonality"
        note["seasonal"] = f"skipped: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    if seasonal is not None:
        flags.append(seasonal)

    combined = pd.concat(flags, axis=1).max(axis=1)  # OR over detectors
    # Back onto the original rows (duplicated timestamps get the flag of their kept twin).
    out = combined.reindex(pd.DatetimeIndex(s.ts)).fillna(0.0).to_numpy()
    note["flagged_rows"] = int((out > 0).sum())
    return out, note


# ---------------------------------------------------------------------------------------------
# (a') ADTK online: ADTK has no streaming API, so a monitoring loop that wants a verdict on each
# new point re-runs the same combination on a trailing window and reads the last row's flag.
# Timed on a sample of points (every --adtk-online-every-th), so the figure is verdicts per
# second; it writes no results file and is not scored.


def run_adtk_online(s: Series, args) -> tuple[None, dict]:
    decisions = 0
    flagged = 0
    for t in range(args.adtk_online_window, len(s), args.adtk_online_every):
        flags, _ = run_adtk(s.rows(t + 1 - args.adtk_online_window, t + 1), args)
        flagged += int(flags[-1] > 0)
        decisions += 1
    return None, {"decisions": decisions, "flagged": flagged}


# ---------------------------------------------------------------------------------------------
# (b) IsolationForest as a Prometheus sidecar runs it: features from the recent window, refit
# on a rolling window every few points, score new points with the current model.


def isolation_features(values: np.ndarray, window: int) -> np.ndarray:
    v = pd.Series(values)
    lag1 = v.shift(1).fillna(v.iloc[0])
    lag2 = v.shift(2).fillna(lag1)
    roll = v.rolling(window, min_periods=1)
    return np.column_stack(
        [v, lag1, lag2, roll.mean(), roll.std(ddof=0).fillna(0.0)]
    ).astype(float)


def run_isolation_forest(s: Series, args) -> tuple[np.ndarray, dict]:
    n = len(s)
    x = isolation_features(s.values, args.if_feature_window)
    scores = np.zeros(n)
    fits = 0
    t = args.if_min_history
    while t < n:
        model = IsolationForest(n_estimators=100, random_state=args.seed)
        model.fit(x[max(0, t - args.if_train_window) : t])
        fits += 1
        end = min(n, t + args.if_refit_every)
        # -score_samples is the paper's anomaly score 2^(-E[h(x)]/c(psi)) in (0, 1].
        scores[t:end] = -model.score_samples(x[t:end])
        t = end
    return scores, {"fits": fits}


# ---------------------------------------------------------------------------------------------
# (c) Prophet as prometheus-anomaly-detector runs it: retrain on a rolling history, forecast
# yhat and its band for the points until the next retrain, score by distance outside the band.


def band_score(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """0 inside [lo, hi]; outside, d / (d + w) for distance d past the band and band width w:
    0.5 one band width out, tending to 1. A hard min(1, d / w) would tie every point more than
    one width out at 1.0 and leave NAB's threshold sweep nothing to separate them by."""
    width = np.maximum(hi - lo, 0.0)
    dist = np.where(y > hi, y - hi, np.where(y < lo, lo - y, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(dist > 0, dist / (dist + width), 0.0)
    return np.clip(np.nan_to_num(rel, nan=0.0), 0.0, 1.0)


def run_prophet(s: Series, args) -> tuple[np.ndarray, dict]:
    np.random.seed(args.seed)  # Prophet samples its uncertainty band from numpy's global RNG
    n = len(s)
    frame = pd.DataFrame({"ds": s.ts.to_numpy(), "y": s.values})
    scores = np.zeros(n)
    fits = 0
    t = args.prophet_min_history
    while t < n:
        model = Prophet(
            daily_seasonality=True,
            weekly_seasonality=True,
            yearly_seasonality=True,
            interval_width=args.prophet_interval_width,
        )
        model.fit(frame.iloc[max(0, t - args.prophet_train_window) : t])
        fits += 1
        end = min(n, t + args.prophet_retrain_every)
        fc = model.predict(frame.iloc[t:end][["ds"]])
        scores[t:end] = band_score(
            s.values[t:end], fc["yhat_lower"].to_numpy(), fc["yhat_upper"].to_numpy()
        )
        t = end
    return scores, {"fits": fits}


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


RUNNERS = {
    "adtk": run_adtk,
    "adtk_online": run_adtk_online,
    "isolation_forest": run_isolation_forest,
    "prophet": run_prophet,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, type=Path, help="NAB folder holding data/<category>/<file>.csv")
    ap.add_argument("--out", required=True, type=Path, help="results folder")
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset of " + ",".join(DETECTORS))
    ap.add_argument("--only", action="append", default=[], help="run only files whose path contains this (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--adtk-online-window", type=int, default=864, help="points (3 d at 5 min, as PAD's window)")
    ap.add_argument("--adtk-online-every", type=int, default=100, help="time a verdict at every n-th point")
    ap.add_argument("--if-train-window", type=int, default=500)
    ap.add_argument("--if-refit-every", type=int, default=100)
    ap.add_argument("--if-min-history", type=int, default=200)
    ap.add_argument("--if-feature-window", type=int, default=12)
    ap.add_argument("--prophet-train-window", type=int, default=864, help="points (3 d at 5 min, PAD's default window)")
    ap.add_argument("--prophet-retrain-every", type=int, default=24, help="points (PAD's 120 minutes at 5 min)")
    ap.add_argument("--prophet-min-history", type=int, default=288, help="points before the first fit (1 d at 5 min)")
    ap.add_argument("--prophet-interval-width", type=float, default=0.98)
    args = ap.parse_args()

    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = [d for d in detectors if d not in RUNNERS]
    if unknown:
        ap.error(f"unknown detector(s) {unknown}; known: {list(RUNNERS)}")

    corpus = load_corpus(args.data, args.only)
    args.out.mkdir(parents=True, exist_ok=True)
    timings_path = args.out / "timings.json"
    notes_path = args.out / "notes.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    notes = json.loads(notes_path.read_text()) if notes_path.exists() else {}

    total_points = sum(len(s) for s in corpus)
    for det in detectors:
        run = RUNNERS[det]
        seconds = cpu = 0.0
        det_notes = {}
        # One untimed run on a short prefix pays the one-off costs (lazy imports inside the
        # libraries, first Stan model load) that a long-running service pays once at start-up.
        run(corpus[0].head(min(len(corpus[0]), 600)), args)
        print(f"{det}: {len(corpus)} files, {total_points} points", file=sys.stderr, flush=True)
        points = 0
        for s in corpus:
            start, cpu_start = time.perf_counter(), cpu_seconds()
            scores, note = run(s, args)
            elapsed = time.perf_counter() - start
            seconds += elapsed
            cpu += cpu_seconds() - cpu_start
            if scores is None:
                # Timed verdicts only (adtk_online): no results file, and its points are the
                # verdicts it gave.
                points += note["decisions"]
            else:
                points += len(s)
                write_results(args.out, det, s, scores)
            note["seconds"] = round(elapsed, 4)
            det_notes[f"{s.category}/{s.name}.csv"] = note
            print(f"  {s.category}/{s.name}: {len(s)} points {elapsed:.2f}s {note}", file=sys.stderr, flush=True)
        timings[det] = {
            "points": points,
            "seconds": round(seconds, 4),
            "points_per_second": round(points / seconds, 1) if seconds > 0 else None,
            # CPU time of this process and the ones it waited for (Prophet's Stan runs): less
            # sensitive than wall time to other work on the machine.
            "cpu_seconds": round(cpu, 4),
        }
        notes[det] = det_notes
        print(f"{det}: {seconds:.1f}s wall, {cpu:.1f}s CPU, {timings[det]['points_per_second']} points/s", file=sys.stderr, flush=True)
        timings_path.write_text(json.dumps(timings, indent=2) + "\n")
        notes_path.write_text(json.dumps(notes, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
