//! Runbook templating with `minijinja`, sandboxed: no loader (so no `include` or `import` of
//! files), no access to the environment or the process, strict about undefined values, and a
//! fuel limit so that a template cannot loop for long.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Instructions one rendering may execute.
const FUEL: u64 = 100_000;

fn environment() -> Environment<'static> {
    // The default filters and tests, and no loader: `include`, `import` and `extends` fail.
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(16);
    env
}

/// Whether `source` is a template that compiles; the parser's message when not.
pub fn check(source: &str) -> Result<(), String> {
    environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Whether `expr` is an expression that compiles (a `when:` condition).
pub fn check_expression(expr: &str) -> Result<(), String> {
    environment()
        .compile_expression(expr)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// The top-level variables `source` reads (`target`, `labels`, `steps`...); none when it does
/// not compile.
pub fn variables(source: &str) -> std::collections::BTreeSet<String> {
    let env = environment();
    env.template_from_str(source)
        .map(|t| t.undeclared_variables(false).into_iter().collect())
        .unwrap_or_default()
}

/// What marks an output not known yet (in a plan or a dry run), followed by the step's id.
const UNKNOWN: &str = "\u{0}unknown output of ";

/// The output of step `id` before it runs: rendered as `(output of ID)`, and so is any field of
/// it (`steps.scale.output.previous`), so that a plan of steps that use earlier outputs renders.
pub fn unknown_output(id: &str) -> Value {
    Value::String(format!("{UNKNOWN}{id}"))
}

/// An output not known yet: every attribute or item of it is itself.
#[derive(Debug)]
struct Unknown(String);

impl minijinja::value::Object for Unknown {
    fn get_value(self: &std::sync::Arc<Self>, _key: &minijinja::Value) -> Option<minijinja::Value> {
        Some(minijinja::Value::from_object(Unknown(self.0.clone())))
    }

    fn render(self: &std::sync::Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(output of {})", self.0)
    }
}

/// `context` as the template engine takes it, each [`unknown_output`] made an [`Unknown`].
fn engine_value(context: &Value) -> minijinja::Value {
    match context {
        Value::String(s) => match s.strip_prefix(UNKNOWN) {
            Some(id) => minijinja::Value::from_object(Unknown(id.to_string())),
            None => minijinja::Value::from(s.as_str()),
        },
        Value::Array(items) => items.iter().map(engine_value).collect(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), engine_value(v)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into(),
        other => minijinja::Value::from_serialize(other),
    }
}

/// `source` rendered with `context`.
pub fn render(source: &str, context: &Value) -> Result<String, String> {
    let env = environment();
    let t = env.template_from_str(source).map_err(|e| describe(&e))?;
    t.render(engine_value(context)).map_err(|e| describe(&e))
}

/// Whether `expr` holds for `context`.
pub fn holds(expr: &str, context: &Value) -> Result<bool, String> {
    let env = environment();
    let e = env.compile_expression(expr).map_err(|e| describe(&e))?;
    e.eval(engine_value(context))
        .map(|v| v.is_true())
        .map_err(|e| describe(&e))
}

/// Checks a query template (`verify.promql`): it compiles, and every `{{ ... }}` sits inside a
/// double-quoted string literal, where [`render_query`] escapes what it writes. So a value can
/// only ever be a value: `"} or vector(1)` in a label stays inside its literal.
pub fn check_query(source: &str) -> Result<(), String> {
    check(source)?;
    if source.contains("{%") {
        return Err(
            "statements ({% ... %}) are not allowed in a query; use {{ ... }} inside \"...\""
                .into(),
        );
    }
    let (mut quoted, mut escaped) = (false, false);
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !quoted && bytes[i..].starts_with(b"{{") {
            return Err(format!(
                "the value at column {} is outside a quoted string: write label=\"{{{{ ... }}}}\" so that it is escaped",
                i + 1
            ));
        }
        if quoted && bytes[i..].starts_with(b"{{") {
            // Skip the expression: quotes inside it are the template's, not the query's.
            match source[i..].find("}}") {
                Some(end) => {
                    i += end + 2;
                    continue;
                }
                None => return Err("an unclosed {{".into()),
            }
        }
        match bytes[i] {
            b'\\' if quoted && !escaped => escaped = true,
            b'"' if !escaped => quoted = !quoted,
            _ => escaped = false,
        }
        if bytes[i] != b'\\' {
            escaped = false;
        }
        i += 1;
    }
    Ok(())
}

/// `source` rendered with `context`, every value written escaped for the inside of a PromQL
/// or LogQL string literal ([`check_query`] makes sure each sits in one).
pub fn render_query(source: &str, context: &Value) -> Result<String, String> {
    let mut env = environment();
    env.set_formatter(|out, _state, value| {
        let text = match value.as_str() {
            Some(s) => s.to_string(),
            None => value.to_string(),
        };
        out.write_str(&nightshift_core::query::escape(&text))
            .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
    });
    let t = env.template_from_str(source).map_err(|e| describe(&e))?;
    t.render(engine_value(context)).map_err(|e| describe(&e))
}

/// Whether `text` has template syntax in it.
pub fn is_templated(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_from_the_context_only() {
        let ctx = json!({"target": {"service": "checkout", "replicas": 3}});
        assert_eq!(
            render("deploy/{{ target.service }}", &ctx).unwrap(),
            "deploy/checkout"
        );
        assert_eq!(render("{{ target.replicas * 2 }}", &ctx).unwrap(), "6");
        assert!(holds("target.replicas < 5", &ctx).unwrap());
        // Undefined values are errors, not empty strings.
        assert!(render("{{ target.namespace }}", &ctx).is_err());
        // No files, no environment.
        assert!(render("{% include '/etc/passwd' %}", &ctx).is_err());
        assert!(render("{{ env }}", &ctx).is_err());
        // No endless work.
        let e = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &ctx,
        )
        .unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        assert!(check("{{ broken").is_err());
        assert!(check_expression("a ==").is_err());
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_values_are_escaped_and_must_be_quoted() {
        let q = r#"min(up{job="{{ target.name }}"}) == 1"#;
        assert!(check_query(q).is_ok());
        let out = render_query(
            q,
            &json!({"target": {"name": "api\"}) or vector(1) or up{x=\""}}),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"min(up{job="api\"}) or vector(1) or up{x=\""}) == 1"#
        );
        assert!(check_query("up > {{ target.threshold }}").is_err());
        assert!(check_query(r#"up{job=""{{ x }}}"#).is_err());
        // An escaped quote does not end the literal.
        assert!(check_query(r#"up{job="a\"{{ x }}"}"#).is_ok());
        assert!(check_query(r#"up{job="{% if 1 %}a{% endif %}"}"#).is_err());
    }
}
