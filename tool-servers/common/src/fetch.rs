//! Fetching a page a user shared, without letting the link reach into our own network.
//!
//! Every hop (the first URL and each redirect) is checked: only http and https, no user name or
//! password in the URL, and the host must resolve to public addresses only — loopback, private,
//! link-local, carrier-grade NAT, multicast and unspecified addresses are refused, also when a
//! name resolves to them and when they hide in an IPv4-mapped IPv6 address. The connection then
//! goes to the very address that was checked (no second DNS answer can swap it). Size, time,
//! redirects and content types are limited.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::Url;

use crate::ToolError;

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub timeout: Duration,
    pub max_bytes: usize,
    pub max_redirects: usize,
    /// Content types accepted (prefix match on the media type).
    pub content_types: Vec<String>,
    /// Allows loopback and private addresses (an operator's own intranet links).
    pub allow_private: bool,
    /// Allows loopback addresses only (a page served on this machine; tests).
    pub allow_loopback: bool,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            timeout: Duration::from_secs(15),
            max_bytes: 2 * 1024 * 1024,
            max_redirects: 5,
            content_types: vec![
                "text/html".to_owned(),
                "application/xhtml+xml".to_owned(),
                "text/plain".to_owned(),
            ],
            allow_private: false,
            allow_loopback: false,
        }
    }
}

/// A fetched page.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the page was found, after redirects.
    pub url: Url,
    pub content_type: String,
    pub body: String,
    /// The body was cut at [`FetchPolicy::max_bytes`].
    pub truncated: bool,
}

/// Fetches `url` under `policy`.
pub async fn fetch_page(url: &str, policy: &FetchPolicy) -> Result<Page, ToolError> {
    let mut current = parse(url)?;
    for _ in 0..=policy.max_redirects {
        let address = checked_address(&current, policy).await?;
        let host = current.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(policy.timeout)
            .resolve(&host, address)
            .user_agent(concat!(
                "Mozilla/5.0 (compatible; valor/",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()
            .map_err(|e| unreachable(format!("cannot build an HTTP client: {e}")))?;
        let mut response = client
            .get(current.clone())
            .header(
                reqwest::header::ACCEPT,
                "text/html,application/xhtml+xml,text/plain;q=0.8",
            )
            .send()
            .await
            .map_err(|e| {
                unreachable(if e.is_timeout() {
                    "the site did not answer in time".to_owned()
                } else {
                    format!("cannot load the page: {e}")
                })
            })?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| unreachable(format!("a redirect ({status}) without a location")))?;
            current = parse(
                current
                    .join(location)
                    .map_err(|e| ToolError::Invalid(format!("bad redirect {location}: {e}")))?
                    .as_str(),
            )?;
            continue;
        }
        if !status.is_success() {
            return Err(ToolError::Api {
                service: "the website",
                status: status.as_u16(),
                message: status.canonical_reason().unwrap_or("error").to_owned(),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/html")
            .to_ascii_lowercase();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if !policy
            .content_types
            .iter()
            .any(|t| media.starts_with(t.as_str()))
        {
            return Err(ToolError::Invalid(format!(
                "{current} is {media}, not a web page"
            )));
        }
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(format!("the page broke off: {e}")))?
        {
            let room = policy.max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Page {
            url: current,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
            truncated,
        });
    }
    Err(ToolError::Refused(format!(
        "more than {} redirects",
        policy.max_redirects
    )))
}

fn unreachable(reason: String) -> ToolError {
    ToolError::Unreachable {
        service: "the website",
        reason,
    }
}

fn parse(url: &str) -> Result<Url, ToolError> {
    let parsed = Url::parse(url.trim())
        .map_err(|e| ToolError::Invalid(format!("{url} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ToolError::Refused(format!(
            "only http and https links can be saved, not {}:",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ToolError::Refused(
            "links with a user name or password are not fetched".to_owned(),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ToolError::Invalid(format!("{url} has no host")));
    }
    Ok(parsed)
}

/// The address to connect to for `url`, after checking every address its host resolves to.
async fn checked_address(url: &Url, policy: &FetchPolicy) -> Result<SocketAddr, ToolError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| unreachable(format!("cannot find {name}: {e}")))?
            .collect(),
        None => return Err(ToolError::Invalid(format!("{url} has no host"))),
    };
    let first = addresses
        .first()
        .copied()
        .ok_or_else(|| unreachable(format!("{url} has no address")))?;
    if !policy.allow_private
        && let Some(private) = addresses
            .iter()
            .find(|a| !(is_public(a.ip()) || (policy.allow_loopback && a.ip().is_loopback())))
    {
        return Err(ToolError::Refused(format!(
            "{} points to {}, a local or private address",
            url.host_str().unwrap_or_default(),
            private.ip()
        )));
    }
    Ok(first)
}

pub use valor_sandbox::egress::is_public;
