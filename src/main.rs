use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = iris::cli::Cli::parse();
    match iris::cli::execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
