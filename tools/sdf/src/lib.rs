//! Reads tzmk's system.xml (Microkit 2.3.0) and platform description, and audits their isolation.
//!
//! - [`parse::parse`] rejects what the microkit tool rejects, with `file:line:col: message` errors.
//! - [`platform::Platform`] is the world partition system.xml cannot express.
//! - [`audit::audit`] checks tzmk's isolation rules; [`report`] prints each PD's authority.

pub mod audit;
pub mod dtb;
pub mod model;
pub mod parse;
pub mod partition;
pub mod platform;
pub mod ports;
pub mod qemu;
pub mod realtime;
pub mod report;

pub use audit::{audit, audit_with, Violation};
pub use model::{Pos, System};
pub use platform::Platform;

use std::fmt;
use std::path::Path;

/// An error in an input file, printed as `file:line:col: message` (or `file: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), pos: Some(pos), message: message.into() }
    }

    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), pos: None, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => write!(f, "{}:{}:{}: {}", self.file, pos.line, pos.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Why a system description could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read at all, or is not XML: exit code 2.
    Unreadable(Diagnostic),
    /// The file is XML but not a valid Microkit system: exit code 1.
    Invalid(Diagnostic),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unreadable(d) | LoadError::Invalid(d) => d.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads and parses a system description from a file.
pub fn load_system(path: &Path) -> Result<System, LoadError> {
    let name = path.display().to_string();
    let text =
        std::fs::read(path).map_err(|e| LoadError::Unreadable(Diagnostic::file(&name, format!("cannot read: {e}"))))?;
    let text = String::from_utf8(text)
        .map_err(|e| LoadError::Unreadable(Diagnostic::file(&name, format!("not UTF-8 text: {e}"))))?;
    parse_system(&name, &text)
}

/// Parses a system description; `name` is only used in messages.
pub fn parse_system(name: &str, text: &str) -> Result<System, LoadError> {
    parse::parse(name, text).map_err(|d| {
        if d.message.starts_with("not well-formed XML") {
            LoadError::Unreadable(d)
        } else {
            LoadError::Invalid(d)
        }
    })
}

/// Reads a platform description from a file, or the built-in QEMU virt one.
pub fn load_platform(path: Option<&Path>) -> Result<Platform, Diagnostic> {
    match path {
        None => Platform::parse(platform::QEMU_VIRT_PATH, platform::QEMU_VIRT),
        Some(path) => {
            let name = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|e| Diagnostic::file(&name, format!("cannot read: {e}")))?;
            Platform::parse(&name, &text)
        }
    }
}

/// A violation as the audit prints it.
pub fn format_violation(file: &str, v: &Violation) -> String {
    format!("{}:{}:{}: {} [{}]", file, v.pos.line, v.pos.col, v.message, v.rule)
}
