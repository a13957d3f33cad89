//! The PD on seL4: the entry and nothing else; the logic is the library.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

microkit::protection_domain!(pd_template::init);
