//! `iris-worker`: the small, statically linked program that Iris runs in
//! containers for its tests and demos. It reads a CSV of numbers from the
//! node's private data and writes JSON results to `/workspace/out` (or
//! `$IRIS_OUT`), and prints the same JSON to stdout.
//!
//! ```text
//! iris-worker stats CSV                      row count, column sums and means
//! iris-worker gradient CSV --target COL (--weights W1,..,Wn,B | --model FILE) [--lr R] [--steps K] [--delta]
//!                                            K gradient steps of a linear regression
//! iris-worker average FILE...                row-weighted average of gradient outputs
//! iris-worker fit CSV... --target COL        least-squares fit on all the CSVs at once
//! iris-worker sleep SECS                     idles (inf: for ever, a session's command)
//! ```
//!
//! With `IRIS_ROUND_FILE` set (a warm worker's container), it serves the
//! rounds the node hands over instead, one after another.
//!
//! Built with the feature `probes` (the image `iris-probe`, for tests
//! only), it also runs the probes of `probes.rs`: commands that read, copy
//! or leak private data on purpose, so that tests can attack with them.
//! The image owners are asked to approve, `iris-worker`, has none of them.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use serde_json::{json, Value};

mod probes;

fn main() -> ExitCode {
    if let Ok(round_file) = std::env::var("IRIS_ROUND_FILE") {
        return serve_rounds(Path::new(&round_file));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    run_once(&args)
}

fn run_once(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("iris-worker: {message}");
            ExitCode::from(2)
        }
    }
}

/// Where this round's results go, when the worker serves rounds.
static ROUND_OUT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// A warm worker (docs/warm-workers.md): runs each round the node hands
/// over in `round_file` (`{"job", "argv", "out"}`), writes its results to
/// the round's `out`, then its exit code to `<out>.done`, and waits for
/// the next round. Never returns; the node stops the container.
fn serve_rounds(round_file: &Path) -> ExitCode {
    let mut last = String::new();
    loop {
        let round = fs::read_to_string(round_file)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        let job = round.as_ref().and_then(|r| r["job"].as_str()).unwrap_or("");
        if job.is_empty() || job == last {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        let round = round.clone().expect("a round");
        last = job.to_string();
        let out = PathBuf::from(round["out"].as_str().unwrap_or("/workspace/out"));
        let argv: Vec<String> = round["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        *ROUND_OUT.lock().expect("lock") = Some(out.clone());
        let code = if run_once(argv.get(1..).unwrap_or_default()) == ExitCode::SUCCESS {
            0
        } else {
            1
        };
        let done = out.with_extension("done");
        if let Err(e) = fs::write(&done, format!("{code}\n")) {
            eprintln!("iris-worker: cannot end round {last}: {e}");
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let (command, rest) = args.split_first().ok_or_else(usage)?;
    match command.as_str() {
        "stats" => {
            let [csv] = rest else { return Err(usage()) };
            emit("stats.json", stats(&Table::read(Path::new(csv))?))?;
        }
        "gradient" => emit("update.json", gradient(rest)?)?,
        "average" => emit("model.json", average(rest)?)?,
        "fit" => emit("fit.json", fit(rest)?)?,
        "sleep" => {
            let secs: f64 = rest
                .first()
                .and_then(|s| s.parse().ok())
                .filter(|s: &f64| *s >= 0.0)
                .ok_or_else(usage)?;
            // `sleep inf` idles forever: the default command of a session.
            if secs.is_finite() {
                std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            } else {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
        }
        _ => return probes::run(command, rest),
    }
    Ok(ExitCode::SUCCESS)
}

fn usage() -> String {
    let mut usage = "usage: iris-worker stats CSV | gradient CSV --target COL (--weights W1,..,Wn,B | --model FILE) [--lr R] [--steps K] [--delta] \
     | average FILE... | fit CSV... --target COL | sleep SECS"
        .to_string();
    usage += probes::USAGE;
    usage
}

/// Prints `value` and writes it to the output directory as `name`.
fn emit(name: &str, value: Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&value).expect("JSON values serialize");
    println!("{text}");
    let dir = output_dir();
    if dir.is_dir() {
        let path = dir.join(name);
        fs::write(&path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Where results go: the round's directory for a warm worker, else
/// `/workspace/out`, or `$IRIS_OUT`.
fn output_dir() -> PathBuf {
    if let Some(out) = ROUND_OUT.lock().expect("lock").clone() {
        return out;
    }
    PathBuf::from(std::env::var("IRIS_OUT").unwrap_or_else(|_| "/workspace/out".into()))
}

/// A CSV of numbers with a header row.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Table {
    fn read(path: &Path) -> Result<Self, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines
            .next()
            .ok_or_else(|| format!("{} is empty", path.display()))?;
        let columns: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let row: Vec<f64> = line
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 2))?;
            if row.len() != columns.len() {
                return Err(format!(
                    "{} line {}: {} values for {} columns",
                    path.display(),
                    i + 2,
                    row.len(),
                    columns.len()
                ));
            }
            rows.push(row);
        }
        Ok(Self { columns, rows })
    }
}

fn stats(table: &Table) -> Value {
    let n = table.rows.len();
    let mut columns = BTreeMap::new();
    for (c, name) in table.columns.iter().enumerate() {
        let sum: f64 = table.rows.iter().map(|r| r[c]).sum();
        let mean = if n > 0 { sum / n as f64 } else { 0.0 };
        columns.insert(name.clone(), json!({ "sum": sum, "mean": mean }));
    }
    json!({ "rows": n, "columns": columns })
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The weights in a model file as a training driver delivers it:
/// `{"model": [W1, .., Wn, B], ...}`.
fn model_from(file: &str) -> Result<Vec<f64>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    value["model"]
        .as_array()
        .ok_or(format!("{file} holds no \"model\" list"))?
        .iter()
        .map(|w| {
            w.as_f64()
                .ok_or(format!("{file}: the model holds a non-number"))
        })
        .collect()
}

/// With --delta, the vector is scaled up by this and the weight is its
/// inverse: their product, what a secure sum adds, is the move itself.
const DELTA_SCALE: f64 = 1000.0;

/// Linear regression y = w.x + b by full-batch gradient descent on the mean
/// squared error. Reports the loss before the first step.
fn gradient(args: &[String]) -> Result<Value, String> {
    let csv = args.first().ok_or_else(usage)?;
    let table = Table::read(Path::new(csv))?;
    let target = flag(args, "--target").ok_or("--target COL is required")?;
    let y_col = table
        .columns
        .iter()
        .position(|c| c == target)
        .ok_or_else(|| format!("no column '{target}' in {csv}"))?;
    let features: Vec<usize> = (0..table.columns.len()).filter(|&c| c != y_col).collect();
    let mut weights = match (flag(args, "--weights"), flag(args, "--model")) {
        (Some(list), None) => list
            .split(',')
            .map(|w| {
                w.trim()
                    .parse::<f64>()
                    .map_err(|e| format!("bad weight '{w}': {e}"))
            })
            .collect::<Result<Vec<f64>, _>>()?,
        (None, Some(file)) => model_from(file)?,
        _ => return Err("one of --weights W1,..,Wn,B or --model FILE is required".into()),
    };
    if weights.len() != features.len() + 1 {
        return Err(format!(
            "{} weights given, {} needed ({} features and a bias)",
            weights.len(),
            features.len() + 1,
            features.len()
        ));
    }
    let lr: f64 = flag(args, "--lr")
        .unwrap_or("0.1")
        .parse()
        .map_err(|e| format!("bad --lr: {e}"))?;
    let steps: usize = flag(args, "--steps")
        .unwrap_or("1")
        .parse()
        .map_err(|e| format!("bad --steps: {e}"))?;
    let n = table.rows.len();
    if n == 0 {
        return Err(format!("{csv} has no rows"));
    }
    let predict = |w: &[f64], row: &[f64]| -> f64 {
        features
            .iter()
            .zip(w)
            .map(|(&c, wi)| wi * row[c])
            .sum::<f64>()
            + w[features.len()]
    };
    let loss = |w: &[f64]| {
        table
            .rows
            .iter()
            .map(|r| (predict(w, r) - r[y_col]).powi(2))
            .sum::<f64>()
            / n as f64
    };
    let initial_loss = loss(&weights);
    let start = weights.clone();
    for _ in 0..steps {
        let mut grad = vec![0.0; weights.len()];
        for row in &table.rows {
            let err = predict(&weights, row) - row[y_col];
            for (i, &c) in features.iter().enumerate() {
                grad[i] += 2.0 * err * row[c] / n as f64;
            }
            grad[features.len()] += 2.0 * err / n as f64;
        }
        for (w, g) in weights.iter_mut().zip(&grad) {
            *w -= lr * g;
        }
    }
    let feature_names: Vec<&str> = features
        .iter()
        .map(|&c| table.columns[c].as_str())
        .collect();
    // `vector` and `weight` make it an input of a secure sum: the weights
    // and the loss, each weighted by the rows. With --delta, how far the
    // steps moved the weights, and a loss of 0: what a sum with
    // differential privacy clips to a small norm. Its weight is a token
    // 1/1000 (the vector is scaled up to match), so that the clip bounds
    // the move and not the weight, which the node clips and noises too.
    let delta = args.iter().any(|a| a == "--delta");
    let mut vector: Vec<f64> = if delta {
        weights
            .iter()
            .zip(&start)
            .map(|(w, s)| (w - s) * DELTA_SCALE)
            .collect()
    } else {
        weights.clone()
    };
    vector.push(if delta { 0.0 } else { initial_loss });
    Ok(json!({
        "rows": n,
        "features": feature_names,
        "weights": weights,
        "loss": initial_loss,
        "loss_after": loss(&weights),
        "vector": vector,
        "weight": if delta { json!(1.0 / DELTA_SCALE) } else { json!(n) },
    }))
}

/// Ordinary least squares on the rows of every CSV together, solved
/// exactly from the normal equations. The demo uses it only to check the
/// federated model against the one a central fit would give.
fn fit(args: &[String]) -> Result<Value, String> {
    let target = flag(args, "--target").ok_or("--target COL is required")?;
    let files: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--target"))
        .map(|(_, a)| a)
        .collect();
    if files.is_empty() {
        return Err(usage());
    }
    let mut columns: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for file in files {
        let table = Table::read(Path::new(file))?;
        match &columns {
            Some(c) if *c != table.columns => {
                return Err(format!("{file}: columns differ from the first file's"))
            }
            _ => columns = Some(table.columns.clone()),
        }
        rows.extend(table.rows);
    }
    let columns = columns.unwrap_or_default();
    let y_col = columns
        .iter()
        .position(|c| c == target)
        .ok_or_else(|| format!("no column '{target}'"))?;
    let features: Vec<usize> = (0..columns.len()).filter(|&c| c != y_col).collect();
    // With a constant 1 for the bias: (X^T X) w = X^T y.
    let k = features.len() + 1;
    let mut a = vec![vec![0.0; k + 1]; k];
    for row in &rows {
        let x: Vec<f64> = features.iter().map(|&c| row[c]).chain([1.0]).collect();
        for i in 0..k {
            for j in 0..k {
                a[i][j] += x[i] * x[j];
            }
            a[i][k] += x[i] * row[y_col];
        }
    }
    let weights = solve(a).ok_or("the data do not determine a unique fit")?;
    let n = rows.len() as f64;
    let loss = rows
        .iter()
        .map(|row| {
            let prediction: f64 = features
                .iter()
                .zip(&weights)
                .map(|(&c, w)| w * row[c])
                .sum::<f64>()
                + weights[k - 1];
            (prediction - row[y_col]).powi(2)
        })
        .sum::<f64>()
        / n;
    Ok(json!({ "rows": rows.len(), "weights": weights, "loss": loss }))
}

/// Gauss-Jordan elimination with partial pivoting on an augmented matrix.
fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let k = a.len();
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let factor = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= factor * p;
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

/// The row-weighted mean of several `gradient` outputs: one round of
/// federated averaging.
fn average(files: &[String]) -> Result<Value, String> {
    if files.is_empty() {
        return Err(usage());
    }
    let mut total_rows = 0.0;
    let mut sum: Vec<f64> = Vec::new();
    let mut loss = 0.0;
    for file in files {
        let text = fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let update: Value = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        let rows = update["rows"]
            .as_f64()
            .ok_or_else(|| format!("{file}: no rows"))?;
        let weights: Vec<f64> = update["weights"]
            .as_array()
            .ok_or_else(|| format!("{file}: no weights"))?
            .iter()
            .map(|w| {
                w.as_f64()
                    .ok_or_else(|| format!("{file}: weight is not a number"))
            })
            .collect::<Result<_, _>>()?;
        if sum.is_empty() {
            sum = vec![0.0; weights.len()];
        } else if sum.len() != weights.len() {
            return Err(format!(
                "{file}: {} weights, others have {}",
                weights.len(),
                sum.len()
            ));
        }
        for (s, w) in sum.iter_mut().zip(&weights) {
            *s += w * rows;
        }
        loss += update["loss"].as_f64().unwrap_or(0.0) * rows;
        total_rows += rows;
    }
    let weights: Vec<f64> = sum.iter().map(|s| s / total_rows).collect();
    Ok(
        json!({ "rows": total_rows, "weights": weights, "loss": loss / total_rows, "updates": files.len() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        // y = 2x + 1
        Table {
            columns: vec!["x".into(), "y".into()],
            rows: (0..10)
                .map(|i| vec![i as f64, 2.0 * i as f64 + 1.0])
                .collect(),
        }
    }

    #[test]
    fn stats_sums_and_means() {
        let s = stats(&table());
        assert_eq!(s["rows"], 10);
        assert_eq!(s["columns"]["x"]["sum"], 45.0);
        assert_eq!(s["columns"]["y"]["mean"], 10.0);
    }

    #[test]
    fn fit_recovers_an_exact_plane_from_several_files() {
        let dir = std::env::temp_dir().join(format!("iris-worker-fit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // y = 3a - 2b + 1, split over two files.
        let mut paths = Vec::new();
        for part in 0..2 {
            let mut text = "a,b,y\n".to_string();
            for i in 0..20 {
                let (a, b) = (i as f64 * 0.1 + part as f64, (i * i % 7) as f64);
                text += &format!("{a},{b},{}\n", 3.0 * a - 2.0 * b + 1.0);
            }
            let path = dir.join(format!("{part}.csv"));
            fs::write(&path, text).unwrap();
            paths.push(path.display().to_string());
        }
        let args: Vec<String> = paths
            .into_iter()
            .chain(["--target".into(), "y".into()])
            .collect();
        let out = fit(&args).unwrap();
        assert_eq!(out["rows"], 40);
        let w: Vec<f64> = out["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .collect();
        for (got, want) in w.iter().zip([3.0, -2.0, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{w:?}");
        }
        assert!(out["loss"].as_f64().unwrap() < 1e-18);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn average_weights_each_update_by_its_rows() {
        let dir = std::env::temp_dir().join(format!("iris-worker-avg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for (node, rows, w) in [("a", 1, 0.0), ("b", 3, 4.0)] {
            let update = json!({ "rows": rows, "weights": [w, 1.0], "loss": w });
            let path = dir.join(format!("{node}.json"));
            fs::write(&path, update.to_string()).unwrap();
            files.push(path.display().to_string());
        }
        let model = average(&files).unwrap();
        assert_eq!(model["weights"], json!([3.0, 1.0]));
        assert_eq!(model["loss"], json!(3.0));
        assert_eq!(model["updates"], 2);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn gradient_descent_approaches_the_true_line() {
        let dir = std::env::temp_dir().join(format!("iris-worker-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("d.csv");
        let mut text = "x,y\n".to_string();
        for row in table().rows {
            text += &format!("{},{}\n", row[0] / 10.0, row[1]);
        }
        fs::write(&csv, text).unwrap();
        let args: Vec<String> = [
            csv.to_str().unwrap(),
            "--target",
            "y",
            "--weights",
            "0,0",
            "--lr",
            "0.5",
            "--steps",
            "2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = gradient(&args).unwrap();
        let w = out["weights"].as_array().unwrap();
        assert!((w[0].as_f64().unwrap() - 20.0).abs() < 1e-3, "{out}");
        assert!((w[1].as_f64().unwrap() - 1.0).abs() < 1e-3, "{out}");
        assert!(out["loss_after"].as_f64().unwrap() < out["loss"].as_f64().unwrap());
        fs::remove_dir_all(dir).unwrap();
    }
}
