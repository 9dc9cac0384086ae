//! `custody fleet …` and `custody server create-repo / sign / publish`
//! against a real `custody serve` with two real agent processes: every
//! fleet subcommand, its table and its `--json` shape, and the errors a
//! user sees (the server's code and message, missing credentials).

mod agent_support;

use std::process::Output;

use agent_support::{payload, start, token, Agent, Server, Setup};
use serde_json::Value;

/// `custody fleet ARGS` as the holder of `credential`, with a token minted
/// once from it in the environment, as a script of many commands does (the
/// server rate-limits token requests per address).
fn fleet(s: &Server, credential: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_custody"))
        .env("CUSTODY_SERVER", &s.url)
        .env("CUSTODY_TOKEN", token(s, credential))
        .env_remove("CUSTODY_CREDENTIAL")
        .arg("fleet")
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(s: &Server, cred: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(&fleet(s, cred, &a), &a.join(" "));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{a:?}: not JSON ({e}): {out}"))
}

#[test]
fn every_fleet_subcommand_against_a_real_server_and_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let cred = setup.fleet.clone();
    setup.stage_release(&s, "fw/a-1.img", &payload("a-1", 4096), "board-a", 1);
    setup.stage_release(&s, "fw/a-2.img", &payload("a-2", 4096), "board-a", 2);
    setup.publish(&s);

    // The credential itself in the environment works too (one token each).
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_custody"))
        .env("CUSTODY_SERVER", &s.url)
        .env("CUSTODY_CREDENTIAL", &cred)
        .env_remove("CUSTODY_TOKEN")
        .args(["fleet", "whoami", "--json"])
        .output()
        .unwrap();
    let who = ok(&o, "whoami");
    assert!(who.contains("fleet:admin"), "{who}");

    // Enrolment tokens: the secrets on stdout, one per line.
    let v = json(&s, &cred, &["tokens", "--group", "lab", "--count", "2"]);
    let tokens: Vec<String> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!((tokens.len(), v["group"].as_str()), (2, Some("lab")));
    let agents: Vec<Agent> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| Agent::enroll(&s, tmp.path(), &format!("d{i}"), "board-a", t, "true"))
        .collect();

    // Devices: table, JSON, filters.
    let table = ok(&fleet(&s, &cred, &["devices"]), "devices");
    assert!(table.starts_with("DEVICE"), "{table}");
    for a in &agents {
        assert!(table.contains(&a.id[..12]), "{table}");
    }
    let v = json(&s, &cred, &["devices", "--hardware-id", "board-a"]);
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let v = json(&s, &cred, &["devices", "--hardware-id", "board-z"]);
    assert_eq!(v, Value::Array(vec![]));
    let out = ok(&fleet(&s, &cred, &["devices", "--group", "nope"]), "empty");
    assert_eq!(out.trim(), "no devices match");
    // Paging: one per page, --all follows the pages.
    let v = json(&s, &cred, &["devices", "--limit", "1", "--all"]);
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");

    // A rollout that completes, watched to the end.
    let v = json(
        &s,
        &cred,
        &[
            "rollout",
            "create",
            "--id",
            "r1",
            "--target",
            "fw/a-1.img",
            "--hardware-id",
            "board-a",
            "--min-sample",
            "1",
        ],
    );
    assert_eq!(
        (v["id"].as_str(), v["state"].as_str()),
        (Some("r1"), Some("active"))
    );
    for a in &agents {
        let (code, r) = a.check();
        assert_eq!(code, 0, "{r}");
        assert_eq!(a.installed(), Some(("fw/a-1.img".to_owned(), 1)));
    }
    let o = fleet(&s, &cred, &["rollout", "watch", "r1", "--interval", "1"]);
    let out = ok(&o, "watch r1");
    assert!(out.contains("completed"), "{out}");
    let v = json(&s, &cred, &["rollout", "status", "r1"]);
    assert_eq!(v["installed_devices"], 2, "{v}");
    let out = ok(&fleet(&s, &cred, &["rollout", "status", "r1"]), "status");
    assert!(out.contains("2 of 2 selected run it (100.0%)"), "{out}");
    let list = ok(&fleet(&s, &cred, &["rollout", "list"]), "list");
    assert!(
        list.contains("r1") && list.contains("fw/a-1.img@1"),
        "{list}"
    );

    // The hosted repositories, with their newest publish.
    let v = json(&s, &cred, &["repos"]);
    assert_eq!(v[0]["name"], "main", "{v}");
    assert!(
        v[0]["last_publish"]["version"].as_u64().unwrap() >= 1,
        "{v}"
    );
    let out = ok(&fleet(&s, &cred, &["repos"]), "repos");
    assert!(out.contains("REPOSITORY") && out.contains("main"), "{out}");

    // One device in detail, then pinned, suspended and resumed.
    let id = agents[0].id.as_str();
    let v = json(&s, &cred, &["device", id]);
    assert_eq!(v["installed"]["target"], "fw/a-1.img", "{v}");
    assert_eq!(v["reports"][0]["outcome"], "installed", "{v}");
    // Its install report is an entry of the transparency log, proved:
    // signed checkpoint, inclusion, and the device's signature on the
    // manifest the entry carries.
    let report = &v["reports"][0];
    assert!(report["log_index"].as_u64().is_some(), "{v}");
    assert_eq!(report["proof"]["verified"], true, "{v}");
    assert_eq!(report["proof"]["manifest"], "verified", "{v}");
    assert_eq!(v["log_key_pinned"], false, "{v}");
    let out = ok(&fleet(&s, &cred, &["device", id]), "device");
    assert!(out.contains("installed    fw/a-1.img@1"), "{out}");
    assert!(out.contains("install reports"), "{out}");
    assert!(out.contains("✓ in checkpoint"), "{out}");
    // Against the key of another log, the same entry does not verify: the
    // command says which report and fails.
    let other = custody_log::NoteSigner::generate("other.example/log").unwrap();
    let other_key = other.verifier_key().to_vkey();
    let o = fleet(&s, &cred, &["device", id, "--log-key", &other_key]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("✗"), "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("did not verify"),
        "{o:?}"
    );
    let v = json(
        &s,
        &cred,
        &["pin", id, "--target", "fw/a-1.img", "--reason", "lab unit"],
    );
    assert_eq!(v["target"], "fw/a-1.img");
    json(&s, &cred, &["unpin", id]);
    let v = json(&s, &cred, &["suspend", id, "--reason", "bench test"]);
    assert_eq!(v["effective_status"], "suspended", "{v}");
    let v = json(&s, &cred, &["resume", id]);
    assert_eq!(v["effective_status"], "active", "{v}");

    // A staged rollout paused, resumed and aborted; watch ends with exit 1.
    json(
        &s,
        &cred,
        &[
            "rollout",
            "create",
            "--id",
            "r2",
            "--target",
            "fw/a-2.img",
            "--hardware-id",
            "board-a",
            "--stages",
            "50,100",
        ],
    );
    let v = json(&s, &cred, &["rollout", "pause", "r2", "--reason", "hold"]);
    assert_eq!(
        (v["state"].as_str(), v["reason"].as_str()),
        (Some("paused"), Some("hold"))
    );
    let o = fleet(
        &s,
        &cred,
        &[
            "rollout",
            "watch",
            "r2",
            "--interval",
            "1",
            "--exit-on-pause",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let v = json(&s, &cred, &["rollout", "resume", "r2"]);
    assert_eq!(v["state"], "active");
    let v = json(
        &s,
        &cred,
        &["rollout", "abort", "r2", "--reason", "bad build"],
    );
    assert_eq!(v["state"], "aborted");
    let o = fleet(&s, &cred, &["rollout", "watch", "r2"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");

    // Yank with remediation; who installed what; attacks.
    let v = json(
        &s,
        &cred,
        &[
            "yank",
            "--target",
            "fw/a-2.img",
            "--replacement",
            "fw/a-1.img",
            "--reason",
            "boot loop",
        ],
    );
    assert_eq!(v["replacement"]["target"], "fw/a-1.img", "{v}");
    assert_eq!(v["repo"], "main", "{v}");
    let v = json(&s, &cred, &["yanks"]);
    assert_eq!(v[0]["target"], "fw/a-2.img", "{v}");
    assert_eq!(v[0]["replacement"]["target"], "fw/a-1.img", "{v}");
    let v = json(&s, &cred, &["installs", "--target", "fw/a-1.img"]);
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    assert!(json(&s, &cred, &["attacks"]).is_array());
    assert!(json(&s, &cred, &["rollback-auth", "list"]).is_array());

    // Credentials: the secret once, list, rotate, revoke.
    let admin = s.credential.clone().unwrap();
    let v = json(
        &s,
        &admin,
        &[
            "credential",
            "create",
            "--name",
            "viewer",
            "--scope",
            "fleet:admin",
        ],
    );
    let cid = v["id"].as_str().unwrap().to_owned();
    assert!(v["secret"].as_str().unwrap().starts_with("cst1."), "{v}");
    let out = ok(&fleet(&s, &admin, &["credential", "list"]), "list");
    assert!(out.contains("viewer") && !out.contains("cst1."), "{out}");
    let v = json(&s, &admin, &["credential", "rotate", &cid]);
    assert_eq!(v["generation"], 2, "{v}");
    ok(
        &fleet(&s, &admin, &["credential", "revoke", &cid]),
        "revoke",
    );

    // The trust-stack inventory of the server: its hosted repository's
    // roles and keys and the credentials, for a holder of inventory:read;
    // refused (exit 2, naming the scope) without it.
    let v = json(
        &s,
        &admin,
        &[
            "credential",
            "create",
            "--name",
            "inventory",
            "--scope",
            "inventory:read",
        ],
    );
    let inv_cred = v["secret"].as_str().unwrap().to_owned();
    let inventory = |cred: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custody"))
            .env("CUSTODY_TOKEN", token(&s, cred))
            .env_remove("CUSTODY_CREDENTIAL")
            .args(["inventory", "--server", &s.url, "--json"])
            .output()
            .unwrap()
    };
    let o = inventory(&inv_cred);
    let v: Value = serde_json::from_str(&ok(&o, "inventory --server")).unwrap();
    let items = v["items"].as_array().unwrap();
    for kind in [
        "root",
        "targets",
        "snapshot",
        "timestamp",
        "key",
        "credential",
    ] {
        assert!(items.iter().any(|i| i["kind"] == kind), "{kind}: {v}");
    }
    let root = items.iter().find(|i| i["kind"] == "root").unwrap();
    assert_eq!(root["scope"], "main", "{root}");
    assert_eq!(root["keys"][0]["backend"], "offline", "{root}");
    assert!(
        items
            .iter()
            .any(|i| i["kind"] == "credential" && i["name"] == "inventory"),
        "{v}"
    );
    let o = inventory(&cred);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("inventory:read"),
        "{o:?}"
    );

    // The audit trail has all of it.
    let v = json(&s, &admin, &["audit", "--limit", "200"]);
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for a in ["target.yank", "credential.revoke"] {
        assert!(
            actions.iter().any(|x| x.contains(a)),
            "{a} not in {actions:?}"
        );
    }

    let v = json(&s, &cred, &["decommission", &agents[1].id]);
    assert_eq!(v["effective_status"], "decommissioned", "{v}");

    // Errors: the server's code and message; no credentials named.
    let o = fleet(&s, &cred, &["device", &"0".repeat(64)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("404") && err.contains("not enrolled"), "{err}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_custody"))
        .env("CUSTODY_SERVER", &s.url)
        .env_remove("CUSTODY_CREDENTIAL")
        .env_remove("CUSTODY_TOKEN")
        .args(["fleet", "devices"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CUSTODY_CREDENTIAL"), "{err}");
}

/// A hosted repository's whole life through `custody server`: create with
/// offline key files, sign the drafts, upload, publish (waiting for the
/// targets signature, exit 3), sign, and it is live.
#[test]
fn server_create_sign_upload_publish_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let admin = s.credential.clone().unwrap();
    let dir = tmp.path();
    // As whom: a token minted once per credential (the server rate-limits
    // token requests per address).
    let run_as = |cred: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custody"))
            .current_dir(dir)
            .env("CUSTODY_SERVER", &s.url)
            .env("CUSTODY_TOKEN", token(&s, cred))
            .env_remove("CUSTODY_CREDENTIAL")
            .env("KP", "offline key passphrase")
            .args(args)
            .output()
            .unwrap()
    };
    let run = |args: &[&str]| run_as(&admin, args);
    // Separated duties, minted with the CLI.
    let mint = |name: &str, scopes: &[&str]| -> String {
        let mut a = vec!["fleet", "credential", "create", "--name", name, "--json"];
        for sc in scopes {
            a.extend(["--scope", sc]);
        }
        let v: Value = serde_json::from_str(&ok(&run(&a), "credential create")).unwrap();
        v["secret"].as_str().unwrap().to_owned()
    };
    let signer = mint("signer", &["role:sign:root@app", "role:sign:targets@app"]);
    let ci = mint("ci", &["target:upload@app", "target:stage@app"]);
    let publisher = mint("publisher", &["repo:publish@app"]);
    for role in ["root", "targets"] {
        let file = format!("{role}.pem");
        ok(
            &run(&[
                "key",
                "generate",
                "--type",
                "ed25519",
                "--out",
                &file,
                "--passphrase-env",
                "KP",
            ]),
            "key generate",
        );
    }
    let out = ok(
        &run(&[
            "server",
            "create-repo",
            "--repo",
            "app",
            "--root-key",
            "root.pem",
            "--targets-key",
            "targets.pem",
            "--passphrase-env",
            "KP",
        ]),
        "create-repo",
    );
    assert!(out.contains("online timestamp"), "{out}");
    assert!(
        out.contains("next: custody server sign --repo app --role root"),
        "{out}"
    );
    let sign = |role: &str| {
        let key = format!("{role}.pem");
        run_as(
            &signer,
            &[
                "server",
                "sign",
                "--repo",
                "app",
                "--role",
                role,
                "--key",
                &key,
                "--passphrase-env",
                "KP",
                "--json",
            ],
        )
    };
    let v: Value = serde_json::from_str(&ok(&sign("root"), "sign root")).unwrap();
    assert_eq!(v["merged"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(v["published"].is_null(), "{v}");
    let v: Value = serde_json::from_str(&ok(&sign("targets"), "sign targets")).unwrap();
    assert!(v["published"]["version"].is_i64(), "{v}");

    std::fs::write(dir.join("fw.bin"), b"firmware 1.0").unwrap();
    ok(
        &run_as(
            &ci,
            &[
                "server",
                "upload",
                "--repo",
                "app",
                "fw.bin",
                "--name",
                "fw/fw-1.0.bin",
            ],
        ),
        "upload",
    );
    let o = run_as(&publisher, &["server", "publish", "--repo", "app"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("custody server sign --repo app --role targets"),
        "{err}"
    );
    let v: Value = serde_json::from_str(&ok(&sign("targets"), "sign targets")).unwrap();
    assert_eq!(
        v["published"]["added"],
        serde_json::json!(["fw/fw-1.0.bin"]),
        "{v}"
    );
    // Nothing new: live at once with the online keys.
    let out = ok(
        &run_as(&publisher, &["server", "publish", "--repo", "app"]),
        "publish",
    );
    assert!(out.contains("published \"app\""), "{out}");
    // A key that is not the role's: the server's refusal, named.
    let o = run_as(
        &signer,
        &[
            "server",
            "sign",
            "--repo",
            "app",
            "--role",
            "targets",
            "--key",
            "root.pem",
            "--passphrase-env",
            "KP",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("422"), "{err}");
}
