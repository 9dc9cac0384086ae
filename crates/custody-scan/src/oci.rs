//! OCI image layouts: `index.json` → manifests (through nested indexes)
//! → layers in order. From a tar (the blobs were scanned as they passed,
//! in whatever order the tar holds them) or from a directory (each layer
//! blob read in order, its digest checked).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::error::ScanError;
use crate::scanner::{
    self, apply_layer, blob_kind, digest_algorithm, BlobKind, Hashing, Op, State,
};
use crate::Limits;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MAX_INDEX_DEPTH: usize = 4;

fn oci(msg: String) -> ScanError {
    ScanError::Oci(msg)
}

fn descriptors<'a>(
    doc: &'a Value,
    field: &str,
    what: &str,
) -> Result<Vec<(&'a str, &'a str)>, ScanError> {
    let list = doc
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| oci(format!("{what}: no `{field}` array")))?;
    list.iter()
        .map(|d| {
            let digest = d
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| oci(format!("{what}: a `{field}` descriptor has no digest")))?;
            digest_algorithm(digest)?;
            Ok((
                digest,
                d.get("mediaType").and_then(Value::as_str).unwrap_or(""),
            ))
        })
        .collect()
}

/// The layer lists (bottom first) of every image manifest reachable from
/// `index.json`; `blob` returns a small JSON blob by digest.
pub(crate) fn manifests(
    index_json: &[u8],
    blob: &mut dyn FnMut(&str) -> Result<Vec<u8>, ScanError>,
) -> Result<Vec<(String, Vec<String>)>, ScanError> {
    let index: Value =
        serde_json::from_slice(index_json).map_err(|e| oci(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    let mut todo: Vec<(String, String, usize)> = descriptors(&index, "manifests", "index.json")?
        .into_iter()
        .map(|(d, m)| (d.to_owned(), m.to_owned(), 0))
        .collect();
    if todo.is_empty() {
        return Err(oci("index.json lists no manifest".into()));
    }
    while let Some((digest, media, depth)) = todo.pop() {
        let bytes = blob(&digest)?;
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| oci(format!("manifest {digest}: {e}")))?;
        let media = doc
            .get("mediaType")
            .and_then(Value::as_str)
            .map_or(media, str::to_owned);
        if INDEX_TYPES.contains(&media.as_str())
            || (doc.get("manifests").is_some() && doc.get("layers").is_none())
        {
            if depth >= MAX_INDEX_DEPTH {
                return Err(oci(format!(
                    "index {digest}: indexes nested deeper than {MAX_INDEX_DEPTH}"
                )));
            }
            for (d, m) in descriptors(&doc, "manifests", &format!("index {digest}"))? {
                todo.push((d.to_owned(), m.to_owned(), depth + 1));
            }
        } else {
            let layers = descriptors(&doc, "layers", &format!("manifest {digest}"))?
                .into_iter()
                .map(|(d, _)| d.to_owned())
                .collect();
            out.push((digest, layers));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The layer lists of a `docker save` archive's `manifest.json`:
/// `[{"Config": ..., "Layers": ["<id>/layer.tar", ...]}, ...]`.
pub(crate) fn docker_manifests(json: &[u8]) -> Result<Vec<(String, Vec<String>)>, ScanError> {
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| oci(format!("manifest.json: {e}")))?;
    let images = doc
        .as_array()
        .ok_or_else(|| oci("manifest.json: not an array".into()))?;
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let layers = img
                .get("Layers")
                .and_then(Value::as_array)
                .ok_or_else(|| oci(format!("manifest.json image {i}: no Layers array")))?
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(|p| p.trim_start_matches("./").to_owned())
                        .ok_or_else(|| {
                            oci(format!("manifest.json image {i}: a layer is not a path"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((format!("manifest.json image {i}"), layers))
        })
        .collect()
}

/// The files of interest of each manifest's image, layers applied in order.
pub(crate) fn compose(
    manifests: &[(String, Vec<String>)],
    layers: &BTreeMap<String, Vec<Op>>,
) -> Result<Vec<State>, ScanError> {
    manifests
        .iter()
        .map(|(m, list)| {
            let mut state = State::new();
            for l in list {
                let ops = layers.get(l).ok_or_else(|| {
                    oci(format!(
                        "manifest {m}: layer {l} is not in the layout or not a tar"
                    ))
                })?;
                apply_layer(&mut state, ops);
            }
            Ok(state)
        })
        .collect()
}

fn blob_path(dir: &Path, digest: &str) -> Result<std::path::PathBuf, ScanError> {
    digest_algorithm(digest)?;
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| oci(format!("digest {digest:?}")))?;
    Ok(dir.join("blobs").join(alg).join(hex))
}

fn read_small(path: &Path, max: u64) -> Result<Vec<u8>, ScanError> {
    let io = |e| ScanError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let f = File::open(path).map_err(io)?;
    let mut data = Vec::new();
    f.take(max + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 > max {
        return Err(oci(format!("{}: larger than {max} bytes", path.display())));
    }
    Ok(data)
}

/// Scan an OCI image layout directory.
pub(crate) fn scan_dir(dir: &Path, limits: &Limits) -> Result<(Vec<State>, u64, u64), ScanError> {
    let index = read_small(&dir.join("index.json"), limits.max_json)?;
    let mut blob = |d: &str| {
        let p = blob_path(dir, d)?;
        let data = read_small(&p, limits.max_json)?;
        let alg = digest_algorithm(d)?;
        let got = hex::encode(ring::digest::digest(alg, &data));
        if !d.ends_with(&got) {
            return Err(oci(format!("blob {d}: content digest is {got}")));
        }
        Ok(data)
    };
    let list = manifests(&index, &mut blob)?;
    let mut layers = BTreeMap::new();
    let (mut entries, mut bytes) = (0, 0);
    for l in list.iter().flat_map(|(_, ls)| ls) {
        if layers.contains_key(l) {
            continue;
        }
        if layers.len() >= limits.max_layers {
            return Err(oci(format!("more than {} layers", limits.max_layers)));
        }
        let p = blob_path(dir, l)?;
        let io = |e| ScanError::Io {
            path: p.display().to_string(),
            source: e,
        };
        let f = File::open(&p).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        let mut hashing = Hashing {
            inner: BufReader::with_capacity(64 * 1024, f),
            ctx: ring::digest::Context::new(digest_algorithm(l)?),
        };
        let mut head = [0u8; 512];
        let n = scanner::read_up_to(&mut hashing, &mut head).map_err(io)?;
        if blob_kind(&head[..n], size, limits) != BlobKind::Layer {
            return Err(oci(format!("layer {l}: not a tar, tar.gz or tar.zst")));
        }
        let mut inner = std::io::Cursor::new(head[..n].to_vec()).chain(&mut hashing);
        let w = scanner::walk(&mut inner, &format!("layer {l}"), limits, false)?;
        std::io::copy(&mut inner, &mut std::io::sink()).map_err(io)?;
        entries += w.entries;
        bytes += w.bytes;
        let got = hex::encode(hashing.ctx.finish());
        if !l.ends_with(&got) {
            return Err(oci(format!("layer {l}: content digest is {got}")));
        }
        layers.insert(l.clone(), w.ops);
    }
    Ok((compose(&list, &layers)?, entries, bytes))
}
