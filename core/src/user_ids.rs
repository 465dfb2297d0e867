//! `Profile:AddUserId()` / `Profile:RemoveUserId()` (spec §16).

use crate::engine::Engine;
use crate::protocol::{DataStoreState, ProfileId};

/// Luau's `tostring` of a number, for messages.
pub fn lua_number(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
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
