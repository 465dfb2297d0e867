//! `Profile:AddUserId()` / `Profile:RemoveUserId()` (spec §16).

use crate::engine::Engine;
use crate::protocol::{DataStoreState, ProfileId};

/// Luau's `tostring` of a number, for messages: the shortest digits that read back as `v`, in
/// fixed notation while the decimal point falls between 5 places left of the first digit and 21
/// places right of it (`1e20` is `100000000000000000000`, `1e-6` is `0.000001`), otherwise
/// as `d.ddde±XX` with at least two exponent digits (`1e+21`, `1.5e-07`), as Luau's VM prints
/// numbers.
pub fn lua_number(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust prints the same shortest round-trip digits, in either notation.
    let scientific = format!("{v:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` of a finite number has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` prints a whole exponent");
    // Digits before the decimal point, counted from the first significant digit.
    let dot = exponent + 1;
    if (-5..=21).contains(&dot) {
        format!("{v}")
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

impl Engine {
    /// `Profile:AddUserId(id)`: appends an integer id once. Non-integers warn; negative ids are
    /// ignored on live profiles (Roblox user ids are positive; mock profiles accept test ids).
    pub fn add_user_id(&mut self, profile: ProfileId, id: f64) {
        if let Some(id) = self.user_id_argument(id, ":AddUserId()") {
            let live = self.state == DataStoreState::Access;
            if let Some(p) = self.profiles.get_mut(&profile) {
                let ignored = id < 0 && live && !p.is_mock;
                if !ignored && !p.user_ids.contains(&id) {
                    p.user_ids.push(id);
                }
            }
        }
    }

    /// `Profile:RemoveUserId(id)`: removes the first occurrence.
    pub fn remove_user_id(&mut self, profile: ProfileId, id: f64) {
        if let Some(id) = self.user_id_argument(id, ":RemoveUserId()")
            && let Some(p) = self.profiles.get_mut(&profile)
            && let Some(i) = p.user_ids.iter().position(|x| *x == id)
        {
            p.user_ids.remove(i);
        }
    }

    fn user_id_argument(&mut self, id: f64, method: &str) -> Option<i64> {
        if let Some(id) = crate::wire::whole_number(id) {
            Some(id)
        } else {
            self.warn(format!(
                "[ProfileStore]: Invalid UserId argument for {method} ({}); Traceback:",
                lua_number(id)
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lua_number;

    #[test]
    fn numbers_print_as_luau_prints_them() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (123456789.125, "123456789.125"),
            (1e15, "1000000000000000"),
            (1e20, "100000000000000000000"),
            (9.99e20, "999000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e22, "1e+22"),
            (-2.5e22, "-2.5e+22"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.00001, "0.00001"),
            (0.000001, "0.000001"),
            (1.5e-6, "0.0000015"),
            (1e-7, "1e-07"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (v, text) in cases {
            assert_eq!(lua_number(v), text, "{v:e}");
        }
    }
}
