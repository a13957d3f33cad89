//! Reads a Microkit 2.3.0 system description and rejects what the microkit tool rejects.
//!
//! The rules follow the tool's `sdf.rs` for board `qemu_virt_aarch64_el1` (non-hypervisor,
//! single-core debug/release configurations, 4 KiB and 2 MiB pages), with one difference: where the
//! tool stops with a panic on a malformed number, this reader gives a positioned error. Elements that
//! the board's kernel configuration cannot have (virtual machines, I/O ports, IOMMU address spaces)
//! are rejected with the tool's reason; `<domains>` and `<cspace>` are rejected because tzmk's audit
//! does not model them.

use crate::model::*;
use crate::Diagnostic;
use roxmltree::{Document, Node};
use std::collections::{HashMap, HashSet};

/// Channel and IRQ ids are 0..=61.
pub const MAX_ID: u64 = 61;
/// Priorities are 0..=254 (255 is the Microkit monitor's).
pub const MAX_PRIORITY: u64 = 254;
/// The tool's default budget and period, microseconds.
pub const DEFAULT_BUDGET: u64 = 1000;
pub const DEFAULT_STACK_SIZE: u64 = 0x2000;
pub const MIN_STACK_SIZE: u64 = 0x1000;
pub const MAX_STACK_SIZE: u64 = 16 * 1024 * 1024;
/// Microkit's limit on the number of PDs.
pub const MAX_PDS: usize = 63;
/// aarch64 page sizes the tool accepts.
pub const PAGE_SIZES: [u64; 2] = [0x1000, 0x20_0000];
/// The IPC buffer sits at the top page of the user address space (`seL4_UserVSpaceTop` is
/// 0x7fff_ffff_ffff on the non-hypervisor qemu_virt_aarch64_el1 kernel), the stack below a guard
/// page under it; mappings must end below the stack.
pub const IPC_BUFFER: u64 = 0x7fff_ffff_f000;
pub const STACK_TOP: u64 = IPC_BUFFER - 0x1000;
/// Cores the kernel configurations used by tzmk run on (debug/release are single-core).
pub const NUM_CORES: u64 = 1;

type Result<T> = std::result::Result<T, Diagnostic>;

pub(crate) struct Reader<'a, 'input> {
    pub path: &'a str,
    pub doc: &'a Document<'input>,
}

impl<'a, 'input> Reader<'a, 'input> {
    pub fn pos(&self, node: &Node) -> Pos {
        let p = self.doc.text_pos_at(node.range().start);
        Pos { line: p.row, col: p.col }
    }

    fn attr_pos(&self, node: &Node, attribute: &str) -> Pos {
        match node.attributes().find(|a| a.name() == attribute) {
            Some(a) => {
                let p = self.doc.text_pos_at(a.range().start);
                Pos { line: p.row, col: p.col }
            }
            None => self.pos(node),
        }
    }

    pub fn error(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.path, pos, message)
    }

    fn element_error(&self, node: &Node, message: impl std::fmt::Display) -> Diagnostic {
        self.error(self.pos(node), format!("{message} on element '{}'", node.tag_name().name()))
    }

    fn attr_error(&self, node: &Node, attribute: &str, message: impl std::fmt::Display) -> Diagnostic {
        self.error(self.attr_pos(node, attribute), format!("{message} on element '{}'", node.tag_name().name()))
    }

    fn check_attributes(&self, node: &Node, allowed: &[&str]) -> Result<()> {
        for attribute in node.attributes() {
            if !allowed.contains(&attribute.name()) {
                return Err(self.attr_error(
                    node,
                    attribute.name(),
                    format!("invalid attribute '{}'", attribute.name()),
                ));
            }
        }
        Ok(())
    }

    fn required<'n>(&self, node: &Node<'n, 'input>, attribute: &str) -> Result<&'n str>
    where
        'input: 'n,
    {
        node.attribute(attribute).ok_or_else(|| {
            self.error(
                self.pos(node),
                format!("missing required attribute '{attribute}' on element '{}'", node.tag_name().name()),
            )
        })
    }

    /// A number as the tool reads it: decimal or `0x` hexadecimal, `_` separators allowed.
    fn number(&self, node: &Node, attribute: &str, text: &str) -> Result<u64> {
        let digits: String = text.chars().filter(|&c| c != '_').collect();
        let parsed = match digits.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => digits.parse::<u64>(),
        };
        parsed.map_err(|_| {
            self.attr_error(node, attribute, format!("'{attribute}' must be a non-negative integer, not '{text}'"))
        })
    }

    fn required_number(&self, node: &Node, attribute: &str) -> Result<u64> {
        let text = self.required(node, attribute)?;
        self.number(node, attribute, text)
    }

    fn optional_number(&self, node: &Node, attribute: &str, default: u64) -> Result<u64> {
        match node.attribute(attribute) {
            Some(text) => self.number(node, attribute, text),
            None => Ok(default),
        }
    }

    fn boolean(&self, node: &Node, attribute: &str, default: bool) -> Result<bool> {
        match node.attribute(attribute) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(self.attr_error(node, attribute, format!("{attribute} must be 'true' or 'false'"))),
        }
    }

    /// Channel and IRQ ids: 0..=61.
    fn id(&self, node: &Node) -> Result<u8> {
        let text = self.required(node, "id")?;
        if text.trim_start().starts_with('-') {
            return Err(self.attr_error(node, "id", "id must be >= 0"));
        }
        let id = self.number(node, "id", text)?;
        if id > MAX_ID {
            return Err(self.attr_error(node, "id", format!("id must be < {}", MAX_ID + 1)));
        }
        Ok(id as u8)
    }

    fn no_text(&self, node: &Node) -> Result<()> {
        for child in node.children() {
            if child.is_text() && !child.text().unwrap_or("").trim().is_empty() {
                return Err(self
                    .error(self.pos(&child), format!("unexpected text inside element '{}'", node.tag_name().name())));
            }
            if child.is_element() {
                self.no_text(&child)?;
            }
        }
        Ok(())
    }
}

/// Parses and checks a system description. `path` is only used in messages.
pub fn parse(path: &str, xml: &str) -> Result<System> {
    let doc = Document::parse(xml).map_err(|e| {
        let p = e.pos();
        Diagnostic::at(path, Pos { line: p.row, col: p.col }, format!("not well-formed XML: {e}"))
    })?;
    let reader = Reader { path, doc: &doc };
    let root = doc.root_element();
    if root.tag_name().name() != "system" {
        return Err(reader
            .error(reader.pos(&root), format!("the root element must be 'system', not '{}'", root.tag_name().name())));
    }
    reader.check_attributes(&root, &[])?;
    reader.no_text(&root)?;

    let mut pds = Vec::new();
    let mut regions = Vec::new();
    let mut channel_nodes = Vec::new();
    for child in root.children().filter(Node::is_element) {
        match child.tag_name().name() {
            "protection_domain" => parse_pd(&reader, &child, None, &mut pds)?,
            "memory_region" => regions.push(parse_region(&reader, &child)?),
            "channel" => channel_nodes.push(child),
            "virtual_machine" => {
                return Err(reader.error(reader.pos(&child), "virtual machine must be a child of a protection domain"))
            }
            "io_address_space" => {
                return Err(
                    reader.error(reader.pos(&child), "io address space requires seL4 to be built with IOMMU support")
                )
            }
            "domains" => {
                return Err(reader.error(
                    reader.pos(&child),
                    "tzmk does not use the domain scheduler: element 'domains' is not supported",
                ))
            }
            other => return Err(reader.error(reader.pos(&child), format!("invalid XML element '{other}'"))),
        }
    }

    if pds.is_empty() {
        return Err(reader.error(reader.pos(&root), "at least one protection domain must be defined"));
    }
    if pds.len() > MAX_PDS {
        return Err(reader.error(
            reader.pos(&root),
            format!("too many protection domains ({}) defined; the maximum is {MAX_PDS}", pds.len()),
        ));
    }
    let mut seen = HashMap::new();
    for pd in &pds {
        if pd.name == "monitor" {
            return Err(reader.error(pd.pos, "the PD name 'monitor' is reserved for the Microkit monitor"));
        }
        if let Some(first) = seen.insert(pd.name.as_str(), pd.pos) {
            return Err(reader.error(
                pd.pos,
                format!("duplicate protection domain name '{}' (first at line {})", pd.name, first.line),
            ));
        }
    }
    let mut seen = HashMap::new();
    for mr in &regions {
        if let Some(first) = seen.insert(mr.name.as_str(), mr.pos) {
            return Err(reader
                .error(mr.pos, format!("duplicate memory region name '{}' (first at line {})", mr.name, first.line)));
        }
    }

    let mut channels = Vec::new();
    for node in &channel_nodes {
        let channel = parse_channel(&reader, node, &pds)?;
        for end in &channel.ends {
            let setvar = node
                .children()
                .filter(Node::is_element)
                .find(|e| reader.pos(e) == end.pos)
                .and_then(|e| e.attribute("setvar_id").map(str::to_owned));
            if let Some(symbol) = setvar {
                add_setvar(
                    &reader,
                    end.pos,
                    &mut pds[end.pd].setvars,
                    SetVar { symbol, value: SetVarValue::Id { id: end.id } },
                )?;
            }
        }
        channels.push(channel);
    }

    // IRQ numbers are system-wide; ids share one namespace per PD with channel ends.
    let mut irq_owner: HashMap<u64, &str> = HashMap::new();
    for pd in &pds {
        for irq in &pd.irqs {
            if let Some(owner) = irq_owner.insert(irq.irq, &pd.name) {
                return Err(reader.error(
                    irq.pos,
                    format!(
                        "duplicate irq: {} in protection domain '{}' (already claimed by '{owner}')",
                        irq.irq, pd.name
                    ),
                ));
            }
        }
    }
    let mut ids: Vec<HashSet<u8>> = vec![HashSet::new(); pds.len()];
    for (index, pd) in pds.iter().enumerate() {
        for irq in &pd.irqs {
            if !ids[index].insert(irq.id) {
                return Err(reader
                    .error(irq.pos, format!("duplicate channel id: {} in protection domain '{}'", irq.id, pd.name)));
            }
        }
    }
    for channel in &channels {
        for end in &channel.ends {
            if !ids[end.pd].insert(end.id) {
                return Err(reader.error(
                    end.pos,
                    format!("duplicate channel id: {} in protection domain '{}'", end.id, pds[end.pd].name),
                ));
            }
        }
        for (caller, callee) in [(&channel.ends[0], &channel.ends[1]), (&channel.ends[1], &channel.ends[0])] {
            let (a, b) = (&pds[caller.pd], &pds[callee.pd]);
            if caller.pp && a.priority >= b.priority {
                return Err(reader.error(
                    caller.pos,
                    format!(
                        "PPCs must be to protection domains of strictly higher priorities; channel with PPC \
                         exists from pd {} (priority: {}) to pd {} (priority: {})",
                        a.name, a.priority, b.name, b.priority
                    ),
                ));
            }
        }
    }

    for pd in &pds {
        check_maps(&reader, &regions, pd)?;
    }

    let mut placed: Vec<&MemoryRegion> = Vec::new();
    for mr in &regions {
        if let Some(base) = mr.phys_addr {
            let end = base + mr.size;
            for other in &placed {
                let (o_base, o_end) = (other.phys_addr.unwrap_or(0), other.phys_addr.unwrap_or(0) + other.size);
                if base < o_end && o_base < end {
                    return Err(reader.error(
                        mr.pos,
                        format!(
                            "memory region '{}' physical address range [{base:#x}..{end:#x}) overlaps with \
                             memory region '{}' [{o_base:#x}..{o_end:#x})",
                            mr.name, other.name
                        ),
                    ));
                }
            }
            placed.push(mr);
        }
    }

    // Sizes for setvar_size are known only once every region has been read.
    for pd in &mut pds {
        for setvar in &mut pd.setvars {
            if let SetVarValue::Size { region, size } = &mut setvar.value {
                if let Some(mr) = regions.iter().find(|mr| &mr.name == region) {
                    *size = mr.size;
                }
            }
            if let SetVarValue::Paddr { region } = &setvar.value {
                if !regions.iter().any(|mr| &mr.name == region) {
                    return Err(
                        reader.error(pd.pos, format!("setvar region_paddr names unknown memory region '{region}'"))
                    );
                }
            }
        }
    }

    Ok(System { protection_domains: pds, memory_regions: regions, channels })
}

fn add_setvar(reader: &Reader, pos: Pos, setvars: &mut Vec<SetVar>, setvar: SetVar) -> Result<()> {
    if setvars.iter().any(|s| s.symbol == setvar.symbol) {
        return Err(reader.error(pos, format!("setvar on symbol '{}' already exists", setvar.symbol)));
    }
    setvars.push(setvar);
    Ok(())
}

fn parse_pd(reader: &Reader, node: &Node, parent: Option<usize>, pds: &mut Vec<ProtectionDomain>) -> Result<()> {
    let mut allowed =
        vec!["name", "priority", "budget", "period", "passive", "stack_size", "smc", "cpu", "domain", "fpu"];
    if parent.is_some() {
        allowed.extend(["id", "setvar_id"]);
    }
    reader.check_attributes(node, &allowed)?;
    let name = reader.required(node, "name")?.to_owned();
    if name.is_empty() || name.len() > 63 {
        return Err(reader.attr_error(node, "name", "name must be 1 to 63 bytes (microkit_name is char[64])"));
    }
    let child_id = match parent {
        Some(_) => Some(reader.id(node)?),
        None => None,
    };
    let budget = reader.optional_number(node, "budget", DEFAULT_BUDGET)?;
    let period = reader.optional_number(node, "period", budget)?;
    if budget > period {
        return Err(
            reader.element_error(node, format!("budget ({budget}) must be less than, or equal to, period ({period})"))
        );
    }
    let passive = reader.boolean(node, "passive", false)?;
    let smc = reader.boolean(node, "smc", false)?;
    let fpu = reader.boolean(node, "fpu", true)?;
    let stack_size = reader.optional_number(node, "stack_size", DEFAULT_STACK_SIZE)?;
    let cpu = reader.optional_number(node, "cpu", 0)?;
    if cpu >= NUM_CORES {
        return Err(reader.attr_error(node, "cpu", format!("cpu core must be less than {NUM_CORES}, got {cpu}")));
    }
    if let Some(domain) = node.attribute("domain") {
        return Err(reader.attr_error(
            node,
            "domain",
            format!("specifying a domain '{domain}' without declaring a domain schedule is not allowed"),
        ));
    }
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&stack_size) {
        return Err(reader.attr_error(
            node,
            "stack_size",
            format!("stack size must be between {MIN_STACK_SIZE:#x} bytes and {MAX_STACK_SIZE:#x} bytes"),
        ));
    }
    if stack_size % PAGE_SIZES[0] != 0 {
        return Err(reader.attr_error(
            node,
            "stack_size",
            format!("stack size must be aligned to the smallest page size, {} bytes", PAGE_SIZES[0]),
        ));
    }
    let priority = reader.optional_number(node, "priority", 0)?;
    if priority > MAX_PRIORITY {
        return Err(reader.attr_error(node, "priority", format!("priority must be between 0 and {MAX_PRIORITY}")));
    }

    let index = pds.len();
    pds.push(ProtectionDomain {
        name,
        priority: priority as u8,
        budget,
        period,
        passive,
        stack_size,
        smc,
        cpu: cpu as u8,
        fpu,
        program_image: String::new(),
        maps: Vec::new(),
        irqs: Vec::new(),
        setvars: Vec::new(),
        parent: parent.zip(child_id),
        pos: reader.pos(node),
    });
    if let (Some(parent), Some(id), Some(symbol)) = (parent, child_id, node.attribute("setvar_id")) {
        let pos = reader.pos(node);
        add_setvar(
            reader,
            pos,
            &mut pds[parent].setvars,
            SetVar { symbol: symbol.to_owned(), value: SetVarValue::Id { id } },
        )?;
    }

    let mut program_image = None;
    let mut child_ids = HashSet::new();
    let max_vaddr = STACK_TOP - stack_size;
    for child in node.children().filter(Node::is_element) {
        let pos = reader.pos(&child);
        match child.tag_name().name() {
            "program_image" => {
                reader.check_attributes(&child, &["path", "path_for_symbols"])?;
                if program_image.is_some() {
                    return Err(reader.element_error(node, "program_image must only be specified once"));
                }
                program_image = Some(reader.required(&child, "path")?.to_owned());
            }
            "map" => {
                reader.check_attributes(
                    &child,
                    &["mr", "vaddr", "perms", "cached", "setvar_vaddr", "setvar_size", "setvar_prefill_size"],
                )?;
                let map = parse_map(reader, &child, max_vaddr)?;
                if let Some(symbol) = child.attribute("setvar_vaddr") {
                    add_setvar(
                        reader,
                        pos,
                        &mut pds[index].setvars,
                        SetVar { symbol: symbol.to_owned(), value: SetVarValue::Vaddr { address: map.vaddr } },
                    )?;
                }
                if let Some(symbol) = child.attribute("setvar_size") {
                    add_setvar(
                        reader,
                        pos,
                        &mut pds[index].setvars,
                        SetVar {
                            symbol: symbol.to_owned(),
                            value: SetVarValue::Size { region: map.mr.clone(), size: 0 },
                        },
                    )?;
                }
                if child.attribute("setvar_prefill_size").is_some() {
                    return Err(reader.attr_error(
                        &child,
                        "setvar_prefill_size",
                        format!("'setvar_prefill_size' used for memory region '{}' without a prefill_path", map.mr),
                    ));
                }
                pds[index].maps.push(map);
            }
            "irq" => {
                if child.attribute("pin").is_some() {
                    return Err(reader.element_error(&child, "x86 I/O APIC IRQ isn't supported on ARM and RISC-V"));
                }
                if child.attribute("pcidev").is_some() {
                    return Err(reader.element_error(&child, "x86 MSI isn't supported on ARM and RISC-V"));
                }
                reader.check_attributes(&child, &["irq", "id", "setvar_id", "trigger"])?;
                let id = reader.id(&child)?;
                let irq = reader.required_number(&child, "irq")?;
                let trigger = match child.attribute("trigger") {
                    None | Some("level") => Trigger::Level,
                    Some("edge") => Trigger::Edge,
                    Some(_) => {
                        return Err(reader.attr_error(&child, "trigger", "trigger must be either 'level' or 'edge'"))
                    }
                };
                if let Some(symbol) = child.attribute("setvar_id") {
                    add_setvar(
                        reader,
                        pos,
                        &mut pds[index].setvars,
                        SetVar { symbol: symbol.to_owned(), value: SetVarValue::Id { id } },
                    )?;
                }
                pds[index].irqs.push(Irq { irq, id, trigger, pos });
            }
            "setvar" => {
                reader.check_attributes(&child, &["symbol", "region_paddr"])?;
                let symbol = reader.required(&child, "symbol")?.to_owned();
                let region = reader.required(&child, "region_paddr")?.to_owned();
                add_setvar(
                    reader,
                    pos,
                    &mut pds[index].setvars,
                    SetVar { symbol, value: SetVarValue::Paddr { region } },
                )?;
            }
            "protection_domain" => {
                let id = reader.id(&child)?;
                if !child_ids.insert(id) {
                    return Err(
                        reader.error(pos, format!("duplicate id: {id} in protection domain: '{}'", pds[index].name))
                    );
                }
                parse_pd(reader, &child, Some(index), pds)?;
            }
            "virtual_machine" => {
                return Err(reader
                    .element_error(node, "seL4 has not been built as a hypervisor, virtual machines are disabled"))
            }
            "ioport" => return Err(reader.element_error(&child, "I/O Ports are only available on x86")),
            "cspace" => {
                return Err(reader.error(
                    pos,
                    "tzmk's audit does not model <cspace>: it grants capabilities outside channels and maps",
                ))
            }
            other => return Err(reader.error(pos, format!("invalid XML element '{other}'"))),
        }
    }
    match program_image {
        Some(image) => pds[index].program_image = image,
        None => {
            return Err(reader.error(
                reader.pos(node),
                format!("missing 'program_image' element on protection_domain '{}'", pds[index].name),
            ))
        }
    }
    Ok(())
}

fn parse_map(reader: &Reader, node: &Node, max_vaddr: u64) -> Result<Map> {
    let mr = reader.required(node, "mr")?.to_owned();
    let vaddr = reader.required_number(node, "vaddr")?;
    if vaddr >= max_vaddr {
        return Err(reader.attr_error(node, "vaddr", format!("vaddr ({vaddr:#x}) must be less than {max_vaddr:#x}")));
    }
    let perms = match node.attribute("perms") {
        None => Perms { read: true, write: true, execute: false },
        Some(text) => {
            let valid = !text.is_empty() && text.chars().all(|c| matches!(c, 'r' | 'w' | 'x'));
            if !valid {
                return Err(reader.attr_error(node, "perms", "perms must only be a combination of 'r', 'w', and 'x'"));
            }
            Perms { read: text.contains('r'), write: text.contains('w'), execute: text.contains('x') }
        }
    };
    if perms.write && !perms.read && !perms.execute {
        return Err(reader.attr_error(node, "perms", "perms must not be 'w', write-only mappings are not allowed"));
    }
    let cached = reader.boolean(node, "cached", true)?;
    Ok(Map { mr, vaddr, perms, cached, pos: reader.pos(node) })
}

fn parse_region(reader: &Reader, node: &Node) -> Result<MemoryRegion> {
    reader.check_attributes(node, &["name", "size", "page_size", "phys_addr", "prefill_path", "prefill_bootinfo"])?;
    let name = reader.required(node, "name")?.to_owned();
    if node.attribute("prefill_path").is_some() || node.attribute("prefill_bootinfo").is_some() {
        return Err(reader.element_error(
            node,
            "tzmk does not use prefilled memory regions: images are placed by the monitor, not the tool",
        ));
    }
    let page_size = reader.optional_number(node, "page_size", PAGE_SIZES[0])?;
    if !PAGE_SIZES.contains(&page_size) {
        return Err(reader.attr_error(node, "page_size", format!("page size {page_size:#x} not supported")));
    }
    let size = reader.required_number(node, "size")?;
    if size == 0 || size % page_size != 0 {
        return Err(reader.attr_error(node, "size", "size is not a multiple of the page size"));
    }
    let phys_addr = match node.attribute("phys_addr") {
        Some(text) => {
            let addr = reader.number(node, "phys_addr", text)?;
            if addr % page_size != 0 {
                return Err(reader.attr_error(node, "phys_addr", "phys_addr is not aligned to the page size"));
            }
            if addr.checked_add(size).is_none() {
                return Err(reader.attr_error(node, "phys_addr", "phys_addr + size overflows the address space"));
            }
            Some(addr)
        }
        None => None,
    };
    Ok(MemoryRegion { name, size, page_size, phys_addr, pos: reader.pos(node) })
}

fn parse_channel(reader: &Reader, node: &Node, pds: &[ProtectionDomain]) -> Result<Channel> {
    reader.check_attributes(node, &[])?;
    let mut ends = Vec::new();
    for child in node.children().filter(Node::is_element) {
        if child.tag_name().name() != "end" {
            return Err(reader.error(reader.pos(&child), format!("invalid XML element '{}'", child.tag_name().name())));
        }
        reader.check_attributes(&child, &["pd", "id", "pp", "notify", "setvar_id"])?;
        let pd_name = reader.required(&child, "pd")?;
        let id = reader.id(&child)?;
        let notify = reader.boolean(&child, "notify", true)?;
        let pp = reader.boolean(&child, "pp", false)?;
        let pd = pds
            .iter()
            .position(|pd| pd.name == pd_name)
            .ok_or_else(|| reader.attr_error(&child, "pd", format!("invalid PD name '{pd_name}'")))?;
        ends.push(ChannelEnd { pd, id, notify, pp, pos: reader.pos(&child) });
    }
    let Ok([a, b]) = <[ChannelEnd; 2]>::try_from(ends) else {
        return Err(reader.element_error(node, "exactly two end elements must be specified"));
    };
    if a.pp && b.pp {
        return Err(reader.element_error(node, "cannot ppc bidirectionally"));
    }
    if a.pd == b.pd {
        return Err(reader.element_error(node, "a channel must connect two different protection domains"));
    }
    Ok(Channel { ends: [a, b], pos: reader.pos(node) })
}

fn check_maps(reader: &Reader, regions: &[MemoryRegion], pd: &ProtectionDomain) -> Result<()> {
    let max_end = STACK_TOP - pd.stack_size;
    let mut checked: Vec<(&str, u64, u64)> = Vec::new();
    for map in &pd.maps {
        let Some(mr) = regions.iter().find(|mr| mr.name == map.mr) else {
            return Err(reader.error(map.pos, format!("invalid memory region name '{}' on 'map'", map.mr)));
        };
        if map.vaddr % mr.page_size != 0 {
            return Err(reader.error(
                map.pos,
                format!(
                    "invalid vaddr alignment on 'map': {:#x} is not a multiple of the page size {:#x}",
                    map.vaddr, mr.page_size
                ),
            ));
        }
        let start = map.vaddr;
        let end = start.checked_add(mr.size).filter(|&end| end <= max_end).ok_or_else(|| {
            reader.error(
                map.pos,
                format!(
                    "map for '{}' has virtual address range [{start:#x}..{:#x}) which exceeds valid address space [0x0..{max_end:#x})",
                    map.mr,
                    start.saturating_add(mr.size)
                ),
            )
        })?;
        for (name, s, e) in &checked {
            if start < *e && *s < end {
                return Err(reader.error(
                    map.pos,
                    format!(
                        "map for '{}' has virtual address range [{start:#x}..{end:#x}) which overlaps with map for '{name}' \
                         [{s:#x}..{e:#x}) in protection domain '{}'",
                        map.mr, pd.name
                    ),
                ));
            }
        }
        checked.push((&map.mr, start, end));
    }
    Ok(())
}
