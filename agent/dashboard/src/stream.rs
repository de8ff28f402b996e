//! `GET /ui/events?page=`: a page's live fragments as server-sent events. On connect: `hello`
//! with this process's start (a page from an earlier process reloads itself), then a
//! `fragment` (`<id>\n<html>`) whenever a source the page shows has moved and the fragment's
//! text changed, `lines` with only the new log lines on the Logs page, and a `ping` when idle.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::watch;
use valor_protocol::time::now_ms;

use crate::handlers::{self, LogsQuery, refusal};
use crate::live::{self, Topic, Versions};
use crate::logs::LogFilter;
use crate::pages::turns::TurnFilter;
use crate::{Ui, drill, pages};

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    page: String,
    #[serde(default)]
    days: Option<u32>,
    /// The Turns page: which turns (`all`, `chats`, `internal`, `errors`).
    #[serde(default)]
    show: Option<String>,
    /// The Logs page: the number of the first line it does not have.
    #[serde(default)]
    after: Option<u64>,
    #[serde(flatten)]
    logs: LogsQuery,
}

/// Which page a stream feeds.
#[derive(Clone)]
enum LivePage {
    Overview,
    Chats,
    Usage(u32),
    Turns(TurnFilter),
    Chat(i64),
    Jobs,
    Alerts,
    Approvals,
    Logs(LogFilter),
}

impl LivePage {
    fn topics(&self) -> &'static [Topic] {
        match self {
            LivePage::Overview => &[Topic::Turns, Topic::Health, Topic::Alerts],
            // An approval is asked and decided while a turn runs, which moves its progress.
            LivePage::Chats
            | LivePage::Usage(_)
            | LivePage::Turns(_)
            | LivePage::Chat(_)
            | LivePage::Approvals => &[Topic::Turns],
            LivePage::Jobs => &[Topic::Jobs],
            LivePage::Alerts => &[Topic::Alerts],
            LivePage::Logs(_) => &[],
        }
    }

    /// The page's fragments now: (element id, html).
    async fn fragments(&self, ui: &Ui, csrf: &str) -> Vec<(&'static str, String)> {
        let now = now_ms();
        match self {
            LivePage::Overview => {
                let (o, today, charts) = handlers::overview_parts(ui).await;
                vec![
                    ("cards", pages::overview_cards(&o, &today).into_string()),
                    ("health", pages::overview_health(&o, now).into_string()),
                    ("charts", pages::overview_charts(&charts).into_string()),
                ]
            }
            LivePage::Chats => {
                let rows = handlers::chat_rows(ui).await;
                vec![(
                    "chats",
                    pages::chats_fragment(&rows, csrf, now).into_string(),
                )]
            }
            LivePage::Usage(days) => {
                vec![("usage", handlers::usage_body(ui, *days).await.into_string())]
            }
            LivePage::Turns(filter) => {
                vec![("turns", drill::turns_body(ui, *filter).await.into_string())]
            }
            LivePage::Chat(chat_id) => {
                vec![("chat", drill::chat_body(ui, *chat_id).await.into_string())]
            }
            LivePage::Jobs => {
                let view = handlers::jobs_view(ui).await;
                vec![("jobs", pages::jobs_fragment(&view, csrf, now).into_string())]
            }
            LivePage::Alerts => {
                let (rows, silences) = (ui.source.alerts().await, ui.source.silences().await);
                let html = pages::review::alerts_fragment(&rows, &silences, csrf);
                vec![("alerts", html.into_string())]
            }
            LivePage::Approvals => {
                let html = crate::review::approvals_body(ui).await;
                vec![("approvals", html.into_string())]
            }
            LivePage::Logs(_) => Vec::new(),
        }
    }
}

/// What one stream remembers between events.
struct Watch {
    ui: Ui,
    page: LivePage,
    csrf: String,
    versions: watch::Receiver<Versions>,
    seen: Versions,
    logs: watch::Receiver<u64>,
    /// The next log line to send.
    after: u64,
    sent: HashMap<&'static str, String>,
    /// Events ready to go.
    queue: Vec<Event>,
    last_render: Option<tokio::time::Instant>,
}

impl Watch {
    /// Renders the fragments and queues those whose text changed.
    async fn render(&mut self) {
        for (id, html) in self.page.fragments(&self.ui, &self.csrf).await {
            if self.sent.get(id) != Some(&html) {
                self.queue.push(
                    Event::default()
                        .event("fragment")
                        .data(format!("{id}\n{html}")),
                );
                self.sent.insert(id, html);
            }
        }
    }

    /// Queues the log lines after the last sent.
    fn new_lines(&mut self) {
        let LivePage::Logs(filter) = &self.page else {
            return;
        };
        // Lines numbered from `upto` on wait for the next time (none lost, none sent twice).
        let upto = self.ui.logs.version();
        let mut lines = (self.ui.logs).matching(filter, self.after, handlers::LOG_LINES);
        lines.retain(|l| l.seq < upto);
        self.after = upto;
        if !lines.is_empty() {
            let html = pages::log_lines(&lines).into_string();
            self.queue.push(Event::default().event("lines").data(html));
        }
    }

    /// Waits for the next thing to send.
    async fn next(&mut self) -> Event {
        loop {
            if !self.queue.is_empty() {
                return self.queue.remove(0);
            }
            // A burst of changes is one render.
            if let Some(at) = self.last_render {
                tokio::time::sleep_until(at + live::SETTLE).await;
            }
            tokio::select! {
                changed = self.versions.changed() => {
                    if changed.is_err() {
                        return Event::default().event("ping").data("");
                    }
                    let now = *self.versions.borrow_and_update();
                    let moved = live::moved(&self.seen, &now);
                    self.seen = now;
                    if moved.iter().any(|t| self.page.topics().contains(t)) {
                        self.last_render = Some(tokio::time::Instant::now());
                        self.render().await;
                    }
                }
                changed = self.logs.changed(), if matches!(self.page, LivePage::Logs(_)) => {
                    if changed.is_ok() {
                        self.logs.borrow_and_update();
                        self.last_render = Some(tokio::time::Instant::now());
                        self.new_lines();
                    }
                }
                () = tokio::time::sleep(live::PING_EVERY) => {
                    return Event::default().event("ping").data("");
                }
            }
        }
    }
}

pub(crate) async fn events(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let Some(session) = ui.session(&headers).await else {
        return refusal();
    };
    let page = match q.page.as_str() {
        "" | "overview" => LivePage::Overview,
        "chats" => LivePage::Chats,
        "usage" => LivePage::Usage(q.days.unwrap_or(7).clamp(1, 366)),
        "turns" => LivePage::Turns(TurnFilter::parse(q.show.as_deref())),
        "chat" => match q.logs.chat.as_deref().map(str::parse::<i64>) {
            Some(Ok(chat_id)) => LivePage::Chat(chat_id),
            _ => return (StatusCode::BAD_REQUEST, "which chat?").into_response(),
        },
        "jobs" => LivePage::Jobs,
        "alerts" => LivePage::Alerts,
        "approvals" => LivePage::Approvals,
        "logs" => LivePage::Logs(q.logs.view().0),
        _ => return (StatusCode::NOT_FOUND, "no such live page").into_response(),
    };
    let mut versions = ui.pulse.subscribe();
    let seen = *versions.borrow_and_update();
    let mut logs = ui.logs.subscribe();
    logs.borrow_and_update();
    let after = q.after.unwrap_or_else(|| ui.logs.version());
    let mut watch = Watch {
        ui,
        page,
        csrf: session.csrf,
        versions,
        seen,
        logs,
        after,
        sent: HashMap::new(),
        queue: vec![
            Event::default()
                .event("hello")
                .data(pages::BOOT.to_string()),
        ],
        last_render: None,
    };
    // What changed between the page's render and this connection is sent at once.
    watch.render().await;
    watch.new_lines();
    let closing = watch.ui.pulse.clone();
    let stream = futures_util::stream::unfold(watch, move |mut watch| {
        let closing = closing.clone();
        async move {
            // Stopping wins over events still queued.
            tokio::select! {
                biased;
                () = closing.closed() => None,
                event = watch.next() => Some((Ok::<Event, Infallible>(event), watch)),
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
