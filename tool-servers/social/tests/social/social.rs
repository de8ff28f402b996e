//! The social tools against wiremock fakes of Perplexity, OpenAI and web pages, with the real
//! response shapes; the SSRF refusals; the server over an in-process MCP client and over the
//! agent's HTTP host with chat-scoped tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use valor_tool_social::{Delivery, LinkStore, SavedLink, SocialServer, SocialSettings};
use valor_tools::fetch::FetchPolicy;
use valor_tools::http::CallPolicy;
use valor_tools::{Scope, ScopeSource, ToolError};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

fn settings(base: &str) -> SocialSettings {
    SocialSettings {
        perplexity_base_url: base.to_owned(),
        perplexity_key: Some("pplx-test".to_owned()),
        openai_base_url: format!("{base}/v1"),
        openai_key: Some("sk-test".to_owned()),
        calls: CallPolicy {
            timeout: Duration::from_millis(500),
            retries: 2,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(2),
            max_body: 64 * 1024,
        },
        ..SocialSettings::default()
    }
}

fn server(base: &str, workspaces: &std::path::Path) -> SocialServer {
    server_with(settings(base), workspaces)
}

fn server_with(settings: SocialSettings, workspaces: &std::path::Path) -> SocialServer {
    SocialServer::new(
        settings,
        ScopeSource {
            chats: valor_chatfs::ChatFs::new(
                workspaces.to_owned(),
                workspaces.join(".homes"),
                None,
            ),
            fixed: None,
            hosted: false,
        },
    )
    .unwrap()
}

fn perplexity_answer() -> Value {
    json!({
        "id": "abc", "model": "sonar", "object": "chat.completion", "created": 1_790_000_000,
        "citations": ["https://example.com/a", "https://example.com/b"],
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Rust 1.95 shipped on 2026-04-14."}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}
    })
}

#[tokio::test]
async fn search_answers_with_sources_and_sends_the_real_request() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(header("authorization", "Bearer pplx-test"))
        .and(body_partial_json(json!({"model": "sonar"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(perplexity_answer()))
        .expect(1)
        .mount(&fake)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let answer = server(&fake.uri(), dir.path())
        .search("When did Rust 1.95 ship?")
        .await
        .unwrap();
    assert!(
        answer.starts_with("Rust 1.95 shipped on 2026-04-14."),
        "{answer}"
    );
    assert!(answer.contains("[2] https://example.com/b"), "{answer}");
}

#[tokio::test]
async fn api_failures_become_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(ResponseTemplate, &str, u64)> = vec![
        (
            ResponseTemplate::new(401).set_body_json(
                json!({"error": {"message": "Invalid API key", "type": "invalid_request_error"}}),
            ),
            "Perplexity error (401): the key was refused (Invalid API key)",
            1,
        ),
        (
            ResponseTemplate::new(500).set_body_string("upstream broke"),
            "Perplexity error (500): upstream broke",
            3,
        ),
        (
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(json!({"error": {"message": "Rate limit reached"}})),
            "Perplexity is rate-limiting us",
            3,
        ),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "3600"),
            "try again in 3600 s",
            1,
        ),
        (
            ResponseTemplate::new(200).set_body_string("{not json"),
            "Perplexity sent an answer we cannot read: not JSON",
            1,
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"choices": []})),
            "no choices[0].message.content",
            1,
        ),
        (
            ResponseTemplate::new(200).set_body_string("x".repeat(200_000)),
            "larger than",
            1,
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(perplexity_answer())
                .set_delay(Duration::from_secs(3)),
            "no answer in time",
            3,
        ),
    ];
    for (response, expected, calls) in cases {
        let fake = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .expect(calls)
            .mount(&fake)
            .await;
        let error = server(&fake.uri(), dir.path())
            .search("anything")
            .await
            .unwrap_err();
        assert!(error.to_string().contains(expected), "{expected}: {error}");
        fake.verify().await;
    }
}

#[tokio::test]
async fn a_missing_key_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings("http://127.0.0.1:9");
    settings.perplexity_key = None;
    settings.openai_key = None;
    let scopes = ScopeSource {
        chats: valor_chatfs::ChatFs::new(dir.path().to_owned(), dir.path().join(".homes"), None),
        fixed: None,
        hosted: false,
    };
    let server = SocialServer::new(settings, scopes).unwrap();
    let error = server.search("q").await.unwrap_err();
    assert_eq!(error.to_string(), "not configured: set PERPLEXITY_API_KEY");
    let error = server
        .image("a cat", &Scope::for_chat(dir.path(), 1))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("not configured: set OPENAI_API_KEY")
    );
}

#[tokio::test]
async fn a_created_image_is_saved_in_the_workspace_and_delivered() {
    let fake = MockServer::start().await;
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(PNG);
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(body_partial_json(json!({"prompt": "a red fox", "n": 1})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1_790_000_000,
            "data": [{"b64_json": encoded}],
            "usage": {"total_tokens": 100}
        })))
        .mount(&fake)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let delivered = Arc::new(Mutex::new(Vec::<Delivery>::new()));
    let sink = delivered.clone();
    let social = server(&fake.uri(), dir.path())
        .with_delivery(Arc::new(move |d| sink.lock().unwrap().push(d)));
    let scope = Scope::for_chat(dir.path(), 42);
    let answer = social.image("a red fox", &scope).await.unwrap();
    let delivered = delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].chat_id, 42);
    assert_eq!(delivered[0].png, PNG);
    let saved = std::fs::read_dir(scope.workspace.join("images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::read(&saved).unwrap(), PNG);
    assert!(answer.contains(&saved.display().to_string()), "{answer}");

    // A body that is not an image is an encoding error, and nothing is delivered.
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "%%%"}]})),
        )
        .mount(&fake)
        .await;
    let error = server(&fake.uri(), dir.path())
        .image("x", &scope)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "encoding");
}

#[tokio::test]
async fn images_are_checked_before_anything_is_uploaded() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "gpt-4o-mini"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "A stack trace: NullPointerException."}}]
        })))
        .expect(1)
        .mount(&fake)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let scope = Scope::for_chat(dir.path(), 5);
    std::fs::create_dir_all(scope.workspace.join("received")).unwrap();
    std::fs::write(scope.workspace.join("received/shot.png"), PNG).unwrap();
    std::fs::write(
        scope.workspace.join("received/notes.png"),
        b"%PDF-1.7 not an image",
    )
    .unwrap();
    std::fs::write(scope.workspace.join("received/empty.jpg"), b"").unwrap();
    std::fs::write(dir.path().join("other.png"), PNG).unwrap();
    let mut settings = settings(&fake.uri());
    settings.max_image_bytes = 1024;
    let big = vec![0xffu8; 2048];
    std::fs::write(
        scope.workspace.join("received/big.jpg"),
        [&[0xff, 0xd8, 0xff][..], &big].concat(),
    )
    .unwrap();
    let server = server_with(settings, dir.path());

    let answer = server
        .analyze("received/shot.png", "What error is shown?", &scope)
        .await
        .unwrap();
    assert_eq!(answer, "A stack trace: NullPointerException.");
    let request = &fake.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let image_url = body
        .pointer("/messages/0/content/1/image_url/url")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(image_url.starts_with("data:image/png;base64,"));

    for (path, category, words) in [
        ("received/notes.png", "file", "not a PNG, JPEG, WebP or GIF"),
        ("received/empty.jpg", "file", "is empty"),
        ("received/big.jpg", "file", "at most"),
        ("received/missing.png", "file", "does not exist"),
        ("../other.png", "refused", "outside this chat's workspace"),
    ] {
        let error = server.analyze(path, "?", &scope).await.unwrap_err();
        assert_eq!(error.category(), category, "{path}: {error}");
        assert!(error.to_string().contains(words), "{path}: {error}");
    }
    fake.verify().await; // only the valid image went out
}

#[derive(Default)]
struct Links(Mutex<Vec<SavedLink>>);

impl LinkStore for Links {
    fn save_link(&self, link: SavedLink) -> Result<u64, String> {
        let mut links = self.0.lock().unwrap();
        links.push(link);
        Ok(100 + links.len() as u64)
    }
}

const ARTICLE: &str = r#"<html><head><title>Sled tuning</title>
<meta name="description" content="How to keep sled small."></head>
<body><nav>menu</nav><article><p>Flush less often and compact the log.</p></article></body></html>"#;

#[tokio::test]
async fn save_link_keeps_the_page_in_memory_and_follows_public_redirects() {
    let site = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/old"))
        .respond_with(ResponseTemplate::new(301).insert_header("location", "/post"))
        .mount(&site)
        .await;
    Mock::given(method("GET"))
        .and(path("/post"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(ARTICLE, "text/html; charset=utf-8"))
        .mount(&site)
        .await;
    Mock::given(method("GET"))
        .and(path("/file.zip"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(vec![0u8; 10], "application/zip"))
        .mount(&site)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&site.uri());
    settings.links = FetchPolicy {
        allow_private: true, // the fake site is on 127.0.0.1
        ..FetchPolicy::default()
    };
    let links = Arc::new(Links::default());
    let server = server_with(settings, dir.path()).with_links(links.clone());
    let scope = Scope::for_chat(dir.path(), 9);
    let answer = server
        .link(&format!("{}/old", site.uri()), &scope)
        .await
        .unwrap();
    assert!(answer.contains("Title: Sled tuning"), "{answer}");
    assert!(answer.contains("Saved to memory as #101."), "{answer}");
    let saved = links.0.lock().unwrap()[0].clone();
    assert_eq!(saved.chat_id, 9);
    assert!(saved.url.ends_with("/post"));
    assert!(saved.text.contains("How to keep sled small."));
    assert!(saved.text.contains("Flush less often and compact the log."));
    assert!(!saved.text.contains("menu"));

    let error = server
        .link(&format!("{}/file.zip", site.uri()), &scope)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("application/zip, not a web page"),
        "{error}"
    );
}

#[tokio::test]
async fn save_link_refuses_local_and_private_addresses() {
    let site = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jump"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "http://10.0.0.1/admin"))
        .mount(&site)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = server(&site.uri(), dir.path()); // default policy: private refused
    let scope = Scope::for_chat(dir.path(), 1);
    let port = site.address().port();
    for url in [
        format!("http://127.0.0.1:{port}/jump"),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]/".to_owned(),
        format!("http://localhost:{port}/jump"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let error = server.link(&url, &scope).await.unwrap_err();
        assert_eq!(error.category(), "refused", "{url}: {error}");
    }
    for (url, words) in [
        ("file:///etc/passwd", "only http and https"),
        ("http://user:pw@example.com/", "user name or password"),
        ("not a url", "is not a URL"),
    ] {
        let error = server.link(url, &scope).await.unwrap_err();
        assert!(error.to_string().contains(words), "{url}: {error}");
    }
    assert!(site.received_requests().await.unwrap().is_empty());

    // Loopback allowed (the fake site), the redirect to a private address is still refused:
    // every hop is checked.
    let error = valor_tools::fetch::fetch_page(
        &format!("http://127.0.0.1:{port}/jump"),
        &FetchPolicy {
            allow_loopback: true,
            ..FetchPolicy::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, ToolError::Refused(m) if m.contains("10.0.0.1")),
        "{error}"
    );
    assert_eq!(site.received_requests().await.unwrap().len(), 1);
}
