//! Conversions (SPEC §9): statuses, the identity of a conversion, and how a new report about an
//! identity changes what it counts for. Pure: the store applies `apply` inside its transaction.

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Where a conversion stands. An identity counts by its current status only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversionStatus {
    /// Counts its payout in `revenue` and one in `conversions`.
    Approved,
    /// Counts its payout in `pending_revenue`.
    Pending,
    /// Counts nothing.
    Rejected,
    /// Counts nothing (nets an earlier approval to zero).
    Chargeback,
}

impl ConversionStatus {
    pub const ALL: [ConversionStatus; 4] = [
        ConversionStatus::Approved,
        ConversionStatus::Pending,
        ConversionStatus::Rejected,
        ConversionStatus::Chargeback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConversionStatus::Approved => "approved",
            ConversionStatus::Pending => "pending",
            ConversionStatus::Rejected => "rejected",
            ConversionStatus::Chargeback => "chargeback",
        }
    }

    /// The canonical names only; network synonyms are read by the postback parser.
    pub fn parse(text: &str) -> Option<ConversionStatus> {
        ConversionStatus::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// The identity of a conversion: the same identity again is the same conversion.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConversionKey {
    pub click_id: String,
    /// `[a-z0-9_-]{1,32}`; `conversion` when the network sent none.
    pub event: String,
    /// The network's transaction id; empty when it sent none.
    pub txid: String,
}

/// What one identity counts for right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionState {
    pub status: ConversionStatus,
    /// In base currency. For an approved identity, negative reports are netted into it.
    pub payout: Money,
}

/// How a report changed an identity; the answer's `result` and what the store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new identity: `200 {"result":"recorded"}`.
    Recorded(ConversionState),
    /// The same status again: `200 {"result":"duplicate"}`, nothing written.
    Duplicate,
    /// A new status or an adjustment: `200 {"result":"updated"}`.
    Updated {
        before: ConversionState,
        after: ConversionState,
    },
}

/// Applies a report (`status`, `payout` in base currency) to the identity's current state.
///
/// - no state yet: recorded as reported;
/// - same status, approved, negative payout: a reversal reported as a separate event, netted
///   into the approved payout;
/// - same status otherwise: duplicate;
/// - a new status: the identity now counts by it. Moving to rejected or chargeback keeps the
///   payout it had, so the outbound postback can send its reversal.
pub fn apply(current: Option<ConversionState>, status: ConversionStatus, payout: Money) -> Change {
    let Some(before) = current else {
        return Change::Recorded(ConversionState { status, payout });
    };
    if before.status == status {
        if status == ConversionStatus::Approved && payout < Money::ZERO {
            return Change::Updated {
                before,
                after: ConversionState {
                    status,
                    payout: before.payout + payout,
                },
            };
        }
        return Change::Duplicate;
    }
    let payout = match status {
        // Approval after pending: the network's final amount wins when it sent one that differs.
        ConversionStatus::Approved | ConversionStatus::Pending => payout,
        ConversionStatus::Rejected | ConversionStatus::Chargeback => before.payout,
    };
    Change::Updated {
        before,
        after: ConversionState { status, payout },
    }
}

/// What an identity adds to `conversions`, `revenue` and `pending_revenue` in its state.
pub fn counts(state: ConversionState) -> (i64, Money, Money) {
    match state.status {
        ConversionStatus::Approved => (1, state.payout, Money::ZERO),
        ConversionStatus::Pending => (0, Money::ZERO, state.payout),
        ConversionStatus::Rejected | ConversionStatus::Chargeback => (0, Money::ZERO, Money::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConversionStatus::*;

    fn state(status: ConversionStatus, payout: &str) -> ConversionState {
        ConversionState {
            status,
            payout: Money::parse(payout).unwrap(),
        }
    }

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    #[test]
    fn a_first_report_is_recorded_as_sent() {
        assert_eq!(
            apply(None, Pending, money("2")),
            Change::Recorded(state(Pending, "2"))
        );
    }

    #[test]
    fn the_same_status_again_is_a_duplicate() {
        assert_eq!(
            apply(Some(state(Approved, "2")), Approved, money("2")),
            Change::Duplicate
        );
        assert_eq!(
            apply(Some(state(Rejected, "2")), Rejected, money("5")),
            Change::Duplicate
        );
    }

    #[test]
    fn transitions_count_by_the_new_status() {
        let cases = [
            (state(Pending, "2"), Approved, "2.5", state(Approved, "2.5")),
            (state(Pending, "2"), Rejected, "0", state(Rejected, "2")),
            (
                state(Approved, "2"),
                Chargeback,
                "0",
                state(Chargeback, "2"),
            ),
            (state(Approved, "2"), Rejected, "2", state(Rejected, "2")),
        ];
        for (before, status, payout, after) in cases {
            assert_eq!(
                apply(Some(before), status, money(payout)),
                Change::Updated { before, after },
                "{before:?} -> {status:?}"
            );
        }
    }

    #[test]
    fn a_negative_payout_on_an_approved_identity_subtracts() {
        assert_eq!(
            apply(Some(state(Approved, "2")), Approved, money("-0.5")),
            Change::Updated {
                before: state(Approved, "2"),
                after: state(Approved, "1.5")
            }
        );
    }

    #[test]
    fn only_approved_and_pending_count_money() {
        assert_eq!(counts(state(Approved, "2")), (1, money("2"), Money::ZERO));
        assert_eq!(counts(state(Pending, "2")), (0, Money::ZERO, money("2")));
        assert_eq!(
            counts(state(Chargeback, "2")),
            (0, Money::ZERO, Money::ZERO)
        );
    }
}
