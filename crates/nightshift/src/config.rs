//! The configuration file (`nightshift.yaml`). Today it holds the per-series detection rules;
//! every section is optional and an unknown key is refused, so a typo does not silently turn a
//! rule off.
//!
//! ```yaml
//! detect:
//!   overrides:
//!     - match: 'node_filesystem_used_ratio{mountpoint="/data"}'
//!       limit: 1
//!       alarm: up
//!     - match: '{job=~"batch-.*"}'
//!       off: [seasonal, level_shift]
//! ```

use anyhow::{Context, Result, anyhow};
use nightshift_detect::{OverrideRule, Overrides};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    detect: RawDetect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    /// Rules applied in order to every series they select; see [`nightshift_detect::overrides`].
    #[serde(default)]
    overrides: Vec<OverrideRule>,
}

/// A checked configuration.
#[derive(Debug, Default)]
pub struct Config {
    pub overrides: Overrides,
}

impl Config {
    /// Reads and checks `path`; errors name the file and the line, or the rule, at fault.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))
    }

    /// Like [`load`](Self::load), on text already read; errors do not name a file.
    pub fn parse(text: &str) -> Result<Self> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| syntax_error(&e))?
        };
        let overrides = Overrides::new(raw.detect.overrides)?;
        Ok(Self { overrides })
    }

    /// `--config` if given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }
}

/// The parser's message on one line, led by the line and column it points at.
fn syntax_error(e: &serde_saphyr::Error) -> anyhow::Error {
    use serde_saphyr::MessageFormatter;
    let message: String = serde_saphyr::DefaultMessageFormatter
        .format_message(e.without_snippet())
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match e.location().filter(|l| l.line() > 0) {
        Some(l) => anyhow!("line {}, column {}: {message}", l.line(), l.column()),
        None => anyhow!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_core::SeriesKey;
    use nightshift_detect::{AlarmDirection, EnsembleConfig};

    #[test]
    fn rules_are_read_and_applied() {
        let cfg = Config::parse(
            r#"
detect:
  overrides:
    - match: 'disk_used_ratio{mountpoint="/data"}'
      limit: 1
      alarm: up
      off: [seasonal]
"#,
        )
        .expect("valid");
        assert_eq!(cfg.overrides.len(), 1);
        let key = SeriesKey::new("disk_used_ratio", &[("mountpoint", "/data")]);
        let c = cfg.overrides.config_for(&key, EnsembleConfig::default());
        assert_eq!(
            (c.limit, c.alarm, c.weights[1]),
            (Some(1.0), AlarmDirection::Up, 0.0)
        );
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert!(Config::parse("").expect("empty").overrides.is_empty());
        assert!(
            Config::parse("detect: {}\n")
                .expect("no rules")
                .overrides
                .is_empty()
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            // A misspelt key, with its line.
            (
                "detect:\n  overrides:\n    - match: x\n      limt: 1\n",
                "line 4",
            ),
            ("detect:\n  overide: []\n", "line 2"),
            // Not a number, with its line.
            (
                "detect:\n  overrides:\n    - match: x\n      hit: high\n",
                "line 4",
            ),
            // A value out of range, with the rule.
            (
                "detect:\n  overrides:\n    - match: x\n      hit: 2\n",
                "override rule 1 (match: x): hit",
            ),
            (
                "detect:\n  overrides:\n    - match: 'rate(x[5m])'\n",
                "override rule 1",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Config::parse(text).expect_err(text));
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
