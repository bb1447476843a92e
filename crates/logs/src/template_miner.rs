//! Streaming log template mining: each line is assigned to a template as it arrives, the
//! template's variable positions becoming `<*>`.
//!
//! The method is Drain (P. He, J. Zhu, Z. Zheng, M. R. Lyu, *Drain: An Online Log Parsing
//! Approach with Fixed Depth Tree*, ICWS 2017): lines are routed by their token count and
//! first tokens to a small set of candidate templates, and join the most similar one when
//! enough positions agree, else start a new one. One configuration serves every log source:
//!
//! - **Masking** before routing: numbers, hex, IPs with ports, UUIDs, paths, durations and
//!   sizes, quoted strings and key=value values become `<*>`, so variables never split the
//!   tree (Drain leaves this to per-source regular expressions; here it is built in).
//! - **Routing** skips tokens that still hold a digit (a variable the masks missed), as Drain
//!   does.
//! - **Similarity** counts agreeing constant positions over the constant positions of the
//!   template (a template that is mostly `<*>` does not swallow everything).
//! - **Fast path**: a line that repeats a candidate's constant tokens verbatim (most lines) is
//!   matched without masking its tokens beyond the routing prefix; the answer is the one the
//!   full comparison gives.
//! - **Ids** are sequential and kept in the checkpoint (serde), so they are stable across
//!   restarts; templates beyond the cap are evicted least-recently-seen first.

use crate::LogsError;
use serde::{Deserialize, Serialize};

/// The wildcard a variable position shows as.
pub const WILDCARD: &str = "<*>";

/// Settings of [`TemplateMiner`]; the defaults serve every log source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinerConfig {
    /// Leading tokens a line is routed by (Drain's depth − 2).
    pub prefix_tokens: usize,
    /// Share of a template's constant positions a line must match to join it.
    pub similarity: f64,
    /// Most templates kept; the least recently seen is evicted beyond it.
    pub max_templates: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            prefix_tokens: 2,
            similarity: 0.5,
            max_templates: 10_000,
        }
    }
}

impl MinerConfig {
    /// Refuses settings the miner cannot work with, naming the field.
    pub fn validate(&self) -> Result<(), LogsError> {
        if !(1..=16).contains(&self.prefix_tokens) {
            return Err(LogsError::Config(format!(
                "prefix_tokens: {} is outside 1 to 16",
                self.prefix_tokens
            )));
        }
        if !(self.similarity > 0.0 && self.similarity <= 1.0) {
            return Err(LogsError::Config(format!(
                "similarity: {} is outside (0, 1]",
                self.similarity
            )));
        }
        if !(1..=1_000_000).contains(&self.max_templates) {
            return Err(LogsError::Config(format!(
                "max_templates: {} is outside 1 to 1000000",
                self.max_templates
            )));
        }
        Ok(())
    }
}

/// One template and what the miner knows of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: u64,
    pub tokens: Vec<String>,
    pub count: u64,
    /// The sequence number of the last line it matched (for eviction).
    last_seen: u64,
}

impl Template {
    /// The template as text, tokens joined by a space.
    pub fn text(&self) -> String {
        self.tokens.join(" ")
    }
}

/// What the miner made of one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub template_id: u64,
    /// The line started a new template.
    pub new: bool,
}

/// The streaming miner. Serialisable: restore it to keep template ids after a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TemplateMiner {
    cfg: MinerConfig,
    templates: nightshift_core::hash::FingerprintMap<Template>,
    /// Hash of (token count, routing prefix) → template ids, oldest first: an index of `templates`,
    /// rebuilt after a restore.
    #[serde(skip)]
    groups: nightshift_core::hash::FingerprintMap<Vec<u64>>,
    /// Templates by the sequence number of a line they matched, for eviction: an index of
    /// `templates`, rebuilt after a restore. A key may be older than its template's `last_seen`
    /// (a hit does not touch the index); eviction re-files such entries under their true time,
    /// so the template it drops is still the least recently seen, and a line that joins a
    /// template costs no index update.
    #[serde(skip)]
    by_seen: std::collections::BTreeMap<u64, u64>,
    next_id: u64,
    lines: u64,
}

fn is_digit_token(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_digit())
}

// Byte classes, so that one pass over a token answers every masking question (a dozen
// iterator passes and substring searches per token once cost more than the rest of mining).
const DIGIT: u16 = 1;
/// `a`–`f`, `A`–`F`.
const HEX_LETTER: u16 = 1 << 1;
/// `x`, `X` (as in `0x1f`, `1920x1080`).
const X: u16 = 1 << 2;
/// Other letters.
const LETTER: u16 = 1 << 3;
const DASH: u16 = 1 << 4;
const SLASH: u16 = 1 << 5;
const COLON: u16 = 1 << 6;
const DOT: u16 = 1 << 7;
/// `+`, `,`, `_`.
const NUM_PUNCT: u16 = 1 << 8;
const PERCENT: u16 = 1 << 9;
/// Anything else, non-ASCII bytes included.
const OTHER: u16 = 1 << 10;
/// Characters a number may hold besides its digits (signs, decimals, thousands, times, ratios).
const NUMBER: u16 = DIGIT | X | DASH | SLASH | COLON | DOT | NUM_PUNCT;

const fn byte_class(b: u8) -> u16 {
    match b {
        b'0'..=b'9' => DIGIT,
        b'a'..=b'f' | b'A'..=b'F' => HEX_LETTER,
        b'x' | b'X' => X,
        b'g'..=b'z' | b'G'..=b'Z' => LETTER,
        b'-' => DASH,
        b'/' => SLASH,
        b':' => COLON,
        b'.' => DOT,
        b'+' | b',' | b'_' => NUM_PUNCT,
        b'%' => PERCENT,
        _ => OTHER,
    }
}

static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = byte_class(i as u8);
        i += 1;
    }
    t
};

/// Punctuation around a token that does not change what it is (`(12ms)`, `"abc",`).
fn is_trim(b: u8) -> bool {
    matches!(
        b,
        b',' | b';' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'.' | b':' | b'\'' | b'"'
    )
}

/// How a `key=<*>` template token ends.
const KEY_VAR: &str = "=<*>";

/// Whether a template token is the wildcard.
fn is_wild(s: &str) -> bool {
    s.as_bytes() == WILDCARD.as_bytes()
}

/// Whether a token is a variable by its form alone.
fn is_variable(tok: &str) -> bool {
    let raw = tok.as_bytes();
    let (Some(first), Some(last)) = (
        raw.iter().position(|b| !is_trim(*b)),
        raw.iter().rposition(|b| !is_trim(*b)),
    ) else {
        return false;
    };
    // Quoted strings.
    if raw.len() > 1 && (raw[0] == b'"' || raw[0] == b'\'') && raw[raw.len() - 1] == raw[0] {
        return true;
    }
    // Trim characters are ASCII, so these bounds are character boundaries.
    let b = &raw[first..=last];
    let mut classes = 0u16;
    let mut digits = 0usize;
    for c in b {
        let k = CLASS[usize::from(*c)];
        classes |= k;
        digits += usize::from(k == DIGIT);
    }
    if digits == 0 {
        // Without a digit only paths and URLs are variables.
        return classes & SLASH != 0 && is_path(b);
    }
    // Numbers (signs, decimals, thousands, times), and anything mostly digits.
    if classes & !NUMBER == 0 {
        return true;
    }
    // Hex: 0x1f, and hex ids of 8 or more (with dashes: UUIDs).
    if b.len() > 2
        && b[0] == b'0'
        && (b[1] | 0x20) == b'x'
        && b[2..].iter().all(u8::is_ascii_hexdigit)
    {
        return true;
    }
    if b.len() >= 8 && classes & !(DIGIT | HEX_LETTER | DASH) == 0 {
        return true;
    }
    if classes & SLASH != 0 && is_path(b) {
        return true;
    }
    // Durations and sizes: a number with a short unit (12ms, 3.5s, 64KB, 10.2%).
    let num_end = b
        .iter()
        .position(|c| !(c.is_ascii_digit() || *c == b'.'))
        .unwrap_or(b.len());
    if num_end > 0
        && b.len() - num_end <= 3
        && b[num_end..]
            .iter()
            .all(|c| c.is_ascii_alphabetic() || *c == b'%')
    {
        return true;
    }
    // Mostly digits among letters (ids like job_1445144423722_0020, blk_-1608999687919862906).
    digits * 2 >= b.len() && b.len() >= 4
}

/// Paths and URLs: `/var/lib/x`, `http://host/…`.
fn is_path(b: &[u8]) -> bool {
    (b[0] == b'/' && b[1..].contains(&b'/')) || b.windows(3).any(|w| w == b"://")
}

/// The whitespace-separated words of a line, as `str::split_whitespace` gives them; ASCII lines
/// (nearly all log lines) are split on bytes, eight at a time, without decoding characters.
enum Words<'a> {
    Ascii { line: &'a str, pos: usize },
    Unicode(std::str::SplitWhitespace<'a>),
}

/// ASCII's White_Space characters: space, tab, line feed, vertical tab, form feed, return.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t'..=b'\r')
}

/// The index of the first whitespace byte of ASCII `b` from `i`, else `b.len()`. Eight bytes a
/// step: a word flags its bytes below 0x21 (the lowest flag is exact: borrows only run upwards),
/// and a flagged byte that is a control character rather than whitespace is stepped over.
fn next_space(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    while let Some(chunk) = b.get(i..i + 8) {
        let mut x = [0u8; 8];
        x.copy_from_slice(chunk);
        let x = u64::from_le_bytes(x);
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        if below == 0 {
            i += 8;
            continue;
        }
        let j = i + (below.trailing_zeros() / 8) as usize;
        if is_space(b[j]) {
            return j;
        }
        i = j + 1;
    }
    i + b[i..]
        .iter()
        .position(|c| is_space(*c))
        .unwrap_or(b.len() - i)
}

fn words(line: &str) -> Words<'_> {
    if line.is_ascii() {
        Words::Ascii { line, pos: 0 }
    } else {
        Words::Unicode(line.split_whitespace())
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Words::Unicode(it) => it.next(),
            Words::Ascii { line, pos } => {
                let b = line.as_bytes();
                let start = *pos + b[*pos..].iter().position(|c| !is_space(*c))?;
                let end = next_space(b, start);
                *pos = end;
                Some(&line[start..end])
            }
        }
    }
}

/// A token after masking, borrowed from its line: the hot path allocates nothing for lines that
/// join an existing template.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    /// `<*>`.
    Var,
    /// `key=<*>`: a key with a variable value.
    KeyVar(&'a str),
    Const(&'a str),
}

impl<'a> Tok<'a> {
    /// Masks one token: `key=value` with a variable value keeps its key (`user=<*>`).
    fn of(tok: &'a str) -> Self {
        if tok == WILDCARD {
            return Tok::Var;
        }
        if let Some((k, v)) = tok.split_once('=')
            && !k.is_empty()
            && !v.is_empty()
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
        {
            return if is_variable(v) || is_digit_token(v) {
                Tok::KeyVar(k)
            } else {
                Tok::Const(tok)
            };
        }
        if is_variable(tok) {
            Tok::Var
        } else {
            Tok::Const(tok)
        }
    }

    /// Whether this masked token is the template token `s`.
    fn is(self, s: &str) -> bool {
        match self {
            Tok::Var => is_wild(s),
            Tok::KeyVar(k) => {
                s.len() == k.len() + 1 + WILDCARD.len()
                    && s.starts_with(k)
                    && s[k.len()..].starts_with('=')
                    && s.ends_with(WILDCARD)
            }
            Tok::Const(c) => s == c,
        }
    }

    fn text(self) -> String {
        match self {
            Tok::Var => WILDCARD.to_string(),
            Tok::KeyVar(k) => format!("{k}={WILDCARD}"),
            Tok::Const(c) => c.to_string(),
        }
    }

    /// Feeds the token's routing form to `h`: the wildcard branch for a variable or any token
    /// still holding a digit, else its text.
    fn route_into(self, h: &mut impl std::hash::Hasher) {
        let wild = |h: &mut dyn std::hash::Hasher| h.write(WILDCARD.as_bytes());
        match self {
            Tok::Var => wild(h),
            Tok::KeyVar(k) if is_digit_token(k) => wild(h),
            Tok::KeyVar(k) => {
                h.write(k.as_bytes());
                h.write(b"=");
                h.write(WILDCARD.as_bytes());
            }
            Tok::Const(c) if is_digit_token(c) => wild(h),
            Tok::Const(c) => h.write(c.as_bytes()),
        }
        h.write_u8(0xff);
    }
}

/// 64-bit FNV-1a over a route's bytes: a few dozen bytes a line, where SipHash's setup would
/// dominate. Routes are not attacker-chosen keys an adversary could collide on cheaply enough to
/// matter: a collision only makes two routes share candidates, and similarity still decides.
struct RouteHasher(u64);

impl Default for RouteHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for RouteHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl TemplateMiner {
    /// The settings this miner runs with.
    pub fn config(&self) -> &MinerConfig {
        &self.cfg
    }

    pub fn new(cfg: MinerConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn template(&self, id: u64) -> Option<&Template> {
        self.templates.get(&id)
    }

    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.values()
    }

    /// The routing key of a masked line: its token count and first tokens.
    fn route<'a>(&self, toks: impl ExactSizeIterator<Item = Tok<'a>>) -> u64 {
        use std::hash::Hasher;
        let mut h = RouteHasher::default();
        h.write_usize(toks.len());
        for t in toks.take(self.cfg.prefix_tokens) {
            t.route_into(&mut h);
        }
        h.finish()
    }

    /// Share of the template's constant positions the line agrees with (1 for an all-`<*>`
    /// template only when the line is all variables too), and the template's `<*>` count.
    fn similarity(template: &[String], toks: &[Tok<'_>]) -> (f64, usize) {
        let mut wild = 0usize;
        let mut same = 0usize;
        for (t, l) in template.iter().zip(toks) {
            if is_wild(t) {
                wild += 1;
            } else if l.is(t) {
                same += 1;
            }
        }
        let constant = template.len() - wild;
        if constant == 0 {
            let all_var = toks.iter().all(|t| *t == Tok::Var);
            return (if all_var { 1.0 } else { 0.5 }, wild);
        }
        (same as f64 / constant as f64, wild)
    }

    /// The template of route `key` that the line repeats verbatim at every constant position
    /// (similarity 1), the most specific one among several; `None` sends the line the slow way.
    ///
    /// This is the common case, and it needs no masking beyond the routing prefix: a template's
    /// constant tokens are never variable-like (masking made those `<*>`), so a line token
    /// equal to one masks to it, and an unequal one cannot; only `key=<*>` positions need the
    /// line's token masked. The answer is the one the full comparison gives.
    fn full_match(&self, key: u64, raw: &[&str]) -> Option<u64> {
        let mut best: Option<(u64, usize)> = None;
        for t in self
            .groups
            .get(&key)?
            .iter()
            .filter_map(|id| self.templates.get(id))
        {
            if t.tokens.len() != raw.len() {
                continue;
            }
            let mut wild = 0usize;
            let mut same = true;
            for (tt, r) in t.tokens.iter().zip(raw) {
                if is_wild(tt) {
                    wild += 1;
                } else if !(if tt.ends_with(KEY_VAR) {
                    Tok::of(r).is(tt)
                } else {
                    tt == r
                }) {
                    same = false;
                    break;
                }
            }
            // An all-`<*>` template is fully matched only by a line of variables alone.
            if same && wild == t.tokens.len() {
                same = raw.iter().all(|r| Tok::of(r) == Tok::Var);
            }
            // Among equals the later one, as the full comparison's `max_by` picks.
            if same && best.is_none_or(|(_, w)| wild <= w) {
                best = Some((t.id, wild));
            }
        }
        best.map(|(id, _)| id)
    }

    /// The routing index from the templates (their routes do not change as they generalise:
    /// lines of one route agree on its prefix).
    fn reindex(&mut self) {
        let mut ids: Vec<u64> = self.templates.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(t) = self.templates.get(&id) {
                let key = self.route(t.tokens.iter().map(|x| Tok::of(x)));
                self.groups.entry(key).or_default().push(id);
                self.by_seen.insert(t.last_seen, id);
            }
        }
    }

    /// Assigns `line` to a template, creating or generalising one.
    pub fn add(&mut self, line: &str) -> Match {
        if self.groups.is_empty() && !self.templates.is_empty() {
            self.reindex();
        }
        self.lines += 1;
        let mut raw: Vec<&str> = Vec::with_capacity(32);
        raw.extend(words(line));
        let key = self.route(raw.iter().map(|w| Tok::of(w)));
        if let Some(id) = self.full_match(key, &raw)
            && let Some(t) = self.templates.get_mut(&id)
        {
            t.count += 1;
            t.last_seen = self.lines;
            return Match {
                template_id: id,
                new: false,
            };
        }
        let toks: Vec<Tok<'_>> = raw.iter().map(|w| Tok::of(w)).collect();
        let best = self.groups.get(&key).and_then(|ids| {
            ids.iter()
                .filter_map(|id| self.templates.get(id))
                .map(|t| {
                    let (sim, wild) = Self::similarity(&t.tokens, &toks);
                    (t.id, sim, wild)
                })
                // Most similar; among equals, the more specific template.
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
        });
        let (id, new) = match best {
            Some((id, sim, _)) if sim >= self.cfg.similarity => {
                if let Some(t) = self.templates.get_mut(&id) {
                    // A full match leaves the template as it is.
                    if sim < 1.0 {
                        for (tt, l) in t.tokens.iter_mut().zip(&toks) {
                            if !is_wild(tt) && !l.is(tt) {
                                *tt = WILDCARD.to_string();
                            }
                        }
                    }
                    t.count += 1;
                    t.last_seen = self.lines;
                }
                (id, false)
            }
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                self.templates.insert(
                    id,
                    Template {
                        id,
                        tokens: toks.iter().map(|t| t.text()).collect(),
                        count: 1,
                        last_seen: self.lines,
                    },
                );
                self.groups.entry(key).or_default().push(id);
                self.by_seen.insert(self.lines, id);
                self.evict();
                (id, true)
            }
        };
        Match {
            template_id: id,
            new,
        }
    }

    /// The values of `line` at template `id`'s `<*>` positions.
    pub fn parameters(&self, id: u64, line: &str) -> Vec<String> {
        self.templates
            .get(&id)
            .map(|t| {
                t.tokens
                    .iter()
                    .zip(words(line))
                    .filter(|(tt, _)| is_wild(tt))
                    .map(|(_, raw)| raw.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops the least recently seen templates beyond the cap.
    fn evict(&mut self) {
        while self.templates.len() > self.cfg.max_templates.max(1) {
            let Some((seen, oldest)) = self.by_seen.pop_first() else {
                return;
            };
            match self.templates.get(&oldest) {
                None => continue,
                // Seen since it was filed: file it under its true time.
                Some(t) if t.last_seen != seen => {
                    self.by_seen.insert(t.last_seen, oldest);
                    continue;
                }
                Some(_) => {}
            }
            let Some(t) = self.templates.remove(&oldest) else {
                continue;
            };
            let key = self.route(t.tokens.iter().map(|x| Tok::of(x)));
            if let Some(ids) = self.groups.get_mut(&key) {
                ids.retain(|i| *i != oldest);
                if ids.is_empty() {
                    self.groups.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        assert!(MinerConfig::default().validate().is_ok());
        for (cfg, field) in [
            (
                MinerConfig {
                    prefix_tokens: 0,
                    ..MinerConfig::default()
                },
                "prefix_tokens",
            ),
            (
                MinerConfig {
                    similarity: 0.0,
                    ..MinerConfig::default()
                },
                "similarity",
            ),
            (
                MinerConfig {
                    similarity: f64::NAN,
                    ..MinerConfig::default()
                },
                "similarity",
            ),
            (
                MinerConfig {
                    max_templates: 0,
                    ..MinerConfig::default()
                },
                "max_templates",
            ),
        ] {
            let e = cfg.validate().expect_err(field).to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn variables_are_masked_and_lines_group() {
        let mut m = TemplateMiner::default();
        let a = m.add("PacketResponder 1 for block blk_38865049064139660 terminating");
        let b = m.add("PacketResponder 0 for block blk_-6952295868487656571 terminating");
        assert_eq!(a.template_id, b.template_id);
        assert!(a.new && !b.new);
        let t = m.template(a.template_id).expect("kept");
        assert_eq!(t.text(), "PacketResponder <*> for block <*> terminating");
        assert_eq!(
            m.parameters(
                b.template_id,
                "PacketResponder 0 for block blk_-6952295868487656571 terminating"
            ),
            vec!["0", "blk_-6952295868487656571"]
        );
        let c = m.add("Connection from 10.0.0.1:5000 closed after 12ms");
        let d = m.add("Connection from 10.0.0.2:6000 closed after 3.5s");
        assert_eq!(c.template_id, d.template_id);
        assert_ne!(a.template_id, c.template_id);
    }

    #[test]
    fn differing_constants_generalise_when_most_agree() {
        let mut m = TemplateMiner::default();
        let a = m.add("session opened for user alice by web");
        let b = m.add("session opened for user bob by web");
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(
            m.template(a.template_id).map(Template::text).as_deref(),
            Some("session opened for user <*> by web")
        );
        let c = m.add("disk full on volume data now");
        assert_ne!(a.template_id, c.template_id);
    }

    #[test]
    fn ids_survive_a_checkpoint_and_the_cap_evicts_the_oldest() {
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: 2,
            ..MinerConfig::default()
        });
        let a = m.add("alpha one two");
        let json = serde_json::to_string(&m).expect("serialises");
        let mut restored: TemplateMiner = serde_json::from_str(&json).expect("restores");
        assert_eq!(restored.add("alpha one two").template_id, a.template_id);
        restored.add("beta three four five");
        restored.add("gamma six seven eight nine");
        assert_eq!(restored.len(), 2);
        assert!(
            restored.template(a.template_id).is_none(),
            "the least recently seen went"
        );
    }

    #[test]
    fn memory_stays_under_the_cap_on_ever_new_lines() {
        let cap = 500;
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: cap,
            ..MinerConfig::default()
        });
        let mut rng = nightshift_core::SplitMix64::new(0);
        let mut word = || {
            let state = rng.next_u64();
            // Letters only, so masking keeps them: every line is a new template.
            (0..8)
                .map(|i| (b'a' + ((state >> (i * 5)) % 26) as u8) as char)
                .collect::<String>()
        };
        for _ in 0..200_000 {
            let line = format!("{} {} {} {}", word(), word(), word(), word());
            m.add(&line);
            assert!(m.len() <= cap);
        }
        assert_eq!(m.len(), cap);
        let indexed: usize = m.groups.values().map(Vec::len).sum();
        assert_eq!(indexed, cap, "the index is pruned too");
        assert_eq!(m.by_seen.len(), cap);
    }

    /// The masking rules written plainly, one check at a time: the byte-class version must
    /// agree with it on every token.
    fn plain_is_variable(tok: &str) -> bool {
        let t = tok.trim_matches(|c: char| {
            matches!(
                c,
                ',' | ';' | '(' | ')' | '[' | ']' | '{' | '}' | '.' | ':' | '\'' | '"'
            )
        });
        if t.is_empty() {
            return false;
        }
        let b = t.as_bytes();
        // Quoted strings.
        if tok.len() > 1
            && ((tok.starts_with('"') && tok.ends_with('"'))
                || (tok.starts_with('\'') && tok.ends_with('\'')))
        {
            return true;
        }
        // Numbers (signs, decimals, thousands), hex, and anything mostly digits.
        let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
        if digits > 0
            && b.iter().all(|c| {
                c.is_ascii_digit()
                    || matches!(
                        c,
                        b'-' | b'+' | b'.' | b',' | b'_' | b'/' | b':' | b'x' | b'X'
                    )
            })
        {
            return true;
        }
        if (t.starts_with("0x") || t.starts_with("0X"))
            && t.len() > 2
            && t[2..].bytes().all(|c| c.is_ascii_hexdigit())
        {
            return true;
        }
        if t.len() >= 8 && digits > 0 && b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-') {
            return true;
        }
        // Paths and URLs (byte scans: a substring search per token would cost more than the rest).
        if (b[0] == b'/' && b[1..].contains(&b'/')) || b.windows(3).any(|w| w == b"://") {
            return true;
        }
        // Durations and sizes: a number with a short unit (12ms, 3.5s, 64KB, 10.2%).
        let num_end = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        if num_end > 0
            && num_end < t.len()
            && t.len() - num_end <= 3
            && t[num_end..]
                .bytes()
                .all(|c| c.is_ascii_alphabetic() || c == b'%')
        {
            return true;
        }
        // Mostly digits among letters (ids like job_1445144423722_0020, blk_-1608999687919862906).
        digits * 2 >= t.len() && t.len() >= 4
    }

    #[test]
    fn masking_agrees_with_the_plain_rules() {
        let alphabet: Vec<char> = "0123456789abcfxXgzAF-/:._+,%=\"'()[]{};é< >*"
            .chars()
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            let len = 1 + (next() % 12) as usize;
            let tok: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            assert_eq!(is_variable(&tok), plain_is_variable(&tok), "token {tok:?}");
            checked += 1;
        }
        for tok in [
            "12ms",
            "3.5s",
            "64KB",
            "10.2%",
            "0x1F",
            "0xzz",
            "/var/lib/x",
            "http://a/b",
            "blk_-1608999687919862906",
            "job_1445144423722_0020",
            "deadbeef12",
            "\"quoted\"",
            "'a'",
            "(12)",
            "...",
            "",
            "user",
            "1920x1080",
            "2a5d0c1e-9f7b-4b7e-8e0f-1c2d3e4f5a6b",
        ] {
            assert_eq!(is_variable(tok), plain_is_variable(tok), "token {tok:?}");
            checked += 1;
        }
        assert!(checked > 200_000);
    }

    #[test]
    fn words_split_as_split_whitespace_does() {
        for line in [
            "a b  c",
            "  lead and trail  ",
            "tab\there\nnew\x0bvt\x0cff\rcr",
            "",
            "   ",
            "non\u{a0}breaking space é ü",
            "mixed\u{2003}em space\tand tab",
            "only spaces  between   words ",
            "a\x01control\x02byte is no space\x1fat all, but\ta tab is",
            "exactly8 exactly8\nlonger-than-eight-bytes-word\x0b",
        ] {
            let ours: Vec<&str> = words(line).collect();
            let std: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(ours, std, "line {line:?}");
        }
        // Random ASCII lines, control characters and runs of whitespace included.
        let mut rng = nightshift_core::SplitMix64::new(0);
        for _ in 0..20_000 {
            let state = rng.next_u64();
            let len = (state % 40) as usize;
            let line: String = (0..len)
                .map(|i| {
                    let r = (state.rotate_left(i as u32 * 7) % 64) as u8;
                    let b = match r {
                        0..=7 => b' ',
                        8..=13 => r + 1,
                        14 | 15 => r - 13,
                        _ => b'a' + (r - 16) % 26,
                    };
                    char::from(b)
                })
                .collect();
            let ours: Vec<&str> = words(&line).collect();
            let std: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(ours, std, "line {line:?}");
        }
    }

    #[test]
    fn a_hit_keeps_a_template_from_eviction() {
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: 2,
            ..MinerConfig::default()
        });
        let a = m.add("alpha one two").template_id;
        let b = m.add("beta three four five").template_id;
        assert_eq!(m.add("alpha one two").template_id, a);
        let c = m.add("gamma six seven eight nine").template_id;
        assert!(m.template(a).is_some(), "seen after beta");
        assert!(m.template(b).is_none(), "the least recently seen");
        assert!(m.template(c).is_some());
        assert_eq!(m.by_seen.len(), 2);
    }
}
