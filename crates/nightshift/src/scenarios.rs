//! Finds scenarios by built-in name, file or folder, and reads them with errors that name the file.

use anyhow::{Context, Result, bail};
use nightshift_sim::{Scenario, builtin_scenarios};
use std::path::Path;

/// Resolves one `--scenario` argument: `all`, a built-in name (with or without `.yaml`), a file
/// or a folder of `.yaml` files.
pub fn resolve(arg: &str) -> Result<Vec<Scenario>> {
    if arg == "all" {
        return builtins();
    }
    let path = Path::new(arg);
    if path.is_dir() {
        return nightshift_server::yaml_files::in_folder(path, "scenario")?
            .iter()
            .map(|f| load_file(f))
            .collect();
    }
    if path.is_file() {
        return Ok(vec![load_file(path)?]);
    }
    let stem = arg.trim_end_matches(".yaml");
    for (file, yaml) in builtin_scenarios() {
        if file.trim_end_matches(".yaml") == stem {
            return Ok(vec![Scenario::parse(yaml, &format!("scenarios/{file}"))?]);
        }
    }
    let names: Vec<&str> = builtin_scenarios()
        .iter()
        .map(|(f, _)| f.trim_end_matches(".yaml"))
        .collect();
    bail!(
        "no scenario named {arg:?}: give a file, a folder, `all`, or one of: {}",
        names.join(", ")
    )
}

pub fn resolve_all(args: &[String]) -> Result<Vec<Scenario>> {
    if args.is_empty() {
        return builtins();
    }
    let mut out = Vec::new();
    for a in args {
        out.extend(resolve(a)?);
    }
    Ok(out)
}

fn builtins() -> Result<Vec<Scenario>> {
    builtin_scenarios()
        .into_iter()
        .map(|(file, yaml)| Ok(Scenario::parse(yaml, &format!("scenarios/{file}"))?))
        .collect()
}

fn load_file(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read scenario file {}", path.display()))?;
    Ok(Scenario::parse(&text, &path.display().to_string())?)
}

/// `count` random scenarios from consecutive seeds starting at `seed`.
pub fn generated(seed: u64, count: u64) -> Result<Vec<Scenario>> {
    (seed..seed + count)
        .map(|s| {
            Ok(Scenario::parse(
                &nightshift_sim::generate::random_scenario(s),
                &format!("generated-{s}"),
            )?)
        })
        .collect()
}
