//! The extension module `rustmath._rustmath`: a few kernels with Python-visible errors, built
//! against the stable ABI (abi3), so one wheel per arch serves every CPython from 3.9 on.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Greatest common divisor of two integers (Euclid), always >= 0.
#[pyfunction]
fn gcd(a: i64, b: i64) -> u64 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The primes below `n` (sieve of Eratosthenes).
#[pyfunction]
fn primes_below(n: usize) -> PyResult<Vec<usize>> {
    if n > 100_000_000 {
        return Err(PyValueError::new_err("n is too large (at most 100000000)"));
    }
    let mut sieve = vec![true; n];
    let mut out = Vec::new();
    for i in 2..n {
        if sieve[i] {
            out.push(i);
            let mut j = i * i;
            while j < n {
                sieve[j] = false;
                j += i;
            }
        }
    }
    Ok(out)
}

/// How many steps the Collatz sequence of `n` takes to reach 1.
#[pyfunction]
fn collatz_steps(n: u64) -> PyResult<u32> {
    if n == 0 {
        return Err(PyValueError::new_err("n must be positive"));
    }
    let (mut n, mut steps) = (n, 0u32);
    while n != 1 {
        n = if n % 2 == 0 {
            n / 2
        } else {
            n.checked_mul(3)
                .and_then(|m| m.checked_add(1))
                .ok_or_else(|| PyValueError::new_err("overflow"))?
        };
        steps += 1;
    }
    Ok(steps)
}

/// Lower-cased words (alphanumeric runs) of `text` and how often each occurs.
#[pyfunction]
fn word_counts(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

#[pymodule]
fn _rustmath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gcd, m)?)?;
    m.add_function(wrap_pyfunction!(primes_below, m)?)?;
    m.add_function(wrap_pyfunction!(collatz_steps, m)?)?;
    m.add_function(wrap_pyfunction!(word_counts, m)?)?;
    Ok(())
}
