//! The NAB scorer against NAB's own published results: the Numenta HTM detector's per-row
//! scores at its published thresholds must give NAB's per-file scores, counts and row weights.

use nightshift_eval::nab_score::{self as nab, CostProfile, PROFILES, ScoredSeries};
use std::collections::BTreeMap;
use std::path::Path;

const TOLERANCE: f64 = 1e-6;

/// NAB's published normalised standard score for Numenta HTM on this 34-file subset.
const NUMENTA_STANDARD_ON_SUBSET: f64 = 73.6;

fn millis(s: &str) -> i64 {
    let civil: jiff::civil::DateTime = s.parse().expect("NAB timestamps are civil times");
    jiff::tz::TimeZone::UTC
        .to_timestamp(civil)
        .expect("in range")
        .as_millisecond()
}

/// A CSV file as a header and rows of fields (the reference files have no quoting).
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).expect("reference file is readable");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .expect("a header")
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("column {name} in {header:?}"))
}

struct Numenta {
    series: ScoredSeries,
    /// `S(t)_<profile>` per row: NAB's own per-row share of the file's score.
    weights: BTreeMap<String, Vec<f64>>,
}

fn load_numenta(dir: &Path, key: &str, windows: &[Vec<String>]) -> Numenta {
    let (category, file) = key.split_once('/').expect("category/file");
    let path = dir
        .join("reference_results/numenta")
        .join(category)
        .join(format!("numenta_{file}"));
    let (header, rows) = read_csv(&path);
    let ts_col = column(&header, "timestamp");
    let score_col = column(&header, "anomaly_score");
    let timestamps: Vec<i64> = rows.iter().map(|r| millis(&r[ts_col])).collect();
    let scores: Vec<f64> = rows
        .iter()
        .map(|r| r[score_col].parse().expect("numeric anomaly_score"))
        .collect();
    let windows: Vec<(i64, i64)> = windows
        .iter()
        .map(|w| (millis(&w[0]), millis(&w[1])))
        .collect();
    let weights = PROFILES
        .iter()
        .map(|p| {
            let col = column(&header, &format!("S(t)_{}", p.name));
            let w = rows
                .iter()
                .map(|r| r[col].parse().expect("numeric S(t)"))
                .collect();
            (p.name.to_string(), w)
        })
        .collect();
    Numenta {
        series: ScoredSeries::new(key, &timestamps, scores, &windows).expect("valid reference"),
        weights,
    }
}

#[test]
fn numenta_reference_results_are_reproduced_file_by_file_and_row_by_row() {
    let Some(dir) = nightshift_testkit::data::nab() else {
        return;
    };
    let windows: BTreeMap<String, Vec<Vec<String>>> = serde_json::from_str(
        &std::fs::read_to_string(dir.join(nightshift_testkit::data::NAB_WINDOWS))
            .expect("labels readable"),
    )
    .expect("labels are JSON");
    let thresholds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reference_results/thresholds.json"))
            .expect("thresholds readable"),
    )
    .expect("thresholds are JSON");
    let threshold = |p: &CostProfile| {
        thresholds["numenta"][p.name]["threshold"]
            .as_f64()
            .expect("numenta has a threshold per profile")
    };

    let (header, rows) = read_csv(&dir.join("reference_results/per_file_scores.csv"));
    let col = |name: &str| column(&header, name);
    // (detector, profile, file) → row.
    let reference: BTreeMap<(String, String, String), Vec<String>> = rows
        .into_iter()
        .map(|r| {
            let key = (
                r[col("Detector")].clone(),
                r[col("Profile")].clone(),
                r[col("File")].clone(),
            );
            (key, r)
        })
        .collect();
    let reference_row = |detector: &str, profile: &CostProfile, file: &str| {
        &reference[&(
            detector.to_string(),
            profile.name.to_string(),
            file.to_string(),
        )]
    };
    assert_eq!(windows.len(), 34, "the subset has 34 files");
    assert_eq!(
        reference.keys().filter(|k| k.0 == "numenta").count(),
        34 * 3,
        "one reference row per file and profile"
    );

    let corpus: Vec<Numenta> = windows
        .iter()
        .map(|(key, w)| load_numenta(&dir, key, w))
        .collect();
    for profile in &PROFILES {
        let t = threshold(profile);
        let mut max_score_error: f64 = 0.0;
        let mut max_row_error: f64 = 0.0;
        for n in &corpus {
            let file = n.series.name();
            let r = reference_row("numenta", profile, file);
            let got = n.series.score(profile, t);
            let want: f64 = r[col("Score")].parse().expect("numeric Score");
            max_score_error = max_score_error.max((got.raw - want).abs());
            let count = |c: &str| r[col(c)].parse::<usize>().expect("numeric count");
            assert_eq!(
                (
                    got.true_positives,
                    got.true_negatives,
                    got.false_positives,
                    got.false_negatives
                ),
                (count("TP"), count("TN"), count("FP"), count("FN")),
                "{} {file}: TP, TN, FP, FN",
                profile.name
            );
            assert_eq!(count("Total_Count"), n.series.rows(), "{file}: rows");
            let rows = n.series.contributions(profile, t);
            for (i, (g, w)) in rows.iter().zip(&n.weights[profile.name]).enumerate() {
                assert!(
                    (g - w).abs() < TOLERANCE,
                    "{} {file} row {i}: S(t) {w}, computed {g}",
                    profile.name
                );
                max_row_error = max_row_error.max((g - w).abs());
            }
        }
        println!(
            "{}: threshold {t}, max |raw score error| {max_score_error:.2e} over 34 files, max |S(t) error| {max_row_error:.2e}",
            profile.name
        );
        assert!(
            max_score_error < TOLERANCE,
            "{}: raw score off by {max_score_error}",
            profile.name
        );
    }

    let series: Vec<ScoredSeries> = corpus.into_iter().map(|n| n.series).collect();

    // NAB's null detector (a constant 0.5, under its threshold): every scored window missed.
    for s in &series {
        let null = ScoredSeries::from_rows(s.name(), vec![0.5; s.rows()], s.windows().to_vec())
            .expect("valid");
        for profile in &PROFILES {
            let r = reference_row("null", profile, s.name());
            let t = thresholds["null"][profile.name]["threshold"]
                .as_f64()
                .expect("null threshold");
            let got = null.score(profile, t);
            let want: f64 = r[col("Score")].parse().expect("numeric Score");
            assert!(
                (got.raw - want).abs() < TOLERANCE,
                "null {} {}: {} vs {want}",
                profile.name,
                s.name(),
                got.raw
            );
            assert_eq!(
                got.false_negatives,
                r[col("FN")].parse::<usize>().expect("numeric FN")
            );
        }
    }

    for profile in &PROFILES {
        let published = nab::evaluate_at(&series, profile, threshold(profile)).expect("windows");
        let optimised = nab::evaluate(&series, profile).expect("windows");
        println!(
            "{}: normalised {:.3} at the published threshold, {:.3} at our optimum {}",
            profile.name, published.normalised, optimised.normalised, optimised.threshold
        );
        assert!(
            optimised.raw >= published.raw - 1e-9,
            "{}: the optimiser must do at least as well as NAB's published threshold",
            profile.name
        );
        assert_eq!(published.null, -profile.a_fn * 50.0);
        assert_eq!(published.perfect, profile.a_tp * 50.0);
    }
    let standard = nab::evaluate_at(&series, &nab::STANDARD, threshold(&nab::STANDARD))
        .expect("windows")
        .normalised;
    assert!(
        (standard - NUMENTA_STANDARD_ON_SUBSET).abs() <= 0.1,
        "Numenta standard on the subset: {standard}"
    );
}
