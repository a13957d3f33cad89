//! Memory regions as shared memory, and the run directory that holds the normal world's view.
//!
//! A region the normal world can reach (it lies in the platform's shared window) is a file
//! `<run-dir>/regions/<name>`, so a normal-world process maps the very bytes comm-pd maps. Every
//! other region is an anonymous memfd that no other process can open. Each `<map>` is a separate
//! `mmap` with that map's permissions, so a PD writing through a read-only map faults the
//! simulator as it would fault on seL4.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, MapFlags, ProtFlags};
use tzmk_sdf::audit::reachable_by_normal_world;
use tzmk_sdf::{Platform, System};

use crate::SimError;

/// The run directory, and what the simulator created in it (removed on drop).
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
    /// The directories this simulator created, the run directory first and its topmost missing
    /// ancestor last: removed in that order on drop (each only if empty), so that what existed
    /// before stays and nothing else is removed.
    created: Vec<PathBuf>,
}

impl RunDir {
    pub(crate) fn create(path: &Path) -> Result<RunDir, SimError> {
        let fail = |reason: String| SimError::RunDir { path: path.to_owned(), reason };
        let created = match fs::read_dir(path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(fail(
                        "exists and is not empty (another simulator, or a stale one: remove it or pick another \
                         --run-dir)"
                            .into(),
                    ));
                }
                Vec::new()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let missing: Vec<PathBuf> = path
                    .ancestors()
                    .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
                    .map(Path::to_path_buf)
                    .collect();
                fs::create_dir_all(path).map_err(|e| fail(format!("cannot create: {e}")))?;
                missing
            }
            Err(e) => return Err(fail(format!("cannot read: {e}"))),
        };
        let dir = RunDir { path: path.to_owned(), created };
        fs::create_dir(dir.regions()).map_err(|e| fail(format!("cannot create regions/: {e}")))?;
        Ok(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn regions(&self) -> PathBuf {
        self.path.join("regions")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.path.join(crate::attach::SOCKET_NAME)
    }

    /// The reference values of the simulated device (the monitor model's boot).
    pub(crate) fn refs(&self) -> PathBuf {
        self.path.join(REFS_NAME)
    }
}

/// The run directory's reference values file.
pub(crate) const REFS_NAME: &str = "refs.json";

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.socket());
        let _ = fs::remove_file(self.path.join(crate::attach::CONTROL_LOCK));
        let _ = fs::remove_file(self.refs());
        let _ = fs::remove_dir_all(self.regions());
        for dir in &self.created {
            // Not remove_dir_all: a directory someone else put files in meanwhile stays.
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// Every region's backing and every PD's mapping of it.
#[derive(Debug)]
pub(crate) struct Regions {
    /// (PD index, region name) -> host address of that PD's mapping.
    mappings: HashMap<(usize, String), u64>,
    first: HashMap<String, u64>,
    /// Each region's memfd or file, by name.
    by_name: HashMap<String, std::os::fd::RawFd>,
    /// Kept open for the simulator's life. The mappings are never unmapped: a PD thread may still
    /// touch them while the simulator shuts down, and the process ends soon after.
    _backing: Vec<OwnedFd>,
}

impl Regions {
    pub(crate) fn create(system: &System, platform: &Platform, run_dir: &RunDir) -> Result<Regions, SimError> {
        let host = |what: String| SimError::Host(what);
        let mut backing = HashMap::new();
        for mr in &system.memory_regions {
            let fd: OwnedFd = if reachable_by_normal_world(platform, mr) {
                let path = run_dir.regions().join(&mr.name);
                let file: File = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| host(format!("{}: {e}", path.display())))?;
                file.set_len(mr.size).map_err(|e| host(format!("{}: {e}", path.display())))?;
                file.into()
            } else {
                let name = CString::new(format!("tzmk-{}", mr.name)).map_err(|e| host(e.to_string()))?;
                let fd = memfd_create(name.as_c_str(), MFdFlags::MFD_CLOEXEC)
                    .map_err(|e| host(format!("memfd {}: {e}", mr.name)))?;
                nix::unistd::ftruncate(&fd, mr.size as i64).map_err(|e| host(format!("memfd {}: {e}", mr.name)))?;
                fd
            };
            backing.insert(mr.name.clone(), fd);
        }
        let mut mappings = HashMap::new();
        let mut first = HashMap::new();
        for (index, pd) in system.protection_domains.iter().enumerate() {
            for map in &pd.maps {
                let (Some(mr), Some(fd)) = (system.region(&map.mr), backing.get(&map.mr)) else { continue };
                let mut prot = ProtFlags::empty();
                if map.perms.read {
                    prot |= ProtFlags::PROT_READ;
                }
                if map.perms.write {
                    prot |= ProtFlags::PROT_WRITE;
                }
                if map.perms.execute {
                    prot |= ProtFlags::PROT_EXEC;
                }
                let length =
                    NonZeroUsize::new(mr.size as usize).ok_or_else(|| host(format!("region {} is empty", mr.name)))?;
                // SAFETY: a fresh shared mapping of a file or memfd the simulator owns, at an address
                // the kernel chooses; nothing else in the process refers to that range.
                let address = unsafe { mmap(None, length, prot, MapFlags::MAP_SHARED, fd.as_fd(), 0) }
                    .map_err(|e| host(format!("mapping {} into {}: {e}", mr.name, pd.name)))?;
                let address = address.as_ptr() as u64;
                mappings.insert((index, map.mr.clone()), address);
                first.entry(map.mr.clone()).or_insert(address);
            }
        }
        let by_name = backing.iter().map(|(name, fd)| (name.clone(), fd.as_raw_fd())).collect();
        Ok(Regions { mappings, first, by_name, _backing: backing.into_values().collect() })
    }

    pub(crate) fn address_of(&self, pd: usize, region: &str) -> Option<u64> {
        self.mappings.get(&(pd, region.to_owned())).copied()
    }

    /// Writes `bytes` at `offset` of region `name`'s memory, before any PD runs (the monitor
    /// model's boot handoff).
    pub(crate) fn write(&self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), SimError> {
        let fd = self.by_name.get(name).ok_or_else(|| SimError::Host(format!("no region {name}")))?;
        // SAFETY: the descriptor is one of `_backing`'s, open for the simulator's life.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        let written = nix::sys::uio::pwrite(fd, bytes, offset as i64)
            .map_err(|e| SimError::Host(format!("writing region {name}: {e}")))?;
        if written != bytes.len() {
            return Err(SimError::Host(format!("region {name}: {written} of {} bytes written", bytes.len())));
        }
        Ok(())
    }

    pub(crate) fn first_address(&self, region: &str) -> Option<u64> {
        self.first.get(region).copied()
    }
}
