//! The dashboard's routes with `oneshot`: login, refusals, pages, CSRF, the live stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use valor_dashboard::pages::turns::TurnFilter;
use valor_dashboard::{
    AlertRow, ChatRow, LearningRow, MemoryQuery, MemoryRow, Overview, QuestionRow, SilenceRow,
    Source,
};
use valor_protocol::health::HealthPoint;
use valor_protocol::jobs::{JobOutcome, JobRunRecord};
use valor_protocol::records::{RunRecord, TurnText};
use valor_scheduler::JobStatus;

const TOKEN: &str = "store-token-0123456789";

#[path = "dashboard/drill.rs"]
mod drill;
#[path = "dashboard/review.rs"]
mod review;

#[derive(Default)]
struct Fake {
    started: Mutex<Vec<String>>,
    stopped: Mutex<Vec<i64>>,
    forgotten: Mutex<Vec<(i64, u64)>>,
    paused: Mutex<Vec<(String, bool)>>,
    searched: Mutex<Vec<MemoryQuery>>,
    decided: Mutex<Vec<(i64, u64, bool)>>,
    acknowledged: Mutex<Option<u64>>,
    silenced: Mutex<Vec<(String, u32)>>,
    /// The recorded runs (`None`: three of chat 7 now).
    history: Option<Vec<RunRecord>>,
    /// What the kept turns said.
    texts: Vec<TurnText>,
}

impl Fake {
    fn runs(&self) -> Vec<RunRecord> {
        match &self.history {
            Some(runs) => runs.clone(),
            None => vec![run(0.5, "haiku"), run(0.25, "haiku"), run(1.0, "opus")],
        }
    }
}

fn run(cost: f64, model: &str) -> RunRecord {
    serde_json::from_value(serde_json::json!({
        "chat_id": 7, "session_id": "s", "model": model, "class": "short_chat", "effort": "low",
        "started_at_ms": valor_protocol::time::now_ms(), "duration_ms": 1500, "api_duration_ms": 900,
        "cost_usd": cost, "usage": {"input_tokens": 100, "output_tokens": 20,
        "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
        "num_turns": 1, "tool_calls": [], "warm": false, "error": null
    }))
    .unwrap()
}

#[async_trait::async_trait]
impl Source for Fake {
    async fn overview(&self) -> Overview {
        Overview {
            status: "ok".into(),
            score: 97,
            uptime_secs: 600,
            components: vec![valor_dashboard::ComponentRow {
                name: "<script>alert(1)</script>".into(),
                status: "degraded".into(),
                since_ms: 1_796_342_400_000,
                last_error: Some((1_796_342_460_000, "502 <Bad Gateway>".into())),
            }],
            alerts: vec![],
            running: 1,
            queued: 2,
            unusual: vec![
                "Cost in the hour from 14:00 UTC was $4.20, unusual <for> that hour".into(),
            ],
            forecasts: vec!["Free disk is 900 MiB, losing 1000 MiB a day: full in 21 h".into()],
            trends_at_ms: 1_796_342_400_000,
        }
    }
    async fn health_points(&self, _since_ms: u64) -> Vec<HealthPoint> {
        (0..10)
            .map(|i| HealthPoint {
                at_ms: i * 60_000,
                score: 90,
                worst_score: 80,
                rss_mb: 100.0 + i as f32,
                cpu_percent: 2.0,
                system_memory_percent: 30.0,
                children: 1,
                disk_free_mb: 0.0,
                queued: 0,
                samples: 2,
            })
            .collect()
    }
    async fn runs_since(&self, since_ms: u64) -> Vec<RunRecord> {
        let mut runs = self.runs();
        runs.retain(|r| r.started_at_ms >= since_ms);
        runs
    }
    async fn jobs(&self) -> Vec<JobStatus> {
        vec![JobStatus {
            name: "daydream".into(),
            schedule: "every 6h".into(),
            missed: "catch_up".into(),
            last: None,
            next: None,
            paused: false,
            progress: Some("phase 3/6: context — <2> workspaces".into()),
        }]
    }
    async fn pause_job(&self, name: &str, paused: bool) -> Result<(), String> {
        if name != "daydream" {
            return Err(format!("there is no job called {name:?}"));
        }
        self.paused.lock().unwrap().push((name.to_owned(), paused));
        Ok(())
    }
    async fn questions(&self) -> Vec<QuestionRow> {
        let question = |id, state: &str| QuestionRow {
            id,
            chat_id: 42,
            text: format!("we deploy on <fridays> #{id}"),
            state: state.into(),
            why: "decision".into(),
            source_message: Some("from now on we deploy on fridays".into()),
            created_ms: 1_796_342_400_000,
        };
        vec![
            question(3, "pending"),
            question(2, "declined"),
            question(1, "accepted"),
        ]
    }
    async fn decide_question(&self, chat_id: i64, id: u64, yes: bool) -> String {
        self.decided.lock().unwrap().push((chat_id, id, yes));
        if yes {
            "Remembered.".into()
        } else {
            "Not stored.".into()
        }
    }
    async fn acknowledge_alert(&self, kind: &str) -> String {
        if kind != "telegram" {
            return "No active alert about that.".into();
        }
        *self.acknowledged.lock().unwrap() = Some(1_796_342_600_000);
        "Acknowledged: Telegram.".into()
    }
    async fn silence_alert(&self, kind: &str, hours: u32) -> String {
        self.silenced.lock().unwrap().push((kind.to_owned(), hours));
        format!("Silenced {kind} for {hours} h.")
    }
    async fn silences(&self) -> Vec<SilenceRow> {
        (self.silenced.lock().unwrap().last())
            .filter(|(_, hours)| *hours > 0)
            .map(|(kind, _)| SilenceRow {
                kind: kind.clone(),
                until_ms: 1_796_346_000_000,
            })
            .into_iter()
            .collect()
    }
    async fn run_job(&self, name: &str) -> Result<(), String> {
        self.started.lock().unwrap().push(name.to_owned());
        Ok(())
    }
    async fn job_runs(&self, _limit: usize) -> Vec<JobRunRecord> {
        vec![JobRunRecord {
            job: "cleanup".into(),
            started_ms: 1_796_342_400_000,
            finished_ms: Some(1_796_342_402_500),
            outcome: JobOutcome::Ok,
            detail: "pruned 3 <old> runs".into(),
            due_ms: None,
        }]
    }
    async fn reports(&self) -> Vec<String> {
        vec!["daydream_insights-20261204T060000Z-s1.md".into()]
    }
    async fn report(&self, name: Option<&str>) -> Option<String> {
        match name {
            None => {
                Some("# Latest insights\n\n- <script>alert(1)</script> tests are slow\n".into())
            }
            Some("daydream_insights-20261204T060000Z-s1.md") => Some("# Earlier\n".into()),
            Some(other) => panic!("asked for {other}"),
        }
    }
    async fn chart(&self) -> Option<Vec<u8>> {
        Some(b"\x89PNG fake".to_vec())
    }
    async fn chats(&self) -> Vec<ChatRow> {
        vec![ChatRow {
            chat_id: 42,
            name: None,
            last_at_ms: 1_796_342_400_000,
            messages: 12,
            turns: 6,
            cost_usd: 0.5,
            context: Some((12, 8, 3000, 1200)),
            pending: 1,
            session: Some("5f2a9c1e-0000-4000-8000-000000000001".into()),
            running: Some(valor_core::progress::TurnProgress {
                started_ms: valor_protocol::time::now_ms() - 4_000,
                session_id: Some("5f2a9c1e-0000-4000-8000-000000000001".into()),
                model: Some("sonnet".into()),
                tools: vec![
                    valor_core::progress::ToolStep {
                        id: "t1".into(),
                        name: "Read".into(),
                        ok: Some(true),
                    },
                    valor_core::progress::ToolStep {
                        id: "t2".into(),
                        name: "<Bash>".into(),
                        ok: None,
                    },
                ],
                tool_calls: 2,
                writing: false,
                retrying: None,
            }),
            node: None,
        }]
    }
    async fn chat(&self, chat_id: i64) -> Option<ChatRow> {
        let mut row = self
            .chats()
            .await
            .into_iter()
            .find(|r| r.chat_id == chat_id)?;
        (row.turns, row.cost_usd) = (0, 0.0);
        Some(row)
    }
    async fn stop(&self, chat_id: i64) -> bool {
        self.stopped.lock().unwrap().push(chat_id);
        true
    }
    async fn search(&self, query: &MemoryQuery) -> Vec<MemoryRow> {
        self.searched.lock().unwrap().push(query.clone());
        vec![MemoryRow {
            id: 9,
            kind: "link".into(),
            chat_id: Some(42),
            at_ms: 1_796_342_400_000,
            title: format!("About {}", query.text),
            text: "a snippet".into(),
            score: Some(0.0328),
            similarity: Some(0.71),
            keyword: true,
        }]
    }
    async fn memory(&self, id: u64) -> Option<MemoryRow> {
        (id == 9).then(|| MemoryRow {
            id,
            kind: "link".into(),
            chat_id: Some(42),
            at_ms: 0,
            title: "Tokio".into(),
            text: "the whole <b>text</b>".into(),
            ..MemoryRow::default()
        })
    }
    async fn learnings(&self) -> Vec<LearningRow> {
        vec![
            LearningRow {
                chat_id: Some(42),
                number: 3,
                category: "decision".into(),
                confidence: 0.9,
                times_seen: 2,
                content: "We use sled".into(),
                retired: None,
                origin: "asked about (switching) and kept".into(),
                created_ms: 1_796_342_400_000,
                updated_ms: 1_796_346_000_000,
                sources: vec!["tg:41".into(), "tg:<57>".into()],
            },
            LearningRow {
                chat_id: None,
                number: 1,
                category: "convention".into(),
                confidence: 0.7,
                times_seen: 1,
                content: "Tabs".into(),
                retired: Some("forgotten by the user".into()),
                origin: "remembered by the user".into(),
                created_ms: 0,
                updated_ms: 0,
                sources: vec![],
            },
        ]
    }
    async fn forget(&self, chat_id: i64, number: u64) -> String {
        self.forgotten.lock().unwrap().push((chat_id, number));
        format!("Forgot #{number}.")
    }
    async fn baseline(&self) -> Option<(String, [f64; 2])> {
        Some(("opus".into(), [5.0, 25.0]))
    }
    async fn chat_names(&self) -> std::collections::BTreeMap<i64, String> {
        [(42, "Ops <team>".to_owned())].into()
    }
    async fn latest_turns(
        &self,
        limit: usize,
        filter: TurnFilter,
        chat: Option<i64>,
    ) -> Vec<RunRecord> {
        let mut runs = self.runs();
        runs.retain(|r| filter.keeps(r) && chat.is_none_or(|c| r.chat_id == c));
        runs.sort_by_key(|r| std::cmp::Reverse(r.started_at_ms));
        runs.truncate(limit);
        runs
    }
    async fn turn(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> Option<(RunRecord, Option<TurnText>)> {
        let run = (self.runs().into_iter())
            .find(|r| r.started_at_ms == started_at_ms && r.chat_id == chat_id)?;
        let text = (self.texts.iter())
            .find(|t| t.started_at_ms == started_at_ms && t.chat_id == chat_id)
            .cloned();
        Some((run, text))
    }
    async fn approvals(
        &self,
        _chat_id: Option<i64>,
        _limit: usize,
    ) -> Vec<valor_protocol::approval::ApprovalRecord> {
        Vec::new()
    }

    async fn chat_memories(&self, chat_id: i64, _limit: usize) -> Vec<MemoryRow> {
        vec![MemoryRow {
            id: 11,
            kind: "summary".into(),
            chat_id: Some(chat_id),
            at_ms: 1_796_342_400_000,
            title: "We moved the <deploy> to Fridays".into(),
            ..MemoryRow::default()
        }]
    }
    async fn alerts(&self) -> Vec<AlertRow> {
        let mut active = AlertRow {
            kind: "telegram".into(),
            severity: "Warning".into(),
            message: "Telegram has not been ok for 60 s: 502 <Bad Gateway>".into(),
            action: "Check the network.".into(),
            raised_ms: 1_796_342_500_000,
            ..AlertRow::default()
        };
        active.acknowledged_ms = *self.acknowledged.lock().unwrap();
        vec![
            active,
            AlertRow {
                kind: "process_memory".into(),
                severity: "Warning".into(),
                message: "Valor's resident memory is 600 MiB".into(),
                action: "Restart Valor at a quiet moment.".into(),
                raised_ms: 1_796_342_400_000,
                cleared_ms: Some(1_796_342_460_000),
                ended_by_restart: false,
                done: vec![(1_796_342_400_000, "told to the admin chat".into())],
                acknowledged_ms: None,
            },
        ]
    }
}

async fn send(
    app: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

/// A form POST from the logged-in browser.
fn post_form(cookie: &str, path: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

/// Logs in through a link made with the store's token; returns the cookie.
async fn log_in(app: &axum::Router) -> String {
    let request = Request::post("/ui/login-link")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = serde_json::from_str::<serde_json::Value>(&body).unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, headers, _) = send(app, get(&path, None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/ui")
    );
    // The link works once.
    let (status, _, _) = send(app, get(&path, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    cookie.split(';').next().unwrap().to_owned()
}

fn router(fake: Arc<Fake>, logs: valor_dashboard::logs::LogRing) -> axum::Router {
    valor_dashboard::router(valor_dashboard::Parts {
        source: fake,
        api_token: TOKEN.to_owned(),
        logs,
        sessions: None,
        secure_cookie: false,
        pulse: valor_dashboard::live::Pulse::default(),
    })
}

fn app() -> (axum::Router, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    (
        router(fake.clone(), valor_dashboard::logs::LogRing::default()),
        fake,
    )
}

#[tokio::test]
async fn nothing_is_shown_without_a_login_and_links_need_the_stores_token() {
    let (app, _) = app();
    for path in [
        "/ui/",
        "/ui/usage",
        "/ui/jobs",
        "/ui/events",
        "/ui/chats",
        "/ui/alerts",
        "/ui/memory",
        "/ui/logs",
    ] {
        let (status, _, body) = send(&app, get(path, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(body.contains("valor dashboard"), "{path}: {body}");
        let (status, _, _) = send(&app, get(path, Some("valor_ui=forged"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer store-token-0123456788"),
    ] {
        let mut request = Request::post("/ui/login-link");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let (status, _, _) = send(&app, request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = send(&app, get("/ui/login?token=guess", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pages_show_the_agent_escaped_and_usage_sums_the_runs() {
    let (app, _) = app();
    let cookie = log_in(&app).await;
    let (status, _, body) = send(&app, get("/ui/", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<div class=\"big ok\">97</div>"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(!body.contains("<script>alert(1)"), "{body}");
    assert!(body.contains("<rect class=\"bar\""), "charts: {body}");
    assert!(
        body.contains("<strong>Turns</strong> · now 3 turns"),
        "the three runs of this hour: {body}"
    );
    // The whole of /health: the component with how long it has failed and its last error.
    assert!(
        body.contains("failing since <time data-ms=\"1796342400000\""),
        "{body}"
    );
    assert!(body.contains("502 &lt;Bad Gateway&gt;"), "{body}");
    // The trends: what is unusual for the hour and what runs out, with their numbers.
    assert!(body.contains("<strong>Unusual: </strong>Cost in the hour from 14:00 UTC was $4.20, unusual &lt;for&gt; that hour"), "{body}");
    assert!(
        body.contains("<li>Free disk is 900 MiB, losing 1000 MiB a day: full in 21 h</li>"),
        "{body}"
    );
    assert!(
        body.contains("Chat turns today</div><div class=\"big\">3</div>"),
        "{body}"
    );
    assert!(
        body.contains("data-live=\"/ui/events?page=overview\""),
        "{body}"
    );
    assert!(body.contains("new EventSource(url)"));
    assert!(
        body.contains("name=\"viewport\""),
        "a phone renders at its width"
    );
    let (_, _, body) = send(&app, get("/ui/usage?days=1", Some(&cookie))).await;
    assert!(
        body.contains("<td data-label=\"model\">haiku</td><td class=\"n\" data-label=\"turns\">2</td><td class=\"n\" data-label=\"failed\">0</td><td class=\"n\" data-label=\"cost\">$0.7500</td>"),
        "{body}"
    );
    assert!(
        body.contains("<td data-label=\"day\">all days</td><td class=\"n\" data-label=\"turns\">3</td><td class=\"n\" data-label=\"failed\">0</td><td class=\"n\" data-label=\"cost\">$1.7500</td>"),
        "{body}"
    );
    assert!(
        body.contains(
            "<td data-label=\"effort\">low</td><td class=\"n\" data-label=\"turns\">3</td>"
        ),
        "{body}"
    );
    assert!(
        body.contains("<a href=\"/ui/chats/7\">chat 7</a>"),
        "per chat: {body}"
    );
    // Three runs of 100 tokens in and 20 out: $0.001 each on opus at $5/$25.
    assert!(body.contains("Routing: paid <strong>$1.7500</strong>; every turn on opus would have cost <strong>$0.0030</strong>"), "{body}");
}

#[tokio::test]
async fn jobs_show_runs_with_durations_and_the_daydream_reports_rendered() {
    let (app, _) = app();
    let cookie = log_in(&app).await;
    let (_, _, page) = send(&app, get("/ui/jobs", Some(&cookie))).await;
    assert!(
        page.contains("<td data-label=\"job\">cleanup</td><td data-label=\"started\"><time data-ms=\"1796342400000\" datetime=\"2026-12-04T00:00:00Z\">2026-12-04 00:00:00 UTC</time></td><td data-label=\"took\">2.5 s</td><td data-label=\"outcome\"><span class=\"ok\">ok</span></td><td data-label=\"what happened\">pruned 3 &lt;old&gt; runs</td>"),
        "{page}"
    );
    assert!(page.contains("<h1>Latest insights</h1>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)"), "{page}");
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(
        page.contains("<img class=\"wide\" src=\"/ui/reports/chart.png\""),
        "{page}"
    );
    let (status, headers, _) = send(&app, get("/ui/reports/chart.png", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    let (status, _, _) = send(&app, get("/ui/reports/chart.png", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, earlier) = send(
        &app,
        get(
            "/ui/reports/daydream_insights-20261204T060000Z-s1.md",
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(earlier.contains("<h1>Earlier</h1>"), "{earlier}");
    // Names that reach out of the archive never get to the source (the fake panics on them).
    for bad in [
        "/ui/reports/..%2F..%2Fvalor.api-token",
        "/ui/reports/daydream_insights-..%2Fx.md",
        "/ui/reports/secrets.md",
    ] {
        let (status, _, _) = send(&app, get(bad, Some(&cookie))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn run_now_needs_the_sessions_csrf_token() {
    let (app, fake) = app();
    let cookie = log_in(&app).await;
    let (_, _, page) = send(&app, get("/ui/jobs", Some(&cookie))).await;
    let csrf = csrf_of(&page);
    let post = |body: String| post_form(&cookie, "/ui/jobs/run", body);
    let (status, _, _) = send(&app, post("csrf=forged&job=daydream".into())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(fake.started.lock().unwrap().is_empty());
    let (status, headers, _) = send(&app, post(format!("csrf={csrf}&job=daydream"))).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a redirect: a reload never runs it again"
    );
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, "/ui/jobs?done=daydream%20started.");
    let (status, _, body) = send(&app, get(&location, Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("daydream started."), "{body}");
    assert_eq!(
        *fake.started.lock().unwrap(),
        ["daydream"],
        "the reload ran nothing"
    );
    // A form without its fields gets the refusal page, not a raw 422.
    let (status, _, body) = send(&app, post("job=daydream".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("This form is incomplete"), "{body}");
}

/// A page's live stream: its events as text, one at a time.
struct Stream(axum::body::Body);

impl Stream {
    async fn open(app: &axum::Router, cookie: &str, page: &str) -> Stream {
        let path = format!("/ui/events?page={page}");
        let response = app.clone().oneshot(get(&path, Some(cookie))).await.unwrap();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        Stream(response.into_body())
    }

    async fn next(&mut self) -> String {
        let frame = self.0.frame().await.unwrap().unwrap();
        String::from_utf8_lossy(frame.data_ref().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn the_live_streams_send_a_fragment_when_its_source_moves_and_only_new_log_lines() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let fake = Arc::new(Fake::default());
    let ring = valor_dashboard::logs::LogRing::default();
    let pulse = valor_dashboard::live::Pulse::default();
    let app = valor_dashboard::router(valor_dashboard::Parts {
        source: fake,
        api_token: TOKEN.to_owned(),
        logs: ring.clone(),
        sessions: None,
        secure_cookie: false,
        pulse: pulse.clone(),
    });
    let cookie = log_in(&app).await;
    let mut overview = Stream::open(&app, &cookie, "overview").await;
    let hello = overview.next().await;
    assert!(hello.starts_with("event: hello\ndata: "), "{hello}");
    // Nothing is rendered until a source the page shows moves.
    pulse.bump(valor_dashboard::live::Topic::Turns);
    let fragment = overview.next().await;
    assert!(
        fragment.starts_with("event: fragment\ndata: cards\n"),
        "{fragment}"
    );
    assert!(fragment.contains("97"), "{fragment}");
    let mut chats = Stream::open(&app, &cookie, "chats").await;
    chats.next().await;
    pulse.bump(valor_dashboard::live::Topic::Turns);
    let chats = chats.next().await;
    assert!(
        chats.contains("running 4 s</strong> on sonnet, 2 tool calls: Read ✓, &lt;Bash&gt; …"),
        "{chats}"
    );
    // The Logs page gets the lines after the ones it has, not the page again.
    let subscriber = || tracing_subscriber::registry().with(ring.layer());
    tracing::subscriber::with_default(subscriber(), || tracing::warn!("old line"));
    let mut logs = Stream::open(
        &app,
        &cookie,
        &format!("logs&level=warn&after={}", ring.version()),
    )
    .await;
    logs.next().await;
    tracing::subscriber::with_default(subscriber(), || tracing::warn!("new <line>"));
    let lines = logs.next().await;
    assert!(lines.starts_with("event: lines\ndata: "), "{lines}");
    assert!(
        lines.contains("new &lt;line&gt;") && !lines.contains("old line"),
        "{lines}"
    );
    let (status, _, _) = send(&app, get("/ui/events?page=secrets", Some(&cookie))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Valor stopping ends every open stream (an open page must not hold the shutdown).
    pulse.close();
    assert!(overview.0.frame().await.is_none(), "the stream ended");
    assert!(logs.0.frame().await.is_none(), "the stream ended");
}

#[test]
fn on_several_machines_the_chats_say_which_node_holds_each() {
    let row = |chat_id, node: Option<&str>| ChatRow {
        chat_id,
        name: None,
        last_at_ms: 1_796_342_400_000,
        messages: 1,
        turns: 0,
        cost_usd: 0.0,
        context: None,
        pending: 0,
        session: None,
        running: None,
        node: node.map(str::to_owned),
    };
    let alone = valor_dashboard::pages::chats_fragment(&[row(1, None)], "t", 0).into_string();
    assert!(!alone.contains("data-label=\"node\""), "{alone}");
    assert!(
        !alone.contains("/ui/chats/stop"),
        "an idle chat has no Stop: {alone}"
    );
    let rows = [row(1, Some("worker-<2>")), row(2, None)];
    let cluster = valor_dashboard::pages::chats_fragment(&rows, "t", 0).into_string();
    assert!(cluster.contains("<th>node</th>"), "{cluster}");
    assert!(
        cluster.contains("<td data-label=\"node\">worker-&lt;2&gt;</td>"),
        "{cluster}"
    );
    assert!(
        cluster.contains("<td data-label=\"node\">-</td>"),
        "{cluster}"
    );
    assert_eq!(
        cluster.matches("/ui/chats/stop").count(),
        1,
        "the held chat can be stopped from here, wherever it runs: {cluster}"
    );
}

#[tokio::test]
async fn chats_show_their_figures_and_stop_needs_the_csrf_token() {
    let (app, fake) = app();
    let cookie = log_in(&app).await;
    let (status, _, page) = send(&app, get("/ui/chats", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<a href=\"/ui/chats/42\">Ops &lt;team&gt; <small>(42)</small></a></td><td data-label=\"session\"><code>5f2a9c1e</code></td><td data-label=\"last message\"><time data-ms=\"1796342400000\" datetime=\"2026-12-04T00:00:00Z\">2026-12-04 00:00:00 UTC</time></td><td class=\"n\" data-label=\"messages\">12</td><td class=\"n\" data-label=\"turns\">6</td><td class=\"n\" data-label=\"cost\">$0.5000</td><td data-label=\"context\">12 → 8 msgs, 3000 → 1200 tokens</td>"), "{page}");
    let csrf = csrf_of(&page);
    let post = |body: String| post_form(&cookie, "/ui/chats/stop", body);
    let (status, _, _) = send(&app, post("csrf=&chat_id=42".into())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(fake.stopped.lock().unwrap().is_empty());
    let (status, headers, _) = send(&app, post(format!("csrf={csrf}&chat_id=42"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let (_, _, body) = send(&app, get(&location, Some(&cookie))).await;
    assert!(
        body.contains("Chat 42: its running turn is stopping."),
        "{body}"
    );
    assert_eq!(*fake.stopped.lock().unwrap(), [42]);
    let (_, _, body) = send(&app, get("/ui/alerts", Some(&cookie))).await;
    assert!(body.contains("<div id=\"alert-1796342400000\" class=\"alert cleared\"><span class=\"Warning\">Warning</span> Valor's resident memory is 600 MiB<br><small>raised <time data-ms=\"1796342400000\""), "{body}");
    assert!(body.contains("told to the admin chat (<time"), "{body}");
    assert!(
        body.contains(
            "<strong>Warning</strong> Telegram has not been ok for 60 s: 502 &lt;Bad Gateway&gt;"
        ),
        "active first: {body}"
    );
    assert!(body.find("Telegram has not").unwrap() < body.find("Past (30 days)").unwrap());
}

#[tokio::test]
async fn memory_search_shows_a_memory_whole_and_forget_needs_the_csrf_token() {
    let (app, fake) = app();
    let cookie = log_in(&app).await;
    let (_, _, page) = send(&app, get("/ui/memory?q=tokio", Some(&cookie))).await;
    assert!(
        page.contains("<a href=\"/ui/memory/9\"><strong>About tokio</strong></a>"),
        "{page}"
    );
    assert!(
        page.contains("<td data-label=\"learning\">We use sled<details>"),
        "{page}"
    );
    assert!(
        page.contains("asked about (switching) and kept, made 2026-12-04 00:00:00 UTC, last changed 2026-12-04 01:00:00 UTC<br>seen in: tg:41, tg:&lt;57&gt;"),
        "the learning's history: {page}"
    );
    assert!(page.contains("retired: forgotten by the user"), "{page}");
    let (status, _, whole) = send(&app, get("/ui/memory/9", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        whole.contains("the whole &lt;b&gt;text&lt;/b&gt;"),
        "{whole}"
    );
    let (status, _, _) = send(&app, get("/ui/memory/10", Some(&cookie))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let csrf = csrf_of(&page);
    let post = |body: String| post_form(&cookie, "/ui/learnings/forget", body);
    let (status, _, _) = send(&app, post("csrf=nope&chat_id=42&number=3".into())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = send(&app, post(format!("csrf={csrf}&chat_id=42&number=3"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let (_, _, body) = send(&app, get(&location, Some(&cookie))).await;
    assert!(body.contains("Forgot #3."), "{body}");
    assert_eq!(*fake.forgotten.lock().unwrap(), [(42, 3)]);
}

#[tokio::test]
async fn the_logs_page_filters_by_level_and_chat() {
    use tracing_subscriber::layer::SubscriberExt as _;

    let ring = valor_dashboard::logs::LogRing::default();
    let subscriber = tracing_subscriber::registry().with(ring.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(chat_id = 9_i64, "turn started");
        tracing::warn!(chat_id = 9_i64, "the API is busy <retrying>");
        tracing::warn!(chat_id = 5_i64, "another chat");
    });
    let fake = Arc::new(Fake::default());
    let app = router(fake, ring);
    let cookie = log_in(&app).await;
    let (status, _, page) = send(&app, get("/ui/logs?level=warn&chat=9", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("chat=9 the API is busy &lt;retrying&gt;"),
        "{page}"
    );
    assert!(
        !page.contains("turn started") && !page.contains("another chat"),
        "{page}"
    );
    assert!(
        page.contains("&amp;level=warn&amp;chat=9\""),
        "the live stream keeps the filter: {page}"
    );
    let (_, _, all) = send(&app, get("/ui/logs?level=info", Some(&cookie))).await;
    assert!(
        all.contains("turn started") && all.contains("another chat"),
        "{all}"
    );
}
