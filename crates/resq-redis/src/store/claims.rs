//! Claims in groups (see `claim.lua`): the claims of one call are sorted
//! into groups that share an in-flight hash and a mark bitmap, so Redis runs
//! a few commands per group instead of three per claim, and the arguments of
//! each group are laid out ready to be passed on as they are.

use std::collections::BTreeMap;

use redis::RedisWrite;
use resq::store::{Claim, ClaimOutcome, StoreError};
use resq::WorkerId;

use super::{protocol, store_err, RedisStore};
use crate::scripts;

/// Most claims in one group: its BITFIELD takes 4 arguments a claim, and
/// Lua's `unpack` stops at about 8,000 values.
const GROUP_MAX: usize = 1_000;

/// Claims that share an in-flight hash and a bitmap, by their place in the
/// call.
#[derive(Debug, PartialEq, Eq)]
struct Group {
    queue: String,
    block: String,
    members: Vec<usize>,
}

/// Sorts claims into groups in the order their (queue, block) first comes,
/// each at most [`GROUP_MAX`] claims.
fn groups(claims: &[Claim]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut open: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, c) in claims.iter().enumerate() {
        let key = (c.queue.as_str(), c.mark.block.as_str());
        match open.get(&key) {
            Some(&g) if out[g].members.len() < GROUP_MAX => out[g].members.push(i),
            _ => {
                open.insert(key, out.len());
                out.push(Group {
                    queue: c.queue.clone(),
                    block: c.mark.block.clone(),
                    members: vec![i],
                });
            }
        }
    }
    out
}

/// The token of the job fetched first: the lowest, as a worker's tokens
/// only grow (the fetch keeps them so). `None` when a token is not a number
/// or there is none: the scripts then look at each job on its own.
pub(super) fn lowest_token<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut lowest: Option<(u64, &str)> = None;
    for token in tokens {
        let n: u64 = token.parse().ok()?;
        if lowest.is_none_or(|(low, _)| n < low) {
            lowest = Some((n, token));
        }
    }
    lowest.map(|(_, token)| token)
}

impl RedisStore {
    /// Claims the marks of `claims` in one script call (in cluster mode,
    /// claims of one queue); the outcomes come back in the order of `claims`.
    pub(super) async fn claim_groups(
        &self,
        worker: &WorkerId,
        claims: &[Claim],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        let w = worker.as_str();
        let groups = groups(claims);
        let members = |g: &Group| -> Vec<&Claim> { g.members.iter().filter_map(|&i| claims.get(i)).collect() };
        // Keys first (two a group), then the arguments, all written into the
        // command's one buffer: no allocation per claim.
        let mut cmd = scripts::evalsha(&scripts::CLAIM, 2 * groups.len());
        let mut block_keys = Vec::with_capacity(groups.len());
        for g in &groups {
            let keys = self.keys.for_queue(&g.queue);
            let block_key = keys.marks(&g.queue, &g.block);
            cmd.arg(keys.inflight(w, &g.queue)).arg(&block_key);
            block_keys.push(block_key);
        }
        cmd.arg(groups.len());
        for (g, block_key) in groups.iter().zip(&block_keys) {
            let mine = members(g);
            let keep = mine.iter().map(|c| c.until.0).max().unwrap_or(0);
            cmd.arg(mine.len())
                .arg(lowest_token(mine.iter().map(|c| c.token.as_str())).unwrap_or(""))
                .arg(keep);
            for c in &mine {
                cmd.arg("SET").arg("u1").arg(c.mark.index).arg(1);
            }
            for c in &mine {
                cmd.write_arg_fmt(format_args!("c{}", c.token));
                cmd.write_arg_fmt(format_args!("{} {block_key}", c.mark.index));
            }
        }
        let codes: Vec<i64> = scripts::run_evalsha(&scripts::CLAIM, &cmd, &mut self.conn.clone())
            .await
            .map_err(store_err)?;
        if codes.len() != claims.len() {
            return Err(protocol("a claim reply with a wrong count"));
        }
        let mut outcomes = vec![ClaimOutcome::Gone; claims.len()];
        let placed = groups.iter().flat_map(|g| g.members.iter().copied());
        for (i, code) in placed.zip(codes) {
            let outcome = match code {
                0 => ClaimOutcome::Claimed,
                1 => ClaimOutcome::Replayed,
                2 => ClaimOutcome::Gone,
                _ => return Err(protocol("a claim reply with an unknown code")),
            };
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = outcome;
            }
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resq::mark::Mark;
    use resq::UnixMs;

    fn claim(queue: &str, token: &str, mark: &str) -> Claim {
        Claim {
            queue: queue.into(),
            token: token.into(),
            mark: Mark::parse(mark).expect("a test mark"),
            until: UnixMs(0),
        }
    }

    #[test]
    fn claims_group_by_hash_and_bitmap_in_first_seen_order() {
        let (a, b) = ("AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB");
        let claims = [
            claim("q", "5", &format!("{a}.1")),
            claim("r", "6", &format!("{a}.2")),
            claim("q", "7", &format!("{b}.3")),
            claim("q", "8", &format!("{a}.4")),
        ];
        let got: Vec<(String, String, Vec<usize>)> = groups(&claims)
            .into_iter()
            .map(|g| (g.queue, g.block, g.members))
            .collect();
        assert_eq!(
            got,
            [
                ("q".into(), a.into(), vec![0, 3]),
                ("r".into(), a.into(), vec![1]),
                ("q".into(), b.into(), vec![2]),
            ]
        );
    }

    #[test]
    fn a_group_holds_at_most_its_cap() {
        let claims: Vec<Claim> = (0..2_500)
            .map(|i| claim("q", &i.to_string(), &format!("AAAAAAAAAAAAAAAA.{}", i % 4096)))
            .collect();
        let sizes: Vec<usize> = groups(&claims).iter().map(|g| g.members.len()).collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);
    }

    #[test]
    fn the_lowest_token_is_compared_as_a_number() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["10", "9", "11"], Some("9")),
            (&["100", "99"], Some("99")),
            (&["7"], Some("7")),
            (&["7", "x"], None),
            (&["-1", "2"], None),
            (&[], None),
        ];
        for (tokens, want) in cases {
            assert_eq!(lowest_token(tokens.iter().copied()), *want, "{tokens:?}");
        }
    }
}
