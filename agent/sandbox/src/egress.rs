//! The only way out of a sandbox's network namespace to the web: an HTTP proxy Valor serves on
//! the sandbox's own socket (`HTTPS_PROXY` inside points at it). A host is reached only when the
//! sandbox's allow-list names it, and then only at public addresses (never the host's loopback,
//! the LAN or a cloud's metadata service), unless the list says otherwise for that host. Every
//! attempt is logged with the tenant's chat.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use valor_protocol::approval::{ApprovalAsk, ApprovalKind, AskPerson};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may reach what.
#[derive(Clone, Default)]
pub struct EgressPolicy {
    /// The tenant, for the log (`None`: a helper such as the browser).
    pub chat_id: Option<i64>,
    pub rules: Vec<HostRule>,
    /// Asks the chat's person about a host not on the list (`[approvals] unlisted_hosts`);
    /// `None`: such a host is refused.
    pub asker: Option<std::sync::Arc<dyn AskPerson>>,
}

impl std::fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("chat_id", &self.chat_id)
            .field("rules", &self.rules)
            .field("asks", &self.asker.is_some())
            .finish()
    }
}

/// One allowed host: `example.com` (ports 80 and 443), `*.example.com` (its subdomains),
/// `example.com:8080` (that port), `127.0.0.1:3000` (an address; a private one only when the
/// rule is marked so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: String,
    subdomains: bool,
    port: Option<u16>,
    /// Reached even at a private or loopback address (the browser's app URL, an intranet host
    /// the operator named).
    pub private: bool,
}

impl HostRule {
    /// A rule from the config's text.
    pub fn parse(text: &str) -> Result<HostRule, String> {
        let text = text.trim().to_ascii_lowercase();
        let (subdomains, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, text.clone()),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.starts_with('[') => (
                host.trim_matches(['[', ']']).to_owned(),
                Some(port.parse().map_err(|_| format!("{text:?}: bad port"))?),
            ),
            _ => (rest.trim_matches(['[', ']']).to_owned(), None),
        };
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !valid {
            return Err(format!(
                "{text:?} is not a host name (like example.com or *.example.com)"
            ));
        }
        Ok(HostRule {
            host,
            subdomains,
            port,
            private: false,
        })
    }

    /// Exactly `host:port`, private addresses allowed (a helper's one destination).
    pub fn exact_private(host: &str, port: u16) -> HostRule {
        HostRule {
            host: host.trim_matches(['[', ']']).to_ascii_lowercase(),
            subdomains: false,
            port: Some(port),
            private: true,
        }
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = if self.subdomains {
            host.strip_suffix(self.host.as_str())
                .is_some_and(|head| head.ends_with('.'))
        } else {
            host == self.host
        };
        let port_ok = match self.port {
            Some(allowed) => port == allowed,
            None => port == 80 || port == 443,
        };
        host_ok && port_ok
    }
}

impl EgressPolicy {
    /// The address to connect to for `host:port`, or why not. Every address the name resolves
    /// to is checked, and the connection goes to the one checked (no second lookup can swap it).
    pub async fn check(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        let asked;
        let rule = match self.rules.iter().find(|r| r.matches(&host, port)) {
            Some(rule) => rule,
            None => {
                asked = self.ask(&host, port).await?;
                &asked
            }
        };
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            .map_err(|_| format!("looking up {host} took too long"))?
            .map_err(|e| format!("cannot find {host}: {e}"))?
            .collect(),
        };
        let first = *addresses
            .first()
            .ok_or_else(|| format!("{host} has no address"))?;
        if !rule.private
            && let Some(private) = addresses.iter().find(|a| !is_public(a.ip()))
        {
            return Err(format!(
                "{host} points to {}, a local or private address",
                private.ip()
            ));
        }
        Ok(first)
    }

    /// A host not on the list: allowed only when the chat's person says so (at its public
    /// addresses only), else refused.
    async fn ask(&self, host: &str, port: u16) -> Result<HostRule, String> {
        let refused = || format!("{host}:{port} is not on the egress allow-list ([claude.egress])");
        let (Some(asker), Some(chat_id)) = (&self.asker, self.chat_id) else {
            return Err(refused());
        };
        let target = format!("{host}:{port}");
        let ask = ApprovalAsk {
            chat_id,
            kind: ApprovalKind::Host,
            tool: "egress".to_owned(),
            sentence: format!(
                "Connects from the chat's sandbox to {host} on port {port}, which is not on the \
                 allow-list ([claude.egress]); allowed, it is reached at public addresses only.{}",
                if host.is_ascii() {
                    ""
                } else {
                    " ⚠ The name is not plain ASCII: it may look like another."
                }
            ),
            what: target.clone(),
            claimed: None,
            exact: target,
        };
        let decision = asker.ask(ask).await;
        if !decision.allows() {
            return Err(format!("{}; {}", refused(), decision.words()));
        }
        Ok(HostRule {
            private: false,
            ..HostRule::exact_private(host, port)
        })
    }

    fn log(&self, host: &str, port: u16, outcome: &Result<SocketAddr, String>) {
        match outcome {
            Ok(address) => {
                tracing::info!(chat_id = ?self.chat_id, host, port, %address, "egress allowed")
            }
            Err(reason) => {
                tracing::warn!(chat_id = ?self.chat_id, host, port, reason = %reason, "egress refused")
            }
        }
    }

    /// `CONNECT host:port`: a tunnel to a checked address (TLS goes through it untouched).
    pub async fn tunnel(&self, request: Request<Body>) -> Response<Body> {
        let Some((host, port)) = authority(request.uri(), 443) else {
            return refusal(
                StatusCode::BAD_REQUEST,
                "CONNECT needs host:port".to_owned(),
            );
        };
        let outcome = self.check(&host, port).await;
        self.log(&host, port, &outcome);
        let address = match outcome {
            Ok(address) => address,
            Err(reason) => return refusal(StatusCode::FORBIDDEN, reason),
        };
        let upstream =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return refusal(StatusCode::BAD_GATEWAY, format!("{host}: {e}")),
                Err(_) => {
                    return refusal(StatusCode::GATEWAY_TIMEOUT, format!("{host}: timed out"));
                }
            };
        tokio::spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::debug!(error = %e, "a CONNECT tunnel was not upgraded"),
            }
        });
        Response::new(Body::empty())
    }

    /// `GET http://host/...` (absolute form): the request sent on to a checked address.
    pub async fn forward(&self, request: Request<Body>) -> Response<Body> {
        let Some((host, port)) = authority(request.uri(), 80) else {
            return refusal(
                StatusCode::BAD_REQUEST,
                "a proxy request needs a host".to_owned(),
            );
        };
        if request.uri().scheme_str() != Some("http") {
            return refusal(
                StatusCode::BAD_REQUEST,
                "only http:// is forwarded; https goes through CONNECT".to_owned(),
            );
        }
        let outcome = self.check(&host, port).await;
        self.log(&host, port, &outcome);
        let address = match outcome {
            Ok(address) => address,
            Err(reason) => return refusal(StatusCode::FORBIDDEN, reason),
        };
        match send(address, &host, port, request).await {
            Ok(response) => response,
            Err(e) => refusal(StatusCode::BAD_GATEWAY, format!("{host}: {e}")),
        }
    }
}

async fn send(
    address: SocketAddr,
    host: &str,
    port: u16,
    request: Request<Body>,
) -> Result<Response<Body>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "an egress connection ended with an error");
        }
    });
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = path.parse::<Uri>().map_err(|e| e.to_string())?;
    for hop in [
        "proxy-connection",
        "proxy-authorization",
        "connection",
        "keep-alive",
    ] {
        parts.headers.remove(hop);
    }
    let host_header = if port == 80 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    parts.headers.insert(
        header::HOST,
        host_header.parse().map_err(|_| "bad host".to_owned())?,
    );
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.map(Body::new))
}

/// `host` and `port` of an absolute-form or authority-form URI.
fn authority(uri: &Uri, default_port: u16) -> Option<(String, u16)> {
    let authority = uri.authority()?;
    let port = authority.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => default_port,
    });
    Some((authority.host().to_owned(), port))
}

/// The header on every answer the proxy makes itself (a refusal, an unreachable host), so a
/// client can tell them from the site's own.
pub const EGRESS_HEADER: &str = "x-valor-egress";

fn refusal(status: StatusCode, reason: String) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("valor egress: {reason}\n")));
    *response.status_mut() = status;
    if let Ok(value) = axum::http::HeaderValue::from_str(&reason.replace(['\r', '\n'], " ")) {
        response.headers_mut().insert(EGRESS_HEADER, value);
    }
    response
}

/// Whether a request is for the egress proxy (not for Valor's own routes).
pub fn is_proxy_request(request: &Request<Body>) -> bool {
    request.method() == Method::CONNECT || request.uri().scheme().is_some()
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x64 && ip.segments()[1] == 0xff9b) // NAT64 to anywhere, incl. private
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn rules_name_hosts_subdomains_and_ports() {
        let rule = HostRule::parse("Example.com").unwrap();
        assert!(rule.matches("example.com", 443) && rule.matches("example.com", 80));
        assert!(!rule.matches("example.com", 22), "other ports need naming");
        assert!(!rule.matches("api.example.com", 443));
        assert!(!rule.matches("badexample.com", 443));
        let rule = HostRule::parse("*.example.com").unwrap();
        assert!(rule.matches("api.example.com", 443));
        assert!(!rule.matches("example.com", 443) && !rule.matches("xexample.com", 443));
        let rule = HostRule::parse("pypi.org:8443").unwrap();
        assert!(rule.matches("pypi.org", 8443) && !rule.matches("pypi.org", 443));
        let rule = HostRule::parse("[::1]:3000").unwrap();
        assert!(rule.matches("::1", 3000));
        for bad in ["", "exa mple.com", "http://x.com", "x.com:port"] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_listed_host_at_a_private_address_is_refused_unless_marked() {
        let policy = EgressPolicy {
            chat_id: Some(1),
            rules: vec![
                HostRule::parse("169.254.169.254:80").unwrap(),
                HostRule::parse("localhost:8088").unwrap(),
                HostRule::exact_private("127.0.0.1", 3000),
            ],
            asker: None,
        };
        let metadata = policy.check("169.254.169.254", 80).await.unwrap_err();
        assert!(metadata.contains("private"), "{metadata}");
        let local = policy.check("localhost", 8088).await.unwrap_err();
        assert!(local.contains("private"), "{local}");
        assert_eq!(
            policy.check("127.0.0.1", 3000).await.unwrap(),
            "127.0.0.1:3000".parse().unwrap()
        );
        let unlisted = policy.check("example.org", 443).await.unwrap_err();
        assert!(unlisted.contains("allow-list"), "{unlisted}");
    }

    /// Answers every ask with one decision and keeps what was asked.
    struct Answering(
        valor_protocol::approval::Decision,
        std::sync::Mutex<Vec<ApprovalAsk>>,
    );

    impl AskPerson for Answering {
        fn ask(
            &self,
            ask: ApprovalAsk,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = valor_protocol::approval::Decision> + Send + '_>,
        > {
            self.1.lock().unwrap().push(ask);
            Box::pin(async move { self.0 })
        }
    }

    #[tokio::test]
    async fn an_unlisted_host_is_asked_about_and_allowed_only_at_public_addresses() {
        use valor_protocol::approval::Decision;
        let ask = |decision| {
            let asker = std::sync::Arc::new(Answering(decision, std::sync::Mutex::default()));
            let policy = EgressPolicy {
                chat_id: Some(7),
                rules: Vec::new(),
                asker: Some(asker.clone()),
            };
            (policy, asker)
        };
        let (denying, asked) = ask(Decision::Deny);
        let refused = denying.check("Example.org", 443).await.unwrap_err();
        assert!(
            refused.contains("allow-list") && refused.contains("denied"),
            "{refused}"
        );
        let asked = asked.1.lock().unwrap().clone();
        assert_eq!(asked.len(), 1);
        assert_eq!((asked[0].chat_id, asked[0].kind), (7, ApprovalKind::Host));
        assert_eq!(asked[0].exact, "example.org:443");
        // Allowed, a name that points home is still refused: only public addresses.
        let (allowing, _) = ask(Decision::AllowOnce);
        let local = allowing.check("localhost", 8088).await.unwrap_err();
        assert!(local.contains("private"), "{local}");
        let metadata = allowing.check("169.254.169.254", 80).await.unwrap_err();
        assert!(metadata.contains("private"), "{metadata}");
        assert_eq!(
            allowing.check("1.1.1.1", 443).await.unwrap(),
            "1.1.1.1:443".parse().unwrap()
        );
        // A helper (no chat) is never asked.
        let (helper, asked) = ask(Decision::AllowOnce);
        let helper = EgressPolicy {
            chat_id: None,
            ..helper
        };
        assert!(helper.check("1.1.1.1", 443).await.is_err());
        assert!(asked.1.lock().unwrap().is_empty());
    }
}
