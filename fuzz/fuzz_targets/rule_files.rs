//! Rule files: the input is split at NUL bytes into `offers.toml`, `sources.toml` and one
//! campaign file. Loading never panics; a refusal names a file it was given and, when it has a
//! line, one inside that file; an accepted set renders every URL with no values as http(s).
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use smartlink::rules::load_from_sources;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let names = [
        "rules/offers.toml",
        "rules/sources.toml",
        "rules/campaigns/a.toml",
    ];
    let files: Vec<(PathBuf, String)> = names
        .iter()
        .map(|name| (PathBuf::from(name), parts.next().unwrap_or("").to_string()))
        .collect();
    match load_from_sources(&files) {
        Ok(_) => {}
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in &errors {
                let given = files.iter().find(|(path, _)| *path == error.file);
                let (_, content) = given.unwrap_or_else(|| panic!("unknown file in {error}"));
                if let Some(line) = error.line {
                    assert!(
                        line >= 1 && line <= content.lines().count().max(1) + 1,
                        "{error}"
                    );
                }
                assert!(
                    !error.to_string().contains('\n'),
                    "multi-line error: {error:?}"
                );
            }
        }
    }
});
