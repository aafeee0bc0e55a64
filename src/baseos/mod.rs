//! Loading base OSes into the store, one job per file:
//!
//! - `stage`: what every import goes through (a scratch dir of the store, the unpacking inside
//!   the user namespace so files keep their owners, meta.json, the move into place whole), and
//!   [`Output`];
//! - `archive`: importing a root filesystem archive;
//! - `image`: importing an OCI image, layer by layer;
//! - `mirror`: the Debian mirror a recipe builds from;
//! - `mmdebstrap`: running mmdebstrap under the emulation it needs, and reading its log;
//! - `recipe`: loading a recipe's base OS (a cached tarball, else an mmdebstrap build).
//!
//! How a foreign arch is emulated is `crate::binfmt`'s one policy, here as for `run` and `build`.
//! The files use one another in one direction only (`recipe` → `mmdebstrap`, `mirror`,
//! `archive` → `stage`; `image` → `archive`, `stage`); this file only re-exports.

mod archive;
mod image;
mod mirror;
mod mmdebstrap;
mod recipe;
mod stage;

pub use archive::{import_archive, name_from_archive};
pub use image::{canonical_source, ensure_image, find_image, import_image, name_from_image};
pub use mirror::mirror_for;
pub use recipe::{cached_tarball, load_recipe};
pub use stage::{refuse_existing, Output};
