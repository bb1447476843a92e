//! PromQL and LogQL built from values by construction: every value goes in as a quoted string
//! literal, so that no label value, entity name or log text can end the literal and add to the
//! query (`"} or vector(1)` stays a value). Both languages take Go's string-literal escapes.

use std::fmt::Write;

/// `value` as a double-quoted PromQL/LogQL string literal.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    out.push_str(&escape(value));
    out.push('"');
    out
}

/// `value` escaped for the inside of a double-quoted literal (no quotes added).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A selector `metric{name="value",...}` (or `{...}` without a metric), each value quoted.
/// Label names and the metric name must be identifiers already (the ingest paths check them).
pub fn selector<'a>(metric: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = metric.to_string();
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push('=');
        out.push_str(&quote(v));
    }
    if !first {
        out.push('}');
    } else if metric.is_empty() {
        out.push_str("{}");
    }
    out
}

/// A LogQL query: the stream selector and a line filter that keeps lines containing `text`.
pub fn logql_contains<'a>(
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    text: &str,
) -> String {
    format!("{} |= {}", selector("", labels), quote(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_leave_their_literal() {
        let q = selector("up", [("job", "api\"} or vector(1) #"), ("x", "a\\b\nc")]);
        assert_eq!(q, r#"up{job="api\"} or vector(1) #",x="a\\b\nc"}"#);
        assert_eq!(selector("up", []), "up");
        assert_eq!(
            logql_contains([("service_name", "checkout")], "said `\"hi\"`"),
            r#"{service_name="checkout"} |= "said `\"hi\"`""#
        );
    }
}
