//! Bundles uploaded by stations (`docs/upload-protocol.md`): the service
//! behind `/api/v1/uploads`.
//!
//! Files arrive in `SESSIONS/.incoming/<upload id>/`, chunk by chunk, each
//! chunk written at exactly the length the server already holds and
//! `fdatasync`ed before it is acknowledged; the staging file's length is
//! the truth about what arrived, so a killed server or station resumes
//! there. A full file is checked against its declared SHA-256 (a mismatch
//! discards it). Completion checks every file and the manifest, reserves
//! the id the session gets (the manifest's, or `<id>.<station>` when another
//! station's session has it), records where it goes, renames the staging
//! folder into the sessions folder and imports it. Every step can be
//! repeated, and a restart finishes a placement it interrupted
//! ([`reconcile`]), so a bundle is imported exactly once.
mod chunk;
mod common;
mod complete;
mod receive;

pub use chunk::put_chunk;
pub use common::{Station, list_digest};
pub use complete::{complete, reconcile};
pub use receive::{create, find, status};
