//! Value checks that types alone cannot express. Each returns `(key, message)`; the loader adds
//! where the value came from.

use crate::schema::{
    ClaudeConfig, Config, HealthConfig, LogConfig, MonitorConfig, RoutingConfig, TelegramConfig,
};

/// Effort levels the pinned Claude Code CLI accepts.
pub const EFFORT_LEVELS: [&str; 5] = ["low", "medium", "high", "xhigh", "max"];

pub(crate) fn validate(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    log(&config.log, &mut problems);
    health(&config.health, &mut problems);
    monitor(&config.monitor, &mut problems);
    claude(&config.claude, &mut problems);
    routing(&config.routing, &mut problems);
    telegram(&config.telegram, &mut problems);
    scheduler(&config.scheduler, &mut problems);
    daydream(&config.daydream, &mut problems);
    notion(&config.tools.notion, &mut problems);
    crate::cluster::validate(&config.cluster, &config.claude, &mut problems);
    crate::trust::validate(&config.approvals, &mut problems);
    crate::budget::validate(&config.budget, &mut problems);
    let c = &config.context;
    in_range(
        &mut problems,
        "context.token_budget",
        c.token_budget as u64,
        200,
        1_000_000,
        "tokens",
    );
    in_range(
        &mut problems,
        "context.keep_recent",
        c.keep_recent as u64,
        1,
        200,
        "messages",
    );
    in_range(
        &mut problems,
        "context.summary_batch",
        c.summary_batch as u64,
        2,
        10_000,
        "messages",
    );
    in_range(
        &mut problems,
        "context.summary_chars",
        c.summary_chars as u64,
        80,
        20_000,
        "characters",
    );
    in_range(
        &mut problems,
        "context.short_history",
        c.short_history as u64,
        0,
        200,
        "messages",
    );
    let l = &config.learning;
    for (chat, threshold) in &l.ask_threshold_by_chat {
        let key = format!("learning.ask_threshold_by_chat.{chat}");
        if chat.trim().parse::<i64>().is_err() {
            push(
                &mut problems,
                &key,
                format!("expected a chat id (a whole number), got {chat:?}"),
            );
        } else if !(0.5..=1.0).contains(threshold) {
            push(
                &mut problems,
                &key,
                format!("expected a number from 0.5 to 1, got {threshold}"),
            );
        }
    }
    for (key, value, low, high) in [
        ("learning.ask_threshold", l.ask_threshold, 0.5, 1.0),
        (
            "learning.duplicate_similarity",
            l.duplicate_similarity,
            0.5,
            0.99,
        ),
    ] {
        if !(low..=high).contains(&value) {
            push(
                &mut problems,
                key,
                format!("expected a number from {low} to {high}, got {value}"),
            );
        }
    }
    let c = &config.context;
    in_range(
        &mut problems,
        "context.learning_tokens",
        c.learning_tokens as u64,
        0,
        10_000,
        "tokens",
    );
    in_range(
        &mut problems,
        "context.recalled_tokens",
        c.recalled_tokens as u64,
        0,
        100_000,
        "tokens",
    );
    in_range(
        &mut problems,
        "context.memory_tokens",
        c.memory_tokens as u64,
        0,
        100_000,
        "tokens",
    );
    in_range(
        &mut problems,
        "context.recalled_detailed",
        c.recalled_detailed as u64,
        0,
        50,
        "memories",
    );
    let m = &config.memory;
    in_range(
        &mut problems,
        "memory.session_idle_mins",
        m.session_idle_mins,
        0,
        525_600,
        "minutes",
    );
    let model = m.summarize_with.trim();
    if !model.is_empty()
        && !model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '[' | ']'))
    {
        push(
            &mut problems,
            "memory.summarize_with",
            format!("expected a model name such as \"haiku\" (or empty), got {model:?}"),
        );
    }
    problems
}

type Problems = Vec<(String, String)>;

fn push(problems: &mut Problems, key: &str, message: impl Into<String>) {
    problems.push((key.to_owned(), message.into()));
}

fn log(log: &LogConfig, problems: &mut Problems) {
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log.filter) {
        push(
            problems,
            "log.filter",
            format!(
                "expected a log filter such as \"info\" or \"valor=debug,info\", got {:?} ({e})",
                log.filter
            ),
        );
    }
}

fn health(health: &HealthConfig, problems: &mut Problems) {
    if !health.bind.ip().is_loopback() && !health.allow_non_loopback {
        push(
            problems,
            "health.bind",
            format!(
                "{} is not a loopback address, so health data would be reachable from other \
                 machines; use 127.0.0.1, or set health.allow_non_loopback = true to allow it",
                health.bind
            ),
        );
    }
}

fn monitor(m: &MonitorConfig, problems: &mut Problems) {
    in_range(
        problems,
        "monitor.interval_secs",
        m.interval_secs,
        1,
        3600,
        "seconds",
    );
    in_range(
        problems,
        "monitor.history_len",
        m.history_len as u64,
        1,
        100_000,
        "samples",
    );
    in_range(
        problems,
        "monitor.stale_child_secs",
        m.stale_child_secs,
        60,
        30 * 24 * 3600,
        "seconds",
    );
    in_range(
        problems,
        "monitor.alert_cooldown_mins",
        m.alert_cooldown_mins,
        1,
        7 * 24 * 60,
        "minutes",
    );

    let w = &m.weights;
    for (name, value) in [
        ("ram", w.ram),
        ("cpu", w.cpu),
        ("child_processes", w.child_processes),
        ("alerts", w.alerts),
    ] {
        if !value.is_finite() || value < 0.0 {
            push(
                problems,
                &format!("monitor.weights.{name}"),
                format!("expected a number >= 0, got {value}"),
            );
        }
    }
    if w.ram + w.cpu + w.child_processes + w.alerts <= 0.0 {
        push(
            problems,
            "monitor.weights",
            "at least one weight must be greater than 0",
        );
    }

    let t = &m.thresholds;
    const T: &str = "monitor.thresholds";
    let unbounded = f64::MAX;
    ordered(
        problems,
        (&format!("{T}.rss_warn_mb"), t.rss_warn_mb as f64),
        (&format!("{T}.rss_critical_mb"), t.rss_critical_mb as f64),
        1.0,
        unbounded,
    );
    ordered(
        problems,
        (
            &format!("{T}.system_memory_warn_percent"),
            t.system_memory_warn_percent,
        ),
        (
            &format!("{T}.system_memory_critical_percent"),
            t.system_memory_critical_percent,
        ),
        1.0,
        100.0,
    );
    ordered(
        problems,
        (&format!("{T}.cpu_warn_percent"), t.cpu_warn_percent),
        (&format!("{T}.cpu_critical_percent"), t.cpu_critical_percent),
        1.0,
        100.0,
    );
    ordered(
        problems,
        (&format!("{T}.children_warn"), t.children_warn as f64),
        (
            &format!("{T}.children_critical"),
            t.children_critical as f64,
        ),
        1.0,
        unbounded,
    );
    if !(t.monthly_spend_warn_usd.is_finite() && t.monthly_spend_warn_usd >= 0.0) {
        push(
            problems,
            &format!("{T}.monthly_spend_warn_usd"),
            format!(
                "expected 0 (off) or more dollars, got {}",
                t.monthly_spend_warn_usd
            ),
        );
    }

    let s = &m.status;
    if s.degraded_below > 100 {
        push(
            problems,
            "monitor.status.degraded_below",
            format!("expected 0 to 100, got {}", s.degraded_below),
        );
    }
    if s.unhealthy_below > s.degraded_below {
        push(
            problems,
            "monitor.status.unhealthy_below",
            format!(
                "must not be above monitor.status.degraded_below ({}), got {}",
                s.degraded_below, s.unhealthy_below
            ),
        );
    }
}

fn in_range(problems: &mut Problems, key: &str, value: u64, min: u64, max: u64, unit: &str) {
    if !(min..=max).contains(&value) {
        push(
            problems,
            key,
            format!("expected {min} to {max} {unit}, got {value}"),
        );
    }
}

/// A warning level must lie below its critical level, both within `[min, max]`.
fn ordered(problems: &mut Problems, warn: (&str, f64), critical: (&str, f64), min: f64, max: f64) {
    let max_text = if max == f64::MAX {
        "no limit".to_owned()
    } else {
        max.to_string()
    };
    for (key, value) in [warn, critical] {
        if !value.is_finite() || value < min || value > max {
            push(
                problems,
                key,
                format!("expected a value from {min} to {max_text}, got {value}"),
            );
        }
    }
    if warn.1 >= critical.1 {
        push(
            problems,
            warn.0,
            format!(
                "must be below {} ({}), got {}",
                critical.0, critical.1, warn.1
            ),
        );
    }
}

fn claude(c: &ClaudeConfig, problems: &mut Problems) {
    in_range(
        problems,
        "claude.max_concurrent",
        c.max_concurrent as u64,
        1,
        64,
        "runs",
    );
    in_range(
        problems,
        "claude.total_timeout_secs",
        c.total_timeout_secs,
        10,
        24 * 3600,
        "seconds",
    );
    in_range(
        problems,
        "claude.idle_timeout_secs",
        c.idle_timeout_secs,
        5,
        24 * 3600,
        "seconds",
    );
    in_range(
        problems,
        "claude.kill_grace_secs",
        c.kill_grace_secs,
        1,
        60,
        "seconds",
    );
    in_range(
        problems,
        "claude.keep_warm_secs",
        c.keep_warm_secs,
        0,
        24 * 3600,
        "seconds",
    );
    in_range(
        problems,
        "claude.max_warm",
        c.max_warm as u64,
        0,
        64,
        "processes",
    );
    if c.idle_timeout_secs > c.total_timeout_secs {
        push(
            problems,
            "claude.idle_timeout_secs",
            format!(
                "must not be above claude.total_timeout_secs ({}), got {}",
                c.total_timeout_secs, c.idle_timeout_secs
            ),
        );
    }
    for (i, tool) in c.allowed_tools.iter().enumerate() {
        if tool.trim().is_empty() || tool.contains(char::is_whitespace) {
            push(
                problems,
                &format!("claude.allowed_tools.{i}"),
                format!("expected a tool name such as \"Read\" or \"mcp__valor\", got {tool:?}"),
            );
        }
    }
    let limits = &c.limits;
    for (key, value, low, high, unit) in [
        (
            "claude.limits.memory_mb",
            limits.memory_mb,
            64,
            1 << 20,
            "MB",
        ),
        (
            "claude.limits.processes",
            limits.processes,
            32,
            1 << 20,
            "processes",
        ),
        (
            "claude.limits.cpu_weight",
            limits.cpu_weight,
            1,
            10_000,
            "(weight)",
        ),
        ("claude.limits.disk_mb", limits.disk_mb, 1, 1 << 30, "MB"),
        ("claude.limits.tmp_mb", limits.tmp_mb, 1, 1 << 20, "MB"),
    ] {
        in_range(problems, key, value, low, high, unit);
    }
    if c.sandbox_uid == 0 || c.sandbox_uid == u32::MAX {
        push(
            problems,
            "claude.sandbox_uid",
            format!("expected an unprivileged user id, got {}", c.sandbox_uid),
        );
    }
    let hosts = (c
        .egress
        .allow
        .iter()
        .map(|h| ("claude.egress.allow".to_owned(), h)))
    .chain(
        c.egress
            .private
            .iter()
            .map(|h| ("claude.egress.private".to_owned(), h)),
    )
    .chain(c.egress.chats.iter().flat_map(|(chat, hosts)| {
        hosts
            .iter()
            .map(move |h| (format!("claude.egress.chats.{chat}"), h))
    }));
    for (key, host) in hosts {
        if let Err(e) = egress_host(host) {
            push(problems, &key, e);
        }
    }
    for chat in c.egress.chats.keys() {
        if chat.parse::<i64>().is_err() {
            push(
                problems,
                &format!("claude.egress.chats.{chat}"),
                "expected a chat id (a number)",
            );
        }
    }
    for name in c.env.keys() {
        if crate::secrets::SECRET_VARS.contains(&name.as_str()) && !name.starts_with("ANTHROPIC_") {
            push(
                problems,
                &format!("claude.env.{name}"),
                "this secret is never given to Claude Code; remove it",
            );
        }
    }
}

/// An egress host as `[claude.egress]` takes it: `example.com`, `*.example.com`, `host:port`.
fn egress_host(text: &str) -> Result<(), String> {
    let host = text.trim().strip_prefix("*.").unwrap_or(text.trim());
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "expected a host such as example.com, *.example.com or example.com:8443, got {text:?}"
        ))
    }
}

/// Each chat's Notion grant names databases `[tools.notion] databases` knows.
fn notion(n: &crate::schema::NotionConfig, problems: &mut Problems) {
    for (chat, grant) in &n.chats {
        let key = format!("tools.notion.chats.{chat}");
        if chat.parse::<i64>().is_err() {
            push(problems, &key, "expected a chat id (a number)");
        }
        for name in &grant.databases {
            if !n
                .databases
                .keys()
                .any(|known| known.eq_ignore_ascii_case(name))
            {
                push(
                    problems,
                    &format!("{key}.databases"),
                    format!("{name:?} is not in [tools.notion] databases"),
                );
            }
        }
    }
}

fn routing(r: &RoutingConfig, problems: &mut Problems) {
    for (class, route) in [
        ("short_chat", &r.short_chat),
        ("development", &r.development),
        ("complex", &r.complex),
        ("diagnosis", &r.diagnosis),
    ] {
        if !route.effort.is_empty() && !EFFORT_LEVELS.contains(&route.effort.as_str()) {
            push(
                problems,
                &format!("routing.{class}.effort"),
                format!(
                    "expected one of {} (or \"\" for the CLI's default), got {:?}",
                    EFFORT_LEVELS.join(", "),
                    route.effort
                ),
            );
        }
        if route.model.contains(char::is_whitespace) {
            push(
                problems,
                &format!("routing.{class}.model"),
                format!(
                    "expected a model name such as \"sonnet\", got {:?}",
                    route.model
                ),
            );
        }
    }
}

fn telegram(t: &TelegramConfig, problems: &mut Problems) {
    let scheme_ok = t.api_url.starts_with("https://") || t.api_url.starts_with("http://");
    if !scheme_ok || t.api_url.contains(char::is_whitespace) {
        push(
            problems,
            "telegram.api_url",
            format!(
                "expected an http(s) URL such as \"https://api.telegram.org\", got {:?}",
                t.api_url
            ),
        );
    }
    in_range(
        problems,
        "telegram.poll_timeout_secs",
        t.poll_timeout_secs,
        1,
        50,
        "seconds",
    );
    in_range(
        problems,
        "telegram.max_pending",
        t.max_pending as u64,
        1,
        1000,
        "messages",
    );
}

/// A schedule's shape (the scheduler parses it fully at start).
fn schedule_shape(key: &str, schedule: &str, problems: &mut Vec<(String, String)>) {
    let schedule = schedule.trim();
    if !(schedule.starts_with("every ") || schedule.split_whitespace().count() == 6) {
        problems.push((
            key.to_owned(),
            format!(
                "{schedule:?} is not a schedule: use six cron fields (second minute hour \
                 day-of-month month day-of-week), e.g. \"0 15 * * * *\", or \"every 1h\""
            ),
        ));
    }
}

fn daydream(d: &crate::schema::DaydreamConfig, problems: &mut Vec<(String, String)>) {
    schedule_shape("daydream.schedule", &d.schedule, problems);
    if d.backend == crate::DaydreamBackend::Openai && d.model.trim().is_empty() {
        problems.push((
            "daydream.model".to_owned(),
            "the openai backend needs a model name, e.g. \"llama3.1\"".to_owned(),
        ));
    }
    in_range(
        problems,
        "daydream.keep_reports",
        d.keep_reports as u64,
        1,
        1000,
        "reports",
    );
    in_range(
        problems,
        "daydream.analysis_timeout_secs",
        d.analysis_timeout_secs,
        10,
        3600,
        "seconds",
    );
}

fn scheduler(s: &crate::schema::SchedulerConfig, problems: &mut Vec<(String, String)>) {
    schedule_shape("scheduler.cleanup_schedule", &s.cleanup_schedule, problems);
    in_range(
        problems,
        "scheduler.catch_up_window_hours",
        s.catch_up_window_hours,
        1,
        24 * 30,
        "hours",
    );
}
