//! Several fields of a span recorded in one call.
//!
//! Every `Span::record` goes through each layer: the JSON log layer serialises the span's
//! fields again and the OpenTelemetry layer updates its attributes. A scan records its
//! decision, reason and whether it was an idempotent replay once decided: three calls
//! cost three rounds (run 6 of BENCHMARKS.md: `Span::record` 5 % of the verifier's
//! CPU). [`record`] makes it one.

use tracing::field::{Field, Value};

/// Records `values` on `span` in one `record_all`; a `None` value leaves its field
/// empty. When `span` does not declare one of the names (the current span of a call
/// served without the request span, say), the fields are recorded one by one and the
/// undeclared ones ignored, as `Span::record` does.
pub fn record<const N: usize>(span: &tracing::Span, values: [(&str, Option<&dyn Value>); N]) {
    let Some(metadata) = span.metadata() else {
        return; // a disabled span records nothing
    };
    let declared = metadata.fields();
    let fields: [Option<Field>; N] = values.each_ref().map(|(name, _)| declared.field(name));
    if fields.iter().any(Option::is_none) {
        for (name, value) in values {
            if let Some(value) = value {
                span.record(name, value);
            }
        }
        return;
    }
    let pairs: [(&Field, Option<&dyn Value>); N] = std::array::from_fn(|i| {
        (
            fields[i].as_ref().expect("every field checked above"),
            values[i].1,
        )
    });
    span.record_all(&declared.value_set(&pairs));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    /// Counts `on_record` calls and keeps what they recorded.
    #[derive(Clone, Default)]
    struct Records(Arc<Mutex<(usize, Vec<String>)>>);

    impl<S: tracing::Subscriber> Layer<S> for Records {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {}

        fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
            struct Keep<'a>(&'a mut Vec<String>);
            impl Visit for Keep<'_> {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    self.0.push(format!("{}={value:?}", field.name()));
                }
            }
            if let Ok(mut kept) = self.0.lock() {
                kept.0 += 1;
                values.record(&mut Keep(&mut kept.1));
            }
        }
    }

    #[test]
    fn several_fields_are_one_record_and_none_stays_empty() {
        let records = Records::default();
        let subscriber = tracing_subscriber::registry().with(records.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "scan",
                decision = tracing::field::Empty,
                reason = tracing::field::Empty,
                replay = tracing::field::Empty,
            );
            super::record(
                &span,
                [
                    ("decision", Some(&"deny")),
                    ("reason", None),
                    ("replay", Some(&true)),
                ],
            );
        });
        let kept = records.0.lock().expect("records");
        assert_eq!(kept.0, 1, "one record call");
        assert_eq!(kept.1, vec!["decision=\"deny\"", "replay=true"]);
    }

    #[test]
    fn an_undeclared_name_leaves_the_declared_ones_recorded() {
        let records = Records::default();
        let subscriber = tracing_subscriber::registry().with(records.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", code = tracing::field::Empty);
            super::record(&span, [("code", Some(&14)), ("not.declared", Some(&"x"))]);
        });
        let kept = records.0.lock().expect("records");
        assert_eq!(kept.1, vec!["code=14"]);
    }
}
