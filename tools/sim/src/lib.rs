//! `tzmk sim`: the secure world of system.xml, on the host.
//!
//! Each PD runs on its own thread over the `microkit` runtime's host backend (seL4's semantics
//! for notifications, IRQs, protected procedure calls and faults: see `microkit::sim`); each
//! memory region is shared memory, mapped once per `<map>` with that map's permissions. The
//! regions system.xml shares with the normal world are files in the run directory, and a
//! normal-world process attaches through `sim.sock` ([`attach`]) to get the kick and doorbell
//! eventfds: the very protocol linux-side speaks to the kernel driver on hardware.
//!
//! docs/simulator.md describes the run directory and the attach protocol.

pub mod attach;
mod boot;
mod images;
mod memory;
mod monitor;

use std::collections::HashMap;
use std::fmt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use microkit::sim::{ChannelConfig, Event, IrqConfig, Kernel, PdConfig};
use tzmk_sdf::model::SetVarValue;
use tzmk_sdf::System;
use zerocopy::IntoBytes;

pub use images::KNOWN_IMAGES;

/// Why the simulator could not start.
#[derive(Debug)]
pub enum SimError {
    /// system.xml or the platform file cannot be read, or is not XML (TOML): the audit's own
    /// message. `tzmk audit` exits 2 for these, and so do `tzmk sim` and `tzmk demo`.
    Unreadable(String),
    /// system.xml is not a valid Microkit system: the audit's own message, `file:line:col: ...`.
    System(String),
    /// system.xml breaks tzmk's isolation rules; one audit line each.
    Violations(Vec<String>),
    /// A `program_image` the simulator has no PD for.
    UnknownImage { pd: String, image: String },
    /// The run directory cannot be used.
    RunDir { path: PathBuf, reason: String },
    /// The host refused a resource (memory, eventfd, socket, thread).
    Host(String),
    /// A PD faulted before it was ready.
    FaultAtBoot { pd: String, reason: String },
    /// The kernel model refused the configuration.
    Kernel(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Unreadable(message) | SimError::System(message) => f.write_str(message),
            SimError::Violations(lines) => {
                write!(f, "{} isolation violation(s); `tzmk audit` explains each:", lines.len())?;
                for line in lines {
                    write!(f, "\n{line}")?;
                }
                Ok(())
            }
            SimError::UnknownImage { pd, image } => write!(
                f,
                "PD '{pd}' runs program image '{image}', which the simulator does not know (it knows: {})",
                KNOWN_IMAGES.join(", ")
            ),
            SimError::RunDir { path, reason } => write!(f, "run directory {}: {reason}", path.display()),
            SimError::Host(message) => f.write_str(message),
            SimError::FaultAtBoot { pd, reason } => write!(f, "PD '{pd}' faulted before it was ready: {reason}"),
            SimError::Kernel(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for SimError {}

/// Where the simulator was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub system: PathBuf,
    /// The platform description; `None` is the built-in QEMU virt one.
    pub platform: Option<PathBuf>,
    pub run_dir: PathBuf,
}

/// A running simulated secure world. Dropping it shuts it down and removes the run directory's
/// files.
pub struct Simulator {
    kernel: Arc<Kernel>,
    events: mpsc::Receiver<Event>,
    run_dir: memory::RunDir,
    attach: attach::Server,
    _regions: memory::Regions,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator").field("run_dir", &self.run_dir.path()).finish_non_exhaustive()
    }
}

/// How long a PD may take in `init` before the simulator gives up on it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(10);

impl Simulator {
    /// Builds and starts the system, and waits until every PD is ready.
    pub fn start(options: &Options) -> Result<Simulator, SimError> {
        let platform =
            tzmk_sdf::load_platform(options.platform.as_deref()).map_err(|d| SimError::Unreadable(d.to_string()))?;
        let system = tzmk_sdf::load_system(&options.system).map_err(|e| match e {
            tzmk_sdf::LoadError::Unreadable(d) => SimError::Unreadable(d.to_string()),
            tzmk_sdf::LoadError::Invalid(d) => SimError::System(d.to_string()),
        })?;
        let file = options.system.display().to_string();
        let violations = tzmk_sdf::audit(&system, &platform);
        if !violations.is_empty() {
            return Err(SimError::Violations(
                violations.iter().map(|v| tzmk_sdf::format_violation(&file, v)).collect(),
            ));
        }
        let images = system
            .protection_domains
            .iter()
            .map(|pd| {
                images::lookup(&pd.program_image)
                    .ok_or_else(|| SimError::UnknownImage { pd: pd.name.clone(), image: pd.program_image.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;

        // The monitor model's trusted boot, before any PD runs (as stage 1 runs before seL4).
        let partition = tzmk_sdf::partition::Partition::compute(&system, &platform).map_err(SimError::System)?;
        let system_xml = std::fs::read(&options.system)
            .map_err(|e| SimError::Unreadable(format!("{}: {e}", options.system.display())))?;
        let booted = boot::boot(&system_xml, &partition)?;

        let run_dir = memory::RunDir::create(&options.run_dir)?;
        let regions = memory::Regions::create(&system, &platform, &run_dir)?;
        if system.region("boot_handoff").is_some() {
            regions.write("boot_handoff", 0, booted.handoff.as_bytes())?;
            boot::write_refs(&run_dir.refs(), &booted.refs)?;
        }
        let configs = pd_configs(&system, &regions);

        let kick_irq = platform.interrupt_named("kick").map(|i| i.intid);
        let (monitor, doorbells) = monitor::SimMonitor::new();
        let (sender, events) = mpsc::channel();
        let kernel = Kernel::new(configs, monitor, sender).map_err(|e| SimError::Kernel(e.to_string()))?;
        let attach = attach::Server::start(&run_dir, kernel.clone(), kick_irq, doorbells)?;

        for (index, image) in images.into_iter().enumerate() {
            image(&kernel, index);
        }
        let mut simulator = Simulator { kernel, events, run_dir, attach, _regions: regions };
        simulator.wait_until_ready()?;
        Ok(simulator)
    }

    fn wait_until_ready(&mut self) -> Result<(), SimError> {
        let mut waiting: Vec<&str> = self.kernel.pds().iter().map(|pd| pd.name()).collect();
        while !waiting.is_empty() {
            match self.events.recv_timeout(BOOT_TIMEOUT) {
                Ok(Event::Ready { pd }) => waiting.retain(|name| *name != pd),
                Ok(Event::Fault { pd, reason }) => return Err(SimError::FaultAtBoot { pd, reason }),
                Err(_) => {
                    return Err(SimError::Host(format!(
                        "PDs not ready after {} s: {}",
                        BOOT_TIMEOUT.as_secs(),
                        waiting.join(", ")
                    )))
                }
            }
        }
        Ok(())
    }

    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The next thing that happens to a PD after boot (faults), waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Stops every PD and removes what the simulator created.
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.attach.stop();
        self.kernel.shutdown();
        // Give PD threads a moment to leave their handlers; none holds files we remove.
        thread::sleep(Duration::from_millis(10));
    }
}

/// The kernel model's view of each PD: routes, IRQs and every setvar symbol's value.
fn pd_configs(system: &System, regions: &memory::Regions) -> Vec<PdConfig> {
    system
        .protection_domains
        .iter()
        .enumerate()
        .map(|(index, pd)| {
            let mut setvars = HashMap::new();
            for setvar in &pd.setvars {
                let value = match &setvar.value {
                    // The host address of this PD's mapping at that vaddr.
                    SetVarValue::Vaddr { address } => pd
                        .maps
                        .iter()
                        .find(|map| map.vaddr == *address)
                        .and_then(|map| regions.address_of(index, &map.mr)),
                    SetVarValue::Paddr { region } => {
                        system.region(region).and_then(|mr| mr.phys_addr).or_else(|| regions.first_address(region))
                    }
                    _ => setvar.known_value(system),
                };
                if let Some(value) = value {
                    setvars.insert(setvar.symbol.clone(), value);
                }
            }
            let channels = system
                .channel_ends_of(index)
                .map(|(mine, theirs)| ChannelConfig {
                    id: mine.id,
                    peer: theirs.pd,
                    peer_id: theirs.id,
                    notify: mine.notify,
                    pp: mine.pp,
                })
                .collect();
            let irqs = pd.irqs.iter().map(|irq| IrqConfig { id: irq.id, irq: irq.irq }).collect();
            PdConfig {
                name: pd.name.clone(),
                priority: pd.priority,
                passive: pd.passive,
                smc: pd.smc,
                setvars,
                channels,
                irqs,
            }
        })
        .collect()
}

/// Prints the simulator's fault reports for PDs: a panic on a PD's thread names that PD. A panic
/// anywhere else is a bug of the host tool (`tool`) itself and says so: it is never reported as a
/// fault of a PD.
pub fn install_fault_reporter(tool: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("{}", panic_report(tool, Kernel::current_pd_name(), location.as_deref(), &message));
    }));
}

/// The line [`install_fault_reporter`] prints for a panic on PD `pd`'s thread (or on no PD's).
pub fn panic_report(tool: &str, pd: Option<&str>, location: Option<&str>, message: &str) -> String {
    let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
    match pd {
        Some(pd) => format!("tzmk-sim: fault in PD '{pd}'{at}: {message}"),
        None => format!("{tool}: internal error{at}: {message} (a bug of {tool} itself, not a fault of any PD)"),
    }
}

/// Reads the doorbell eventfd's counter, for callers that poll it.
pub(crate) fn fd_is_readable(fd: impl AsFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    matches!(poll(&mut fds, PollTimeout::from(millis)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::panic_report;

    #[test]
    fn a_panic_off_every_pd_thread_is_the_tools_own() {
        assert_eq!(
            panic_report("tzmk demo", None, Some("tools/tzmk/src/demo.rs:80"), "index out of bounds"),
            "tzmk demo: internal error at tools/tzmk/src/demo.rs:80: index out of bounds (a bug of tzmk demo itself, \
             not a fault of any PD)"
        );
        let report = panic_report("tzmk sim", Some("comm-pd"), None, "overflow");
        assert_eq!(report, "tzmk-sim: fault in PD 'comm-pd': overflow");
        assert!(!panic_report("tzmk sim", None, None, "x").contains("PD '"));
    }
}
