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
        /// Log lines as text for people or as JSON objects (default: human on a terminal,
        /// JSON otherwise).
        #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate a config file: exit 0 if it is usable, 64 with each problem's YAML path if not.
    CheckConfig {
        /// The config file (default: `<data-dir>/config.yaml`, the one `serve` reads).
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
        data_dir: PathBuf,
    },
    /// Write a consistent backup of the data file, also while a server is serving from it.
    Backup {
        #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
        data_dir: PathBuf,
        /// The backup file (replaced atomically if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a data directory whose server is stopped.
    Restore {
        /// A file written by `portcullis backup`.
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "PORTCULLIS_DATA_DIR")]
        data_dir: PathBuf,
        /// Replace an existing data file.
        #[arg(long)]
        force: bool,
    },
    /// Check the data file read-only (redb integrity, every record, the audit hash chain):
    /// exit 0 if intact, 1 if damaged, 64 if there is no data file, 75 if a server kept
    /// changing it faster than it could be copied.
    Verify {
        #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
        data_dir: PathBuf,
    },
    /// Rebuild the audit search index from the audit log (the server must be stopped; a
    /// running server rebuilds a missing or damaged index by itself at start-up).
    Reindex {
        #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
        data_dir: PathBuf,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Logs go to stderr, filtered by `PORTCULLIS_LOG`: readable text on a terminal, one JSON
/// object per line elsewhere (journald, files, `docker logs`), unless `format` says otherwise.
fn init_logs(format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format = format.unwrap_or(if terminal {
        LogFormat::Human
    } else {
        LogFormat::Json
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour only on a terminal: escape codes in files, journald or `docker logs` break grep.
        LogFormat::Human => logs.with_ansi(terminal).init(),
        // Event fields stay under `fields`: an event field named `level` must not collide
        // with the line's own.
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
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

/// glibc serves a block of 128 KiB or more with its own `mmap` and gives it back when freed, but
/// it raises that threshold to the size of every larger block freed (up to 32 MiB) — and the
/// audit indexer frees a 4 MiB term table at every commit. From then on blocks below 4 MiB come
/// from the heaps, and glibc returns a heap's free memory only when 8 MiB of it lie at the top: a
/// commit's 1 MiB arena pages and 2.5 MB queues, and load's buffers, stayed resident (24.7 MB
/// after one audited write, 33 after fifty, against 19 with the threshold pinned). A threshold set
/// as a tunable is never raised; tunables are read when the process starts, so `serve` sets it and
/// executes itself again (same pid). One already set in `GLIBC_TUNABLES` is left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    const TUNABLE: &str = "glibc.malloc.mmap_threshold";
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains(TUNABLE) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let pinned = format!("{TUNABLE}=131072");
    let value = if current.is_empty() {
        pinned
    } else {
        format!("{current}:{pinned}")
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // Returns only if the executable could not be run again: serve as we are.
    let error = command.args(args).env("GLIBC_TUNABLES", value).exec();
    eprintln!("portcullis: could not pin glibc's mmap threshold ({error}); continuing");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if matches!(cli.command, Command::Serve { .. }) {
        pin_mmap_threshold();
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    match cli.command {
        Command::CheckConfig { config, data_dir } => check_config(
            &config.unwrap_or_else(|| data_dir.join("config.yaml")),
            &env,
        ),
        Command::Backup { data_dir, out } => backup(&data_dir, &out),
        Command::Restore {
            from,
            data_dir,
            force,
        } => restore(&from, &data_dir, force),
        Command::Verify { data_dir }
        | Command::Audit {
            command: AuditCommand::Verify { data_dir },
        } => verify(&data_dir),
        Command::Reindex { data_dir }
        | Command::Audit {
            command: AuditCommand::Reindex { data_dir },
        } => reindex(&data_dir),
        Command::Serve {
            config,
            data_dir,
            listen,
            ssl_certfile,
            ssl_keyfile,
            ready_file,
            log_format,
        } => {
            init_logs(log_format);
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

#[derive(Subcommand)]
enum AuditCommand {
    /// The same checks as `portcullis verify`, the audit hash chain among them.
    Verify {
        #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
        data_dir: PathBuf,
    },
    /// The same as `portcullis reindex`.
    Reindex {
        #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
        data_dir: PathBuf,
    },
}

fn reindex(data_dir: &std::path::Path) -> ExitCode {
    let path = data_dir.join(portcullis::store::backup::DATA_FILE);
    if !std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        eprintln!("portcullis reindex: no data file at {}", path.display());
        return ExitCode::from(64);
    }
    let started = std::time::Instant::now();
    let store = match portcullis::store::Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcullis reindex: {e} (is a server running on this data directory?)");
            return ExitCode::FAILURE;
        }
    };
    match portcullis::audit_index::reindex(data_dir, &store) {
        Ok(n) => {
            println!(
                "indexed {n} audit entries into {} in {:.1} s",
                portcullis::audit_index::index_dir(data_dir).display(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis reindex: {e}");
            ExitCode::FAILURE
        }
    }
}

fn backup(data_dir: &std::path::Path, out: &std::path::Path) -> ExitCode {
    match portcullis::store::backup::backup(data_dir, out) {
        Ok(r) => {
            println!("{r}");
            if !r.contents.ok() {
                eprintln!("warning: the data file was backed up as it is, and it is damaged:");
                eprintln!("{}", r.contents);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis backup: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

fn restore(from: &std::path::Path, data_dir: &std::path::Path, force: bool) -> ExitCode {
    match portcullis::store::backup::restore(from, data_dir, force) {
        Ok(r) => {
            println!("{r}");
            if !r.contents.ok() {
                eprintln!("warning: the restored data is damaged:");
                eprintln!("{}", r.contents);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis restore: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

fn verify(data_dir: &std::path::Path) -> ExitCode {
    let path = data_dir.join(portcullis::store::backup::DATA_FILE);
    match portcullis::store::verify::verify_file(&path) {
        Ok(report) => {
            println!("{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("portcullis verify: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}
