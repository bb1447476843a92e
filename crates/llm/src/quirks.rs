//! Tolerance of what small and local models send instead of the documented shape: tool names
//! with a trailing `:` or a `functions.` prefix, arguments as a string, an object or nothing,
//! and tool calls written as JSON in the content (bare, fenced, or in `<tool_call>` tags).

use crate::chat::{ToolCall, ToolSpec};
use serde_json::{Map, Value};

/// A tool name as the model meant it.
pub fn tool_name(raw: &str) -> String {
    let name = raw.trim().trim_end_matches(':').trim();
    let name = name.strip_prefix("functions.").unwrap_or(name);
    name.trim_matches(['"', '`', '\'']).to_string()
}

/// Arguments as a JSON object: a JSON string is parsed, anything unreadable becomes `{}`.
pub fn arguments(raw: &Value) -> Value {
    match raw {
        Value::Object(_) => raw.clone(),
        Value::String(s) if s.trim().is_empty() => Value::Object(Map::new()),
        Value::String(s) => match serde_json::from_str::<Value>(s.trim()) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::Object(Map::new()),
        },
        _ => Value::Object(Map::new()),
    }
}

/// One tool call from its raw parts; a missing id becomes `call-N`.
pub(crate) fn tool_call(id: Option<&str>, index: usize, name: &str, args: &Value) -> ToolCall {
    ToolCall {
        id: id
            .filter(|i| !i.trim().is_empty())
            .map_or_else(|| format!("call-{index}"), str::to_string),
        name: tool_name(name),
        arguments: arguments(args),
    }
}

/// Tool calls written in the content as JSON, when they name a tool on offer: an object with
/// `name` (or `tool`, `function`) and `arguments` (or `parameters`, `args`, `input`), or a
/// list of them. Text that is not such a call gives `None`.
pub(crate) fn calls_in_content(content: &str, tools: &[ToolSpec]) -> Option<Vec<ToolCall>> {
    if tools.is_empty() {
        return None;
    }
    let text = unwrap_markup(content);
    let v: Value = serde_json::from_str(text).ok()?;
    let items = match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut calls = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let obj = item.as_object()?;
        let name = ["name", "tool", "function"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_str))?;
        let name = tool_name(name);
        if !tools.iter().any(|t| t.name == name) {
            return None;
        }
        let args = ["arguments", "parameters", "args", "input"]
            .iter()
            .find_map(|k| obj.get(*k))
            .unwrap_or(&Value::Null);
        calls.push(tool_call(None, i, &name, args));
    }
    (!calls.is_empty()).then_some(calls)
}

/// The JSON inside a ```` ``` ```` fence or `<tool_call>` tags, else the trimmed text.
fn unwrap_markup(content: &str) -> &str {
    let t = content.trim();
    if let Some(inner) = t
        .strip_prefix("<tool_call>")
        .and_then(|r| r.strip_suffix("</tool_call>"))
    {
        return inner.trim();
    }
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        return rest.strip_suffix("```").unwrap_or(rest).trim();
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "promql_query".into(),
            description: String::new(),
            parameters: json!({}),
        }]
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(tool_name("promql_query:"), "promql_query");
        assert_eq!(tool_name(" functions.promql_query "), "promql_query");
    }

    #[test]
    fn arguments_of_any_shape_become_an_object() {
        assert_eq!(arguments(&json!("{\"q\": \"up\"}")), json!({"q": "up"}));
        assert_eq!(arguments(&json!("not json")), json!({}));
        assert_eq!(arguments(&Value::Null), json!({}));
        assert_eq!(arguments(&json!("[1]")), json!({}));
    }

    #[test]
    fn calls_in_content_are_found_only_for_tools_on_offer() {
        let c = calls_in_content(
            "<tool_call>{\"name\": \"promql_query:\", \"parameters\": {\"query\": \"up\"}}</tool_call>",
            &tools(),
        )
        .unwrap();
        assert_eq!(c[0].name, "promql_query");
        assert_eq!(c[0].arguments, json!({"query": "up"}));
        assert!(calls_in_content("{\"name\": \"rm\", \"arguments\": {}}", &tools()).is_none());
        assert!(calls_in_content("The database is slow.", &tools()).is_none());
        assert!(calls_in_content("{\"root_cause\": \"db\"}", &tools()).is_none());
    }
}
