//! Tar streams built entry by entry, byte by byte where a name is hostile (the tar crate's Builder
//! refuses `..` and absolute names, so headers are written by hand): the importer's tests through
//! the library (import_hostile.rs) and through the command (import_cli.rs) share it.

use std::io::Write;

use tar::{EntryType, Header};

/// A tar stream built entry by entry, names written as raw bytes.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

/// The mtime of every entry.
pub const MTIME: u64 = 1_600_000_000;

impl Tar {
    pub fn new() -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    /// A GNU long-name (`L`) or long-link (`K`) record, for names of 100 bytes or more.
    pub fn long(&mut self, kind: EntryType, value: &[u8]) {
        let mut data = value.to_vec();
        data.push(0);
        let mut h = Tar::header(kind, 0o644, data.len() as u64);
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_cksum();
        self.b.append(&h, &data[..]).unwrap();
    }

    /// Appends an entry whose name (and link target) go into the header untouched.
    pub fn raw(&mut self, mut h: Header, name: &[u8], link: Option<&[u8]>, data: &[u8]) {
        if name.len() >= 100 {
            self.long(EntryType::GNULongName, name);
        } else {
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
        }
        if let Some(link) = link {
            if link.len() >= 100 {
                self.long(EntryType::GNULongLink, link);
            } else {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            }
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Tar {
        self.raw(
            Tar::header(EntryType::Directory, mode, 0),
            name.as_bytes(),
            None,
            b"",
        );
        self
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Tar {
        let h = Tar::header(EntryType::Regular, mode, data.len() as u64);
        self.raw(h, name.as_bytes(), None, data);
        self
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        let h = Tar::header(EntryType::Symlink, 0o777, 0);
        self.raw(h, name.as_bytes(), Some(target.as_bytes()), b"");
        self
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        let h = Tar::header(EntryType::Link, 0o644, 0);
        self.raw(h, name.as_bytes(), Some(target.as_bytes()), b"");
        self
    }

    pub fn node(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Tar {
        let mut h = Tar::header(kind, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, name.as_bytes(), None, b"");
        self
    }

    /// A PAX extended header (`x`) for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let mut data = Vec::new();
        for (key, value) in records {
            // "LEN key=value\n", LEN counting itself.
            let base = key.len() + value.len() + 3;
            let mut len = base + 1;
            while len != base + len.to_string().len() {
                len = base + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let h = Tar::header(EntryType::XHeader, 0o644, data.len() as u64);
        self.raw(h, b"./PaxHeaders/x", None, &data);
        self
    }

    /// A GNU sparse entry claiming `real` bytes, holding 512 bytes of data at its start.
    pub fn sparse(&mut self, name: &str, real: u64) -> &mut Tar {
        /// Octal, or GNU's base-256 (first byte 0x80) for what octal cannot hold.
        fn octal(dst: &mut [u8], v: u64) {
            let s = format!("{v:0w$o}\0", w = dst.len() - 1);
            if s.len() == dst.len() {
                dst.copy_from_slice(s.as_bytes());
            } else {
                dst.fill(0);
                dst[0] = 0x80;
                let n = dst.len();
                dst[n - 8..].copy_from_slice(&v.to_be_bytes());
            }
        }
        let mut h = Tar::header(EntryType::GNUSparse, 0o644, 512);
        {
            let gnu = h.as_gnu_mut().unwrap();
            octal(&mut gnu.sparse[0].offset, 0);
            octal(&mut gnu.sparse[0].numbytes, 512);
            octal(&mut gnu.sparse[1].offset, real);
            octal(&mut gnu.sparse[1].numbytes, 0);
            octal(&mut gnu.realsize, real);
        }
        self.raw(h, name.as_bytes(), None, &[b'S'; 512]);
        self
    }

    /// The stream so far; the builder starts over empty.
    pub fn bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Bytes that do not compress (xorshift from `seed`), so that an archive is as large as asked.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
