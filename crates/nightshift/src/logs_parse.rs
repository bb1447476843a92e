//! `nightshift logs parse [FILE]`: the templates of a log file (or standard input), with their
//! counts and two example lines each. JSON lines and logfmt lines are read for their message
//! field (`msg`, `message`, `log`); other lines are taken whole.

use anyhow::{Context, Result};
use nightshift_ingest::logline::message;
use nightshift_logs::{MinerConfig, TemplateMiner};
use serde::Serialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// One template found.
#[derive(Debug, Serialize)]
pub struct ParsedTemplate {
    pub id: u64,
    pub count: u64,
    pub template: String,
    pub examples: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ParseReport {
    pub lines: u64,
    /// Time spent mining (reading and message extraction excluded), and lines per second.
    pub mining_seconds: f64,
    pub lines_per_s: f64,
    pub templates: Vec<ParsedTemplate>,
}

/// Mines every line of `input` (a path, or standard input for `None` or `-`).
pub fn parse(input: Option<&Path>, quiet: bool) -> Result<ParseReport> {
    let (reader, size): (Box<dyn BufRead>, u64) = match input.filter(|p| p.as_os_str() != "-") {
        Some(p) => {
            let f =
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            (Box::new(std::io::BufReader::new(f)), size)
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin())), 0),
    };
    let bar = crate::progress_bar(size, "bytes", quiet || size < 1 << 20);
    let mut miner = TemplateMiner::new(MinerConfig::default());
    let mut examples: HashMap<u64, Vec<String>> = HashMap::new();
    let mut lines = 0u64;
    let mut mining = std::time::Duration::ZERO;
    // Lines are mined in batches, timed once a batch, so the clock is not read twice a line.
    const BATCH: usize = 4096;
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    let mut mine = |batch: &mut Vec<String>, miner: &mut TemplateMiner| {
        let started = std::time::Instant::now();
        let ids: Vec<u64> = batch.iter().map(|m| miner.add(m).template_id).collect();
        mining += started.elapsed();
        for (m, id) in batch.drain(..).zip(ids) {
            let ex = examples.entry(id).or_default();
            if ex.len() < 2 {
                ex.push(m);
            }
        }
        // Examples of templates the miner evicted go too, so memory stays at the cap.
        if examples.len() > 2 * miner.len().max(1024) {
            examples.retain(|id, _| miner.template(*id).is_some());
        }
    };
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("line {}: not valid UTF-8 text", i + 1))?;
        bar.inc(line.len() as u64 + 1);
        let msg = message(&line);
        if msg.trim().is_empty() {
            continue;
        }
        lines += 1;
        batch.push(msg.into_owned());
        if batch.len() == BATCH {
            mine(&mut batch, &mut miner);
        }
    }
    mine(&mut batch, &mut miner);
    bar.finish_and_clear();
    let mut templates: Vec<ParsedTemplate> = miner
        .templates()
        .map(|t| ParsedTemplate {
            id: t.id,
            count: t.count,
            template: t.text(),
            examples: examples.remove(&t.id).unwrap_or_default(),
        })
        .collect();
    templates.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
    let mining_seconds = mining.as_secs_f64();
    Ok(ParseReport {
        lines,
        mining_seconds,
        lines_per_s: lines as f64 / mining_seconds.max(1e-9),
        templates,
    })
}

pub fn render(r: &ParseReport) -> String {
    let mut t = crate::render::table(vec!["count", "template", "example"]);
    for p in &r.templates {
        t.add_row(vec![
            p.count.to_string(),
            p.template.clone(),
            p.examples.first().cloned().unwrap_or_default(),
        ]);
    }
    format!(
        "{t}\n{} lines, {} templates, mined at {:.0} lines/s\n",
        r.lines,
        r.templates.len(),
        r.lines_per_s
    )
}
