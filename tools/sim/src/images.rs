//! The PD programs the simulator can run: system.xml's `program_image` names the ELF that
//! `make -f build.mk pds` builds; here it names the same PD's library crate.

use std::sync::Arc;

use microkit::sim::Kernel;

/// Starts PD `index` of the kernel with one program's `init`.
pub(crate) type Start = fn(&Arc<Kernel>, usize);

/// Every image the simulator knows, by the name system.xml uses.
pub const KNOWN_IMAGES: &[&str] = &["comm-pd.elf", "attestation-pd.elf", "rt-task.elf"];

pub(crate) fn lookup(image: &str) -> Option<Start> {
    // One line per PD crate: adding a PD to system.xml means adding it here too.
    let start: Start = match image {
        "comm-pd.elf" => |kernel, index| drop(kernel.start(index, comm_pd::init)),
        "attestation-pd.elf" => |kernel, index| drop(kernel.start(index, attestation_pd::init)),
        "rt-task.elf" => |kernel, index| drop(kernel.start(index, rt_task::init)),
        _ => return None,
    };
    Some(start)
}
