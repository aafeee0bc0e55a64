//! Configuration. (stub)
#[derive(Debug, thiserror::Error)]
#[error("config")]
pub struct ConfigError;
