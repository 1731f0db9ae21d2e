//! Expected PCR values for a release, computed from the release's own files.
//!
//! - PCR 11: systemd-stub measures the UKI's PE sections in a fixed order, each
//!   as two extends: SHA-256 of the section name including its NUL, then
//!   SHA-256 of the section contents; systemd-pcrphase later extends the boot
//!   phase strings. This is exactly what `systemd-measure calculate` predicts,
//!   and the tests compare with it. Firmware-independent: [`PcrSource::Predicted`].
//! - PCR 4: the firmware measures every EFI application it starts
//!   (`EV_EFI_BOOT_SERVICES_APPLICATION`, the PE Authenticode hash) after its
//!   own `EV_EFI_ACTION` and separator events. The application hashes are
//!   ours; the surrounding events are the firmware's (OVMF and most UEFI
//!   firmware: "Calling EFI Application from Boot Option", then the separator).
//!   So PCR 4 is [`PcrSource::PredictedFirmwareDependent`] and carries the
//!   Authenticode hashes as components for event-log matching.
//! - PCR 0-3, 5-7 describe firmware, its configuration, the GPT and Secure
//!   Boot state: they must come from a reference boot on the target hardware.

use anyhow::{bail, Context as _};
use keel_manifest::{PcrComponent, PcrExpectation, PcrSource};
use object::read::pe::{ImageNtHeaders, PeFile64};
use object::LittleEndian as LE;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The UKI sections systemd-stub (v253 and newer) measures, in measuring
/// order. `.pcrsig` is deliberately not measured.
pub const UKI_SECTIONS: [&str; 9] = [
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".uname", ".sbat", ".pcrpkey",
];

/// What systemd-stub 252 (Debian 12's) measures: it predates `.uname` and
/// `.sbat` measurement and skips both. Seen on a real boot of test-tiny
/// under OVMF: the quoted PCR 11 matched only this list.
pub const UKI_SECTIONS_252: [&str; 7] = [
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
];

/// The systemd-stub major version a UKI carries in its `.sdmagic` section
/// (`#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####`).
pub fn stub_version(sections: &[(String, Vec<u8>)]) -> Option<u32> {
    let (_, magic) = sections.iter().find(|(n, _)| n == ".sdmagic")?;
    let text = String::from_utf8_lossy(magic);
    let rest = text.split("systemd-stub ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The sections the UKI's own stub measures into PCR 11.
pub fn measured_sections(sections: &[(String, Vec<u8>)]) -> &'static [&'static str] {
    match stub_version(sections) {
        Some(v) if v < 253 => &UKI_SECTIONS_252,
        _ => &UKI_SECTIONS,
    }
}

/// The boot phases systemd-pcrphase measures into PCR 11.
pub const PHASES: [&str; 4] = ["enter-initrd", "leave-initrd", "sysinit", "ready"];

/// `EV_EFI_ACTION` string firmware logs in PCR 4 before starting the boot option.
pub const EFI_ACTION_BOOT_OPTION: &str = "Calling EFI Application from Boot Option";

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A TPM PCR extend: `new = SHA256(old || digest)`.
pub fn extend(pcr: &mut [u8; 32], digest: &[u8; 32]) {
    let mut h = Sha256::new();
    h.update(*pcr);
    h.update(digest);
    *pcr = h.finalize().into();
}

/// The sections of a PE file as (name, contents), contents cut to the
/// section's VirtualSize (what the stub measures from memory).
pub fn pe_sections(pe: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let file = PeFile64::parse(pe).context("parsing PE file")?;
    let mut out = Vec::new();
    for s in file.section_table().iter() {
        let name = String::from_utf8_lossy(s.raw_name())
            .trim_end_matches('\0')
            .to_string();
        let vsize = s.virtual_size.get(LE) as usize;
        let (off, size) = s.pe_file_range();
        let raw = pe
            .get(off as usize..(off as usize + size as usize))
            .context("section outside the file")?;
        let mut data = raw[..raw.len().min(vsize)].to_vec();
        data.resize(vsize, 0);
        out.push((name, data));
    }
    Ok(out)
}

/// Predicted PCR 11 for a UKI given as its sections.
pub fn pcr11(sections: &[(String, Vec<u8>)]) -> PcrExpectation {
    let mut pcr = [0u8; 32];
    let mut components = Vec::new();
    for name in measured_sections(sections) {
        let Some((_, data)) = sections.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        for (what, d) in [
            (format!("{name} name"), sha256(&n)),
            (name.to_string(), sha256(data)),
        ] {
            extend(&mut pcr, &d);
            components.push(PcrComponent {
                what,
                sha256: hex::encode(d),
            });
        }
    }
    let value = hex::encode(pcr);
    let mut phases = BTreeMap::new();
    let mut path = String::new();
    for phase in PHASES {
        extend(&mut pcr, &sha256(phase.as_bytes()));
        if !path.is_empty() {
            path.push(':');
        }
        path.push_str(phase);
        phases.insert(path.clone(), hex::encode(pcr));
    }
    PcrExpectation {
        bank: "sha256".into(),
        value: Some(value),
        source: PcrSource::Predicted,
        phases,
        components,
        assumptions: Some(
            "value is PCR 11 when systemd-stub hands over to the kernel; phases are the values after systemd-pcrphase's measurements".into(),
        ),
    }
}

/// The PE Authenticode SHA-256 (what UEFI firmware measures for an EFI
/// application and what Secure Boot signatures cover).
pub fn authenticode_sha256(pe: &[u8]) -> anyhow::Result<[u8; 32]> {
    let dos = object::pe::ImageDosHeader::parse(pe).context("parsing DOS header")?;
    let nt_off = dos.nt_headers_offset() as usize;
    let opt_off = nt_off + 4 + 20;
    let magic = u16::from_le_bytes(
        pe.get(opt_off..opt_off + 2)
            .context("truncated PE")?
            .try_into()?,
    );
    let (cert_dir, header_size) = {
        let mut off = nt_off as u64;
        let (nt, _) =
            object::pe::ImageNtHeaders64::parse(pe, &mut off).context("parsing NT headers")?;
        let opt = nt.optional_header();
        let dd = match magic {
            0x20b => opt_off + 112,
            0x10b => opt_off + 96,
            m => bail!("unknown PE optional header magic {m:#x}"),
        };
        (
            dd + 4 * 8,
            object::read::pe::ImageOptionalHeader::size_of_headers(opt) as usize,
        )
    };
    let checksum = opt_off + 64;
    let rd = |o: usize| -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(
            pe.get(o..o + 4).context("truncated PE")?.try_into()?,
        ))
    };
    let cert_off = rd(cert_dir)? as usize;
    let cert_size = rd(cert_dir + 4)? as usize;
    let mut h = Sha256::new();
    h.update(pe.get(..checksum).context("truncated PE")?);
    h.update(pe.get(checksum + 4..cert_dir).context("truncated PE")?);
    h.update(pe.get(cert_dir + 8..header_size).context("truncated PE")?);
    let file = PeFile64::parse(pe).context("parsing PE file")?;
    let mut ranges: Vec<(usize, usize)> = file
        .section_table()
        .iter()
        .map(|s| {
            (
                s.pointer_to_raw_data.get(LE) as usize,
                s.size_of_raw_data.get(LE) as usize,
            )
        })
        .filter(|(_, size)| *size > 0)
        .collect();
    ranges.sort_unstable();
    let mut end = header_size;
    for (off, size) in ranges {
        h.update(
            pe.get(off..off + size)
                .context("section outside the file")?,
        );
        end = end.max(off + size);
    }
    let trailer_end = if cert_size > 0 && cert_off >= end {
        cert_off
    } else {
        pe.len() - cert_size.min(pe.len())
    };
    if trailer_end > end {
        h.update(&pe[end..trailer_end]);
    }
    Ok(h.finalize().into())
}

/// Predicted PCR 4 for firmware that starts `bootloader`, which starts the
/// UKI, whose stub starts the kernel from its `.linux` section (each measured
/// by Authenticode hash), after the firmware's own action and separator events.
pub fn pcr4(applications: &[(&str, [u8; 32])]) -> PcrExpectation {
    let mut pcr = [0u8; 32];
    let mut components = Vec::new();
    let action = sha256(EFI_ACTION_BOOT_OPTION.as_bytes());
    let separator = sha256(&[0, 0, 0, 0]);
    for (what, d) in [
        ("EV_EFI_ACTION boot option", action),
        ("EV_SEPARATOR", separator),
    ]
    .into_iter()
    .chain(applications.iter().map(|(w, d)| (*w, *d)))
    {
        extend(&mut pcr, &d);
        components.push(PcrComponent {
            what: what.to_string(),
            sha256: hex::encode(d),
        });
    }
    PcrExpectation {
        bank: "sha256".into(),
        value: Some(hex::encode(pcr)),
        source: PcrSource::PredictedFirmwareDependent,
        phases: BTreeMap::new(),
        components,
        assumptions: Some(format!(
            "firmware logs EV_EFI_ACTION \"{EFI_ACTION_BOOT_OPTION}\" and one EV_SEPARATOR, then only the listed applications (no option ROMs, PXE or other boot attempts measured into PCR 4); confirm with a reference boot"
        )),
    }
}

/// Expected PCR 11 and PCR 4 for a UKI (and the boot loader that starts it,
/// when known), plus reference-boot placeholders for the firmware PCRs.
pub fn expected_pcrs(
    uki: &[u8],
    bootloader: Option<&[u8]>,
) -> anyhow::Result<BTreeMap<u32, PcrExpectation>> {
    let sections = pe_sections(uki).context("reading UKI sections")?;
    let mut out = BTreeMap::new();
    out.insert(11, pcr11(&sections));
    let mut apps = Vec::new();
    if let Some(bl) = bootloader {
        apps.push((
            "boot loader authenticode",
            authenticode_sha256(bl).context("boot loader")?,
        ));
    }
    apps.push(("UKI authenticode", authenticode_sha256(uki).context("UKI")?));
    if let Some((_, linux)) = sections.iter().find(|(n, _)| n == ".linux") {
        if let Ok(h) = authenticode_sha256(linux) {
            apps.push(("kernel (.linux) authenticode", h));
        }
    }
    out.insert(4, pcr4(&apps));
    for idx in [0, 1, 2, 3, 5, 7] {
        out.insert(
            idx,
            PcrExpectation {
                bank: "sha256".into(),
                value: None,
                source: PcrSource::ReferenceBoot,
                phases: BTreeMap::new(),
                components: Vec::new(),
                assumptions: Some("firmware, its configuration, GPT and Secure Boot state: record from a reference boot on the target hardware".into()),
            },
        );
    }
    Ok(out)
}
