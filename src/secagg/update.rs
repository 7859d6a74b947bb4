//! A site's update file, read for a secure sum, and the only things a site
//! ever says about it to the master.
//!
//! The file is written by the job's code, which the owner may not be able
//! to judge (under `release = aggregate` that is the point of the sum), so
//! its content is the master's to choose. Whatever is wrong with it, the
//! answer comes from [`UpdateError`], a closed set of kinds with nothing
//! but names the master already knows (the job, the file, the length it
//! asked for): never a value, a size, a length it did not ask for, or a
//! parser's message, which quotes what it could not read.

use std::fmt;

use iris_behaviours::Refusal;
use serde::Deserialize;

use super::FixedPoint;

/// What can be wrong with a site's update, as the master is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// The name is not one plain file name.
    NotAFileName,
    /// The task wrote no file of that name (or no such task output).
    NoSuchFile,
    /// The file cannot be read as `{"vector": [numbers], "weight": w}`
    /// (or it is larger than a site reads).
    NotAnUpdate,
    /// The weight is not a finite number of 0 or more.
    BadWeight,
    /// An entry is not a number (NaN); which one is not said.
    NotANumber,
    /// The vector's length is not the one the master asked for.
    OtherLength,
}

impl UpdateError {
    /// The refusal sent to the master: of kind `invalid`, with this text.
    pub fn refusal(self, file: &str) -> Refusal {
        Refusal::invalid(format!("{file}: {self}"))
    }
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAFileName => "must be a file name in the task's output directory",
            Self::NoSuchFile => "no such file in the task's outputs",
            Self::NotAnUpdate => "not an update file ({\"vector\": [numbers], \"weight\": w})",
            Self::BadWeight => "the weight is not a finite number of 0 or more",
            Self::NotANumber => "an entry is not a number",
            Self::OtherLength => "the vector does not have the length the sum asked for",
        })
    }
}

/// An update file's name: one plain name in the task's output directory.
pub fn check_file(file: &str) -> Result<(), UpdateError> {
    let plain = !file.is_empty()
        && file.len() <= 255
        && !file.contains('/')
        && file != "."
        && file != ".."
        && !file.contains('\0');
    plain.then_some(()).ok_or(UpdateError::NotAFileName)
}

/// An update as it is summed.
#[derive(Debug, Clone, PartialEq)]
pub struct Summand {
    /// w·vector, then w, each within the encoding's range.
    pub values: Vec<f64>,
    /// How many of them lay beyond it and were clipped: summed over the
    /// sites like the values, so the master learns only the total.
    pub clipped: u64,
}

/// An update file as read: `{"vector": [numbers], "weight": w}`, checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Update {
    vector: Vec<f64>,
    weight: f64,
}

impl Update {
    /// Reads an update with a vector of `length` entries, a finite weight
    /// of 0 or more and no NaN.
    pub fn parse(bytes: &[u8], length: usize) -> Result<Self, UpdateError> {
        let update: Self = serde_json::from_slice(bytes).map_err(|_| UpdateError::NotAnUpdate)?;
        if !update.weight.is_finite() || update.weight < 0.0 {
            return Err(UpdateError::BadWeight);
        }
        if update.vector.len() != length {
            return Err(UpdateError::OtherLength);
        }
        if update.vector.iter().any(|v| v.is_nan()) {
            return Err(UpdateError::NotANumber);
        }
        Ok(update)
    }

    /// The entries summed: w·vector, then w, each clipped to the
    /// encoding's range (a value beyond it is not refused, which would
    /// tell the master that it was) and counted.
    pub fn into_summand(self, fixed: &FixedPoint) -> Summand {
        let weight = self.weight;
        // w·v can be NaN only as 0·∞, which is 0 here: a site of weight 0
        // adds nothing.
        let mut values: Vec<f64> = self
            .vector
            .into_iter()
            .map(|v| v * weight)
            .map(|v| if v.is_nan() { 0.0 } else { v })
            .collect();
        values.push(weight);
        let clipped = values.iter().filter(|v| fixed.is_beyond(**v)).count() as u64;
        for value in &mut values {
            *value = fixed.clip(*value);
        }
        Summand { values, clipped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An update file as the entries summed, as a setup reads it.
    fn read_update(
        bytes: &[u8],
        length: usize,
        fixed: &FixedPoint,
    ) -> Result<Summand, UpdateError> {
        Update::parse(bytes, length).map(|update| update.into_summand(fixed))
    }

    /// Hostile content: the site's own bytes, as a string, as numbers that
    /// carry them, beyond the range, NaN. No byte of it reaches the text
    /// the master gets, whatever the error.
    #[test]
    fn no_byte_of_an_update_reaches_the_answer() {
        let secret = "patient 4711,1962-03-14,HIV+";
        let hostile = [
            format!(r#"{{"weight": 1, "vector": "{secret}"}}"#),
            format!(r#"{{"weight": "{secret}", "vector": [1]}}"#),
            format!(r#"{{"weight": 1, "vector": [1], "{secret}": 2}}"#),
            format!(r#"{{"weight": 1, "vector": [1, "{secret}"]}}"#),
            secret.to_string(),
            r#"{"weight": 27641994.0417, "vector": [1]}"#.into(),
            r#"{"weight": -27641994.0417, "vector": [1]}"#.into(),
            r#"{"weight": 1, "vector": [27641994.0417, 1e308, -1e308]}"#.into(),
            r#"{"weight": 1, "vector": [27641994.0417, 2]}"#.into(),
            r#"{"weight": 1, "vector": [1, 2, 3, 4, 5, 6, 7]}"#.into(),
            r#"{"weight": 1, "vector": [NaN]}"#.into(),
        ];
        let fixed = FixedPoint::default();
        for text in &hostile {
            match read_update(text.as_bytes(), 3, &fixed) {
                Ok(summand) => assert!(
                    summand.values.iter().all(|v| v.abs() <= fixed.limit),
                    "{text}"
                ),
                Err(e) => {
                    let said = e.refusal("update.json").reason;
                    for leak in [secret, "4711", "27641994", "1e308", "NaN", "invalid type"] {
                        assert!(!said.contains(leak), "{said} (from {text})");
                    }
                }
            }
        }
    }

    #[test]
    fn entries_are_weighted_and_clipped_not_refused() {
        let fixed = FixedPoint::default();
        let summand =
            read_update(br#"{"weight": 2, "vector": [1.5, 3e6, -1e300]}"#, 3, &fixed).unwrap();
        assert_eq!(summand.values, [3.0, 1e6, -1e6, 2.0]);
        assert_eq!(summand.clipped, 2);
        let err = read_update(br#"{"weight": 1, "vector": [1, 2]}"#, 3, &fixed).unwrap_err();
        assert_eq!(err, UpdateError::OtherLength);
        let err = read_update(br#"{"weight": -1, "vector": [1, 2, 3]}"#, 3, &fixed).unwrap_err();
        assert_eq!(err, UpdateError::BadWeight);
        assert!(check_file("../x").is_err() && check_file("update.json").is_ok());
    }
}
