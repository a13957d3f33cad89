//! Shared helpers for tzmk's cross-crate tests.

use std::path::PathBuf;

/// The workspace root (where system.xml lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace root").to_path_buf()
}
