//! What the operator decides on the dashboard: a job paused and resumed with its progress
//! shown, a search with scores and filters, questions accepted or declined, alerts
//! acknowledged and silenced; each a POST behind the session's CSRF token that redirects.

use axum::http::{StatusCode, header};

use super::{app, csrf_of, get, log_in, post_form, send};

/// POSTs `body` (the page's CSRF token first) and follows the redirect; the page it lands on.
async fn decide(app: &axum::Router, cookie: &str, path: &str, body: &str) -> String {
    let (_, _, page) = send(app, get("/ui/jobs", Some(cookie))).await;
    let csrf = csrf_of(&page);
    let request = post_form(cookie, path, format!("csrf={csrf}&{body}"));
    let (status, headers, _) = send(app, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let (_, _, page) = send(app, get(&location, Some(cookie))).await;
    page
}

#[tokio::test]
async fn a_job_is_paused_and_resumed_and_its_progress_shows() {
    let (app, fake) = app();
    let cookie = log_in(&app).await;
    let (_, _, page) = send(&app, get("/ui/jobs", Some(&cookie))).await;
    assert!(
        page.contains(
            "<small class=\"progress\">phase 3/6: context — &lt;2&gt; workspaces</small>"
        ),
        "{page}"
    );
    assert!(
        page.contains("name=\"paused\" value=\"true\""),
        "a Pause button: {page}"
    );
    let page = decide(&app, &cookie, "/ui/jobs/pause", "job=daydream&paused=true").await;
    assert!(page.contains("daydream is paused"), "{page}");
    let page = decide(&app, &cookie, "/ui/jobs/pause", "job=daydream&paused=false").await;
    assert!(page.contains("daydream is resumed."), "{page}");
    let page = decide(&app, &cookie, "/ui/jobs/pause", "job=nothing&paused=true").await;
    assert!(page.contains("there is no job called"), "{page}");
    assert_eq!(
        *fake.paused.lock().unwrap(),
        [
            ("daydream".to_owned(), true),
            ("daydream".to_owned(), false)
        ]
    );
    // Without the token, or with a missing field: refused, nothing done.
    let forged = post_form(
        &cookie,
        "/ui/jobs/pause",
        "csrf=x&job=daydream&paused=true".into(),
    );
    assert_eq!(send(&app, forged).await.0, StatusCode::FORBIDDEN);
    let (_, _, jobs) = send(&app, get("/ui/jobs", Some(&cookie))).await;
    let partial = format!("csrf={}&job=daydream", csrf_of(&jobs));
    let (status, _, body) = send(&app, post_form(&cookie, "/ui/jobs/pause", partial)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(fake.paused.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn memory_search_shows_scores_and_passes_its_filters() {
    let (app, fake) = app();
    let cookie = log_in(&app).await;
    let path = "/ui/memory?q=tokio&kind=link&chat=42&days=7";
    let (_, _, page) = send(&app, get(path, Some(&cookie))).await;
    assert!(
        page.contains("<td class=\"n\" data-label=\"score\">0.0328</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"n\" data-label=\"similarity\">0.710</td>"),
        "{page}"
    );
    assert!(
        page.contains("<option value=\"link\" selected>link</option>"),
        "{page}"
    );
    let (_, _, _) = send(
        &app,
        get("/ui/memory?q=tokio&kind=&chat=&days=", Some(&cookie)),
    )
    .await;
    let (_, _, _) = send(
        &app,
        get("/ui/memory?q=x&chat=%3Cscript%3E&days=-3", Some(&cookie)),
    )
    .await;
    let searched = fake.searched.lock().unwrap().clone();
    assert_eq!(
        (
            searched[0].kind.as_deref(),
            searched[0].chat,
            searched[0].days
        ),
        (Some("link"), Some(42), Some(7))
    );
    assert_eq!(
        (
            searched[1].kind.as_deref(),
            searched[1].chat,
            searched[1].days
        ),
        (None, None, None)
    );
    assert_eq!(
        (searched[2].chat, searched[2].days),
        (None, None),
        "unreadable filters are none"
    );
}

#[tokio::test]
async fn open_and_declined_questions_are_accepted_or_declined_through_the_agent() {
    let (app, fake) = app();
    let cookie = log_in(&app).await;
    let (_, _, page) = send(&app, get("/ui/memory", Some(&cookie))).await;
    assert!(page.contains("we deploy on &lt;fridays&gt; #3"), "{page}");
    assert!(
        page.contains("we deploy on &lt;fridays&gt; #2"),
        "a declined one: {page}"
    );
    assert!(
        !page.contains("#1"),
        "an accepted one is a learning now: {page}"
    );
    // The pending one has both buttons, the declined one Accept only.
    let buttons = |id: u64| page.matches(&format!("name=\"id\" value=\"{id}\"")).count();
    assert_eq!((buttons(3), buttons(2)), (2, 1));
    let page = decide(
        &app,
        &cookie,
        "/ui/questions/decide",
        "chat_id=42&id=2&yes=true",
    )
    .await;
    assert!(page.contains("Remembered."), "{page}");
    let page = decide(
        &app,
        &cookie,
        "/ui/questions/decide",
        "chat_id=42&id=3&yes=false",
    )
    .await;
    assert!(page.contains("Not stored."), "{page}");
    assert_eq!(
        *fake.decided.lock().unwrap(),
        [(42, 2, true), (42, 3, false)]
    );
}

#[tokio::test]
async fn an_alert_is_acknowledged_and_silenced_and_the_silence_lifted() {
    let (app, fake) = app();
    let cookie = log_in(&app).await;
    let (_, _, page) = send(&app, get("/ui/alerts", Some(&cookie))).await;
    assert!(page.contains(">Acknowledge</button>"), "{page}");
    assert!(page.contains("name=\"hours\" value=\"8\""), "{page}");
    let page = decide(&app, &cookie, "/ui/alerts/acknowledge", "kind=telegram").await;
    assert!(page.contains("Acknowledged: Telegram."), "{page}");
    assert!(page.contains("acknowledged <time"), "{page}");
    assert!(!page.contains(">Acknowledge</button>"), "{page}");
    let page = decide(&app, &cookie, "/ui/alerts/silence", "kind=telegram&hours=8").await;
    assert!(page.contains("Silenced telegram for 8 h."), "{page}");
    assert!(
        page.contains("telegram: not told to the admin chat until"),
        "{page}"
    );
    // More than a week is a week.
    decide(
        &app,
        &cookie,
        "/ui/alerts/silence",
        "kind=telegram&hours=100000",
    )
    .await;
    let page = decide(&app, &cookie, "/ui/alerts/silence", "kind=telegram&hours=0").await;
    assert!(
        !page.contains("not told to the admin chat until"),
        "lifted: {page}"
    );
    assert_eq!(
        *fake.silenced.lock().unwrap(),
        [
            ("telegram".to_owned(), 8),
            ("telegram".to_owned(), 168),
            ("telegram".to_owned(), 0)
        ]
    );
    let forged = post_form(
        &cookie,
        "/ui/alerts/silence",
        "csrf=x&kind=telegram&hours=1".into(),
    );
    assert_eq!(send(&app, forged).await.0, StatusCode::FORBIDDEN);
    assert_eq!(fake.silenced.lock().unwrap().len(), 3);
}
