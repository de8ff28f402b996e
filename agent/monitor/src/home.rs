//! `GET /`: what a newcomer who opens the health port sees - what Valor is, how it is now, and
//! where to go next (the JSON and Prometheus endpoints, the dashboard's login).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::server::{HealthState, health_body};

pub(crate) async fn home(State(state): State<HealthState>) -> Response {
    // With the dashboard on, the operator's page is the dashboard (which says how to log in).
    if state.dashboard {
        return axum::response::Redirect::to("/ui/").into_response();
    }
    let (_, body) = health_body(&state);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page(&body, state.dashboard),
    )
        .into_response()
}

/// The page for a /health body.
fn page(health: &Value, dashboard: bool) -> String {
    let status = health["status"].as_str().unwrap_or("unknown");
    let score = health["score"].as_u64().unwrap_or(0);
    let version = health["version"].as_str().unwrap_or("");
    let uptime = uptime_text(health["uptime_secs"].as_u64().unwrap_or(0));
    let mut components = String::new();
    if let Some(map) = health["components"].as_object() {
        for (name, figures) in map {
            let state = figures["status"].as_str().unwrap_or("unknown");
            components.push_str(&format!(
                "<li><span class=\"{}\">{}</span> {}</li>",
                escape(state),
                escape(state),
                escape(name)
            ));
        }
    }
    let alerts = match health["alerts"].as_array() {
        Some(list) if !list.is_empty() => format!(
            "<p>{} active alert{}.</p>",
            list.len(),
            if list.len() == 1 { "" } else { "s" }
        ),
        _ => "<p>No active alerts.</p>".to_owned(),
    };
    let dashboard_text = if dashboard {
        "<li><a href=\"/ui/\">Dashboard</a>: run <code>valor dashboard</code> on this machine for \
         a one-time login link (turns, usage, chats, jobs, memory, alerts, logs).</li>"
    } else {
        "<li>The dashboard is switched off (<code>[health] dashboard = false</code>).</li>"
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Valor - {status}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: 0; }}
.ok {{ color: #176f2c; }} .degraded {{ color: #9a6700; }} .unhealthy, .unknown {{ color: #b42318; }}
ul {{ padding-left: 1.2rem; }} code {{ background: #f2f2f2; padding: 0 .2rem; }}
</style></head>
<body>
<h1>Valor</h1>
<p class="sub">version {version} &middot; up {uptime}</p>
<p>Valor is a chat-bot agent: you talk to it in Telegram, it answers with Claude Code sessions and
their tools, remembers what was said and learned, watches its own health, and every six hours
studies the workspaces it works on and reports insights.</p>
<h2>Health: <span class="{status_class}">{status}</span> (score {score})</h2>
{alerts}
<ul>{components}</ul>
<h2>Where next</h2>
<ul>
<li><a href="/health">/health</a>: this status as JSON (200 ok or degraded, 503 unhealthy).</li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics.</li>
<li><a href="/ready">/ready</a>: 200 while Valor accepts work.</li>
{dashboard_text}
</ul>
</body></html>
"#,
        status = escape(status),
        status_class = escape(status),
    )
}

fn uptime_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} days {} h", secs / 86400, secs % 86400 / 3600),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_says_what_valor_is_its_health_and_where_next() {
        let health = serde_json::json!({
            "status": "degraded", "score": 71, "version": "1.2.3", "uptime_secs": 3720,
            "components": {"cpu": {"status": "ok"}, "<b>x": {"status": "degraded"}},
            "alerts": [{"kind": "cpu"}],
        });
        let html = page(&health, true);
        assert!(html.contains("Valor is a chat-bot agent"));
        assert!(html.contains("Health: <span class=\"degraded\">degraded</span> (score 71)"));
        assert!(html.contains("up 1 h 2 min"));
        assert!(html.contains("1 active alert."));
        assert!(html.contains("&lt;b&gt;x"), "names are escaped: {html}");
        for link in ["/health", "/metrics", "/ready", "/ui/"] {
            assert!(html.contains(&format!("href=\"{link}\"")), "{link}");
        }
        assert!(html.contains("valor dashboard"));
        let off = page(&health, false);
        assert!(!off.contains("href=\"/ui/\""));
        assert!(off.contains("dashboard = false"));
    }
}
