//! Secrets come only from the environment and never show in output or logs.

use std::fmt;

/// Environment variables Valor reads secrets from.
pub const SECRET_VARS: [&str; 8] = [
    "TELEGRAM_BOT_TOKEN",
    "ANTHROPIC_API_KEY",
    "PERPLEXITY_API_KEY",
    "OPENAI_API_KEY",
    "NOTION_API_KEY",
    "DAYDREAM_API_KEY",
    "VALOR_DATABASE_URL",
    "TELEGRAM_WEBHOOK_SECRET",
];

/// A secret value. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`] gives the
/// value, so a secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (an HTTP header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The secrets Valor may use, each present when its environment variable is set and non-empty.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    pub telegram_bot_token: Option<Secret>,
    pub anthropic_api_key: Option<Secret>,
    pub perplexity_api_key: Option<Secret>,
    pub openai_api_key: Option<Secret>,
    pub notion_api_key: Option<Secret>,
    /// The daydream's OpenAI-compatible endpoint's own key (none by default; the OpenAI key
    /// never goes there).
    pub daydream_api_key: Option<Secret>,
    /// `[cluster]`'s PostgreSQL URL (it holds the database's password).
    pub database_url: Option<Secret>,
    /// The webhook's fixed secret, shared by every ingress node (none: one made per start).
    pub telegram_webhook_secret: Option<Secret>,
}

impl Secrets {
    /// Every secret value set (and the password inside the database's URL), for the redactor:
    /// none of them may reach a chat, a log or the store.
    pub fn values(&self) -> Vec<&str> {
        let all = [
            &self.telegram_bot_token,
            &self.anthropic_api_key,
            &self.perplexity_api_key,
            &self.openai_api_key,
            &self.notion_api_key,
            &self.daydream_api_key,
            &self.database_url,
            &self.telegram_webhook_secret,
        ];
        let mut values: Vec<&str> = all.into_iter().flatten().map(Secret::expose).collect();
        if let Some(url) = &self.database_url
            && let Some((_, rest)) = url.expose().split_once("://")
            && let Some((userinfo, _)) = rest.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            values.push(password);
        }
        values
    }

    /// Reads the secrets from an environment snapshot.
    pub fn from_env(env: &crate::Env) -> Self {
        let get = |name: &str| {
            env.get(name)
                .filter(|v| !v.trim().is_empty())
                .map(Secret::new)
        };
        Secrets {
            telegram_bot_token: get("TELEGRAM_BOT_TOKEN"),
            anthropic_api_key: get("ANTHROPIC_API_KEY"),
            perplexity_api_key: get("PERPLEXITY_API_KEY"),
            openai_api_key: get("OPENAI_API_KEY"),
            notion_api_key: get("NOTION_API_KEY"),
            daydream_api_key: get("DAYDREAM_API_KEY"),
            database_url: get("VALOR_DATABASE_URL"),
            telegram_webhook_secret: get("TELEGRAM_WEBHOOK_SECRET"),
        }
    }

    /// `(variable, is set)` for every secret, in [`SECRET_VARS`] order, for reports.
    pub fn presence(&self) -> [(&'static str, bool); 8] {
        [
            (SECRET_VARS[0], self.telegram_bot_token.is_some()),
            (SECRET_VARS[1], self.anthropic_api_key.is_some()),
            (SECRET_VARS[2], self.perplexity_api_key.is_some()),
            (SECRET_VARS[3], self.openai_api_key.is_some()),
            (SECRET_VARS[4], self.notion_api_key.is_some()),
            (SECRET_VARS[5], self.daydream_api_key.is_some()),
            (SECRET_VARS[6], self.database_url.is_some()),
            (SECRET_VARS[7], self.telegram_webhook_secret.is_some()),
        ]
    }
}

/// Config keys that look like secrets. A file that holds one is refused with a pointer to the
/// environment variable, and the value is never echoed.
pub(crate) fn secret_var_for_key(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    // The key's own name (its last segment) must end like a secret: `bot_token` and `api_key`
    // do, `token_budget` does not.
    let name = key.rsplit('.').next().unwrap_or(&key);
    let named = [
        ("telegram", "TELEGRAM_BOT_TOKEN"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("perplexity", "PERPLEXITY_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("notion", "NOTION_API_KEY"),
        ("daydream", "DAYDREAM_API_KEY"),
    ];
    let looks_secret = ["token", "api_key", "apikey", "secret", "password"]
        .iter()
        .any(|word| name.ends_with(word));
    if !looks_secret {
        return None;
    }
    Some(
        named
            .iter()
            .find(|(area, _)| key.contains(area))
            .map_or("the matching *_API_KEY / *_TOKEN variable", |(_, var)| var),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let all = Secrets {
            openai_api_key: Some(s.clone()),
            ..Secrets::default()
        };
        assert!(!format!("{all:?}").contains("sk-very"));
        assert_eq!(s.expose(), "sk-very-secret");
    }

    #[test]
    fn empty_variables_are_absent() {
        let env = crate::Env::from_pairs([("OPENAI_API_KEY", "  "), ("NOTION_API_KEY", "n")]);
        let s = Secrets::from_env(&env);
        assert!(s.openai_api_key.is_none());
        assert_eq!(s.notion_api_key.as_ref().map(Secret::expose), Some("n"));
    }

    #[test]
    fn secret_looking_keys_point_at_their_variable() {
        assert_eq!(
            secret_var_for_key("bot_token"),
            Some("the matching *_API_KEY / *_TOKEN variable")
        );
        assert_eq!(
            secret_var_for_key("telegram_bot_token"),
            Some("TELEGRAM_BOT_TOKEN")
        );
        assert_eq!(secret_var_for_key("openai_api_key"), Some("OPENAI_API_KEY"));
        assert_eq!(secret_var_for_key("bind"), None);
        assert_eq!(secret_var_for_key("context.token_budget"), None);
        assert_eq!(secret_var_for_key("notion.api_key"), Some("NOTION_API_KEY"));
    }
}
