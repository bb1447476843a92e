//! The `.yaml` (and `.yml`) files of a folder, for the commands that take a folder of
//! scenarios or runbooks.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The folder's `.yaml`/`.yml` files, sorted; an error naming the folder when it has none.
/// `what` names what the files hold, e.g. `scenario`.
pub fn in_folder(dir: &Path, what: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {what} folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no .yaml {what} files in this folder", dir.display());
    }
    Ok(files)
}
