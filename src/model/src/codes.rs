//! Olist's codes: the order statuses and payment types silver accepts, and
//! the rule for which orders count towards a person's orders and spend.

/// Every order status silver accepts (`order_status_known`).
pub const ORDER_STATUSES: &[&str] =
    &["created", "approved", "invoiced", "processing", "shipped", "delivered", "canceled", "unavailable"];

/// Every payment type silver accepts (`payment_type_known`).
pub const PAYMENT_TYPES: &[&str] = &["credit_card", "boleto", "voucher", "debit_card", "not_defined"];

/// Statuses whose orders do not count (the SPEC's "counted orders" are all
/// others).
pub const UNCOUNTED_STATUSES: &[&str] = &["canceled", "unavailable"];

/// Whether an order of this (lower-cased) status is a counted order.
pub fn is_counted(status: &[u8]) -> bool {
    !UNCOUNTED_STATUSES.iter().any(|s| s.as_bytes() == status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncounted_statuses_are_statuses() {
        assert!(UNCOUNTED_STATUSES.iter().all(|s| ORDER_STATUSES.contains(s)));
        assert!(is_counted(b"delivered") && !is_counted(b"canceled") && !is_counted(b"unavailable"));
    }
}
