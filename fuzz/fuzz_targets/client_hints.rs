//! User-Agent and Client Hints: the input's lines are the User-Agent, Sec-CH-UA,
//! Sec-CH-UA-Mobile, -Platform, -Platform-Version and -Model. Classification never panics,
//! gives the same answer twice (through its cache) and keeps versions short and printable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartlink::classify::agent::AgentClassifier;
use smartlink::visitor::RequestHints;

thread_local! {
    static CLASSIFIER: AgentClassifier = AgentClassifier::without_crawler_list();
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut next = || lines.next();
    let user_agent = next().unwrap_or("");
    let hints = RequestHints {
        user_agent,
        accept_language: None,
        ch_ua: next(),
        ch_ua_mobile: next(),
        ch_ua_platform: next(),
        ch_ua_platform_version: next(),
        ch_ua_model: next(),
    };
    CLASSIFIER.with(|classifier| {
        let first = classifier.classify(&hints);
        let again = classifier.classify(&hints);
        assert_eq!(first, again);
        for version in [&first.os_version, &first.browser_version]
            .into_iter()
            .flatten()
        {
            assert!(!version.contains(['\r', '\n', '\0']), "{version:?}");
        }
    });
});
