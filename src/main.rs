//! The `portcullis` command: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use portcullis::config::{Config, TlsFiles};
use portcullis::server::{self, ServeOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for a config that does not validate (EX_DATAERR-like, as `check-config` documents).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A governed, OpenAI/Anthropic-compatible LLM gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// LiteLLM-style config.yaml (default: <data-dir>/config.yaml, generated on first start).
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Where state is kept.
        #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
        data_dir: PathBuf,
        /// Address to listen on (port 0 picks a free one; see --ready-file).
        #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:4000")]
        listen: SocketAddr,
        /// PEM certificate chain: serve HTTPS.
        #[arg(long, env = "PORTCULLIS_SSL_CERTFILE", requires = "ssl_keyfile")]
        ssl_certfile: Option<PathBuf>,
        /// PEM private key for --ssl-certfile.
        #[arg(long, env = "PORTCULLIS_SSL_KEYFILE", requires = "ssl_certfile")]
        ssl_keyfile: Option<PathBuf>,
        /// Write {"addr", "pid", "tls"} here once accepting connections.
        #[arg(long, env = "PORTCULLIS_READY_FILE")]
        ready_file: Option<PathBuf>,
    },
    /// Validate a config file: exit 0 if it is usable, 64 with each problem's YAML path if not.
    CheckConfig {
        #[arg(
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "./portcullis-data/config.yaml"
        )]
        config: PathBuf,
    },
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: escape codes in files, journald or `docker logs` break grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn check_config(path: &PathBuf, env: &HashMap<String, String>) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match Config::from_yaml(&text, env) {
        Ok((config, warnings)) => {
            for w in &warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: ok ({} deployments)",
                path.display(),
                config.deployments.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                println!("error: {p}");
            }
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config, &env),
        Command::Serve {
            config,
            data_dir,
            listen,
            ssl_certfile,
            ssl_keyfile,
            ready_file,
        } => {
            init_logs();
            let tls = match (ssl_certfile, ssl_keyfile) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            };
            let opts = ServeOptions {
                config,
                data_dir,
                listen,
                tls,
                ready_file,
                env,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(server::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("portcullis: {e}");
                    match e {
                        server::ServerError::InvalidConfig(_) => ExitCode::from(EXIT_BAD_CONFIG),
                        _ => ExitCode::FAILURE,
                    }
                }
            }
        }
    }
}
