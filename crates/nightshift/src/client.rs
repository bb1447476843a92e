//! Client commands against a running `serve`: `ask`, `explain`, and the remediation
//! commands `actions`, `approve`, `reject`, `kill-switch` and `runbook dry-run`.

use anyhow::{Context, Result, bail};
use nightshift_server::remote::Remote;
use serde_json::{Value, json};
use std::time::Duration;

/// Sends one request to the server, with its token, and gives its JSON answer; errors say what
/// to do.
fn request(
    server: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let url = format!("{}{path}", server.url);
    runtime.block_on(async {
        // An LLM investigation may take minutes.
        let client = server
            .http_client(Duration::from_secs(600))
            .map_err(anyhow::Error::msg)?;
        let mut req = client.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = &server.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.with_context(|| {
            format!("cannot reach {url}; is `nightshift serve` running there? (--server URL)")
        })?;
        let status = r.status();
        let text = r.text().await.context("the server's answer broke off")?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "{url} answered {status}: {} (pass a token with --token or $NIGHTSHIFT_TOKEN)",
                text.trim()
            );
        }
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
pub fn ask(server: &Remote, question: &str, llm: bool, as_json: bool) -> Result<String> {
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
pub fn explain(server: &Remote, id: &str, llm: bool, as_json: bool) -> Result<String> {
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

/// One line per action: id, state, incident, runbook (mode, risk), target, and what became of it.
fn action_line(a: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let p = &a["proposal"];
    let t = &p["target"];
    let target = match t["namespace"].as_str() {
        Some(ns) => format!("{ns}/{}", s(&t["name"])),
        None => s(&t["name"]),
    };
    let outcome = a["execution"]["summary"]
        .as_str()
        .or(a["note"].as_str())
        .unwrap_or("");
    format!(
        "{:<9} {:<9} {:<9} {} ({}, {} risk) on {target}{}{}",
        s(&a["id"]),
        s(&a["state"]),
        s(&p["incident"]),
        s(&p["runbook"]),
        s(&p["mode"]),
        s(&p["risk"]),
        a["decided_by"]
            .as_str()
            .map(|by| format!(", by {by}"))
            .unwrap_or_default(),
        if outcome.is_empty() {
            String::new()
        } else {
            format!(": {outcome}")
        },
    )
}

/// `nightshift incidents`: the server's incidents, newest first, one line each.
pub fn incidents(server: &Remote, status: Option<&str>, as_json: bool) -> Result<String> {
    let path = match status {
        Some(s) => format!(
            "/api/v1/incidents?{}",
            serde_urlencoded::to_string([("status", s)]).context("cannot encode the query")?
        ),
        None => "/api/v1/incidents".to_string(),
    };
    let v = request(server, reqwest::Method::GET, &path, None)?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok("no incidents\n".into());
    }
    let mut out = String::new();
    for i in &list {
        out.push_str(&format!(
            "{:<10} {:<13} {:<9} {}\n",
            i["id"].as_str().unwrap_or("?"),
            i["status"].as_str().unwrap_or("?"),
            i["priority"].as_str().unwrap_or("?"),
            i["title"].as_str().unwrap_or(""),
        ));
    }
    Ok(out)
}

/// `nightshift actions`: the server's actions, newest first.
pub fn actions(
    server: &Remote,
    incident: Option<&str>,
    state: Option<&str>,
    as_json: bool,
) -> Result<String> {
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(i) = incident {
        query.push(("incident", i));
    }
    if let Some(s) = state {
        query.push(("state", s));
    }
    let q = serde_urlencoded::to_string(&query).context("cannot encode the query")?;
    let path = if q.is_empty() {
        "/api/v1/actions".to_string()
    } else {
        format!("/api/v1/actions?{q}")
    };
    let v = request(server, reqwest::Method::GET, &path, None)?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok("no actions\n".into());
    }
    let mut out = String::new();
    for a in &list {
        out.push_str(&action_line(a));
        out.push('\n');
        if a["state"] == "pending" {
            for step in a["proposal"]["steps"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "          {} {}\n",
                    step["uses"].as_str().unwrap_or(""),
                    step["with"]
                ));
            }
        }
    }
    Ok(out)
}

/// `nightshift approve ID` / `nightshift reject ID`: the decision, as the server took it.
pub fn decide(
    server: &Remote,
    id: &str,
    approve: bool,
    reason: Option<&str>,
    as_json: bool,
) -> Result<String> {
    let verb = if approve { "approve" } else { "reject" };
    let body = reason.map(|r| json!({"reason": r}));
    let v = request(
        server,
        reqwest::Method::POST,
        &format!("/api/v1/actions/{id}/{verb}"),
        body,
    )?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    Ok(format!("{}\n", action_line(&v)))
}

/// `nightshift kill-switch on|off`.
pub fn kill_switch(server: &Remote, on: bool) -> Result<String> {
    let v = request(
        server,
        reqwest::Method::POST,
        "/api/v1/kill-switch",
        Some(json!({ "on": on })),
    )?;
    let cancelled = lines_of(&v, "cancelled");
    Ok(format!(
        "kill switch {}{}\n",
        if v["on"].as_bool() == Some(true) {
            "on: no action runs"
        } else {
            "off"
        },
        if cancelled.is_empty() {
            String::new()
        } else {
            format!("; cancelled {}", cancelled.join(", "))
        }
    ))
}

/// `nightshift runbook dry-run INCIDENT`: what each runbook answering the incident (or the one
/// named) would send, nothing sent; its verification as it stands now.
pub fn dry_run(
    server: &Remote,
    incident: &str,
    runbook: Option<&str>,
    as_json: bool,
) -> Result<String> {
    let body = runbook.map(|r| json!({ "runbook": r }));
    let v = request(
        server,
        reqwest::Method::POST,
        &format!("/api/v1/incidents/{incident}/dry-run"),
        body,
    )?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let runs = v.as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        return Ok(format!(
            "no runbook answers {incident} (name one with --runbook to rehearse it anyway)\n"
        ));
    }
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = String::new();
    for run in &runs {
        let p = &run["proposal"];
        out.push_str(&format!(
            "dry run of {} for {incident} on {} (mode {}, risk {}){}\n",
            s(&p["runbook"]),
            s(&p["target"]["name"]),
            s(&p["mode"]),
            s(&p["risk"]),
            if run["answers"] == true {
                ""
            } else {
                "; its trigger does not match this incident"
            },
        ));
        if let Some(gate) = run["gate"].as_str() {
            out.push_str(&format!("  would be refused now: {gate}\n"));
        }
        let r = &run["rehearsal"];
        let records = |key: &str| -> Vec<nightshift_act::execute::StepRecord> {
            serde_json::from_value(r[key].clone()).unwrap_or_default()
        };
        for line in crate::render::dry_steps(&records("steps"), &records("rollback")) {
            out.push_str(&format!("  · {line}\n"));
        }
        // The proposal's verify reads "WHAT within TIME".
        let verify = s(&p["verify"]);
        match (r["holds_now"].as_bool(), r["check_error"].as_str()) {
            (_, Some(e)) => out.push_str(&format!("  verify {verify}: cannot be evaluated: {e}\n")),
            (Some(h), None) => out.push_str(&format!(
                "  verify {verify}: {} now\n",
                if h { "holds" } else { "does not hold" }
            )),
            (None, None) => out.push_str("  no verification\n"),
        }
    }
    Ok(out)
}
