//! The one redactor: text Valor sends, logs, keeps or shows has its secrets replaced by
//! `[redacted]` first.
//!
//! Two nets. Valor's own secrets by exact value ([`set_known_secrets`]: every secret of the
//! environment, `[claude.env]` values whose names look secret, the operator's extra ones), in
//! whatever text they turn up. And the shapes secrets come in: provider keys (`sk-ant-…`,
//! `sk-…`, `pplx-…`, GitHub, Slack, AWS, Notion, Google), Telegram bot tokens, JWTs, bearer and
//! basic credentials, URLs with a password, PEM private keys, and `password=`, `api_key: …`,
//! `TOKEN=…` assignments (the name is kept, the value goes). A shape it does not know passes:
//! this is a net under the sandbox (which holds no secret), not a wall. If the patterns could
//! not be built the whole text is withheld rather than passed unredacted.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use regex::{Captures, Regex};

/// What a secret becomes.
pub const REDACTED: &str = "[redacted]";

/// Secret shapes, one alternation; `name`/`sep` keep an assignment's name.
const PATTERN: &str = concat!(
    r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
    r"|\bsk-(?:ant-)?[A-Za-z0-9_\-]{16,}",
    r"|\bpplx-[A-Za-z0-9]{16,}",
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"|\bglpat-[A-Za-z0-9_\-]{16,}",
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"|\bAIza[0-9A-Za-z_\-]{30,}",
    r"|\b(?:secret|ntn)_[A-Za-z0-9]{30,}",
    r"|\b[0-9]{6,12}:AA[A-Za-z0-9_\-]{30,}",
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"|(?i:\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]{12,}",
    r"|(?i:\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+@",
    r#"|(?P<name>(?i:\b[a-z0-9_\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|client[_\-]?secret|auth)[a-z0-9_\-]*))"#,
    r#"(?P<sep>["']?\s*[:=]\s*)(?P<value>(?i:(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]{8,}|"[^"\n]{4,}"|'[^'\n]{4,}'|[^\s"',;]{4,})"#,
);

static SECRETS: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(PATTERN).ok());

/// Valor's own secrets, by value: one alternation, longest first (so a secret that contains
/// another goes whole).
static KNOWN: RwLock<Option<Arc<Regex>>> = RwLock::new(None);

/// Values shorter than this are not taken as secrets (they would blank ordinary words).
pub const SHORTEST_SECRET: usize = 8;

/// Makes `values` redacted wherever they appear, from now on (replacing what was set before).
/// Values shorter than [`SHORTEST_SECRET`] are left out; the count taken is returned.
pub fn set_known_secrets<I, S>(values: I) -> usize
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut values: Vec<String> = values
        .into_iter()
        .map(|v| v.as_ref().trim().to_owned())
        .filter(|v| v.len() >= SHORTEST_SECRET)
        .collect();
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    let pattern = values
        .iter()
        .map(|v| regex::escape(v))
        .collect::<Vec<_>>()
        .join("|");
    let known = (!values.is_empty())
        .then(|| Regex::new(&pattern).ok().map(Arc::new))
        .flatten();
    let taken = known.as_ref().map_or(0, |_| values.len());
    *KNOWN.write().unwrap_or_else(PoisonError::into_inner) = known;
    taken
}

/// `text` with every secret it recognises replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(secrets) = SECRETS.as_ref() else {
        return Cow::Owned(format!("{REDACTED} (the redactor is unavailable)"));
    };
    let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner).clone();
    match known {
        Some(known) => match known.replace_all(text, REDACTED) {
            Cow::Borrowed(_) => secrets.replace_all(text, |caps: &Captures<'_>| replacement(caps)),
            Cow::Owned(clean) => Cow::Owned(
                secrets
                    .replace_all(&clean, |caps: &Captures<'_>| replacement(caps))
                    .into_owned(),
            ),
        },
        None => secrets.replace_all(text, |caps: &Captures<'_>| replacement(caps)),
    }
}

/// [`redact`] for an owned string: no copy when nothing is found.
pub fn redact_owned(text: String) -> String {
    match redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(clean) => clean,
    }
}

fn replacement(caps: &Captures<'_>) -> String {
    let whole = caps.get(0).map_or("", |m| m.as_str());
    match (caps.name("name"), caps.name("sep")) {
        (Some(name), Some(sep)) => {
            let value = caps.name("value").map_or("", |v| v.as_str());
            format!("{}{}{}", name.as_str(), sep.as_str(), masked(value))
        }
        // A URL's password: keep the scheme and user, lose what is between `:` and `@`.
        _ if whole.contains("://") && whole.ends_with('@') => match whole.rfind(':') {
            Some(colon) => format!("{}{REDACTED}@", &whole[..=colon]),
            None => REDACTED.to_owned(),
        },
        _ => masked(whole),
    }
}

/// A secret value replaced: quotes kept (JSON and shell lines stay readable), and the word of
/// `Bearer <token>` kept.
fn masked(value: &str) -> String {
    if let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
        return format!("{quote}{REDACTED}{quote}");
    }
    match value.split_once(char::is_whitespace) {
        Some((word, _))
            if word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic") =>
        {
            format!("{word} {REDACTED}")
        }
        _ => REDACTED.to_owned(),
    }
}

/// [`redact`], then cut to at most `max_bytes` (on a character boundary) with a note of how
/// much was left out. Redacting first means a cut never leaves part of a secret showing.
pub fn redact_cut(text: &str, max_bytes: usize) -> String {
    let clean = redact(text);
    if clean.len() <= max_bytes {
        return clean.into_owned();
    }
    let mut end = max_bytes;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes not kept]",
        &clean[..end],
        clean.len() - end
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secrets in the shapes people paste them, each inside ordinary text.
    const SECRETS: [&str; 14] = [
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "sk-proj-AbCdEfGhIjKlMnOpQrStUv123456",
        "pplx-0123456789abcdef0123456789abcdef",
        "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        "glpat-AbCdEfGhIjKlMnOpQrSt",
        "xoxb-1234567890-abcdefghijkl",
        "AKIAIOSFODNN7EXAMPLE",
        "AIzaSyA-0123456789abcdefghijklmnopqrstu",
        "secret_0123456789abcdefghijklmnopqrstuvwxyzAB",
        "123456789:AAEhBP0av28-RMqvXIrfAbCdEfGhIjKlMnO",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "ntn_0123456789abcdefghijklmnopqrstuvwxyzABCD",
        "sk-ant-oat01-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210",
    ];

    #[test]
    fn every_known_shape_of_secret_is_replaced() {
        for secret in SECRETS {
            let text = format!("please use {secret} for the deploy");
            let clean = redact(&text);
            assert!(!clean.contains(secret), "{secret} survived: {clean}");
            assert!(clean.contains(REDACTED), "{clean}");
            assert!(
                clean.starts_with("please use ") && clean.ends_with(" for the deploy"),
                "{clean}"
            );
        }
    }

    #[test]
    fn assignments_keep_their_name_and_lose_their_value() {
        let cases = [
            ("export API_KEY=abc123def456", "export API_KEY=[redacted]"),
            ("password: hunter2hunter2", "password: [redacted]"),
            (
                r#"{"client_secret": "s3cr3t-value"}"#,
                r#"{"client_secret": "[redacted]"}"#,
            ),
            ("DB_PASSWORD='p@ss w0rd'", "DB_PASSWORD='[redacted]'"),
            (
                "Authorization: Bearer abcdefghijklmnop.qrs",
                "Authorization: Bearer [redacted]",
            ),
            (
                "curl https://deploy:topsecret@example.com/x",
                "curl https://deploy:[redacted]@example.com/x",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redact(text), expected, "{text}");
        }
    }

    #[test]
    fn a_private_key_goes_whole_even_when_its_end_is_missing() {
        let pem = "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA\n-----END OPENSSH PRIVATE KEY-----\ndone";
        assert_eq!(redact(pem), "key:\n[redacted]\ndone");
        let cut = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA";
        assert_eq!(redact(cut), REDACTED);
    }

    #[test]
    fn known_secrets_go_by_value_whatever_their_shape() {
        let taken = set_known_secrets([
            "plainvalue-no-shape-1",
            "short",
            "plainvalue-no-shape-1-longer",
            "tg:AB$^.*+?()[]{}|",
        ]);
        assert_eq!(taken, 3, "too short a value is not a secret");
        let clean = redact(
            "a plainvalue-no-shape-1-longer and plainvalue-no-shape-1, tg:AB$^.*+?()[]{}| x",
        );
        assert_eq!(clean, "a [redacted] and [redacted], [redacted] x");
        assert_eq!(redact("short stays"), "short stays");
        set_known_secrets(Vec::<String>::new());
        assert_eq!(redact("plainvalue-no-shape-1"), "plainvalue-no-shape-1");
    }

    #[test]
    fn ordinary_text_passes_unchanged() {
        for text in [
            "the token bucket refills every second",
            "sk-1 is a short name",
            "see https://example.com/a:b@c for the docs",
            "rust 1.95: edition = 2024",
            "ask-anything-you-like about tokens",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn a_cut_never_shows_part_of_a_secret_and_keeps_characters_whole() {
        let text = format!("{}{}", "é".repeat(10), SECRETS[0]);
        let cut = redact_cut(&text, 25);
        assert!(!cut.contains("sk-ant"), "{cut}");
        assert!(cut.starts_with("ééééé"), "{cut}");
        assert!(cut.contains("more bytes not kept"), "{cut}");
        assert_eq!(redact_cut("short", 100), "short");
    }
}
