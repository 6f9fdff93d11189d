//! Alert delivery to the people on call, end to end (issue 21, items 1, 3 and 4): the real app
//! on a manual clock, a real SMTP server (aiosmtpd) whose messages Python's standard MIME
//! parser reads, a webhook receiver that checks signatures, the fake LINE Messaging API and the
//! fake telephony API of the connectors' tests (signed with LINE's and Twilio's official SDKs),
//! and the on-call API.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "alerts/receiver.rs"]
mod receiver;
#[allow(dead_code)]
#[path = "support/smtp.rs"]
mod smtp;

#[path = "alerts/harness.rs"]
mod harness;

#[path = "support/captured.rs"]
mod captured;
#[allow(dead_code)]
#[path = "line/fake_api.rs"]
mod fake_api;
#[allow(dead_code)]
#[path = "voice/fake_provider.rs"]
mod fake_provider;
#[path = "alerts/pagers.rs"]
mod pagers;
#[path = "support/python.rs"]
mod python;

#[path = "alerts/delivery.rs"]
mod delivery;
#[path = "alerts/escalation.rs"]
mod escalation;
#[path = "alerts/latency.rs"]
mod latency;
#[path = "alerts/limits.rs"]
mod limits;
#[path = "alerts/line.rs"]
mod line;
#[path = "alerts/phone.rs"]
mod phone;
#[path = "alerts/rota.rs"]
mod rota;
