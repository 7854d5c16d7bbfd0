//! Unreplaced macros: a traffic source or network that failed to fill a token sends it literally
//! (`##SUB_ID_SHORT(action)##`, `{clickid}`, `${SUBID}`, `#s2#`, `[clickid]`, `REPLACE`). Such a
//! value is never stored as data.

/// True when `value` is a placeholder some ad or affiliate platform forgot to replace.
pub fn is_unreplaced(value: &str) -> bool {
    let value = value.trim();
    if matches!(value, "REPLACE" | "OPTIONAL") {
        return true;
    }
    let wrappers: [(&str, &str); 8] = [
        ("${", "}"),
        ("{{", "}}"),
        ("{", "}"),
        ("##", "##"),
        ("#", "#"),
        ("[", "]"),
        ("<", ">"),
        ("%", "%"),
    ];
    wrappers.iter().any(|(open, close)| {
        value.len() > open.len() + close.len()
            && value.starts_with(open)
            && value.ends_with(close)
            && is_token_name(&value[open.len()..value.len() - close.len()])
    })
}

/// Token names are identifiers, optionally with an argument list: `SUB_ID_SHORT(action)`, `s2`,
/// `aff_sub`, `campaign.id`.
fn is_token_name(inner: &str) -> bool {
    let inner = inner.trim();
    !inner.is_empty()
        && inner.len() <= 64
        && inner.bytes().any(|b| b.is_ascii_alphabetic())
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:()| ".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_of_every_platform_are_unreplaced() {
        for token in [
            "##SUB_ID_SHORT(action)##",
            "{clickid}",
            "${SUBID}",
            "#s2#",
            "[clickid]",
            "REPLACE",
            "OPTIONAL",
            "{{click_id}}",
            "<sub_id>",
            "%zoneid%",
            "{aff_sub}",
            "{transaction_id}",
            "#price#",
            " {clickid} ",
        ] {
            assert!(is_unreplaced(token), "{token}");
        }
    }

    #[test]
    fn real_values_are_not_placeholders() {
        for value in [
            "",
            "abc123",
            "1234",
            "2.50",
            "[]",
            "{}",
            "##",
            "#1#",
            "[12345]",
            "replace",
            "a{b}c",
            "{\"json\":1}",
            "Xy-9_zz",
        ] {
            assert!(!is_unreplaced(value), "{value}");
        }
    }
}
