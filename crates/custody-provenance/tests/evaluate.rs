//! Every policy rule fed the attack it stops.

mod common;

use std::collections::BTreeMap;

use common::*;
use custody_provenance::{
    evaluate, evaluate_for_role, Decision, Policy, PolicyError, Reason, SourceOrigin,
};
use serde_json::{json, Value};

struct Fixture {
    ci: Signer,
    policy: Policy,
    artifact: Vec<u8>,
}

fn fixture() -> Fixture {
    let ci = Signer::new();
    let policy = Policy::from_toml("test.toml", &policy_toml(&[("ci", &ci)], 1)).unwrap();
    Fixture {
        ci,
        policy,
        artifact: b"firmware image v1".to_vec(),
    }
}

fn digests(b: &[u8]) -> BTreeMap<String, String> {
    BTreeMap::from([("sha256".to_owned(), sha256_hex(b))])
}

fn refused(r: Result<Decision, custody_provenance::Refused>) -> (Option<String>, Reason, String) {
    let e = r.expect_err("must be refused");
    let msg = e.to_string();
    (e.rule, e.reason, msg)
}

#[test]
fn accepts_github_actions_provenance() {
    let f = fixture();
    let env = envelope(&statement(&sha256_hex(&f.artifact)), &[&f.ci]);
    let d = evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    )
    .unwrap();
    let Decision::Attested(a) = d else {
        panic!("{d:?}")
    };
    assert_eq!(a.rule, "firmware");
    assert_eq!(a.envelope_sha256, sha256_hex(&env));
    assert_eq!(a.builder, BUILDER);
    assert_eq!(a.build_type, GHA);
    assert_eq!(a.source.repository, REPO);
    assert_eq!(a.source.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(a.source.origin, SourceOrigin::WorkflowParameters);
    assert_eq!(a.signers, vec!["ci".to_owned()]);
    assert_eq!(a.subject_name.as_deref(), Some("app.bin"));
    assert_eq!(
        a.custom_metadata(),
        json!({"custody": {"provenance": {"sha256": sha256_hex(&env)}}})
    );
}

#[test]
fn accepts_source_from_resolved_dependencies_and_tag_pattern() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    let bd = &mut st["predicate"]["buildDefinition"];
    bd["buildType"] = json!(GHA);
    bd["externalParameters"] = json!({"source": "whatever"});
    bd["resolvedDependencies"] = json!([{"uri": format!("git+{REPO}@refs/tags/v1.2.0")}]);
    let env = envelope(&st, &[&f.ci]);
    let Decision::Attested(a) = evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(a.source.origin, SourceOrigin::ResolvedDependency);
    assert_eq!(a.source.git_ref.as_deref(), Some("refs/tags/v1.2.0"));
}

#[test]
fn untrusted_builder_refused() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    st["predicate"]["runDetails"]["builder"]["id"] = json!("https://evil.example/builder");
    let env = envelope(&st, &[&f.ci]);
    let (rule, reason, msg) = refused(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    ));
    assert_eq!(rule.as_deref(), Some("firmware"));
    assert!(matches!(reason, Reason::Builder { .. }), "{msg}");
    assert!(
        msg.contains("rule 'firmware'")
            && msg.contains("https://evil.example/builder")
            && msg.contains(BUILDER),
        "{msg}"
    );
}

#[test]
fn provenance_for_another_digest_refused() {
    let f = fixture();
    // valid provenance of a different artifact, attached to ours
    let env = envelope(&statement(&sha256_hex(b"the reviewed build")), &[&f.ci]);
    let (_, reason, msg) = refused(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    ));
    assert!(matches!(reason, Reason::SubjectMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&sha256_hex(&f.artifact)) && msg.contains(&sha256_hex(b"the reviewed build")),
        "{msg}"
    );
}

#[test]
fn weak_digest_only_does_not_bind() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    st["subject"] =
        json!([{"name": "app.bin", "digest": {"sha1": "aa", "sha256": sha256_hex(b"other")}}]);
    let env = envelope(&st, &[&f.ci]);
    let target = BTreeMap::from([
        ("sha1".to_owned(), "aa".to_owned()),
        ("sha256".to_owned(), sha256_hex(&f.artifact)),
    ]);
    let (_, reason, _) = refused(evaluate(&f.policy, "firmware/app.bin", &target, Some(&env)));
    assert!(matches!(reason, Reason::SubjectMismatch { .. }));
    // a target with only a weak digest cannot be compared at all
    let weak = BTreeMap::from([("sha1".to_owned(), "aa".to_owned())]);
    let (_, reason, _) = refused(evaluate(&f.policy, "firmware/app.bin", &weak, Some(&env)));
    assert!(matches!(reason, Reason::NoComparableDigest { .. }));
}

#[test]
fn second_subject_and_extra_target_algorithm_match() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    st["subject"] = json!([
        {"name": "other.bin", "digest": {"sha256": sha256_hex(b"other")}},
        {"name": "app.bin", "digest": {"sha256": sha256_hex(&f.artifact), "gitCommit": "abc"}}
    ]);
    let env = envelope(&st, &[&f.ci]);
    let mut target = digests(&f.artifact);
    target.insert(
        "sha512".to_owned(),
        hex::encode(ring::digest::digest(&ring::digest::SHA512, &f.artifact)),
    );
    let d = evaluate(&f.policy, "firmware/app.bin", &target, Some(&env)).unwrap();
    assert!(matches!(d, Decision::Attested(a) if a.subject_name.as_deref() == Some("app.bin")));
}

#[test]
fn wrong_source_repository_refused() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    st["predicate"]["buildDefinition"]["externalParameters"]["workflow"]["repository"] =
        json!("https://github.com/attacker/firmware");
    let env = envelope(&st, &[&f.ci]);
    let (_, reason, msg) = refused(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    ));
    assert!(matches!(reason, Reason::SourceRepository { .. }), "{msg}");
    assert!(
        msg.contains("attacker/firmware") && msg.contains(REPO),
        "{msg}"
    );
}

#[test]
fn trusted_repo_as_later_dependency_is_not_the_source() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    let bd = &mut st["predicate"]["buildDefinition"];
    bd["externalParameters"] = json!({});
    bd["resolvedDependencies"] = json!([
        {"uri": "git+https://github.com/attacker/firmware@refs/heads/main"},
        {"uri": format!("git+{REPO}@refs/heads/main")}
    ]);
    let env = envelope(&st, &[&f.ci]);
    let (_, reason, _) = refused(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    ));
    assert!(matches!(reason, Reason::SourceRepository { found, .. } if found.contains("attacker")));
}

#[test]
fn workflow_parameters_are_authoritative_over_dependencies() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    // workflow names the attacker's repo; a dependency names the trusted one
    st["predicate"]["buildDefinition"]["externalParameters"]["workflow"]["repository"] =
        json!("https://github.com/attacker/firmware");
    let env = envelope(&st, &[&f.ci]);
    assert!(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env)
    )
    .is_err());
    // malformed workflow: no fallback to the dependencies
    st["predicate"]["buildDefinition"]["externalParameters"]["workflow"] = json!({"repository": 7});
    let env = envelope(&st, &[&f.ci]);
    let (_, reason, _) = refused(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    ));
    assert_eq!(reason, Reason::NoSource);
}

#[test]
fn wrong_ref_refused() {
    let f = fixture();
    for bad in [
        json!("refs/heads/feature-x"),
        json!("refs/tags/v1/evil"),
        Value::Null,
    ] {
        let mut st = statement(&sha256_hex(&f.artifact));
        let w = &mut st["predicate"]["buildDefinition"]["externalParameters"]["workflow"];
        if bad.is_null() {
            w.as_object_mut().unwrap().remove("ref");
        } else {
            w["ref"] = bad.clone();
        }
        let env = envelope(&st, &[&f.ci]);
        let (_, reason, msg) = refused(evaluate(
            &f.policy,
            "firmware/app.bin",
            &digests(&f.artifact),
            Some(&env),
        ));
        assert!(matches!(reason, Reason::SourceRef { .. }), "{msg}");
        assert!(msg.contains("refs/heads/main"), "{msg}");
    }
}

#[test]
fn wrong_build_type_refused() {
    let f = fixture();
    let mut st = statement(&sha256_hex(&f.artifact));
    st["predicate"]["buildDefinition"]["buildType"] = json!("https://example.com/local-make/v1");
    let env = envelope(&st, &[&f.ci]);
    let (_, reason, msg) = refused(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    ));
    assert!(matches!(reason, Reason::BuildType { .. }), "{msg}");
    assert!(msg.contains("local-make"), "{msg}");
}

#[test]
fn unsigned_and_foreign_signed_refused() {
    let f = fixture();
    let st = statement(&sha256_hex(&f.artifact));
    let stranger = Signer::new();
    for env in [envelope(&st, &[]), envelope(&st, &[&stranger])] {
        let (_, reason, msg) = refused(evaluate(
            &f.policy,
            "firmware/app.bin",
            &digests(&f.artifact),
            Some(&env),
        ));
        assert!(
            matches!(
                reason,
                Reason::Threshold {
                    valid: 0,
                    threshold: 1,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("\"ci\""), "{msg}");
    }
}

#[test]
fn threshold_counts_distinct_keys_once() {
    let a = Signer::new();
    let b = Signer::new();
    let policy = Policy::from_toml("t", &policy_toml(&[("a", &a), ("b", &b)], 2)).unwrap();
    let art = b"x";
    let st = statement(&sha256_hex(art));
    // insufficient: one of two
    let (_, reason, _) = refused(evaluate(
        &policy,
        "firmware/x",
        &digests(art),
        Some(&envelope(&st, &[&a])),
    ));
    assert!(matches!(
        reason,
        Reason::Threshold {
            valid: 1,
            threshold: 2,
            ..
        }
    ));
    // the same key signing twice is one signer
    let (_, reason, _) = refused(evaluate(
        &policy,
        "firmware/x",
        &digests(art),
        Some(&envelope(&st, &[&a, &a])),
    ));
    assert!(matches!(
        reason,
        Reason::Threshold {
            valid: 1,
            threshold: 2,
            ..
        }
    ));
    // both: accepted
    let d = evaluate(
        &policy,
        "firmware/x",
        &digests(art),
        Some(&envelope(&st, &[&b, &a])),
    )
    .unwrap();
    assert!(
        matches!(d, Decision::Attested(acc) if acc.signers == vec!["a".to_owned(), "b".to_owned()])
    );
    // the same key listed under two ids cannot make a 2-of-2 policy
    let err = Policy::from_toml("t", &policy_toml(&[("a", &a), ("a-again", &a)], 2)).unwrap_err();
    assert!(
        matches!(err, PolicyError::Rule { .. }) && err.to_string().contains("distinct keys (1)"),
        "{err}"
    );
}

#[test]
fn tampered_payload_refused() {
    let f = fixture();
    let env = envelope(&statement(&sha256_hex(&f.artifact)), &[&f.ci]);
    let mut v: Value = serde_json::from_slice(&env).unwrap();
    // re-encode a modified payload under the original signature
    let mut st = statement(&sha256_hex(&f.artifact));
    st["predicate"]["runDetails"]["builder"]["id"] = json!(BUILDER.to_owned() + "x");
    use base64::Engine;
    v["payload"] =
        json!(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&st).unwrap()));
    let (_, reason, _) = refused(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&serde_json::to_vec(&v).unwrap()),
    ));
    assert!(matches!(reason, Reason::Threshold { valid: 0, .. }));
    // changing payloadType invalidates the signature too (PAE binds it)
    v = serde_json::from_slice(&env).unwrap();
    v["payloadType"] = json!("application/vnd.in-toto+json ");
    assert!(evaluate(
        &f.policy,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&serde_json::to_vec(&v).unwrap())
    )
    .is_err());
}

#[test]
fn wrong_payload_and_predicate_types_refused() {
    let f = fixture();
    let art = &f.artifact;
    let st = statement(&sha256_hex(art));
    let env = envelope_with(
        "application/json",
        &serde_json::to_vec(&st).unwrap(),
        &[&f.ci],
    );
    let (_, reason, _) = refused(evaluate(&f.policy, "firmware/a", &digests(art), Some(&env)));
    assert!(matches!(reason, Reason::PayloadType { .. }));
    let mut st2 = st.clone();
    st2["predicateType"] = json!("https://slsa.dev/provenance/v0.2");
    let (_, reason, msg) = refused(evaluate(
        &f.policy,
        "firmware/a",
        &digests(art),
        Some(&envelope(&st2, &[&f.ci])),
    ));
    assert!(matches!(reason, Reason::PredicateType { .. }), "{msg}");
    assert!(msg.contains("v0.2"), "{msg}");
    let mut st3 = st.clone();
    st3["_type"] = json!("https://in-toto.io/Statement/v0.1");
    let (_, reason, _) = refused(evaluate(
        &f.policy,
        "firmware/a",
        &digests(art),
        Some(&envelope(&st3, &[&f.ci])),
    ));
    assert!(matches!(reason, Reason::Malformed(_)));
    let mut st4 = st;
    st4["predicate"]["runDetails"]["builder"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    let (_, reason, msg) = refused(evaluate(
        &f.policy,
        "firmware/a",
        &digests(art),
        Some(&envelope(&st4, &[&f.ci])),
    ));
    assert!(
        matches!(reason, Reason::Malformed(_)) && msg.contains("id"),
        "{msg}"
    );
}

#[test]
fn rule_selection_and_unattested_paths() {
    let f = fixture();
    let art = b"doc";
    // no rule, not allowed unattested
    let (rule, reason, _) = refused(evaluate(&f.policy, "other/x", &digests(art), None));
    assert_eq!(rule, None);
    assert!(matches!(reason, Reason::NoRule { .. }));
    // allowed unattested
    assert_eq!(
        evaluate(&f.policy, "docs/readme.txt", &digests(art), None).unwrap(),
        Decision::Unattested {
            pattern: "docs/*".into()
        }
    );
    // ... but an envelope for it cannot be checked: refused, not ignored
    let env = envelope(&statement(&sha256_hex(art)), &[&f.ci]);
    let (_, reason, _) = refused(evaluate(
        &f.policy,
        "docs/readme.txt",
        &digests(art),
        Some(&env),
    ));
    assert!(matches!(reason, Reason::UncheckableProvenance { .. }));
    // a rule applies: provenance is mandatory
    let (rule, reason, _) = refused(evaluate(&f.policy, "firmware/app.bin", &digests(art), None));
    assert_eq!(rule.as_deref(), Some("firmware"));
    assert!(matches!(reason, Reason::MissingProvenance { .. }));
    // `*` does not cross `/` (TUF delegation semantics)
    assert!(matches!(
        refused(evaluate(&f.policy, "firmware/a/b", &digests(art), None)).1,
        Reason::NoRule { .. }
    ));
    // by delegated role
    let d = evaluate_for_role(
        &f.policy,
        "elsewhere/app",
        Some("fw-team"),
        &digests(art),
        Some(&env),
    )
    .unwrap();
    assert!(matches!(d, Decision::Attested(_)));
}

#[test]
fn first_matching_rule_applies() {
    let ci = Signer::new();
    let other = Signer::new();
    let strict = format!(
        r#"[[rule]]
name = "special"
paths = ["firmware/special.bin"]
builders = ["https://other-builder"]
build_types = ["{GHA}"]
sources = [{{ repository = "{REPO}", refs = ["refs/heads/main"] }}]
[rule.signers]
threshold = 1
{}
"#,
        other.toml_key("other")
    );
    let text =
        strict + &policy_toml(&[("ci", &ci)], 1).replace("allow_unattested = [\"docs/*\"]", "");
    let policy = Policy::from_toml("t", &text).unwrap();
    let art = b"s";
    let env = envelope(&statement(&sha256_hex(art)), &[&ci]);
    let (rule, reason, _) = refused(evaluate(
        &policy,
        "firmware/special.bin",
        &digests(art),
        Some(&env),
    ));
    assert_eq!(rule.as_deref(), Some("special"));
    assert!(matches!(reason, Reason::Threshold { .. }));
    assert!(evaluate(&policy, "firmware/app.bin", &digests(art), Some(&env)).is_ok());
}

#[test]
fn policy_errors_name_the_rule() {
    let a = Signer::new();
    let good = policy_toml(&[("a", &a)], 1);
    for (bad, needle) in [
        (good.replace("builders =", "builder ="), "builder"),
        (
            good.replace("threshold = 1", "threshold = 0"),
            "threshold 0",
        ),
        (
            good.replace(
                "refs = [\"refs/heads/main\", \"refs/tags/v*\"]",
                "refs = []",
            ),
            "refs",
        ),
        (
            good.replace("paths = [\"firmware/*\"]\nroles = [\"fw-*\"]\n", ""),
            "paths",
        ),
        (
            good.replace("keytype = \"ed25519\"", "keytype = \"dsa\""),
            "signers.keys.a",
        ),
        (
            good.clone() + &good.replace("allow_unattested = [\"docs/*\"]", ""),
            "used twice",
        ),
    ] {
        let err = Policy::from_toml("p.toml", &bad).unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    // JSON form of the same policy
    let spec = Policy::from_toml("p.toml", &good).unwrap().spec().clone();
    let json = serde_json::to_vec(&spec).unwrap();
    let p = Policy::from_file_contents("p.json", &json).unwrap();
    assert_eq!(p.spec(), &spec);
}

#[test]
fn oversized_envelope_refused() {
    let f = fixture();
    let text = policy_toml(&[("ci", &f.ci)], 1).replace(
        "allow_unattested = [\"docs/*\"]",
        "allow_unattested = []\nmax_envelope_bytes = 100",
    );
    let p = Policy::from_toml("t", &text).unwrap();
    let env = envelope(&statement(&sha256_hex(&f.artifact)), &[&f.ci]);
    let (_, reason, msg) = refused(evaluate(
        &p,
        "firmware/app.bin",
        &digests(&f.artifact),
        Some(&env),
    ));
    assert!(
        matches!(reason, Reason::Malformed(_)) && msg.contains("limit of 100"),
        "{msg}"
    );
}
