//! The `latchkey` binary: parse the command line and hand over to [`latchkey_server::cli`].

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    latchkey_server::cli::run(latchkey_server::cli::Cli::parse()).await
}
