//! What a dataset's files say about it: the columns and their types, and
//! how many rows there are. Read from the CSV files at the top of the
//! dataset's directory; a synthetic sample of the same schema is written
//! from the schema alone, never from the data.

use std::{
    cell::Cell,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    rc::Rc,
};

use iris_behaviours::{datasets::MAX_COLUMNS, Column, ColumnType};

/// Rows read to guess each column's type; the rest are only counted.
const TYPED_ROWS: usize = 10_000;

/// The longest row (the header included) a scan reads: a scan holds one
/// row at a time, and a file without line breaks must not be read whole
/// into memory.
pub const MAX_ROW_BYTES: u64 = 1 << 20;

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
        let opened = std::fs::File::open(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let since_last_row = Rc::new(Cell::new(0));
        let mut reader = csv::Reader::from_reader(RowBound {
            inner: opened,
            since_last_row: since_last_row.clone(),
        });
        let too_long = |rows: u64| {
            format!(
                "{}: row {} is over {} KiB (is it a CSV file?)",
                file.display(),
                rows + 1,
                MAX_ROW_BYTES / 1024
            )
        };
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| match since_last_row.get() > MAX_ROW_BYTES {
                true => format!(
                    "{}: the header is over {} KiB",
                    file.display(),
                    MAX_ROW_BYTES / 1024
                ),
                false => format!("{}: {e}", file.display()),
            })?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if names.len() > MAX_COLUMNS {
            return Err(format!(
                "{} has {} columns; a dataset has at most {MAX_COLUMNS}",
                file.display(),
                names.len()
            ));
        }
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
        let mut record = csv::StringRecord::new();
        loop {
            since_last_row.set(0);
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) if since_last_row.get() > MAX_ROW_BYTES => return Err(too_long(rows)),
                Err(e) => return Err(format!("{}: {e}", file.display())),
            }
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

/// A file read for a scan, which fails once more than [`MAX_ROW_BYTES`]
/// were read since the scan last reset `since_last_row` (before each row):
/// the CSV reader holds a whole row in memory, however long.
struct RowBound {
    inner: std::fs::File,
    since_last_row: Rc<Cell<u64>>,
}

impl Read for RowBound {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The reader reads ahead by its buffer (8 KiB): the bound is a
        // row plus that.
        if self.since_last_row.get() > MAX_ROW_BYTES {
            return Err(io::Error::other("a row is too long"));
        }
        let n = self.inner.read(buf)?;
        self.since_last_row
            .set(self.since_last_row.get() + n as u64);
        Ok(n)
    }
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

/// Writes `count` synthetic rows of `schema` as CSV to `out`, a row at a
/// time: values of each column's type, made up, so the sample says nothing
/// of the data but its shape.
pub fn write_mock(out: &mut impl Write, schema: &[Column], count: usize) -> io::Result<()> {
    let mut random = [0u8; 8];
    let header = schema
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    writeln!(out, "{header}")?;
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
        writeln!(out, "{}", values.join(","))?;
    }
    Ok(())
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
    fn a_row_too_long_or_too_wide_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        // Four MiB without a line break, after a fine header and row.
        let mut endless = b"x,y\n1,2\n".to_vec();
        endless.resize(endless.len() + (4 << 20), b'7');
        std::fs::write(dir.path().join("a.csv"), &endless).unwrap();
        let error = scan(dir.path()).unwrap_err();
        assert!(error.contains("row 2 is over 1024 KiB"), "{error}");

        std::fs::write(dir.path().join("a.csv"), vec![b'h'; 3 << 20]).unwrap();
        let error = scan(dir.path()).unwrap_err();
        assert!(error.contains("the header is over 1024 KiB"), "{error}");

        let wide: Vec<String> = (0..=MAX_COLUMNS).map(|i| format!("c{i}")).collect();
        std::fs::write(dir.path().join("a.csv"), wide.join(",") + "\n").unwrap();
        let error = scan(dir.path()).unwrap_err();
        assert!(
            error.contains("has 65 columns; a dataset has at most 64"),
            "{error}"
        );
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
        let mut mock = Vec::new();
        write_mock(&mut mock, &schema, 5).unwrap();
        let mock = String::from_utf8(mock).unwrap();
        let lines: Vec<&str> = mock.lines().collect();
        assert_eq!(lines[0], "age,site");
        assert_eq!(lines.len(), 6);
        assert!(lines[1..]
            .iter()
            .all(|l| l.split(',').next().unwrap().parse::<u64>().is_ok()));
    }
}
