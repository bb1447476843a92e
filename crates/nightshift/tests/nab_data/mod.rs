//! Where the NAB corpus lives for the tests: `$NIGHTSHIFT_DATA` if set, else the shared data
//! folder beside the repository; tests skip with a printed reason when it is absent.

use std::path::{Path, PathBuf};

pub const WINDOWS: &str = "labels/combined_windows.json";

/// The NAB folder (holding `data/`, `labels/` and `reference_results/`), or `None` after
/// printing why the caller skips.
pub fn nab_dir() -> Option<PathBuf> {
    let candidates = match std::env::var_os("NIGHTSHIFT_DATA") {
        // Either the data folder itself or its parent.
        Some(dir) => {
            let dir = PathBuf::from(dir);
            vec![dir.join("nab"), dir.join("data/nab")]
        }
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join("../shared/data/nab"),
        ],
    };
    let found = candidates
        .iter()
        .find(|d| d.join(WINDOWS).is_file())
        .cloned();
    if found.is_none() {
        println!(
            "skipped: no NAB corpus at {} (set NIGHTSHIFT_DATA to the folder holding data/nab)",
            candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    found
}
