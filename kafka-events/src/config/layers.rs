//! Reading the settings: the profile's defaults, then the TOML file `KAFKA_EVENTS_CONFIG` names,
//! then the environment, layered by figment and read into [`Settings`] in one typed pass that
//! reports every value it cannot read, each under its variable's name.
//!
//! Both sources are turned into the same layer first — a figment dictionary keyed by variable
//! name, every value text — so that a file and the environment are read alike (file keys in any
//! case, arrays joined with commas; `KAFKA_CONSUMER_SESSION_TIMEOUT_MS` and a `[consumer]` table
//! both land in `KAFKA_CONSUMER`), and figment's lossy extraction turns `"3"` and `"yes"` into
//! numbers and booleans for both. figment's own providers are not used for that reason: its
//! `Env` reads only the process environment and parses `"123"` into a number a text field then
//! refuses, its `Toml` keeps keys' case.
//!
//! serde stops at the first value it cannot read. To report them all, the reader masks each bad
//! value with its default and reads again, until the settings read; each round names one more
//! problem, so it ends within as many rounds as there are settings.

use figment::error::Kind;
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::Figment;

use super::problem::{ConfigError, ConfigProblem};
use super::settings::{GroupProtocol, Profile, Settings, SECURITY_VARS};
use super::values::is_secret;
use super::Config;

/// The variable that selects the profile, read before the rest (it chooses the defaults).
const PROFILE: &str = "KAFKA_EVENTS_PROFILE";
/// The variable that selects the group protocol, read before the rest (it trims the defaults).
const PROTOCOL: &str = "KAFKA_GROUP_PROTOCOL";
/// The tables of librdkafka properties and their variable prefixes.
const PROPERTY_TABLES: [(&str, &str); 3] =
    [("consumer", "KAFKA_CONSUMER"), ("producer", "KAFKA_PRODUCER"), ("client", "KAFKA_CLIENT")];

impl Config {
    /// Reads the variables listed on [`Config`] from the process environment — on top of the
    /// TOML file `KAFKA_EVENTS_CONFIG` names, if it names one (the environment wins). Values that
    /// cannot be read are reported by [`validate`](Self::validate) together with every other
    /// problem; this function fails only through that validation.
    pub fn from_env() -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = env.iter().find(|(k, _)| k == "KAFKA_EVENTS_CONFIG").map(|(_, v)| std::path::PathBuf::from(v));
        let config = Self::from_sources(file.as_deref(), env);
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file of the same settings, then applies `env` over it (the environment
    /// wins). The file uses the variable names as keys, in any case (`KAFKA_BROKERS = "…"` or
    /// `kafka_brokers = "…"`); numbers, booleans and arrays (joined with commas) are accepted
    /// as well as strings; tables `[consumer]`, `[producer]` and `[client]` pass librdkafka
    /// properties through (`"session.timeout.ms" = 30000`). Unknown keys are problems, so a typo
    /// is not silently ignored. Builder methods called afterwards override both.
    pub fn from_sources(file: Option<&std::path::Path>, env: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut problems = Vec::new();
        let file = file.map(|path| file_layer(path, &mut problems)).unwrap_or_default();
        let known = Settings::keys();
        for key in file.keys().filter(|key| !known.contains(*key)) {
            problems.push(ConfigProblem::new(
                key,
                "unknown setting in the config file (see the variables documented on `Config`)",
            ));
        }
        let env = env.into_iter().filter(|(name, _)| name.starts_with("KAFKA_") || name == "SERVICE_NAME");
        let (settings, read) = Settings::layered(&[file, layer(env)]);
        let mut config = Self::from_settings(settings);
        problems.extend(read);
        config.read_problems.splice(0..0, problems);
        config
    }

    /// Like [`from_env`](Self::from_env), from any list of variables, without validating.
    pub fn from_vars<K: AsRef<str>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        Self::from_sources(None, vars.into_iter().map(|(k, v)| (k.as_ref().to_string(), v.into())))
    }
}

impl Settings {
    /// Every setting's key (its variable's name; the property tables by their prefix).
    pub(super) fn keys() -> std::collections::BTreeSet<String> {
        Self::dictionary(&Settings::development(None)).into_keys().collect()
    }

    fn dictionary(&self) -> Dict {
        Value::serialize(self).ok().and_then(Value::into_dict).expect("settings serialize to a dictionary")
    }

    /// The settings `layers` (later ones win) give over their profile's defaults, and a problem
    /// for every value that could not be read (that setting keeps its default).
    pub(super) fn layered(layers: &[Dict]) -> (Self, Vec<ConfigProblem>) {
        let given = layers.iter().fold(Figment::new(), |figment, layer| figment.merge(Serialized::defaults(layer)));
        let profile = given.extract_inner_lossy::<Profile>(PROFILE).unwrap_or(Profile::Development);
        let protocol = given.extract_inner_lossy::<GroupProtocol>(PROTOCOL).unwrap_or_default();
        let defaults = Self::defaults(profile, protocol);
        let default_values = defaults.dictionary();
        let mut figment = layers.iter().fold(Figment::from(Serialized::defaults(&defaults)), |figment, layer| {
            figment.merge(Serialized::defaults(layer))
        });
        let mut problems: Vec<ConfigProblem> = Vec::new();
        loop {
            let errors = match figment.extract_lossy::<Settings>() {
                Ok(settings) => return (settings, problems),
                Err(errors) => errors,
            };
            for error in errors {
                let key = error.path.first().cloned().unwrap_or_default();
                let Some(default) = default_values.get(&key).filter(|_| !problems.iter().any(|p| p.key == key)) else {
                    // Not a setting's value, or masked already: nothing more to learn by reading again.
                    problems.push(ConfigProblem::new(&key, error.kind.to_string()));
                    return (defaults, problems);
                };
                let value = figment.find_value(&key).ok();
                problems.push(ConfigProblem::new(&key, reason(&key, &error.kind, value.as_ref())));
                figment = figment.merge(Serialized::default(&key, default.clone()));
            }
        }
    }
}

/// Why a value could not be read, with the value in front unless it may be a secret: "`three` is
/// not a valid number".
fn reason(key: &str, kind: &Kind, value: Option<&Value>) -> String {
    let what = match kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => format!("is not {}", described(expected)),
        Kind::UnknownVariant(_, names) => format!("is not {}", one_of(names)),
        Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    match value.and_then(Value::as_str) {
        Some(text) if !is_secret(key) => format!("`{text}` {what}"),
        _ => format!("the value {what}"),
    }
}

/// serde's name of an expected type, as a reader would say it.
fn described(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" | "f32" | "f64" => {
            "a valid number".into()
        }
        "a boolean" => "a boolean (true/false)".into(),
        other => other.into(),
    }
}

/// "`a`, `b` or `c`".
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "anything".into(),
    }
}

/// Variables as a layer: each under its setting's key, librdkafka properties and the security
/// variables in their table (`KAFKA_CONSUMER_SESSION_TIMEOUT_MS` → `KAFKA_CONSUMER`'s
/// `session.timeout.ms`); values trimmed, empty ones left out (an empty variable is unset).
fn layer(vars: impl IntoIterator<Item = (String, String)>) -> Dict {
    let mut layer = Dict::new();
    for (name, value) in vars {
        let value = value.trim();
        if !value.is_empty() {
            let (key, property) = placed(&name);
            insert(&mut layer, key, property, value.to_string());
        }
    }
    layer
}

/// Where variable `name` goes: its key, and the property within the key's table.
fn placed(name: &str) -> (String, Option<String>) {
    if let Some((_, property)) = SECURITY_VARS.iter().find(|(var, _)| *var == name) {
        return ("KAFKA_CLIENT".into(), Some((*property).into()));
    }
    for (_, prefix) in PROPERTY_TABLES {
        if let Some(suffix) = name.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')) {
            if name != "KAFKA_CLIENT_ID" {
                return (prefix.into(), Some(suffix.to_ascii_lowercase().replace('_', ".")));
            }
        }
    }
    (name.into(), None)
}

fn insert(layer: &mut Dict, key: String, property: Option<String>, value: String) {
    match property {
        None => {
            layer.insert(key, Value::from(value));
        }
        Some(property) => {
            let table = layer.entry(key).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, table) = table {
                table.insert(property, Value::from(value));
            }
        }
    }
}

/// The TOML file at `path` as a layer: top-level keys are variable names (any case);
/// `[consumer]`, `[producer]` and `[client]` hold librdkafka properties. What cannot be read is a
/// problem named after the file.
fn file_layer(path: &std::path::Path, problems: &mut Vec<ConfigProblem>) -> Dict {
    let file = format!("KAFKA_EVENTS_CONFIG ({})", path.display());
    let table = match std::fs::read_to_string(path) {
        Err(error) => {
            problems.push(ConfigProblem::new(&file, format!("cannot read it: {error}")));
            return Dict::new();
        }
        Ok(text) => match text.parse::<toml::Table>() {
            Err(error) => {
                problems.push(ConfigProblem::new(&file, format!("not valid TOML: {error}")));
                return Dict::new();
            }
            Ok(table) => table,
        },
    };
    let mut layer = Dict::new();
    for (key, value) in &table {
        let section = PROPERTY_TABLES.iter().find(|(section, _)| key.eq_ignore_ascii_case(section));
        match (section, value) {
            (Some((section, prefix)), toml::Value::Table(properties)) => {
                for (property, value) in properties {
                    match text(value) {
                        Some(v) => insert(&mut layer, (*prefix).into(), Some(property.clone()), v),
                        None => problems.push(ConfigProblem::new(
                            &format!("{file}: [{section}] {property}"),
                            "must be a string, number or boolean",
                        )),
                    }
                }
            }
            (_, value) => match text(value) {
                Some(v) => {
                    let (key, property) = placed(&key.to_ascii_uppercase());
                    insert(&mut layer, key, property, v);
                }
                None => problems.push(ConfigProblem::new(
                    &format!("{file}: {key}"),
                    "must be a string, number, boolean or array (tables only for [consumer], [producer], [client])",
                )),
            },
        }
    }
    layer
}

/// A TOML value as the text a variable would hold (arrays of strings or integers joined with
/// commas); `None` for tables and mixed arrays.
fn text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(n) => Some(n.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .map(|parts| parts.join(",")),
        toml::Value::Table(_) => None,
    }
}
