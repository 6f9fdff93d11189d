//! Integration tests: the real app on port 0, driven over real websockets and HTTP.

mod admin;
mod bad_input;
mod directory;
mod docs;
mod escalation;
mod exhaustion;
mod flow;
mod helpers;
mod http;
mod limits;
mod overload;
mod queue;
mod resume;
mod sign_in;
mod tls;
mod wait;
