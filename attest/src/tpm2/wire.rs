//! Bounds-checked big-endian reader and writer for TPM 2.0 marshalled
//! structures (TPM 2.0 Part 2). Every read can fail; nothing here panics on
//! short or hostile input.

use super::StructError;

/// A cursor over a marshalled TPM structure.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `what` (named in errors) from `buf`.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Takes `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], StructError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(StructError::Truncated {
                what: self.what,
                at: self.pos,
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads a u8.
    pub fn u8(&mut self) -> Result<u8, StructError> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, StructError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, StructError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, StructError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a TPM2B: a u16 size followed by that many bytes.
    pub fn tpm2b(&mut self) -> Result<&'a [u8], StructError> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), StructError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(StructError::TrailingBytes {
                what: self.what,
                extra: self.buf.len() - self.pos,
            })
        }
    }
}

/// Appends marshalled values to a byte vector.
pub trait Writer {
    /// Appends a big-endian u16.
    fn put_u16(&mut self, v: u16);
    /// Appends a big-endian u32.
    fn put_u32(&mut self, v: u32);
    /// Appends a TPM2B (u16 size + bytes); sizes above u16::MAX are truncated
    /// by the caller's contract never to pass them.
    fn put_tpm2b(&mut self, v: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_tpm2b(&mut self, v: &[u8]) {
        let n = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.put_u16(n);
        self.extend_from_slice(&v[..usize::from(n)]);
    }
}
