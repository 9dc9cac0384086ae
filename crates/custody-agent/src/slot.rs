//! The A/B slot installer.
//!
//! Layout under its root:
//! ```text
//! slots/a/payload         the verified file, copied
//! slots/a/manifest.json   SlotManifest: target, digests, attempt; written
//!                         last, so a slot without it is incomplete
//! slots/b/...
//! current -> slots/a      relative symlink, switched atomically
//! ```
//! Staging only ever writes the slot `current` does not point at: it first
//! removes that slot's manifest (the slot is now incomplete), copies the
//! payload (temp file, fsync, rename) while hashing it, checks the digests
//! against the signed target, then writes the manifest. Activation switches
//! `current` (temp symlink, rename, dir fsync); rollback switches it back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::fsutil::{
    copy_verified, digest_and_verify, ensure_dir, read_json, read_symlink, remove_file_durable,
    remove_symlink, remove_temp_files, switch_symlink, write_json, Probe,
};
use crate::installer::{InstallPlan, Installer, Slot, StepCtx};
use crate::state::Committed;
use crate::target::TargetMeta;

/// `manifest.json` of a complete slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotManifest {
    /// the slot
    pub slot: Slot,
    /// the target it holds
    pub target: TargetMeta,
    /// the attempt that wrote it
    pub attempt: u64,
    /// length of `payload` as copied
    pub length: u64,
    /// SHA-256 of `payload` as copied
    pub sha256: String,
    /// SHA-512 of `payload` as copied
    pub sha512: String,
}

/// A/B slots plus a `current` symlink under one root directory.
#[derive(Debug, Clone)]
pub struct SlotInstaller {
    root: PathBuf,
}

impl SlotInstaller {
    /// Use (and create) `root/slots/a`, `root/slots/b`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, AgentError> {
        let root = root.into();
        ensure_dir(&root.join("slots").join("a"))?;
        ensure_dir(&root.join("slots").join("b"))?;
        Ok(SlotInstaller { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `current` symlink.
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// A slot's directory.
    pub fn slot_dir(&self, slot: Slot) -> PathBuf {
        self.root.join("slots").join(slot.name())
    }

    /// A slot's payload file.
    pub fn payload_path(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join("payload")
    }

    fn manifest_path(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join("manifest.json")
    }

    fn link_target(slot: Slot) -> PathBuf {
        Path::new("slots").join(slot.name())
    }

    /// The slot `current` points at; `None` when there is no link.
    /// A link pointing anywhere else is an error.
    pub fn current_slot(&self) -> Result<Option<Slot>, AgentError> {
        let link = self.current_link();
        let Some(target) = read_symlink(&link)? else {
            return Ok(None);
        };
        for slot in [Slot::A, Slot::B] {
            if target == Self::link_target(slot) {
                return Ok(Some(slot));
            }
        }
        Err(AgentError::Installer {
            installer: "slot",
            detail: format!(
                "{}: points at {}, expected slots/a or slots/b",
                link.display(),
                target.display()
            ),
        })
    }

    /// The slot's manifest, if the slot is complete.
    pub fn manifest(&self, slot: Slot) -> Result<Option<SlotManifest>, AgentError> {
        read_json(&self.manifest_path(slot), "slot manifest")
    }

    /// Check a slot end to end: manifest present, payload length and
    /// digests equal the manifest's, and the manifest's digests equal the
    /// signed target's. Returns the manifest.
    pub fn verify_slot(&self, slot: Slot) -> Result<SlotManifest, String> {
        let m = self
            .manifest(slot)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("slot {}: no manifest (incomplete slot)", slot.name()))?;
        let (d, signed) =
            digest_and_verify(&self.payload_path(slot), &m.target).map_err(|e| e.to_string())?;
        if d.length != m.length || d.sha256 != m.sha256 || d.sha512 != m.sha512 {
            return Err(format!(
                "slot {}: payload does not match manifest: length {} vs {}, sha256 {} vs {}",
                slot.name(),
                d.length,
                m.length,
                d.sha256,
                m.sha256
            ));
        }
        signed.map_err(|e| format!("slot {}: payload vs signed target: {e}", slot.name()))?;
        Ok(m)
    }

    fn point_current_at(&self, slot: Option<Slot>, probe: &Probe) -> Result<(), AgentError> {
        if self.current_slot().ok().flatten() == slot && slot.is_some() {
            return Ok(());
        }
        match slot {
            Some(s) => switch_symlink(&self.current_link(), &Self::link_target(s), probe),
            None => remove_symlink(&self.current_link()),
        }
    }

    fn slot_plan(plan: &InstallPlan) -> Result<(Slot, Option<Slot>), AgentError> {
        match plan {
            InstallPlan::Slot { new, old } => Ok((*new, *old)),
            InstallPlan::Command => Err(AgentError::Installer {
                installer: "slot",
                detail: "plan is for the command installer".to_owned(),
            }),
        }
    }
}

impl Installer for SlotInstaller {
    fn kind(&self) -> &'static str {
        "slot"
    }

    fn plan(&self, _committed: Option<&Committed>) -> Result<InstallPlan, AgentError> {
        // The slot that is active now (factory image or the committed one:
        // recovery converges `current` to the committed slot before any
        // attempt starts) stays untouched; the other one is written.
        let old = self.current_slot()?;
        let new = old.map_or(Slot::A, Slot::other);
        Ok(InstallPlan::Slot { new, old })
    }

    fn space_needed(&self, target: &TargetMeta) -> Vec<(PathBuf, u64)> {
        vec![(self.root.join("slots"), target.length)]
    }

    fn stage(&self, ctx: StepCtx<'_>, payload: &Path) -> Result<Result<(), String>, AgentError> {
        let (new, _old) = Self::slot_plan(ctx.plan)?;
        if self.current_slot()? == Some(new) {
            return Err(AgentError::Installer {
                installer: "slot",
                detail: format!(
                    "refusing to write slot {}: `current` points at it",
                    new.name()
                ),
            });
        }
        // The slot is incomplete from here until its manifest is written.
        remove_file_durable(&self.manifest_path(new))?;
        remove_temp_files(&self.slot_dir(new))?;
        ctx.probe.hit("slot:manifest-removed");
        remove_file_durable(&self.payload_path(new))?;
        let digest = match copy_verified(payload, &self.payload_path(new), ctx.probe, ctx.target) {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                return Ok(Err(format!(
                    "slot {}: copied payload does not match the signed target: {e}",
                    new.name()
                )))
            }
            Err(e) => return Ok(Err(format!("copy into slot {}: {e}", new.name()))),
        };
        ctx.probe.hit("slot:payload-written");
        let manifest = SlotManifest {
            slot: new,
            target: ctx.target.clone(),
            attempt: ctx.attempt,
            length: digest.length,
            sha256: digest.sha256,
            sha512: digest.sha512,
        };
        write_json(&self.manifest_path(new), &manifest)?;
        ctx.probe.hit("slot:manifest-written");
        Ok(Ok(()))
    }

    fn restage_after_crash(&self) -> bool {
        // The inactive slot is ours: writing it again from scratch is safe.
        true
    }

    fn activate(&self, ctx: StepCtx<'_>) -> Result<Result<(), String>, AgentError> {
        let (new, _) = Self::slot_plan(ctx.plan)?;
        if let Err(e) = self.verify_slot(new) {
            return Ok(Err(format!("activate: {e}")));
        }
        self.point_current_at(Some(new), ctx.probe)?;
        Ok(Ok(()))
    }

    fn health_env(&self, ctx: StepCtx<'_>) -> Vec<(String, String)> {
        let Ok((new, _)) = Self::slot_plan(ctx.plan) else {
            return Vec::new();
        };
        vec![
            ("CUSTODY_SLOT_NAME".to_owned(), new.name().to_owned()),
            (
                "CUSTODY_SLOT".to_owned(),
                self.slot_dir(new).to_string_lossy().into_owned(),
            ),
            (
                "CUSTODY_PAYLOAD".to_owned(),
                self.payload_path(new).to_string_lossy().into_owned(),
            ),
        ]
    }

    fn commit(&self, _ctx: StepCtx<'_>) -> Result<Result<(), String>, AgentError> {
        // `current` already points at the new slot; the agent's state file
        // records the commit.
        Ok(Ok(()))
    }

    fn rollback(&self, ctx: StepCtx<'_>) -> Result<Option<String>, AgentError> {
        let (_, old) = Self::slot_plan(ctx.plan)?;
        self.point_current_at(old, ctx.probe)?;
        Ok(None)
    }

    fn converge(&self, committed: Option<&Committed>, probe: &Probe) -> Result<(), AgentError> {
        remove_temp_files(&self.root)?;
        for slot in [Slot::A, Slot::B] {
            remove_temp_files(&self.slot_dir(slot))?;
        }
        match committed.map(|c| &c.plan) {
            Some(InstallPlan::Slot { new, .. }) => self.point_current_at(Some(*new), probe),
            // Never installed by custody: leave a factory `current` alone.
            _ => Ok(()),
        }
    }
}
