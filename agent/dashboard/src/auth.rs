//! Who may see the dashboard: a one-time login link (made by `valor dashboard` through the
//! store's token) becomes a session cookie (HttpOnly, SameSite=Strict, path /ui); every page
//! needs it, and every state-changing POST carries the session's CSRF token. Tokens are
//! compared in constant time; sessions and pending links are bounded.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// The cookie that carries a session.
pub const COOKIE: &str = "valor_ui";
/// A login link works once, within this time.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// A session lasts this long.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions and pending links kept at most (the oldest goes first).
const MAX_SESSIONS: usize = 16;
const MAX_LINKS: usize = 16;
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    started: Instant,
}

#[derive(Debug, Default)]
struct Books {
    links: HashMap<String, Instant>,
    sessions: HashMap<String, Session>,
}

/// Login links and sessions.
#[derive(Debug, Default)]
pub struct Gate {
    books: Mutex<Books>,
}

fn token() -> Result<String, std::io::Error> {
    valor_config::tokens::random_token(TOKEN_ALPHABET, 40)
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Removes the oldest entry of `map` while it holds `max` or more.
fn make_room<V>(map: &mut HashMap<String, V>, max: usize, age: impl Fn(&V) -> Instant) {
    while map.len() >= max {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| age(v))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        map.remove(&oldest);
    }
}

impl Gate {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Spends a login token: the new session's id, or `None` (unknown, used or expired).
    pub fn log_in(&self, link: &str) -> Option<String> {
        let mut books = self.books();
        let found = books.links.keys().find(|k| equal(k, link)).cloned()?;
        let made = books.links.remove(&found)?;
        if made.elapsed() >= LINK_TTL {
            return None;
        }
        let (id, csrf) = (token().ok()?, token().ok()?);
        books
            .sessions
            .retain(|_, s| s.started.elapsed() < SESSION_TTL);
        make_room(&mut books.sessions, MAX_SESSIONS, |s| s.started);
        books.sessions.insert(
            id.clone(),
            Session {
                csrf,
                started: Instant::now(),
            },
        );
        Some(id)
    }

    /// The session of a cookie header, if it is a live one.
    pub fn session(&self, cookie_header: Option<&str>) -> Option<Session> {
        let id = cookie_header?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)?
            .1;
        let books = self.books();
        let (_, session) = books.sessions.iter().find(|(k, _)| equal(k, id))?;
        (session.started.elapsed() < SESSION_TTL).then(|| session.clone())
    }

    /// Whether `offered` is the session's CSRF token.
    pub fn csrf_ok(session: &Session, offered: &str) -> bool {
        equal(&session.csrf, offered)
    }
}

/// The `Set-Cookie` value of a session.
pub fn cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_link_works_once_and_makes_a_session() {
        let gate = Gate::default();
        let link = gate.new_link().unwrap();
        let id = gate.log_in(&link).unwrap();
        assert_eq!(gate.log_in(&link), None, "a link works once");
        assert_eq!(gate.log_in("forged"), None);
        let header = format!("other=1; {COOKIE}={id}");
        let session = gate.session(Some(&header)).unwrap();
        assert!(Gate::csrf_ok(&session, &session.csrf));
        assert!(!Gate::csrf_ok(&session, "guess"));
        assert!(gate.session(Some("valor_ui=nope")).is_none());
        assert!(gate.session(None).is_none());
        assert!(cookie(&id).contains("HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn links_and_sessions_are_bounded() {
        let gate = Gate::default();
        let links: Vec<String> = (0..40).map(|_| gate.new_link().unwrap()).collect();
        assert_eq!(gate.books().links.len(), MAX_LINKS);
        assert!(
            gate.log_in(&links[0]).is_none(),
            "the oldest link was dropped"
        );
        for _ in 0..40 {
            let link = gate.new_link().unwrap();
            gate.log_in(&link).unwrap();
        }
        assert_eq!(gate.books().sessions.len(), MAX_SESSIONS);
    }
}
