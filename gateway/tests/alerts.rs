//! Alert delivery to the people on call, end to end (issue 21, items 1, 3 and 4): the real app
//! on a manual clock, a real SMTP server (aiosmtpd) whose messages Python's standard MIME
//! parser reads, a webhook receiver that checks signatures, and the on-call API.

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

#[path = "alerts/delivery.rs"]
mod delivery;
#[path = "alerts/escalation.rs"]
mod escalation;
#[path = "alerts/latency.rs"]
mod latency;
#[path = "alerts/rota.rs"]
mod rota;
