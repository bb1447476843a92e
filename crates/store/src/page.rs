//! Pages of the list queries. A page ends at a [`Cursor`]: the sort key of its last item, which
//! the next query starts after. Keyset paging, not offsets: items recorded while a client pages
//! (newer ones, at the front of a newest-first list) neither repeat an item nor skip one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nightshift_core::Millis;

/// One page of a list, and where the next one starts when there is more.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Set when items follow this page: hand it back as the filter's `after`.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// The page of `rows` fetched with one row more than `limit` asks for: that extra row, when
    /// it came, is dropped and says a next page exists, starting after the last row kept.
    pub(crate) fn of(mut rows: Vec<T>, limit: Option<u32>, key: impl Fn(&T) -> Cursor) -> Self {
        let next = match limit {
            Some(l) if rows.len() > l as usize => {
                rows.truncate(l as usize);
                rows.last().map(key)
            }
            _ => None,
        };
        Self { items: rows, next }
    }
}

/// The sort key of a list's last item: its time and a tie-breaking key, tagged with the list it
/// belongs to. Opaque to clients ([`Cursor::encode`]), so its shape may change between versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    list: String,
    pub(crate) ts: Millis,
    pub(crate) key: String,
}

/// A cursor that this version did not hand out, or one for another list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`cursor` {0}: pass back the cursor of a page's `next` link unchanged")]
pub struct CursorError(String);

impl Cursor {
    /// The cursor after an item of `list` at `ts` with tie-breaking `key`.
    pub fn new(list: &str, ts: Millis, key: impl Into<String>) -> Self {
        Self {
            list: list.into(),
            ts,
            key: key.into(),
        }
    }

    /// The time of the item the page ended at.
    pub fn ts(&self) -> Millis {
        self.ts
    }

    /// The tie-breaking key of the item the page ended at.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The cursor as a URL-safe string.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}\n{}\n{}", self.list, self.ts, self.key))
    }

    /// Reads a string from [`Cursor::encode`], for the list named `list` (`incidents`,
    /// `alerts`, `anomalies`, `changes`).
    pub fn decode(list: &str, text: &str) -> Result<Self, CursorError> {
        let bad = |why: &str| CursorError(why.to_string());
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad("is not a cursor"))?;
        let text = String::from_utf8(bytes).map_err(|_| bad("is not a cursor"))?;
        let mut parts = text.splitn(3, '\n');
        let (Some(tag), Some(ts), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("is not a cursor"));
        };
        if tag != list {
            return Err(CursorError(format!("is a cursor of {tag}, not of {list}")));
        }
        let ts = ts.parse().map_err(|_| bad("is not a cursor"))?;
        Ok(Self::new(list, ts, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_only_for_its_own_list() {
        let c = Cursor::new("changes", -5, "api/ci%2Fbot/x\ny");
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode("changes", &text), Ok(c));
        let err = Cursor::decode("alerts", &text).unwrap_err().to_string();
        assert!(err.contains("of changes, not of alerts"), "{err}");
        for junk in [
            "",
            "!!",
            "aGVsbG8",
            &URL_SAFE_NO_PAD.encode("changes\nsoon\nk"),
        ] {
            assert!(Cursor::decode("changes", junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_a_row_follows_it() {
        let key = |n: &i64| Cursor::new("t", *n, "");
        let full = Page::of(vec![5, 4, 3], Some(2), key);
        assert_eq!(full.items, vec![5, 4]);
        assert_eq!(full.next.map(|c| c.ts), Some(4));
        assert_eq!(Page::of(vec![5, 4], Some(2), key).next, None);
        assert_eq!(Page::of(vec![5, 4, 3], None, key).next, None);
    }
}
