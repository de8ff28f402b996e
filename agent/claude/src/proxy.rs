//! The model API as a sandbox sees it: a proxy Valor serves on the sandbox's own socket. The
//! sandbox holds only a token of its own process, accepted while that process runs a turn; the
//! proxy checks it and sends the request on with the real credentials (an API key, or the
//! operator's subscription login, refreshed here), which never enter any sandbox.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use valor_protocol::time::now_ms;

/// The biggest request body a sandbox may send the API (long contexts with images included).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// The subscription login's beta header (what Claude Code itself sends with an OAuth token).
const OAUTH_BETA: &str = "oauth-2025-04-20";
/// Claude Code's public OAuth client id (refreshing a login made with it).
const OAUTH_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

/// Where requests go and with what credentials.
pub struct Upstream {
    base_url: String,
    auth: UpstreamAuth,
    client: reqwest::Client,
}

enum UpstreamAuth {
    /// `x-api-key` (`ANTHROPIC_API_KEY`).
    ApiKey(String),
    /// `Authorization: Bearer` (`ANTHROPIC_AUTH_TOKEN`, a gateway's token).
    Bearer(String),
    /// A subscription token (`CLAUDE_CODE_OAUTH_TOKEN`).
    OAuthToken(String),
    /// The operator's login file, refreshed when its token runs out.
    OAuthFile(Box<LoginFile>),
    /// Nothing configured: requests go out without credentials (the API will say 401).
    None,
}

struct LoginFile {
    path: PathBuf,
    token_url: String,
    cached: Mutex<Option<Login>>,
}

#[derive(Clone)]
struct Login {
    access: String,
    refresh: Option<String>,
    expires_at_ms: u64,
    scopes: Vec<String>,
}

impl Upstream {
    /// From Valor's environment (and `[claude.env]`, which wins): the API's address
    /// (`ANTHROPIC_BASE_URL`, default Anthropic's) and the first credentials set of
    /// `ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN`, `CLAUDE_CODE_OAUTH_TOKEN`, else the login
    /// file `credentials` (the operator's `~/.claude/.credentials.json`) when it exists.
    pub fn from_env(
        env: &std::collections::BTreeMap<String, String>,
        credentials: Option<PathBuf>,
        token_url: &str,
    ) -> Upstream {
        let get = |name: &str| env.get(name).filter(|v| !v.trim().is_empty()).cloned();
        let auth = if let Some(key) = get("ANTHROPIC_API_KEY") {
            UpstreamAuth::ApiKey(key)
        } else if let Some(token) = get("ANTHROPIC_AUTH_TOKEN") {
            UpstreamAuth::Bearer(token)
        } else if let Some(token) = get("CLAUDE_CODE_OAUTH_TOKEN") {
            UpstreamAuth::OAuthToken(token)
        } else if let Some(path) = credentials.filter(|p| p.is_file()) {
            UpstreamAuth::OAuthFile(Box::new(LoginFile {
                path,
                token_url: token_url.to_owned(),
                cached: Mutex::new(None),
            }))
        } else {
            UpstreamAuth::None
        };
        let base_url = get("ANTHROPIC_BASE_URL")
            .unwrap_or_else(|| "https://api.anthropic.com".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Upstream {
            base_url,
            auth,
            client,
        }
    }

    /// What credentials go out, for `valor doctor` (never the value).
    pub fn describe(&self) -> &'static str {
        match self.auth {
            UpstreamAuth::ApiKey(_) => "an API key (ANTHROPIC_API_KEY)",
            UpstreamAuth::Bearer(_) => "a bearer token (ANTHROPIC_AUTH_TOKEN)",
            UpstreamAuth::OAuthToken(_) => "a subscription token (CLAUDE_CODE_OAUTH_TOKEN)",
            UpstreamAuth::OAuthFile(_) => "the operator's subscription login (~/.claude)",
            UpstreamAuth::None => "none",
        }
    }

    pub fn has_credentials(&self) -> bool {
        !matches!(self.auth, UpstreamAuth::None)
    }

    /// Adds the real credentials to `headers` (the sandbox's token already taken out).
    async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), String> {
        let bearer = |token: &str| {
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "a bad token".to_owned())
        };
        match &self.auth {
            UpstreamAuth::ApiKey(key) => {
                let value = HeaderValue::from_str(key).map_err(|_| "a bad API key".to_owned())?;
                headers.insert("x-api-key", value);
            }
            UpstreamAuth::Bearer(token) => {
                headers.insert(header::AUTHORIZATION, bearer(token)?);
            }
            UpstreamAuth::OAuthToken(token) => {
                headers.insert(header::AUTHORIZATION, bearer(token)?);
                add_beta(headers, OAUTH_BETA);
            }
            UpstreamAuth::OAuthFile(file) => {
                let token = file.access_token(&self.client).await?;
                headers.insert(header::AUTHORIZATION, bearer(&token)?);
                add_beta(headers, OAUTH_BETA);
            }
            UpstreamAuth::None => {}
        }
        Ok(())
    }
}

impl LoginFile {
    /// A token good for another minute: the cached one, the file's (another Claude Code of the
    /// operator's may have refreshed it), or a refreshed one (written back, private).
    async fn access_token(&self, client: &reqwest::Client) -> Result<String, String> {
        let now = now_ms();
        let fresh = |login: &Login| login.expires_at_ms == 0 || login.expires_at_ms > now + 60_000;
        if let Some(login) = self.cached().filter(fresh) {
            return Ok(login.access);
        }
        let login = self.read()?;
        if fresh(&login) {
            self.cache(login.clone());
            return Ok(login.access);
        }
        let refreshed = self.refresh(client, &login).await?;
        self.cache(refreshed.clone());
        Ok(refreshed.access)
    }

    fn cached(&self) -> Option<Login> {
        self.cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn cache(&self, login: Login) {
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(login);
    }

    fn read(&self) -> Result<Login, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read the login {}: {e}", self.path.display()))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the login {} is not JSON: {e}", self.path.display()))?;
        let oauth = &json["claudeAiOauth"];
        let access = oauth["accessToken"]
            .as_str()
            .ok_or_else(|| format!("the login {} has no access token", self.path.display()))?;
        Ok(Login {
            access: access.to_owned(),
            refresh: oauth["refreshToken"].as_str().map(str::to_owned),
            expires_at_ms: oauth["expiresAt"].as_u64().unwrap_or(0),
            scopes: oauth["scopes"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    async fn refresh(&self, client: &reqwest::Client, login: &Login) -> Result<Login, String> {
        let refresh = login
            .refresh
            .as_deref()
            .ok_or("the subscription login ran out and has no refresh token: run `claude` once")?;
        let mut body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": OAUTH_CLIENT_ID,
        });
        if !login.scopes.is_empty() {
            body["scope"] = Value::String(login.scopes.join(" "));
        }
        let response = client
            .post(&self.token_url)
            .json(&body)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| format!("cannot refresh the subscription login: {e}"))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| format!("the login refresh answered {status} with no JSON: {e}"))?;
        let access = answer["access_token"]
            .as_str()
            .ok_or_else(|| format!("the login refresh answered {status} without a token"))?;
        let expires_in = answer["expires_in"].as_u64().unwrap_or(3600);
        let refreshed = Login {
            access: access.to_owned(),
            refresh: answer["refresh_token"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| login.refresh.clone()),
            expires_at_ms: now_ms() + expires_in.saturating_mul(1000),
            scopes: login.scopes.clone(),
        };
        self.write_back(&refreshed);
        tracing::info!("refreshed the subscription login");
        Ok(refreshed)
    }

    /// Keeps the file current for the operator's own Claude Code (atomically, private).
    fn write_back(&self, login: &Login) {
        let result = (|| -> std::io::Result<()> {
            let text = std::fs::read_to_string(&self.path)?;
            let mut json: Value = serde_json::from_str(&text).map_err(std::io::Error::other)?;
            let oauth = &mut json["claudeAiOauth"];
            oauth["accessToken"] = Value::String(login.access.clone());
            if let Some(refresh) = &login.refresh {
                oauth["refreshToken"] = Value::String(refresh.clone());
            }
            oauth["expiresAt"] = Value::from(login.expires_at_ms);
            let partial = self.path.with_extension("json.valor-partial");
            {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&partial)?;
                file.write_all(json.to_string().as_bytes())?;
            }
            std::fs::rename(&partial, &self.path)
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the refreshed login back");
        }
    }
}

/// One sandboxed process's token: accepted only while the process runs a turn.
#[derive(Debug)]
pub struct TurnToken {
    token: String,
    active: AtomicBool,
    /// The account's usage window as the API's last answer for this process said it
    /// (`anthropic-ratelimit-unified-status`, `-reset`): the CLI behind a proxied login does
    /// not know it runs on a subscription and reports none of it.
    usage_window: std::sync::Mutex<Option<(String, Option<u64>)>>,
}

impl TurnToken {
    pub fn new() -> TurnToken {
        TurnToken {
            token: format!(
                "valor-turn-{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            active: AtomicBool::new(false),
            usage_window: std::sync::Mutex::new(None),
        }
    }

    /// The usage window the API last reported to this process (status, reset in Unix ms),
    /// taken.
    pub fn take_usage_window(&self) -> Option<(String, Option<u64>)> {
        (self.usage_window.lock())
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn note_usage_window(&self, headers: &HeaderMap) {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(status) = text("anthropic-ratelimit-unified-status") else {
            return;
        };
        let reset = text("anthropic-ratelimit-unified-reset")
            .and_then(|r| r.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000));
        *(self.usage_window.lock()).unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((status.chars().take(32).collect(), reset));
    }

    /// What the sandbox is given as its API key.
    pub fn value(&self) -> &str {
        &self.token
    }

    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    fn accepts(&self, offered: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let matches: bool = self.token.as_bytes().ct_eq(offered.as_bytes()).into();
        matches && self.active.load(Ordering::Acquire)
    }
}

impl Default for TurnToken {
    fn default() -> Self {
        TurnToken::new()
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: Arc<Upstream>,
    token: Arc<TurnToken>,
}

/// The API proxy's routes for one sandboxed process (everything but `/mcp/`).
pub fn routes(upstream: Arc<Upstream>, token: Arc<TurnToken>) -> axum::Router {
    axum::Router::new()
        .fallback(forward)
        .with_state(ProxyState { upstream, token })
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let offered = parts
        .headers
        .get("x-api-key")
        .or_else(|| parts.headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .unwrap_or_default();
    if !state.token.accepts(offered) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "type": "error",
                "error": {"type": "authentication_error", "message": "no turn is running for this token"}
            })),
        )
            .into_response();
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_dropped(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Err(e) = state.upstream.authorize(&mut headers).await {
        tracing::error!(error = %e, "cannot add the API credentials");
        return api_error(StatusCode::BAD_GATEWAY, &e);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", state.upstream.base_url);
    // Read whole (bounded): it goes on with its length, as the CLI sent it.
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request is over the proxy's 64 MB limit",
            );
        }
    };
    let sent = state
        .upstream
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            state.token.note_usage_window(response.headers());
            let mut out = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                if !is_hop_by_hop(name) {
                    out = out.header(name, value);
                }
            }
            out.body(Body::from_stream(response.bytes_stream()))
                .unwrap_or_else(|_| api_error(StatusCode::BAD_GATEWAY, "a bad answer"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the model API could not be reached");
            api_error(
                StatusCode::BAD_GATEWAY,
                "the model API could not be reached",
            )
        }
    }
}

/// Headers never passed on: the sandbox's token, and what the next hop sets itself.
fn is_dropped(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::AUTHORIZATION
        || name == "x-api-key"
        || name == header::CONTENT_LENGTH
        || is_hop_by_hop(name)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name == "keep-alive"
        || name == "proxy-connection"
}

fn add_beta(headers: &mut HeaderMap, beta: &str) {
    let merged = match headers.get("anthropic-beta").and_then(|v| v.to_str().ok()) {
        Some(existing) if existing.split(',').any(|b| b.trim() == beta) => return,
        Some(existing) if !existing.trim().is_empty() => format!("{existing},{beta}"),
        _ => beta.to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&merged) {
        headers.insert("anthropic-beta", value);
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({
            "type": "error",
            "error": {"type": "api_error", "message": message}
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_counts_only_while_its_turn_runs() {
        let token = TurnToken::new();
        assert!(!token.accepts(token.value()), "not before the turn");
        token.set_active(true);
        assert!(token.accepts(token.value()));
        assert!(!token.accepts("valor-turn-guess"));
        assert!(!token.accepts(""));
        token.set_active(false);
        assert!(!token.accepts(token.value()), "not after it");
    }

    #[test]
    fn the_oauth_beta_joins_the_requests_own() {
        let mut headers = HeaderMap::new();
        add_beta(&mut headers, OAUTH_BETA);
        assert_eq!(headers["anthropic-beta"], OAUTH_BETA);
        headers.insert("anthropic-beta", HeaderValue::from_static("a,b"));
        add_beta(&mut headers, OAUTH_BETA);
        assert_eq!(headers["anthropic-beta"], "a,b,oauth-2025-04-20");
        add_beta(&mut headers, OAUTH_BETA);
        assert_eq!(headers["anthropic-beta"], "a,b,oauth-2025-04-20");
    }
}
