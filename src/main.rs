use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = iris::cli::Cli::parse();
    let done = match cli.node_to_run() {
        Some(dir) => iris::daemon::run(dir).await,
        None => iris::cli::execute(cli).await,
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // An error may quote a peer's words: shown, never obeyed.
            let error = format!("{err:#}");
            eprintln!("error: {}", iris::cli::printable_lines(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
