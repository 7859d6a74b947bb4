//! What a dataset's files say about it: the columns and their types, and
//! how many rows there are. Read from the CSV files at the top of the
//! dataset's directory; a synthetic sample of the same schema is written
//! from the schema alone, never from the data.

use std::path::{Path, PathBuf};

use iris_behaviours::{Column, ColumnType};

/// Rows read to guess each column's type; the rest are only counted.
const TYPED_ROWS: usize = 10_000;

/// The schema and row count of the CSV files in `dir`.
#[derive(Debug)]
pub struct Scanned {
    pub schema: Vec<Column>,
    pub rows: u64,
    pub files: Vec<PathBuf>,
}

/// Reads every `*.csv` at the top of `dir`; they must share one header.
pub fn scan(dir: &Path) -> Result<Scanned, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) && p.is_file())
        .collect();
    files.sort();
    let Some(first) = files.first() else {
        return Err(format!(
            "{} holds no .csv file: a dataset is a directory of CSV files with a header row",
            dir.display()
        ));
    };
    let mut header: Option<Vec<String>> = None;
    let mut kinds: Vec<Option<ColumnType>> = Vec::new();
    let mut rows = 0u64;
    for file in &files {
        let mut reader = csv::Reader::from_path(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| format!("{}: {e}", file.display()))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        match &header {
            None => {
                kinds = vec![None; names.len()];
                header = Some(names);
            }
            Some(expected) if *expected != names => {
                return Err(format!(
                    "{} has another header than {}: every file of a dataset has the same columns",
                    file.display(),
                    first.display()
                ))
            }
            Some(_) => {}
        }
        for record in reader.records() {
            let record = record.map_err(|e| format!("{}: {e}", file.display()))?;
            if (rows as usize) < TYPED_ROWS {
                for (kind, value) in kinds.iter_mut().zip(record.iter()) {
                    *kind = widen(*kind, value.trim());
                }
            }
            rows += 1;
        }
    }
    let schema = header
        .unwrap_or_default()
        .into_iter()
        .zip(kinds)
        .map(|(name, kind)| Column {
            name,
            kind: kind.unwrap_or(ColumnType::Text),
        })
        .collect();
    Ok(Scanned {
        schema,
        rows,
        files,
    })
}

/// The narrowest type that holds both what was seen and `value`; empty
/// values say nothing.
fn widen(seen: Option<ColumnType>, value: &str) -> Option<ColumnType> {
    if value.is_empty() {
        return seen;
    }
    let this = if value.parse::<i64>().is_ok() {
        ColumnType::Integer
    } else if value.parse::<f64>().is_ok() {
        ColumnType::Number
    } else if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") {
        ColumnType::Boolean
    } else {
        ColumnType::Text
    };
    Some(match (seen, this) {
        (None, this) => this,
        (Some(a), b) if a == b => a,
        (Some(ColumnType::Integer), ColumnType::Number)
        | (Some(ColumnType::Number), ColumnType::Integer) => ColumnType::Number,
        _ => ColumnType::Text,
    })
}

/// `rows` rounded to the nearest multiple of `bucket` (a count of 1 to
/// half a bucket says "about one bucket", never 0 for data that exists).
pub fn round_rows(rows: u64, bucket: u64) -> u64 {
    let bucket = bucket.max(1);
    let rounded = (rows + bucket / 2) / bucket * bucket;
    if rows > 0 && rounded == 0 {
        bucket
    } else {
        rounded
    }
}

/// `count` synthetic rows of `schema` as CSV: values of each column's
/// type, made up, so the sample says nothing of the data but its shape.
pub fn mock_csv(schema: &[Column], count: usize) -> String {
    let mut random = [0u8; 8];
    let mut out = schema
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for row in 0..count {
        let values: Vec<String> = schema
            .iter()
            .map(|column| {
                getrandom::fill(&mut random).expect("the OS has randomness");
                let n = u64::from_le_bytes(random);
                match column.kind {
                    ColumnType::Integer => (n % 100).to_string(),
                    ColumnType::Number => format!("{:.3}", (n % 100_000) as f64 / 1000.0),
                    ColumnType::Boolean => (n % 2 == 0).to_string(),
                    ColumnType::Text => format!("text-{row}"),
                }
            })
            .collect();
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_rows_are_found_across_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.csv"),
            "age,bmi,smoker,site\n50,22.5,true,paris\n61,,false,lyon\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.csv"),
            "age,bmi,smoker,site\n70,30,true,7\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not data").unwrap();
        let scanned = scan(dir.path()).unwrap();
        let kinds: Vec<(String, ColumnType)> = scanned
            .schema
            .iter()
            .map(|c| (c.name.clone(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("age".into(), ColumnType::Integer),
                ("bmi".into(), ColumnType::Number),
                ("smoker".into(), ColumnType::Boolean),
                ("site".into(), ColumnType::Text),
            ]
        );
        assert_eq!(scanned.rows, 3);
    }

    #[test]
    fn files_with_other_headers_or_no_csv_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan(dir.path()).unwrap_err().contains("no .csv file"));
        std::fs::write(dir.path().join("a.csv"), "x,y\n1,2\n").unwrap();
        std::fs::write(dir.path().join("b.csv"), "x,z\n1,2\n").unwrap();
        assert!(scan(dir.path()).unwrap_err().contains("another header"));
    }

    #[test]
    fn counts_are_rounded_and_mocks_keep_the_schema_only() {
        assert_eq!(round_rows(1234, 100), 1200);
        assert_eq!(round_rows(1250, 100), 1300);
        assert_eq!(round_rows(3, 100), 100);
        assert_eq!(round_rows(0, 100), 0);
        let schema = vec![
            Column {
                name: "age".into(),
                kind: ColumnType::Integer,
            },
            Column {
                name: "site".into(),
                kind: ColumnType::Text,
            },
        ];
        let mock = mock_csv(&schema, 5);
        let lines: Vec<&str> = mock.lines().collect();
        assert_eq!(lines[0], "age,site");
        assert_eq!(lines.len(), 6);
        assert!(lines[1..]
            .iter()
            .all(|l| l.split(',').next().unwrap().parse::<u64>().is_ok()));
    }
}
