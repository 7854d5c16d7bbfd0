//! Paths to the shipped data and MaxMind's test databases, for the classification tests.

use std::fs;
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/maxmind")
}

pub fn shipped_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A data directory holding only the named fixture files (tables fall back to built-ins).
pub fn dir_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in files {
        fs::copy(fixtures().join(name), dir.path().join(name)).unwrap();
    }
    dir
}
