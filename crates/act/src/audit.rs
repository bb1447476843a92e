//! The audit log: one JSON line per decision and action, append-only, each line chained to the
//! one before by SHA-256. A line is the entry's JSON with its `hash` as the last field, where
//! `hash` = SHA-256(previous hash ‖ the line's JSON up to that field); the first entry chains to
//! 64 zeros. Editing any byte of an entry, deleting or reordering entries, or inserting one
//! breaks the chain at that entry, and `verify` names it. (Cutting entries off the end leaves a
//! valid shorter chain: compare the head `verify` reports with an exported copy or the
//! `nightshift_audit_head` published while running.)
//!
//! Anyone who can write the file can also recompute a plain SHA-256 chain. With a key
//! (`act.audit_key_file`), each hash is HMAC-SHA256 under the key instead, so a rewritten file
//! no longer verifies unless the writer had the key too.
//!
//! A crash in the middle of a write can leave a torn last line (no newline, not an entry).
//! Opening the log repairs that: the torn bytes move to `<log>.torn` and the log goes on from
//! the last whole entry. A whole last line that does not verify is not torn but edited, and
//! the log is not opened.

use nightshift_core::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The hash the first entry chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One decision or action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3... with no gaps.
    pub seq: u64,
    pub ts: Millis,
    /// Who or what decided: `runbook:NAME`, `user:NAME`, `slack:USER`, `nightshift`.
    pub actor: String,
    /// What happened: `proposed`, `approved`, `rejected`, `refused`, `executed`, `verified`,
    /// `rolled_back`, `escalated`, `kill_switch`...
    pub event: String,
    /// The action's id, when the entry is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Why: the incident, the evidence and, when used, the LLM's reasoning.
    pub reason: String,
    /// The exact request sent and the result, or what was refused and why.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    /// The previous entry's hash.
    pub prev: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("audit log {path}: {problem}; it was not appended to (run `nightshift audit verify`)")]
    Broken { path: String, problem: AuditProblem },
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct AuditProblem {
    pub line: u64,
    pub what: String,
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Head {
    pub entries: u64,
    /// The last entry's hash: a copy kept elsewhere shows whether entries were cut off the end.
    pub hash: String,
}

const HASH_FIELD: &str = ",\"hash\":\"";

/// The chain's hash of an entry: SHA-256, or HMAC-SHA256 under `key`.
fn hash(key: Option<&[u8]>, prev: &str, body: &str) -> String {
    use hmac::Mac;
    let bytes: Vec<u8> = match key {
        None => {
            let mut h = Sha256::new();
            h.update(prev.as_bytes());
            h.update(body.as_bytes());
            h.finalize().to_vec()
        }
        Some(k) => {
            let mut m = <hmac::Hmac<Sha256> as Mac>::new_from_slice(k)
                .expect("HMAC takes a key of any length");
            m.update(prev.as_bytes());
            m.update(body.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one line against the chain so far: its entry and hash.
fn check_line(
    key: Option<&[u8]>,
    text: &str,
    line: u64,
    prev: &Head,
) -> Result<(AuditEntry, String), AuditProblem> {
    let bad = |what: String| AuditProblem { line, what };
    let at = text
        .rfind(HASH_FIELD)
        .ok_or_else(|| bad("no hash: the line was edited or is not an audit entry".into()))?;
    let (body, tail) = (&text[..at], &text[at + HASH_FIELD.len()..]);
    let claimed = tail
        .strip_suffix("\"}")
        .filter(|h| h.len() == 64)
        .ok_or_else(|| bad("the hash field is damaged".into()))?;
    let entry: AuditEntry = serde_json::from_str(&format!("{body}}}"))
        .map_err(|e| bad(format!("not an audit entry ({e})")))?;
    if entry.seq != prev.entries + 1 {
        return Err(bad(format!(
            "entry {} follows entry {}: entries were deleted, inserted or reordered",
            entry.seq, prev.entries
        )));
    }
    if entry.prev != prev.hash {
        return Err(bad(format!(
            "entry {} does not chain to the entry before it: that entry was edited or removed",
            entry.seq
        )));
    }
    let actual = hash(key, &prev.hash, body);
    if actual != claimed {
        let hint = match key {
            None if entry.seq == 1 => " (or the log was written with a key: verify with it)",
            Some(_) if entry.seq == 1 => {
                " (or the log was written with another key, or none: verify with that one)"
            }
            _ => "",
        };
        return Err(bad(format!(
            "entry {} was edited after it was written (its hash does not match its content){hint}",
            entry.seq
        )));
    }
    Ok((entry, actual))
}

/// Reads and checks a whole log; where it breaks, if it does.
pub fn verify(path: &Path) -> Result<Result<Head, AuditProblem>, std::io::Error> {
    verify_keyed(path, None)
}

/// [`verify`] for a log written with `key` (`act.audit_key_file`).
pub fn verify_keyed(
    path: &Path,
    key: Option<&[u8]>,
) -> Result<Result<Head, AuditProblem>, std::io::Error> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Ok(Head {
                entries: 0,
                hash: GENESIS.into(),
            }));
        }
        Err(e) => return Err(e),
    };
    let mut head = Head {
        entries: 0,
        hash: GENESIS.into(),
    };
    for (i, text) in BufReader::new(file).lines().enumerate() {
        let text = text?;
        match check_line(key, &text, i as u64 + 1, &head) {
            Ok((entry, h)) => {
                head = Head {
                    entries: entry.seq,
                    hash: h,
                }
            }
            Err(p) => return Ok(Err(p)),
        }
    }
    Ok(Ok(head))
}

/// An open audit log, appended to one entry at a time (each written and synced before
/// `append` returns).
pub struct AuditLog {
    path: PathBuf,
    file: std::fs::File,
    head: Head,
    key: Option<Vec<u8>>,
    /// The bytes of a torn last line moved aside on opening, when there was one.
    repaired: Option<usize>,
    /// Sees each line once it is written: an export to a SIEM.
    export: Option<Export>,
}

/// Where written lines are copied.
pub type Export = Box<dyn FnMut(&str) + Send>;

impl AuditLog {
    /// Opens (or creates) the log at `path`, checking the whole chain first: a broken log is
    /// not appended to.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_keyed(path, None)
    }

    /// [`AuditLog::open`] with entries chained by HMAC under `key`; a torn last line is moved
    /// to `<path>.torn` first (see [`AuditLog::repaired`]).
    pub fn open_keyed(path: &Path, key: Option<Vec<u8>>) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        let repaired = repair_torn_tail(path, key.as_deref()).map_err(io)?;
        let head = verify_keyed(path, key.as_deref())
            .map_err(io)?
            .map_err(|problem| AuditError::Broken {
                path: path.display().to_string(),
                problem,
            })?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            head,
            key,
            repaired,
            export: None,
        })
    }

    /// How many bytes of a torn last line were moved to `<log>.torn` on opening.
    pub fn repaired(&self) -> Option<usize> {
        self.repaired
    }

    /// Hands every line written from now on, as written, to `export` (a file or a webhook of
    /// a SIEM); a failing export never stops the log.
    pub fn export_to(&mut self, export: Export) {
        self.export = Some(export);
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Appends an entry; its `seq` and `prev` are set here. Gives the entry as written.
    pub fn append(
        &mut self,
        ts: Millis,
        actor: &str,
        event: &str,
        action: Option<&str>,
        reason: &str,
        detail: Value,
    ) -> Result<(AuditEntry, String), AuditError> {
        let entry = AuditEntry {
            seq: self.head.entries + 1,
            ts,
            actor: actor.into(),
            event: event.into(),
            action: action.map(str::to_string),
            reason: reason.into(),
            detail,
            prev: self.head.hash.clone(),
        };
        let io = |source| AuditError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let json = serde_json::to_string(&entry).map_err(|e| io(e.into()))?;
        // The body is the entry's JSON without its closing brace; the hash closes it.
        let body = json.strip_suffix('}').unwrap_or(&json);
        let h = hash(self.key.as_deref(), &self.head.hash, body);
        let line = format!("{body}{HASH_FIELD}{h}\"}}\n");
        let before = self.file.metadata().map_err(io)?.len();
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            // No partial line left behind: the chain stays valid for the next entry.
            let _ = self.file.set_len(before);
            return Err(io(e));
        }
        // The line is in the file from here on: the chain goes on from it even if it cannot be
        // made durable (then the error says so, and the caller decides nothing: the log may
        // hold a decision not taken, never a change without its entry).
        self.head = Head {
            entries: entry.seq,
            hash: h.clone(),
        };
        self.file.sync_data().map_err(io)?;
        if let Some(export) = &mut self.export {
            export(line.trim_end());
        }
        Ok((entry, line.trim_end().to_string()))
    }
}

/// Moves a torn last line (one without its newline that is not a whole entry) to
/// `<path>.torn`, truncating the log to its last whole line: how many bytes moved.
fn repair_torn_tail(path: &Path, key: Option<&[u8]>) -> std::io::Result<Option<usize>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    let start = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let tail = &bytes[start..];
    // A whole entry that only lacks its newline is kept, and the newline added.
    let whole = std::str::from_utf8(tail).ok().is_some_and(|t| {
        let before = std::str::from_utf8(&bytes[..start]).unwrap_or("");
        let mut head = Head {
            entries: 0,
            hash: GENESIS.into(),
        };
        for (i, l) in before.lines().enumerate() {
            match check_line(key, l, i as u64 + 1, &head) {
                Ok((e, h)) => {
                    head = Head {
                        entries: e.seq,
                        hash: h,
                    }
                }
                Err(_) => return false,
            }
        }
        check_line(key, t, head.entries + 1, &head).is_ok()
    });
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    if whole {
        file.write_all(b"\n")?;
        file.sync_data()?;
        return Ok(None);
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(".torn");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(PathBuf::from(aside))?
        .write_all(tail)?;
    file.set_len(start as u64)?;
    file.sync_data()?;
    Ok(Some(tail.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log_of(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..n {
            log.append(
                1_000 + i as i64,
                "runbook:oom",
                "executed",
                Some(&format!("act-{i}")),
                "OOMKilled \"checkout\"",
                json!({"request": {"argv": ["kubectl", "set", "resources"]}, "ratio": 1.5}),
            )
            .unwrap();
        }
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_log_verifies_and_reopens_where_it_ended() {
        let (_d, path) = log_of(5);
        let head = verify(&path).unwrap().unwrap();
        assert_eq!(head.entries, 5);
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.head(), &head);
        let (e, _) = log
            .append(9, "user:alice", "approved", None, "ok", Value::Null)
            .unwrap();
        assert_eq!(e.seq, 6);
        assert_eq!(e.prev, head.hash);
        assert_eq!(verify(&path).unwrap().unwrap().entries, 6);
    }

    #[test]
    fn any_edit_deletion_or_reordering_is_found_at_its_entry() {
        let (_d, path) = log_of(6);
        let original = lines(&path);

        let mut edited = original.clone();
        edited[2] = edited[2].replace("OOMKilled", "OOMKilld");
        write(&path, &edited);
        let p = verify(&path).unwrap().unwrap_err();
        assert_eq!(p.line, 3, "{p}");
        assert!(p.what.contains("entry 3 was edited"), "{p}");
        assert!(
            AuditLog::open(&path).is_err(),
            "a broken log is not appended to"
        );

        let mut deleted = original.clone();
        deleted.remove(3);
        write(&path, &deleted);
        let p = verify(&path).unwrap().unwrap_err();
        assert_eq!(p.line, 4, "{p}");
        assert!(p.what.contains("entry 5 follows entry 3"), "{p}");

        let mut swapped = original.clone();
        swapped.swap(1, 2);
        write(&path, &swapped);
        assert_eq!(verify(&path).unwrap().unwrap_err().line, 2);

        // An edit that recomputes the entry's own hash still breaks the next entry's link.
        let mut forged = original.clone();
        let prev = verify_prefix(&original[..1]);
        let body = original[1][..original[1].rfind(HASH_FIELD).unwrap()].replace("act-1", "act-X");
        forged[1] = format!("{body}{HASH_FIELD}{}\"}}", hash(None, &prev, &body));
        write(&path, &forged);
        let p = verify(&path).unwrap().unwrap_err();
        assert_eq!(p.line, 3, "{p}");
        assert!(p.what.contains("does not chain"), "{p}");

        write(&path, &original);
        assert_eq!(verify(&path).unwrap().unwrap().entries, 6);
    }

    /// The hash at the end of `lines`, trusted.
    fn verify_prefix(lines: &[String]) -> String {
        let l = &lines[lines.len() - 1];
        l[l.rfind(HASH_FIELD).unwrap() + HASH_FIELD.len()..l.len() - 2].to_string()
    }

    #[test]
    fn a_keyed_log_does_not_verify_once_rewritten_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = b"a secret only the server has".to_vec();
        let mut log = AuditLog::open_keyed(&path, Some(key.clone())).unwrap();
        for i in 0..3 {
            log.append(i, "user:alice", "approved", None, "ok", Value::Null)
                .unwrap();
        }
        drop(log);
        assert_eq!(verify_keyed(&path, Some(&key)).unwrap().unwrap().entries, 3);
        assert!(verify(&path).unwrap().is_err());
        // A forger who rewrites every entry with plain SHA-256 makes a chain that verifies
        // without the key, and fails with it.
        let mut prev = GENESIS.to_string();
        let forged: Vec<String> = lines(&path)
            .iter()
            .map(|l| {
                let body = l[..l.rfind(HASH_FIELD).unwrap()]
                    .replace("alice", "mallory")
                    .replace(&prev_of(l), &prev);
                let h = hash(None, &prev, &body);
                prev = h.clone();
                format!("{body}{HASH_FIELD}{h}\"}}")
            })
            .collect();
        write(&path, &forged);
        assert!(verify(&path).unwrap().is_ok());
        let p = verify_keyed(&path, Some(&key)).unwrap().unwrap_err();
        assert_eq!(p.line, 1, "{p}");
        assert!(AuditLog::open_keyed(&path, Some(key)).is_err());
    }

    fn prev_of(line: &str) -> String {
        let v: Value = serde_json::from_str(line).unwrap();
        v["prev"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_torn_last_line_is_moved_aside_and_the_log_goes_on() {
        let (_d, path) = log_of(3);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"seq\":4,\"ts\":1,\"act");
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify(&path).unwrap().is_err());
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.repaired(), Some(20));
        assert_eq!(log.head().entries, 3);
        log.append(9, "nightshift", "repaired", None, "torn line", Value::Null)
            .unwrap();
        assert_eq!(verify(&path).unwrap().unwrap().entries, 4);
        let torn = std::fs::read_to_string(path.with_extension("jsonl.torn")).unwrap();
        assert_eq!(torn, "{\"seq\":4,\"ts\":1,\"act");

        // A whole entry missing only its newline is kept.
        let (_d, path) = log_of(2);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.repaired(), None);
        assert_eq!(log.head().entries, 2);

        // A whole last line that was edited is not torn: the log is not opened.
        let (_d, path) = log_of(2);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("act-1", "act-X");
        std::fs::write(&path, text).unwrap();
        assert!(AuditLog::open(&path).is_err());
    }
}
