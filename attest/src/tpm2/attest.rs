//! TPMS_ATTEST for quotes (Part 2 §10.12): parsing and marshalling.

use super::wire::{Reader, Writer};
use super::{StructError, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};

/// One bank's PCR selection (TPMS_PCR_SELECTION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelect {
    /// Bank hash algorithm (TPM_ALG_ID).
    pub hash: u16,
    /// Selected PCR indices, ascending.
    pub pcrs: Vec<u8>,
}

impl PcrSelect {
    /// Bitmap bytes (3 bytes for 24 PCRs).
    pub fn bitmap(&self) -> Vec<u8> {
        let mut b = vec![0u8; 3];
        for &p in &self.pcrs {
            if let Some(byte) = b.get_mut(usize::from(p / 8)) {
                *byte |= 1 << (p % 8);
            }
        }
        b
    }
}

/// A parsed quote attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    /// magic
    pub magic: u32,
    /// type
    pub attest_type: u16,
    /// qualifiedSigner (the AK's qualified name).
    pub qualified_signer: Vec<u8>,
    /// extraData: the qualifying data the caller passed.
    pub extra_data: Vec<u8>,
    /// clockInfo.clock
    pub clock: u64,
    /// clockInfo.resetCount
    pub reset_count: u32,
    /// clockInfo.restartCount
    pub restart_count: u32,
    /// clockInfo.safe
    pub safe: u8,
    /// firmwareVersion
    pub firmware_version: u64,
    /// Quoted PCR selection.
    pub pcr_select: Vec<PcrSelect>,
    /// Digest of the selected PCR values.
    pub pcr_digest: Vec<u8>,
}

const WHAT: &str = "TPMS_ATTEST";

impl QuoteAttest {
    /// Parses a TPMS_ATTEST that must be a quote spanning all of `buf`. Magic
    /// and type are checked here: anything else is not a TPM quote.
    pub fn parse(buf: &[u8]) -> Result<Self, StructError> {
        let mut r = Reader::new(buf, WHAT);
        let magic = r.u32()?;
        if magic != TPM_GENERATED_VALUE {
            return Err(StructError::Unsupported {
                what: WHAT,
                field: "magic",
                value: magic,
            });
        }
        let attest_type = r.u16()?;
        if attest_type != TPM_ST_ATTEST_QUOTE {
            return Err(StructError::Unsupported {
                what: WHAT,
                field: "type",
                value: u32::from(attest_type),
            });
        }
        let qualified_signer = r.tpm2b()?.to_vec();
        let extra_data = r.tpm2b()?.to_vec();
        let clock = r.u64()?;
        let reset_count = r.u32()?;
        let restart_count = r.u32()?;
        let safe = r.u8()?;
        let firmware_version = r.u64()?;
        let count = r.u32()?;
        if count > 16 {
            return Err(StructError::Invalid {
                what: WHAT,
                detail: format!("{count} PCR banks selected"),
            });
        }
        let mut pcr_select = Vec::new();
        for _ in 0..count {
            let hash = r.u16()?;
            let size = r.u8()?;
            let bits = r.bytes(usize::from(size))?;
            let mut pcrs = Vec::new();
            for (i, b) in bits.iter().enumerate() {
                for bit in 0..8 {
                    if b & (1 << bit) != 0 {
                        let idx = i * 8 + bit;
                        pcrs.push(u8::try_from(idx).map_err(|_| StructError::Invalid {
                            what: WHAT,
                            detail: "PCR index out of range".into(),
                        })?);
                    }
                }
            }
            pcr_select.push(PcrSelect { hash, pcrs });
        }
        let pcr_digest = r.tpm2b()?.to_vec();
        r.finish()?;
        Ok(QuoteAttest {
            magic,
            attest_type,
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }

    /// Marshals the structure exactly as a TPM does.
    pub fn marshal(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        v.put_u32(self.magic);
        v.put_u16(self.attest_type);
        v.put_tpm2b(&self.qualified_signer);
        v.put_tpm2b(&self.extra_data);
        v.extend_from_slice(&self.clock.to_be_bytes());
        v.put_u32(self.reset_count);
        v.put_u32(self.restart_count);
        v.push(self.safe);
        v.extend_from_slice(&self.firmware_version.to_be_bytes());
        v.put_u32(u32::try_from(self.pcr_select.len()).unwrap_or(0));
        for s in &self.pcr_select {
            v.put_u16(s.hash);
            let bm = s.bitmap();
            v.push(3);
            v.extend_from_slice(&bm);
        }
        v.put_tpm2b(&self.pcr_digest);
        v
    }
}
