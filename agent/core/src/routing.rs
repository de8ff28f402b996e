//! Model routing (seed 001): a deterministic classifier puts each request in a class, and a
//! configured table maps the class to a model and an effort. Same text, same route, always.

use valor_config::{RouteConfig, RoutingConfig};
pub use valor_protocol::{RequestClass, Route};

#[derive(Debug, Clone)]
pub struct ModelRouter {
    table: RoutingConfig,
}

/// Words that mark an error report.
const DIAGNOSIS: &[&str] = &[
    "error",
    "errors",
    "exception",
    "traceback",
    "panic",
    "panicked",
    "crash",
    "crashes",
    "crashed",
    "fails",
    "failed",
    "failing",
    "failure",
    "bug",
    "broken",
    "segfault",
    "stacktrace",
    "undefined",
    "nullpointerexception",
    "timeout",
    "debug",
];
const DIAGNOSIS_PHRASES: &[&str] = &[
    "doesn't work",
    "does not work",
    "not working",
    "stack trace",
    "why does",
    "why is",
    "what went wrong",
    "won't start",
    "exit code",
];
/// Words that mark design work.
const COMPLEX: &[&str] = &[
    "architecture",
    "architect",
    "design",
    "redesign",
    "refactor",
    "refactoring",
    "migrate",
    "migration",
    "tradeoff",
    "tradeoffs",
    "trade-off",
    "trade-offs",
    "scalability",
    "scale",
    "strategy",
    "roadmap",
    "rewrite",
    "compare",
];
/// Words that mark code work.
const DEVELOPMENT: &[&str] = &[
    "code",
    "implement",
    "function",
    "class",
    "method",
    "test",
    "tests",
    "compile",
    "build",
    "deploy",
    "commit",
    "branch",
    "merge",
    "script",
    "api",
    "endpoint",
    "database",
    "query",
    "fix",
    "add",
    "write",
    "rename",
    "module",
    "crate",
    "package",
    "dependency",
    "lint",
    "repo",
];
const CODE_MARKERS: &[&str] = &[
    "```", "fn ", "def ", "=>", "();", "::", ".rs", ".py", ".ts", ".js", ".go", ".toml", "cargo ",
    "npm ", "git ",
];

impl ModelRouter {
    pub fn new(table: RoutingConfig) -> Self {
        ModelRouter { table }
    }

    /// The class of a request text.
    pub fn classify(text: &str) -> RequestClass {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
            .filter(|w| !w.is_empty())
            .collect();
        let has_word = |list: &[&str]| words.iter().any(|w| list.contains(w));
        let has_phrase = |list: &[&str]| list.iter().any(|p| lower.contains(p));

        if has_word(DIAGNOSIS) || has_phrase(DIAGNOSIS_PHRASES) {
            return RequestClass::Diagnosis;
        }
        let questions = text.matches('?').count();
        let list_items = text
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                l.starts_with("- ")
                    || l.starts_with("* ")
                    || l.chars().next().is_some_and(|c| c.is_ascii_digit()) && l.contains(". ")
            })
            .count();
        if has_word(COMPLEX) || text.chars().count() > 800 || questions >= 3 || list_items >= 3 {
            return RequestClass::Complex;
        }
        if has_word(DEVELOPMENT) || has_phrase(CODE_MARKERS) {
            return RequestClass::Development;
        }
        RequestClass::ShortChat
    }

    /// The route for a request text.
    pub fn route(&self, text: &str) -> Route {
        let class = Self::classify(text);
        let entry: &RouteConfig = match class {
            RequestClass::ShortChat => &self.table.short_chat,
            RequestClass::Development => &self.table.development,
            RequestClass::Complex => &self.table.complex,
            RequestClass::Diagnosis => &self.table.diagnosis,
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Route {
            class,
            model: non_empty(&entry.model),
            effort: non_empty(&entry.effort),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let table = [
            ("hi!", RequestClass::ShortChat),
            ("Thanks, that's great", RequestClass::ShortChat),
            ("what time is it in Tokyo?", RequestClass::ShortChat),
            ("Please implement a retry helper", RequestClass::Development),
            ("add a test for the parser", RequestClass::Development),
            ("run `cargo fmt` on it", RequestClass::Development),
            ("rename src/lib.rs items", RequestClass::Development),
            (
                "How should we design the storage layer?",
                RequestClass::Complex,
            ),
            ("Let's refactor the auth module", RequestClass::Complex),
            ("a? b? c?", RequestClass::Complex),
            ("plan:\n- one\n- two\n- three", RequestClass::Complex),
            ("The build fails with error E0308", RequestClass::Diagnosis),
            (
                "thread 'main' panicked at src/main.rs:3",
                RequestClass::Diagnosis,
            ),
            (
                "the login page doesn't work since yesterday",
                RequestClass::Diagnosis,
            ),
            ("Why does this return None?", RequestClass::Diagnosis),
        ];
        for (text, expected) in table {
            assert_eq!(ModelRouter::classify(text), expected, "{text:?}");
        }
        assert_eq!(
            ModelRouter::classify(&"word ".repeat(200)),
            RequestClass::Complex
        );
    }

    #[test]
    fn routes_come_from_the_table_and_empty_means_default() {
        let mut table = RoutingConfig::default();
        table.short_chat.model = String::new();
        let router = ModelRouter::new(table);
        assert_eq!(
            router.route("hello"),
            Route {
                class: RequestClass::ShortChat,
                model: None,
                effort: Some("low".to_owned())
            }
        );
        let route = router.route("the deploy failed");
        assert_eq!(
            (route.class, route.model.as_deref()),
            (RequestClass::Diagnosis, Some("sonnet"))
        );
        assert_eq!(route.effort.as_deref(), Some("high"));
    }
}
