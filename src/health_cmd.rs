//! `valor health`: asks a running instance how it is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use valor_config::ConfigSource;

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Health URL (default: http://<[health] bind>/health).
    #[arg(long)]
    url: Option<String>,
    /// Print the JSON body as it came.
    #[arg(long)]
    json: bool,
}

const EXIT_UNHEALTHY: u8 = 2;

pub async fn health(config_path: Option<PathBuf>, args: HealthArgs) -> ExitCode {
    let url = match args.url {
        Some(url) => url,
        None => match ConfigSource::from_process(config_path).load() {
            Ok(loaded) => default_url(loaded.config.health.bind),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_UNHEALTHY);
            }
        },
    };
    match fetch(&url).await {
        Ok(body) => {
            if args.json {
                println!("{body}");
            } else {
                print!("{}", render(&body));
            }
            ExitCode::from(exit_code(&body))
        }
        Err(message) => {
            eprintln!("unhealthy: {message}");
            ExitCode::from(EXIT_UNHEALTHY)
        }
    }
}

/// The health URL for a bind address.
fn default_url(bind: SocketAddr) -> String {
    format!("{}/health", base_url(bind))
}

/// `http://host:port` of Valor's server at a bind address; an unspecified address is reached
/// over loopback.
pub fn base_url(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bind.port()))
}

async fn fetch(url: &str) -> Result<Value, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if loopback {
        // A proxy from the environment cannot reach this machine's loopback.
        builder = builder.no_proxy();
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
    let response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| format!("cannot reach Valor at {url}: {e}. Is `valor run` running?"))?;
    let code = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{url} answered {code} but the body could not be read: {e}"))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| format!("{url} answered {code}, but not with Valor's health JSON"))?;
    if body.get("status").and_then(Value::as_str).is_none() {
        return Err(format!(
            "{url} answered {code}, but without a health status"
        ));
    }
    Ok(body)
}

fn exit_code(body: &Value) -> u8 {
    match body["status"].as_str() {
        Some("ok") => 0,
        Some("degraded") => 1,
        _ => EXIT_UNHEALTHY,
    }
}

/// A short human-readable report.
fn render(body: &Value) -> String {
    let mut out = format!(
        "status: {} (score {}/100), version {}, up {}\n",
        body["status"].as_str().unwrap_or("?"),
        body["score"],
        body["version"].as_str().unwrap_or("?"),
        duration(body["uptime_secs"].as_u64().unwrap_or_default()),
    );
    if let Some(reason) = body["reason"].as_str() {
        out.push_str(&format!("reason: {reason}\n"));
    }
    if let Some(components) = body["components"].as_object() {
        for (name, c) in components {
            let figures: Vec<String> = c
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !matches!(k.as_str(), "status" | "score" | "weight"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let score = c["score"]
                .as_f64()
                .map_or_else(String::new, |s| format!("{s:.0}"));
            out.push_str(&format!(
                "  {name:<10} {:<10} {score:>4}  {}\n",
                c["status"].as_str().unwrap_or("?"),
                figures.join(" ")
            ));
        }
    }
    for alert in body["alerts"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "alert [{}] {}\n  what to do: {}\n",
            alert["severity"].as_str().unwrap_or("?"),
            alert["message"].as_str().unwrap_or("?"),
            alert["action"].as_str().unwrap_or("?"),
        ));
    }
    out
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_url_uses_loopback_for_unspecified_addresses() {
        assert_eq!(
            default_url("0.0.0.0:9000".parse().unwrap()),
            "http://127.0.0.1:9000/health"
        );
        assert_eq!(
            default_url("[::]:9000".parse().unwrap()),
            "http://[::1]:9000/health"
        );
        assert_eq!(
            default_url("127.0.0.2:1".parse().unwrap()),
            "http://127.0.0.2:1/health"
        );
    }

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!(exit_code(&json!({"status": "ok"})), 0);
        assert_eq!(exit_code(&json!({"status": "degraded"})), 1);
        assert_eq!(exit_code(&json!({"status": "unhealthy"})), 2);
        assert_eq!(exit_code(&json!({"status": "weird"})), 2);
    }

    #[test]
    fn render_lists_components_and_alerts() {
        let text = render(&json!({
            "status": "degraded", "score": 91, "version": "0.1.0", "uptime_secs": 3700,
            "components": {"cpu": {"status": "degraded", "score": 75.0, "weight": 0.25, "cpu_percent": 87.5}},
            "alerts": [{"severity": "warning", "message": "CPU high", "action": "look"}],
        }));
        assert_eq!(
            text,
            "status: degraded (score 91/100), version 0.1.0, up 1h 1m\n  \
             cpu        degraded     75  cpu_percent=87.5\n\
             alert [warning] CPU high\n  what to do: look\n"
        );
    }
}
