//! RFC 4180 records from a byte stream, in bounded memory: csv_core parses
//! into buffers this reader owns and grows only up to
//! `golden360.max_record_bytes` (and `MAX_FIELDS` fields). A longer record,
//! such as an unterminated quote that would swallow the rest of a file, is
//! parsed to its end without keeping its bytes and reported as `TooLong`,
//! with its position, so the loader can reject it with a capped copy.
//!
//! Parsing is csv's own (csv_core, the engine of the csv crate): quotes,
//! doubled quotes, any of CR, LF, CRLF as terminators, blank lines skipped,
//! a UTF-8 BOM before the first record dropped, any number of fields.

use csv_core::ReadRecordResult;
use std::io::{self, Read};

use super::source::READ_BUFFER;

/// More fields than this is no Olist record (they have at most nine).
pub const MAX_FIELDS: usize = 4096;

/// Where a record lies in the file: its first byte (which may be the line
/// ending of the record before, as the parser consumes it), the byte after
/// its last, and the line it starts on (1-based, counting LFs before it).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub line: u64,
}

/// One parsed record: its fields, valid until the next call to `next`.
pub struct Record<'r> {
    bytes: &'r [u8],
    ends: &'r [usize],
    pub span: Span,
}

impl<'r> Record<'r> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> Option<&'r [u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    pub fn fields(&self) -> impl Iterator<Item = &'r [u8]> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// Every field's bytes, back to back.
    pub fn as_slice(&self) -> &'r [u8] {
        &self.bytes[..self.ends.last().copied().unwrap_or(0)]
    }
}

pub enum Next<'r> {
    Record(Record<'r>),
    /// A record over the byte or field limit; its bytes were not kept.
    TooLong(Span),
    End,
}

/// Where records come from: parsed here (`Records`), or parsed ahead on a
/// helper thread and handed over in batches (`loader::Ahead`).
pub trait RecordSource {
    fn next(&mut self) -> io::Result<Next<'_>>;
}

impl<R: Read> RecordSource for Records<R> {
    fn next(&mut self) -> io::Result<Next<'_>> {
        Records::next(self)
    }
}

/// Parsed records that own their bytes, so they can cross to another
/// thread: every record's fields back to back, their ends, and the spans.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Per record: where its bytes and ends stop (they start where the
    /// previous one's stop), its span, and whether it was too long.
    items: Vec<(usize, usize, Span, bool)>,
}

impl Batch {
    /// Bytes of fields held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Records held (too long ones included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn push(&mut self, next: &Next<'_>) {
        match next {
            Next::Record(record) => {
                self.bytes.extend_from_slice(record.bytes);
                // A record's field ends count from its own first byte.
                self.ends.extend_from_slice(record.ends);
                self.items.push((self.bytes.len(), self.ends.len(), record.span, false));
            }
            Next::TooLong(span) => self.items.push((self.bytes.len(), self.ends.len(), *span, true)),
            Next::End => {}
        }
    }

    /// The `i`th record as the parser gave it (None past the last).
    pub fn get(&self, i: usize) -> Option<Next<'_>> {
        let &(bytes_to, ends_to, span, too_long) = self.items.get(i)?;
        if too_long {
            return Some(Next::TooLong(span));
        }
        let (bytes_from, ends_from) = match i {
            0 => (0, 0),
            _ => (self.items[i - 1].0, self.items[i - 1].1),
        };
        Some(Next::Record(Record { bytes: &self.bytes[bytes_from..bytes_to], ends: &self.ends[ends_from..ends_to], span }))
    }
}

pub struct Records<R> {
    inner: R,
    core: csv_core::Reader,
    input: Vec<u8>,
    at: usize,
    filled: usize,
    eof: bool,
    /// File offset of input[0].
    input_offset: u64,
    fields: Vec<u8>,
    ends: Vec<usize>,
    max_record_bytes: usize,
}

impl<R: Read> Records<R> {
    pub fn new(inner: R, max_record_bytes: usize) -> Records<R> {
        Records {
            inner,
            core: csv_core::Reader::new(),
            input: vec![0; READ_BUFFER],
            at: 0,
            filled: 0,
            eof: false,
            input_offset: 0,
            fields: vec![0; 4096.min(max_record_bytes.max(1))],
            ends: vec![0; 16],
            max_record_bytes: max_record_bytes.max(1),
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn offset(&self) -> u64 {
        self.input_offset + self.at as u64
    }

    pub fn next(&mut self) -> io::Result<Next<'_>> {
        let start = self.offset();
        let line = self.core.line();
        let (mut out, mut nends) = (0usize, 0usize);
        let mut too_long = false;
        loop {
            if self.at == self.filled && !self.eof {
                self.input_offset += self.filled as u64;
                self.at = 0;
                self.filled = self.inner.read(&mut self.input)?;
                self.eof = self.filled == 0;
            }
            let (result, nin, nout, nend) =
                self.core.read_record(&self.input[self.at..self.filled], &mut self.fields[out..], &mut self.ends[nends..]);
            self.at += nin;
            out += nout;
            nends += nend;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if self.fields.len() >= self.max_record_bytes {
                        // Over the limit: parse on to the record's end,
                        // overwriting the same buffer.
                        too_long = true;
                        out = 0;
                    } else {
                        let grown = (self.fields.len() * 2).min(self.max_record_bytes);
                        self.fields.resize(grown, 0);
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= MAX_FIELDS {
                        too_long = true;
                        nends = 0;
                    } else {
                        let grown = (self.ends.len() * 2).min(MAX_FIELDS);
                        self.ends.resize(grown, 0);
                    }
                }
                ReadRecordResult::Record => {
                    let span = Span { start, end: self.offset(), line };
                    if too_long {
                        return Ok(Next::TooLong(span));
                    }
                    return Ok(Next::Record(Record { bytes: &self.fields[..out], ends: &self.ends[..nends], span }));
                }
                ReadRecordResult::End => return Ok(Next::End),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize) -> Vec<Result<Vec<String>, (u64, u64)>> {
        let mut records = Records::new(input, max);
        let mut out = Vec::new();
        loop {
            match records.next().unwrap() {
                Next::Record(r) => out.push(Ok(r.fields().map(|f| String::from_utf8_lossy(f).into_owned()).collect())),
                Next::TooLong(span) => out.push(Err((span.start, span.end))),
                Next::End => return out,
            }
        }
    }

    #[test]
    fn parses_like_csv() {
        let parsed = all(b"\xef\xbb\xbfa,b\r\n\"x,\"\"y\"\"\",\"line\r\nbreak\"\n\nlast,", 1 << 20);
        assert_eq!(
            parsed,
            vec![Ok(vec!["a".into(), "b".into()]), Ok(vec!["x,\"y\"".into(), "line\r\nbreak".into()]), Ok(vec!["last".into(), "".into()])]
        );
    }

    #[test]
    fn a_record_over_the_limit_is_skipped_to_its_end() {
        let mut input = b"h\n\"".to_vec();
        input.extend(std::iter::repeat_n(b'a', 100_000));
        input.extend(b"\"\nok\n");
        let parsed = all(&input, 1024);
        assert_eq!(parsed[0], Ok(vec!["h".to_string()]));
        assert!(matches!(parsed[1], Err((start, end)) if start == 2 && end as usize == input.len() - 3));
        assert_eq!(parsed[2], Ok(vec!["ok".to_string()]));
    }

    #[test]
    fn an_unterminated_quote_ends_at_end_of_input_without_growing() {
        let mut input = b"h\n\"".to_vec();
        input.extend(std::iter::repeat_n(b'z', 3 << 20));
        let mut records = Records::new(&input[..], 4096);
        assert!(matches!(records.next().unwrap(), Next::Record(_)));
        assert!(matches!(records.next().unwrap(), Next::TooLong(span) if span.end as usize == input.len()));
        assert!(matches!(records.next().unwrap(), Next::End));
        assert!(records.fields.len() <= 4096);
    }
}
