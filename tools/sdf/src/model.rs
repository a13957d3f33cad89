//! The system as system.xml describes it, after Microkit 2.3.0's own checks.

use serde::Serialize;
use std::fmt;

/// Where something was written: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A parsed, Microkit-valid system description.
#[derive(Debug, Clone, Serialize)]
pub struct System {
    pub protection_domains: Vec<ProtectionDomain>,
    pub memory_regions: Vec<MemoryRegion>,
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProtectionDomain {
    pub name: String,
    pub priority: u8,
    /// Microseconds.
    pub budget: u64,
    /// Microseconds.
    pub period: u64,
    pub passive: bool,
    pub stack_size: u64,
    pub smc: bool,
    pub cpu: u8,
    pub fpu: bool,
    pub program_image: String,
    pub maps: Vec<Map>,
    pub irqs: Vec<Irq>,
    /// Every `setvar_*` symbol the microkit tool patches into this PD's image.
    pub setvars: Vec<SetVar>,
    /// Index of the parent PD and this PD's id there, for nested PDs.
    pub parent: Option<(usize, u8)>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, c) in [(self.read, 'r'), (self.write, 'w'), (self.execute, 'x')] {
            if set {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Map {
    pub mr: String,
    pub vaddr: u64,
    pub perms: Perms,
    pub cached: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Level,
    Edge,
}

#[derive(Debug, Clone, Serialize)]
pub struct Irq {
    /// The interrupt number (GIC INTID on Arm).
    pub irq: u64,
    /// The channel id it is delivered on.
    pub id: u8,
    pub trigger: Trigger,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SetVarValue {
    /// The virtual address of a mapping.
    Vaddr { address: u64 },
    /// The size of a mapped region.
    Size { region: String, size: u64 },
    /// A channel or IRQ id.
    Id { id: u8 },
    /// The physical address of a region.
    Paddr { region: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct SetVar {
    pub symbol: String,
    pub value: SetVarValue,
}

impl SetVar {
    /// The number the tool writes into the symbol, when it is known before the tool allocates
    /// memory (everything but the physical address of a region without `phys_addr`).
    pub fn known_value(&self, system: &System) -> Option<u64> {
        match &self.value {
            SetVarValue::Vaddr { address } => Some(*address),
            SetVarValue::Size { size, .. } => Some(*size),
            SetVarValue::Id { id } => Some(u64::from(*id)),
            SetVarValue::Paddr { region } => system.region(region).and_then(|r| r.phys_addr),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryRegion {
    pub name: String,
    pub size: u64,
    pub page_size: u64,
    pub phys_addr: Option<u64>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelEnd {
    /// Index into `System::protection_domains`.
    pub pd: usize,
    pub id: u8,
    /// This end may notify the other.
    pub notify: bool,
    /// This end may make protected procedure calls to the other.
    pub pp: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub ends: [ChannelEnd; 2],
    pub pos: Pos,
}

impl System {
    pub fn pd(&self, name: &str) -> Option<&ProtectionDomain> {
        self.protection_domains.iter().find(|pd| pd.name == name)
    }

    pub fn pd_index(&self, name: &str) -> Option<usize> {
        self.protection_domains.iter().position(|pd| pd.name == name)
    }

    pub fn region(&self, name: &str) -> Option<&MemoryRegion> {
        self.memory_regions.iter().find(|mr| mr.name == name)
    }

    /// The channel ends held by PD `pd`, each with the end at the other side.
    pub fn channel_ends_of(&self, pd: usize) -> impl Iterator<Item = (&ChannelEnd, &ChannelEnd)> {
        self.channels.iter().filter_map(move |ch| {
            let [a, b] = &ch.ends;
            if a.pd == pd {
                Some((a, b))
            } else if b.pd == pd {
                Some((b, a))
            } else {
                None
            }
        })
    }
}
