//! Remediation outside `serve`: `nightshift runbook validate` and `nightshift audit verify`
//! (the offline checks of the remediation files), loading the runbooks `serve` acts on, and the
//! dry runs `demo` shows.

use crate::ServerError;
use std::path::{Path, PathBuf};

/// The runbook files `paths` names: files as given, directories by their `.yaml`/`.yml` files.
fn runbook_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ServerError> {
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

/// Valid runbooks with their files, and a line per problem found.
type Checked = (Vec<(PathBuf, nightshift_act::Runbook)>, Vec<String>);

/// Each runbook file `paths` names, read and checked (with the allow-list, when given, that
/// every `command.run` program is on it): the valid runbooks, and a line naming the file, line
/// and field of every problem.
fn check_files(paths: &[PathBuf], commands: Option<&[PathBuf]>) -> Result<Checked, ServerError> {
    let mut ok = Vec::new();
    let mut problems = Vec::new();
    for file in runbook_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ServerError::Read {
            path: file.clone(),
            source,
        })?;
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
            Ok(r) => ok.push((file, r)),
            Err(list) => problems.extend(
                list.into_iter()
                    .map(|p| format!("{}:{}: {}: {}", file.display(), p.line, p.field, p.message)),
            ),
        }
    }
    Ok((ok, problems))
}

/// Checks each runbook file (and, given the allow-list, that every `command.run` program is on
/// it); a line per valid runbook, and an error naming the file, line and field of every
/// problem when any is invalid.
pub fn validate(paths: &[PathBuf], commands: Option<&[PathBuf]>) -> Result<String, ServerError> {
    let (runbooks, problems) = check_files(paths, commands)?;
    let mut ok = String::new();
    for (file, r) in runbooks {
        ok.push_str(&format!(
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
        ));
    }
    if problems.is_empty() {
        Ok(ok)
    } else {
        Err(ServerError::Runbooks(format!(
            "{}{}",
            ok,
            problems.join("\n")
        )))
    }
}

/// The runbooks of `dir` for `serve`: every one valid and its programs on the allow-list, and
/// no two of one name; else an error listing every problem.
pub fn load(dir: &Path, commands: &[PathBuf]) -> Result<Vec<nightshift_act::Runbook>, ServerError> {
    let (runbooks, mut problems) = check_files(&[dir.to_path_buf()], Some(commands))?;
    let mut names = std::collections::BTreeSet::new();
    for (file, r) in &runbooks {
        if !names.insert(r.name.clone()) {
            problems.push(format!(
                "{}: name: another runbook is named {} too",
                file.display(),
                r.name
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ServerError::Runbooks(format!(
            "act.runbooks: {} has invalid runbooks (nightshift runbook validate shows the same):\n{}",
            dir.display(),
            problems.join("\n")
        )));
    }
    Ok(runbooks.into_iter().map(|(_, r)| r).collect())
}

/// Verifies the audit log's chain; its entry count and head hash, or the first broken entry.
pub fn verify_audit(path: &Path, key: Option<&[u8]>) -> Result<String, ServerError> {
    if !path.exists() {
        return Err(ServerError::Audit(format!(
            "there is no audit log at {} (act.audit_log)",
            path.display()
        )));
    }
    let verified = nightshift_act::audit::verify_keyed(path, key).map_err(|e| {
        ServerError::Audit(format!("cannot read the audit log {}: {e}", path.display()))
    })?;
    match verified {
        Ok(head) => Ok(format!(
            "{}: {} entries, chain intact{}; head {}\n",
            path.display(),
            head.entries,
            if key.is_some() { " under the key" } else { "" },
            head.hash
        )),
        Err(p) => Err(ServerError::Audit(format!("{}: {p}", path.display()))),
    }
}

/// Stands in for Prometheus and the store when a demo's action is run dry: a verification
/// holds when the replayed incident resolved within the verification's time of the action
/// (taken at the incident's opening). A PromQL check cannot be evaluated without Prometheus;
/// the replay's recovery of the incident's signals stands for it, and the summary says so.
struct ReplayVerifier {
    resolved_at: Option<nightshift_core::Millis>,
    deadline: nightshift_core::Millis,
}

impl nightshift_act::execute::Verifier for ReplayVerifier {
    fn holds<'a>(
        &'a self,
        _check: &'a nightshift_act::execute::Check,
        _incident: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, String>> + Send + 'a>>
    {
        Box::pin(async move { Ok(self.resolved_at.is_some_and(|t| t <= self.deadline)) })
    }
}

/// A dry run of `proposal`'s runbook for `incident`: every step rendered and checked, nothing
/// sent, and the verification evaluated against the replay.
pub fn dry_run(
    runtime: &tokio::runtime::Runtime,
    runbook: &nightshift_act::Runbook,
    proposal: &nightshift_act::Proposal,
    incident: &nightshift_core::Incident,
) -> nightshift_act::execute::Execution {
    use nightshift_act::execute::{Executor, Polling, execute};
    let executor = Executor {
        dry_run: true,
        ..Executor::default()
    };
    let within = runbook.verify.as_ref().map_or(0, |v| v.within_ms);
    let verifier = ReplayVerifier {
        resolved_at: incident.resolved_at,
        deadline: incident.opened_at + within,
    };
    // One evaluation: the replay is over, so waiting would not change the answer.
    let polling = Polling {
        every: std::time::Duration::from_millis(1),
        within: Some(std::time::Duration::ZERO),
    };
    let mut ex = runtime.block_on(execute(
        &executor,
        &verifier,
        runbook,
        &incident.id,
        &proposal.context,
        polling,
        &mut |_, _| {},
        &|| false,
    ));
    if matches!(ex.check, Some(nightshift_act::execute::Check::Promql(_))) {
        ex.summary = format!(
            "{} (in the replay, the incident's recovery stands for the PromQL check)",
            ex.summary
        );
    }
    ex
}
