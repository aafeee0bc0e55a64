//! The extension module `rustsum._rustsum`: checksums and an edit distance, built by
//! setuptools-rust against the stable ABI (abi3), so one wheel per arch serves every CPython
//! from 3.9 on. The checksums are zlib's (CRC-32, Adler-32), so the tests can check them
//! against Python's own `zlib`, plus 64-bit FNV-1a.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The CRC-32 (IEEE 802.3, zlib's) table for the reflected polynomial 0xEDB88320.
const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 of `data`, continuing from `value` (as `zlib.crc32(data, value)`).
#[pyfunction]
#[pyo3(signature = (data, value = 0))]
fn crc32(data: &[u8], value: u32) -> u32 {
    let mut c = !value;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Adler-32 of `data`, continuing from `value` (as `zlib.adler32(data, value)`).
#[pyfunction]
#[pyo3(signature = (data, value = 1))]
fn adler32(data: &[u8], value: u32) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (value & 0xffff, value >> 16);
    // 5552 bytes at most between reductions keep `b` below 2^32 (zlib's NMAX).
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// 64-bit FNV-1a hash of `data`.
#[pyfunction]
fn fnv1a_64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Levenshtein distance between two strings, by Unicode code point; either at most
/// 100000 code points long.
#[pyfunction]
fn levenshtein(a: &str, b: &str) -> PyResult<usize> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().max(b.len()) > 100_000 {
        return Err(PyValueError::new_err(
            "strings are too long (at most 100000 code points)",
        ));
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    Ok(row[b.len()])
}

#[pymodule]
fn _rustsum(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(crc32, m)?)?;
    m.add_function(wrap_pyfunction!(adler32, m)?)?;
    m.add_function(wrap_pyfunction!(fnv1a_64, m)?)?;
    m.add_function(wrap_pyfunction!(levenshtein, m)?)?;
    Ok(())
}
