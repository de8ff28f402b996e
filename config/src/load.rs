//! Where the config comes from: file search order, environment overrides, deserialisation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, Origin, Problem};
use crate::locate::{line_at, line_of_key};
use crate::schema::Config;
use crate::secrets::{Secrets, secret_var_for_key};
use crate::validate::validate;

const ENV_PREFIX: &str = "VALOR__";
const FILE_NAME: &str = "valor.toml";

/// A snapshot of environment variables, so loading is a pure function of its inputs.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The current process environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn overrides(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Which file the config was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// `--config PATH`.
    Explicit(PathBuf),
    /// `./valor.toml`.
    WorkingDir(PathBuf),
    /// `$XDG_CONFIG_HOME/valor/valor.toml` (or `~/.config/valor/valor.toml`).
    Xdg(PathBuf),
    /// No file: built-in defaults.
    Defaults,
}

impl SourceKind {
    pub fn path(&self) -> Option<&Path> {
        match self {
            SourceKind::Explicit(p) | SourceKind::WorkingDir(p) | SourceKind::Xdg(p) => Some(p),
            SourceKind::Defaults => None,
        }
    }
}

/// Inputs of a config load.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// `--config PATH`; must exist when given.
    pub explicit: Option<PathBuf>,
    /// Directory searched for `valor.toml`.
    pub cwd: PathBuf,
    pub env: Env,
}

/// A loaded, validated config with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub secrets: Secrets,
    pub source: SourceKind,
    /// `(variable, key)` for every environment override applied.
    pub overrides: Vec<(String, String)>,
    /// Keys read under an old name (`memory.path` for `store.path`...): say so at start-up.
    pub warnings: Vec<String>,
}

impl ConfigSource {
    /// The process's own inputs: its environment and working directory.
    pub fn from_process(explicit: Option<PathBuf>) -> Self {
        ConfigSource {
            explicit,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            env: Env::from_process(),
        }
    }

    /// The file to read, following the search order.
    pub fn resolve(&self) -> Result<SourceKind, ConfigError> {
        if let Some(path) = &self.explicit {
            return if path.is_file() {
                Ok(SourceKind::Explicit(path.clone()))
            } else {
                Err(ConfigError::NotFound { path: path.clone() })
            };
        }
        let local = self.cwd.join(FILE_NAME);
        if local.is_file() {
            return Ok(SourceKind::WorkingDir(local));
        }
        let config_home = match self.env.get("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => Some(PathBuf::from(dir)),
            None => self
                .env
                .get("HOME")
                .map(|home| Path::new(home).join(".config")),
        };
        if let Some(xdg) = config_home.map(|dir| dir.join("valor").join(FILE_NAME))
            && xdg.is_file()
        {
            return Ok(SourceKind::Xdg(xdg));
        }
        Ok(SourceKind::Defaults)
    }

    /// Reads, overrides and validates the config.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let source = self.resolve()?;
        let text = match source.path() {
            Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.to_owned(),
                source: e,
            })?,
            None => String::new(),
        };
        let (mut config, overrides, warnings) = parse(&text, source.path(), &self.env)?;
        config.expand_home(self.env.get("HOME"));
        Ok(Loaded {
            config,
            secrets: Secrets::from_env(&self.env),
            source,
            overrides,
            warnings,
        })
    }
}

/// A parsed config, the overrides applied (`(variable, key)`) and the warnings.
type Parsed = (Config, Vec<(String, String)>, Vec<String>);

/// Parses `text` (from `path`, if any), applies the environment's overrides, validates.
fn parse(text: &str, path: Option<&Path>, env: &Env) -> Result<Parsed, ConfigError> {
    let display_path = path.map_or_else(|| PathBuf::from("<defaults>"), Path::to_path_buf);
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: display_path.clone(),
                line: e.span().map_or(1, |s| line_at(text, s.start)),
                message: e.message().trim().to_owned(),
            })?;

    let locator = Locator {
        text,
        path,
        env_keys: BTreeMap::new(),
        renamed: BTreeMap::new(),
    };
    let mut problems = secret_keys_in_file(&table, "", &locator);

    let mut locator = locator;
    let mut applied = Vec::new();
    for (var, raw) in env.overrides() {
        match apply_override(&mut table, var, raw) {
            Ok(key) => {
                locator.env_keys.insert(key.clone(), var.to_owned());
                applied.push((var.to_owned(), key));
            }
            Err(problem) => problems.push(problem),
        }
    }
    let warnings = match move_renamed_keys(&mut table, &mut locator) {
        Ok(warnings) => warnings,
        Err(problem) => {
            problems.push(problem);
            Vec::new()
        }
    };
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }

    let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
        |e: serde_path_to_error::Error<toml::de::Error>| {
            let key = e.path().to_string();
            let message = e.inner().message().trim().to_owned();
            ConfigError::Invalid(vec![locator.problem(&key, message)])
        },
    )?;

    let problems: Vec<Problem> = validate(&config)
        .into_iter()
        .map(|(key, message)| locator.problem(&key, message))
        .collect();
    if problems.is_empty() {
        Ok((config, applied, warnings))
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Maps a key to where its value came from.
struct Locator<'a> {
    text: &'a str,
    path: Option<&'a Path>,
    /// key → environment variable that set it.
    env_keys: BTreeMap<String, String>,
    /// new key → the old name it was read under.
    renamed: BTreeMap<String, String>,
}

impl Locator<'_> {
    fn origin(&self, key: &str) -> Origin {
        // An override of `a.b.c` also explains an error reported at `a.b`.
        let nested = format!("{key}.");
        if let Some(var) = self
            .env_keys
            .iter()
            .find(|(k, _)| k.as_str() == key || k.starts_with(&nested))
            .map(|(_, var)| var)
        {
            return Origin::Env { var: var.clone() };
        }
        match self.path.zip(line_of_key(self.text, key)) {
            Some((path, line)) => Origin::File {
                path: path.to_owned(),
                line,
            },
            None => match self.renamed.get(key) {
                Some(old) => self.origin(old),
                None => Origin::Default,
            },
        }
    }

    fn problem(&self, key: &str, message: String) -> Problem {
        Problem {
            key: key.to_owned(),
            origin: self.origin(key),
            message,
        }
    }
}

fn secret_keys_in_file(table: &toml::Table, prefix: &str, locator: &Locator<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(var) = secret_var_for_key(&key) {
            problems.push(locator.problem(
                &key,
                format!(
                    "secrets are read only from the environment: remove this key from the file \
                     and set {var} instead"
                ),
            ));
        } else if let toml::Value::Table(inner) = value {
            problems.extend(secret_keys_in_file(inner, &key, locator));
        }
    }
    problems
}

/// Sets the key named by `VALOR__SECTION__KEY` in `table`; returns the dotted key.
fn apply_override(table: &mut toml::Table, var: &str, raw: &str) -> Result<String, Problem> {
    // Schema keys are lower case; the names inside `[claude.env]` are the user's own.
    let mut segments: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_owned)
        .collect();
    let user_keys_from = match segments.as_slice() {
        [section, table, ..]
            if section.eq_ignore_ascii_case("claude") && table.eq_ignore_ascii_case("env") =>
        {
            2
        }
        _ => segments.len(),
    };
    for segment in &mut segments[..user_keys_from] {
        segment.make_ascii_lowercase();
    }
    let key = segments.join(".");
    let problem = |message: String| Problem {
        key: key.clone(),
        origin: Origin::Env {
            var: var.to_owned(),
        },
        message,
    };
    if segments.iter().any(String::is_empty) {
        return Err(problem(
            "expected VALOR__SECTION__KEY, with `__` between non-empty names".to_owned(),
        ));
    }
    let value = if user_keys_from < segments.len() {
        toml::Value::String(raw.to_owned())
    } else {
        typed_override_value(&segments, raw)
    };
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| problem("expected VALOR__SECTION__KEY".to_owned()))?;
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(problem(format!(
                    "`{}` is a value, not a section",
                    segments[..=depth].join(".")
                )));
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(key)
}

/// Keys that moved: `(old, new)`. A config that uses the old name still loads, with a
/// warning; one that sets both differently is refused, so nothing is silently dropped.
pub const RENAMED_KEYS: &[(&str, &str)] = &[
    ("memory.path", "store.path"),
    ("monitor.alert_chat", "admin.chat"),
    ("daydream.report_chat", "admin.chat"),
    ("claude.memory_budget_mb", "claude.process_memory_mb"),
    ("memory.context_tokens", "context.memory_tokens"),
    ("memory.inject_tokens", "context.recalled_tokens"),
    ("memory.inject_detailed", "context.recalled_detailed"),
    ("learning.inject_tokens", "context.learning_tokens"),
    ("monitor.weights.memory", "monitor.weights.ram"),
    (
        "monitor.weights.sessions",
        "monitor.weights.child_processes",
    ),
];

/// Moves every key of [`RENAMED_KEYS`] set under its old name to its new one.
fn move_renamed_keys(
    table: &mut toml::Table,
    locator: &mut Locator<'_>,
) -> Result<Vec<String>, Problem> {
    let mut warnings = Vec::new();
    for (old, new) in RENAMED_KEYS {
        let Some(value) = take_key(table, old) else {
            continue;
        };
        let from = match locator.origin(old) {
            Origin::Env { var } => format!("{var} (the variable for `{old}`)"),
            _ => format!("`{old}`"),
        };
        // An old `chat = 0` meant "none": the same as leaving the new key unset.
        let none = *new == "admin.chat" && matches!(value, toml::Value::Integer(0));
        match get_key(table, new) {
            Some(existing) if existing == &value || none => {}
            Some(existing) => {
                return Err(locator.problem(
                    old,
                    format!(
                        "`{old}` is now `{new}`, which is set too ({existing} against {value}); \
                         keep `{new}` only"
                    ),
                ));
            }
            None if none => {}
            None => {
                if let Some(var) = locator.env_keys.remove(*old) {
                    locator.env_keys.insert((*new).to_owned(), var);
                }
                locator.renamed.insert((*new).to_owned(), (*old).to_owned());
                set_key(table, new, value);
            }
        }
        warnings.push(format!("{from} is now `{new}`: read as such; rename it"));
    }
    Ok(warnings)
}

/// Removes a dotted key (and the sections it leaves empty).
fn take_key(table: &mut toml::Table, key: &str) -> Option<toml::Value> {
    match key.split_once('.') {
        None => table.remove(key),
        Some((section, rest)) => {
            let inner = table.get_mut(section)?.as_table_mut()?;
            let value = take_key(inner, rest)?;
            if inner.is_empty() {
                table.remove(section);
            }
            Some(value)
        }
    }
}

fn get_key<'t>(table: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    match key.split_once('.') {
        None => table.get(key),
        Some((section, rest)) => get_key(table.get(section)?.as_table()?, rest),
    }
}

fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                set_key(inner, rest, value);
            }
        }
    }
}

/// An override is taken as a string where the default is a string, and as a TOML value
/// (number, boolean, array) elsewhere, so `VALOR__HEALTH__BIND=127.0.0.1:9000` and
/// `VALOR__MONITOR__INTERVAL_SECS=10` both do what they say.
fn typed_override_value(segments: &[String], raw: &str) -> toml::Value {
    let defaults = toml::Value::try_from(Config::default()).ok();
    let default_at = segments
        .iter()
        .try_fold(defaults.as_ref(), |value, segment| {
            Some(value.and_then(|v| v.get(segment.as_str())))
        })
        .flatten();
    if matches!(default_at, Some(toml::Value::String(_))) {
        return toml::Value::String(raw.to_owned());
    }
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        parse(
            text,
            Some(Path::new("/etc/valor.toml")),
            &Env::from_pairs(env.iter().copied()),
        )
        .map(|(c, _, _)| c)
    }

    #[test]
    fn old_key_names_still_load_with_a_warning() {
        let text = "[memory]\npath = \"/srv/valor\"\n[daydream]\nreport_chat = 42\n";
        let (config, _, warnings) = parse(
            text,
            Some(Path::new("/etc/valor.toml")),
            &Env::from_pairs([("VALOR__CLAUDE__MEMORY_BUDGET_MB", "900")]),
        )
        .unwrap();
        assert_eq!(config.store.path, PathBuf::from("/srv/valor"));
        assert_eq!(config.admin.chat, 42);
        assert_eq!(config.claude.process_memory_mb, 900);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("`memory.path` is now `store.path`"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("VALOR__CLAUDE__MEMORY_BUDGET_MB"))
        );
        let old = "[monitor.weights]\nmemory = 0.5\nsessions = 0.1\n";
        let weights = parse_str(old, &[]).unwrap().monitor.weights;
        assert_eq!((weights.ram, weights.child_processes), (0.5, 0.1));
        // The old "none" beside a new value, and the same value twice, are no conflict.
        let text = "[admin]\nchat = 7\n[daydream]\nreport_chat = 0\n[monitor]\nalert_chat = 7\n";
        assert_eq!(parse_str(text, &[]).unwrap().admin.chat, 7);
    }

    #[test]
    fn modes_are_words_parsed_once_and_a_wrong_one_is_named_with_its_line() {
        let c = parse_str(
            "[claude]\nsandbox = \"required\"\n[daydream]\nmissed = \"notify\"\n",
            &[("VALOR__SCHEDULER__CLEANUP_MISSED", "skip")],
        )
        .unwrap();
        assert_eq!(c.claude.sandbox, crate::SandboxMode::Required);
        assert_eq!(c.daydream.missed, crate::Missed::Notify);
        assert_eq!(c.scheduler.cleanup_missed, crate::Missed::Skip);
        let error = parse_str("[claude]\nsandbox = \"maybe\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/etc/valor.toml:2: key `claude.sandbox`"),
            "{error}"
        );
        assert!(
            error.contains("expected one of `auto`, `required`, `off`"),
            "{error}"
        );
        let error = parse_str("[daydream]\nbackend = \"openai\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs a model name"), "{error}");
    }

    #[test]
    fn a_renamed_key_set_twice_differently_is_refused() {
        let text = "[monitor]\nalert_chat = 1\n[daydream]\nreport_chat = 2\n";
        let error = parse_str(text, &[]).unwrap_err().to_string();
        assert!(
            error.contains("`daydream.report_chat` is now `admin.chat`"),
            "{error}"
        );
        assert!(error.contains("/etc/valor.toml:4"), "{error}");
        // A bad value read under the old name is reported where it was written.
        let error = parse_str("[memory]\npath = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("/etc/valor.toml:2"), "{error}");
    }

    #[test]
    fn empty_text_is_the_defaults() {
        assert_eq!(parse_str("", &[]).unwrap(), Config::default());
    }

    #[test]
    fn overrides_are_typed_by_the_default() {
        let c = parse_str(
            "",
            &[
                ("VALOR__HEALTH__BIND", "127.0.0.1:9000"),
                ("VALOR__MONITOR__INTERVAL_SECS", "10"),
                ("VALOR__MONITOR__WEIGHTS__CPU", "0.5"),
                ("VALOR__LOG__FILTER", "42"),
            ],
        )
        .unwrap();
        assert_eq!(c.health.bind.port(), 9000);
        assert_eq!(c.monitor.interval_secs, 10);
        assert_eq!(c.monitor.weights.cpu, 0.5);
        assert_eq!(c.log.filter, "42");
    }

    #[test]
    fn claude_env_keys_keep_their_case() {
        let c = parse_str("", &[("VALOR__CLAUDE__ENV__MY_FLAG", "1")]).unwrap();
        assert_eq!(c.claude.env.get("MY_FLAG").map(String::as_str), Some("1"));
    }

    #[test]
    fn override_into_a_value_is_refused() {
        let err = parse_str(
            "[log]\nfilter = \"info\"\n",
            &[("VALOR__LOG__FILTER__X", "1")],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`log.filter` is a value, not a section"),
            "{err}"
        );
        let err = parse_str("", &[("VALOR__LOG__FILTER__X", "1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration:\n  - environment variable VALOR__LOG__FILTER__X: key \
             `log.filter`: invalid type: map, expected a string"
        );
        let err = parse_str("", &[("VALOR__HEALTH____BIND", "1")]).unwrap_err();
        assert!(err.to_string().contains("VALOR__SECTION__KEY"), "{err}");
    }

    #[test]
    fn memory_layers_and_summaries_are_checked() {
        let c = parse_str(
            "[context]\nmemory_tokens = 3000\n[memory]\nsummarize_with = \"haiku\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            (c.context.memory_tokens, c.memory.summarize_with.as_str()),
            (3000, "haiku")
        );
        assert_eq!(c.memory.session_idle_mins, 240);
        let err = parse_str(
            "[context]\nmemory_tokens = 1000000\n[memory]\nsummarize_with = \"haiku; rm -rf /\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/valor.toml:2: key `context.memory_tokens`"),
            "{err}"
        );
        assert!(
            err.contains("`memory.summarize_with`: expected a model name"),
            "{err}"
        );
        // Under its old name, the error still points at the line it is on.
        let err = parse_str("[memory]\ncontext_tokens = 1000000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/valor.toml:2: key `context.memory_tokens`"),
            "{err}"
        );
    }
}
