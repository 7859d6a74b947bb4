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
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
