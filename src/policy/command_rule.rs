//! What an approval lets run from an image: an owner approves code and a
//! command together, not a whole image. An image carries every program in
//! it, and an approval by digest alone approved them all: one that the
//! owner read as "stats" also ran "copy private/ to the outputs".

use serde::{Deserialize, Serialize};

/// The commands an approval lets run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "match", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandRule {
    /// Exactly this command (an empty one: the image's own).
    Exact {
        #[schema(max_items = 64, value_type = Vec<ArgvWord>)]
        argv: Vec<String>,
    },
    /// Any command that starts with these words: a named entrypoint whose
    /// parameters the owner leaves open (`/iris-worker stats`).
    Prefix {
        #[schema(min_items = 1, max_items = 64, value_type = Vec<ArgvWord>)]
        argv: Vec<String>,
    },
    /// Any command the image contains: the owner's explicit choice to
    /// trust the whole image.
    Any,
}

/// A word of an approved command, as the document states it: at most 128
/// bytes, so that 64 of them stay within the 8192 a rule may hold in all.
#[derive(utoipa::ToSchema)]
#[schema(max_length = 128)]
#[allow(dead_code)] // a schema only: words travel as strings
pub struct ArgvWord(String);

impl Default for CommandRule {
    /// Approvals written before commands were part of them approved the
    /// whole image; they keep meaning that, and say so where shown.
    fn default() -> Self {
        Self::Any
    }
}

impl CommandRule {
    /// Whether `argv` may run under this rule.
    pub fn allows(&self, argv: &[String]) -> bool {
        match self {
            Self::Exact { argv: approved } => approved == argv,
            Self::Prefix { argv: approved } => argv.starts_with(approved),
            Self::Any => true,
        }
    }

    /// Refuses a rule that lets everything run without saying so.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Prefix { argv } if argv.is_empty() => Err(
                "a command prefix needs at least one word; to approve every command in the \
                 image, say so (match = any)"
                    .into(),
            ),
            Self::Exact { argv } | Self::Prefix { argv }
                if argv.len() > 64 || argv.iter().map(String::len).sum::<usize>() > 8192 =>
            {
                Err("an approved command has at most 64 words and 8 KiB".into())
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for CommandRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact { argv } if argv.is_empty() => f.write_str("only the image's own command"),
            Self::Exact { argv } => write!(f, "only `{}`", argv.join(" ")),
            Self::Prefix { argv } => write!(f, "`{} ...`", argv.join(" ")),
            Self::Any => f.write_str("ANY command in the image (the whole image)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn a_rule_lets_run_what_it_shows_and_nothing_else() {
        let stats = CommandRule::Prefix {
            argv: words("/iris-worker stats"),
        };
        assert!(stats.allows(&words("/iris-worker stats /workspace/private/data.csv")));
        assert!(!stats.allows(&words(
            "/iris-worker copy /workspace/private/data.csv p.csv"
        )));
        assert!(!stats.allows(&words("/iris-worker")));
        assert!(!stats.allows(&words("/iris-worker statsx")));
        let exact = CommandRule::Exact {
            argv: words("/iris-worker stats a.csv"),
        };
        assert!(exact.allows(&words("/iris-worker stats a.csv")));
        assert!(!exact.allows(&words("/iris-worker stats a.csv b.csv")));
        assert!(CommandRule::Any.allows(&words("anything at all")));
        assert!(CommandRule::Prefix { argv: vec![] }.validate().is_err());
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            serde_json::json!({"match": "prefix", "argv": ["/iris-worker", "stats"]})
        );
    }
}
