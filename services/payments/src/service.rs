//! The gRPC face of the payments service: requests in, [`Payments`] decides, statuses
//! out. Kept thin: messages become model types and back in [`crate::convert`], errors
//! become statuses only through [`IntoStatus::into_status`] (with their ErrorInfo
//! reason).
//!
//! TapIn, TapOut, RecordOfflineTap and VoidTap are the verifier's; GetSettlement is
//! for operators; NotifyCharge is a provider's, proven by its signature before
//! anything else. The
//! citizen's calls (LinkAccount, UnlinkAccount, GetLink, GetTrips, GetArrears,
//! RepayArrears) are signed by the citizen's bound device: [`Citizens`] checks the
//! proof and maps the device to its transit account at identity before the logic runs,
//! and the call acts on that account only. Without an identity service configured they
//! answer UNAVAILABLE.

use std::future::Future;

use citypass_proto::v1;
use citypass_proto::v1::payments_service_server::{PaymentsService, PaymentsServiceServer};
use citypass_runtime::{Deadline, IntoStatus};
use tonic::{Request, Response, Status};

use crate::account::TransitAccount;
use crate::citizen::{Citizens, DeviceCall};
use crate::convert;
use crate::error::Error;
use crate::notification::{Notification, NotificationKeys};
use crate::payments::{LinkRequest, Payments, Tapped};

/// `citypass.v1.PaymentsService` over [`Payments`].
#[derive(Clone)]
pub struct PaymentsApi {
    payments: Payments,
    max_clock_skew: std::time::Duration,
    late_tap_window: std::time::Duration,
    citizens: Option<Citizens>,
    notification_keys: std::sync::Arc<NotificationKeys>,
}

impl PaymentsApi {
    /// The service for `payments`.
    /// Taps whose `tapped_at` is more than `max_clock_skew` from the server's clock
    /// are refused.
    pub fn new(payments: Payments, max_clock_skew: std::time::Duration) -> Self {
        PaymentsApi {
            payments,
            max_clock_skew,
            late_tap_window: crate::config::DEFAULT_LATE_TAP_WINDOW,
            citizens: None,
            notification_keys: std::sync::Arc::new(NotificationKeys::new()),
        }
    }

    /// The same service trusting `keys` for providers' notifications (NotifyCharge);
    /// without, every notification is refused.
    pub fn with_notification_keys(mut self, keys: NotificationKeys) -> Self {
        self.notification_keys = std::sync::Arc::new(keys);
        self
    }

    /// The same service taking offline gates' taps (RecordOfflineTap) scanned up to
    /// `window` ago (`payments.late_tap_window`), plus `max_clock_skew` (the verifier
    /// checks its window at its own clock).
    pub fn with_late_tap_window(mut self, window: std::time::Duration) -> Self {
        self.late_tap_window = window;
        self
    }

    /// The same service answering citizens' device-signed calls, checked by `citizens`.
    pub fn with_citizens(mut self, citizens: Citizens) -> Self {
        self.citizens = Some(citizens);
        self
    }

    /// The transit account a citizen's call acts for (see [`Citizens::authorize`]).
    async fn citizen(
        &self,
        call: DeviceCall,
        deadline: Option<Deadline>,
    ) -> Result<TransitAccount, Error> {
        let citizens = self.citizens.as_ref().ok_or(Error::NoIdentity)?;
        citizens
            .authorize(call, std::time::SystemTime::now(), deadline)
            .await
    }

    /// A citizen's call: `parse` checks its shape and takes out the device-signed part,
    /// the proof is checked and the device mapped to its transit account
    /// ([`Self::citizen`]), then `act` runs for that account; any error becomes its
    /// status here.
    async fn for_citizen<R, A, T, F, Fut>(
        &self,
        request: Request<R>,
        parse: fn(R) -> Result<(DeviceCall, A), Error>,
        act: F,
    ) -> Result<Response<T>, Status>
    where
        F: FnOnce(TransitAccount, A) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let deadline = Deadline::of(&request);
        answer(async {
            let (call, args) = parse(request.into_inner())?;
            let account = self.citizen(call, deadline).await?;
            act(account, args).await
        })
        .await
    }

    /// The logic behind the service.
    pub fn payments(&self) -> &Payments {
        &self.payments
    }

    /// The generated tonic server, ready for `citypass_runtime::Server::add_service`.
    pub fn into_server(self) -> PaymentsServiceServer<PaymentsApi> {
        PaymentsServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl PaymentsService for PaymentsApi {
    async fn tap_in(
        &self,
        request: Request<v1::TapInRequest>,
    ) -> Result<Response<v1::TapInResponse>, Status> {
        answer(async {
            let clock = convert::Clock::now(self.max_clock_skew);
            let tap = convert::tap_in(request.into_inner(), &clock)?;
            Ok(match self.payments.tap_in(tap).await? {
                Tapped::Trip(trip) => v1::TapInResponse {
                    trip: Some(convert::trip(&self.payments.trip_view(*trip).await?)?),
                    refusal: v1::TapRefusal::Unspecified as i32,
                },
                Tapped::Refused(refusal) => v1::TapInResponse {
                    trip: None,
                    refusal: convert::refusal(refusal) as i32,
                },
            })
        })
        .await
    }

    async fn tap_out(
        &self,
        request: Request<v1::TapOutRequest>,
    ) -> Result<Response<v1::TapOutResponse>, Status> {
        answer(async {
            let clock = convert::Clock::now(self.max_clock_skew);
            let tap = convert::tap_out(request.into_inner(), &clock)?;
            let trip = self.payments.tap_out(tap).await?;
            let view = self.payments.trip_view(trip).await?;
            Ok(v1::TapOutResponse {
                trip: Some(convert::trip(&view)?),
            })
        })
        .await
    }

    async fn record_offline_tap(
        &self,
        request: Request<v1::RecordOfflineTapRequest>,
    ) -> Result<Response<v1::RecordOfflineTapResponse>, Status> {
        answer(async {
            let clock = convert::Clock::now(self.max_clock_skew);
            // The verifier checked its upload window at its own clock: a tap at the
            // window's edge there may be up to the skew older here.
            let window = self.late_tap_window.saturating_add(self.max_clock_skew);
            let tap = convert::offline_tap(request.into_inner(), &clock, window)?;
            Ok(match self.payments.late_tap(tap, clock.now).await? {
                Tapped::Trip(trip) => v1::RecordOfflineTapResponse {
                    trip: Some(convert::trip(&self.payments.trip_view(*trip).await?)?),
                    refusal: v1::TapRefusal::Unspecified as i32,
                },
                Tapped::Refused(refusal) => v1::RecordOfflineTapResponse {
                    trip: None,
                    refusal: convert::refusal(refusal) as i32,
                },
            })
        })
        .await
    }

    async fn link_account(
        &self,
        request: Request<v1::LinkAccountRequest>,
    ) -> Result<Response<v1::LinkAccountResponse>, Status> {
        self.for_citizen(request, convert::link_account, |account, form| async move {
            let link = LinkRequest {
                account,
                provider: form.provider,
                token: &form.token,
                last4: &form.last4,
                consent_version: &form.consent_version,
                consented_at: form.consented_at,
            };
            let link = self.payments.link(link, citypass_token::unix_now()).await?;
            Ok(v1::LinkAccountResponse {
                link: Some(convert::link(&link)),
            })
        })
        .await
    }

    async fn unlink_account(
        &self,
        request: Request<v1::UnlinkAccountRequest>,
    ) -> Result<Response<v1::UnlinkAccountResponse>, Status> {
        self.for_citizen(request, convert::bare_call, |account, ()| async move {
            let link = self
                .payments
                .unlink(account, citypass_token::unix_now())
                .await?;
            Ok(v1::UnlinkAccountResponse {
                link: Some(convert::link(&link)),
            })
        })
        .await
    }

    async fn get_link(
        &self,
        request: Request<v1::GetLinkRequest>,
    ) -> Result<Response<v1::GetLinkResponse>, Status> {
        self.for_citizen(request, convert::bare_call, |account, ()| async move {
            let link = self.payments.get_link(account).await?;
            Ok(v1::GetLinkResponse {
                link: Some(convert::link(&link)),
            })
        })
        .await
    }

    async fn get_trips(
        &self,
        request: Request<v1::GetTripsRequest>,
    ) -> Result<Response<v1::GetTripsResponse>, Status> {
        self.for_citizen(request, convert::get_trips, |account, query| async move {
            convert::trips(&self.payments.trips(account, query).await?)
        })
        .await
    }

    async fn get_arrears(
        &self,
        request: Request<v1::GetArrearsRequest>,
    ) -> Result<Response<v1::GetArrearsResponse>, Status> {
        self.for_citizen(request, convert::bare_call, |account, ()| async move {
            Ok(convert::arrears(&self.payments.arrears(account).await?))
        })
        .await
    }

    async fn repay_arrears(
        &self,
        request: Request<v1::RepayArrearsRequest>,
    ) -> Result<Response<v1::RepayArrearsResponse>, Status> {
        self.for_citizen(request, convert::repay_arrears, |account, key| async move {
            let charges = self
                .payments
                .repay_arrears(account, &key, citypass_token::unix_now())
                .await?;
            // The wire has one charge: the first sent again (each declined charge keeps
            // its own key); `remaining` is what is owed until they are answered.
            let remaining = self.payments.arrears(account).await?;
            Ok(v1::RepayArrearsResponse {
                charge: charges.first().map(convert::charge),
                remaining: Some(convert::money(remaining.total)),
            })
        })
        .await
    }

    async fn void_tap(
        &self,
        request: Request<v1::VoidTapRequest>,
    ) -> Result<Response<v1::VoidTapResponse>, Status> {
        answer(async {
            let trip = self
                .payments
                .void(convert::void_tap(request.into_inner())?)
                .await?;
            let view = self.payments.trip_view(trip).await?;
            Ok(v1::VoidTapResponse {
                trip: Some(convert::trip_or_voided(&view)?),
            })
        })
        .await
    }

    async fn notify_charge(
        &self,
        request: Request<v1::NotifyChargeRequest>,
    ) -> Result<Response<v1::NotifyChargeResponse>, Status> {
        answer(async {
            let signed = convert::notify_charge(request.into_inner())?;
            // The signature first: nothing is parsed or read for an unproven sender.
            self.notification_keys.verify(&signed)?;
            let notification = Notification::parse(&signed.body)?;
            let (applied, charge) = self
                .payments
                .notify(signed.provider, &notification, citypass_token::unix_now())
                .await?;
            Ok(convert::notified(applied, &charge))
        })
        .await
    }

    async fn get_settlement(
        &self,
        request: Request<v1::GetSettlementRequest>,
    ) -> Result<Response<v1::GetSettlementResponse>, Status> {
        answer(async {
            let request = request.into_inner();
            let settlement = self
                .payments
                .settlement(convert::date(&request.date)?)
                .await?;
            Ok(convert::settlement(&request.date, &settlement))
        })
        .await
    }
}

/// The answer of a handler's work, its error as a status (with its ErrorInfo reason).
async fn answer<T>(work: impl Future<Output = Result<T, Error>>) -> Result<Response<T>, Status> {
    work.await
        .map(Response::new)
        .map_err(IntoStatus::into_status)
}
