//! Accept-Language: the answer is absent or a lower-case 2–8 letter primary subtag that the
//! header really contains.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartlink::classify::language::primary_language;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    if let Some(language) = primary_language(Some(&header)) {
        assert!((2..=8).contains(&language.len()), "{language:?}");
        assert!(
            language.bytes().all(|b| b.is_ascii_lowercase()),
            "{language:?}"
        );
        assert!(header.to_ascii_lowercase().contains(&language));
    }
});
