//! tzmk's isolation rules: what a security reviewer checks in system.xml against the platform.
//!
//! Each rule has a stable name and explains a violation in one sentence, positioned at the element
//! that grants the authority.

use crate::model::*;
use crate::platform::{IrqWorld, Platform, RangeUse, World};
use crate::realtime::{Sidecar, SIDECAR_PATH};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use tzmk_realtime::periodic::MIN_BUDGET_US;
use tzmk_realtime::rta::Response;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule: &'static str,
    pub pos: Pos,
    pub message: String,
}

/// Where a region lives, as far as isolation is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'p> {
    /// No `phys_addr`: the tool allocates it from seL4's RAM (secure).
    Allocated,
    /// Wholly inside one platform range.
    In(&'p crate::platform::Range),
    /// Not wholly inside any range.
    Unplaced,
}

pub fn placement<'p>(platform: &'p Platform, mr: &MemoryRegion) -> Placement<'p> {
    match mr.phys_addr {
        None => Placement::Allocated,
        Some(base) => platform.range_containing(base, mr.size).map_or(Placement::Unplaced, Placement::In),
    }
}

/// The world that can reach a region's memory.
pub fn reachable_by_normal_world(platform: &Platform, mr: &MemoryRegion) -> bool {
    match placement(platform, mr) {
        Placement::Allocated => false,
        Placement::In(range) => range.world == World::Normal,
        // Conservative: a region straddling ranges may reach normal memory.
        Placement::Unplaced => {
            platform.ranges_overlapping(mr.phys_addr.unwrap_or(0), mr.size).any(|r| r.world == World::Normal)
        }
    }
}

/// PDs the normal world can make run: the normal-facing PDs and every PD they (transitively) notify
/// or call. For each, the chain of PD names that leads there.
pub fn driven_by_normal_world(system: &System, platform: &Platform) -> BTreeMap<usize, Vec<String>> {
    let mut driven = BTreeMap::new();
    let mut queue = VecDeque::new();
    for name in &platform.policy.normal_facing {
        if let Some(index) = system.pd_index(name) {
            driven.insert(index, vec![name.clone()]);
            queue.push_back(index);
        }
    }
    while let Some(pd) = queue.pop_front() {
        for (mine, theirs) in system.channel_ends_of(pd) {
            if (mine.notify || mine.pp) && !driven.contains_key(&theirs.pd) {
                let mut chain = driven[&pd].clone();
                chain.push(system.protection_domains[theirs.pd].name.clone());
                driven.insert(theirs.pd, chain);
                queue.push_back(theirs.pd);
            }
        }
    }
    driven
}

/// Checks every isolation rule, with the real-time PDs' implicit deadlines (their periods); an
/// empty result means the system is clean.
pub fn audit(system: &System, platform: &Platform) -> Vec<Violation> {
    audit_with(system, platform, &Sidecar::default(), SIDECAR_PATH).expect("an empty sidecar names no task")
}

/// Checks every rule with the deadlines of a real-time sidecar (pds/realtime.toml); `Err` when
/// the sidecar itself is wrong for this system (`sidecar_name` names it).
pub fn audit_with(
    system: &System,
    platform: &Platform,
    sidecar: &Sidecar,
    sidecar_name: &str,
) -> Result<Vec<Violation>, crate::Diagnostic> {
    let mut out = isolation(system, platform);
    out.extend(schedulability(system, platform, sidecar, sidecar_name)?);
    out.sort_by(|a, b| a.pos.cmp(&b.pos).then(a.rule.cmp(b.rule)));
    Ok(out)
}

/// The real-time rules, from the same response-time analysis a real-time PD runs before it
/// accepts `tzctl rt set` (tzmk-realtime's `rta`, over every scheduled PD of the core):
/// - `realtime-budget`: a real-time PD whose budget is not below its period (seL4 then enforces
///   no budget: round-robin, not a sporadic server) or below the 20 us minimum;
/// - `realtime-deadline`: a real-time PD whose worst-case response time passes its deadline.
fn schedulability(
    system: &System,
    platform: &Platform,
    sidecar: &Sidecar,
    sidecar_name: &str,
) -> Result<Vec<Violation>, crate::Diagnostic> {
    let mut out = Vec::new();
    for analysed in crate::realtime::analyse(crate::realtime::task_sets(system, platform, sidecar, sidecar_name)?) {
        for (index, member) in analysed.set.members.iter().enumerate().filter(|(_, m)| m.realtime) {
            if member.budget_us >= member.period_us {
                out.push(Violation {
                    rule: "realtime-budget",
                    pos: member.pos,
                    message: format!(
                         "real-time PD '{}' has budget {} us, its whole period: seL4 enforces a budget only when budget \
                         < period, so it could take the core from every lower priority",
                        member.name, member.budget_us
                    ),
                });
                continue;
            }
            if member.budget_us < MIN_BUDGET_US {
                out.push(Violation {
                    rule: "realtime-budget",
                    pos: member.pos,
                    message: format!(
                        "real-time PD '{}' has budget {} us, below the {MIN_BUDGET_US} us minimum (2 x the kernel \
                         WCET on qemu-arm-virt)",
                        member.name, member.budget_us
                    ),
                });
                continue;
            }
            let verdict = match &analysed.analysis {
                Err(e) => Some(format!("cannot be analysed: {e}")),
                Ok(analysis) => match analysis.responses[index] {
                    Response::Meets { .. } => None,
                    response => Some(crate::realtime::describe(&response, member.deadline_us)),
                },
            };
            if let Some(verdict) = verdict {
                out.push(Violation {
                    rule: "realtime-deadline",
                    pos: member.pos,
                    message: format!(
                        "real-time PD '{}' (budget {} us every {} us, priority {}) may miss its deadline: {verdict}, \
                         counting the budgets of every PD of priority >= {} on core {}",
                        member.name,
                        member.budget_us,
                        member.period_us,
                        member.priority,
                        member.priority,
                        analysed.set.cpu
                    ),
                });
            }
        }
    }
    Ok(out)
}

fn isolation(system: &System, platform: &Platform) -> Vec<Violation> {
    let mut out = Vec::new();
    let policy = &platform.policy;
    let is = |list: &[String], pd: &ProtectionDomain| list.iter().any(|n| n == &pd.name);

    for mr in &system.memory_regions {
        let Some(base) = mr.phys_addr else { continue };
        let end = base + mr.size;
        match placement(platform, mr) {
            Placement::Unplaced => out.push(Violation {
                rule: "region-placement",
                pos: mr.pos,
                message: format!(
                    "memory region '{}' [{base:#x}..{end:#x}) does not lie inside a single range of the platform \
                     description, so no world owns it",
                    mr.name
                ),
            }),
            Placement::In(range) => {
                let why = match range.use_ {
                    RangeUse::Monitor => Some("belongs to the EL3 monitor".to_owned()),
                    RangeUse::Linux => Some("is the normal world's own RAM, outside the shared window".to_owned()),
                    RangeUse::Device => Some(format!(
                        "is a device driven by {}",
                        range.owner.as_deref().unwrap_or("no one the platform names")
                    )),
                    RangeUse::Kernel | RangeUse::Secret | RangeUse::Shared => None,
                };
                if let Some(why) = why {
                    out.push(Violation {
                        rule: "region-placement",
                        pos: mr.pos,
                        message: format!(
                            "memory region '{}' [{base:#x}..{end:#x}) lies in '{}', which {why}; no PD may map it",
                            mr.name, range.name
                        ),
                    });
                }
            }
            Placement::Allocated => {}
        }
    }

    for pd in &system.protection_domains {
        for map in &pd.maps {
            let Some(mr) = system.region(&map.mr) else { continue };
            let placed = placement(platform, mr);
            if reachable_by_normal_world(platform, mr) {
                if map.perms.execute {
                    out.push(Violation {
                        rule: "normal-memory-executable",
                        pos: map.pos,
                        message: format!(
                            "'{}' maps '{}' executable, but the normal world can write that memory, so Linux could \
                             run code in the secure world",
                            pd.name, mr.name
                        ),
                    });
                }
                if !is(&policy.normal_facing, pd) {
                    out.push(Violation {
                        rule: "normal-memory-not-facing",
                        pos: map.pos,
                        message: format!(
                            "'{}' maps '{}', which the normal world can reach, but only PDs the platform lists as \
                             normal-facing ({}) may",
                            pd.name,
                            mr.name,
                            policy.normal_facing.join(", ")
                        ),
                    });
                }
            }
            let secret = matches!(placed, Placement::In(r) if r.use_ == RangeUse::Secret);
            if secret && !is(&policy.secret_holders, pd) {
                out.push(Violation {
                    rule: "secret-not-holder",
                    pos: map.pos,
                    message: format!(
                        "'{}' maps '{}', which lies in secure-only secret memory, but only the secret holders ({}) may",
                        pd.name,
                        mr.name,
                        policy.secret_holders.join(", ")
                    ),
                });
            }
            if is(&policy.secret_holders, pd) && reachable_by_normal_world(platform, mr) {
                out.push(Violation {
                    rule: "secret-in-normal-memory",
                    pos: map.pos,
                    message: format!(
                        "secret holder '{}' maps '{}', which lies in memory the normal world can read, so its \
                         secrets could leak there",
                        pd.name, mr.name
                    ),
                });
            }
        }

        if pd.smc && !is(&policy.smc, pd) {
            out.push(Violation {
                rule: "smc-not-allowed",
                pos: pd.pos,
                message: format!(
                    "'{}' has smc=\"true\", but the platform allows only {} to call the EL3 monitor",
                    pd.name,
                    if policy.smc.is_empty() { "no PD".to_owned() } else { policy.smc.join(", ") }
                ),
            });
        }

        for irq in &pd.irqs {
            let problem = match platform.interrupt(irq.irq) {
                None => Some(format!(
                    "claims interrupt {}, which the platform description does not list, so no one vouches that it \
                     is the secure world's",
                    irq.irq
                )),
                Some(known) => match known.world {
                    IrqWorld::Normal => Some(format!(
                        "claims interrupt {} ('{}'), which belongs to the normal world",
                        irq.irq, known.name
                    )),
                    IrqWorld::Kernel => {
                        Some(format!("claims interrupt {} ('{}'), which seL4 itself uses", irq.irq, known.name))
                    }
                    IrqWorld::Monitor => Some(format!(
                        "claims interrupt {} ('{}'), which belongs to the EL3 monitor",
                        irq.irq, known.name
                    )),
                    IrqWorld::Secure if known.trigger != irq.trigger => Some(
                        format!(
                            "claims interrupt {} ('{}') as {:?}-triggered, but it is {:?}-triggered",
                            irq.irq, known.name, irq.trigger, known.trigger
                        )
                        .to_lowercase(),
                    ),
                    IrqWorld::Secure => None,
                },
            };
            if let Some(problem) = problem {
                out.push(Violation {
                    rule: "irq-ownership",
                    pos: irq.pos,
                    message: format!("'{}' {problem}", pd.name),
                });
            }
        }
    }

    let driven = driven_by_normal_world(system, platform);
    // Secure memory shared between PDs: what a PD the normal world can drive may write, no other
    // PD may execute (a compromised comm-pd would otherwise put code into rt-task through their
    // event ring). Memory the normal world writes itself is `normal-memory-executable`'s.
    for pd in &system.protection_domains {
        for map in pd.maps.iter().filter(|m| m.perms.execute) {
            let Some(mr) = system.region(&map.mr) else { continue };
            if reachable_by_normal_world(platform, mr) {
                continue;
            }
            let writers = driven.iter().filter(|(&index, _)| {
                let writer = &system.protection_domains[index];
                writer.name != pd.name && writer.maps.iter().any(|m| m.mr == mr.name && m.perms.write)
            });
            for (&index, chain) in writers {
                let writer = &system.protection_domains[index].name;
                out.push(Violation {
                    rule: "driven-memory-executable",
                    pos: map.pos,
                    message: format!(
                        "'{}' maps '{}' executable, but '{writer}', which the normal world can drive ({}), can write \
                         it, so a compromised '{writer}' could run code in '{}'",
                        pd.name,
                        mr.name,
                        if chain.len() == 1 {
                            "it faces the normal world".to_owned()
                        } else {
                            format!("via {}", chain.join(" -> "))
                        },
                        pd.name
                    ),
                });
            }
        }
    }
    for rt in system.protection_domains.iter().filter(|pd| is(&policy.realtime, pd)) {
        for (&index, chain) in &driven {
            let other = &system.protection_domains[index];
            if is(&policy.realtime, other) || rt.priority > other.priority {
                continue;
            }
            out.push(Violation {
                rule: "realtime-priority",
                pos: rt.pos,
                message: format!(
                    "real-time PD '{}' (priority {}) does not outrank '{}' (priority {}), which the normal world can \
                     drive ({})",
                    rt.name,
                    rt.priority,
                    other.name,
                    other.priority,
                    if chain.len() == 1 {
                        "it faces the normal world".to_owned()
                    } else {
                        format!("via {}", chain.join(" -> "))
                    }
                ),
            });
        }
    }

    out
}
