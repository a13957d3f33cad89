//! `log` output for PDs: one line per record, prefixed with the PD's name.
//!
//! On seL4 the bytes go to `seL4_DebugPutChar` (kernel debug builds only: the `debug-print`
//! feature); on the host to the simulator's standard error.

use core::fmt::{self, Write};

/// The PD logger. Install it once in `init` with [`init`].
#[derive(Debug)]
pub struct Logger;

static LOGGER: Logger = Logger;

/// Installs the logger at `level`. A second call is harmless.
pub fn init(level: log::LevelFilter) {
    // A second set_logger fails and leaves the first in place, which is what we want.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Truncates overlong lines rather than allocating: PDs have no heap.
        let room = self.buf.len() - self.len;
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = Line { buf: [0; 256], len: 0 };
        // Line never fails; a truncated line is still worth printing.
        let _ = writeln!(line, "{}: {}: {}", crate::pd_name(), record.level(), record.args());
        crate::backend::debug_write(&line.buf[..line.len]);
    }

    fn flush(&self) {}
}
