//! What the CLI shows of the payments service: a citizen's link, trips and arrears
//! (`citypass app link|unlink|trips|arrears|repay`) and an operator's daily settlement
//! (`citypass admin settlement`). The calls are made elsewhere (`citypass_app`, the
//! admin's operator channel); this module prints their answers, as text or JSON.

use citypass_proto::v1::{
    Charge, GetArrearsResponse, GetSettlementResponse, Money, PaymentLink, PaymentProvider,
    RepayArrearsResponse, Trip,
};

use super::clock;

/// `--provider` values: the proto names without their prefix, lower case with dashes.
pub const PROVIDERS: [&str; 4] = ["sandbox", "alipay", "wechat-pay", "unionpay"];

/// The provider `--provider` names.
pub fn provider(arg: &str) -> anyhow::Result<PaymentProvider> {
    let name = format!(
        "PAYMENT_PROVIDER_{}",
        arg.replace('-', "_").to_ascii_uppercase()
    );
    PaymentProvider::from_str_name(&name)
        .filter(|p| *p != PaymentProvider::Unspecified)
        .ok_or_else(|| anyhow::anyhow!("unknown provider {arg:?}: one of {PROVIDERS:?}"))
}

fn short(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// An amount as yuan with two decimals (`5.00 CNY`).
pub fn yuan(money: Option<&Money>) -> String {
    let money = money.cloned().unwrap_or_default();
    let fen = money.minor_units;
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        fen / 100,
        fen % 100,
        if money.currency_code.is_empty() {
            "CNY"
        } else {
            &money.currency_code
        }
    )
}

fn money_json(money: Option<&Money>) -> serde_json::Value {
    let money = money.cloned().unwrap_or_default();
    serde_json::json!({"currency": money.currency_code, "fen": money.minor_units})
}

/// A link as JSON (never a token: the API does not return it).
pub fn link_json(link: &PaymentLink) -> serde_json::Value {
    clock::with_times(
        serde_json::json!({
            "link_id": link.link_id,
            "provider": short(link.provider().as_str_name(), "PAYMENT_PROVIDER_"),
            "last4": link.last4,
            "status": short(link.status().as_str_name(), "LINK_STATUS_"),
            "consent_version": link.consent.as_ref().map(|c| c.text_version.clone()),
        }),
        &[
            ("linked_at", clock::from_proto(link.linked_at.as_ref())),
            ("unlinked_at", clock::from_proto(link.unlinked_at.as_ref())),
        ],
    )
}

/// A link as one line.
pub fn link_line(link: &PaymentLink) -> String {
    format!(
        "{} link {} ({} ****{}), linked {}",
        short(link.status().as_str_name(), "LINK_STATUS_"),
        link.link_id,
        short(link.provider().as_str_name(), "PAYMENT_PROVIDER_"),
        link.last4,
        clock::from_proto(link.linked_at.as_ref()).map_or_else(|| "-".to_owned(), clock::show),
    )
}

/// A trip as JSON.
pub fn trip_json(trip: &Trip) -> serde_json::Value {
    clock::with_times(
        serde_json::json!({
            "trip_id": trip.trip_id,
            "scene": short(trip.scene().as_str_name(), "SCENE_"),
            "status": short(trip.status().as_str_name(), "TRIP_STATUS_"),
            "fare_class": short(trip.fare_class().as_str_name(), "FARE_CLASS_"),
            "entry_station_id": trip.entry_station_id,
            "exit_station_id": trip.exit_station_id,
            "fare": money_json(trip.fare.as_ref()),
            "charge_status": short(trip.charge_status().as_str_name(), "CHARGE_STATUS_"),
        }),
        &[
            ("entered_at", clock::from_proto(trip.entered_at.as_ref())),
            ("exited_at", clock::from_proto(trip.exited_at.as_ref())),
        ],
    )
}

/// A trip as one line.
pub fn trip_line(trip: &Trip) -> String {
    let when =
        clock::from_proto(trip.entered_at.as_ref()).map_or_else(|| "-".to_owned(), clock::show);
    let route = if trip.exit_station_id.is_empty() {
        trip.entry_station_id.clone()
    } else {
        format!("{} → {}", trip.entry_station_id, trip.exit_station_id)
    };
    format!(
        "{when}  {:<5} {:<24} {:>10}  {} ({})",
        short(trip.scene().as_str_name(), "SCENE_"),
        route,
        yuan(trip.fare.as_ref()),
        short(trip.status().as_str_name(), "TRIP_STATUS_"),
        short(trip.charge_status().as_str_name(), "CHARGE_STATUS_"),
    )
}

fn charge_json(charge: &Charge) -> serde_json::Value {
    clock::with_times(
        serde_json::json!({
            "charge_id": charge.charge_id,
            "trip_id": charge.trip_id,
            "amount": money_json(charge.amount.as_ref()),
            "status": short(charge.status().as_str_name(), "CHARGE_STATUS_"),
            "decline_code": charge.decline_code,
        }),
        &[("created_at", clock::from_proto(charge.created_at.as_ref()))],
    )
}

/// What is owed, as JSON.
pub fn arrears_json(arrears: &GetArrearsResponse) -> serde_json::Value {
    serde_json::json!({
        "in_arrears": arrears.in_arrears,
        "total": money_json(arrears.total.as_ref()),
        "charges": arrears.charges.iter().map(charge_json).collect::<Vec<_>>(),
    })
}

/// What is owed, as text.
pub fn print_arrears(arrears: &GetArrearsResponse) {
    if !arrears.in_arrears {
        println!("nothing owed");
        return;
    }
    println!(
        "owed {} ({} declined charges): transit gates refuse entry until repaid",
        yuan(arrears.total.as_ref()),
        arrears.charges.len()
    );
    for charge in &arrears.charges {
        println!(
            "  {}  trip {}  {}  {}",
            charge.charge_id,
            charge.trip_id,
            yuan(charge.amount.as_ref()),
            charge.decline_code
        );
    }
}

/// A repayment, as JSON.
pub fn repay_json(repaid: &RepayArrearsResponse) -> serde_json::Value {
    serde_json::json!({
        "charge": repaid.charge.as_ref().map(charge_json),
        "remaining": money_json(repaid.remaining.as_ref()),
    })
}

/// A day's settlement, as JSON.
pub fn settlement_json(settlement: &GetSettlementResponse) -> serde_json::Value {
    serde_json::json!({
        "date": settlement.date,
        "operators": settlement.operators.iter().map(|o| serde_json::json!({
            "operator": o.operator,
            "charges": o.charges,
            "due": money_json(o.due.as_ref()),
            "confirmed": money_json(o.confirmed.as_ref()),
            "pending": money_json(o.pending.as_ref()),
            "declined": money_json(o.declined.as_ref()),
            "refunded": money_json(o.refunded.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

/// A day's settlement, as a table.
pub fn print_settlement(settlement: &GetSettlementResponse) {
    println!("settlement of {} (city day)", settlement.date);
    if settlement.operators.is_empty() {
        println!("  no charges");
        return;
    }
    println!(
        "  {:<20} {:>7} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "operator", "charges", "due", "confirmed", "pending", "declined", "refunded"
    );
    for o in &settlement.operators {
        println!(
            "  {:<20} {:>7} {:>14} {:>14} {:>14} {:>14} {:>14}",
            o.operator,
            o.charges,
            yuan(o.due.as_ref()),
            yuan(o.confirmed.as_ref()),
            yuan(o.pending.as_ref()),
            yuan(o.declined.as_ref()),
            yuan(o.refunded.as_ref()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_and_amounts_read_as_the_api_names_them() {
        for name in PROVIDERS {
            assert!(provider(name).is_ok(), "{name}");
        }
        assert!(provider("unspecified").is_err());
        assert!(provider("visa").is_err());
        let money = Money {
            currency_code: "CNY".into(),
            minor_units: 1205,
        };
        assert_eq!(yuan(Some(&money)), "12.05 CNY");
    }
}
