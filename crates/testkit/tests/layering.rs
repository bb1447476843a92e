//! The workspace's layering, read from `cargo metadata` and checked against the crate table of
//! `docs/architecture.md`: a crate imports only crates listed above it, and a pure crate (I/O
//! `no`) imports no I/O crate. Dev-dependencies are free: tests may use any crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that do I/O or bring an async runtime; a pure crate must not depend on one.
const IO_CRATES: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "tower",
    "sqlx",
    "kube",
    "rmcp",
    "async-nats",
    "indicatif",
    "lettre",
    "mio",
];

/// One row of the table: the crate's folder under `crates/` and whether it is pure.
struct Layer {
    dir: String,
    pure: bool,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The crate table of `docs/architecture.md`, in order.
fn layers(doc: &str) -> Vec<Layer> {
    doc.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `crates/")?;
            let dir = rest.split('`').next()?.to_string();
            let io = l
                .trim_end()
                .trim_end_matches('|')
                .rsplit('|')
                .next()?
                .trim();
            Some(Layer {
                dir,
                pure: io == "no",
            })
        })
        .collect()
}

/// Each workspace crate's folder name, with its non-dev dependencies (by package name).
fn workspace() -> BTreeMap<String, (String, Vec<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut crates = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest
            .parent()
            .and_then(Path::file_name)
            .expect("a crate folder")
            .to_string_lossy()
            .to_string();
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].as_str() != Some("dev"))
            .map(|d| d["name"].as_str().expect("a name").to_string())
            .collect();
        crates.insert(p["name"].as_str().expect("name").to_string(), (dir, deps));
    }
    crates
}

/// What breaks the layering: a line per wrong import.
fn violations(layers: &[Layer], crates: &BTreeMap<String, (String, Vec<String>)>) -> Vec<String> {
    let position = |dir: &str| layers.iter().position(|l| l.dir == dir);
    let dir_of = |package: &str| crates.get(package).map(|(dir, _)| dir.as_str());
    let mut wrong = Vec::new();
    for (name, (dir, deps)) in crates {
        let Some(at) = position(dir) else {
            wrong.push(format!(
                "{name} (crates/{dir}) is not in the crate table of docs/architecture.md"
            ));
            continue;
        };
        for dep in deps {
            if let Some(dep_dir) = dir_of(dep) {
                match position(dep_dir) {
                    Some(d) if d < at => {}
                    _ => wrong.push(format!(
                        "{name} imports {dep}, which is not listed above it in docs/architecture.md"
                    )),
                }
            } else if layers[at].pure && IO_CRATES.contains(&dep.as_str()) {
                wrong.push(format!("{name} is pure but imports the I/O crate {dep}"));
            }
        }
    }
    wrong
}

#[test]
fn every_crate_imports_only_crates_above_it_and_pure_crates_no_io() {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md"))
        .expect("docs/architecture.md is readable");
    let layers = layers(&doc);
    assert!(
        layers.len() >= 17,
        "the crate table has {} rows",
        layers.len()
    );
    let crates = workspace();
    for l in &layers {
        assert!(
            crates.values().any(|(dir, _)| *dir == l.dir),
            "docs/architecture.md lists crates/{}, which the workspace does not have",
            l.dir
        );
    }
    let wrong = violations(&layers, &crates);
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_catches_an_upward_import_and_io_in_a_pure_crate() {
    let layers = layers(
        "| `crates/core` | model | no |\n| `crates/store` | db | yes |\n| `crates/nightshift` | bin | yes |\n",
    );
    let crate_ = |dir: &str, deps: &[&str]| {
        (
            dir.to_string(),
            deps.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        )
    };
    let mut crates = BTreeMap::new();
    crates.insert(
        "nightshift-core".into(),
        crate_("core", &["tokio", "serde"]),
    );
    crates.insert(
        "nightshift-store".into(),
        crate_("store", &["nightshift-core", "nightshift", "tokio"]),
    );
    crates.insert(
        "nightshift".into(),
        crate_("nightshift", &["nightshift-store"]),
    );
    let wrong = violations(&layers, &crates);
    assert_eq!(
        wrong,
        vec![
            "nightshift-core is pure but imports the I/O crate tokio".to_string(),
            "nightshift-store imports nightshift, which is not listed above it in docs/architecture.md"
                .to_string(),
        ]
    );
}
