//! Each PD's full authority, as a reviewer reads it: text, JSON and a Graphviz picture.

use crate::audit::{driven_by_normal_world, placement, reachable_by_normal_world, Placement};
use crate::model::*;
use crate::platform::Platform;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct Authority {
    pub pds: Vec<PdAuthority>,
}

#[derive(Debug, Serialize)]
pub struct PdAuthority {
    pub name: String,
    pub program_image: String,
    pub priority: u8,
    pub budget_us: u64,
    pub period_us: u64,
    pub passive: bool,
    pub smc: bool,
    pub roles: Vec<&'static str>,
    /// Set when the normal world can make this PD run; the chain of PDs through which it can.
    pub driven_by_normal_world: Option<Vec<String>>,
    pub regions: Vec<RegionAuthority>,
    pub channels: Vec<ChannelAuthority>,
    pub irqs: Vec<IrqAuthority>,
}

#[derive(Debug, Serialize)]
pub struct RegionAuthority {
    pub region: String,
    pub perms: String,
    pub cached: bool,
    pub vaddr: u64,
    pub size: u64,
    pub phys_addr: Option<u64>,
    /// The platform range it lies in, or "seL4 RAM (allocated by the tool)".
    pub lies_in: String,
    pub normal_world_reachable: bool,
}

#[derive(Debug, Serialize)]
pub struct ChannelAuthority {
    pub id: u8,
    pub peer: String,
    pub peer_id: u8,
    pub notifies: bool,
    pub notified_by_peer: bool,
    pub calls_peer: bool,
    pub called_by_peer: bool,
}

#[derive(Debug, Serialize)]
pub struct IrqAuthority {
    pub id: u8,
    pub irq: u64,
    pub name: Option<String>,
    pub trigger: Trigger,
}

pub fn authority(system: &System, platform: &Platform) -> Authority {
    let driven = driven_by_normal_world(system, platform);
    let pds = system
        .protection_domains
        .iter()
        .enumerate()
        .map(|(index, pd)| {
            let has = |list: &[String]| list.iter().any(|n| n == &pd.name);
            let policy = &platform.policy;
            let roles = [
                (has(&policy.normal_facing), "normal-facing"),
                (has(&policy.secret_holders), "secret-holder"),
                (has(&policy.realtime), "real-time"),
            ]
            .into_iter()
            .filter_map(|(set, role)| set.then_some(role))
            .collect();
            let regions = pd
                .maps
                .iter()
                .filter_map(|map| {
                    let mr = system.region(&map.mr)?;
                    let lies_in = match placement(platform, mr) {
                        Placement::Allocated => "seL4 RAM (allocated by the tool)".to_owned(),
                        Placement::In(range) => range.name.clone(),
                        Placement::Unplaced => "no single platform range".to_owned(),
                    };
                    Some(RegionAuthority {
                        region: mr.name.clone(),
                        perms: map.perms.to_string(),
                        cached: map.cached,
                        vaddr: map.vaddr,
                        size: mr.size,
                        phys_addr: mr.phys_addr,
                        lies_in,
                        normal_world_reachable: reachable_by_normal_world(platform, mr),
                    })
                })
                .collect();
            let channels = system
                .channel_ends_of(index)
                .map(|(mine, theirs)| ChannelAuthority {
                    id: mine.id,
                    peer: system.protection_domains[theirs.pd].name.clone(),
                    peer_id: theirs.id,
                    notifies: mine.notify,
                    notified_by_peer: theirs.notify,
                    calls_peer: mine.pp,
                    called_by_peer: theirs.pp,
                })
                .collect();
            let irqs = pd
                .irqs
                .iter()
                .map(|irq| IrqAuthority {
                    id: irq.id,
                    irq: irq.irq,
                    name: platform.interrupt(irq.irq).map(|i| i.name.clone()),
                    trigger: irq.trigger,
                })
                .collect();
            PdAuthority {
                name: pd.name.clone(),
                program_image: pd.program_image.clone(),
                priority: pd.priority,
                budget_us: pd.budget,
                period_us: pd.period,
                passive: pd.passive,
                smc: pd.smc,
                roles,
                driven_by_normal_world: driven.get(&index).cloned(),
                regions,
                channels,
                irqs,
            }
        })
        .collect();
    Authority { pds }
}

impl Authority {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for pd in &self.pds {
            let _ = writeln!(
                out,
                "{}  ({})\n  priority {}, budget {} us every {} us{}{}",
                pd.name,
                pd.program_image,
                pd.priority,
                pd.budget_us,
                pd.period_us,
                if pd.passive { ", passive" } else { "" },
                if pd.smc { ", may call the EL3 monitor (smc)" } else { "" },
            );
            if !pd.roles.is_empty() {
                let _ = writeln!(out, "  roles: {}", pd.roles.join(", "));
            }
            match &pd.driven_by_normal_world {
                Some(chain) if chain.len() == 1 => {
                    let _ = writeln!(out, "  the normal world can drive it directly");
                }
                Some(chain) => {
                    let _ = writeln!(out, "  the normal world can drive it via {}", chain.join(" -> "));
                }
                None => {}
            }
            for r in &pd.regions {
                let _ = writeln!(
                    out,
                    "  region  {:<20} {:<3} {:<8} vaddr {:#010x} size {:#x} {}{}",
                    r.region,
                    r.perms,
                    if r.cached { "cached" } else { "uncached" },
                    r.vaddr,
                    r.size,
                    match r.phys_addr {
                        Some(p) => format!("paddr {p:#x} in {}", r.lies_in),
                        None => format!("in {}", r.lies_in),
                    },
                    if r.normal_world_reachable { "  [normal world can reach]" } else { "" },
                );
            }
            for c in &pd.channels {
                let mut how = Vec::new();
                if c.notifies {
                    how.push("notifies");
                }
                if c.notified_by_peer {
                    how.push("is notified");
                }
                if c.calls_peer {
                    how.push("calls (pp)");
                }
                if c.called_by_peer {
                    how.push("is called (pp)");
                }
                let how = if how.is_empty() { "no rights".to_owned() } else { how.join(", ") };
                let _ = writeln!(out, "  channel {:>2} <-> {} (its id {}): {how}", c.id, c.peer, c.peer_id);
            }
            for i in &pd.irqs {
                let _ = writeln!(
                    out,
                    "  irq     {:>2}  interrupt {}{} ({:?})",
                    i.id,
                    i.irq,
                    i.name.as_ref().map(|n| format!(" '{n}'")).unwrap_or_default(),
                    i.trigger
                );
            }
            out.push('\n');
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the authority report is always serialisable")
    }
}

/// A Graphviz picture: PDs and regions in the secure world, shared regions and Linux in the normal
/// world, with the boundary drawn between them.
pub fn to_dot(system: &System, platform: &Platform) -> String {
    let mut out = String::new();
    let id = |s: &str| s.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let _ = writeln!(out, "digraph tzmk {{");
    let _ = writeln!(
        out,
        "  graph [rankdir=LR, fontname=\"Helvetica\", label=\"tzmk: system.xml on {}\", labelloc=t];",
        platform.name
    );
    let _ = writeln!(out, "  node [fontname=\"Helvetica\", fontsize=11];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=9];");
    let _ = writeln!(out, "  subgraph cluster_secure {{");
    let _ = writeln!(
        out,
        "    label=\"secure world (seL4, cores {:?})\"; style=filled; color=\"#dfe8f5\";",
        platform.cores.secure
    );
    for pd in &system.protection_domains {
        let _ = writeln!(
            out,
            "    pd_{} [shape=box, style=\"rounded,filled\", fillcolor=white, label=\"{}\\nprio {} budget {}/{} us{}\"];",
            id(&pd.name),
            pd.name,
            pd.priority,
            pd.budget,
            pd.period,
            if pd.smc { "\\nsmc" } else { "" }
        );
    }
    for mr in system.memory_regions.iter().filter(|mr| !reachable_by_normal_world(platform, mr)) {
        let _ = writeln!(out, "    mr_{} [shape=cylinder, label=\"{}\\n{:#x} B\"];", id(&mr.name), mr.name, mr.size);
    }
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  subgraph cluster_normal {{");
    let _ = writeln!(
        out,
        "    label=\"normal world (Linux, cores {:?})\"; style=filled; color=\"#f5e3df\";",
        platform.cores.normal
    );
    let _ = writeln!(out, "    linux [shape=box, style=\"rounded,filled\", fillcolor=white, label=\"Linux\"];");
    for mr in system.memory_regions.iter().filter(|mr| reachable_by_normal_world(platform, mr)) {
        let _ = writeln!(
            out,
            "    mr_{} [shape=cylinder, label=\"{}\\n{:#x} B @ {:#x}\"];",
            id(&mr.name),
            mr.name,
            mr.size,
            mr.phys_addr.unwrap_or(0)
        );
        let _ = writeln!(out, "    linux -> mr_{} [dir=both, color=\"#b04030\", label=\"rw\"];", id(&mr.name));
    }
    let _ = writeln!(out, "  }}");
    for pd in &system.protection_domains {
        for map in &pd.maps {
            let _ = writeln!(
                out,
                "  pd_{} -> mr_{} [dir=both, arrowtail=none, label=\"{}\"];",
                id(&pd.name),
                id(&map.mr),
                map.perms
            );
        }
        for irq in &pd.irqs {
            let name = platform.interrupt(irq.irq).map_or_else(|| irq.irq.to_string(), |i| i.name.clone());
            let _ = writeln!(out, "  irq_{} [shape=diamond, label=\"irq {}\\n{}\"];", irq.irq, irq.irq, name);
            let _ = writeln!(out, "  irq_{} -> pd_{};", irq.irq, id(&pd.name));
        }
    }
    if let Some(kick) = platform.interrupt_named("kick") {
        if system.protection_domains.iter().any(|pd| pd.irqs.iter().any(|i| i.irq == kick.intid)) {
            let _ = writeln!(out, "  linux -> irq_{} [style=dashed, label=\"smc notify_secure\"];", kick.intid);
        }
    }
    for pd in system.protection_domains.iter().filter(|pd| pd.smc) {
        let _ = writeln!(out, "  pd_{} -> linux [style=dashed, label=\"smc (monitor)\"];", id(&pd.name));
    }
    for ch in &system.channels {
        let [a, b] = &ch.ends;
        let (na, nb) = (id(&system.protection_domains[a.pd].name), id(&system.protection_domains[b.pd].name));
        if a.pp {
            let _ = writeln!(out, "  pd_{na} -> pd_{nb} [style=bold, label=\"pp\"];");
        }
        if b.pp {
            let _ = writeln!(out, "  pd_{nb} -> pd_{na} [style=bold, label=\"pp\"];");
        }
        if a.notify {
            let _ = writeln!(out, "  pd_{na} -> pd_{nb} [style=dotted, label=\"notify\"];");
        }
        if b.notify {
            let _ = writeln!(out, "  pd_{nb} -> pd_{na} [style=dotted, label=\"notify\"];");
        }
    }
    let _ = writeln!(out, "}}");
    out
}
