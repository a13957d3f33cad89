//! The PD programs the simulator can run: system.xml's `program_image` names the ELF that
//! `make -f build.mk pds` builds; here it names the same PD's library crate. The registry is
//! generated from the repository's system.xml (build.rs), so adding a PD edits nothing here.

use std::sync::Arc;

use microkit::sim::Kernel;

/// Starts PD `index` of the kernel with one program's `init`.
pub(crate) type Start = fn(&Arc<Kernel>, usize);

include!(concat!(env!("OUT_DIR"), "/images.rs"));
