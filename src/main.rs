//! The `switchboard` binary: run the broker, or check/print config, or make dev certificates.

mod admin;
mod autosave;
mod certs;
mod fd_budget;
mod logging;
mod passwd;
mod server;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard_config::Config;

/// jemalloc keeps the resident memory of tens of thousands of idle connections and
/// browsers small (docs/benchmarks.md) and returns freed pages promptly (below).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Memory freed after a burst (a flood's router batches) goes back to the system
/// within about a second, by a background thread, instead of staying resident until
/// later allocations happen to purge it. `_RJEM_MALLOC_CONF` still overrides it.
#[export_name = "_rjem_malloc_conf"]
/// (A thin pointer to a NUL-terminated string, as jemalloc reads `malloc_conf`.)
pub static MALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "MQTT and WebSocket rooms broker for IoT"
)]
struct Cli {
    /// TOML config file (default: built-in defaults, see `switchboard print-config`).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Run,
    /// Validate a config file; exits non-zero with the offending key on error.
    CheckConfig {
        /// The file to check (or --config).
        file: Option<PathBuf>,
    },
    /// Print the effective configuration as TOML.
    PrintConfig,
    /// Retained messages in the data dir (offline: stop switchboard first).
    #[command(subcommand)]
    Retained(RetainedCommand),
    /// The data dir itself.
    #[command(subcommand)]
    Data(DataCommand),
    /// Add or change a user in a password file (argon2; Mosquitto's file format), or
    /// remove one with -D. The password is read from a prompt, or from stdin.
    Passwd {
        /// The password file (`[auth] password_file`); made if missing.
        file: PathBuf,
        user: String,
        /// Remove the user.
        #[arg(short = 'D')]
        delete: bool,
    },
    /// Mint a token for development (HS256 with [auth] jwt_secret, or signed with
    /// --key): prints it on stdout.
    Token(token::TokenArgs),
    /// Write a development CA and a localhost server certificate.
    CertsDev {
        /// Output folder (default: certs-dev next to the config file, or ./certs-dev).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RetainedCommand {
    /// List retained messages matching a topic filter (default `#`).
    List { filter: Option<String> },
    /// Print one topic's retained payload.
    Get { topic: String },
    /// Delete every retained message matching a topic filter.
    Delete { filter: String },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Read every stored record and report what is there or what is broken.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let config = match Config::load(cli.config.as_deref()) {
                Ok(config) => config,
                Err(e) => return fail(&e.to_string()),
            };
            match server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::CheckConfig { file } => {
            let Some(file) = file.or(cli.config) else {
                return fail("check-config needs a file: switchboard check-config FILE");
            };
            match Config::load(Some(&file)) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::PrintConfig => match Config::load(cli.config.as_deref()) {
            Ok(config) => {
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        },
        Command::Retained(command) => {
            let config = match Config::load(cli.config.as_deref()) {
                Ok(config) => config,
                Err(e) => return fail(&e.to_string()),
            };
            let dir = &config.node.data_dir;
            let result = match command {
                RetainedCommand::List { filter } => {
                    admin::list(dir, filter.as_deref().unwrap_or("#"))
                }
                RetainedCommand::Get { topic } => admin::get(dir, &topic),
                RetainedCommand::Delete { filter } => admin::delete(dir, &filter),
            };
            result.map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
        }
        Command::Data(DataCommand::Check) => match Config::load(cli.config.as_deref()) {
            Ok(config) => admin::check(&config.node.data_dir)
                .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS),
            Err(e) => fail(&e.to_string()),
        },
        Command::Passwd { file, user, delete } => match passwd::run(&file, &user, delete) {
            Ok(done) => {
                println!("{done} (running brokers reload it on SIGHUP)");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Token(args) => match token::mint(cli.config.as_deref(), &args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::CertsDev { out } => {
            let out = out.unwrap_or_else(|| match Config::load(cli.config.as_deref()) {
                Ok(config) => config
                    .tls
                    .cert
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("certs-dev")),
                Err(_) => PathBuf::from("certs-dev"),
            });
            match certs::write_dev_certificates(&out) {
                Ok(written) => {
                    for path in written {
                        println!("wrote {}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("switchboard: {message}");
    ExitCode::FAILURE
}
