//! Runtime measurements (docs/trusted-boot.md, "Runtime measurements"): T-KVM's event-driven
//! measurement. The normal world reports that it started something (a VM, a container, a module)
//! with its name and SHA-256; attestation-pd extends PCR 1 with the digest, appends an
//! `EV_EVENT_TAG` event (event data = the name) to its copy of the boot event log, and every later
//! token reports the measurement as a software component.
//!
//! What the normal world reports is an allegation of the normal world: the token says so by
//! its signer id (all zero: nobody signed it) and by its name, which can never be a boot
//! component's (`tzmk_interface::attestation::RESERVED_MEASUREMENT_NAMES`). A refused
//! measurement (a bad name, a full log) changes neither the register, the log, nor the list.

use heapless::{String, Vec};
use tzmk_interface::attestation::{measurement_name, HANDOFF_LOG_MAX, MAX_RUNTIME_MEASUREMENTS, MEASURE_NAME_SIZE};
use tzmk_trust::eventlog::{self, EventLog, EventLogWriter, EVENT2_HEADER_SIZE, PCR_RUNTIME};

/// Room for the boot log and every runtime event.
pub const LOG_CAPACITY: usize = HANDOFF_LOG_MAX + MAX_RUNTIME_MEASUREMENTS * (EVENT2_HEADER_SIZE + MEASURE_NAME_SIZE);

/// Why a measurement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureError {
    /// The name breaks the naming rule or is a boot component's.
    BadName,
    /// [`MAX_RUNTIME_MEASUREMENTS`] were taken this boot.
    Full,
}

/// One runtime measurement, as tokens report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub name: String<MEASURE_NAME_SIZE>,
    pub sha256: [u8; 32],
}

/// PCR 1, the event log (the boot events, then the runtime ones) and the measurements.
#[derive(Debug)]
pub struct RuntimeLog {
    log: [u8; LOG_CAPACITY],
    length: usize,
    pcr: eventlog::Digest,
    measurements: Vec<Measurement, MAX_RUNTIME_MEASUREMENTS>,
}

impl RuntimeLog {
    /// Continues the boot log (as the monitor wrote it; `None` when it does not parse, or holds
    /// runtime events already: the monitor never writes PCR 1).
    pub fn new(boot_log: &[u8]) -> Option<RuntimeLog> {
        let parsed = EventLog::parse(boot_log).ok()?;
        if parsed.replay()[PCR_RUNTIME as usize] != [0; 32] || boot_log.len() > HANDOFF_LOG_MAX {
            return None;
        }
        let mut log = [0u8; LOG_CAPACITY];
        log[..boot_log.len()].copy_from_slice(boot_log);
        Some(RuntimeLog { log, length: boot_log.len(), pcr: [0; 32], measurements: Vec::new() })
    }

    /// Measures `sha256` under `name` (the raw, NUL-padded bytes the request carried: checked
    /// here again, whatever comm-pd checked). Answers the measurement's index.
    pub fn measure(&mut self, name: &[u8; MEASURE_NAME_SIZE], sha256: &[u8; 32]) -> Result<usize, MeasureError> {
        let name = measurement_name(name).ok_or(MeasureError::BadName)?;
        if self.measurements.is_full() {
            return Err(MeasureError::Full);
        }
        // LOG_CAPACITY holds the largest boot log and every runtime event: the write cannot fail,
        // and if it did, nothing would have changed yet.
        let mut writer = EventLogWriter::resume(&mut self.log, self.length).map_err(|_| MeasureError::Full)?;
        writer.measure_runtime(sha256, name.as_bytes()).map_err(|_| MeasureError::Full)?;
        self.length = writer.len();
        eventlog::extend(&mut self.pcr, sha256);
        let measurement =
            Measurement { name: String::try_from(name).map_err(|_| MeasureError::BadName)?, sha256: *sha256 };
        // Not full: checked above.
        let _ = self.measurements.push(measurement);
        Ok(self.measurements.len() - 1)
    }

    /// PCR 1 as extended so far.
    pub fn register(&self) -> &eventlog::Digest {
        &self.pcr
    }

    /// The event log: the boot events, then one `EV_EVENT_TAG` per measurement.
    pub fn log(&self) -> &[u8] {
        &self.log[..self.length]
    }

    /// The measurements in the order they were taken.
    pub fn measurements(&self) -> &[Measurement] {
        &self.measurements
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn boot_log() -> ([u8; HANDOFF_LOG_MAX], usize) {
        let mut buffer = [0u8; HANDOFF_LOG_MAX];
        let mut writer = EventLogWriter::new(&mut buffer).unwrap();
        writer.measure_image("loader.img", &[1; 32]).unwrap();
        writer.measure_image("image", &[2; 32]).unwrap();
        let length = writer.len();
        (buffer, length)
    }

    fn name(text: &str) -> [u8; MEASURE_NAME_SIZE] {
        let mut name = [0u8; MEASURE_NAME_SIZE];
        name[..text.len()].copy_from_slice(text.as_bytes());
        name
    }

    #[test]
    fn measurements_extend_the_register_and_the_log_replays_to_it() {
        let (buffer, length) = boot_log();
        let mut runtime = RuntimeLog::new(&buffer[..length]).unwrap();
        let boot_registers = EventLog::parse(runtime.log()).unwrap().replay();
        assert_eq!(runtime.measure(&name("container-a"), &[0xaa; 32]), Ok(0));
        assert_eq!(runtime.measure(&name("vm.1"), &[0xbb; 32]), Ok(1));
        let mut expected = [0u8; 32];
        eventlog::extend(&mut expected, &[0xaa; 32]);
        eventlog::extend(&mut expected, &[0xbb; 32]);
        assert_eq!(runtime.register(), &expected);
        let replayed = EventLog::parse(runtime.log()).unwrap().replay();
        assert_eq!(replayed[PCR_RUNTIME as usize], expected, "the log replays to the register");
        assert_eq!(replayed[0], boot_registers[0], "the boot PCR is untouched");
        let names: std::vec::Vec<_> = runtime.measurements().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["container-a", "vm.1"]);
    }

    #[test]
    fn refused_measurements_change_nothing() {
        let (buffer, length) = boot_log();
        let mut runtime = RuntimeLog::new(&buffer[..length]).unwrap();
        for bad in ["", "Caps", "kernel", "initramfs", "pending-update", "a b"] {
            assert_eq!(runtime.measure(&name(bad), &[1; 32]), Err(MeasureError::BadName), "{bad:?}");
        }
        assert_eq!(runtime.log(), &buffer[..length]);
        for i in 0..MAX_RUNTIME_MEASUREMENTS {
            assert_eq!(runtime.measure(&name(&std::format!("m{i}")), &[i as u8; 32]), Ok(i));
        }
        let (log, register) = (runtime.log().to_vec(), *runtime.register());
        assert_eq!(runtime.measure(&name("one-more"), &[9; 32]), Err(MeasureError::Full));
        assert_eq!((runtime.log(), runtime.register()), (&log[..], &register));
        assert_eq!(runtime.measurements().len(), MAX_RUNTIME_MEASUREMENTS);
    }

    #[test]
    fn a_log_that_is_no_boot_log_is_refused() {
        assert!(RuntimeLog::new(&[]).is_none());
        assert!(RuntimeLog::new(&[0xff; 64]).is_none());
        let mut buffer = [0u8; HANDOFF_LOG_MAX];
        let mut writer = EventLogWriter::new(&mut buffer).unwrap();
        writer.measure_runtime(&[1; 32], b"early").unwrap();
        let length = writer.len();
        assert!(RuntimeLog::new(&buffer[..length]).is_none(), "the monitor never writes PCR 1");
    }

    proptest! {
        /// Whatever bytes the normal world sends as names and digests, the log stays a valid log
        /// that replays to the register, and only accepted measurements are in it.
        #[test]
        fn any_requests_leave_a_log_that_replays(requests in proptest::collection::vec((any::<[u8; 16]>(), any::<[u8; 32]>()), 0..20)) {
            let (buffer, length) = boot_log();
            let mut runtime = RuntimeLog::new(&buffer[..length]).unwrap();
            let mut accepted = 0;
            for (raw, digest) in &requests {
                if runtime.measure(raw, digest).is_ok() {
                    accepted += 1;
                }
            }
            let log = EventLog::parse(runtime.log()).unwrap();
            prop_assert_eq!(log.replay()[PCR_RUNTIME as usize], *runtime.register());
            prop_assert_eq!(runtime.measurements().len(), accepted);
            prop_assert_eq!(log.events().filter(|e| e.pcr == PCR_RUNTIME).count(), accepted);
        }
    }
}
