//! An exact, order-independent sum of f32 values (a 384-bit fixed-point integer), so that averages
//! over batches merge bit-for-bit whatever the order or sharding of the batches.

use serde::{Deserialize, Serialize};

/// Limbs of the fixed-point accumulator (little-endian, two's complement).
const LIMBS: usize = 6;
/// The accumulator counts units of 2^-149 (the smallest f32 subnormal).
const FRAC_BITS: i32 = 149;

/// The exact sum of any number (below 2^64) of f32 values, in units of 2^-149. Addition is exact,
/// so the sum does not depend on the order of the terms; merging two sums is adding their limbs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExactSum([u64; LIMBS]);

impl ExactSum {
    /// Adds a finite f32 (non-finite values are ignored).
    pub fn add_f32(&mut self, x: f32) {
        if !x.is_finite() || x == 0.0 {
            return;
        }
        let bits = x.to_bits();
        let neg = bits >> 31 == 1;
        let exp = ((bits >> 23) & 0xff) as i32;
        let frac = (bits & 0x7f_ffff) as u128;
        // value = m * 2^e
        let (m, e) = if exp == 0 {
            (frac, -149)
        } else {
            (frac | 0x80_0000, exp - 127 - 23)
        };
        let pos = (e + FRAC_BITS) as usize; // >= 0
        let (limb, shift) = (pos / 64, pos % 64);
        let v = m << shift; // < 2^88
        let parts = [v as u64, (v >> 64) as u64];
        if neg {
            self.sub_at(limb, parts);
        } else {
            self.add_at(limb, parts);
        }
    }

    fn add_at(&mut self, limb: usize, parts: [u64; 2]) {
        let mut carry = 0u64;
        for i in limb..LIMBS {
            let p = if i - limb < 2 { parts[i - limb] } else { 0 };
            let (s1, c1) = self.0[i].overflowing_add(p);
            let (s2, c2) = s1.overflowing_add(carry);
            self.0[i] = s2;
            carry = (c1 || c2) as u64;
            if carry == 0 && i > limb {
                break;
            }
        }
    }

    fn sub_at(&mut self, limb: usize, parts: [u64; 2]) {
        let mut borrow = 0u64;
        for i in limb..LIMBS {
            let p = if i - limb < 2 { parts[i - limb] } else { 0 };
            let (s1, b1) = self.0[i].overflowing_sub(p);
            let (s2, b2) = s1.overflowing_sub(borrow);
            self.0[i] = s2;
            borrow = (b1 || b2) as u64;
            if borrow == 0 && i > limb {
                break;
            }
        }
    }

    /// Adds another exact sum.
    pub fn merge(&mut self, other: &ExactSum) {
        let mut carry = 0u64;
        for i in 0..LIMBS {
            let (s1, c1) = self.0[i].overflowing_add(other.0[i]);
            let (s2, c2) = s1.overflowing_add(carry);
            self.0[i] = s2;
            carry = (c1 || c2) as u64;
        }
    }

    /// The sum as an f64 (deterministic: computed from the exact value, highest limb first).
    pub fn to_f64(&self) -> f64 {
        let neg = self.0[LIMBS - 1] >> 63 == 1;
        let mut mag = self.0;
        if neg {
            // two's complement negation
            let mut carry = 1u64;
            for l in mag.iter_mut() {
                let (s, c) = (!*l).overflowing_add(carry);
                *l = s;
                carry = c as u64;
            }
        }
        let mut acc = 0f64;
        for i in (0..LIMBS).rev() {
            acc += mag[i] as f64 * 2f64.powi(64 * i as i32 - FRAC_BITS);
        }
        if neg { -acc } else { acc }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_order_independent() {
        let xs = [1e30f32, 1.0, -1e30, 3.5e-40, -2.25, f32::MAX, f32::MIN, 7.0];
        let mut a = ExactSum::default();
        for &x in &xs {
            a.add_f32(x);
        }
        let mut b = ExactSum::default();
        for &x in xs.iter().rev() {
            b.add_f32(x);
        }
        assert_eq!(a, b);
        assert_eq!(a.to_f64(), 1.0 - 2.25 + 7.0 + 3.5e-40f32 as f64);
        let mut c = ExactSum::default();
        c.add_f32(-0.5);
        assert_eq!(c.to_f64(), -0.5);
        let (mut l, mut r) = (ExactSum::default(), ExactSum::default());
        for (i, &x) in xs.iter().enumerate() {
            if i % 2 == 0 {
                l.add_f32(x)
            } else {
                r.add_f32(x)
            }
        }
        l.merge(&r);
        assert_eq!(l, a);
    }
}
