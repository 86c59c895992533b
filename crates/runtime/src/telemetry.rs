//! Logs, traces and metrics: a `tracing` subscriber with human-readable output and an
//! OpenTelemetry layer, and a global OpenTelemetry meter provider, both exporting over
//! OTLP/gRPC when an endpoint is configured.
//!
//! Spans are always turned into OpenTelemetry spans, export or not, because trace context
//! must flow *through* a service even when that service exports nothing: otherwise one
//! service without a collector cuts every trace that crosses it in two.
//!
//! For the same reason the log filter (`log_filter`) applies to the log output only; the
//! OpenTelemetry layer has its own fixed `INFO` threshold. Otherwise `log_filter: warn`
//! would silently disable request spans and break trace propagation.
//!
//! Metrics are different: without an endpoint the meter provider has no reader, so
//! instruments made from it are no-ops (observable callbacks are never even registered).
//! With one, a periodic reader exports every 60 s (`OTEL_METRIC_EXPORT_INTERVAL`, in
//! milliseconds, overrides it). Instruments must be made *after* [`init`]: one made from
//! the global meter before a provider is installed stays a no-op.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::{LogFormat, ServerConfig};
use crate::scrape::Scrape;

/// Instrumentation scope of the spans this crate's subscriber produces.
const TRACER_NAME: &str = "citypass";

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `log_filter` is not valid `tracing` filter syntax.
    #[error("invalid log filter `{filter}`: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter could not be built (e.g. a malformed endpoint).
    #[error("cannot build the OTLP exporter for `{endpoint}`: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// OTLP export over gRPC runs its connection on the caller's tokio runtime.
    #[error("OTLP export needs a tokio runtime: call telemetry::init from inside one")]
    NoRuntime,
    /// A global subscriber was installed already (telemetry initialised twice).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
    /// The Prometheus scrape endpoint (`metrics_listen`) could not start.
    #[error(transparent)]
    Scrape(#[from] crate::scrape::ScrapeError),
}

/// Keeps the tracer and meter providers alive; flushes and shuts them down when the
/// service stops.
///
/// Prefer `guard.shutdown().await` at the end of `main`. Dropping the guard also flushes
/// on a multi-threaded runtime or outside any runtime.
#[must_use = "dropping the guard shuts telemetry down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    providers: Option<Providers>,
    /// The Prometheus scrape endpoint's task, stopped with the guard.
    scrape: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Providers {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Providers {
    /// Shuts both down (each flushes first), blocking until their exports finish;
    /// logs what failed.
    fn shutdown(self) {
        // Metrics first: a last export of the gauges, then the spans.
        if let Err(err) = self.meter.shutdown() {
            tracing::warn!(%err, "metrics shutdown failed");
        }
        if let Err(err) = self.tracer.shutdown() {
            tracing::warn!(%err, "telemetry shutdown failed");
        }
    }
}

impl TelemetryGuard {
    /// Flushes pending spans and metrics and shuts the exporters down.
    pub async fn shutdown(mut self) {
        if let Some(providers) = self.providers.take() {
            // Shutdown blocks until the export finishes; keep it off the async workers.
            if let Err(err) = tokio::task::spawn_blocking(move || providers.shutdown()).await {
                tracing::warn!(%err, "telemetry shutdown task failed");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(scrape) = self.scrape.take() {
            scrape.abort();
        }
        let Some(providers) = self.providers.take() else {
            return;
        };
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Err(_) => providers.shutdown(),
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| providers.shutdown()),
            // Blocking the only worker would stall the exporter that needs it.
            Ok(_) => tracing::warn!(
                "telemetry guard dropped on a current-thread runtime; call shutdown().await to flush"
            ),
        }
    }
}

/// Installs the global subscriber for a service: log output filtered by
/// `config.log_filter`, OpenTelemetry spans for `config.service_name`, OTLP export to
/// `config.otlp_endpoint` if set, and W3C trace context as the global propagator; and
/// the global meter provider (OTLP metric export to the same endpoint if set).
///
/// Must be called from inside a tokio runtime when an OTLP endpoint is set.
pub fn init(config: &ServerConfig) -> Result<TelemetryGuard, TelemetryError> {
    let export = Export::resolve(config.otlp_endpoint.as_deref(), |name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    });
    let tracer = tracer_provider_for(&config.service_name, &export)?;
    let (meter, scrape) = match config.metrics_listen {
        Some(addr) => {
            let (scrape, reader) = Scrape::new()?;
            let meter = meter_provider_for(&config.service_name, &export, Some(reader))?;
            let (_, task) = scrape.serve(addr)?;
            (meter, Some(task))
        }
        None => (
            meter_provider_for(&config.service_name, &export, None)?,
            None,
        ),
    };
    subscriber(&config.log_filter, config.log_format, &tracer)?
        .try_init()
        .map_err(TelemetryError::AlreadyInstalled)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(tracer.clone());
    opentelemetry::global::set_meter_provider(meter.clone());
    Ok(TelemetryGuard {
        providers: Some(Providers { tracer, meter }),
        scrape,
    })
}

/// Where spans and metrics go, from the configuration and OpenTelemetry's standard
/// variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// Nowhere: spans keep ids for propagation only, instruments are no-ops.
    Off,
    /// To `server.otlp_endpoint`, which wins over the environment.
    Configured(String),
    /// As the `OTEL_EXPORTER_OTLP_*` variables say (endpoint, headers, timeout,
    /// compression): the OTLP exporter reads them itself.
    Environment,
}

impl Export {
    /// To `endpoint` if given, else nowhere (the environment is not consulted).
    fn given(endpoint: Option<&str>) -> Export {
        endpoint.map_or(Export::Off, |e| Export::Configured(e.to_owned()))
    }

    /// An OTLP exporter (spans or metrics: `builder` and `build` say which) aimed where
    /// this says; call only when not [`Export::Off`].
    fn exporter<B: WithExportConfig, E>(
        &self,
        builder: B,
        build: impl FnOnce(B) -> Result<E, opentelemetry_otlp::ExporterBuildError>,
    ) -> Result<E, TelemetryError> {
        require_runtime()?;
        let builder = match self.endpoint() {
            Some(endpoint) => builder.with_endpoint(endpoint),
            None => builder,
        };
        build(builder).map_err(|source| TelemetryError::Exporter {
            endpoint: self.endpoint().unwrap_or("OTEL_EXPORTER_OTLP_*").to_owned(),
            source,
        })
    }

    /// `configured` if set; else the environment if it names an OTLP endpoint
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), unless
    /// `OTEL_SDK_DISABLED=true`; else off.
    pub fn resolve(configured: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Export {
        if let Some(endpoint) = configured {
            return Export::Configured(endpoint.to_owned());
        }
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Export::Off;
        }
        if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        {
            return Export::Environment;
        }
        Export::Off
    }

    fn endpoint(&self) -> Option<&str> {
        match self {
            Export::Configured(endpoint) => Some(endpoint),
            _ => None,
        }
    }
}

/// The resource: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` if set (the SDK's
/// detectors read them), else the configured service name.
fn resource(service_name: &str) -> Resource {
    let builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder.build()
    } else {
        builder.with_service_name(service_name.to_owned()).build()
    }
}

/// Fails unless called inside a tokio runtime: the tonic channel behind an OTLP exporter
/// is spawned on the current runtime; the SDK's own export thread then only drives
/// futures that this runtime completes.
fn require_runtime() -> Result<(), TelemetryError> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| TelemetryError::NoRuntime)
}

/// A tracer provider for `service_name`, batching spans to `otlp_endpoint` if given and
/// keeping them local (ids and propagation only) otherwise.
pub fn tracer_provider(
    service_name: &str,
    otlp_endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
    tracer_provider_for(service_name, &Export::given(otlp_endpoint))
}

fn tracer_provider_for(
    service_name: &str,
    export: &Export,
) -> Result<SdkTracerProvider, TelemetryError> {
    let builder = SdkTracerProvider::builder().with_resource(resource(service_name));
    if *export == Export::Off {
        return Ok(builder.build());
    }
    let exporter = export.exporter(
        opentelemetry_otlp::SpanExporter::builder().with_tonic(),
        |builder| builder.build(),
    )?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// A meter provider for `service_name`, exporting periodically (cumulative temporality)
/// to `otlp_endpoint` if given, and with no reader otherwise: its instruments are then
/// no-ops that cost nothing.
pub fn meter_provider(
    service_name: &str,
    otlp_endpoint: Option<&str>,
) -> Result<SdkMeterProvider, TelemetryError> {
    meter_provider_for(service_name, &Export::given(otlp_endpoint), None)
}

/// The meter provider: OTLP export per `export`, and the Prometheus reader that fills
/// the scrape endpoint's registry when there is one.
fn meter_provider_for(
    service_name: &str,
    export: &Export,
    scrape: Option<opentelemetry_prometheus::PrometheusExporter>,
) -> Result<SdkMeterProvider, TelemetryError> {
    let mut builder = SdkMeterProvider::builder().with_resource(resource(service_name));
    if let Some(reader) = scrape {
        builder = builder.with_reader(reader);
    }
    if *export == Export::Off {
        return Ok(builder.build());
    }
    let exporter = export.exporter(
        opentelemetry_otlp::MetricExporter::builder().with_tonic(),
        |builder| builder.build(),
    )?;
    Ok(builder.with_periodic_exporter(exporter).build())
}

/// The subscriber [`init`] installs, built but not installed, so tests can install it for
/// one thread (`tracing::subscriber::set_default`) with a provider of their own.
pub fn subscriber(
    log_filter: &str,
    log_format: LogFormat,
    provider: &SdkTracerProvider,
) -> Result<impl Subscriber + Send + Sync + 'static, TelemetryError> {
    subscriber_writing(log_filter, log_format, provider, std::io::stdout)
}

/// [`subscriber`] writing its log lines to `writer`.
pub fn subscriber_writing<W>(
    log_filter: &str,
    log_format: LogFormat,
    provider: &SdkTracerProvider,
    writer: W,
) -> Result<impl Subscriber + Send + Sync + 'static, TelemetryError>
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::builder()
            .parse(log_filter)
            .map_err(|source| TelemetryError::Filter {
                filter: log_filter.to_owned(),
                source,
            })?;
    let logs = match log_format {
        LogFormat::Text => fmt::layer().with_writer(writer).with_filter(filter).boxed(),
        // json-subscriber, not tracing-subscriber's `.json()`: the same line, but the
        // trace and span ids (`openTelemetry.traceId`, `.spanId`) are read from the
        // OpenTelemetry layer when a line is written, instead of recorded on every request
        // span, and a span's later fields cost one serialisation, not a parse and one
        // (BENCHMARKS.md run 7).
        LogFormat::Json => json_subscriber::fmt::layer()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_opentelemetry_ids(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_filter(LevelFilter::INFO);
    Ok(tracing_subscriber::registry().with(logs).with(traces))
}

#[cfg(test)]
mod export_tests {
    use super::Export;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_configuration_wins_then_the_standard_variables() {
        let standard = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")];
        assert_eq!(
            Export::resolve(Some("http://mine:4317"), env(&standard)),
            Export::Configured("http://mine:4317".to_owned())
        );
        assert_eq!(Export::resolve(None, env(&standard)), Export::Environment);
        assert_eq!(
            Export::resolve(
                None,
                env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")])
            ),
            Export::Environment
        );
        assert_eq!(Export::resolve(None, env(&[])), Export::Off);
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(Export::resolve(None, env(&disabled)), Export::Off);
    }
}
