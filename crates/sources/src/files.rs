//! `logs.files` in the configuration: log files followed as they grow, as `tail -F` does. A
//! file is read from its end when first found; when it is rotated (a new file at the path) the
//! rest of the old one is read, then the new one from its start; when it is truncated, reading
//! starts over. Continuation lines (indented, `at ...`, `Caused by: ...`: a stack trace) join
//! the line before them when they arrive together. Each line's message (the `msg` of a JSON or logfmt line, else the line) and its
//! stated severity become a log record of the configured service.

use crate::Deliver;
use nightshift_core::{LogRecord, Resource, Severity};
use nightshift_ingest::logline::{line_severity, parts};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

/// How often files are checked for new lines and rotation.
const POLL: Duration = Duration::from_millis(250);
/// A line longer than this is cut (a runaway writer must not grow memory).
const MAX_LINE: usize = 64 * 1024;

/// One followed file.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub path: PathBuf,
    pub service: String,
}

struct Followed {
    file: std::fs::File,
    inode: u64,
    pos: u64,
    partial: Vec<u8>,
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Reads what was appended to `f` since the last read; complete lines go to `out`.
fn read_new(f: &mut Followed, out: &mut Vec<String>) -> std::io::Result<()> {
    let len = f.file.metadata()?.len();
    if len < f.pos {
        // Truncated in place: start over.
        f.pos = 0;
        f.partial.clear();
    }
    f.file.seek(SeekFrom::Start(f.pos))?;
    let mut buf = Vec::new();
    f.file.by_ref().take(8 << 20).read_to_end(&mut buf)?;
    f.pos += buf.len() as u64;
    f.partial.extend_from_slice(&buf);
    let mut start = 0;
    while let Some(nl) = f.partial[start..].iter().position(|b| *b == b'\n') {
        let line = &f.partial[start..start + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.push(String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]).into_owned());
        start += nl + 1;
    }
    f.partial.drain(..start);
    if f.partial.len() > MAX_LINE {
        out.push(String::from_utf8_lossy(&f.partial[..MAX_LINE]).into_owned());
        f.partial.clear();
    }
    Ok(())
}

fn open(path: &PathBuf, from_end: bool) -> Option<Followed> {
    let file = std::fs::File::open(path).ok()?;
    let m = file.metadata().ok()?;
    Some(Followed {
        inode: inode(&m),
        pos: if from_end { m.len() } else { 0 },
        file,
        partial: Vec::new(),
    })
}

/// Whether a line continues the one before it (a stack trace's frames and causes).
fn continues(line: &str) -> bool {
    line.starts_with([' ', '\t'])
        || line.starts_with("at ")
        || line.starts_with("Caused by:")
        || line.starts_with("...")
}

/// Joins continuation lines to the line before them, with a newline.
fn join_continuations(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for l in lines {
        match out.last_mut() {
            Some(prev) if continues(&l) && prev.len() + l.len() < MAX_LINE => {
                prev.push('\n');
                prev.push_str(&l);
            }
            _ => out.push(l),
        }
    }
    out
}

fn record(service: &str, line: &str) -> LogRecord {
    let (body, attributes) = parts(line);
    LogRecord {
        ts: crate::now_ms(),
        resource: Resource::service(service),
        severity: line_severity(line).unwrap_or(Severity::Info),
        body: body.into_owned(),
        attributes,
    }
}

/// Follows one file until the pipeline is gone.
async fn follow(src: FileSource, deliver: Deliver<Vec<LogRecord>>) {
    let mut current = open(&src.path, true);
    if current.is_none() {
        tracing::warn!(path = %src.path.display(), "log file not there yet; waiting for it");
    }
    loop {
        tokio::time::sleep(POLL).await;
        let mut lines = Vec::new();
        match &mut current {
            None => current = open(&src.path, false),
            Some(f) => {
                if let Err(e) = read_new(f, &mut lines) {
                    tracing::warn!(path = %src.path.display(), error = %e, "cannot read the log file");
                }
                // Rotated: a different file now sits at the path. The old one was read to its
                // end just above; the new one is read from its start.
                let rotated = std::fs::metadata(&src.path).is_ok_and(|m| inode(&m) != f.inode);
                if rotated {
                    if !f.partial.is_empty() {
                        lines.push(String::from_utf8_lossy(&f.partial).into_owned());
                    }
                    current = open(&src.path, false);
                    if let Some(f) = &mut current {
                        let _ = read_new(f, &mut lines);
                    }
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        let records = join_continuations(lines)
            .iter()
            .map(|l| record(&src.service, l))
            .collect();
        if !deliver(records).await {
            return;
        }
    }
}

/// Follows every file until the pipeline is gone.
pub async fn run(files: Vec<FileSource>, deliver: Deliver<Vec<LogRecord>>) {
    let mut tasks = tokio::task::JoinSet::new();
    for f in files {
        tasks.spawn(follow(f, deliver.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_traces_join_their_line() {
        let lines = [
            "ERROR request failed",
            "java.lang.IllegalStateException: pool exhausted",
            "    at com.example.Pool.get(Pool.java:42)",
            "\tat com.example.Api.handle(Api.java:7)",
            "Caused by: java.net.SocketTimeoutException",
            "... 12 more",
            "INFO next request",
        ]
        .map(String::from)
        .to_vec();
        let joined = join_continuations(lines);
        assert_eq!(joined.len(), 3);
        assert!(joined[1].starts_with("java.lang.IllegalStateException"));
        assert_eq!(joined[1].lines().count(), 5);
        assert_eq!(joined[2], "INFO next request");
    }
}
