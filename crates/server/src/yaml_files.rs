//! The `.yaml` (and `.yml`) files of a folder, for the commands that take a folder of
//! scenarios or runbooks.

use crate::ServerError;
use std::path::{Path, PathBuf};

/// The folder's `.yaml`/`.yml` files, sorted; an error naming the folder when it has none.
/// `what` names what the files hold, e.g. `scenario`.
pub fn in_folder(dir: &Path, what: &str) -> Result<Vec<PathBuf>, ServerError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            ServerError::Folder(format!("cannot list {what} folder {}: {e}", dir.display()))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ServerError::Folder(format!(
            "{}: no .yaml {what} files in this folder",
            dir.display()
        )));
    }
    Ok(files)
}
