//! What a YAML parser error says, for the files Nightshift reads (configuration, scenarios,
//! runbooks): the message on one line, and where it points.

/// A YAML error: its message without the source snippet, control characters made spaces, and
/// its line and column when the parser knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl YamlError {
    pub fn of(e: &serde_saphyr::Error) -> Self {
        use serde_saphyr::MessageFormatter;
        let message = serde_saphyr::DefaultMessageFormatter
            .format_message(e.without_snippet())
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let loc = e.location();
        Self {
            line: loc.map(|l| l.line()).filter(|l| *l > 0),
            column: loc.map(|l| l.column()).filter(|c| *c > 0),
            message,
        }
    }
}
