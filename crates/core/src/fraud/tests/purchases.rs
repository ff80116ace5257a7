//! The purchase rules: HIGH_VALUE_PURCHASE, PURCHASE_WITHOUT_ACTIVITY and
//! RAPID_PURCHASES at their thresholds, and a card tester tripping several at
//! once.

use super::*;

#[test]
fn high_value_purchase_threshold_and_amount() {
    let events = [
        e("a", 0.0, Cart),
        e("a", 1.0, Cart),
        e("a", 2.0, Buy).amount(499.99),
        e("b", 0.0, Cart),
        e("b", 1.0, Cart),
        e("b", 2.0, Buy).amount(500.0),
        e("c", 0.0, Cart),
        e("c", 1.0, Cart),
        e("c", 2.0, Buy).amount(2500.0),
        e("c", 400.0, Buy).amount(900.0),
        e("d", 0.0, Cart).amount(9000.0),
    ];
    assert_eq!(
        only(&run(&events), Rule::HighValuePurchase),
        vec![5, 8, 9],
        "every qualifying purchase"
    );
}

#[test]
fn purchase_without_activity_needs_two_earlier_transactions_in_the_hour() {
    let cold = [e("u", 0.0, View), e("u", 10.0, Buy).amount(20.0)];
    assert_eq!(only(&run(&cold), Rule::PurchaseWithoutActivity), vec![1]);
    let one = [e("u", 0.0, Cart), e("u", 10.0, Buy).amount(20.0)];
    assert_eq!(only(&run(&one), Rule::PurchaseWithoutActivity), vec![1]);
    let two = [e("u", 0.0, Cart), e("u", 5.0, Cart), e("u", 10.0, Buy).amount(20.0)];
    assert!(only(&run(&two), Rule::PurchaseWithoutActivity).is_empty());
    let stale = [e("u", 0.0, Cart), e("u", 5.0, Cart), e("u", 3605.0, Buy).amount(20.0)];
    assert_eq!(
        only(&run(&stale), Rule::PurchaseWithoutActivity),
        vec![2],
        "carts older than an hour"
    );
}

#[test]
fn rapid_purchases_three_within_five_minutes() {
    let two = [e("u", 0.0, Buy).amount(5.0), e("u", 60.0, Buy).amount(5.0)];
    assert!(only(&run(&two), Rule::RapidPurchases).is_empty());
    let three = [
        e("u", 0.0, Buy).amount(5.0),
        e("u", 60.0, Buy).amount(5.0),
        e("u", 299.0, Buy).amount(5.0),
    ];
    assert_eq!(only(&run(&three), Rule::RapidPurchases), vec![2]);
    let spread = [
        e("u", 0.0, Buy).amount(5.0),
        e("u", 60.0, Buy).amount(5.0),
        e("u", 300.0, Buy).amount(5.0),
    ];
    assert!(only(&run(&spread), Rule::RapidPurchases).is_empty());
}

#[test]
fn a_card_tester_trips_several_rules_once_each() {
    let events: Vec<E> = (0..5).map(|i| e("u", f64::from(i) * 8.0, Buy).amount(25.0)).collect();
    let fired = run(&events);
    assert_eq!(only(&fired, Rule::PurchaseWithoutActivity), vec![0]);
    assert_eq!(only(&fired, Rule::RapidPurchases), vec![2]);
    assert_eq!(only(&fired, Rule::HighVelocity), vec![4]);
}
