//! What a name or a tag may be, wherever one travels: short, printable
//! and free of separators. A leaf: records, dataset cards and task specs
//! all check their names here.

/// Longest node or network name we accept, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The longest tag.
pub const MAX_TAG_LEN: usize = 64;
/// The longest image id or tag a record may hold.
pub const MAX_FIELD: usize = 256;

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
