//! Any text as config.toml and as pyproject.toml: parsing returns a value or an error that
//! names a line of the text, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pookie_ns::config::{parse_toml, ConfigError, ConfigFile};
use pookie_ns::project::Project;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1) + 1;
    let path = std::path::Path::new("config.toml");
    if let Err(ConfigError::Parse { line, .. }) = parse_toml::<ConfigFile>(path, text) {
        assert!(line >= 1 && line <= lines, "line {line} of {lines}");
    }
    let _ = Project::parse(std::path::Path::new("pyproject.toml"), text);
});
