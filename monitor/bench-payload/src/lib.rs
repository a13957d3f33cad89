//! The EL3 monitor's bench: which SMCs the normal-world payload times and the serial lines it reports them in.
//!
//! The bare-metal payload (`src/bin/bench-payload`) writes the lines; the host runner
//! (`benches/monitor.rs`) parses them ([`report`]) and prints the table. Both use the types here,
//! so the line format has one definition. The secure image (`src/bin/bench-secure`) prints, on
//! the secure UART, when it fails ([`SECURE_FAILED`]) and, in the update bench's run only, its
//! update lines ([`UpdateLine`]). docs/monitor-bench.md explains the measurement.
#![cfg_attr(target_os = "none", no_std)]

use core::fmt;
use core::str::FromStr;

use tzmk_interface::smc;

#[cfg(not(target_os = "none"))]
pub mod image;
#[cfg(not(target_os = "none"))]
pub mod qemu;
#[cfg(not(target_os = "none"))]
pub mod report;

/// Calls per timed loop (and per empty loop).
pub const ITERATIONS: u64 = 10_000;

/// Every line the payload prints starts with this.
pub const PREFIX: &str = "bench-monitor:";
/// The payload's last line when every call was timed (SYSTEM_OFF follows).
pub const DONE: &str = "bench-monitor: done";
/// The start of the payload's last line when something went wrong; the reason follows.
pub const FAILED: &str = "bench-monitor: failed:";

// The secure image's addresses (the platform's, through build.rs): `SECURE_ENTRY`,
// `SECURE_FOOTPRINT`, `GIC_DISTRIBUTOR_BASE`, `SECURE_UART_BASE`.
include!(concat!(env!("OUT_DIR"), "/layout.rs"));

/// The start of the secure image's line, on the secure UART, when it cannot do its part (`go`
/// refused, an exception, a panic); the reason follows. Silent when all is well, but for the
/// update bench's lines in that run.
pub const SECURE_FAILED: &str = "bench-secure: failed:";

/// A SiP function the monitor does not implement: it must answer SMCCC `NOT_SUPPORTED`.
pub const UNKNOWN_SIP: u32 = 0xc200_0fff;

const _: () = {
    let id = smc::FunctionId(UNKNOWN_SIP);
    assert!(id.owner() == smc::OWNER_SIP && id.is_fast() && id.is_smc64());
    assert!(UNKNOWN_SIP != smc::NOTIFY_SECURE && UNKNOWN_SIP != smc::NOTIFY_NORMAL && UNKNOWN_SIP != smc::GO);
};

/// PSCI `SYSTEM_OFF` (PSCI 1.1, Arm DEN 0022, 5.1.9): the payload's way out, which ends QEMU.
pub const SYSTEM_OFF: u32 = smccc::psci::PSCI_SYSTEM_OFF;

/// One SMC the payload times: the function id goes in w0, `x1` in x1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The name in the payload's line and the runner's table (no spaces).
    pub name: &'static str,
    pub function_id: u32,
    pub x1: u64,
}

/// The calls, in the order the payload times them.
pub const CALLS: [Call; 4] = [
    Call { name: "PSCI_VERSION", function_id: smccc::psci::PSCI_VERSION, x1: 0 },
    Call { name: "SMCCC_VERSION", function_id: smccc::arch::SMCCC_VERSION, x1: 0 },
    Call { name: "unknown_SiP", function_id: UNKNOWN_SIP, x1: 0 },
    Call { name: "notify_secure", function_id: smc::NOTIFY_SECURE, x1: 0 },
];

const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;

/// The generic counter as the payload reads it (CNTVCT_EL0 at CNTFRQ_EL0 Hz).
///
/// Under QEMU's `-icount shift=0` every instruction advances virtual time by 2^0 ns, so a tick is
/// 10^9 / frequency instructions: 16 at the 62.5 MHz QEMU gives a Cortex-A53 or A57.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub frequency_hz: u64,
}

impl Counter {
    /// Instructions (virtual nanoseconds) in `ticks`.
    pub fn instructions(self, ticks: u64) -> u64 {
        (u128::from(ticks) * NANOSECONDS_PER_SECOND / self.divisor(1)) as u64
    }

    /// Instructions per tick, to one decimal.
    pub fn instructions_per_tick(self) -> Tenths {
        Tenths::rounded(10 * NANOSECONDS_PER_SECOND as i128, self.divisor(1))
    }

    /// Instructions one call costs beyond the empty loop's iteration, to one decimal: the
    /// difference of the two loops over the iterations.
    pub fn per_call(self, timing: &Timing, iterations: u64) -> Tenths {
        let difference = i128::from(timing.ticks) - i128::from(timing.empty_ticks);
        Tenths::rounded(difference * 10 * NANOSECONDS_PER_SECOND as i128, self.divisor(iterations))
    }

    fn divisor(self, iterations: u64) -> u128 {
        assert!(self.frequency_hz != 0 && iterations != 0, "a counter of 0 Hz or a loop of no calls");
        u128::from(self.frequency_hz) * u128::from(iterations)
    }
}

/// A signed count to one decimal, held in tenths: `Tenths(-123)` prints as `-12.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tenths(pub i64);

impl Tenths {
    /// `numerator / denominator` tenths, rounded half away from zero.
    fn rounded(numerator: i128, denominator: u128) -> Tenths {
        let denominator = denominator as i128;
        let half = denominator / 2;
        let value = if numerator >= 0 { (numerator + half) / denominator } else { (numerator - half) / denominator };
        Tenths(value as i64)
    }
}

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        write!(f, "{sign}{}.{}", magnitude / 10, magnitude % 10)
    }
}

/// A `Tenths` that does not read as `[-]digits.digit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTenths;

impl FromStr for Tenths {
    type Err = BadTenths;

    fn from_str(text: &str) -> Result<Tenths, BadTenths> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, tenth) = digits.split_once('.').ok_or(BadTenths)?;
        if whole.is_empty() || tenth.len() != 1 || !whole.bytes().chain(tenth.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(BadTenths);
        }
        let whole: i64 = whole.parse().map_err(|_| BadTenths)?;
        let magnitude = whole.checked_mul(10).and_then(|w| w.checked_add(i64::from(tenth.as_bytes()[0] - b'0')));
        let magnitude = magnitude.ok_or(BadTenths)?;
        Ok(Tenths(if negative { -magnitude } else { magnitude }))
    }
}

/// What timing one call measured: both loops' ticks and x0 after the last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ticks: u64,
    pub empty_ticks: u64,
    pub last_x0: u64,
}

/// The payload's first line: where it runs and its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLine {
    pub exception_level: u8,
    pub counter: Counter,
}

impl fmt::Display for StartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} start el={} cntfrq={} instructions_per_tick={}",
            self.exception_level,
            self.counter.frequency_hz,
            self.counter.instructions_per_tick()
        )
    }
}

/// The counter at the payload's first instruction: the time from reset to the normal world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetLine {
    pub counter: Counter,
    pub ticks: u64,
}

impl fmt::Display for ResetLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX} reset_to_entry ticks={} instructions={}", self.ticks, self.counter.instructions(self.ticks))
    }
}

/// One timed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLine<'a> {
    pub call: &'a Call,
    pub counter: Counter,
    pub iterations: u64,
    pub timing: Timing,
}

impl fmt::Display for CallLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} call={} id={:#x} x1={:#x} iterations={} ticks={} empty_ticks={} instructions_per_call={} last_x0={:#x}",
            self.call.name,
            self.call.function_id,
            self.call.x1,
            self.iterations,
            self.timing.ticks,
            self.timing.empty_ticks,
            self.counter.per_call(&self.timing, self.iterations),
            self.timing.last_x0
        )
    }
}

/// The secure image's update bench (docs/monitor-bench.md, "Update requests"): `bench-secure`
/// times `UPDATE_MANIFEST` before its `go` when the word at [`UPDATE_BENCH_FLAG`] holds this
/// value. The runner's third run has QEMU's loader put it there; RAM is zero otherwise.
pub const UPDATE_BENCH_MAGIC: u32 = 0x5444_5055;

/// Every line of the update bench starts with this (on the secure UART).
pub const UPDATE_PREFIX: &str = "bench-secure: update";
/// The update bench's last line; `go` follows.
pub const UPDATE_DONE: &str = "bench-secure: update done";
/// Calls a repeated update case is timed over (and its empty loop).
pub const UPDATE_ITERATIONS: u64 = 1_000;

/// The issue-20 rule's bound: EL3 instructions one update request may keep the secure core for
/// (docs/trusted-boot.md, "EL3 residency of an update request"), except a new candidate whose
/// claims pass, which costs one Ed25519 verification.
pub const UPDATE_BOUND: u64 = 5_000;

/// What one case puts in `manifest_update` before its calls: always the stored manifest (slot A)
/// first, then its change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    /// The stored manifest, unchanged.
    Stored,
    /// The stored manifest, one byte short.
    WrongLength,
    /// The magic's first byte changed on every call: a new candidate that does not parse.
    Unparsable,
    /// The security version 0, below the counter, and a signature byte changed on every call: a
    /// new rollback each call (the version is checked before the signature).
    Rollback,
    /// A bit of the signature's S flipped (in its second byte) and its first byte changed on
    /// every call: a new candidate whose claims all pass, so its signature is verified.
    BadSignature,
    /// Whatever the previous case left (the candidate it saw refused last), unchanged.
    Previous,
}

/// One case of the update bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateCase {
    /// The name in the line (no spaces).
    pub name: &'static str,
    pub candidate: Candidate,
    /// Calls timed (each loop).
    pub calls: u64,
    /// The row in the runner's table.
    pub description: &'static str,
    /// Whether the issue-20 bound applies ([`UPDATE_BOUND`]).
    pub bounded: bool,
}

/// Byte offset in a manifest of the header's security version (tzmk-trust `Header`).
pub const MANIFEST_SECURITY_VERSION_OFFSET: usize = 12;
/// Byte offset in a manifest of the signature's S half (tzmk-trust: the signature is the last 64
/// bytes, R then S); its first byte is S's least significant, so changing its low bits keeps S
/// canonical and the verification runs to its end.
pub const MANIFEST_SIGNATURE_S_OFFSET: usize = tzmk_interface::update::MANIFEST_BYTES - 32;

/// The cases, in the order the secure image times them ([`Candidate::Previous`] depends on it).
pub const UPDATE_CASES: [UpdateCase; 7] = [
    UpdateCase {
        name: "stored",
        candidate: Candidate::Stored,
        calls: UPDATE_ITERATIONS,
        description: "the stored manifest again (accepted, nothing written)",
        bounded: true,
    },
    UpdateCase {
        name: "wrong_length",
        candidate: Candidate::WrongLength,
        calls: UPDATE_ITERATIONS,
        description: "a wrong length (671 bytes)",
        bounded: true,
    },
    UpdateCase {
        name: "unparsable",
        candidate: Candidate::Unparsable,
        calls: UPDATE_ITERATIONS,
        description: "a new unparsable candidate each call (bad magic)",
        bounded: true,
    },
    UpdateCase {
        name: "rollback",
        candidate: Candidate::Rollback,
        calls: UPDATE_ITERATIONS,
        description: "a new rollback each call (security version 0 < counter 1)",
        bounded: true,
    },
    UpdateCase {
        name: "rollback_again",
        candidate: Candidate::Previous,
        calls: UPDATE_ITERATIONS,
        description: "the last refused candidate again (that rollback)",
        bounded: true,
    },
    UpdateCase {
        name: "bad_signature",
        candidate: Candidate::BadSignature,
        calls: 4,
        description: "first sight of a bad signature (claims pass: one Ed25519 verification)",
        bounded: false,
    },
    UpdateCase {
        name: "bad_signature_again",
        candidate: Candidate::Previous,
        calls: UPDATE_ITERATIONS,
        description: "the last refused candidate again (that bad signature)",
        bounded: true,
    },
];

/// The update bench's first line: the counter the secure core reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateStartLine {
    pub counter: Counter,
}

impl fmt::Display for UpdateStartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{UPDATE_PREFIX} start cntfrq={}", self.counter.frequency_hz)
    }
}

/// One timed update case: both loops' ticks and x0..x3 after the last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateLine<'a> {
    pub case: &'a UpdateCase,
    pub counter: Counter,
    pub length: u64,
    pub ticks: u64,
    pub empty_ticks: u64,
    pub x: [u64; 4],
}

impl fmt::Display for UpdateLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let timing = Timing { ticks: self.ticks, empty_ticks: self.empty_ticks, last_x0: self.x[0] };
        write!(
            f,
            "{UPDATE_PREFIX} case={} calls={} length={} ticks={} empty_ticks={} instructions_per_call={} x0={:#x} x1={:#x} x2={:#x} x3={:#x}",
            self.case.name,
            self.case.calls,
            self.length,
            self.ticks,
            self.empty_ticks,
            self.counter.per_call(&timing, self.case.calls),
            self.x[0],
            self.x[1],
            self.x[2],
            self.x[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_COUNTER: Counter = Counter { frequency_hz: 62_500_000 };

    #[test]
    fn a_tick_is_sixteen_instructions_at_62_5_mhz() {
        assert_eq!(QEMU_COUNTER.instructions(1), 16);
        assert_eq!(QEMU_COUNTER.instructions(487_500), 7_800_000);
        assert_eq!(QEMU_COUNTER.instructions_per_tick(), Tenths(160));
        assert_eq!(Counter { frequency_hz: 1_000_000_000 }.instructions_per_tick(), Tenths(10));
    }

    #[test]
    fn per_call_is_the_difference_of_the_loops_over_the_iterations() {
        // 10,000 calls of 170 instructions more than the empty loop's iteration: 106,250 ticks more.
        let timing = Timing { ticks: 106_250 + 3_750, empty_ticks: 3_750, last_x0: 0x1_0001 };
        assert_eq!(QEMU_COUNTER.per_call(&timing, ITERATIONS), Tenths(1700));
        // One tick more is 0.0016 instructions a call: below the printed resolution.
        let timing = Timing { ticks: 106_251 + 3_750, ..timing };
        assert_eq!(QEMU_COUNTER.per_call(&timing, ITERATIONS), Tenths(1700));
        let timing = Timing { ticks: 3_700, empty_ticks: 3_750, last_x0: 0 };
        assert_eq!(QEMU_COUNTER.per_call(&timing, ITERATIONS), Tenths(-1));
    }

    #[test]
    fn tenths_print_and_parse_back() {
        for (value, text) in [(0, "0.0"), (7, "0.7"), (-7, "-0.7"), (1703, "170.3"), (-1703, "-170.3")] {
            assert_eq!(Tenths(value).to_string(), text);
            assert_eq!(text.parse::<Tenths>(), Ok(Tenths(value)));
        }
        for bad in ["", "1", "1.", ".5", "1.23", "1,5", "--1.0", "+1.0", "a.b", "99999999999999999999.0"] {
            assert_eq!(bad.parse::<Tenths>(), Err(BadTenths), "{bad:?}");
        }
    }

    #[test]
    fn a_call_line_carries_the_answer_that_names_its_path() {
        // notify_secure with the secure world running answers SUCCESS (0), without one NO_SECURE_WORLD.
        let call = &CALLS[3];
        assert_eq!(call.function_id, smc::NOTIFY_SECURE);
        for (x0, text) in [(smc::SUCCESS, "0x0"), (smc::NO_SECURE_WORLD, "0xffffffffffffff00")] {
            let timing = Timing { ticks: 3_125 + 37_500, empty_ticks: 3_125, last_x0: x0 as u64 };
            let line = CallLine { call, counter: QEMU_COUNTER, iterations: ITERATIONS, timing }.to_string();
            assert_eq!(
                line,
                format!("bench-monitor: call=notify_secure id=0xc2000001 x1=0x0 iterations=10000 ticks=40625 empty_ticks=3125 instructions_per_call=60.0 last_x0={text}")
            );
        }
    }

    #[test]
    fn the_secure_image_lies_where_the_monitor_looks() {
        // monitor/platform/qemu-virt.toml: `secure_entry`, `gic-distributor`, `secure-uart`.
        assert_eq!(SECURE_ENTRY, 0x7000_0000);
        assert_eq!(GIC_DISTRIBUTOR_BASE, 0x0800_0000);
        assert_eq!(SECURE_UART_BASE, 0x0904_0000);
        const { assert!(SECURE_FOOTPRINT >= 4096 && SECURE_ENTRY.is_multiple_of(4096)) };
        // The secure image's line is never taken for the payload's.
        assert!(!SECURE_FAILED.starts_with(PREFIX) && SECURE_FAILED.ends_with("failed:"));
    }

    #[test]
    fn calls_are_distinct_and_named_without_spaces() {
        for (i, call) in CALLS.iter().enumerate() {
            assert!(!call.name.is_empty() && !call.name.contains(char::is_whitespace), "{call:?}");
            assert!(CALLS[..i]
                .iter()
                .all(|earlier| earlier.name != call.name && earlier.function_id != call.function_id));
        }
        assert!(CALLS.iter().all(|call| call.function_id != SYSTEM_OFF));
    }
}
