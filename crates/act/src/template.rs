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

/// `source` rendered with `context`.
pub fn render(source: &str, context: &Value) -> Result<String, String> {
    let env = environment();
    let t = env.template_from_str(source).map_err(|e| describe(&e))?;
    t.render(context).map_err(|e| describe(&e))
}

/// Whether `expr` holds for `context`.
pub fn holds(expr: &str, context: &Value) -> Result<bool, String> {
    let env = environment();
    let e = env.compile_expression(expr).map_err(|e| describe(&e))?;
    e.eval(context)
        .map(|v| v.is_true())
        .map_err(|e| describe(&e))
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
