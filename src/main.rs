//! The `berth` command: serve the registry, check a config or a data
//! directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use berth::config::{Config, Overrides};

/// A container image registry for bare-metal machines with NVMe disks.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the registry (with no config: 127.0.0.1:5000, ./berth-data).
    Serve {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overriding the config (repeatable).
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// Admin address for metrics and health, overriding the config.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Data directory, overriding the config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Number of executors (threads), overriding the config.
        #[arg(long)]
        executors: Option<usize>,
    },
    /// Check a config file without starting.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Verify every blob, manifest and tag of a stopped data directory.
    Check {
        /// Data directory (default: the config's, or ./berth-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Unlink what cannot be trusted instead of only reporting it.
        #[arg(long)]
        repair: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
            data_dir,
            executors,
        } => {
            let config_path = config;
            let overrides = Overrides {
                listen,
                admin_listen,
                data_dir,
                executors,
            };
            let file = match load(config_path.as_ref()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let config = match overrides.applied_to(file) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("berth: {error}");
                    return ExitCode::from(2);
                }
            };
            match berth::server::serve(config, config_path, overrides) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("berth: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("berth: {error}");
                ExitCode::from(2)
            }
        },
        Command::Check {
            data_dir,
            config,
            repair,
        } => {
            let config = match load(config.as_ref()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let dir = data_dir.unwrap_or(config.storage.data_dir);
            berth::scrub::run(&dir, repair)
        }
    }
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        Some(path) => Config::load(path).map_err(|error| {
            eprintln!("berth: {error}");
            ExitCode::from(2)
        }),
        None => Ok(Config::default()),
    }
}
