//! Where the public data sets are: `$NIGHTSHIFT_DATA` (the data folder itself or its parent)
//! if set, else `../shared/data` beside the repository. A test that needs one prints why and
//! skips when it is absent; data sets are not peers (nothing installs them), so this holds
//! under `NIGHTSHIFT_REQUIRE_PEERS=1` too.

use std::path::{Path, PathBuf};

/// NAB's label file, relative to the NAB folder.
pub const NAB_WINDOWS: &str = "labels/combined_windows.json";

/// The data set folder `name` (e.g. `nab`, `loghub`) when it holds `marker`, or `None` after
/// printing why the caller skips.
pub fn shared(name: &str, marker: &str) -> Option<PathBuf> {
    let candidates = match std::env::var_os("NIGHTSHIFT_DATA") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            vec![dir.join(name), dir.join("data").join(name)]
        }
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/data")
                .join(name),
        ],
    };
    let found = candidates.iter().find(|d| d.join(marker).exists()).cloned();
    if found.is_none() {
        println!(
            "skipped: no {name} data at {} (set NIGHTSHIFT_DATA to the folder holding {name}/)",
            candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    found
}

/// The NAB folder (holding `data/`, `labels/` and `reference_results/`).
pub fn nab() -> Option<PathBuf> {
    shared("nab", NAB_WINDOWS)
}
