//! The server over real loopback connections: health, shutdown and drain, load shedding,
//! timeouts, reflection.

mod common;

use std::num::NonZeroUsize;
use std::time::Duration;

use citypass_runtime::{ServeError, Server, ServerConfig};
use common::{GATE, check, gate, hold, hold_with, start};
use tokio::time::timeout;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;

/// Upper bound for anything a test waits on, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(10);

fn config() -> ServerConfig {
    let mut config = ServerConfig::new("test");
    config.shutdown_drain_timeout = Duration::from_secs(5);
    config
}

#[tokio::test]
async fn health_flips_to_not_serving_and_in_flight_calls_drain() {
    let (gate_service, mut gate) = gate();
    let server = start(Server::new(config()).add_service(gate_service, &common::GATE_POLICY)).await;
    let channel = server.channel().await;

    assert_eq!(check(channel.clone(), "").await, Ok(WireStatus::Serving));
    assert_eq!(check(channel.clone(), GATE).await, Ok(WireStatus::Serving));

    // A watcher, which must neither miss NOT_SERVING nor hold the drain open.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: GATE.to_owned(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("watch item").expect("open");
    assert_eq!(first.status(), WireStatus::Serving);

    // A call in flight when shutdown begins.
    let in_flight = tokio::spawn(hold(channel.clone()));
    timeout(PATIENCE, gate.entered())
        .await
        .expect("call entered");

    let mut server = server;
    server.shutdown();

    let flipped = timeout(PATIENCE, watch.message())
        .await
        .expect("watch answers")
        .expect("NOT_SERVING is delivered before the watch ends")
        .expect("still open");
    assert_eq!(flipped.status(), WireStatus::NotServing);
    let end = timeout(PATIENCE, watch.message())
        .await
        .expect("watch ends");
    assert_eq!(
        end.expect_err("ends with a status").code(),
        Code::Unavailable
    );

    // The listener is closed: new connections are refused while the call drains.
    let addr = server.addr;
    let refused = timeout(PATIENCE, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "listener still accepting during drain");
    assert!(
        !server.task.is_finished(),
        "serve returned before the drain"
    );

    gate.release(1);
    let answer = timeout(PATIENCE, in_flight).await.expect("call finishes");
    assert_eq!(answer.expect("task").map_err(|s| s.code()), Ok(()));

    let served = timeout(PATIENCE, server.task).await.expect("serve returns");
    assert!(served.expect("task").is_ok(), "clean drain");
}

#[tokio::test]
async fn check_reports_not_serving_during_the_shutdown_delay() {
    let mut config = config();
    config.shutdown_delay = Duration::from_millis(500);
    let (gate_service, _gate) = gate();
    let mut server =
        start(Server::new(config).add_service(gate_service, &common::GATE_POLICY)).await;
    let channel = server.channel().await;
    assert_eq!(check(channel.clone(), GATE).await, Ok(WireStatus::Serving));

    server.shutdown();
    let flipped = timeout(PATIENCE, async {
        loop {
            if check(channel.clone(), GATE).await == Ok(WireStatus::NotServing) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(flipped.is_ok(), "Check never reported NOT_SERVING");
    assert_eq!(check(channel.clone(), "").await, Ok(WireStatus::NotServing));

    let served = timeout(PATIENCE, server.task).await.expect("serve returns");
    assert!(served.expect("task").is_ok());
}

#[tokio::test]
async fn a_call_that_outlives_the_drain_timeout_is_reported() {
    let mut config = config();
    config.shutdown_drain_timeout = Duration::from_millis(200);
    let (gate_service, mut gate) = gate();
    let server = start(Server::new(config).add_service(gate_service, &common::GATE_POLICY)).await;
    let channel = server.channel().await;

    let _stuck = tokio::spawn(hold(channel));
    timeout(PATIENCE, gate.entered())
        .await
        .expect("call entered");

    let result = timeout(PATIENCE, server.stop())
        .await
        .expect("serve returns");
    assert!(
        matches!(result, Err(ServeError::DrainTimedOut(d)) if d == Duration::from_millis(200)),
        "got {result:?}"
    );
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_are_shed_with_resource_exhausted() {
    let mut config = config();
    config.concurrency_limit = NonZeroUsize::MIN;
    let (gate_service, mut gate) = gate();
    let server = start(Server::new(config).add_service(gate_service, &common::GATE_POLICY)).await;
    // Two connections: the limit is per server, not per connection.
    let first_client = server.channel().await;
    let second_client = server.channel().await;

    let admitted = tokio::spawn(hold(first_client));
    timeout(PATIENCE, gate.entered())
        .await
        .expect("first call entered");

    let shed = timeout(PATIENCE, hold(second_client.clone()))
        .await
        .expect("shed at once, not queued");
    let status = shed.expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "server overloaded; retry with backoff");

    // Probes are never shed, or an overloaded pod would be restarted for being busy.
    assert_eq!(
        check(second_client.clone(), "").await,
        Ok(WireStatus::Serving)
    );

    gate.release(1);
    let answer = timeout(PATIENCE, admitted).await.expect("first call ends");
    assert_eq!(answer.expect("task").map_err(|s| s.code()), Ok(()));

    // The slot is free again.
    gate.release(1);
    let again = timeout(PATIENCE, hold(second_client))
        .await
        .expect("answer");
    assert_eq!(again.map_err(|s| s.code()), Ok(()));

    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn calls_past_the_request_timeout_get_deadline_exceeded() {
    let mut config = config();
    config.request_timeout = Duration::from_millis(100);
    let (gate_service, _gate) = gate();
    let server = start(Server::new(config).add_service(gate_service, &common::GATE_POLICY)).await;
    let channel = server.channel().await;

    let status = timeout(PATIENCE, hold(channel.clone()))
        .await
        .expect("answered")
        .expect_err("never released");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "request timed out");

    // The timed-out call gave its slot back; the server is healthy.
    assert_eq!(check(channel, "").await, Ok(WireStatus::Serving));
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn handlers_see_the_earlier_of_the_two_deadlines() {
    let mut config = config();
    config.request_timeout = Duration::from_secs(5);
    let (gate_service, mut gate) = gate();
    let server = start(Server::new(config).add_service(gate_service, &common::GATE_POLICY)).await;
    let channel = server.channel().await;

    // No caller deadline: the server's own.
    let call = tokio::spawn(hold(channel.clone()));
    let left = timeout(PATIENCE, gate.entered()).await.expect("entered");
    let left = left.expect("a deadline");
    assert!(
        left > Duration::from_secs(4) && left <= Duration::from_secs(5),
        "{left:?}"
    );
    gate.release(1);
    call.await.expect("task").expect("answer");

    // A caller deadline shorter than the server's wins.
    let mut request = tonic::Request::new(());
    request.set_timeout(Duration::from_secs(1));
    let call = tokio::spawn(hold_with(channel, request));
    let left = timeout(PATIENCE, gate.entered()).await.expect("entered");
    let left = left.expect("a deadline");
    assert!(left <= Duration::from_secs(1), "{left:?}");
    gate.release(1);
    call.await.expect("task").expect("answer");

    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn reflection_lists_the_registered_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut with_reflection = config();
    with_reflection.reflection = true;
    let server = start(Server::new(with_reflection)).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.reflection.v1.ServerReflection".to_owned()),
        "{names:?}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn reflection_is_off_unless_configured() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let server = start(Server::new(config())).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let status = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect_err("no reflection service");
    assert_eq!(status.code(), Code::Unimplemented);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn one_caller_cannot_hold_more_than_its_share_of_open_calls() {
    let mut config = config();
    config.limits.open_calls_per_caller = 2;
    let (gate_service, mut gate) = gate();
    let server = start(Server::new(config).add_service(gate_service, &common::GATE_POLICY)).await;
    let channel = server.channel().await;

    let first = tokio::spawn(hold(channel.clone()));
    let second = tokio::spawn(hold(channel.clone()));
    for _ in 0..2 {
        timeout(PATIENCE, gate.entered())
            .await
            .expect("a call enters");
    }
    // Both slots are taken: the third call is refused at once, by the layer.
    let status = timeout(PATIENCE, hold(channel.clone()))
        .await
        .expect("an answer")
        .expect_err("over the cap");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .metadata()
            .get(citypass_runtime::authz::REFUSED_BY)
            .is_some()
    );
    // Once one ends, its slot is free again.
    gate.release(1);
    let _ = timeout(PATIENCE, async {
        tokio::select! {
            r = first => r,
            r = second => r,
        }
    })
    .await
    .expect("a held call ends");
    let third = tokio::spawn(hold(channel.clone()));
    timeout(PATIENCE, gate.entered())
        .await
        .expect("a slot is free again");
    gate.release(2);
    timeout(PATIENCE, third)
        .await
        .expect("ends")
        .expect("task")
        .expect("ok");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_anonymous_address_is_held_to_its_rate() {
    let mut config = config();
    config.limits.anonymous_per_second = std::num::NonZeroU32::new(5).expect("non-zero");
    let (gate_service, gate) = gate();
    gate.release(1000);
    let server = start(Server::new(config).add_service(gate_service, &common::GATE_POLICY)).await;
    let channel = server.channel().await;
    // 40 calls at once: a burst of 5 passes, and the rest arrive long before the
    // limiter refills (5 a second).
    let calls: Vec<_> = (0..40)
        .map(|_| tokio::spawn(hold(channel.clone())))
        .collect();
    let mut limited = 0;
    for call in calls {
        if let Err(status) = timeout(PATIENCE, call)
            .await
            .expect("an answer")
            .expect("task")
        {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            limited += 1;
        }
    }
    assert!(limited > 0, "no call was limited");
    assert!(limited < 40, "the burst should pass");
    server.stop().await.expect("clean stop");
}
