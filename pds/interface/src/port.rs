//! Communication ports: what comm-pd and linux-side agree on besides the ring itself.
//!
//! Three regions carry the ports (docs/ports.md has the picture):
//! - `port_ctrl` (4 KiB): the status page, the **port directory** (written by the secure world:
//!   every configured port, its state and where its rings are) and the **control mailbox**
//!   (one request slot the normal world writes, one reply slot the secure world writes);
//! - `port_rx`: one ring per port that the secure world receives on (normal -> secure);
//! - `port_tx`: one ring per port that the secure world transmits on (secure -> normal).
//!
//! Ring offsets and capacities are the secure side's configuration (comm-pd's ports.toml); the
//! normal world learns them from the directory. Everything the normal world writes (the request
//! slot, its rings' producer side, its indices) is an allegation the secure side copies once and
//! validates; a lie gets a typed [`ControlError`] or a port reset with a [`PortFault`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use tzmk_ring as ring;

/// Ports a directory can list.
pub const MAX_PORTS: usize = 16;
/// Bytes of a port name, NUL-padded (so at most this many characters).
pub const NAME_LEN: usize = 24;

/// The directory's sequence word and the [`Directory`] after it, in `port_ctrl`.
pub const DIRECTORY_SEQUENCE_OFFSET: usize = 0x100;
pub const DIRECTORY_OFFSET: usize = 0x108;
/// The control mailbox in `port_ctrl`: request slot, then reply slot.
pub const REQUEST_OFFSET: usize = 0x600;
pub const REPLY_OFFSET: usize = 0x800;
/// Bytes of one mailbox slot: an 8-byte [`SlotHeader`] and the message.
pub const SLOT_SIZE: usize = 0x200;
/// The largest control message (request or reply), header included.
pub const MAX_CONTROL_MESSAGE: usize = SLOT_SIZE - core::mem::size_of::<SlotHeader>();
/// The largest payload of a control request or reply.
pub const MAX_CONTROL_PAYLOAD: usize = MAX_CONTROL_MESSAGE - core::mem::size_of::<Request>();
/// `port_ctrl` must be at least this big: the mailbox, then the driver's notification words
/// ([`crate::driver::NOTIFY_OFFSET`]) comm-pd's stamps ([`crate::driver::STAMPS_OFFSET`]) and the spin hint.
pub const PORT_CTRL_SIZE: usize = crate::driver::CTRL_WORDS_END;

/// `Directory::magic`: "TZPD".
pub const DIRECTORY_MAGIC: u32 = 0x545a_5044;

#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Directory {
    pub magic: u32,
    /// Valid entries at the start of `ports`.
    pub count: u32,
    pub ports: [PortEntry; MAX_PORTS],
}

/// One port as the secure world describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PortEntry {
    pub id: u16,
    /// A [`PortState`].
    pub state: u8,
    /// A [`Service`].
    pub service: u8,
    /// Incremented by every open: a client whose session changed under it has lost the port.
    pub session: u32,
    pub name: [u8; NAME_LEN],
    /// The normal -> secure ring: offset in `port_rx` and data capacity.
    pub rx_offset: u32,
    pub rx_capacity: u32,
    /// The secure -> normal ring: offset in `port_tx` and data capacity.
    pub tx_offset: u32,
    pub tx_capacity: u32,
    /// Times the secure side reset the port because the normal world broke the protocol.
    pub faults: u32,
    /// The last [`PortFault`] code (0: none).
    pub last_fault: u32,
    pub reserved: u64,
}

impl PortEntry {
    /// The name, without its padding; `None` if the bytes are not UTF-8.
    pub fn name(&self) -> Option<&str> {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.name[..end]).ok()
    }
}

/// Encodes a port name for [`PortEntry::name`]; `None` if it is empty, too long or holds a NUL.
pub fn encode_name(name: &str) -> Option<[u8; NAME_LEN]> {
    if name.is_empty() || name.len() > NAME_LEN || name.bytes().any(|b| b == 0) {
        return None;
    }
    let mut out = [0u8; NAME_LEN];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Some(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PortState {
    Closed = 0,
    Open = 1,
    /// Reset by the secure side after the normal world broke the protocol; open it again.
    Faulted = 2,
}

impl PortState {
    pub fn from_u8(value: u8) -> Option<Self> {
        [Self::Closed, Self::Open, Self::Faulted].into_iter().find(|s| *s as u8 == value)
    }
}

/// What answers a port in the secure world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Service {
    /// comm-pd sends every message back unchanged (tests, benchmarks).
    Echo = 1,
    /// comm-pd takes every message and counts it (throughput).
    Sink = 2,
    /// attestation-pd, by protected procedure call: a request message in, a reply message out.
    Attestation = 3,
    /// rt-task: its statistics on request, and control.
    RealTime = 4,
    /// Any other secure PD (ports.toml's `owner`): comm-pd copies each message into a secure ring
    /// pair it shares with that PD and forwards the PD's replies; control calls reach it by
    /// protected procedure call (docs/adding-a-pd.md). The PD never maps normal-world memory.
    Forward = 5,
}

impl Service {
    /// Bytes of the port's tx ring the service's reply to a `length`-byte message may take
    /// (0: it never answers). comm-pd takes a message only when that much is free.
    pub const fn reply_room(self, length: usize) -> usize {
        match self {
            Service::Echo => length,
            Service::Sink => 0,
            // An evidence reply is the largest an attestation request gets.
            Service::Attestation => crate::attestation::MAX_EVIDENCE,
            Service::RealTime => core::mem::size_of::<crate::rt::RtStats>(),
            // comm-pd itself answers nothing: the owner's replies come back on a ring of their
            // own, and wait there while the port's tx ring is full.
            Service::Forward => 0,
        }
    }

    /// Whether the service looks at message bytes (the sink only counts them).
    pub const fn reads_messages(self) -> bool {
        !matches!(self, Service::Sink)
    }

    pub const ALL: [Service; 5] =
        [Service::Echo, Service::Sink, Service::Attestation, Service::RealTime, Service::Forward];

    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u8 == value)
    }

    /// The name ports.toml uses.
    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Sink => "sink",
            Service::Attestation => "attestation",
            Service::RealTime => "rt",
            Service::Forward => "forward",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The secure PD that serves it; `None` for [`Service::Forward`], whose owner ports.toml names.
    pub fn owner(self) -> Option<&'static str> {
        match self {
            Service::Echo | Service::Sink => Some("comm-pd"),
            Service::Attestation => Some("attestation-pd"),
            Service::RealTime => Some("rt-task"),
            Service::Forward => None,
        }
    }
}

/// Why the secure side reset a port (`PortEntry::last_fault`): the ring the normal world broke
/// (1: its producer side of the rx ring, 2: its consumer side of the tx ring; 3: a ring between
/// comm-pd and a forwarded port's owner, which the owner broke) times 256, plus the ring's
/// [`ring::PeerMisbehaviour`] code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortFault(pub u32);

impl PortFault {
    pub const RX: u32 = 1;
    pub const TX: u32 = 2;
    /// Not the normal world's fault: the secure PD that owns a forwarded port broke one of the
    /// rings it shares with comm-pd, and comm-pd cut it off (the port stays faulted).
    pub const OWNER: u32 = 3;
    /// With [`OWNER`](Self::OWNER), in place of a ring's misbehaviour: the owner left a control
    /// call unanswered past comm-pd's deadline (tzmk_interface::forward), and comm-pd cut it off.
    pub const SILENT: u32 = 0x10;

    pub fn new(ring: u32, misbehaviour: ring::PeerMisbehaviour) -> Self {
        Self(ring << 8 | misbehaviour as u32)
    }

    /// The fault of an owner that did not answer a call in time.
    pub const fn owner_silent() -> Self {
        Self(Self::OWNER << 8 | Self::SILENT)
    }

    pub fn ring(self) -> &'static str {
        match self.0 >> 8 {
            Self::RX => "rx",
            Self::TX => "tx",
            Self::OWNER => "owner's",
            _ => "?",
        }
    }

    pub fn misbehaviour(self) -> Option<ring::PeerMisbehaviour> {
        use ring::PeerMisbehaviour::*;
        [IndexOutOfRange, IndexMovedBackwards, BadLength, BadRecord].into_iter().find(|m| *m as u32 == self.0 & 0xff)
    }
}

impl core::fmt::Display for PortFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.misbehaviour() {
            Some(m) => write!(f, "{} ring: {m}", self.ring()),
            None if *self == Self::owner_silent() => f.write_str("the owner did not answer a call in time"),
            None => write!(f, "fault code {:#x}", self.0),
        }
    }
}

/// A mailbox slot's header: the message follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SlotHeader {
    /// The request's sequence number; the reply slot echoes it once the reply is complete.
    pub sequence: u32,
    /// Bytes of the message after the header.
    pub length: u32,
}

/// A control request: this header, then `length` bytes of payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Request {
    /// An [`Operation`].
    pub operation: u32,
    /// The port id (open by id, close, status, call); 0 for open by name.
    pub port: u32,
    /// The command of a [`Operation::Call`].
    pub command: u32,
    /// Bytes of payload (the name of an open by name; the input of a call).
    pub length: u32,
}

/// A control reply: this header, then `length` bytes of payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Reply {
    /// 0, or a [`ControlError`] code.
    pub error: u32,
    pub port: u32,
    /// The session of an open.
    pub value: u32,
    pub length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Operation {
    /// Open the port `port`; reply payload: its [`PortEntry`]. Resets both rings (a new session).
    OpenId = 1,
    /// Open the port named by the payload; reply as for `OpenId`.
    OpenName = 2,
    /// Close session `command` of `port` (the session its open replied): refused with
    /// [`ControlError::NotOpen`] when the port is not open or holds another session.
    Close = 3,
    /// Counters of `port`; reply payload: [`PortStatus`].
    Status = 4,
    /// An ioctl-style typed call to the port's service: `command`, input payload, output payload.
    Call = 5,
}

impl Operation {
    pub fn from_u32(value: u32) -> Option<Self> {
        [Self::OpenId, Self::OpenName, Self::Close, Self::Status, Self::Call].into_iter().find(|o| *o as u32 == value)
    }
}

/// Why a control request failed (the reply's `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ControlError {
    /// The request is not a well-formed control message (length, operation, reserved bits).
    Malformed = 1,
    NoSuchPort = 2,
    /// The port is not open (or was reset since).
    NotOpen = 3,
    /// The service has no such call command.
    UnknownCommand = 4,
    /// The call's input is wrong for its command.
    BadArgument = 5,
    /// The service could not answer (e.g. attestation-pd has no boot handoff).
    ServiceUnavailable = 6,
}

impl ControlError {
    pub fn from_u32(value: u32) -> Option<Self> {
        use ControlError::*;
        [Malformed, NoSuchPort, NotOpen, UnknownCommand, BadArgument, ServiceUnavailable]
            .into_iter()
            .find(|e| *e as u32 == value)
    }
}

impl core::fmt::Display for ControlError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ControlError::Malformed => "malformed control request",
            ControlError::NoSuchPort => "no such port",
            ControlError::NotOpen => "the port is not open",
            ControlError::UnknownCommand => "the service has no such command",
            ControlError::BadArgument => "bad argument for the command",
            ControlError::ServiceUnavailable => "the service cannot answer now",
        })
    }
}

/// A port's counters ([`Operation::Status`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PortStatus {
    pub id: u16,
    pub state: u8,
    pub service: u8,
    pub session: u32,
    /// Messages and bytes taken from the rx ring, and sent on the tx ring, this session.
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    /// Times the secure side waited for tx space before taking a message (back-pressure).
    pub stalls: u64,
    pub faults: u32,
    pub last_fault: u32,
}

/// Call commands of the services.
pub mod command {
    /// Sink: totals this session, reply [`super::SinkTotals`].
    pub const SINK_TOTALS: u32 = 1;
    /// Real-time: rt-task's latest statistics, reply `rt::RtStats`.
    pub const RT_STATS: u32 = 1;
    /// Real-time: ask rt-task to publish its statistics now (a notification).
    pub const RT_REFRESH: u32 = 2;
    /// Real-time: the release-lateness distribution since rt-task started, reply `rt::RtLatency`.
    pub const RT_LATENCY: u32 = 3;
    /// Real-time: the control loop's last release, reply `rt::RtControl`.
    pub const RT_CONTROL: u32 = 4;
    /// Real-time: new period, budget and deadline for a task, input `rt::RtSetRequest`, reply
    /// `rt::RtSetReply` (accepted, or why not: the admission test's verdict).
    pub const RT_SET: u32 = 5;
    /// Real-time: the control loop's setpoint, input `rt::RtSetpointRequest`, reply
    /// `rt::RtSetReply` (status only).
    pub const RT_SETPOINT: u32 = 6;
    /// Attestation: attestation-pd's interface version, reply u64.
    pub const ATTESTATION_VERSION: u32 = 1;
    /// Echo: messages and bytes echoed this session, reply [`super::SinkTotals`].
    pub const ECHO_TOTALS: u32 = 1;
}

/// What the sink (and echo) counted this session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SinkTotals {
    pub messages: u64,
    pub bytes: u64,
}

/// An attestation port's request message: the operation (attestation::OP_*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AttestationRequest {
    pub operation: u64,
}

/// An attestation port's evidence request: [`crate::attestation::OP_EVIDENCE`] and the nonce. The
/// reply is the evidence itself ([`crate::attestation::EvidenceHeader`] first), or an
/// [`AttestationReply`] with an error label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EvidenceRequest {
    pub operation: u64,
    /// Bytes of `nonce` used: 32, 48 or 64.
    pub nonce_length: u64,
    pub nonce: [u8; crate::attestation::MAX_NONCE],
}

/// An attestation port's runtime measurement request: [`crate::attestation::OP_MEASURE`], the
/// component's name and its SHA-256. The reply is an [`AttestationReply`]: [`crate::attestation::OK`]
/// with the measurement's index in `words[0]`, or an error label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MeasureRequest {
    pub operation: u64,
    /// NUL-padded `[a-z0-9._-]` ([`crate::attestation::measurement_name`]).
    pub name: [u8; crate::attestation::MEASURE_NAME_SIZE],
    pub sha256: [u8; 32],
}

/// An attestation port's request, parsed: the only reading of the normal world's bytes that
/// comm-pd acts on (every field checked here; attestation-pd checks again what reaches it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationCall<'a> {
    /// OP_VERSION or OP_SECURE_MEASUREMENT: no arguments.
    Query { operation: u64 },
    /// OP_EVIDENCE with a nonce of 32, 48 or 64 bytes.
    Evidence { nonce: &'a [u8] },
    /// OP_MEASURE of a valid, unreserved name.
    Measure { name: &'a str, sha256: [u8; 32] },
    /// OP_UPDATE: the candidate manifest's bytes (at most a manifest's size; the monitor judges
    /// them).
    Update { manifest: &'a [u8] },
}

/// Why an attestation port's message is no request: the reply's `words[0]` (with label
/// [`crate::attestation::ERR_MALFORMED`]) is [`RequestError::code`], `words[1]` its detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Fewer than the 8 bytes of an operation.
    Truncated { length: usize },
    /// An operation this interface does not have.
    UnknownOperation { operation: u64 },
    /// The message's size is not the operation's request size.
    WrongSize { operation: u64, length: usize, expected: usize },
    /// An evidence request's nonce length is not 32, 48 or 64.
    BadNonceLength { length: u64 },
    /// A measurement's name breaks the naming rule or is reserved.
    BadName,
    /// An update's manifest length is above a manifest's size.
    BadManifestLength { length: u64 },
}

impl RequestError {
    /// The error's code and detail, as the reply carries them.
    pub fn code(&self) -> (u64, u64) {
        match *self {
            RequestError::Truncated { length } => (1, length as u64),
            RequestError::UnknownOperation { operation } => (2, operation),
            RequestError::WrongSize { length, .. } => (3, length as u64),
            RequestError::BadNonceLength { length } => (4, length),
            RequestError::BadName => (5, 0),
            RequestError::BadManifestLength { length } => (6, length),
        }
    }

    /// What a reply's code and detail say, for the normal world's tools.
    pub fn describe(code: u64, detail: u64) -> &'static str {
        let _ = detail;
        match code {
            1 => "the request is shorter than an operation",
            2 => "no such operation",
            3 => "the request's size is not its operation's",
            4 => "the nonce is not 32, 48 or 64 bytes",
            5 => "the name is not 1 to 16 bytes of [a-z0-9._-] or is reserved (bl, prot, kernel, dtb, initramfs)",
            6 => "the update's manifest length is above a manifest's 672 bytes",
            _ => "malformed request",
        }
    }
}

impl core::fmt::Display for RequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RequestError::Truncated { length } => write!(f, "a request of {length} bytes has no operation"),
            RequestError::UnknownOperation { operation } => write!(f, "operation {operation} does not exist"),
            RequestError::WrongSize { operation, length, expected } => {
                write!(f, "operation {operation} takes {expected} bytes, not {length}")
            }
            RequestError::BadNonceLength { length } => write!(f, "a nonce of {length} bytes (32, 48 or 64)"),
            RequestError::BadName => f.write_str("a measurement name breaks the naming rule or is reserved"),
            RequestError::BadManifestLength { length } => {
                write!(f, "an update's manifest of {length} bytes (at most {})", crate::update::MANIFEST_BYTES)
            }
        }
    }
}

/// Parses an attestation port's message: the operation (its first 8 bytes, native-endian as
/// every port record), then exactly that operation's request.
pub fn parse_attestation_request(message: &[u8]) -> Result<AttestationCall<'_>, RequestError> {
    use crate::attestation::{OP_EVIDENCE, OP_MEASURE, OP_SECURE_MEASUREMENT, OP_UPDATE, OP_VERSION};
    use crate::update::{UpdateRequest, MANIFEST_BYTES};
    let Some(head) = message.get(..8) else { return Err(RequestError::Truncated { length: message.len() }) };
    let operation = u64::from_ne_bytes(head.try_into().expect("8 bytes"));
    let expected = match operation {
        OP_VERSION | OP_SECURE_MEASUREMENT => core::mem::size_of::<AttestationRequest>(),
        OP_EVIDENCE => core::mem::size_of::<EvidenceRequest>(),
        OP_MEASURE => core::mem::size_of::<MeasureRequest>(),
        OP_UPDATE => core::mem::size_of::<UpdateRequest>(),
        _ => return Err(RequestError::UnknownOperation { operation }),
    };
    if message.len() != expected {
        return Err(RequestError::WrongSize { operation, length: message.len(), expected });
    }
    match operation {
        OP_EVIDENCE => {
            // Sizes were checked: these reads cannot fail.
            let request =
                EvidenceRequest::ref_from_bytes(message).map_err(|_| RequestError::Truncated { length: 0 })?;
            match request.nonce_length {
                32 | 48 | 64 => {
                    Ok(AttestationCall::Evidence { nonce: &request.nonce[..request.nonce_length as usize] })
                }
                length => Err(RequestError::BadNonceLength { length }),
            }
        }
        OP_MEASURE => {
            let request = MeasureRequest::ref_from_bytes(message).map_err(|_| RequestError::Truncated { length: 0 })?;
            let name = crate::attestation::measurement_name(&request.name).ok_or(RequestError::BadName)?;
            Ok(AttestationCall::Measure { name, sha256: request.sha256 })
        }
        OP_UPDATE => {
            let request = UpdateRequest::ref_from_bytes(message).map_err(|_| RequestError::Truncated { length: 0 })?;
            match request.length {
                length if length <= MANIFEST_BYTES as u64 => {
                    Ok(AttestationCall::Update { manifest: &request.manifest[..length as usize] })
                }
                length => Err(RequestError::BadManifestLength { length }),
            }
        }
        _ => Ok(AttestationCall::Query { operation }),
    }
}

/// An attestation port's reply message: attestation-pd's reply label and its message registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AttestationReply {
    pub label: u64,
    pub words: [u64; 4],
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn the_control_area_fits_in_port_ctrl() {
        let directory_end = DIRECTORY_OFFSET + core::mem::size_of::<Directory>();
        assert!(directory_end <= REQUEST_OFFSET, "{directory_end:#x}");
        assert_eq!(core::mem::size_of::<PortEntry>(), 64);
        assert!(crate::status::STATUS_OFFSET + core::mem::size_of::<crate::status::StatusPage>() <= 0x100);
        assert_eq!(PORT_CTRL_SIZE, 0xcd8);
    }

    #[test]
    fn attestation_requests_parse_or_say_why_not() {
        use crate::attestation::{OP_EVIDENCE, OP_MEASURE, OP_VERSION};
        assert_eq!(
            parse_attestation_request(AttestationRequest { operation: OP_VERSION }.as_bytes()),
            Ok(AttestationCall::Query { operation: OP_VERSION })
        );
        assert_eq!(parse_attestation_request(&[1, 0, 0]), Err(RequestError::Truncated { length: 3 }));
        assert_eq!(
            parse_attestation_request(AttestationRequest { operation: 99 }.as_bytes()),
            Err(RequestError::UnknownOperation { operation: 99 })
        );
        let mut evidence = EvidenceRequest { operation: OP_EVIDENCE, nonce_length: 48, nonce: [7; 64] };
        assert_eq!(parse_attestation_request(evidence.as_bytes()), Ok(AttestationCall::Evidence { nonce: &[7; 48] }));
        for length in [0, 31, 33, 65, u64::MAX] {
            evidence.nonce_length = length;
            assert_eq!(parse_attestation_request(evidence.as_bytes()), Err(RequestError::BadNonceLength { length }));
        }
        assert_eq!(
            parse_attestation_request(&evidence.as_bytes()[..40]),
            Err(RequestError::WrongSize { operation: OP_EVIDENCE, length: 40, expected: 80 })
        );
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"container");
        let mut measure = MeasureRequest { operation: OP_MEASURE, name, sha256: [3; 32] };
        assert_eq!(
            parse_attestation_request(measure.as_bytes()),
            Ok(AttestationCall::Measure { name: "container", sha256: [3; 32] })
        );
        for bad in [&b"Container"[..], b"", b"a b", b"kernel", b"bl"] {
            measure.name = [0; 16];
            measure.name[..bad.len()].copy_from_slice(bad);
            assert_eq!(parse_attestation_request(measure.as_bytes()), Err(RequestError::BadName), "{bad:?}");
        }
        measure.name = *b"ab\0cdefghijklmno";
        assert_eq!(parse_attestation_request(measure.as_bytes()), Err(RequestError::BadName), "bytes after the NUL");
        let mut update = crate::update::UpdateRequest {
            operation: crate::attestation::OP_UPDATE,
            length: 672,
            manifest: [9; crate::update::MANIFEST_BYTES],
        };
        assert_eq!(parse_attestation_request(update.as_bytes()), Ok(AttestationCall::Update { manifest: &[9; 672] }));
        update.length = 10;
        assert_eq!(parse_attestation_request(update.as_bytes()), Ok(AttestationCall::Update { manifest: &[9; 10] }));
        for length in [673, u64::MAX] {
            update.length = length;
            assert_eq!(parse_attestation_request(update.as_bytes()), Err(RequestError::BadManifestLength { length }));
        }
        assert!(matches!(parse_attestation_request(&update.as_bytes()[..100]), Err(RequestError::WrongSize { .. })));
        // An OP_VERSION with trailing bytes is no OP_VERSION.
        let mut long = [0u8; 16];
        long[0] = OP_VERSION as u8;
        assert!(matches!(parse_attestation_request(&long), Err(RequestError::WrongSize { .. })));
    }

    #[test]
    fn names_round_trip() {
        let entry = PortEntry { name: encode_name("echo").unwrap(), ..Default::default() };
        assert_eq!(entry.name(), Some("echo"));
        assert!(encode_name("").is_none());
        assert!(encode_name("a-name-longer-than-24-bytes").is_none());
        assert!(encode_name("nul\0").is_none());
    }

    #[test]
    fn faults_name_the_ring_and_the_lie() {
        let fault = PortFault::new(PortFault::RX, ring::PeerMisbehaviour::BadLength);
        assert_eq!(fault.misbehaviour(), Some(ring::PeerMisbehaviour::BadLength));
        assert_eq!(std::format!("{fault}"), "rx ring: a ring record has an impossible length");
    }
}
