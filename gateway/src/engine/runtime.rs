//! What the engine takes from the referral directory (`crate::directory`): the helplines the
//! closing messages of every channel list, and the runtime settings an admin may change
//! (overloaded mode, the thin-staff threshold), applied on every node when the database's
//! revision moves.
//!
//! Overloaded mode: the database is its source of truth (a node that starts, or polls after a
//! change, takes its value); the bus (`BusMsg::Overloaded`) remains the fast path that tells
//! other nodes at once when a coordinator switches it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::directory::{Directory, Helpline, RuntimeSettings};

use super::Engine;

impl Engine {
    /// Reads closing helplines from `directory` and takes its runtime settings now.
    pub fn with_directory(mut self, directory: Arc<Directory>) -> Self {
        let rt = directory.runtime();
        self.directory = Some(directory);
        self.apply_runtime(rt);
        self
    }

    pub fn directory(&self) -> Option<&Arc<Directory>> {
        self.directory.as_ref()
    }

    /// The helplines a closing message lists for a person reading `lang`.
    pub fn closing_helplines(&self, lang: &str) -> Vec<Helpline> {
        match &self.directory {
            Some(d) => d.closing(lang),
            None => crate::directory::builtin_closing(lang),
        }
    }

    /// Takes runtime settings read from the database (this node only: every node polls).
    pub fn apply_runtime(&self, rt: RuntimeSettings) {
        let was = self.overloaded.swap(rt.overloaded, Ordering::SeqCst);
        if was != rt.overloaded {
            tracing::info!(
                overloaded = rt.overloaded,
                "overloaded mode switched (settings)"
            );
        }
        self.min_on_duty.store(rt.min_on_duty, Ordering::SeqCst);
    }

    /// The thin-staff threshold in force.
    pub fn min_on_duty(&self) -> u32 {
        self.min_on_duty.load(Ordering::SeqCst)
    }
}
