//! What every provider call gives back: the exact request it sent (secrets masked), for the
//! audit log, and its output, which later steps read as `steps.ID.output`.

use serde::Serialize;
use serde_json::Value;

/// A provider call that went through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepOutcome {
    /// What was sent: method, URL or path, body; secrets replaced by `"***"`.
    pub request: Value,
    pub output: Value,
}

/// A provider call that failed, or was refused before anything was sent (`request` is then
/// `None`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub request: Option<Value>,
    pub message: String,
}

impl StepError {
    /// Refused before sending anything.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            request: None,
            message: message.into(),
        }
    }

    /// Sent `request`, which failed.
    pub fn failed(request: Value, message: impl Into<String>) -> Self {
        Self {
            request: Some(request),
            message: message.into(),
        }
    }
}

/// The text argument `key` of a step's rendered arguments (numbers given as text too).
pub fn text_arg(with: &Value, key: &str) -> Option<String> {
    match with.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The text argument `key`, which the runbook's schema makes required.
pub fn required(with: &Value, key: &str) -> Result<String, StepError> {
    text_arg(with, key)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| StepError::refused(format!("argument {key} is missing or empty")))
}
