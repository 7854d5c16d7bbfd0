//! Query strings and macro expansion: the first line is an offer URL template, the rest the
//! click's query string. Whatever the values, the rendered URL keeps the template's scheme, host,
//! port, path structure, query pairs and fragment, and carries no CR, LF or non-ASCII byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartlink::click::parse_params;
use smartlink::template::{MacroSet, NoValues, UrlTemplate};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (template, query) = text.split_once('\n').unwrap_or((&text, ""));
    let params = parse_params(query);
    assert!(params.0.len() <= smartlink::click::MAX_PARAMS);
    let Ok(template) = UrlTemplate::parse(template, MacroSet::Click) else {
        return;
    };
    // Every macro gets a value from the query: `param.NAME` its parameter, the fixed ones the
    // parameters' values in turn, so hostile values reach every position.
    let mut values: Vec<(String, String)> = Vec::new();
    let mut pool = params.0.iter().map(|(_, v)| v.clone()).cycle();
    for name in template.macros() {
        let value = match name.strip_prefix("param.") {
            Some(param) => params.get(param).map(str::to_string),
            None => pool.next(),
        };
        values.push((
            name.to_string(),
            value.unwrap_or_else(|| "../%0d%0a?#/\r\n@x".into()),
        ));
    }
    let empty = template.render(&NoValues);
    let full = template.render(&values);
    assert!(full.is_ascii(), "non-ASCII in {full:?}");
    assert!(!full.contains(['\r', '\n']), "CR/LF in {full:?}");
    let a = url::Url::parse(&empty).expect("the empty rendering was validated at load");
    let b = url::Url::parse(&full).expect("a rendered URL parses");
    assert_eq!(a.scheme(), b.scheme(), "{empty} vs {full}");
    assert_eq!(a.host_str(), b.host_str(), "{empty} vs {full}");
    assert_eq!(a.port(), b.port(), "{empty} vs {full}");
    assert_eq!(a.username(), b.username(), "{empty} vs {full}");
    assert_eq!(
        a.path_segments().map(Iterator::count),
        b.path_segments().map(Iterator::count),
        "path structure changed: {empty} vs {full}"
    );
    let structure = |u: &url::Url| {
        u.query()
            .map(|q| q.bytes().filter(|b| matches!(b, b'&' | b'=')).count())
    };
    assert_eq!(
        structure(&a),
        structure(&b),
        "query structure: {empty} vs {full}"
    );
    assert_eq!(a.fragment().is_some(), b.fragment().is_some());
});
