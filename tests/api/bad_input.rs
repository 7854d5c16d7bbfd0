//! Hostile and broken input over HTTP: overlong URLs and headers, thousands of parameters,
//! invalid UTF-8 and percent-encoding, NUL bytes, malformed X-Forwarded-For and IPv6, huge
//! postback bodies, path traversal in ids and header injection. Every answer is a clear 4xx, or
//! for a click a redirect to a host the rules name; never a 5xx, never a dropped connection, and
//! the server keeps answering afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Hosts the fixture rules redirect to.
const RULE_HOSTS: &[&str] = &[
    "network.example",
    "dating.example",
    "vpn.example",
    "paused.example",
    "capped.example",
    "euro.example",
    "backlink.example",
    "smartlink.example",
    "safe.example",
];

/// Inputs tried by this file, printed at the end of each test (run with `--nocapture`).
static TRIED: AtomicUsize = AtomicUsize::new(0);

fn tried(n: usize) {
    TRIED.fetch_add(n, Ordering::Relaxed);
}

/// Sends raw bytes as one request on a fresh connection and returns the status code and the
/// whole answer (head and body). The connection must be answered, not dropped.
async fn raw(app: &TestApp, request: &[u8]) -> (u16, String) {
    tried(1);
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may answer (and close) before it has read everything; that is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if complete(&answer) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no HTTP answer to {:?}: {text:?}",
                String::from_utf8_lossy(&request[..request.len().min(200)])
            )
        });
    (status, text)
}

/// Whether a whole answer with a `Content-Length` has arrived.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|len| body.len() >= len)
}

/// A GET as a phone's browser sends it, plus `headers`; a `User-Agent` among them replaces the
/// browser's.
fn get(target: &str, headers: &str) -> Vec<u8> {
    let agent = if headers.to_ascii_lowercase().contains("user-agent:") {
        String::new()
    } else {
        format!("User-Agent: {IPHONE_SAFARI}\r\n")
    };
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{agent}{headers}\r\n")
        .into_bytes()
}

/// A click answer: a 4xx, or a redirect whose Location is a rule host with no CR, LF or NUL.
fn assert_click_answer(status: u16, answer: &str, what: &str) {
    if status == 302 {
        let location = answer
            .lines()
            .find_map(|line| line.strip_prefix("location: "))
            .unwrap_or_else(|| panic!("{what}: 302 without Location: {answer}"));
        assert!(
            !location.contains(['\r', '\n', '\0']),
            "{what}: {location:?}"
        );
        let url = url::Url::parse(location.trim()).expect("Location is a URL");
        let host = url.host_str().unwrap_or("");
        assert!(RULE_HOSTS.contains(&host), "{what}: redirect to {location}");
        assert!(
            !answer
                .to_ascii_lowercase()
                .contains("\r\nset-cookie: injected"),
            "{what}: injected header"
        );
    } else {
        assert!((400..500).contains(&status), "{what}: status {status}");
    }
}

fn assert_4xx(status: u16, answer: &str, what: &str) {
    assert!(
        (400..500).contains(&status),
        "{what}: status {status}: {}",
        &answer[..answer.len().min(400)]
    );
}

/// The answer's JSON error code, when the body is SPEC's error shape.
fn error_code(answer: &str) -> Option<String> {
    let body = answer.split_once("\r\n\r\n")?.1;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["error"].as_str().map(str::to_string)
}

async fn still_serving(app: &TestApp) {
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200, "the server keeps answering");
}

fn report(test: &str) {
    eprintln!(
        "bad input: {test}: {} inputs tried by this file so far",
        TRIED.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn overlong_urls_and_headers_get_a_clear_4xx() {
    let app = spawn_app().await;
    // A URL over the router's limit: 414 with the JSON error, on every endpoint.
    let long = "a".repeat(40 * 1024);
    for target in [
        format!("/c/us-android?zone={long}"),
        format!("/postback?clickid={long}"),
        format!("/pixel.gif?clickid={long}"),
        format!("/api/rules?x={long}"),
        format!("/{long}"),
    ] {
        let (status, answer) = raw(&app, &get(&target, "")).await;
        assert_eq!(status, 414, "{}", &answer[..200.min(answer.len())]);
        assert_eq!(error_code(&answer).as_deref(), Some("uri_too_long"));
    }
    // A request head over the HTTP layer's 128 KiB: 431.
    let huge = "a".repeat(140 * 1024);
    let (status, _) = raw(&app, &get(&format!("/c/us-android?zone={huge}"), "")).await;
    assert_eq!(status, 431);
    let (status, _) = raw(
        &app,
        &get("/c/us-android", &format!("User-Agent: {huge}\r\n")),
    )
    .await;
    assert_eq!(status, 431);
    // Just under the limits: answered normally.
    let ua = format!("Mozilla/5.0 {}", "x".repeat(60 * 1024));
    let (status, answer) = raw(
        &app,
        &get("/c/us-android", &format!("User-Agent: {ua}\r\n")),
    )
    .await;
    assert_click_answer(status, &answer, "60 KiB User-Agent");
    let (status, answer) = raw(
        &app,
        &get(
            "/c/us-android",
            &format!(
                "Accept-Language: {}\r\nSec-CH-UA: {}\r\n",
                "en-US,".repeat(5000),
                "\"A\";v=\"1\", ".repeat(3000)
            ),
        ),
    )
    .await;
    assert_click_answer(status, &answer, "long Accept-Language and Client Hints");
    // More headers than the HTTP layer reads: 431.
    let many: String = (0..200).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let (status, _) = raw(&app, &get("/c/us-android", &many)).await;
    assert_eq!(status, 431);
    still_serving(&app).await;
    report("overlong");
}

#[tokio::test]
async fn thousands_of_parameters_are_bounded() {
    let app = spawn_app().await;
    let query: Vec<String> = (0..3000).map(|i| format!("p{i}={i}")).collect();
    let (status, answer) = raw(
        &app,
        &get(
            &format!("/c/us-android?{}", query.join("&")),
            &format!("X-Forwarded-For: {TELEKOM_DE_IP}\r\n"),
        ),
    )
    .await;
    assert_click_answer(status, &answer, "3000 parameters");
    let location = answer
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_string();
    let click = app.stored_click(&location, "cid").await;
    assert!(
        click.params.0.len() <= 64,
        "{} params kept",
        click.params.0.len()
    );

    // The same as a postback query, and eight thousand as a form body.
    let (status, answer) = raw(&app, &get(&format!("/postback?{}", query.join("&")), "")).await;
    assert_4xx(status, &answer, "3000 postback parameters");
    assert_eq!(error_code(&answer).as_deref(), Some("missing_clickid"));
    let form: Vec<String> = (0..8_000).map(|i| format!("p{i}=")).collect();
    let body = form.join("&");
    assert!(body.len() < 64 * 1024);
    let response = app
        .client
        .post(format!("{}/postback", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    tried(1);
    assert_eq!(response.status(), 400);
    // Repeated aliases of the click id: the first wins, the rest cannot confuse it.
    let repeated: Vec<String> = (0..2000).map(|i| format!("cid=c{i}")).collect();
    let (status, answer) = raw(&app, &get(&format!("/postback?{}", repeated.join("&")), "")).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(error_code(&answer).as_deref(), Some("unknown_click"));
    still_serving(&app).await;
    report("parameters");
}

#[tokio::test]
async fn invalid_utf8_bad_percent_encoding_and_nul_bytes_never_break_a_click() {
    let app = spawn_app().await;
    let queries = [
        "zone=%ff%fe%fd",
        "zone=%c3%28",
        "zone=%e2%82",
        "zone=%",
        "zone=%z",
        "zone=%zz%",
        "%=%&=&&&==",
        "zone=%00&clickid=%00abc",
        "zone=a%00b%0d%0aSet-Cookie:%20injected=1",
        "clickid=%0d%0aSet-Cookie:%20injected=1",
        "zone=..%2f..%2f..%2fetc%2fpasswd",
        "zone=%2e%2e&clickid=%2e",
        "zone=http://evil.example/&clickid=//evil.example",
        "zone=%23frag&clickid=%3F%26x%3D1",
        "zone=\u{202e}rtl",
        "clickid={clickid}&zone=##PLACEMENT_ID##",
        "zone=1;zone=2",
        "zone[]=1&zone[a]=2",
    ];
    for query in queries {
        let target = format!("/c/us-android?{}", query.replace(' ', "%20"));
        for campaign_target in [target.clone(), target.replace("us-android", "meta")] {
            let (status, answer) = raw(&app, &get(&campaign_target, "")).await;
            if campaign_target.contains("/meta?") {
                assert!(status == 200 || (400..500).contains(&status), "{status}");
                assert!(!answer.contains("injected=1\r\n"));
                assert!(!answer.to_ascii_lowercase().contains("<script"));
            } else {
                assert_click_answer(status, &answer, query);
            }
        }
    }
    // Raw bytes the HTTP grammar forbids in a request line or header: a 400, not a crash.
    let forbidden: &[&[u8]] = &[
        b"GET /c/us-android?zone=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /c/us-android?zone=a\x00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /c/us\x00android HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /c/us-android HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x00b\r\nConnection: close\r\n\r\n",
        b"GET /c/us-android HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\rSet-Cookie: a\r\nConnection: close\r\n\r\n",
        b"GET /c/us-android HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
        b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nabcde",
        b"POST /postback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
    ];
    for request in forbidden {
        let (status, answer) = raw(&app, request).await;
        assert_4xx(status, &answer, &String::from_utf8_lossy(request));
    }
    // Latin-1 bytes in a header value are legal HTTP; they are read as absent, not trusted.
    let (status, answer) = raw(
        &app,
        b"GET /c/us-android HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\xe9\r\nAccept-Language: \xff\xfe\r\nX-Forwarded-For: \xff\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_click_answer(status, &answer, "Latin-1 header values");
    // Campaign ids that are not ids: 404, never a file read.
    for campaign in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%ff",
        "%00",
        "a%2Fb",
        "US-ANDROID",
        &"x".repeat(500),
    ] {
        let (status, answer) = raw(&app, &get(&format!("/c/{campaign}"), "")).await;
        assert_4xx(status, &answer, campaign);
    }
    still_serving(&app).await;
    report("utf8");
}

#[tokio::test]
async fn malformed_forwarded_for_and_ipv6_resolve_to_a_safe_address() {
    let app = spawn_app().await;
    let long_list = (0..2000)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect::<Vec<_>>()
        .join(", ");
    let values = [
        "garbage".to_string(),
        "".to_string(),
        ",,,".to_string(),
        "1.2.3".to_string(),
        "1.2.3.4.5".to_string(),
        "256.1.1.1".to_string(),
        "01.02.03.04".to_string(),
        "1.2.3.4:99999".to_string(),
        "::".to_string(),
        ":::1".to_string(),
        "[::1".to_string(),
        "::1]".to_string(),
        "[2001:db8::1]:443".to_string(),
        "fe80::1%eth0".to_string(),
        "[fe80::1%25eth0]:80".to_string(),
        "::ffff:1.2.3.4".to_string(),
        "2001:db8::1, unknown, 1.2.3.4".to_string(),
        "1.2.3.4 5.6.7.8".to_string(),
        "x".repeat(8000),
        long_list,
        "1.2.3.4\t".to_string(),
        "_hidden, 1.2.3.4".to_string(),
    ];
    for value in &values {
        for header in ["X-Forwarded-For", "X-Real-IP"] {
            let (status, answer) = raw(
                &app,
                &get("/c/us-android", &format!("{header}: {value}\r\n")),
            )
            .await;
            assert_click_answer(status, &answer, value);
            // The same header on a postback: a 4xx about the postback, not the address.
            let (status, answer) = raw(
                &app,
                &get("/postback?clickid=nope", &format!("{header}: {value}\r\n")),
            )
            .await;
            assert_4xx(status, &answer, value);
        }
    }
    still_serving(&app).await;
    report("xff");
}

#[tokio::test]
async fn huge_and_malformed_postback_bodies_are_refused() {
    let app = spawn_app().await;
    let url = format!("{}/postback", app.address);
    // Over the 64 KiB limit, announced by Content-Length or sent chunked: 413 with the JSON error.
    for size in [64 * 1024 + 1, 1024 * 1024, 8 * 1024 * 1024] {
        let body = format!("clickid=x&pad={}", "a".repeat(size));
        let response = app
            .client
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        tried(1);
        assert_eq!(response.status(), 413);
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "body_too_large");
        // Chunked, with no length announced: refused once the limit is passed.
        let mut request =
            b"POST /postback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                .to_vec();
        for chunk in body.as_bytes().chunks(16 * 1024) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let (status, answer) = raw(&app, &request).await;
        assert_eq!(status, 413, "{}", &answer[..answer.len().min(300)]);
        assert_eq!(error_code(&answer).as_deref(), Some("body_too_large"));
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep = &deep[..60_000];
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"{\"clickid\":{\"a\":1}}".to_vec()),
        ("application/json", b"{\"clickid\":[1,2]}".to_vec()),
        ("application/json", deep.as_bytes().to_vec()),
        ("application/json", b"\xff\xfe{}".to_vec()),
        ("application/json", b"{\"clickid\":\"\\u0000\"}".to_vec()),
        ("application/json", b"{\"clickid\":\"\\ud800\"}".to_vec()),
        (
            "application/json",
            b"{\"payout\":1e999,\"clickid\":\"x\"}".to_vec(),
        ),
        ("application/json; charset=utf-16", b"{}".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"\xff\xfe\x00=\x00".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"clickid=%ff&payout=%zz".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"clickid=x&payout=1e308&currency=EUR".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"clickid=x&payout=NaN".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"clickid=x&payout=-99999999999999999999".to_vec(),
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\n\r\n--x--".to_vec(),
        ),
        ("text/plain", vec![0u8; 60_000]),
    ];
    for (content_type, body) in bodies {
        let response = app
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        tried(1);
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "{content_type}: {status} {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON error");
        assert!(json["error"].is_string(), "{text}");
    }
    still_serving(&app).await;
    report("bodies");
}

#[tokio::test]
async fn path_traversal_in_admin_ids_is_refused() {
    // More API calls a second than the default per-address limit allows.
    let app = spawn_app_with(|config| config.limits.api_per_second = 0).await;
    let ids = [
        "..%2F..%2Fetc%2Fpasswd",
        "..%2f..%2fCargo",
        "%2e%2e",
        "..",
        "a%00b",
        "a%2Fb",
        "a%5Cb",
        "CON",
        "UPPER",
        "x.toml",
        "%ff",
        "%C0%AE%C0%AE",
    ];
    let body = serde_json::json!({"id": "x", "url": "https://a.example/", "payout": 1});
    for kind in ["offers", "sources", "campaigns"] {
        for id in ids {
            let url = format!("{}/api/{kind}/{id}", app.address);
            for method in [
                reqwest::Method::GET,
                reqwest::Method::PUT,
                reqwest::Method::DELETE,
            ] {
                let response = app
                    .client
                    .request(method.clone(), &url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                tried(1);
                let status = response.status().as_u16();
                assert!((400..500).contains(&status), "{method} {url}: {status}");
            }
        }
    }
    // Nothing was written outside the rules directory, and the rules are intact.
    let files: Vec<_> = std::fs::read_dir(app.rules_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        files.iter().all(|f| f == "rules" || f == "var"),
        "{files:?}"
    );
    let response = app.api("/api/rules").await;
    assert_eq!(response.status(), 200);
    report("traversal");
}

#[tokio::test]
async fn header_injection_never_reaches_a_header() {
    let app = spawn_app().await;
    let injections = [
        "%0d%0aSet-Cookie:%20injected=1",
        "%0aSet-Cookie:%20injected=1",
        "%0dSet-Cookie:%20injected=1",
        "%E5%98%8A%E5%98%8DSet-Cookie:%20injected=1",
        "%c4%8d%c4%8aSet-Cookie:%20injected=1",
        "\\r\\nSet-Cookie:%20injected=1",
    ];
    for value in injections {
        for query in [
            format!("zone={value}"),
            format!("clickid={value}&zone={value}"),
        ] {
            for campaign in ["us-android", "split", "desktop-only"] {
                let (status, answer) = raw(&app, &get(&format!("/c/{campaign}?{query}"), "")).await;
                assert_click_answer(status, &answer, &query);
                let head = answer
                    .split("\r\n\r\n")
                    .next()
                    .unwrap()
                    .to_ascii_lowercase();
                assert!(!head.contains("\r\nset-cookie: injected"), "{head}");
            }
        }
        // Postback and pixel answers never echo a value into a header.
        for path in ["/postback", "/pixel.gif"] {
            let (status, answer) = raw(
                &app,
                &get(&format!("{path}?clickid={value}&txid={value}"), ""),
            )
            .await;
            let head = answer
                .split("\r\n\r\n")
                .next()
                .unwrap()
                .to_ascii_lowercase();
            assert!(!head.contains("set-cookie: injected"), "{head}");
            assert!(status < 500, "{path}: {status}");
        }
    }
    report("injection");
}

#[tokio::test]
async fn odd_methods_and_cross_origin_preflights_are_refused_without_cors_headers() {
    let app = spawn_app().await;
    for (method, path) in [
        ("OPTIONS", "/api/rules"),
        ("OPTIONS", "/api/offers/sweeps-us"),
        ("OPTIONS", "/postback"),
        ("OPTIONS", "/c/us-android"),
        ("TRACE", "/c/us-android"),
        ("DELETE", "/c/us-android"),
        ("PUT", "/postback"),
        ("PATCH", "/api/rules"),
        ("CONNECT", "/api/rules"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\
             Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: authorization\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, answer) = raw(&app, request.as_bytes()).await;
        assert_4xx(status, &answer, &format!("{method} {path}"));
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(!head.contains("access-control-"), "{method} {path}: {head}");
    }
    // A cross-origin GET with the token gets its answer but no permission for the page to read it.
    let response = app
        .client
        .get(format!("{}/api/rules", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    tried(1);
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .keys()
        .all(|name| !name.as_str().starts_with("access-control-")));
    report("methods");
}
