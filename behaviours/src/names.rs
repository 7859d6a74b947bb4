//! What a name or a tag may be, wherever one travels: short, printable
//! and free of separators. A leaf: records, dataset cards and task specs
//! all check their names here.

/// Longest node or network name we accept, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The longest tag.
pub const MAX_TAG_LEN: usize = 64;
/// The longest image id or tag a record may hold.
pub const MAX_FIELD: usize = 256;

/// An image reference as Iris takes one: 1 to [`MAX_FIELD`] printable ASCII
/// characters, no space (the engine's own grammar is stricter, and says so
/// itself). The REST document states the same rule as `^[!-~]{1,256}$`,
/// a pattern that means the same to every regex engine; the engine's
/// white space and ECMAScript's differ (U+0085, U+FEFF), and a fuzzer
/// found the gap. No control character or bidirectional override reaches
/// a log or a terminal through an image's name.
pub fn is_image_reference(image: &str) -> bool {
    (1..=MAX_FIELD).contains(&image.len()) && image.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

/// A name must be short, printable and free of separators, so that it can be
/// used in tables, file paths and `--on` lists without quoting.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} '{name}' is longer than {MAX_NAME_LEN} bytes"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || name.starts_with('.')
    {
        return Err(format!(
            "{what} '{name}' may hold only letters, digits, '-', '_' and '.', and may not start with '.'"
        ));
    }
    Ok(())
}

/// Tags follow the name rules, with ':' and '=' allowed as well (`site=paris`).
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Err(format!("tag '{tag}' must be 1 to {MAX_TAG_LEN} bytes"));
    }
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:=".contains(c))
    {
        return Err(format!(
            "tag '{tag}' may hold only letters, digits and '-', '_', '.', ':', '='"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule is the REST document's `^[!-~]{1,256}$`, byte for byte:
    /// no white space of any engine's, no control character, no other
    /// script.
    #[test]
    fn an_image_reference_is_printable_ascii_without_space() {
        for good in [
            "iris-worker:latest",
            "a",
            "localhost:5000/x@sha256:ab",
            &"x".repeat(256),
        ] {
            assert!(is_image_reference(good), "{good}");
        }
        for bad in [
            "",
            " ",
            "a b",
            "a\u{85}b",
            "a\u{feff}",
            "\u{202e}x",
            "é",
            "a\tb",
            &"x".repeat(257),
        ] {
            assert!(!is_image_reference(bad), "{bad:?}");
        }
    }
}
