//! The fare rules, table-driven, against the checked-in table (`config/fares.yaml`):
//! bands, the shortest path over interchanges, concessions, the daily cap, transfer
//! discounts, the maximum fare for a missing tap, and refusals.

use citypass_payments::{Day, FareClass, FareError, FareTable, Fen, Journey, LastLeg, Mode};
use proptest::prelude::*;

const TABLE: &str = include_str!("../config/fares.yaml");
const T0: u64 = 1_800_000_000;

fn table() -> FareTable {
    FareTable::from_yaml(TABLE).expect("the checked-in table loads")
}

fn metro<'a>(entry: &'a str, exit: &'a str) -> Journey<'a> {
    Journey::Metro { entry, exit }
}

#[test]
fn metro_bands_follow_the_shortest_path() {
    let table = table();
    // (entry, exit, metres, fen)
    let cases = [
        ("xidan", "xidan", 0, 300),
        ("xidan", "wangfujing", 3_119, 300),
        ("pingguoyuan", "yuquanlu", 6_910, 400),
        ("pingguoyuan", "xidan", 16_149, 500),
        ("pingguoyuan", "sihui-east", 28_488, 600),
        // Over three lines: 1 to fuxingmen, 2 to xuanwumen, 4 to the south station
        // (20 160 m), shorter than 1 to xidan then 4 (20 709 m).
        ("pingguoyuan", "beijing-south-railway-station", 20_160, 500),
        ("beijing-south-railway-station", "pingguoyuan", 20_160, 500),
        // Line 1 to sihui-east, then Batong (45 737 m, shorter than changing at sihui):
        // 13 737 m past the last band, one started 20 km: 6 + 1 yuan.
        ("pingguoyuan", "tuqiao", 45_737, 700),
    ];
    for (entry, exit, metres, fen) in cases {
        let fare = table
            .price(metro(entry, exit), FareClass::Adult, T0, &Day::default())
            .unwrap();
        assert_eq!(fare.distance_m, Some(metres), "{entry} → {exit}");
        assert_eq!(fare.base, Fen::new(fen), "{entry} → {exit}");
        assert_eq!(fare.due, Fen::new(fen), "{entry} → {exit}");
        assert_eq!(fare.operator, "metro");
    }
}

#[test]
fn concessions_by_fare_class() {
    let table = table();
    let journey = metro("pingguoyuan", "xidan"); // 5 yuan
    for (class, due) in [
        (FareClass::Adult, 500),
        (FareClass::Student, 250),
        (FareClass::Senior, 0),
        (FareClass::Disabled, 0),
    ] {
        let fare = table.price(journey, class, T0, &Day::default()).unwrap();
        assert_eq!(fare.due, Fen::new(due), "{class:?}");
        assert_eq!(fare.concession, Fen::new(500 - due), "{class:?}");
    }
}

#[test]
fn the_daily_cap_limits_what_is_left_of_the_day() {
    let table = table();
    let journey = metro("pingguoyuan", "xidan"); // 5 yuan; the cap is 20 yuan
    for (charged, due, capped) in [
        (0, 500, 0),
        (1_800, 200, 300),
        (2_000, 0, 500),
        (5_000, 0, 500),
    ] {
        let day = Day {
            charged: Fen::new(charged),
            last: None,
        };
        let fare = table.price(journey, FareClass::Adult, T0, &day).unwrap();
        assert_eq!(
            (fare.due, fare.capped),
            (Fen::new(due), Fen::new(capped)),
            "{charged}"
        );
    }
}

#[test]
fn a_change_between_metro_and_bus_within_the_window_is_discounted_once() {
    let table = table();
    let after = |mode, ended_at, discounted| Day {
        charged: Fen::ZERO,
        last: Some(LastLeg {
            mode,
            ended_at,
            discounted,
        }),
    };
    let metro_leg = metro("pingguoyuan", "xidan"); // 5 yuan
    let bus_leg = Journey::Bus { route: "52" }; // 2 yuan
    // (journey, class, day, started_at, due)
    let cases = [
        // Bus then metro, 90 minutes later: 1 yuan off.
        (
            metro_leg,
            FareClass::Adult,
            after(Mode::Bus, T0, false),
            T0 + 5_400,
            400,
        ),
        // A second later: full fare.
        (
            metro_leg,
            FareClass::Adult,
            after(Mode::Bus, T0, false),
            T0 + 5_401,
            500,
        ),
        // Metro then bus.
        (
            bus_leg,
            FareClass::Adult,
            after(Mode::Metro, T0, false),
            T0 + 60,
            100,
        ),
        // Metro then metro, bus then bus: no change of mode, no discount.
        (
            metro_leg,
            FareClass::Adult,
            after(Mode::Metro, T0, false),
            T0 + 60,
            500,
        ),
        (
            bus_leg,
            FareClass::Adult,
            after(Mode::Bus, T0, false),
            T0 + 60,
            200,
        ),
        // The leg after a discounted leg: no second discount.
        (
            metro_leg,
            FareClass::Adult,
            after(Mode::Bus, T0, true),
            T0 + 60,
            500,
        ),
        // A student's half fare (2.50) less 1 yuan.
        (
            metro_leg,
            FareClass::Student,
            after(Mode::Bus, T0, false),
            T0 + 60,
            150,
        ),
        // A free ride stays free, never negative.
        (
            metro_leg,
            FareClass::Senior,
            after(Mode::Bus, T0, false),
            T0 + 60,
            0,
        ),
        // A clock that says the leg started before the last ended: no discount.
        (
            metro_leg,
            FareClass::Adult,
            after(Mode::Bus, T0, false),
            T0 - 1,
            500,
        ),
    ];
    for (i, (journey, class, day, started_at, due)) in cases.into_iter().enumerate() {
        let fare = table.price(journey, class, started_at, &day).unwrap();
        assert_eq!(fare.due, Fen::new(due), "case {i}");
        assert_eq!(fare.discounted(), fare.transfer > Fen::ZERO);
    }
}

#[test]
fn a_trip_without_its_matching_tap_costs_the_maximum_fare() {
    let table = table();
    let adult = table
        .price(
            Journey::MetroUnmatched,
            FareClass::Adult,
            T0,
            &Day::default(),
        )
        .unwrap();
    assert_eq!(
        (adult.base, adult.due, adult.distance_m),
        (Fen::new(1_000), Fen::new(1_000), None)
    );
    let student = table
        .price(
            Journey::MetroUnmatched,
            FareClass::Student,
            T0,
            &Day::default(),
        )
        .unwrap();
    assert_eq!(student.due, Fen::new(500));
}

#[test]
fn buses_are_flat_per_route_and_paid_to_their_company() {
    let table = table();
    for (route, operator, fen) in [
        ("1", "bjbus", 200),
        ("52", "bjbus", 200),
        ("944", "suburban-bus", 300),
    ] {
        let fare = table
            .price(
                Journey::Bus { route },
                FareClass::Adult,
                T0,
                &Day::default(),
            )
            .unwrap();
        assert_eq!(
            (fare.operator.as_str(), fare.due),
            (operator, Fen::new(fen))
        );
    }
}

#[test]
fn unknown_stations_and_routes_are_refused() {
    let table = table();
    let day = Day::default();
    assert_eq!(
        table.price(metro("xidan", "atlantis"), FareClass::Adult, T0, &day),
        Err(FareError::UnknownStation)
    );
    assert_eq!(
        table.price(metro("", "xidan"), FareClass::Adult, T0, &day),
        Err(FareError::UnknownStation)
    );
    assert_eq!(
        table.price(Journey::Bus { route: "999" }, FareClass::Adult, T0, &day),
        Err(FareError::UnknownRoute)
    );
}

#[test]
fn malformed_tables_are_refused_with_their_rule() {
    let bad = [
        (
            TABLE.replace("up_to_m: 12000, fare: 400", "up_to_m: 5000, fare: 400"),
            "grow in distance",
        ),
        (TABLE.replace("student: 50", "student: 101"), "percentages"),
        (
            TABLE.replace("max_fare: 1000", "max_fare: 100000000"),
            "max_fare",
        ),
        (
            TABLE.replace("max_fare: 1000", "max_fare: 500"),
            "more than metro.max_fare",
        ),
        (
            TABLE.replace("daily_cap: 2000", "daily_cap: 0"),
            "daily_cap",
        ),
        (
            TABLE.replace("window: 90m", "window: 90"),
            "invalid duration",
        ),
        (
            TABLE.replace("{ id: gucheng, at_m: 2606 }", "{ id: gucheng, at_m: 0 }"),
            "gucheng",
        ),
        (TABLE.replace("\"944\"", "\"52\""), "twice"),
        (
            TABLE.replace("daily_cap: 2000", "daily_cap: 2000\nsurcharge: 1"),
            "surcharge",
        ),
    ];
    for (text, says) in bad {
        let err = FareTable::from_yaml(&text).expect_err(says).to_string();
        assert!(err.contains(says), "{err} should mention {says}");
    }
}

proptest! {
    /// Whatever the trip, class and day: the parts add up to the base fare, the rider
    /// never pays more than the base or than what is left of the cap, and pricing
    /// never panics.
    #[test]
    fn the_parts_of_a_fare_add_up(
        entry in 0usize..70,
        exit in 0usize..70,
        class in prop_oneof![Just(FareClass::Adult), Just(FareClass::Student), Just(FareClass::Senior), Just(FareClass::Disabled)],
        charged in 0u64..3_000,
        last in proptest::option::of((any::<bool>(), 0u64..20_000, any::<bool>())),
        offset in 0u64..20_000,
    ) {
        let table = table();
        let stations: Vec<&str> = TABLE
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- { id: "))
            .filter_map(|l| l.split(',').next())
            .filter(|id| table.has_station(id))
            .collect();
        let journey = metro(stations[entry % stations.len()], stations[exit % stations.len()]);
        let day = Day {
            charged: Fen::new(charged),
            last: last.map(|(bus, ended, discounted)| LastLeg {
                mode: if bus { Mode::Bus } else { Mode::Metro },
                ended_at: T0 + ended,
                discounted,
            }),
        };
        let fare = table.price(journey, class, T0 + offset, &day).unwrap();
        let parts = fare.due.get() + fare.concession.get() + fare.transfer.get() + fare.capped.get();
        prop_assert_eq!(parts, fare.base.get());
        prop_assert!(fare.due <= fare.base);
        prop_assert!(fare.due.get() <= 2_000u64.saturating_sub(charged));
    }
}
