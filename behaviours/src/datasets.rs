//! Dataset cards: what a node says about the data it holds, never the data.
//! A site's owner declares a dataset (a directory of its private area); its
//! card travels in the node's map record, so every member can find which
//! nodes hold data of a kind, and jobs can target them (`dataset:NAME`).

use serde::{Deserialize, Serialize};

use crate::names::{validate_name, validate_tag, MAX_FIELD, MAX_NAME_LEN};

/// Most datasets one record may list.
pub const MAX_DATASETS: usize = 8;
/// Most columns one schema may have.
pub const MAX_COLUMNS: usize = 64;
/// Most tags one card may have.
pub const MAX_CARD_TAGS: usize = 8;
/// The longest description.
pub const MAX_DESCRIPTION: usize = 512;

/// A dataset as its owner describes it to the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetCard {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The columns, as found in the data (and as its owner corrected them).
    #[serde(default)]
    pub schema: Vec<Column>,
    #[serde(default)]
    pub licence: String,
    #[serde(default)]
    pub contact: String,
    /// The row count, rounded to the nearest multiple of `rows_bucket`
    /// (the owner chooses how much the count may say).
    pub rows: u64,
    pub rows_bucket: u64,
    /// A sample of synthetic rows with the same schema, which the owner
    /// agrees to share: a path in the node's public area.
    #[serde(default)]
    pub mock: Option<String>,
}

/// One column of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Integer,
    Number,
    Boolean,
    Text,
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ColumnType::Integer => "integer",
            ColumnType::Number => "number",
            ColumnType::Boolean => "boolean",
            ColumnType::Text => "text",
        })
    }
}

impl DatasetCard {
    /// Checks what a peer or an owner's edit could get wrong; every field is
    /// bounded, so cards cannot grow a member's map.
    pub fn validate(&self) -> Result<(), String> {
        validate_name("dataset name", &self.name)?;
        let what = format!("dataset '{}'", self.name);
        if self.description.len() > MAX_DESCRIPTION {
            return Err(format!("{what}: description over {MAX_DESCRIPTION} bytes"));
        }
        if self.tags.len() > MAX_CARD_TAGS {
            return Err(format!("{what}: more than {MAX_CARD_TAGS} tags"));
        }
        for tag in &self.tags {
            validate_tag(tag)?;
        }
        if self.schema.len() > MAX_COLUMNS {
            return Err(format!("{what}: more than {MAX_COLUMNS} columns"));
        }
        if let Some(column) = self
            .schema
            .iter()
            .find(|c| c.name.is_empty() || c.name.len() > MAX_NAME_LEN)
        {
            return Err(format!(
                "{what}: column name '{}' must be 1 to {MAX_NAME_LEN} bytes",
                column.name
            ));
        }
        if self.licence.len() > MAX_FIELD || self.contact.len() > MAX_FIELD {
            return Err(format!("{what}: licence or contact over {MAX_FIELD} bytes"));
        }
        if self.rows_bucket == 0 {
            return Err(format!("{what}: the rows bucket must be 1 or more"));
        }
        if !self.rows.is_multiple_of(self.rows_bucket) {
            return Err(format!("{what}: rows is not rounded to its bucket"));
        }
        if let Some(mock) = &self.mock {
            if mock.len() > MAX_FIELD || !mock.starts_with("public/") || mock.contains("..") {
                return Err(format!("{what}: its mock sample must be a path in public/"));
            }
        }
        Ok(())
    }
}

/// Checks a record's list of cards.
pub fn validate_cards(cards: &[DatasetCard]) -> Result<(), String> {
    if cards.len() > MAX_DATASETS {
        return Err(format!(
            "record lists {} datasets, at most {MAX_DATASETS}",
            cards.len()
        ));
    }
    for (i, card) in cards.iter().enumerate() {
        card.validate()?;
        if cards[..i].iter().any(|c| c.name == card.name) {
            return Err(format!("record lists dataset '{}' twice", card.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> DatasetCard {
        DatasetCard {
            name: "heart".into(),
            description: "cardiology".into(),
            tags: vec!["cardio".into()],
            schema: vec![Column {
                name: "age".into(),
                kind: ColumnType::Integer,
            }],
            licence: "CC-BY-4.0".into(),
            contact: "dpo@example.org".into(),
            rows: 300,
            rows_bucket: 100,
            mock: Some("public/datasets/heart/mock.csv".into()),
        }
    }

    #[test]
    fn a_good_card_passes_and_bad_ones_say_why() {
        assert_eq!(validate_cards(&[card()]), Ok(()));
        let mut unrounded = card();
        unrounded.rows = 301;
        assert!(unrounded.validate().unwrap_err().contains("rounded"));
        let mut private_mock = card();
        private_mock.mock = Some("private/heart/data.csv".into());
        assert!(private_mock.validate().unwrap_err().contains("public/"));
        let mut wide = card();
        wide.schema = vec![wide.schema[0].clone(); MAX_COLUMNS + 1];
        assert!(wide.validate().is_err());
        assert!(validate_cards(&[card(), card()])
            .unwrap_err()
            .contains("twice"));
    }
}
