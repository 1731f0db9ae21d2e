//! The TCG PC Client event log (crypto-agile format, TCG PC Client Platform
//! Firmware Profile §10): parsing and replay of the SHA-256 bank, so the
//! verifier can check that the log explains the quoted PCR values.
//! The log is little-endian, unlike TPM structures.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// EV_NO_ACTION: informational, never extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";
/// Upper bound on events, against hostile logs.
const MAX_EVENTS: usize = 100_000;

/// Event log problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// Ends in the middle of an event.
    #[error("event log truncated at byte {0}")]
    Truncated(usize),
    /// Not a crypto-agile log.
    #[error("event log is not in crypto-agile format (no Spec ID Event03 header)")]
    NotCryptoAgile,
    /// The header does not list SHA-256.
    #[error("event log has no SHA-256 digests")]
    NoSha256,
    /// A digest algorithm the header did not declare.
    #[error("event {index} uses undeclared digest algorithm 0x{alg:04x}")]
    UnknownAlgorithm {
        /// Event number.
        index: usize,
        /// Algorithm id.
        alg: u16,
    },
    /// Too many events or a PCR index out of range.
    #[error("event log is invalid: {0}")]
    Invalid(String),
}

/// One event with its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// PCR index.
    pub pcr: u32,
    /// Event type.
    pub event_type: u32,
    /// SHA-256 digest extended into the PCR.
    pub sha256: [u8; 32],
    /// Event data.
    pub data: Vec<u8>,
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// Events after the Spec ID header.
    pub events: Vec<Event>,
    /// Startup locality (initial value of PCR 0's last byte).
    pub startup_locality: u8,
}

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EventLogError> {
        let end = self
            .p
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(EventLogError::Truncated(self.p))?;
        let s = &self.b[self.p..end];
        self.p = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, EventLogError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u16(&mut self) -> Result<u16, EventLogError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
}

/// The first event: TCG_PCClientPCREvent (SHA-1 format) carrying the Spec
/// ID header; returns the digest size of each algorithm it lists, which must
/// include SHA-256.
fn spec_id_header(c: &mut Cur<'_>) -> Result<BTreeMap<u16, usize>, EventLogError> {
    let _pcr = c.u32()?;
    let ty = c.u32()?;
    let _sha1 = c.take(20)?;
    let size = c.u32()? as usize;
    let spec = c.take(size)?;
    if ty != EV_NO_ACTION || spec.len() < 28 || &spec[..16] != SPEC_ID_SIGNATURE {
        return Err(EventLogError::NotCryptoAgile);
    }
    let mut s = Cur { b: spec, p: 24 };
    let n_algs = s.u32()?;
    if n_algs > 16 {
        return Err(EventLogError::Invalid(format!(
            "{n_algs} digest algorithms"
        )));
    }
    let mut sizes: BTreeMap<u16, usize> = BTreeMap::new();
    for _ in 0..n_algs {
        let alg = s.u16()?;
        let sz = s.u16()?;
        sizes.insert(alg, usize::from(sz));
    }
    if sizes.get(&crate::tpm2::alg::SHA256) != Some(&32) {
        return Err(EventLogError::NoSha256);
    }
    Ok(sizes)
}

/// One crypto-agile event (TCG_PCR_EVENT2), the `index`th; `sizes` gives
/// each algorithm's digest size. It must carry a SHA-256 digest and name a
/// PCR 0-23.
fn next_event(
    c: &mut Cur<'_>,
    sizes: &BTreeMap<u16, usize>,
    index: usize,
) -> Result<Event, EventLogError> {
    let pcr = c.u32()?;
    let event_type = c.u32()?;
    let count = c.u32()?;
    if count as usize > sizes.len() {
        return Err(EventLogError::Invalid(format!(
            "event {index} has {count} digests"
        )));
    }
    let mut sha256 = None;
    for _ in 0..count {
        let alg = c.u16()?;
        let sz = *sizes
            .get(&alg)
            .ok_or(EventLogError::UnknownAlgorithm { index, alg })?;
        let d = c.take(sz)?;
        if alg == crate::tpm2::alg::SHA256 {
            let mut a = [0u8; 32];
            a.copy_from_slice(d);
            sha256 = Some(a);
        }
    }
    let size = c.u32()? as usize;
    let data = c.take(size)?.to_vec();
    if pcr > 23 {
        return Err(EventLogError::Invalid(format!(
            "event {index} for PCR {pcr}"
        )));
    }
    let sha256 = sha256.ok_or(EventLogError::NoSha256)?;
    Ok(Event {
        pcr,
        event_type,
        sha256,
        data,
    })
}

impl EventLog {
    /// Parses a binary log as found in
    /// /sys/kernel/security/tpm0/binary_bios_measurements.
    pub fn parse(buf: &[u8]) -> Result<EventLog, EventLogError> {
        let mut c = Cur { b: buf, p: 0 };
        let sizes = spec_id_header(&mut c)?;
        let mut events = Vec::new();
        let mut startup_locality = 0u8;
        while c.p < buf.len() {
            if events.len() >= MAX_EVENTS {
                return Err(EventLogError::Invalid("too many events".into()));
            }
            let e = next_event(&mut c, &sizes, events.len())?;
            if e.event_type == EV_NO_ACTION
                && e.pcr == 0
                && e.data.len() >= 17
                && &e.data[..16] == STARTUP_LOCALITY_SIGNATURE
            {
                startup_locality = e.data[16];
            }
            events.push(e);
        }
        Ok(EventLog {
            events,
            startup_locality,
        })
    }

    /// Replays the SHA-256 bank: the PCR values the log predicts, for every
    /// PCR that has at least one extended event.
    pub fn replay(&self) -> BTreeMap<u8, [u8; 32]> {
        let mut pcrs: BTreeMap<u8, [u8; 32]> = BTreeMap::new();
        for e in self.events.iter().filter(|e| e.event_type != EV_NO_ACTION) {
            let idx = u8::try_from(e.pcr).unwrap_or(u8::MAX);
            let cur = pcrs
                .entry(idx)
                .or_insert_with(|| initial_value(idx, self.startup_locality));
            let mut h = Sha256::new();
            h.update(*cur);
            h.update(e.sha256);
            *cur = h.finalize().into();
        }
        pcrs
    }
}

/// The boot phases systemd-pcrphase extends into PCR 11 from user space,
/// in order. They happen after the firmware's log is closed, so no event
/// log records them: a verifier accepts PCR 11 when it equals the logged
/// value extended by a prefix of this sequence.
pub const PCRPHASE_PCR: u8 = 11;
/// See [`PCRPHASE_PCR`].
pub const PCRPHASES: [&str; 4] = ["enter-initrd", "leave-initrd", "sysinit", "ready"];

/// Whether the replayed value `logged` of PCR `pcr` explains the quoted one:
/// equal, or for PCR 11, equal after extending some prefix of the boot
/// phases (at most all four, each once, in order). Returns the phases used.
pub fn explains(pcr: u8, logged: &[u8; 32], quoted: &[u8]) -> Option<Vec<&'static str>> {
    if logged.as_slice() == quoted {
        return Some(Vec::new());
    }
    if pcr != PCRPHASE_PCR {
        return None;
    }
    let mut cur = *logged;
    for (i, phase) in PCRPHASES.iter().enumerate() {
        let mut h = Sha256::new();
        h.update(cur);
        h.update(Sha256::digest(phase.as_bytes()));
        cur = h.finalize().into();
        if cur.as_slice() == quoted {
            return Some(PCRPHASES[..=i].to_vec());
        }
    }
    None
}

/// A PCR's value after TPM2_Startup(CLEAR) (PC Client profile).
pub fn initial_value(pcr: u8, startup_locality: u8) -> [u8; 32] {
    match pcr {
        0 => {
            let mut v = [0u8; 32];
            v[31] = startup_locality;
            v
        }
        17..=22 => [0xff; 32],
        _ => [0; 32],
    }
}

/// Builds crypto-agile logs (SHA-256 only): for tests and for software
/// measurement chains that want to produce a log a verifier can replay.
#[derive(Debug, Clone, Default)]
pub struct EventLogBuilder {
    buf: Vec<u8>,
}

impl EventLogBuilder {
    /// Starts a log with the Spec ID Event03 header declaring SHA-256.
    pub fn new() -> Self {
        let mut spec = Vec::new();
        spec.extend_from_slice(SPEC_ID_SIGNATURE);
        spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass
        spec.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintnSize
        spec.extend_from_slice(&1u32.to_le_bytes());
        spec.extend_from_slice(&crate::tpm2::alg::SHA256.to_le_bytes());
        spec.extend_from_slice(&32u16.to_le_bytes());
        spec.push(0); // vendorInfoSize
        let mut buf = Vec::new();
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        buf.extend_from_slice(&[0u8; 20]);
        buf.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        buf.extend_from_slice(&spec);
        EventLogBuilder { buf }
    }

    /// Appends an event whose digest is SHA-256(`data`); returns the digest
    /// to extend into the TPM.
    pub fn measure(&mut self, pcr: u32, event_type: u32, data: &[u8]) -> [u8; 32] {
        let d: [u8; 32] = Sha256::digest(data).into();
        self.event(pcr, event_type, d, data);
        d
    }

    /// Appends an event with an explicit digest.
    pub fn event(&mut self, pcr: u32, event_type: u32, sha256: [u8; 32], data: &[u8]) {
        self.buf.extend_from_slice(&pcr.to_le_bytes());
        self.buf.extend_from_slice(&event_type.to_le_bytes());
        self.buf.extend_from_slice(&1u32.to_le_bytes());
        self.buf
            .extend_from_slice(&crate::tpm2::alg::SHA256.to_le_bytes());
        self.buf.extend_from_slice(&sha256);
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(data);
    }

    /// The log bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}
