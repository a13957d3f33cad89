//! The IPC buffer page the microkit tool maps into every PD, and the message registers in it.
//!
//! Message registers 0..=3 travel in x2..x5; the kernel reads and writes the others in the IPC
//! buffer. As libsel4 does, all of them live in the buffer between system calls: a transfer loads
//! MR0..3 into registers before the call and stores them back after. A borrow flag makes Rust
//! references into the buffer and system calls (during which the kernel writes it) exclusive.

use core::cell::RefCell;
use core::mem::{offset_of, size_of};
use core::ptr;

use super::PdLocal;
use crate::MAX_MESSAGE_REGISTERS;

/// `seL4_MsgMaxExtraCaps`.
const MAX_EXTRA_CAPS: usize = 3;
/// `seL4_PageBits` on AArch64.
const PAGE_SIZE: usize = 4096;

/// The top page of user memory (Microkit's `pd_ipc_buffer`, libmicrokit's `__sel4_ipc_buffer`):
/// see `crate::sel4_abi::IPC_BUFFER`.
const IPC_BUFFER_ADDRESS: usize = crate::sel4_abi::IPC_BUFFER as usize;

/// seL4's `seL4_IPCBuffer` (`libsel4/include/sel4/shared_types.h`). Only `msg` is used here; the
/// other fields are spelled out so the layout is checkably seL4's.
#[repr(C)]
#[allow(dead_code)]
struct IpcBuffer {
    tag: u64,
    msg: [u64; MAX_MESSAGE_REGISTERS],
    user_data: u64,
    caps_or_badges: [u64; MAX_EXTRA_CAPS],
    receive_cnode: u64,
    receive_index: u64,
    receive_depth: u64,
}

const _: () = assert!(size_of::<IpcBuffer>() <= PAGE_SIZE);
const _: () = assert!(offset_of!(IpcBuffer, msg) == 8);
const _: () = assert!(IPC_BUFFER_ADDRESS.is_multiple_of(PAGE_SIZE));

/// Registers x2..x5 of a message transfer (`seL4_FastMessageRegisters`).
pub(super) const REGISTER_MESSAGE_REGISTERS: usize = 4;

fn ipc_buffer() -> *mut IpcBuffer {
    // The page is mapped by the tool, not allocated by Rust: its address is exposed by definition.
    ptr::with_exposed_provenance_mut(IPC_BUFFER_ADDRESS)
}

/// Who holds the message registers: shared readers, one writer, or a system call in flight.
static MESSAGE_REGISTERS: PdLocal<RefCell<()>> = PdLocal::new(RefCell::new(()));

const BORROWED_ACROSS_SYSCALL: &str =
    "the message registers are borrowed across a system call (pp_call, smc_call or a nested access)";

pub(super) fn with_msg_regs<T>(f: impl FnOnce(&[u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    let _shared = MESSAGE_REGISTERS.get().try_borrow().expect(BORROWED_ACROSS_SYSCALL);
    // SAFETY: the tool maps the IPC buffer page read-write at IPC_BUFFER_ADDRESS for the PD's whole
    // life; the flag guarantees no `&mut` and no system call (kernel write) overlaps this borrow.
    let regs = unsafe { &(*ipc_buffer()).msg };
    f(regs)
}

pub(super) fn with_msg_regs_mut<T>(f: impl FnOnce(&mut [u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    let _exclusive = MESSAGE_REGISTERS.get().try_borrow_mut().expect(BORROWED_ACROSS_SYSCALL);
    // SAFETY: as in `with_msg_regs`; the exclusive flag rules out any other reference.
    let regs = unsafe { &mut (*ipc_buffer()).msg };
    f(regs)
}

/// Runs a message-transferring system call: hands it MR0..3 for x2..x5 and stores what the kernel
/// left there back into the buffer. No Rust reference into the buffer exists while `syscall` runs,
/// which is what the `unsafe` system calls in `syscalls` require.
pub(super) fn transfer<T>(syscall: impl FnOnce(&mut [u64; REGISTER_MESSAGE_REGISTERS]) -> T) -> T {
    let _in_flight = MESSAGE_REGISTERS.get().try_borrow_mut().expect(BORROWED_ACROSS_SYSCALL);
    let msg = ipc_buffer().cast::<u64>().wrapping_byte_add(offset_of!(IpcBuffer, msg));
    let mut registers = [0; REGISTER_MESSAGE_REGISTERS];
    for (index, register) in registers.iter_mut().enumerate() {
        // SAFETY: `msg + index` (index < 4) lies in the mapped, aligned IPC buffer; no reference
        // aliases it while the flag is held.
        *register = unsafe { msg.add(index).read() };
    }
    let result = syscall(&mut registers);
    for (index, register) in registers.iter().enumerate() {
        // SAFETY: as above.
        unsafe { msg.add(index).write(*register) };
    }
    result
}
