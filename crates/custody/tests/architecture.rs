//! The architecture gate (`scripts/check-architecture`) holds for the tree
//! as it is, and bites: a forbidden crate arrow or an unlisted module cycle
//! makes it fail, naming the crate and the rule.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn check(arch: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("scripts/check-architecture"));
    if let Some(a) = arch {
        cmd.arg("--arch").arg(a);
    }
    let out = cmd
        .output()
        .expect("run python3 scripts/check-architecture");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn doc() -> String {
    std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md")
}

/// The row of `crate` in the ALLOWED-DEPS table.
fn row(doc: &str, krate: &str) -> String {
    let start = doc
        .find("<!-- ALLOWED-DEPS-START -->")
        .expect("table start");
    let end = doc.find("<!-- ALLOWED-DEPS-END -->").expect("table end");
    doc[start..end]
        .lines()
        .find(|l| l.starts_with(&format!("| `{krate}` |")))
        .unwrap_or_else(|| panic!("no row for {krate}"))
        .to_owned()
}

#[test]
fn the_tree_follows_its_documented_architecture() {
    let (ok, text) = check(None);
    assert!(ok, "scripts/check-architecture fails on the tree:\n{text}");
}

#[test]
fn a_forbidden_crate_arrow_fails_the_gate() {
    let doc = doc();
    // custody-client needs custody-tuf; forbid it in a copy of the table.
    let old = row(&doc, "custody-client");
    let forbidden = doc.replace(&old, "| `custody-client` | log |");
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("ARCHITECTURE.md");
    std::fs::write(&arch, forbidden).unwrap();
    let (ok, text) = check(Some(&arch));
    assert!(!ok, "the gate passed a forbidden arrow:\n{text}");
    assert!(
        text.contains("custody-client depends on custody-tuf"),
        "the refusal names the crate and the arrow: {text}"
    );
}

#[test]
fn a_crate_missing_from_the_table_fails_the_gate() {
    let doc = doc();
    let old = row(&doc, "custody-log");
    let missing = doc.replace(&format!("{old}\n"), "");
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("ARCHITECTURE.md");
    std::fs::write(&arch, missing).unwrap();
    let (ok, text) = check(Some(&arch));
    assert!(
        !ok,
        "the gate passed a crate the table does not list:\n{text}"
    );
    assert!(
        text.contains("crate custody-log is not in the ALLOWED-DEPS table"),
        "{text}"
    );
}

#[test]
fn an_unlisted_module_cycle_fails_the_gate() {
    let doc = doc();
    let start = doc.find("<!-- KNOWN-CYCLES-START -->");
    let end = doc.find("<!-- KNOWN-CYCLES-END -->");
    let (Some(start), Some(end)) = (start, end) else {
        // No admitted cycles: the tree has none, and the first test proves it.
        return;
    };
    let listed = &doc[start..end];
    let Some(first) = listed.lines().find(|l| l.starts_with("- ")) else {
        return;
    };
    let without = doc.replace(&format!("{first}\n"), "");
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("ARCHITECTURE.md");
    std::fs::write(&arch, without).unwrap();
    let (ok, text) = check(Some(&arch));
    assert!(
        !ok,
        "the gate passed a cycle the doc does not admit:\n{text}"
    );
    assert!(
        text.contains("modules import each other in a circle"),
        "{text}"
    );
}
