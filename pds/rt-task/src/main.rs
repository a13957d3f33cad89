//! rt-task on seL4: the entry and nothing else; the logic is the `rt_task` library.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

microkit::protection_domain!(rt_task::init);
