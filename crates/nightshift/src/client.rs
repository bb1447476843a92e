//! Client commands against a running `serve`: `ask` and `explain`.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::time::Duration;

/// Sends one request to the server and gives its JSON answer; errors say what to do.
fn request(
    server: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let url = format!("{}{path}", server.trim_end_matches('/'));
    runtime.block_on(async {
        // An LLM investigation may take minutes.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .context("cannot build the HTTP client")?;
        let mut req = client.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.with_context(|| {
            format!("cannot reach {url}; is `nightshift serve` running there? (--server URL)")
        })?;
        let status = r.status();
        let text = r.text().await.context("the server's answer broke off")?;
        if !status.is_success() {
            bail!("{url} answered {status}: {}", text.trim());
        }
        serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))
    })
}

fn lines_of(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `nightshift ask QUESTION`: the answer, its evidence and the queries that show it.
pub fn ask(server: &str, question: &str, llm: bool, as_json: bool) -> Result<String> {
    let v = request(
        server,
        reqwest::Method::POST,
        "/api/v1/ask",
        Some(json!({"question": question, "llm": llm})),
    )?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let mut out = String::new();
    out.push_str(v["answer"].as_str().unwrap_or(""));
    out.push('\n');
    if let Some(note) = v["note"].as_str() {
        out.push_str(&format!("\nnote: {note}\n"));
    }
    if let Some(ev) = v["evidence"].as_array().filter(|e| !e.is_empty()) {
        out.push_str("\nevidence:\n");
        for e in ev {
            out.push_str(&format!(
                "  [{}] {}\n",
                e["id"].as_str().unwrap_or(""),
                e["summary"].as_str().unwrap_or("")
            ));
        }
    }
    let queries = lines_of(&v, "queries");
    if !queries.is_empty() {
        out.push_str("\nqueries:\n");
        for q in queries {
            out.push_str(&format!("  {q}\n"));
        }
    }
    out.push_str(&format!(
        "\n(answered by {})\n",
        match v["source"].as_str() {
            Some("llm") => "the LLM investigator, its citations checked",
            _ => "Nightshift's deterministic findings",
        }
    ));
    Ok(out)
}

/// `nightshift explain ID`: the incident's root cause, why, and what to do.
pub fn explain(server: &str, id: &str, llm: bool, as_json: bool) -> Result<String> {
    let path = format!("/api/v1/incidents/{id}/explanation?llm={llm}");
    let v = request(server, reqwest::Method::GET, &path, None)?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let c = &v["conclusion"];
    let mut out = format!(
        "{id}: root cause {} ({}), confidence {:.2}\n\n{}\n\nrecommended: {}\nevidence: {}\n",
        c["root_cause"].as_str().unwrap_or("unknown"),
        c["cause"].as_str().unwrap_or(""),
        c["confidence"].as_f64().unwrap_or(0.0),
        c["summary"].as_str().unwrap_or(""),
        c["action"].as_str().unwrap_or(""),
        lines_of(c, "evidence").join(", "),
    );
    if let Some(note) = c["note"].as_str() {
        out.push_str(&format!("note: {note}\n"));
    }
    Ok(out)
}
