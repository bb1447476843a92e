//! The `command` provider: an allow-listed program run with an argument vector, never through
//! a shell. Every templated value is one argument, and it must match the grammar of what it
//! names (a Kubernetes name, a number, a duration...); it can never start with `-`, so it never
//! becomes an option, and it can never carry a control character. What the values say is
//! therefore never interpreted: `x; rm -rf /` is refused as a Kubernetes name, and even a
//! program that itself ran a shell would receive only names that mean nothing to one.

use nightshift_core::resource::{is_k8s_label, is_k8s_name};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a templated argument names, and so which values it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgKind {
    /// A Kubernetes object name: a DNS-1123 subdomain (lower-case letters, digits, `-`, `.`;
    /// at most 253).
    K8sName,
    /// A namespace, container or label name: a DNS-1123 label (at most 63, no `.`).
    K8sLabel,
    /// A whole number, optionally signed.
    Integer,
    /// A duration such as `30s`, `5m`, `2h`.
    Duration,
    /// A host name or address.
    Host,
    /// A plain word: letters, digits and `_ . : / = @ + -`, not starting with `-`.
    Word,
}

impl ArgKind {
    pub const ALL: &'static str = "k8s_name, k8s_label, integer, duration, host, word";

    /// Whether `value` is one of these; what is wrong with it when not.
    pub fn check(self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return Err("is empty".into());
        }
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(format!("contains the control character {c:?}"));
        }
        if value.starts_with('-') {
            return Err("starts with '-', which would make it an option".into());
        }
        let ok = match self {
            ArgKind::K8sName => is_k8s_name(value),
            ArgKind::K8sLabel => is_k8s_label(value),
            ArgKind::Integer => {
                let digits = value.strip_prefix('+').unwrap_or(value);
                !digits.is_empty()
                    && digits.len() <= 18
                    && digits.bytes().all(|b| b.is_ascii_digit())
            }
            ArgKind::Duration => {
                let unit = value.trim_start_matches(|c: char| c.is_ascii_digit());
                unit.len() < value.len() && matches!(unit, "ms" | "s" | "m" | "h")
            }
            ArgKind::Host => {
                value.len() <= 253
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
            }
            ArgKind::Word => {
                value.len() <= 1024
                    && value.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'_' | b'.' | b':' | b'/' | b'=' | b'@' | b'+' | b'-')
                    })
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("is not a {}", self.name()))
        }
    }

    fn name(self) -> &'static str {
        match self {
            ArgKind::K8sName => "Kubernetes name",
            ArgKind::K8sLabel => "Kubernetes label name (namespace, container)",
            ArgKind::Integer => "whole number",
            ArgKind::Duration => "duration (30s, 5m, 2h)",
            ArgKind::Host => "host name or address",
            ArgKind::Word => "plain word",
        }
    }
}

/// Why a command did not run, or ran and failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("{program} is not on the allow-list of programs (act.commands)")]
    NotAllowed { program: String },
    #[error("argument {index} ({value:?}) {problem}")]
    BadArgument {
        index: usize,
        value: String,
        problem: String,
    },
    #[error("cannot start {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("{program} ran past its {seconds} s and was killed")]
    Timeout { program: String, seconds: u64 },
}

/// A command to run: the program and its argument vector, each value already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// One argument as a runbook gives it: literal text, or a rendered template with the kind of
/// value it must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(String),
    Value { value: String, kind: ArgKind },
}

impl CommandSpec {
    /// The command `program args`, if `program` is on `allowed` (absolute paths) and every
    /// value is what its kind says.
    pub fn new(program: &str, args: &[Arg], allowed: &[PathBuf]) -> Result<Self, CommandError> {
        let path = Path::new(program);
        if !path.is_absolute() || !allowed.iter().any(|a| a == path) {
            return Err(CommandError::NotAllowed {
                program: program.to_string(),
            });
        }
        let mut argv = Vec::with_capacity(args.len());
        for (index, a) in args.iter().enumerate() {
            match a {
                Arg::Literal(text) => argv.push(text.clone()),
                Arg::Value { value, kind } => {
                    kind.check(value)
                        .map_err(|problem| CommandError::BadArgument {
                            index,
                            value: value.clone(),
                            problem,
                        })?;
                    argv.push(value.clone());
                }
            }
        }
        Ok(Self {
            program: path.to_path_buf(),
            args: argv,
        })
    }

    /// Runs the command with an empty environment (but for a fixed `PATH`), no standard input,
    /// and a time limit; its exit code and output, each stream cut at 64 KiB.
    pub fn run(&self, timeout: Duration) -> Result<Outcome, CommandError> {
        let program = self.program.display().to_string();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CommandError::Spawn {
                program: program.clone(),
                message: e.to_string(),
            })?;
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = std::io::Read::read_to_end(&mut p, &mut out);
                }
                out.truncate(64 * 1024);
                String::from_utf8_lossy(&out).into_owned()
            })
        };
        let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if started.elapsed() >= timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CommandError::Timeout {
                        program,
                        seconds: timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    return Err(CommandError::Spawn {
                        program,
                        message: e.to_string(),
                    });
                }
            }
        };
        Ok(Outcome {
            code: status.code(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}
