//! The admin token (SPEC §4): configured, or generated at first start, printed once and kept in
//! `var_dir/admin_token` (mode 0600) so later starts reuse it without printing it again.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;

/// Where the token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Configured,
    /// Read from the file a previous start wrote.
    Kept(PathBuf),
    /// Generated now and written to the file; the caller prints it once.
    Generated(PathBuf),
}

/// Returns the token in force and where it came from.
pub fn resolve(configured: &str, var_dir: &Path) -> std::io::Result<(String, TokenSource)> {
    if !configured.is_empty() {
        return Ok((configured.to_string(), TokenSource::Configured));
    }
    let path = var_dir.join("admin_token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            return Ok((text.trim().to_string(), TokenSource::Kept(path)))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(var_dir)?;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    Ok((token, TokenSource::Generated(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_token_is_used_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (token, source) = resolve("secret", dir.path()).unwrap();
        assert_eq!(
            (token.as_str(), source),
            ("secret", TokenSource::Configured)
        );
        assert!(!dir.path().join("admin_token").exists());
    }

    #[test]
    fn an_empty_token_is_generated_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let var = dir.path().join("var");
        let (first, source) = resolve("", &var).unwrap();
        assert_eq!(first.len(), 48);
        assert!(matches!(source, TokenSource::Generated(_)));
        let (second, source) = resolve("", &var).unwrap();
        assert_eq!(first, second);
        assert!(matches!(source, TokenSource::Kept(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(var.join("admin_token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
