//! Start-up: the data directory, the config (generated on first start when none is given), and
//! the master key (generated into `<data-dir>/master.key`, mode 0600, when none is configured).

use super::ServerError;
use crate::config::{Config, default_config_yaml};
use crate::types::Secret;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn ensure_data_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ServerError::DataDir(dir.to_path_buf(), e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Writes `contents` to a new file readable only by its owner; never replaces an existing file.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Which config file to use: the one given, else `<data-dir>/config.yaml`, written from the
/// embedded default on first start.
pub fn config_path(given: Option<&Path>, data_dir: &Path) -> Result<PathBuf, ServerError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let path = data_dir.join("config.yaml");
    if !path.exists() {
        match write_private(&path, default_config_yaml()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "wrote the default config (mock provider)")
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ServerError::Config(format!(
                    "cannot write {}: {e}",
                    path.display()
                )));
            }
        }
    }
    Ok(path)
}

pub fn load_config(path: &Path, env: &HashMap<String, String>) -> Result<Config, ServerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
    match Config::from_yaml(&text, env) {
        Ok((config, warnings)) => {
            for w in warnings {
                tracing::warn!(path = %w.path, "config: {}", w.message);
            }
            Ok(config)
        }
        Err(problems) => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            Err(ServerError::InvalidConfig(format!(
                "{} is invalid:\n  {}",
                path.display(),
                list.join("\n  ")
            )))
        }
    }
}

/// The master key, from (in order) the environment, the config, or `<data-dir>/master.key` —
/// generated there on first start.
pub fn master_key(
    config: &Config,
    env: &HashMap<String, String>,
    data_dir: &Path,
) -> Result<Secret<String>, ServerError> {
    for name in ["PORTCULLIS_MASTER_KEY", "LITELLM_MASTER_KEY"] {
        if let Some(k) = env.get(name).filter(|k| !k.trim().is_empty()) {
            return Ok(Secret::new(k.trim().to_string()));
        }
    }
    if let Some(k) = &config.master_key {
        return Ok(k.clone());
    }
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok(Secret::new(k.trim().to_string())),
        Ok(_) => return Err(ServerError::Config(format!("{} is empty", path.display()))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ServerError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
        Err(_) => {}
    }
    let key = crate::auth::generate_key()
        .map_err(|e| ServerError::Config(format!("no randomness: {e}")))?;
    write_private(&path, &format!("{key}\n"))
        .map_err(|e| ServerError::Config(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a master key (read it from this file)");
    Ok(Secret::new(key))
}
