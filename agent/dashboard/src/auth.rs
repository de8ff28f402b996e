//! Who may see the dashboard: a one-time login link (made by `valor dashboard` through the
//! store's token) becomes a session cookie (HttpOnly, SameSite=Strict, path /ui, `Secure`
//! behind HTTPS); every page needs it, and every state-changing POST carries the session's CSRF
//! token. Tokens are compared in constant time; sessions and pending links are bounded.
//! Sessions are kept in the store ([`SessionBook`]) under the SHA-256 of the cookie, so a
//! restart does not log the operator out and the store never holds a usable cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;
use valor_protocol::StoreFailure;
use valor_protocol::records::DashboardSession;
use valor_protocol::time::now_ms;

/// The cookie that carries a session.
pub const COOKIE: &str = "valor_ui";
/// A login link works once, within this time.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// A session lasts this long.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions and pending links kept at most (the oldest goes first).
pub const MAX_SESSIONS: usize = 16;
const MAX_LINKS: usize = 16;
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// A `User-Agent` kept at most (characters).
const AGENT_CHARS: usize = 120;
/// `last_seen` is written to the store at most this often per session.
const SEEN_EVERY_MS: u64 = 60_000;

/// Where sessions are kept (the store; in memory for tests).
#[async_trait::async_trait]
pub trait SessionBook: Send + Sync {
    async fn sessions(&self) -> Result<Vec<DashboardSession>, StoreFailure>;
    async fn put(&self, session: &DashboardSession) -> Result<(), StoreFailure>;
    async fn remove(&self, key: &str) -> Result<(), StoreFailure>;
}

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SHA-256 of its cookie, hex: how it is named in the store and the session list.
    pub key: String,
    pub csrf: String,
    pub started_ms: u64,
    pub last_seen_ms: u64,
    pub agent: String,
}

impl Session {
    fn live(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.started_ms) < SESSION_TTL.as_millis() as u64
    }

    fn record(&self) -> DashboardSession {
        DashboardSession {
            key: self.key.clone(),
            csrf: self.csrf.clone(),
            started_ms: self.started_ms,
            last_seen_ms: self.last_seen_ms,
            agent: self.agent.clone(),
        }
    }

    /// A short name for the session list: the start of its key.
    pub fn short(&self) -> &str {
        self.key.get(..8).unwrap_or(&self.key)
    }
}

#[derive(Debug, Default)]
struct Books {
    links: HashMap<String, Instant>,
    /// By key (the cookie's hash).
    sessions: HashMap<String, Session>,
}

/// Login links and sessions.
pub struct Gate {
    books: Mutex<Books>,
    book: Option<Arc<dyn SessionBook>>,
    loaded: OnceCell<()>,
    /// Mark the cookie `Secure` (served behind HTTPS).
    secure: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new(None, false)
    }
}

fn token() -> Result<String, std::io::Error> {
    valor_config::tokens::random_token(TOKEN_ALPHABET, 40)
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The store's name of a cookie value.
fn key_of(cookie_value: &str) -> String {
    let digest = Sha256::digest(cookie_value.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the oldest entry of `map` while it holds `max` or more; returns the removed keys.
fn make_room<V, A: Ord>(
    map: &mut HashMap<String, V>,
    max: usize,
    age: impl Fn(&V) -> A,
) -> Vec<String> {
    let mut removed = Vec::new();
    while map.len() >= max {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| age(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
        removed.push(oldest);
    }
    removed
}

impl Gate {
    pub fn new(book: Option<Arc<dyn SessionBook>>, secure: bool) -> Gate {
        Gate {
            books: Mutex::new(Books::default()),
            book,
            loaded: OnceCell::new(),
            secure,
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the kept sessions once (on the first request after a start).
    async fn load(&self) {
        self.loaded
            .get_or_init(|| async {
                let Some(book) = &self.book else { return };
                let kept = match book.sessions().await {
                    Ok(kept) => kept,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the dashboard's sessions: logged out");
                        return;
                    }
                };
                let now = now_ms();
                let mut books = self.books();
                for s in kept {
                    let session = Session {
                        key: s.key,
                        csrf: s.csrf,
                        started_ms: s.started_ms,
                        last_seen_ms: s.last_seen_ms,
                        agent: s.agent,
                    };
                    if session.live(now) && books.sessions.len() < MAX_SESSIONS {
                        books.sessions.insert(session.key.clone(), session);
                    }
                }
            })
            .await;
    }

    async fn keep(&self, session: &Session) {
        if let Some(book) = &self.book
            && let Err(e) = book.put(&session.record()).await
        {
            tracing::warn!(error = %e, "cannot keep a dashboard session: a restart logs it out");
        }
    }

    async fn forget(&self, keys: Vec<String>) {
        let Some(book) = &self.book else { return };
        for key in keys {
            if let Err(e) = book.remove(&key).await {
                tracing::warn!(error = %e, "cannot remove a dashboard session from the store");
            }
        }
    }

    /// A new one-time login token.
    pub fn new_link(&self) -> Result<String, std::io::Error> {
        let token = token()?;
        let mut books = self.books();
        books.links.retain(|_, made| made.elapsed() < LINK_TTL);
        make_room(&mut books.links, MAX_LINKS, |made| *made);
        books.links.insert(token.clone(), Instant::now());
        Ok(token)
    }

    /// Spends a login token: the new session's cookie value, or `None` (unknown, used or
    /// expired). `agent` is the browser's `User-Agent`.
    pub async fn log_in(&self, link: &str, agent: &str) -> Option<String> {
        self.load().await;
        let (id, session, dropped) = {
            let mut books = self.books();
            let found = books.links.keys().find(|k| equal(k, link)).cloned()?;
            let made = books.links.remove(&found)?;
            if made.elapsed() >= LINK_TTL {
                return None;
            }
            let (id, csrf) = (token().ok()?, token().ok()?);
            let now = now_ms();
            let mut dropped: Vec<String> = (books.sessions.iter())
                .filter(|(_, s)| !s.live(now))
                .map(|(k, _)| k.clone())
                .collect();
            books.sessions.retain(|_, s| s.live(now));
            dropped.extend(make_room(&mut books.sessions, MAX_SESSIONS, |s| {
                s.started_ms
            }));
            let session = Session {
                key: key_of(&id),
                csrf,
                started_ms: now,
                last_seen_ms: now,
                agent: agent.chars().take(AGENT_CHARS).collect(),
            };
            books.sessions.insert(session.key.clone(), session.clone());
            (id, session, dropped)
        };
        self.forget(dropped).await;
        self.keep(&session).await;
        Some(id)
    }

    /// The session of a cookie header, if it is a live one.
    pub async fn session(&self, cookie_header: Option<&str>) -> Option<Session> {
        let id = cookie_value(cookie_header?)?;
        self.load().await;
        let key = key_of(id);
        let now = now_ms();
        let (session, write) = {
            let mut books = self.books();
            let session = books.sessions.get_mut(&key)?;
            if !session.live(now) {
                return None;
            }
            let write = now.saturating_sub(session.last_seen_ms) >= SEEN_EVERY_MS;
            session.last_seen_ms = now;
            (session.clone(), write)
        };
        if write {
            self.keep(&session).await;
        }
        Some(session)
    }

    /// Ends the session named by `key` (logout, or revoked from the session list); whether
    /// there was one.
    pub async fn end(&self, key: &str) -> bool {
        let removed = self.books().sessions.remove(key).is_some();
        if removed {
            self.forget(vec![key.to_owned()]).await;
        }
        removed
    }

    /// The live sessions, latest seen first.
    pub fn sessions(&self) -> Vec<Session> {
        let now = now_ms();
        let mut all: Vec<Session> = (self.books().sessions.values())
            .filter(|s| s.live(now))
            .cloned()
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.last_seen_ms));
        all
    }

    /// Whether `offered` is the session's CSRF token.
    pub fn csrf_ok(session: &Session, offered: &str) -> bool {
        equal(&session.csrf, offered)
    }

    /// The `Set-Cookie` value of a session.
    pub fn cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
            SESSION_TTL.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the cookie (logout).
    pub fn cleared_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The session cookie's value in a `Cookie` header.
fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Sessions in memory (tests, or a dashboard without a store).
#[derive(Default)]
pub struct MemoryBook(Mutex<HashMap<String, DashboardSession>>);

#[async_trait::async_trait]
impl SessionBook for MemoryBook {
    async fn sessions(&self) -> Result<Vec<DashboardSession>, StoreFailure> {
        Ok(self.lock().values().cloned().collect())
    }
    async fn put(&self, session: &DashboardSession) -> Result<(), StoreFailure> {
        self.lock().insert(session.key.clone(), session.clone());
        Ok(())
    }
    async fn remove(&self, key: &str) -> Result<(), StoreFailure> {
        self.lock().remove(key);
        Ok(())
    }
}

impl MemoryBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DashboardSession>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_link_works_once_and_makes_a_session() {
        let gate = Gate::default();
        let link = gate.new_link().unwrap();
        let id = gate.log_in(&link, "Firefox").await.unwrap();
        assert_eq!(gate.log_in(&link, "x").await, None, "a link works once");
        assert_eq!(gate.log_in("forged", "x").await, None);
        let header = format!("other=1; {COOKIE}={id}");
        let session = gate.session(Some(&header)).await.unwrap();
        assert_eq!(session.agent, "Firefox");
        assert!(Gate::csrf_ok(&session, &session.csrf));
        assert!(!Gate::csrf_ok(&session, "guess"));
        assert!(gate.session(Some("valor_ui=nope")).await.is_none());
        assert!(gate.session(Some("valor_ui=")).await.is_none());
        assert!(gate.session(None).await.is_none());
        assert!(gate.cookie(&id).contains("HttpOnly; SameSite=Strict"));
        assert!(!gate.cookie(&id).contains("Secure"));
        assert!(Gate::new(None, true).cookie(&id).ends_with("; Secure"));
        assert!(gate.end(&session.key).await, "logout");
        assert!(gate.session(Some(&header)).await.is_none(), "ended");
    }

    #[tokio::test]
    async fn sessions_survive_a_restart_through_the_book_without_the_cookie_in_it() {
        let book = Arc::new(MemoryBook::default());
        let first = Gate::new(Some(book.clone()), false);
        let link = first.new_link().unwrap();
        let id = first.log_in(&link, "Chromium").await.unwrap();
        let kept = book.sessions().await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_ne!(
            kept[0].key, id,
            "the store holds the cookie's hash, not the cookie"
        );
        assert!(!format!("{kept:?}").contains(&id));
        // A new process: the same cookie still works, with the same CSRF token.
        let second = Gate::new(Some(book.clone()), false);
        let header = format!("{COOKIE}={id}");
        let session = second.session(Some(&header)).await.unwrap();
        assert_eq!(session.csrf, kept[0].csrf);
        assert_eq!(second.sessions().len(), 1);
        // Revoked from the list: gone from the store too.
        assert!(second.end(&session.key).await);
        assert!(book.sessions().await.unwrap().is_empty());
        let third = Gate::new(Some(book), false);
        assert!(third.session(Some(&header)).await.is_none());
    }

    #[tokio::test]
    async fn expired_sessions_are_not_restored() {
        let book = Arc::new(MemoryBook::default());
        book.put(&DashboardSession {
            key: key_of("old"),
            csrf: "c".into(),
            started_ms: now_ms() - SESSION_TTL.as_millis() as u64 - 1,
            last_seen_ms: 0,
            agent: String::new(),
        })
        .await
        .unwrap();
        let gate = Gate::new(Some(book), false);
        assert!(gate.session(Some("valor_ui=old")).await.is_none());
    }

    #[tokio::test]
    async fn links_and_sessions_are_bounded() {
        let book = Arc::new(MemoryBook::default());
        let gate = Gate::new(Some(book.clone()), false);
        let links: Vec<String> = (0..40).map(|_| gate.new_link().unwrap()).collect();
        assert_eq!(gate.books().links.len(), MAX_LINKS);
        assert!(
            gate.log_in(&links[0], "").await.is_none(),
            "the oldest link was dropped"
        );
        for _ in 0..40 {
            let link = gate.new_link().unwrap();
            gate.log_in(&link, "").await.unwrap();
        }
        assert_eq!(gate.books().sessions.len(), MAX_SESSIONS);
        assert_eq!(
            book.sessions().await.unwrap().len(),
            MAX_SESSIONS,
            "the store too"
        );
    }
}
