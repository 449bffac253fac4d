//! A minimal protobuf wire-format reader: keys, varints, fixed32/64 and length-delimited fields,
//! and skipping of unknown fields of every wire type (groups included).
//!
//! Nothing is allocated here: length-delimited fields are returned as sub-slices of the input,
//! after checking that they fit in what is left of it. Errors say what is wrong and at which
//! byte offset of the (sub-)message.

/// Wire types.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const START_GROUP: u8 = 3;
pub const END_GROUP: u8 = 4;
pub const FIXED32: u8 = 5;

/// Deepest nesting of groups skipped (protobuf's own default recursion limit is 100).
const MAX_GROUP_DEPTH: usize = 64;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn wire_name(w: u8) -> &'static str {
    match w {
        VARINT => "varint",
        FIXED64 => "fixed64",
        LEN => "length-delimited",
        START_GROUP => "start-group",
        END_GROUP => "end-group",
        FIXED32 => "fixed32",
        _ => "invalid",
    }
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A base-128 varint of at most 10 bytes that fits in 64 bits.
    pub fn varint(&mut self) -> Result<u64, String> {
        let at = self.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("varint at byte {at} runs past the end"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(format!("varint at byte {at} does not fit in 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint at byte {at} is longer than 10 bytes"))
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    pub fn key(&mut self) -> Result<Option<(u32, u8)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let k = self.varint()?;
        let wire = (k & 7) as u8;
        let field = k >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(format!("bad field number {field} at byte {at}"));
        }
        if wire > FIXED32 {
            return Err(format!("invalid wire type {wire} at byte {at}"));
        }
        Ok(Some((field as u32, wire)))
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        if n > self.left() as u64 {
            return Err(format!(
                "{what} of {n} bytes at byte {} runs past the end ({} bytes left)",
                self.pos,
                self.left()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn expect(&self, field: u32, wire: u8, want: u8) -> Result<(), String> {
        if wire == want {
            Ok(())
        } else {
            Err(format!(
                "field {field} has wire type {} ({wire}), expected {} ({want}), before byte {}",
                wire_name(wire),
                wire_name(want),
                self.pos
            ))
        }
    }

    /// A length-delimited field's bytes (strings, bytes, embedded messages).
    pub fn bytes(&mut self, field: u32, wire: u8) -> Result<&'a [u8], String> {
        self.expect(field, wire, LEN)?;
        let n = self.varint()?;
        self.take(n, &format!("field {field}"))
    }

    /// An embedded message (same as [`Reader::bytes`]).
    pub fn message(&mut self, field: u32, wire: u8) -> Result<&'a [u8], String> {
        self.bytes(field, wire)
    }

    pub fn varint_field(&mut self, field: u32, wire: u8) -> Result<u64, String> {
        self.expect(field, wire, VARINT)?;
        self.varint()
    }

    pub fn fixed32(&mut self, field: u32, wire: u8) -> Result<u32, String> {
        self.expect(field, wire, FIXED32)?;
        let b = self.take(4, &format!("field {field}"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Skip the value of a field that is not needed.
    pub fn skip(&mut self, field: u32, wire: u8) -> Result<(), String> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8, &format!("field {field}")).map(drop),
            LEN => self.bytes(field, wire).map(drop),
            FIXED32 => self.take(4, &format!("field {field}")).map(drop),
            START_GROUP => self.skip_group(field),
            _ => Err(format!(
                "unexpected end-group for field {field} before byte {}",
                self.pos
            )),
        }
    }

    /// Skip a group's fields up to its end-group key (iteratively, so that nesting costs no
    /// stack; the open groups are counted, not stored).
    fn skip_group(&mut self, field: u32) -> Result<(), String> {
        let at = self.pos;
        // Field numbers of the groups still open, innermost last.
        let mut open = [0u32; MAX_GROUP_DEPTH];
        let mut depth = 1;
        open[0] = field;
        while depth > 0 {
            let Some((f, w)) = self.key()? else {
                return Err(format!(
                    "group of field {field} starting at byte {at} is not closed"
                ));
            };
            match w {
                START_GROUP => {
                    if depth == MAX_GROUP_DEPTH {
                        return Err(format!(
                            "groups nested deeper than {MAX_GROUP_DEPTH} at byte {}",
                            self.pos
                        ));
                    }
                    open[depth] = f;
                    depth += 1;
                }
                END_GROUP => {
                    if open[depth - 1] != f {
                        return Err(format!(
                            "end-group for field {f} closes the group of field {} before byte {}",
                            open[depth - 1],
                            self.pos
                        ));
                    }
                    depth -= 1;
                }
                _ => self.skip(f, w)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    pub(crate) fn varint_field(field: u32, v: u64) -> Vec<u8> {
        let mut out = varint(u64::from(field) << 3);
        out.extend(varint(v));
        out
    }

    pub(crate) fn bytes_field(field: u32, b: &[u8]) -> Vec<u8> {
        let mut out = varint(u64::from(field) << 3 | 2);
        out.extend(varint(b.len() as u64));
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let b = varint(v);
            let mut r = Reader::new(&b);
            assert_eq!(r.varint().unwrap(), v);
            assert_eq!(r.left(), 0);
            // Every truncation is an error.
            for n in 0..b.len() {
                assert!(Reader::new(&b[..n]).varint().is_err());
            }
        }
        // 10th byte above 1: more than 64 bits.
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert!(Reader::new(&b).varint().unwrap_err().contains("64 bits"));
        // 11 bytes.
        let b = [0x80; 11];
        assert!(Reader::new(&b).varint().is_err());
    }

    #[test]
    fn skips_every_wire_type_and_nested_groups() {
        let mut m = varint_field(1, 5);
        m.extend([2 << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend(bytes_field(3, b"abc"));
        m.extend([4 << 3 | 5, 0, 0, 0, 0]);
        // group 5 { varint 6; group 7 { } }
        m.extend([5 << 3 | 3, 6 << 3, 1, 7 << 3 | 3, 7 << 3 | 4, 5 << 3 | 4]);
        m.extend(varint_field(8, 9));
        let mut r = Reader::new(&m);
        let mut last = None;
        while let Some((f, w)) = r.key().unwrap() {
            if f == 8 {
                last = Some(r.varint_field(f, w).unwrap());
            } else {
                r.skip(f, w).unwrap();
            }
        }
        assert_eq!(last, Some(9));
        // Mismatched end-group; unclosed group; too deep.
        let bad = [5 << 3 | 3, 6 << 3 | 4];
        let mut r = Reader::new(&bad);
        let (f, w) = r.key().unwrap().unwrap();
        assert!(r.skip(f, w).unwrap_err().contains("closes the group"));
        let bad = [5 << 3 | 3, 6 << 3, 1];
        let mut r = Reader::new(&bad);
        let (f, w) = r.key().unwrap().unwrap();
        assert!(r.skip(f, w).unwrap_err().contains("not closed"));
        let deep = vec![5 << 3 | 3; 100];
        let mut r = Reader::new(&deep);
        let (f, w) = r.key().unwrap().unwrap();
        assert!(r.skip(f, w).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn lengths_past_the_end() {
        let mut m = varint(1 << 3 | 2);
        m.extend(varint(u64::MAX));
        let mut r = Reader::new(&m);
        let (f, w) = r.key().unwrap().unwrap();
        let e = r.bytes(f, w).unwrap_err();
        assert!(e.contains("runs past the end"), "{e}");
    }
}
