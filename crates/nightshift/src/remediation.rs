//! `nightshift runbook validate` and `nightshift audit verify`: the offline checks of the
//! remediation files.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The runbook files `paths` names: files as given, directories by their `.yaml`/`.yml` files.
fn runbook_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(crate::yaml_files::in_folder(p, "runbook")?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Checks each runbook file (and, given the allow-list, that every `command.run` program is on
/// it); a line per valid runbook, and an error naming the file, line and field of every
/// problem when any is invalid.
pub fn validate(paths: &[PathBuf], commands: Option<&[PathBuf]>) -> Result<String> {
    let mut ok = String::new();
    let mut problems = Vec::new();
    for file in runbook_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed = nightshift_act::runbook::parse(&text).and_then(|r| {
            let off_list: Vec<nightshift_act::Problem> = commands
                .map(|allowed| nightshift_act::runbook::unlisted_programs(&r, allowed))
                .unwrap_or_default();
            if off_list.is_empty() {
                Ok(r)
            } else {
                Err(off_list)
            }
        });
        match parsed {
            Ok(r) => ok.push_str(&format!(
                "{}: ok: {} (mode {}, risk {}, {} step{}{})\n",
                file.display(),
                r.name,
                r.mode.as_str(),
                r.risk.as_str(),
                r.steps.len(),
                if r.steps.len() == 1 { "" } else { "s" },
                if r.rollback.is_empty() {
                    ""
                } else {
                    ", with rollback"
                },
            )),
            Err(list) => problems.extend(
                list.into_iter()
                    .map(|p| format!("{}:{}: {}: {}", file.display(), p.line, p.field, p.message)),
            ),
        }
    }
    if problems.is_empty() {
        Ok(ok)
    } else {
        bail!("{}{}", ok, problems.join("\n"))
    }
}

/// Verifies the audit log's chain; its entry count and head hash, or the first broken entry.
pub fn verify_audit(path: &Path) -> Result<String> {
    if !path.exists() {
        bail!(
            "there is no audit log at {} (act.audit_log)",
            path.display()
        );
    }
    match nightshift_act::audit::verify(path)
        .with_context(|| format!("cannot read the audit log {}", path.display()))?
    {
        Ok(head) => Ok(format!(
            "{}: {} entries, chain intact; head {}\n",
            path.display(),
            head.entries,
            head.hash
        )),
        Err(p) => bail!("{}: {p}", path.display()),
    }
}
