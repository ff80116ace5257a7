//! Reading one setting: its raw text from the [`Sources`] or its default,
//! parsed as its [`Kind`] says, recorded for `config`'s description.

use std::path::PathBuf;
use std::time::Duration;

use super::settings::{Kind, Setting, Value};
use super::{ConfigError, Secret, Sources};

pub(super) struct Reader<'a> {
    pub sources: &'a Sources,
    /// The command's own defaults, over the table's.
    defaults: &'static [(&'static str, &'static str)],
    /// Every setting read, with its effective value (secrets as `***`).
    pub effective: Vec<(&'static str, String)>,
}

impl<'a> Reader<'a> {
    pub fn new(sources: &'a Sources, defaults: &'static [(&'static str, &'static str)]) -> Reader<'a> {
        Reader {
            sources,
            defaults,
            effective: Vec::new(),
        }
    }

    /// The raw text of a setting, with the name to blame, or its default.
    fn raw(&mut self, var: &'static str) -> Option<(String, String)> {
        let setting = Setting::named(var);
        let found = self.sources.raw(var).or_else(|| {
            let own = self.defaults.iter().find(|(v, _)| *v == var).map(|(_, d)| *d);
            own.or(setting.default).map(|d| (var.to_string(), d.to_string()))
        });
        let shown = match (&found, setting.secret()) {
            (Some(_), true) => "***".to_string(),
            (Some((_, v)), false) => v.clone(),
            (None, _) => String::new(),
        };
        self.effective.push((var, shown));
        found
    }

    /// The value of `var` parsed by `parse`; an error names the setting and
    /// what its kind accepts.
    fn parsed<T>(
        &mut self,
        var: &'static str,
        parse: impl Fn(&Kind, &str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let kind = Setting::named(var).kind;
        match self.raw(var) {
            None => Ok(None),
            Some((name, value)) => match parse(&kind, value.trim()) {
                Some(v) => Ok(Some(v)),
                None => Err(ConfigError::Invalid {
                    name,
                    value,
                    expected: kind.expected(),
                }),
            },
        }
    }

    fn value(&mut self, var: &'static str) -> Result<Option<Value>, ConfigError> {
        self.parsed(var, |kind, text| kind.parse(text))
    }

    /// Text as given, or the default.
    pub fn optional_string(&mut self, var: &'static str) -> Option<String> {
        self.raw(var).map(|(_, v)| v)
    }

    pub fn path(&mut self, var: &'static str) -> Option<PathBuf> {
        self.optional_string(var).map(PathBuf::from)
    }

    pub fn whole<T: TryFrom<i128>>(&mut self, var: &'static str) -> Result<Option<T>, ConfigError> {
        self.parsed(var, |kind, text| match kind.parse(text)? {
            Value::Whole(v) => T::try_from(v).ok(),
            _ => None,
        })
    }

    pub fn number(&mut self, var: &'static str) -> Result<Option<f64>, ConfigError> {
        Ok(match self.value(var)? {
            Some(Value::Number(v)) => Some(v),
            other => mismatch(var, other),
        })
    }

    pub fn duration(&mut self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(match self.value(var)? {
            Some(Value::Duration(v)) => Some(v),
            other => mismatch(var, other),
        })
    }

    pub fn flag(&mut self, var: &'static str) -> Result<Option<bool>, ConfigError> {
        Ok(match self.value(var)? {
            Some(Value::Bool(v)) => Some(v),
            other => mismatch(var, other),
        })
    }

    /// One of the declared words, as the value it stands for in `words`.
    pub fn pick<T: Copy>(&mut self, var: &'static str, words: &[(&str, T)]) -> Result<Option<T>, ConfigError> {
        Ok(match self.value(var)? {
            Some(Value::Choice(word)) => Some(
                words
                    .iter()
                    .find(|(w, _)| w.eq_ignore_ascii_case(word))
                    .unwrap_or_else(|| panic!("{var}: {word:?} is declared but has no meaning"))
                    .1,
            ),
            other => mismatch(var, other),
        })
    }

    /// A [`Kind::Form`] setting, checked by `parse`.
    pub fn form<T>(&mut self, var: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ConfigError> {
        self.parsed(var, |_, text| parse(text))
    }

    /// A secret given directly or as a file (`*_FILE`, as Kubernetes mounts
    /// Secrets); the file wins.
    pub fn secret(&mut self, var: &'static str, file_var: &'static str) -> Result<Option<Secret>, ConfigError> {
        let direct = self.optional_string(var);
        let file = self.optional_string(file_var);
        match (direct, file) {
            (_, Some(path)) => std::fs::read_to_string(&path)
                .map(|s| Some(Secret::new(s.trim_end_matches(['\n', '\r']))))
                .map_err(|e| ConfigError::File {
                    name: file_var.to_string(),
                    path,
                    reason: e.to_string(),
                }),
            (Some(v), None) => Ok(Some(Secret::new(v))),
            (None, None) => Ok(None),
        }
    }
}

/// A setting read as another kind than it is declared: a bug, caught by
/// `every_setting_is_read_by_load`.
fn mismatch<T>(var: &str, value: Option<Value>) -> Option<T> {
    match value {
        None => None,
        Some(v) => panic!("{var} is declared as another kind than it is read as ({v:?})"),
    }
}

/// The value of a setting that has a default.
pub(super) fn given<T>(var: &'static str, value: Option<T>) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError::Inconsistent(format!("{var} has no value and no default")))
}
