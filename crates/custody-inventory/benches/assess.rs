//! The inventory of a repository with 16,384 hash bins: building the items
//! from the roles' facts and assessing them (goal: p50 under 50 ms; the
//! reading of the metadata is measured by `custody inventory` itself).

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use custody_inventory::{
    assess, repository_items, Backend, KeyRef, Kind, RoleFacts, Signatures, Windows,
};

fn facts(bins: usize) -> Vec<RoleFacts> {
    let t0 = Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let key = |id: &str| KeyRef {
        id: id.to_owned(),
        key_type: "ed25519".into(),
        backend: Backend::KeyFile,
        first_seen: None,
    };
    let mut out = Vec::with_capacity(bins + 4);
    for (name, kind) in [
        ("root", Kind::Root),
        ("targets", Kind::Targets),
        ("snapshot", Kind::Snapshot),
        ("timestamp", Kind::Timestamp),
    ] {
        out.push(RoleFacts {
            name: name.into(),
            kind,
            version: 1,
            expires: t0 + Duration::days(90),
            signatures: Signatures {
                present: 1,
                needed: 1,
            },
            keys: vec![key(name)],
            bin: false,
        });
    }
    for i in 0..bins {
        out.push(RoleFacts {
            name: format!("bin-{i:04x}"),
            kind: Kind::Delegation,
            version: 1 + (i as u64 % 7),
            expires: t0 + Duration::minutes(i as i64),
            signatures: Signatures {
                present: 1,
                needed: 1,
            },
            keys: vec![key("bins")],
            bin: true,
        });
    }
    out
}

fn bench(c: &mut Criterion) {
    let roles = facts(16_384);
    let w = Windows::default();
    let at = Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    c.bench_function("inventory_16384_bins", |b| {
        b.iter(|| assess(&repository_items("pypi", &roles), &w, at))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
