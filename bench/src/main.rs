//! `berth-bench`: measure and compare OCI registries.

use std::process::ExitCode;

use berth_bench::cli::{self, Cli, Command};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run(args) => cli::run(args),
    };
    ExitCode::from(status)
}
