//! The TCG2 "crypto agile" event log (docs/trusted-boot.md, "Event log"): the format TF-A's
//! measured boot writes, as the TCG PC Client Platform Firmware Profile Specification defines it.
//!
//! ```text
//! TCG_PCClientPCREvent (SHA-1 format, the first event only):
//!   PCRIndex u32 = 0 | EventType u32 = EV_NO_ACTION | Digest [20] = 0 | EventSize u32 | Event
//!   Event = TCG_EfiSpecIDEvent: signature [16] "Spec ID Event03\0" | platformClass u32 |
//!           specVersionMinor u8 | specVersionMajor u8 | specErrata u8 | uintnSize u8 |
//!           numberOfAlgorithms u32 | { algorithmId u16, digestSize u16 } x n |
//!           vendorInfoSize u8 | vendorInfo [vendorInfoSize]
//! TCG_PCR_EVENT2 (every later event):
//!   PCRIndex u32 | EventType u32 | TPML_DIGEST_VALUES { count u32, { hashAlg u16, digest } x count } |
//!   EventSize u32 | Event [EventSize]
//! ```
//!
//! All integers are little-endian. tzmk's logs carry one algorithm, SHA-256 (`TPM_ALG_SHA256`,
//! 0x000B, 32 bytes), so every `TCG_PCR_EVENT2` has exactly one digest; the parser refuses
//! anything else with the reason. The second event is `EV_NO_ACTION` `"StartupLocality\0"` with
//! the locality byte (`TCG_EfiStartupLocalityEvent`). Images are measured into PCR 0 as
//! `EV_POST_CODE` with their manifest name as event data; runtime measurements go to PCR 1 as
//! `EV_EVENT_TAG`. Layouts and constants: the PC Client PFP specification (sections "Event
//! Logging" and "Event Types"); TF-A's `drivers/measured_boot/event_log` writes the same.

use core::fmt;
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// `EV_POST_CODE`: firmware (here: a boot image) measured by the platform.
pub const EV_POST_CODE: u32 = 0x1;
/// `EV_NO_ACTION`: informational, never extended into a PCR.
pub const EV_NO_ACTION: u32 = 0x3;
/// `EV_EVENT_TAG`: a tagged measurement (attestation-pd's runtime measurements).
pub const EV_EVENT_TAG: u32 = 0x6;
/// `TPM_ALG_SHA256` (TCG Algorithm Registry).
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// Bytes of a SHA-256 digest.
pub const SHA256_SIZE: usize = 32;
/// `TCG_EfiSpecIDEvent.signature`.
pub const SPEC_ID_SIGNATURE: [u8; 16] = *b"Spec ID Event03\0";
/// `TCG_EfiStartupLocalityEvent.Signature`.
pub const STARTUP_LOCALITY_SIGNATURE: [u8; 16] = *b"StartupLocality\0";
/// `specVersionMajor`, `specVersionMinor`, `specErrata` of the Spec ID event: 2.0 errata 2.
pub const SPEC_VERSION: (u8, u8, u8) = (2, 0, 2);
/// `uintnSize` tzmk writes: 2, UINTN is 64 bits (aarch64). The parser also accepts 1 (32 bits).
pub const UINTN_SIZE: u8 = 2;
/// `platformClass`: 0, client.
pub const PLATFORM_CLASS: u32 = 0;
/// PCRs tzmk uses and [`EventLog::replay`] computes: 0 (boot images) to 3.
pub const PCR_COUNT: usize = 4;
/// The PCR boot images are measured into.
pub const PCR_BOOT: u32 = 0;
/// The PCR runtime measurements go to.
pub const PCR_RUNTIME: u32 = 1;

/// Bytes of the first event: its 32-byte header and a one-algorithm Spec ID event without vendor
/// information (28 + 4 + 1 bytes).
pub const SPEC_ID_EVENT_SIZE: usize = 32 + SPEC_ID_BODY_SIZE;
const SPEC_ID_BODY_SIZE: usize = 28 + 4 + 1;
/// Bytes of a `TCG_PCR_EVENT2` header with one SHA-256 digest, before its event data.
pub const EVENT2_HEADER_SIZE: usize = 4 + 4 + 4 + 2 + SHA256_SIZE + 4;
const STARTUP_LOCALITY_DATA_SIZE: usize = 17;

/// Why a log could not be written or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLogError {
    /// The writer's buffer has `available` bytes left; the event needs `needed`.
    Full {
        /// Bytes the event needs.
        needed: usize,
        /// Bytes left in the buffer.
        available: usize,
    },
    /// The event at `offset` names a PCR above 3.
    PcrOutOfRange {
        /// Where the event starts in the log.
        offset: usize,
        /// The PCR index.
        pcr: u32,
    },
    /// The log ends inside `field` of the event at `offset`.
    Truncated {
        /// Where the event starts in the log.
        offset: usize,
        /// The field, by its name in the specification.
        field: &'static str,
    },
    /// The first event is not a `TCG_PCClientPCREvent` for the Spec ID event: `field` is wrong.
    NotSpecIdEvent {
        /// The field, by its name in the specification.
        field: &'static str,
    },
    /// The Spec ID event's signature is not "Spec ID Event03".
    SpecIdSignature,
    /// The Spec ID event's version is not 2.0 (any errata).
    SpecVersion {
        /// `specVersionMajor`.
        major: u8,
        /// `specVersionMinor`.
        minor: u8,
        /// `specErrata`.
        errata: u8,
    },
    /// The Spec ID event's `uintnSize` is neither 1 nor 2.
    UintnSize {
        /// What the log has.
        found: u8,
    },
    /// The Spec ID event does not declare exactly one algorithm.
    AlgorithmCount {
        /// What the log has.
        found: u32,
    },
    /// An algorithm other than SHA-256, in the Spec ID event or in the event at `offset`.
    UnknownAlgorithm {
        /// Where the event starts in the log.
        offset: usize,
        /// The `TPM_ALG_ID`.
        algorithm: u16,
    },
    /// The Spec ID event gives SHA-256 a digest size other than 32.
    DigestSize {
        /// The size in bytes.
        size: u16,
    },
    /// The Spec ID event's `EventSize` does not match its contents.
    SpecIdEventSize {
        /// The declared `EventSize`.
        declared: u32,
        /// The bytes its contents take.
        expected: usize,
    },
    /// The event at `offset` has `count` digests, not 1.
    DigestCount {
        /// Where the event starts in the log.
        offset: usize,
        /// The digest count.
        count: u32,
    },
    /// The StartupLocality event names a locality other than 0, 3 or 4.
    StartupLocality {
        /// The locality byte.
        locality: u8,
    },
    /// The StartupLocality event's data is not 17 bytes.
    StartupLocalitySize {
        /// The size in bytes.
        size: usize,
    },
    /// An event's data is longer than a `u32` can say.
    EventTooLarge {
        /// The size in bytes.
        size: usize,
    },
}

impl EventLogError {
    /// A stable number for the error's variant, for a log line or a register.
    pub fn code(&self) -> u32 {
        match self {
            EventLogError::Full { .. } => 1,
            EventLogError::PcrOutOfRange { .. } => 2,
            EventLogError::Truncated { .. } => 3,
            EventLogError::NotSpecIdEvent { .. } => 4,
            EventLogError::SpecIdSignature => 5,
            EventLogError::SpecVersion { .. } => 6,
            EventLogError::UintnSize { .. } => 7,
            EventLogError::AlgorithmCount { .. } => 8,
            EventLogError::UnknownAlgorithm { .. } => 9,
            EventLogError::DigestSize { .. } => 10,
            EventLogError::SpecIdEventSize { .. } => 11,
            EventLogError::DigestCount { .. } => 12,
            EventLogError::StartupLocality { .. } => 13,
            EventLogError::EventTooLarge { .. } => 14,
            EventLogError::StartupLocalitySize { .. } => 15,
        }
    }
}

impl fmt::Display for EventLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EventLogError::Full { needed, available } => {
                write!(f, "event log: full ({needed} bytes needed, {available} left)")
            }
            EventLogError::PcrOutOfRange { offset, pcr } => {
                write!(f, "event log: event at {offset:#x}: PCR {pcr} out of range 0..=3")
            }
            EventLogError::Truncated { offset, field } => {
                write!(f, "event log: event at {offset:#x}: truncated in {field}")
            }
            EventLogError::NotSpecIdEvent { field } => {
                write!(f, "event log: first event is not the Spec ID event ({field})")
            }
            EventLogError::SpecIdSignature => write!(f, "event log: Spec ID signature is not \"Spec ID Event03\""),
            EventLogError::SpecVersion { major, minor, errata } => {
                write!(f, "event log: Spec ID version {major}.{minor} errata {errata}, expected 2.0")
            }
            EventLogError::UintnSize { found } => write!(f, "event log: Spec ID uintnSize {found}, expected 1 or 2"),
            EventLogError::AlgorithmCount { found } => {
                write!(f, "event log: Spec ID numberOfAlgorithms {found}, expected 1 (SHA-256)")
            }
            EventLogError::UnknownAlgorithm { offset, algorithm } => {
                write!(f, "event log: event at {offset:#x}: algorithm {algorithm:#06x} is not SHA-256 (0x000b)")
            }
            EventLogError::DigestSize { size } => write!(f, "event log: Spec ID gives SHA-256 {size} bytes, not 32"),
            EventLogError::SpecIdEventSize { declared, expected } => {
                write!(f, "event log: Spec ID EventSize {declared}, its contents take {expected}")
            }
            EventLogError::DigestCount { offset, count } => {
                write!(f, "event log: event at {offset:#x}: digest count {count}, expected 1")
            }
            EventLogError::StartupLocality { locality } => {
                write!(f, "event log: StartupLocality {locality}, expected 0, 3 or 4")
            }
            EventLogError::EventTooLarge { size } => write!(f, "event log: event data of {size} bytes"),
            EventLogError::StartupLocalitySize { size } => {
                write!(f, "event log: StartupLocality event data of {size} bytes, expected 17")
            }
        }
    }
}

/// `new = SHA-256(old || digest)`: a TPM PCR extend.
pub fn extend(pcr: &mut Digest, digest: &Digest) {
    let mut hasher = Sha256::new();
    hasher.update(*pcr);
    hasher.update(digest);
    *pcr = hasher.finalize().into();
}

/// Writes a log into a caller's buffer: the Spec ID and StartupLocality events at creation, then
/// one [`measure`](EventLogWriter::measure) per event. An event that does not fit is not written
/// at all ([`EventLogError::Full`]); the log so far stays valid.
#[derive(Debug)]
pub struct EventLogWriter<'a> {
    buffer: &'a mut [u8],
    length: usize,
}

impl<'a> EventLogWriter<'a> {
    /// Starts a log in `buffer` with startup locality 0.
    pub fn new(buffer: &'a mut [u8]) -> Result<Self, EventLogError> {
        Self::with_startup_locality(buffer, 0)
    }

    /// Starts a log in `buffer` with the given startup locality (0, 3 or 4).
    pub fn with_startup_locality(buffer: &'a mut [u8], locality: u8) -> Result<Self, EventLogError> {
        if !matches!(locality, 0 | 3 | 4) {
            return Err(EventLogError::StartupLocality { locality });
        }
        let needed = SPEC_ID_EVENT_SIZE + EVENT2_HEADER_SIZE + STARTUP_LOCALITY_DATA_SIZE;
        if buffer.len() < needed {
            return Err(EventLogError::Full { needed, available: buffer.len() });
        }
        let mut writer = EventLogWriter { buffer, length: 0 };
        writer.put(&PCR_BOOT.to_le_bytes());
        writer.put(&EV_NO_ACTION.to_le_bytes());
        writer.put(&[0; 20]);
        writer.put(&(SPEC_ID_BODY_SIZE as u32).to_le_bytes());
        writer.put(&SPEC_ID_SIGNATURE);
        writer.put(&PLATFORM_CLASS.to_le_bytes());
        let (major, minor, errata) = SPEC_VERSION;
        writer.put(&[minor, major, errata, UINTN_SIZE]);
        writer.put(&1u32.to_le_bytes());
        writer.put(&TPM_ALG_SHA256.to_le_bytes());
        writer.put(&(SHA256_SIZE as u16).to_le_bytes());
        writer.put(&[0]); // vendorInfoSize
        let mut locality_event = [0u8; STARTUP_LOCALITY_DATA_SIZE];
        locality_event[..16].copy_from_slice(&STARTUP_LOCALITY_SIGNATURE);
        locality_event[16] = locality;
        writer.measure(PCR_BOOT, EV_NO_ACTION, &[0; SHA256_SIZE], &locality_event)?;
        Ok(writer)
    }

    /// Continues the log in `buffer[..length]` (which must parse as a log): the next event goes
    /// after its last.
    pub fn resume(buffer: &'a mut [u8], length: usize) -> Result<Self, EventLogError> {
        let written = buffer.get(..length).ok_or(EventLogError::Full { needed: length, available: buffer.len() })?;
        EventLog::parse(written)?;
        Ok(EventLogWriter { buffer, length })
    }

    fn put(&mut self, bytes: &[u8]) {
        // Callers checked the room first.
        self.buffer[self.length..self.length + bytes.len()].copy_from_slice(bytes);
        self.length += bytes.len();
    }

    /// Appends a `TCG_PCR_EVENT2` with one SHA-256 digest.
    pub fn measure(&mut self, pcr: u32, event_type: u32, digest: &Digest, event: &[u8]) -> Result<(), EventLogError> {
        if pcr as usize >= PCR_COUNT {
            return Err(EventLogError::PcrOutOfRange { offset: self.length, pcr });
        }
        let event_size = u32::try_from(event.len()).map_err(|_| EventLogError::EventTooLarge { size: event.len() })?;
        let available = self.buffer.len() - self.length;
        let needed = EVENT2_HEADER_SIZE.saturating_add(event.len());
        if needed > available {
            return Err(EventLogError::Full { needed, available });
        }
        self.put(&pcr.to_le_bytes());
        self.put(&event_type.to_le_bytes());
        self.put(&1u32.to_le_bytes());
        self.put(&TPM_ALG_SHA256.to_le_bytes());
        self.put(digest);
        self.put(&event_size.to_le_bytes());
        self.put(event);
        Ok(())
    }

    /// Measures a boot image into PCR 0 (`EV_POST_CODE`, event data = its manifest name).
    pub fn measure_image(&mut self, name: &str, digest: &Digest) -> Result<(), EventLogError> {
        self.measure(PCR_BOOT, EV_POST_CODE, digest, name.as_bytes())
    }

    /// Records a runtime measurement in PCR 1 (`EV_EVENT_TAG`, event data = the caller's tag).
    pub fn measure_runtime(&mut self, digest: &Digest, tag: &[u8]) -> Result<(), EventLogError> {
        self.measure(PCR_RUNTIME, EV_EVENT_TAG, digest, tag)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Never true: a log starts with its two header events.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The log written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer[..self.length]
    }
}

/// Reads little-endian fields, each bounded by the buffer.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Where the event being read starts, for errors.
    event: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize, field: &'static str) -> Result<&'a [u8], EventLogError> {
        let truncated = EventLogError::Truncated { offset: self.event, field };
        let end = self.position.checked_add(count).ok_or(truncated)?;
        let slice = self.bytes.get(self.position..end).ok_or(truncated)?;
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EventLogError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EventLogError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EventLogError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EventLogError> {
        self.array(field).map(u32::from_le_bytes)
    }
}

/// One `TCG_PCR_EVENT2` of a parsed log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Where the event starts in the log.
    pub offset: usize,
    /// `PCRIndex`, 0..=3.
    pub pcr: u32,
    /// `EventType`.
    pub event_type: u32,
    /// The SHA-256 digest.
    pub digest: Digest,
    /// The event data.
    pub data: &'a [u8],
}

/// Parses the `TCG_PCR_EVENT2` at `reader.position`.
fn read_event<'a>(reader: &mut Reader<'a>) -> Result<Event<'a>, EventLogError> {
    let offset = reader.position;
    reader.event = offset;
    let pcr = reader.u32("PCRIndex")?;
    if pcr as usize >= PCR_COUNT {
        return Err(EventLogError::PcrOutOfRange { offset, pcr });
    }
    let event_type = reader.u32("EventType")?;
    let count = reader.u32("Digests.count")?;
    if count != 1 {
        return Err(EventLogError::DigestCount { offset, count });
    }
    let algorithm = reader.u16("Digests.hashAlg")?;
    if algorithm != TPM_ALG_SHA256 {
        return Err(EventLogError::UnknownAlgorithm { offset, algorithm });
    }
    let digest = reader.array::<SHA256_SIZE>("Digests.digest")?;
    let size = reader.u32("EventSize")?;
    let data = reader.take(size as usize, "Event")?;
    Ok(Event { offset, pcr, event_type, digest, data })
}

/// A log whose every size and field was checked; its events borrow from the input.
#[derive(Debug, Clone, Copy)]
pub struct EventLog<'a> {
    bytes: &'a [u8],
    /// Where the first `TCG_PCR_EVENT2` starts.
    events_offset: usize,
    uintn_size: u8,
    startup_locality: u8,
}

impl<'a> EventLog<'a> {
    /// Checks the whole log: the Spec ID event, then every event up to the end of `bytes` (which
    /// must end exactly after the last event).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EventLogError> {
        let mut reader = Reader { bytes, position: 0, event: 0 };
        if reader.u32("PCRIndex")? != PCR_BOOT {
            return Err(EventLogError::NotSpecIdEvent { field: "PCRIndex" });
        }
        if reader.u32("EventType")? != EV_NO_ACTION {
            return Err(EventLogError::NotSpecIdEvent { field: "EventType" });
        }
        if reader.array::<20>("Digest")? != [0; 20] {
            return Err(EventLogError::NotSpecIdEvent { field: "Digest" });
        }
        let declared = reader.u32("EventSize")?;
        let body_start = reader.position;
        if reader.array::<16>("Spec ID signature")? != SPEC_ID_SIGNATURE {
            return Err(EventLogError::SpecIdSignature);
        }
        let _platform_class = reader.u32("platformClass")?;
        let minor = reader.u8("specVersionMinor")?;
        let major = reader.u8("specVersionMajor")?;
        let errata = reader.u8("specErrata")?;
        if (major, minor) != (SPEC_VERSION.0, SPEC_VERSION.1) {
            return Err(EventLogError::SpecVersion { major, minor, errata });
        }
        let uintn_size = reader.u8("uintnSize")?;
        if !matches!(uintn_size, 1 | 2) {
            return Err(EventLogError::UintnSize { found: uintn_size });
        }
        let algorithms = reader.u32("numberOfAlgorithms")?;
        if algorithms != 1 {
            return Err(EventLogError::AlgorithmCount { found: algorithms });
        }
        let algorithm = reader.u16("algorithmId")?;
        if algorithm != TPM_ALG_SHA256 {
            return Err(EventLogError::UnknownAlgorithm { offset: 0, algorithm });
        }
        let size = reader.u16("digestSize")?;
        if size as usize != SHA256_SIZE {
            return Err(EventLogError::DigestSize { size });
        }
        let vendor_info_size = reader.u8("vendorInfoSize")?;
        let expected = reader.position - body_start + vendor_info_size as usize;
        if declared as usize != expected {
            return Err(EventLogError::SpecIdEventSize { declared, expected });
        }
        reader.take(vendor_info_size as usize, "vendorInfo")?;

        let events_offset = reader.position;
        let mut startup_locality = 0;
        let mut first = true;
        while reader.position < bytes.len() {
            let event = read_event(&mut reader)?;
            if first && event.event_type == EV_NO_ACTION && event.data.starts_with(&STARTUP_LOCALITY_SIGNATURE) {
                let &[locality] = &event.data[16..] else {
                    return Err(EventLogError::StartupLocalitySize { size: event.data.len() });
                };
                if !matches!(locality, 0 | 3 | 4) {
                    return Err(EventLogError::StartupLocality { locality });
                }
                startup_locality = locality;
            }
            first = false;
        }
        Ok(EventLog { bytes, events_offset, uintn_size, startup_locality })
    }

    /// The log's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The Spec ID event's `uintnSize`.
    pub fn uintn_size(&self) -> u8 {
        self.uintn_size
    }

    /// The StartupLocality event's locality (0 without one).
    pub fn startup_locality(&self) -> u8 {
        self.startup_locality
    }

    /// Every `TCG_PCR_EVENT2` (the StartupLocality event included), in log order.
    pub fn events(&self) -> Events<'a> {
        Events { reader: Reader { bytes: self.bytes, position: self.events_offset, event: self.events_offset } }
    }

    /// The PCR values the log produces: PCR 0..=3 start at zero (PCR 0's last byte is the startup
    /// locality, as the TPM sets it: PC Client PFP, "Startup Locality Event"), then every event
    /// but `EV_NO_ACTION` is extended in order (`EV_NO_ACTION` events extend no PCR, PC Client
    /// PFP, "EV_NO_ACTION Event Types").
    pub fn replay(&self) -> [Digest; PCR_COUNT] {
        let mut pcrs = [[0u8; SHA256_SIZE]; PCR_COUNT];
        pcrs[0][SHA256_SIZE - 1] = self.startup_locality;
        for event in self.events() {
            if event.event_type != EV_NO_ACTION {
                extend(&mut pcrs[event.pcr as usize], &event.digest);
            }
        }
        pcrs
    }
}

/// Iterator over a parsed log's events.
pub struct Events<'a> {
    reader: Reader<'a>,
}

impl fmt::Debug for Events<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").field("position", &self.reader.position).finish()
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        if self.reader.position >= self.reader.bytes.len() {
            return None;
        }
        // The log was checked by `EventLog::parse`: an error cannot happen; stop if it does.
        match read_event(&mut self.reader) {
            Ok(event) => Some(event),
            Err(_) => {
                self.reader.position = self.reader.bytes.len();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
