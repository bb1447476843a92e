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
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
    let scan = scan(path, key)?;
    Ok(match scan.problem {
        Some(p) => Err(p),
        None => Ok(scan.head),
    })
}

/// An open audit log, appended to one entry at a time (each written and synced before
/// `append` returns).
pub struct AuditLog {
    path: PathBuf,
    file: std::fs::File,
    head: Head,
    index: Arc<RwLock<AuditIndex>>,
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
        let Scan {
            head,
            index,
            problem,
            torn_at,
            unterminated,
        } = scan(path, key.as_deref()).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let repaired = match (problem, torn_at) {
            (None, _) => {
                if unterminated {
                    // A whole entry that only lacks its newline is kept, and the newline added.
                    file.write_all(b"\n").map_err(io)?;
                    file.sync_data().map_err(io)?;
                }
                None
            }
            (Some(_), Some(start)) => Some(move_torn_tail(path, &file, start).map_err(io)?),
            (Some(problem), None) => {
                return Err(AuditError::Broken {
                    path: path.display().to_string(),
                    problem,
                });
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            head,
            index: Arc::new(RwLock::new(index)),
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

    /// A reader of the entries written so far and from now on, for other threads.
    pub fn reader(&self) -> AuditReader {
        AuditReader {
            path: self.path.clone(),
            index: self.index.clone(),
        }
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
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(&entry, before + line.len() as u64);
        self.file.sync_data().map_err(io)?;
        if let Some(export) = &mut self.export {
            export(line.trim_end());
        }
        Ok((entry, line.trim_end().to_string()))
    }
}

/// Where each entry is in the file and which entries are about which action: built while the
/// chain is checked on opening and kept as entries are appended, so that a page of the log, or
/// one action's entries, is read without scanning the file. It takes 8 bytes per entry and 8 more
/// per entry about an action: it grows with the log, which is never cut.
#[derive(Debug)]
pub(crate) struct AuditIndex {
    /// Where each entry's line starts, then where the last one ends.
    starts: Vec<u64>,
    /// The entries about each action, in order.
    by_action: HashMap<String, Vec<u64>>,
    /// The last entry of each event (`kill_switch_on`, `approved`...): a few dozen names at most,
    /// all written by the code, never by telemetry.
    last_event: HashMap<String, u64>,
}

impl Default for AuditIndex {
    fn default() -> Self {
        Self {
            starts: vec![0],
            by_action: HashMap::new(),
            last_event: HashMap::new(),
        }
    }
}

impl AuditIndex {
    fn add(&mut self, entry: &AuditEntry, end: u64) {
        self.starts.push(end);
        if let Some(a) = &entry.action {
            self.by_action.entry(a.clone()).or_default().push(entry.seq);
        }
        match self.last_event.get_mut(&entry.event) {
            Some(seq) => *seq = entry.seq,
            None => {
                self.last_event.insert(entry.event.clone(), entry.seq);
            }
        }
    }

    /// How many entries the log holds.
    fn entries(&self) -> u64 {
        self.starts.len() as u64 - 1
    }

    /// The last entry of `event`, if there is one.
    fn last_of(&self, event: &str) -> Option<u64> {
        self.last_event.get(event).copied()
    }

    /// Up to `limit` entries after entry `after`, only `action`'s when given, and whether more
    /// follow them.
    fn page(&self, after: u64, action: Option<&str>, limit: usize) -> (Vec<u64>, bool) {
        let following: Box<dyn Iterator<Item = u64>> = match action {
            None => Box::new(after.saturating_add(1)..=self.entries()),
            Some(a) => {
                let seqs = self.by_action.get(a).map_or(&[][..], Vec::as_slice);
                let from = seqs.partition_point(|s| *s <= after);
                Box::new(seqs[from..].iter().copied())
            }
        };
        let mut seqs: Vec<u64> = following.take(limit.saturating_add(1)).collect();
        let more = seqs.len() > limit;
        seqs.truncate(limit);
        (seqs, more)
    }

    /// The bytes of entry `seq`'s line (without its newline).
    fn span(&self, seq: u64) -> Option<(u64, u64)> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        Some((*self.starts.get(i)?, self.starts.get(i + 1)? - 1))
    }
}

/// Reads an open log's entries through its index while it is being written.
#[derive(Clone)]
pub struct AuditReader {
    path: PathBuf,
    index: Arc<RwLock<AuditIndex>>,
}

/// A page of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    /// The entries' lines, as written.
    pub lines: Vec<String>,
    /// The last entry's `seq` when more entries follow: the `after` of the next page.
    pub next: Option<u64>,
}

impl AuditReader {
    fn index(&self) -> std::sync::RwLockReadGuard<'_, AuditIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The last entry of `event`, if there is one.
    pub fn last_of(&self, event: &str) -> Option<u64> {
        self.index().last_of(event)
    }

    /// Up to `limit` entries after entry `after` (only `action`'s when given), read from where
    /// the index says they are: a page costs its own entries, not the log's length.
    pub fn page(
        &self,
        after: u64,
        action: Option<&str>,
        limit: usize,
    ) -> std::io::Result<AuditPage> {
        use std::io::{Read, Seek, SeekFrom};
        let (seqs, spans, more) = {
            let index = self.index();
            let (seqs, more) = index.page(after, action, limit);
            let spans: Vec<(u64, u64)> = seqs.iter().filter_map(|s| index.span(*s)).collect();
            (seqs, spans, more)
        };
        let mut file = std::fs::File::open(&self.path)?;
        let mut lines = Vec::with_capacity(spans.len());
        // Consecutive entries are read in one go.
        let mut i = 0;
        while i < spans.len() {
            let mut j = i;
            while j + 1 < spans.len() && spans[j + 1].0 == spans[j].1 + 1 {
                j += 1;
            }
            let (from, to) = (spans[i].0, spans[j].1);
            file.seek(SeekFrom::Start(from))?;
            let mut bytes = vec![0; (to - from) as usize];
            file.read_exact(&mut bytes)?;
            let text = String::from_utf8(bytes).map_err(std::io::Error::other)?;
            lines.extend(text.split('\n').map(str::to_string));
            i = j + 1;
        }
        let next = if more { seqs.last().copied() } else { None };
        Ok(AuditPage { lines, next })
    }
}

/// A log read through once: its head and index up to the first line that does not verify.
struct Scan {
    head: Head,
    index: AuditIndex,
    problem: Option<AuditProblem>,
    /// Where the line that does not verify starts, when it is the last one and has no newline
    /// (a write cut short).
    torn_at: Option<u64>,
    /// The last line verified but has no newline.
    unterminated: bool,
}

/// Reads the log at `path` once, checking the chain and indexing each entry.
fn scan(path: &Path, key: Option<&[u8]>) -> std::io::Result<Scan> {
    let mut scan = Scan {
        head: Head {
            entries: 0,
            hash: GENESIS.into(),
        },
        index: AuditIndex::default(),
        problem: None,
        torn_at: None,
        unterminated: false,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(scan),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let (mut buf, mut at, mut line) = (Vec::new(), 0u64, 0u64);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(scan);
        }
        line += 1;
        let terminated = buf.last() == Some(&b'\n');
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let checked = match std::str::from_utf8(text) {
            Ok(t) => check_line(key, t, line, &scan.head),
            Err(_) => Err(AuditProblem {
                line,
                what: "not UTF-8: the line was damaged or is not an audit entry".into(),
            }),
        };
        match checked {
            Ok((entry, h)) => {
                at += n as u64;
                scan.index.add(&entry, at + u64::from(!terminated));
                scan.head = Head {
                    entries: entry.seq,
                    hash: h,
                };
                scan.unterminated = !terminated;
            }
            Err(p) => {
                scan.problem = Some(p);
                scan.torn_at = (!terminated).then_some(at);
                return Ok(scan);
            }
        }
    }
}

/// Moves the torn last line that starts at `start` to `<path>.torn` and cuts the log there: how
/// many bytes moved.
fn move_torn_tail(path: &Path, file: &std::fs::File, start: u64) -> std::io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let mut tail = Vec::new();
    let mut reader = std::fs::File::open(path)?;
    reader.seek(SeekFrom::Start(start))?;
    reader.read_to_end(&mut tail)?;
    let mut aside = path.as_os_str().to_owned();
    aside.push(".torn");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(PathBuf::from(aside))?
        .write_all(&tail)?;
    file.set_len(start)?;
    file.sync_data()?;
    Ok(tail.len())
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
    fn the_index_reads_pages_and_one_actions_entries_as_written_across_a_reopen() {
        let (_d, path) = log_of(7); // act-0 … act-6, one entry each
        let read = |r: &AuditReader, after, action, limit| r.page(after, action, limit).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        let reader = log.reader();
        for i in [2, 5] {
            let action = format!("act-{i}");
            log.append(50, "user:bob", "approved", Some(&action), "ok", Value::Null)
                .unwrap();
        }
        let all = lines(&path);
        assert_eq!(all.len(), 9);
        // Pages of 4 walk the log in order, each naming where the next starts.
        let first = read(&reader, 0, None, 4);
        assert_eq!((first.lines.as_slice(), first.next), (&all[..4], Some(4)));
        let second = read(&reader, 4, None, 4);
        assert_eq!(
            (second.lines.as_slice(), second.next),
            (&all[4..8], Some(8))
        );
        let last = read(&reader, 8, None, 4);
        assert_eq!((last.lines.as_slice(), last.next), (&all[8..], None));
        // One action's entries, whether or not they sit side by side.
        let act5 = read(&reader, 0, Some("act-5"), 10);
        assert_eq!(act5.lines, vec![all[5].clone(), all[8].clone()]);
        let after = read(&reader, 6, Some("act-5"), 1);
        assert_eq!((after.lines, after.next), (vec![all[8].clone()], None));
        assert!(read(&reader, 0, Some("act-404"), 10).lines.is_empty());
        assert_eq!(reader.last_of("approved"), Some(9));
        assert_eq!(reader.last_of("kill_switch_on"), None);
        // Reopened (the index rebuilt from the file, the last newline cut off), it reads the same.
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        log.append(60, "user:bob", "rejected", Some("act-2"), "no", Value::Null)
            .unwrap();
        let again = read(&log.reader(), 0, Some("act-2"), 10);
        assert_eq!(again.lines.len(), 3);
        assert_eq!(again.lines[..2], [all[2].clone(), all[7].clone()]);
        assert_eq!(read(&log.reader(), 0, None, 100).lines, lines(&path));
        assert!(verify(&path).unwrap().is_ok());
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
