//! QEMU user-mode emulation through binfmt_misc. (Being written by a helper.)

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error("binfmt: {0}")]
    Todo(String),
}

impl BinfmtError {
    pub fn is_input_error(&self) -> bool {
        false
    }
}
