//! The notion tool against a wiremock fake of the Notion API with its real response shapes:
//! search, paginated database query, comments, and its error bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use valor_tool_notion::{
    Caller, Database, Grant, NotionClient, NotionGrants, NotionServer, NotionSettings,
};
use valor_tools::ToolError;
use valor_tools::http::CallPolicy;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DB: &str = "1c2d3e4f-0000-4000-8000-00000000db01";

fn settings(base: &str) -> NotionSettings {
    NotionSettings {
        base_url: base.to_owned(),
        key: Some("secret_test".to_owned()),
        calls: CallPolicy {
            timeout: Duration::from_millis(500),
            retries: 2,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(2),
            max_body: 64 * 1024,
        },
        ..NotionSettings::default()
    }
}

fn server_with(settings: NotionSettings) -> NotionServer {
    server_granting(settings, NotionGrants::default())
}

fn server_granting(settings: NotionSettings, grants: NotionGrants) -> NotionServer {
    let scopes = valor_tools::ScopeSource {
        chats: valor_chatfs::ChatFs::new(
            "/nonexistent/ws".into(),
            "/nonexistent/homes".into(),
            None,
        ),
        fixed: None,
        hosted: false,
    };
    NotionServer::new(NotionClient::new(settings).unwrap(), grants, scopes)
        .with_today(Arc::new(|| "2026-12-01".to_owned()))
}

fn server(base: &str) -> NotionServer {
    server_with(settings(base))
}

fn rich(text: &str) -> Value {
    json!([{"type": "text", "text": {"content": text, "link": null},
            "annotations": {"bold": false, "italic": false, "strikethrough": false,
                            "underline": false, "code": false, "color": "default"},
            "plain_text": text, "href": null}])
}

fn search_answer() -> Value {
    json!({"object": "list", "has_more": false, "next_cursor": null, "type": "page_or_database",
    "page_or_database": {},
    "results": [
        {"object": "database", "id": "ffff0000-0000-4000-8000-000000000000",
         "title": rich("Valor Archive"), "url": "https://www.notion.so/archive"},
        {"object": "database", "id": DB, "title": rich("Valor"),
         "url": format!("https://www.notion.so/{}", DB.replace('-', "")),
         "properties": {}}
    ]})
}

fn page(id: &str, title: &str, status: &str, people: &[&str], due: Option<&str>) -> Value {
    let people: Vec<Value> = people
        .iter()
        .map(|n| json!({"object": "user", "id": format!("u-{n}"), "name": n, "type": "person"}))
        .collect();
    json!({"object": "page", "id": id, "created_time": "2026-11-01T10:00:00.000Z",
    "archived": false, "url": format!("https://www.notion.so/{id}"),
    "parent": {"type": "database_id", "database_id": DB},
    "properties": {
        "Name": {"id": "title", "type": "title", "title": rich(title)},
        "Status": {"id": "s1", "type": "status",
                   "status": {"id": "x", "name": status, "color": "blue"}},
        "Assignee": {"id": "p1", "type": "people", "people": people},
        "Created": {"id": "c1", "type": "created_time", "created_time": "2026-11-01T10:00:00.000Z"},
        "Due date": {"id": "d1", "type": "date",
                     "date": due.map(|d| json!({"start": d, "end": null, "time_zone": null}))},
    }})
}

async fn mount_tasks(fake: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/search"))
        .and(header("authorization", "Bearer secret_test"))
        .and(header("notion-version", "2022-06-28"))
        .and(body_partial_json(
            json!({"query": "valor", "filter": {"value": "database"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(search_answer()))
        .mount(fake)
        .await;
    // Two pages: the client must follow next_cursor.
    Mock::given(method("POST"))
        .and(path(format!("/v1/databases/{DB}/query")))
        .and(body_partial_json(json!({"start_cursor": "cursor-2"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "object": "list", "has_more": false, "next_cursor": null, "type": "page_or_database",
        "results": [
            page("t3", "Ship the release notes", "Done", &["Grace Hopper"], Some("2026-11-20")),
            page("t4", "Fix flaky webhook test", "Blocked", &["Ada Lovelace"], None),
        ]})))
        .mount(fake)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/databases/{DB}/query")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "has_more": true, "next_cursor": "cursor-2", "type": "page_or_database",
            "results": [
                page("t1", "Memory search under 10 ms", "In progress", &["Ada Lovelace"], Some("2026-11-25")),
                page("t2", "Daydream charts", "Not started", &[], Some("2026-12-10")),
            ]})))
        .mount(fake)
        .await;
}

#[tokio::test]
async fn tasks_come_with_status_assignee_due_date_and_link() {
    let fake = MockServer::start().await;
    mount_tasks(&fake).await;
    let answer = server(&fake.uri())
        .projects(Caller::Operator, "valor", "What is going on?")
        .await
        .unwrap();
    assert!(
        answer.starts_with(
            "Valor: 4 tasks (1 In progress, 1 Not started, 1 Done, 1 Blocked); 1 overdue.\nAll tasks:\n"
        ),
        "{answer}"
    );
    assert!(answer.contains(
        "- [In progress] Memory search under 10 ms — Ada Lovelace — due 2026-11-25, overdue — https://www.notion.so/t1 (id t1)"
    ), "{answer}");
    // Open work first, soonest due first; done last.
    let order: Vec<usize> = ["t1)", "t2)", "t4)", "t3)"]
        .iter()
        .map(|id| answer.find(id).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{answer}");
}

#[tokio::test]
async fn the_question_picks_status_person_or_lateness() {
    let fake = MockServer::start().await;
    mount_tasks(&fake).await;
    let notion = server(&fake.uri());
    let blocked = notion
        .projects(Caller::Operator, "valor", "what is blocked?")
        .await
        .unwrap();
    assert!(
        blocked.contains("1 task status Blocked:\n- [Blocked] Fix flaky webhook test"),
        "{blocked}"
    );
    assert!(!blocked.contains("(id t1)"), "{blocked}");

    let ada = notion
        .projects(Caller::Operator, "valor", "What is Ada working on")
        .await
        .unwrap();
    assert!(ada.contains("2 tasks assigned to Ada Lovelace"), "{ada}");
    assert!(ada.contains("(id t1)") && ada.contains("(id t4)") && !ada.contains("(id t2)"));

    let late = notion
        .projects(Caller::Operator, "valor", "anything overdue?")
        .await
        .unwrap();
    assert!(
        late.contains("1 task overdue:\n- [In progress] Memory search"),
        "{late}"
    );

    let none = notion
        .projects(Caller::Operator, "valor", "what is blocked for Grace?")
        .await
        .unwrap();
    assert!(
        none.ends_with("No task is status Blocked, assigned to Grace Hopper.\n"),
        "{none}"
    );
}

#[tokio::test]
async fn a_configured_database_skips_the_search() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/search"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/databases/{DB}/query")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "has_more": false, "next_cursor": null,
            "results": [page("t9", "Only task", "Todo", &[], None)]})))
        .expect(1)
        .mount(&fake)
        .await;
    let mut s = settings(&fake.uri());
    s.databases.insert("valor".to_owned(), DB.to_owned());
    let answer = server_with(s)
        .projects(Caller::Operator, "Valor", "status?")
        .await
        .unwrap();
    assert!(answer.contains("[Todo] Only task"), "{answer}");
}

#[tokio::test]
async fn notion_errors_read_as_sentences() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/search"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "object": "error", "status": 401, "code": "unauthorized",
            "message": "API token is invalid.", "request_id": "r1"})))
        .mount(&fake)
        .await;
    let error = server(&fake.uri())
        .projects(Caller::Operator, "valor", "x")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Notion error (401): the key was refused (API token is invalid.)"
    );

    let mut unset = settings(&fake.uri());
    unset.key = None;
    let error = server_with(unset)
        .projects(Caller::Operator, "valor", "x")
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "not configured: set NOTION_API_KEY");

    let error = server(&fake.uri())
        .projects(Caller::Operator, "  ", "x")
        .await
        .unwrap_err();
    assert!(matches!(error, ToolError::Invalid(_)));
}

/// The tool's error when Notion's search answers `response` (asked exactly `calls` times, if
/// given; the fake checks that when it is dropped).
async fn search_fails(response: ResponseTemplate, calls: Option<u64>) -> ToolError {
    let fake = MockServer::start().await;
    let mock = Mock::given(method("POST"))
        .and(path("/v1/search"))
        .respond_with(response);
    match calls {
        Some(n) => mock.expect(n).mount(&fake).await,
        None => mock.mount(&fake).await,
    }
    server(&fake.uri())
        .projects(Caller::Operator, "valor", "x")
        .await
        .unwrap_err()
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_reported() {
    let limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "3600")
        .set_body_json(
            json!({"object": "error", "status": 429, "code": "rate_limited",
            "message": "You have been rate limited. Please try again in a few minutes."}),
        );
    let error = search_fails(limited, Some(1)).await;
    assert!(matches!(error, ToolError::RateLimited { .. }), "{error}");

    let gateway = ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>");
    let error = search_fails(gateway, Some(3)).await;
    assert!(
        error.to_string().starts_with("Notion error (502)"),
        "{error}"
    );
}

#[tokio::test]
async fn timeouts_malformed_and_huge_answers_fail_clearly() {
    let slow = ResponseTemplate::new(200).set_delay(Duration::from_secs(3));
    let error = search_fails(slow, None).await;
    assert!(matches!(error, ToolError::Unreachable { .. }), "{error}");

    let broken = ResponseTemplate::new(200).set_body_string("{\"results\": [tru");
    let error = search_fails(broken, None).await;
    assert!(matches!(error, ToolError::Malformed { .. }), "{error}");

    let huge = ResponseTemplate::new(200).set_body_string("x".repeat(200 * 1024));
    let error = search_fails(huge, None).await;
    assert!(
        error
            .to_string()
            .ends_with("the answer is larger than 64 KB"),
        "{error}"
    );

    let empty = ResponseTemplate::new(200).set_body_json(json!({
        "object": "list", "results": [], "has_more": false, "next_cursor": null}));
    let error = search_fails(empty, None).await;
    assert!(
        error
            .to_string()
            .contains("no Notion database matches \"valor\""),
        "{error}"
    );
}

#[tokio::test]
async fn comments_go_to_the_task_page() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/comments"))
        .and(body_partial_json(json!({"parent": {"page_id": "t4"},
            "rich_text": [{"type": "text", "text": {"content": "Bug report: console error"}}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "comment", "id": "c1", "discussion_id": "d1"})))
        .expect(1)
        .mount(&fake)
        .await;
    NotionClient::new(settings(&fake.uri()))
        .unwrap()
        .comment("t4", "Bug report: console error")
        .await
        .unwrap();
}

/// A chat reads only the databases its grant names (no search for other ones) and comments only
/// on tasks of them, only with the right; a chat with no grant gets nothing.
#[tokio::test]
async fn each_chat_reaches_only_what_it_was_granted() {
    let fake = MockServer::start().await;
    mount_tasks(&fake).await;
    Mock::given(method("GET"))
        .and(path("/v1/pages/task-in-valor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "page", "id": "task-in-valor", "parent": {"type": "database_id", "database_id": DB.replace('-', "")}}),
        ))
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/pages/task-elsewhere"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "page", "id": "task-elsewhere", "parent": {"type": "database_id", "database_id": "ffff0000-0000-4000-8000-000000000000"}}),
        ))
        .mount(&fake)
        .await;
    let valor = Database {
        id: DB.to_owned(),
        title: "Valor".to_owned(),
    };
    let grants = NotionGrants::new(
        [
            (
                5,
                Grant {
                    databases: vec![valor.clone()],
                    comment: true,
                },
            ),
            (
                6,
                Grant {
                    databases: vec![valor],
                    comment: false,
                },
            ),
        ]
        .into_iter()
        .collect(),
    );
    let notion = server_granting(settings(&fake.uri()), grants.clone());
    let answer = notion
        .projects(Caller::Chat(5), "valor", "what is going on?")
        .await
        .unwrap();
    assert!(answer.contains("Memory search under 10 ms"), "{answer}");
    // The search never ran for a chat: it would show every database the key can see.
    let searched = fake
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|r| r.url.path() == "/v1/search");
    assert!(!searched);
    let refused = notion
        .projects(Caller::Chat(5), "Valor Archive", "x")
        .await
        .unwrap_err();
    assert!(matches!(refused, ToolError::Refused(_)), "{refused}");
    let refused = notion
        .projects(Caller::Chat(7), "valor", "x")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not granted"), "{refused}");
    assert!(grants.has(5) && !grants.has(7));

    let client = NotionClient::new(settings(&fake.uri())).unwrap();
    grants
        .may_comment(Caller::Chat(5), &client, "task-in-valor")
        .await
        .unwrap();
    for (chat, page) in [
        (5, "task-elsewhere"),
        (6, "task-in-valor"),
        (7, "task-in-valor"),
    ] {
        let error = grants
            .may_comment(Caller::Chat(chat), &client, page)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ToolError::Refused(_)),
            "chat {chat} on {page}: {error}"
        );
    }
}
